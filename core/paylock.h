/* paylock — one writer at a time per payment record.
 *
 * A payment record is read, changed and written back by several parts of
 * the gateway: the API (create, refund, capture — each across a provider
 * call), the reconciler, and the worker applying webhooks. Each takes the
 * payment's lock from its read to its commit, so no one writes back a stale
 * copy over another's change (a webhook's `succeeded` overwritten by a
 * charge's late `requires_action`, say). Holders never wait for each other:
 * paylock_try fails at once, and the caller answers 409 (API), or tries
 * again shortly (worker, reconciler). Process-local: one process owns a data
 * directory's writers. Any thread. */
#ifndef AGAPE_PAYLOCK_H
#define AGAPE_PAYLOCK_H

#include <stdbool.h>

/* Take the lock of payment `id`; false if someone holds it. */
bool paylock_try(const char *id);
/* Release a lock taken with paylock_try. */
void paylock_release(const char *id);

#endif
