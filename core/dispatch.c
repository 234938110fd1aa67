/* dispatch — see dispatch.h for the policy. All state changes of an op
 * happen on the client thread: the transfer callbacks and the timers run
 * there, and dispatch_start hands the first step to it with client_defer. */
#include "dispatch.h"

#include "breaker.h"
#include "crypto.h"
#include "log.h"
#include "metrics.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct provider_stats {
    atomic_ullong calls[AGAPE_OUTCOME_COUNT];
    atomic_ullong retries;
    atomic_ullong failovers;
    atomic_ullong short_circuits; /* attempts refused by an open circuit */
    atomic_int inflight;    /* attempts under way (the bulkhead) */
    int max_inflight;       /* the provider's cap: max_inflight in its table */
    struct breaker *breaker;
};

/* DESIGN.md: 5,000 calls in flight to one slow provider must all succeed. */
#define DISPATCH_DEFAULT_MAX_INFLIGHT 8192

struct dispatch_op {
    struct client *cl;
    struct dispatch_policy pol;
    char op_name[24];
    json_t *input;
    struct provider *chain[DISPATCH_MAX_CHAIN];
    size_t n;
    size_t idx;         /* provider being tried */
    int tries;          /* attempts on chain[idx] */
    char idem_base[160];
    bool money;
    dispatch_done_fn done;
    void *arg;

    int64_t started_ms;
    int64_t deadline;   /* monotonic ms */
    int64_t attempt_started_ms;
    bool call_live;     /* hc initialised */
    bool holds_slot;    /* counted in the provider's in-flight */
    char request_id[48];/* the API request this op serves, for its log lines */
    bool refused_here;  /* the attempt was refused before sending (bulkhead,
                           open circuit): fail over at once, no retry */
    struct host_call hc;
    struct client_xfer xfer;
    int last_http_status;
    struct dispatch_outcome out;
};

static const char *outcome_names[AGAPE_OUTCOME_COUNT] = {
    "ok", "declined", "invalid", "auth", "rate_limited", "unavailable", "unknown",
};

const char *dispatch_outcome_name(enum agape_outcome o)
{
    return (unsigned)o < AGAPE_OUTCOME_COUNT ? outcome_names[o] : "unknown";
}

int dispatch_attach(struct registry *r)
{
    for (size_t i = 0; i < r->n_providers; i++) {
        if (r->providers[i]->policy == NULL) {
            struct provider_stats *st = calloc(1, sizeof(*st));
            if (st == NULL) {
                return AGAPE_ENOMEM;
            }
            json_t *cap = json_object_get(r->providers[i]->conf, "max_inflight");
            st->max_inflight = json_is_integer(cap) && json_integer_value(cap) > 0
                                   ? (int)json_integer_value(cap)
                                   : DISPATCH_DEFAULT_MAX_INFLIGHT;
            struct breaker_config bc;
            char err[AGAPE_ERR_SIZE];
            if (breaker_config_from_json(&bc, r->providers[i]->conf, err, sizeof(err)) !=
                AGAPE_OK) {
                log_msg(AGAPE_LOG_WARN, r->providers[i]->name,
                        "providers.%s.%s; using the default breaker settings",
                        r->providers[i]->name, err);
                bc = breaker_config_defaults();
            }
            st->breaker = breaker_create(r->providers[i]->name, &bc);
            r->providers[i]->policy = st;
            if (st->breaker == NULL) {
                return AGAPE_ENOMEM;
            }
        }
    }
    return AGAPE_OK;
}

int dispatch_check_conf(const struct provider *p, char *err, size_t errlen)
{
    struct breaker_config bc;
    char why[AGAPE_ERR_SIZE];
    if (breaker_config_from_json(&bc, p->conf, why, sizeof(why)) != AGAPE_OK) {
        snprintf(err, errlen, "providers.%s.%s", p->name, why);
        return AGAPE_EINVAL;
    }
    json_t *cap = json_object_get(p->conf, "max_inflight");
    if (cap && (!json_is_integer(cap) || json_integer_value(cap) < 1)) {
        snprintf(err, errlen, "providers.%s.max_inflight: expected a positive integer", p->name);
        return AGAPE_EINVAL;
    }
    return AGAPE_OK;
}

const char *dispatch_circuit(const struct provider *p, struct breaker_snapshot *snap)
{
    struct provider_stats *st = p->policy;
    if (st == NULL || st->breaker == NULL) {
        return "closed";
    }
    if (snap) {
        breaker_snapshot(st->breaker, snap);
    }
    return breaker_state_name(breaker_state(st->breaker, client_mono_ms()));
}

void dispatch_detach(struct registry *r)
{
    for (size_t i = 0; r && i < r->n_providers; i++) {
        struct provider_stats *st = r->providers[i]->policy;
        if (st) {
            breaker_destroy(st->breaker);
        }
        free(r->providers[i]->policy);
        r->providers[i]->policy = NULL;
    }
}

void dispatch_provider_stats(const struct provider *p, struct dispatch_stats *out)
{
    memset(out, 0, sizeof(*out));
    struct provider_stats *st = p->policy;
    if (st == NULL) {
        return;
    }
    for (int i = 0; i < AGAPE_OUTCOME_COUNT; i++) {
        out->calls[i] = atomic_load(&st->calls[i]);
    }
    out->retries = atomic_load(&st->retries);
    out->failovers = atomic_load(&st->failovers);
    out->inflight = atomic_load(&st->inflight);
    out->short_circuits = atomic_load(&st->short_circuits);
    out->max_inflight = st->max_inflight;
}

agape_step_fn dispatch_find_op(const struct provider *p, const char *op)
{
    const struct agape_plugin *d = p->plugin->desc;
    if (d->payment) {
        if (strcmp(op, "charge") == 0) {
            return d->payment->charge;
        }
        if (strcmp(op, "get") == 0) {
            return d->payment->get;
        }
        if (strcmp(op, "capture") == 0) {
            return d->payment->capture;
        }
        if (strcmp(op, "refund") == 0) {
            return d->payment->refund;
        }
    }
    if (d->messaging) {
        if (strcmp(op, "send_email") == 0) {
            return d->messaging->send_email;
        }
        if (strcmp(op, "send_sms") == 0) {
            return d->messaging->send_sms;
        }
    }
    if (d->auth) {
        if (strcmp(op, "authorize_url") == 0) {
            return d->auth->authorize_url;
        }
        if (strcmp(op, "exchange_code") == 0) {
            return d->auth->exchange_code;
        }
        if (strcmp(op, "verify_id_token") == 0) {
            return d->auth->verify_id_token;
        }
    }
    if (d->analytics && strcmp(op, "track_batch") == 0) {
        return d->analytics->track_batch;
    }
    if (d->monitoring) {
        if (strcmp(op, "report_error") == 0) {
            return d->monitoring->report_error;
        }
        if (strcmp(op, "send_metrics") == 0) {
            return d->monitoring->send_metrics;
        }
    }
    return NULL;
}

void dispatch_idem_key(const char *base, const char *provider, char out[64])
{
    unsigned char md[32];
    char hex[41];
    char small[256];
    int n = snprintf(small, sizeof(small), "%s|%s", base, provider);
    if (n >= 0 && (size_t)n < sizeof(small)) {
        crypto_sha256(small, (size_t)n, md);
    } else {
        struct agape_buf b;
        buf_init(&b, 1024);
        buf_printf(&b, "%s|%s", base, provider);
        crypto_sha256(buf_cstr(&b), b.len, md);
        buf_fini(&b);
    }
    crypto_hex(md, 20, hex);
    snprintf(out, 64, "agape-%s", hex);
}

/* Full jitter: a uniform delay in [0, min(max, base * 2^n)]. */
static int64_t backoff_ms(const struct dispatch_policy *pol, int n)
{
    int64_t cap = pol->backoff_base_ms;
    for (int i = 0; i < n && cap < pol->backoff_max_ms; i++) {
        cap *= 2;
    }
    if (cap > pol->backoff_max_ms) {
        cap = pol->backoff_max_ms;
    }
    uint32_t r = 0;
    if (cap <= 0 || crypto_random(&r, sizeof(r)) != AGAPE_OK) {
        return cap > 0 ? cap / 2 : 0;
    }
    return (int64_t)(r % (uint64_t)(cap + 1));
}

static void run_step(struct dispatch_op *op);
static void start_attempt(struct dispatch_op *op);

static void finish(struct dispatch_op *op)
{
    /* The steps are over: free the transfer's request and answer here, on
     * the thread that made them, rather than wherever the op is freed
     * (a free into another thread's heap takes that heap's lock). The
     * client is done with the transfer: this runs from its done callback,
     * or with no transfer under way. */
    client_xfer_reset(&op->xfer);
    op->done(op, op->arg);
}

static void end_call(struct dispatch_op *op)
{
    if (op->call_live) {
        host_call_fini(&op->hc);
        op->call_live = false;
    }
}

static void start_timer_cb(void *arg, bool cancelled)
{
    struct dispatch_op *op = arg;
    if (cancelled) {
        /* Shutting down before the attempt started: nothing was sent. */
        op->out.outcome = AGAPE_OUTCOME_UNAVAILABLE;
        snprintf(op->out.err, sizeof(op->out.err), "gateway shutting down");
        finish(op);
        return;
    }
    start_attempt(op);
}

/* Decide what follows an attempt that ended with `o`. */
static void after_attempt(struct dispatch_op *op, enum agape_outcome o)
{
    struct provider *p = op->chain[op->idx];
    struct provider_stats *st = p->policy;
    int64_t now = client_mono_ms();
    int64_t latency = now - op->attempt_started_ms;

    bool local = op->refused_here;
    if (st && op->holds_slot) {
        atomic_fetch_sub(&st->inflight, 1);
        /* What counts against the provider: no answer, or a "not now". */
        bool failure = o == AGAPE_OUTCOME_UNAVAILABLE || o == AGAPE_OUTCOME_UNKNOWN ||
                       o == AGAPE_OUTCOME_RATE_LIMITED || o == AGAPE_OUTCOME_AUTH;
        breaker_record(st->breaker, failure, now);
    }
    op->holds_slot = false;
    if (local) {
        metrics_short_circuit(p->name);
    } else {
        metrics_provider_call(p->name, op->op_name, dispatch_outcome_name(o),
                              (double)latency / 1000.0);
    }

    json_t *a = json_object();
    json_object_set_new(a, "provider", json_string(p->name));
    json_object_set_new(a, "outcome", json_string(dispatch_outcome_name(o)));
    json_object_set_new(a, "http_status",
                        op->last_http_status ? json_integer(op->last_http_status) : json_null());
    json_object_set_new(a, "latency_ms", json_integer(latency));
    if (o != AGAPE_OUTCOME_OK && op->hc.pub.err[0]) {
        json_object_set_new(a, "error", json_string(op->hc.pub.err));
    }
    json_array_append_new(op->out.attempts, a);
    if (st && !local) {
        atomic_fetch_add(&st->calls[o], 1);
    } else if (st) {
        atomic_fetch_add(&st->short_circuits, 1);
    }
    log_event(o == AGAPE_OUTCOME_OK ? AGAPE_LOG_DEBUG : AGAPE_LOG_WARN,
              &(struct log_fields){.request_id = op->request_id[0] ? op->request_id : NULL,
                                   .provider = p->name, .operation = op->op_name,
                                   .outcome = dispatch_outcome_name(o),
                                   .status = op->last_http_status,
                                   .latency_ms = (double)latency},
              "provider call %s", op->hc.pub.err[0] ? op->hc.pub.err : "done");

    op->out.outcome = o;
    op->out.provider = p;
    snprintf(op->out.err, sizeof(op->out.err), "%s", op->hc.pub.err);
    json_decref(op->out.result);
    op->out.result = json_incref(op->hc.result);
    int64_t retry_after = op->hc.pub.retry_after_ms;
    op->out.retry_after_ms = retry_after;
    end_call(op);

    bool retry_same = false;
    bool fail_over = false;
    switch (o) {
    case AGAPE_OUTCOME_OK:
    case AGAPE_OUTCOME_DECLINED:
    case AGAPE_OUTCOME_INVALID:
    case AGAPE_OUTCOME_COUNT:
        break;
    case AGAPE_OUTCOME_AUTH:
        fail_over = true;
        break;
    case AGAPE_OUTCOME_UNKNOWN:
        if (op->money) {
            op->out.moves_money_unknown = true;
            break;
        }
        retry_same = true;
        fail_over = true;
        break;
    case AGAPE_OUTCOME_RATE_LIMITED:
    case AGAPE_OUTCOME_UNAVAILABLE:
        retry_same = true;
        fail_over = true;
        break;
    }

    if (op->refused_here) {
        retry_same = false;
        op->refused_here = false;
    }
    if (retry_same && op->tries <= op->pol.max_retries) {
        int64_t wait = backoff_ms(&op->pol, op->tries - 1);
        if (retry_after > wait) {
            wait = retry_after;
        }
        /* Only if the wait leaves time for an attempt inside the deadline. */
        if (now + wait + 50 < op->deadline) {
            if (st) {
                atomic_fetch_add(&st->retries, 1);
            }
            metrics_retry(p->name);
            client_defer(op->cl, wait, start_timer_cb, op);
            return;
        }
    }
    if (fail_over && op->idx + 1 < op->n && now + 50 < op->deadline) {
        if (st) {
            atomic_fetch_add(&st->failovers, 1);
        }
        metrics_failover(p->name);
        op->idx++;
        op->tries = 0;
        start_attempt(op);
        return;
    }
    finish(op);
}

static void delayed_done_cb(void *arg, bool cancelled)
{
    struct dispatch_op *op = arg;
    (void)cancelled; /* the result is already known; report it either way */
    after_attempt(op, op->hc.pub.outcome);
}

static void xfer_done(struct client_xfer *x, void *arg)
{
    struct dispatch_op *op = arg;
    switch (x->result) {
    case CLIENT_DONE:
        op->last_http_status = x->status;
        host_call_answer(&op->hc);
        run_step(op);
        return;
    case CLIENT_NOT_SENT:
        snprintf(op->hc.pub.err, sizeof(op->hc.pub.err), "not sent: %.200s", x->err);
        after_attempt(op, AGAPE_OUTCOME_UNAVAILABLE);
        return;
    case CLIENT_NO_ANSWER:
        snprintf(op->hc.pub.err, sizeof(op->hc.pub.err), "no answer: %.200s", x->err);
        after_attempt(op, AGAPE_OUTCOME_UNKNOWN);
        return;
    }
}

static void run_step(struct dispatch_op *op)
{
    agape_step_fn fn = dispatch_find_op(op->chain[op->idx], op->op_name);
    enum agape_step s = host_call_step(&op->hc, fn);
    if (s == AGAPE_STEP_SEND) {
        int64_t left = op->deadline - client_mono_ms();
        if (left < 1) {
            left = 1;
        }
        op->xfer.timeout_ms = op->pol.attempt_timeout_ms < left ? op->pol.attempt_timeout_ms : left;
        op->xfer.connect_timeout_ms =
            op->pol.connect_timeout_ms < op->xfer.timeout_ms ? op->pol.connect_timeout_ms
                                                             : op->xfer.timeout_ms;
        op->xfer.done = xfer_done;
        op->xfer.arg = op;
        client_submit(op->cl, &op->xfer, 0);
        return;
    }
    if (s == AGAPE_STEP_DONE && op->hc.pub.delay_ms > 0) {
        client_defer(op->cl, op->hc.pub.delay_ms, delayed_done_cb, op);
        return;
    }
    after_attempt(op, op->hc.pub.outcome);
}

static void start_attempt(struct dispatch_op *op)
{
    struct provider *p = op->chain[op->idx];
    char key[64];
    dispatch_idem_key(op->idem_base, p->name, key);
    /* A shallow copy: the plugin reads the input (it is const to it) and
     * only the key is added, so the members can be shared. */
    json_t *input = json_copy(op->input);
    if (input == NULL) {
        op->out.outcome = AGAPE_OUTCOME_UNAVAILABLE;
        snprintf(op->out.err, sizeof(op->out.err), "out of memory");
        finish(op);
        return;
    }
    json_object_set_new(input, "idempotency_key", json_string(key));
    op->tries++;
    op->last_http_status = 0;
    op->attempt_started_ms = client_mono_ms();
    client_xfer_reset(&op->xfer);
    host_call_init(&op->hc, p, op->op_name, input, &op->xfer);
    json_decref(input);
    op->call_live = true;
    struct provider_stats *st = p->policy;
    if (st) {
        /* An open circuit: skip the provider at once, nothing is sent, so
         * failing over is safe (an `unknown` money op never gets here: it
         * ended the op). */
        if (!breaker_allow(st->breaker, client_mono_ms())) {
            snprintf(op->hc.pub.err, sizeof(op->hc.pub.err), "circuit open for %s", p->name);
            op->refused_here = true;
            after_attempt(op, AGAPE_OUTCOME_UNAVAILABLE);
            return;
        }
        /* The bulkhead: a slow provider cannot take every connection. Over
         * its cap the attempt is refused before anything is sent, so failing
         * over is safe. */
        if (atomic_fetch_add(&st->inflight, 1) >= st->max_inflight) {
            atomic_fetch_sub(&st->inflight, 1);
            breaker_cancel(st->breaker, client_mono_ms());
            snprintf(op->hc.pub.err, sizeof(op->hc.pub.err),
                     "%d calls already in flight to %s (max_inflight)", st->max_inflight,
                     p->name);
            op->refused_here = true;
            after_attempt(op, AGAPE_OUTCOME_UNAVAILABLE);
            return;
        }
        op->holds_slot = true;
    }
    if (dispatch_find_op(p, op->op_name) == NULL) {
        snprintf(op->hc.pub.err, sizeof(op->hc.pub.err), "provider %s does not support %s",
                 p->name, op->op_name);
        after_attempt(op, AGAPE_OUTCOME_INVALID);
        return;
    }
    run_step(op);
}

struct dispatch_op *dispatch_new(struct client *cl, const struct dispatch_policy *pol,
                                 const char *op_name, json_t *input, struct provider **chain,
                                 size_t n, const char *idem_base, bool money,
                                 dispatch_done_fn done, void *arg)
{
    struct dispatch_op *op = calloc(1, sizeof(*op));
    if (op == NULL || n == 0) {
        free(op);
        return NULL;
    }
    op->out.attempts = json_array();
    if (op->out.attempts == NULL) {
        free(op);
        return NULL;
    }
    op->cl = cl;
    op->pol = *pol;
    snprintf(op->op_name, sizeof(op->op_name), "%s", op_name);
    op->input = json_incref(input);
    op->n = n > DISPATCH_MAX_CHAIN ? DISPATCH_MAX_CHAIN : n;
    memcpy(op->chain, chain, op->n * sizeof(chain[0]));
    snprintf(op->idem_base, sizeof(op->idem_base), "%s", idem_base);
    op->money = money;
    op->done = done;
    op->arg = arg;
    op->out.outcome = AGAPE_OUTCOME_UNAVAILABLE;
    op->out.retry_after_ms = -1;
    client_xfer_init(&op->xfer);
    return op;
}

void dispatch_set_request_id(struct dispatch_op *op, const char *request_id)
{
    snprintf(op->request_id, sizeof(op->request_id), "%s", request_id ? request_id : "");
}

void dispatch_go(struct dispatch_op *op)
{
    /* The deadline runs from the start, not from when the op was built. */
    op->started_ms = client_mono_ms();
    op->deadline = op->started_ms + op->pol.deadline_ms;
    client_defer(op->cl, 0, start_timer_cb, op);
}

struct dispatch_op *dispatch_start(struct client *cl, const struct dispatch_policy *pol,
                                   const char *op_name, json_t *input, struct provider **chain,
                                   size_t n, const char *idem_base, bool money,
                                   dispatch_done_fn done, void *arg)
{
    struct dispatch_op *op =
        dispatch_new(cl, pol, op_name, input, chain, n, idem_base, money, done, arg);
    if (op != NULL) {
        dispatch_go(op);
    }
    return op;
}

const struct dispatch_outcome *dispatch_result(const struct dispatch_op *op)
{
    return &op->out;
}

void dispatch_free(struct dispatch_op *op)
{
    if (op == NULL) {
        return;
    }
    end_call(op);
    client_xfer_reset(&op->xfer);
    json_decref(op->input);
    json_decref(op->out.result);
    json_decref(op->out.attempts);
    free(op);
}
