/* payments — the payment record: how an outcome changes it, and how it is
 * written. Shared by the API (api_payments.c), the reconciler and webhooks,
 * so a payment moves the same way whoever learns what happened. */
#ifndef AGAPE_PAYMENTS_H
#define AGAPE_PAYMENTS_H

#include "dispatch.h"
#include "store.h"

#include <jansson.h>

enum payments_verdict {
    PAYMENTS_DONE = 0,  /* ok: the status is whatever the provider said */
    PAYMENTS_DECLINED,  /* failed: a business no */
    PAYMENTS_INVALID,   /* failed: the provider refused our request */
    PAYMENTS_PENDING,   /* sent, no answer: still processing, to reconcile */
    PAYMENTS_FAILED     /* no provider could take it: nothing was charged */
};

/* Apply a charge (or get) outcome to `rec`: provider, provider_ref,
 * status, client_secret, approval_url, capture_ref, decline_code, attempts
 * (appended when `append_attempts`, else replaced), updated_at. */
enum payments_verdict payments_apply(json_t *rec, const struct dispatch_outcome *o,
                                     bool append_attempts);
/* Put the record, and the provider-reference index when it has one. */
void payments_put(struct store_batch *b, json_t *rec);
/* payments_put, and the record as clients see it (without the internal
 * members idem_base, api_key_id, boot) as JSON text in *pub (malloc'd, free
 * it; NULL without memory, and then nothing was put, so the batch must not
 * be committed as if it held the record: it is made to fail). One dump
 * serves both: the stored text is the public text with the internal members
 * appended, which moves them to the end of `rec` too. */
void payments_put_public(struct store_batch *b, json_t *rec, char **pub, size_t *publen);
/* The public view as a new object (a copy without the internal members). */
json_t *payments_public(json_t *rec);
/* The normalized charge input rebuilt from a record (a new reference). */
json_t *payments_charge_input(json_t *rec);
/* Set updated_at to now. */
void payments_touch(json_t *rec);
/* Now as api_time_iso writes it ("2026-11-28T10:00:00Z"), formatted at most
 * once a second per thread. Any thread. */
void payments_now_iso(char out[32]);

#endif
