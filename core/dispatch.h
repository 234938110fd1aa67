/* dispatch — drives one operation across a chain of providers under the
 * outcome taxonomy (DESIGN.md): the plugin's steps, the transfers, retries
 * with backoff, fail-over, the deadline. Everything runs on the client
 * thread; nothing here blocks.
 *
 * Policy per attempt outcome:
 *   ok, declined, invalid  → final (never retried, never failed over)
 *   auth                   → fail over at once
 *   rate_limited           → retry on the same provider after max(Retry-After,
 *                            backoff), then fail over
 *   unavailable            → retry with exponential backoff and full jitter,
 *                            then fail over
 *   unknown                → final when the operation moves money (it stays
 *                            `processing` and is reconciled on the same
 *                            provider, never sent to a second one); otherwise
 *                            treated as unavailable
 * A retry on the same provider carries the same provider idempotency key,
 * derived from the operation's idempotency base and the provider's name, so a
 * retried call never charges twice. */
#ifndef AGAPE_DISPATCH_H
#define AGAPE_DISPATCH_H

#include "client.h"
#include "host.h"
#include "plugins.h"

#include <jansson.h>
#include <stdbool.h>

#define DISPATCH_MAX_CHAIN 8

struct dispatch_policy {
    int max_retries;          /* retries per provider after the first try */
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    int64_t connect_timeout_ms;
    int64_t attempt_timeout_ms;
    int64_t deadline_ms;      /* whole operation, from dispatch_start */
};

struct dispatch_op;
typedef void (*dispatch_done_fn)(struct dispatch_op *op, void *arg);

/* The outcome of the operation, valid in the done callback and after. */
struct dispatch_outcome {
    enum agape_outcome outcome;   /* of the last attempt */
    struct provider *provider;    /* the provider of the last attempt, or NULL */
    int64_t retry_after_ms;       /* the last attempt's Retry-After, or -1: callers that
                                     reschedule later (outbox kinds) honour it */
    json_t *result;               /* the plugin's normalized result (owned by the op) */
    json_t *attempts;             /* [{"provider","outcome","http_status","latency_ms",
                                       "error"?}] (owned by the op) */
    char err[AGAPE_ERR_SIZE];     /* the last attempt's reason, if any */
    bool moves_money_unknown;     /* ended in `unknown` on a money-moving operation */
};

/* Start `op_name` ("charge", "refund", …) of kind payment with `input` (a new
 * reference is taken) over `chain` (n providers, tried in order). `idem_base`
 * seeds the provider idempotency keys. `money` marks operations that must
 * never fail over after `unknown`. done(op, arg) runs once on the client
 * thread; the caller then reads dispatch_result() and frees the op with
 * dispatch_free (any thread). Returns NULL on allocation failure. */
struct dispatch_op *dispatch_start(struct client *cl, const struct dispatch_policy *pol,
                                   const char *op_name, json_t *input, struct provider **chain,
                                   size_t n, const char *idem_base, bool money,
                                   dispatch_done_fn done, void *arg);
/* dispatch_start in two halves, for a caller that must build the op on
 * one thread and start it later from another (a payment is built on its
 * server thread, which also frees it, and started from the store's writer
 * once its record is durable): dispatch_new takes the same arguments and
 * returns the op without starting it (NULL without memory); dispatch_go
 * starts it (once; any thread). An op never started is freed with
 * dispatch_free. */
struct dispatch_op *dispatch_new(struct client *cl, const struct dispatch_policy *pol,
                                 const char *op_name, json_t *input, struct provider **chain,
                                 size_t n, const char *idem_base, bool money,
                                 dispatch_done_fn done, void *arg);
void dispatch_go(struct dispatch_op *op);
/* Name the API request the op serves (X-Request-Id), so its log lines carry
 * it. Between dispatch_new and dispatch_go. */
void dispatch_set_request_id(struct dispatch_op *op, const char *request_id);
const struct dispatch_outcome *dispatch_result(const struct dispatch_op *op);
void dispatch_free(struct dispatch_op *op);

/* The provider idempotency key for (base, provider): "agape-" + 40 hex. */
void dispatch_idem_key(const char *base, const char *provider, char out[64]);

/* Per-provider counters of outcomes (for /v1/providers and /metrics). */
struct dispatch_stats {
    unsigned long long calls[AGAPE_OUTCOME_COUNT];
    unsigned long long retries;
    unsigned long long failovers;
    unsigned long long short_circuits;
    int inflight;
    int max_inflight;
};
struct breaker_snapshot;
/* The circuit state's name ("closed", "open", "half_open"), and its
 * snapshot when `snap` is not NULL. Any thread. */
const char *dispatch_circuit(const struct provider *p, struct breaker_snapshot *snap);
/* Check a provider's policy settings (breaker table, max_inflight) for
 * `agape validate`; err names the key. */
int dispatch_check_conf(const struct provider *p, char *err, size_t errlen);
void dispatch_provider_stats(const struct provider *p, struct dispatch_stats *out);
/* Give every provider of the registry its counters (main thread, at start);
 * dispatch_detach frees them (main thread, at the end). */
int dispatch_attach(struct registry *r);
void dispatch_detach(struct registry *r);
/* The step function of `op_name` in provider p's plugin, or NULL. */
agape_step_fn dispatch_find_op(const struct provider *p, const char *op_name);

const char *dispatch_outcome_name(enum agape_outcome o);

#endif
