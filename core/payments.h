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
/* The normalized charge input rebuilt from a record (a new reference). */
json_t *payments_charge_input(json_t *rec);
/* Set updated_at to now. */
void payments_touch(json_t *rec);

#endif
