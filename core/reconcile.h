/* reconcile — finds out what happened to payments whose outcome is unknown.
 *
 * A payment is recorded `processing` with a "recon:" entry (store_keys.h)
 * before its first provider call; the entry is deleted when the outcome is
 * known. Anything still there when it falls due — an `unknown` outcome (sent,
 * no answer), or a process that died mid-call — is re-asked of the SAME
 * provider, never another: with `get` by provider reference when there is
 * one, otherwise by replaying the charge with the same provider idempotency
 * key (the provider answers with what the first request did, or does it now,
 * once). Not known yet → tried again later with backoff (1 s doubling, at
 * most 5 minutes apart). The entries are in the store, so this survives a
 * restart. One thread; the provider calls run on the client thread and the
 * outcome is committed asynchronously. */
#ifndef AGAPE_RECONCILE_H
#define AGAPE_RECONCILE_H

#include "app.h"

struct reconciler;

/* Start the thread. Main thread. */
int reconcile_start(struct app *app, struct reconciler **out);
/* Stop it: waits for reconciliations in flight (their calls end within the
 * payment deadline). Call before client_destroy. Main thread. */
void reconcile_stop(struct reconciler *rc);

/* The batch operations payments use (any thread): schedule a check of
 * `payment_id` after `delay_ms`, or clear it. */
void reconcile_schedule(struct store_batch *b, const char *payment_id, int64_t delay_ms,
                        int tries);
void reconcile_clear(struct store_batch *b, const char *payment_id);

#endif
