/* monitor — the monitor thread, self-reports, circuit watching and the
 * "error" kind (see monitor.h).
 *
 * Why self-reports go through an in-memory queue: monitor_report may be
 * called from anywhere — the client thread, a store writer callback — where
 * committing (or even starting a commit whose callback would re-enter the
 * writer) is not allowed. The monitor thread turns the queue into one
 * outbox batch per tick with store_commit_async.
 *
 * Why circuits are watched by polling rather than hooked: the breaker logs
 * its transitions under its own lock and knows nothing of the store; the
 * snapshot's opened_at changes at every opening (half_open → open included),
 * so a look every MONITOR_CIRCUIT_CHECK_MS sees each one (an open period
 * lasts seconds), with no new dependency in dispatch or breaker. */
#include "monitor.h"

#include "analytics.h"
#include "breaker.h"
#include "buf.h"
#include "events.h"
#include "flush.h"
#include "log.h"
#include "route.h"
#include "metrics.h"
#include "script_rules.h"
#include "store_keys.h"
#include "worker.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIMIT_KEYS_MAX 256
#define ERROR_GRAVE_MS 1000
#define ERROR_CHAIN_MAX (DISPATCH_MAX_CHAIN * 4)
#define ERROR_INFLIGHT_MAX 1000 /* error items being delivered before the handler says BUSY */

int64_t monitor_conf_int(const struct conf *c, const char *key, int64_t dflt, int64_t min,
                         int64_t max, bool warn)
{
    json_t *v = c ? json_object_get(c->raw, key) : NULL;
    int64_t n = dflt;
    if (json_is_integer(v)) {
        n = (int64_t)json_integer_value(v);
    } else if (json_is_real(v)) {
        n = (int64_t)json_real_value(v);
    } else if (json_is_string(v)) {
        /* env() gives strings */
        char *end = NULL;
        long long x = strtoll(json_string_value(v), &end, 10);
        if (end != NULL && *end == '\0' && json_string_length(v) > 0) {
            n = x;
        } else if (warn) {
            log_warn("%s must be a number; using %lld", key, (long long)dflt);
        }
    } else if (v != NULL && warn) {
        log_warn("%s must be a number; using %lld", key, (long long)dflt);
    }
    if (n < min || n > max) {
        if (warn) {
            log_warn("%s = %lld is outside %lld..%lld; using %lld", key, (long long)n,
                     (long long)min, (long long)max, (long long)(n < min ? min : max));
        }
        n = n < min ? min : max;
    }
    return n;
}

/* ---- state ---------------------------------------------------------------- */

struct er_call {
    struct er_job *job;
    struct provider *p;
    struct dispatch_op *op;
    int64_t started_ms;
};

/* One "error" item being delivered. */
struct er_job {
    uint8_t key[16];
    json_t *item;
    json_t *retry;
    int attempts;
    int pending;
    bool reroute;
    bool rate_limited;
    char err[AGAPE_ERR_SIZE];
    struct er_call calls[ERROR_CHAIN_MAX];
    int ncalls;
    int64_t dead_ms;
    struct er_job *next;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    bool running;
    bool stop;
    struct app *app;
    int max_attempts;
    int64_t backoff_ms;
    int64_t backoff_max_ms;
    int64_t limit_ms;
    struct dispatch_policy pol;
    json_t *reports;        /* queued self-report items */
    json_t *limits;         /* "source|provider" → mono ms of the last report */
    int64_t *opened;        /* per provider: the last opened_at_ms seen */
    size_t n_opened;
    int64_t next_circuit_ms;
    struct er_job *grave;
    int inflight;           /* error items taken and not yet settled */
    unsigned long long st_err[3]; /* delivered, rescheduled, dropped */
    unsigned long long st_refused;
    unsigned long long st_self_queued;
    unsigned long long st_self_limited;
} mon = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

enum { ER_DELIVERED = 0, ER_RESCHEDULED = 1, ER_DROPPED = 2 };

/* ---- self-reports ------------------------------------------------------------ */

static const char *level_name(enum agape_log_level l)
{
    switch (l) {
    case AGAPE_LOG_DEBUG:
        return "debug";
    case AGAPE_LOG_INFO:
        return "info";
    case AGAPE_LOG_WARN:
        return "warning";
    default:
        return "error";
    }
}

/* A redacted copy of s, cut to max bytes on a UTF-8 boundary. */
static json_t *redacted(const char *s, size_t max)
{
    struct agape_buf b;
    buf_init(&b, 0);
    buf_adds(&b, s);
    log_redact(&b);
    size_t n = b.len;
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)b.data[n] & 0xc0) == 0x80) {
            n--;
        }
    }
    json_t *v = b.error == AGAPE_OK ? json_stringn(buf_cstr(&b), n) : NULL;
    buf_fini(&b);
    return v;
}

void monitor_report(enum agape_log_level level, json_t *tags, const char *fmt, ...)
{
    struct agape_buf msg;
    buf_init(&msg, 64 * 1024);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    const char *source = json_string_value(json_object_get(tags, "source"));
    const char *provider = json_string_value(json_object_get(tags, "provider"));
    char lkey[160];
    snprintf(lkey, sizeof(lkey), "%.60s|%.60s", source ? source : "", provider ? provider : "");
    int64_t now = client_mono_ms();

    pthread_mutex_lock(&mon.mu);
    if (!mon.running || mon.stop) {
        pthread_mutex_unlock(&mon.mu);
        buf_fini(&msg);
        return;
    }
    json_t *last = json_object_get(mon.limits, lkey);
    if ((last != NULL && now - json_integer_value(last) < mon.limit_ms) ||
        json_array_size(mon.reports) >= MONITOR_REPORTS_MAX) {
        mon.st_self_limited++;
        pthread_mutex_unlock(&mon.mu);
        buf_fini(&msg);
        return;
    }
    if (json_object_size(mon.limits) >= LIMIT_KEYS_MAX) {
        /* Forget the keys whose interval is over; the table stays small. */
        void *tmp;
        const char *k;
        json_t *v;
        json_object_foreach_safe(mon.limits, tmp, k, v) {
            if (now - json_integer_value(v) >= mon.limit_ms) {
                json_object_del(mon.limits, k);
            }
        }
    }
    json_object_set_new(mon.limits, lkey, json_integer((json_int_t)now));
    mon.st_self_queued++;
    pthread_mutex_unlock(&mon.mu);

    /* Build the report outside the lock. */
    char id[33];
    json_t *item = NULL;
    if (events_new_error_id(id) == AGAPE_OK) {
        json_t *clean = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(tags, k, v) {
            if (json_is_string(v)) {
                json_object_set_new(clean, k, redacted(json_string_value(v), 200));
            } else if (json_is_integer(v) || json_is_boolean(v)) {
                json_object_set(clean, k, v);
            }
        }
        json_object_set_new(clean, "gateway", json_string("agape"));
        json_t *in = json_pack("{s:o, s:s, s:o?}", "message",
                               redacted(buf_cstr(&msg), MONITOR_MESSAGE_MAX), "level",
                               level_name(level), "tags", clean);
        int64_t wall = client_wall_ms();
        json_t *input = in ? events_error_input(in, id, wall) : NULL;
        item = input ? events_error_item(input, id, wall, true) : NULL;
        json_decref(input);
        json_decref(in);
    }
    buf_fini(&msg);
    if (item == NULL) {
        return;
    }
    pthread_mutex_lock(&mon.mu);
    if (mon.running && !mon.stop) {
        json_array_append(mon.reports, item);
        pthread_cond_signal(&mon.cv);
    }
    pthread_mutex_unlock(&mon.mu);
    json_decref(item);
}

static void reports_committed(int rc, void *arg)
{
    (void)arg;
    if (rc == AGAPE_OK) {
        worker_notify();
    } else {
        log_msg(AGAPE_LOG_WARN, NULL, "monitor: self-reports could not be queued (rc %d)", rc);
    }
}

/* Monitor thread: queue the self-reports as outbox items. */
static void commit_reports(void)
{
    pthread_mutex_lock(&mon.mu);
    json_t *list = mon.reports;
    mon.reports = json_array();
    pthread_mutex_unlock(&mon.mu);
    if (json_array_size(list) > 0) {
        struct store_batch *b = store_batch_new();
        int64_t now = client_wall_ms();
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            uint8_t key[16];
            char *text = json_dumps(item, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (text != NULL && script_rules_outbox_key(key, now) == AGAPE_OK) {
                store_batch_put(b, STORE_OUTBOX, key, sizeof(key), text, strlen(text));
            }
            free(text);
        }
        store_commit_async(mon.app->store, b, reports_committed, NULL);
    }
    json_decref(list);
}

/* Monitor thread: report circuits that opened since the last look. */
static void check_circuits(void)
{
    struct registry *reg = mon.app->reg;
    for (size_t i = 0; i < reg->n_providers && i < mon.n_opened; i++) {
        struct provider *p = reg->providers[i];
        struct breaker_snapshot snap;
        memset(&snap, 0, sizeof(snap));
        dispatch_circuit(p, &snap);
        if (snap.opened_at_ms == mon.opened[i]) {
            continue;
        }
        mon.opened[i] = snap.opened_at_ms;
        if (snap.opened_at_ms == 0) {
            continue;
        }
        json_t *tags = json_pack("{s:s, s:s}", "source", "circuit", "provider", p->name);
        monitor_report(AGAPE_LOG_ERROR, tags,
                       "provider %s is failing: its circuit opened (%d consecutive failures; "
                       "%d of the last %d calls failed); calls skip it for a while",
                       p->name, snap.consecutive_failures, snap.window_failures,
                       snap.window_calls);
        json_decref(tags);
    }
}

/* ---- the "error" kind ------------------------------------------------------- */

static void job_free(struct er_job *j)
{
    for (int i = 0; i < j->ncalls; i++) {
        dispatch_free(j->calls[i].op);
    }
    json_decref(j->item);
    json_decref(j->retry);
    free(j);
}

static void retry_on(struct er_job *j, const char *provider)
{
    size_t i;
    json_t *v;
    json_array_foreach(j->retry, i, v) {
        if (strcmp(json_string_value(v), provider) == 0) {
            return;
        }
    }
    json_array_append_new(j->retry, json_string(provider));
}

static int finalize_into(struct store_batch *b, struct er_job *j)
{
    if (json_array_size(j->retry) == 0 && !j->reroute) {
        store_batch_del(b, STORE_OUTBOX, j->key, sizeof(j->key));
        return ER_DELIVERED;
    }
    int attempts = j->attempts + 1;
    const char *id = json_string_value(json_object_get(j->item, "id"));
    if (attempts >= mon.max_attempts) {
        store_batch_del(b, STORE_OUTBOX, j->key, sizeof(j->key));
        log_msg(AGAPE_LOG_WARN, NULL,
                "monitor: error %s is dropped after %d attempts; last error: %s",
                id ? id : "?", attempts, j->err[0] ? j->err : "?");
        return ER_DROPPED;
    }
    int64_t wait = events_backoff_ms(attempts, mon.backoff_ms, mon.backoff_max_ms);
    if (j->rate_limited && wait < ANALYTICS_RATE_LIMITED_MIN_MS) {
        wait = ANALYTICS_RATE_LIMITED_MIN_MS;
    }
    json_t *copy = events_retry_item(j->item, attempts, j->retry, j->reroute, j->err);
    char *text = copy ? json_dumps(copy, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(copy);
    uint8_t nk[16];
    if (text != NULL && script_rules_outbox_key(nk, client_wall_ms() + wait) == AGAPE_OK) {
        store_batch_put(b, STORE_OUTBOX, nk, sizeof(nk), text, strlen(text));
        store_batch_del(b, STORE_OUTBOX, j->key, sizeof(j->key));
    }
    free(text);
    return ER_RESCHEDULED;
}

/* Writer thread. */
static void job_committed(int rc, void *arg)
{
    struct er_job *j = arg;
    if (rc != AGAPE_OK) {
        log_msg(AGAPE_LOG_ERROR, NULL,
                "monitor: the outcome of error %s could not be recorded (rc %d); it is sent "
                "again",
                json_string_value(json_object_get(j->item, "id")), rc);
    }
    worker_item_release(j->key);
    pthread_mutex_lock(&mon.mu);
    mon.inflight--;
    j->dead_ms = client_mono_ms();
    j->next = mon.grave;
    mon.grave = j;
    pthread_mutex_unlock(&mon.mu);
}

static void job_settle(struct er_job *j)
{
    struct store_batch *b = store_batch_new();
    int f = finalize_into(b, j);
    pthread_mutex_lock(&mon.mu);
    mon.st_err[f]++;
    pthread_mutex_unlock(&mon.mu);
    store_commit_async(mon.app->store, b, job_committed, j);
}

/* Client thread. */
static void reported(struct dispatch_op *op, void *arg)
{
    struct er_call *c = arg;
    struct er_job *j = c->job;
    const struct dispatch_outcome *o = dispatch_result(op);
    enum agape_outcome oc = o->outcome;
    const char *id = json_string_value(json_object_get(j->item, "id"));
    log_event(oc == AGAPE_OUTCOME_OK ? AGAPE_LOG_INFO : AGAPE_LOG_WARN,
              &(struct log_fields){.provider = c->p->name, .operation = "report_error",
                                   .outcome = dispatch_outcome_name(oc),
                                   .latency_ms = (double)(client_mono_ms() - c->started_ms)},
              "error %s%s%s", id ? id : "?", o->err[0] ? ": " : "", o->err);
    pthread_mutex_lock(&mon.mu);
    c->op = op;
    if (oc == AGAPE_OUTCOME_INVALID || oc == AGAPE_OUTCOME_DECLINED) {
        mon.st_refused++;
    } else if (oc != AGAPE_OUTCOME_OK) {
        retry_on(j, c->p->name);
        snprintf(j->err, sizeof(j->err), "%.40s: %.200s", c->p->name,
                 o->err[0] ? o->err : dispatch_outcome_name(oc));
        j->rate_limited = j->rate_limited || oc == AGAPE_OUTCOME_RATE_LIMITED;
    }
    bool last = --j->pending == 0;
    pthread_mutex_unlock(&mon.mu);
    if (last) {
        job_settle(j);
    }
}

static bool has_report_error(const struct provider *p)
{
    return (p->plugin->desc->kinds & AGAPE_KIND_MONITORING) &&
           dispatch_find_op(p, "report_error") != NULL;
}

/* The providers to report to now. */
static size_t error_choose(struct app *app, struct er_job *j, struct provider **out, size_t cap)
{
    json_t *list = json_object_get(j->item, "providers");
    json_t *err = json_object_get(j->item, "error");
    json_t *ret = NULL;
    bool stored = json_is_array(list);
    if (!stored) {
        bool failed = false;
        char why[AGAPE_ERR_SIZE];
        ret = route_names(app, AGAPE_KIND_MONITORING, has_report_error, "route_error", err,
                          &failed, why, sizeof(why));
        if (ret == NULL) {
            j->reroute = true;
            snprintf(j->err, sizeof(j->err), "%s",
                     failed ? why : "no usable monitoring provider is configured");
            if (failed) {
                log_msg(AGAPE_LOG_ERROR, NULL, "monitor: %s; the error waits", j->err);
            }
            return 0;
        }
        list = ret;
    }
    /* A provider's own outage is not reported to itself. */
    const char *about = json_is_true(json_object_get(j->item, "self"))
                            ? json_string_value(json_object_get(
                                  json_object_get(err, "tags"), "provider"))
                            : NULL;
    size_t n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        const char *name = json_string_value(v);
        struct provider *p = name ? registry_find(app->reg, name) : NULL;
        if (p == NULL || !has_report_error(p)) {
            log_msg(AGAPE_LOG_WARN, NULL,
                    "monitor: %s names '%s', which is not a monitoring provider with "
                    "report_error; skipped",
                    stored ? "the error" : "route_error", name ? name : "(not a string)");
            continue;
        }
        if (about != NULL && strcmp(about, p->name) == 0) {
            continue;
        }
        if (!p->usable) {
            if (stored) {
                retry_on(j, p->name);
                snprintf(j->err, sizeof(j->err), "provider %s is not usable", p->name);
            }
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < n; k++) {
            dup = dup || out[k] == p;
        }
        if (!dup && n < cap) {
            out[n++] = p;
        }
    }
    json_decref(ret);
    return n;
}

static int error_handle(struct app *app, const uint8_t key[16], json_t *item, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mon.mu);
    bool busy = mon.stop || mon.inflight >= ERROR_INFLIGHT_MAX;
    pthread_mutex_unlock(&mon.mu);
    if (busy) {
        return WORKER_ITEM_BUSY;
    }
    struct er_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return WORKER_ITEM_BUSY;
    }
    memcpy(j->key, key, sizeof(j->key));
    j->item = json_incref(item);
    j->retry = json_array();
    j->attempts = (int)json_integer_value(json_object_get(item, "attempts"));
    json_t *input = json_object_get(item, "error");
    if (!json_is_object(input)) {
        /* Unreadable: nothing can ever send it. */
        log_msg(AGAPE_LOG_WARN, NULL, "monitor: an error item without its report is dropped");
        struct store_batch *b = store_batch_new();
        store_batch_del(b, STORE_OUTBOX, key, 16);
        job_free(j);
        int rc = store_commit(app->store, b);
        return rc == AGAPE_OK ? WORKER_ITEM_DONE : rc;
    }
    struct provider *to[ERROR_CHAIN_MAX];
    size_t n = error_choose(app, j, to, ERROR_CHAIN_MAX);
    if (n == 0) {
        struct store_batch *b = store_batch_new();
        int f = finalize_into(b, j);
        int rc = store_commit(app->store, b);
        if (rc == AGAPE_OK) {
            pthread_mutex_lock(&mon.mu);
            mon.st_err[f]++;
            pthread_mutex_unlock(&mon.mu);
        }
        job_free(j);
        return rc == AGAPE_OK ? WORKER_ITEM_DONE : rc;
    }
    j->pending = (int)n;
    j->ncalls = (int)n;
    pthread_mutex_lock(&mon.mu);
    mon.inflight++;
    pthread_mutex_unlock(&mon.mu);
    for (size_t i = 0; i < n; i++) {
        j->calls[i].job = j;
        j->calls[i].p = to[i];
    }
    const char *id = json_string_value(json_object_get(item, "id"));
    for (size_t i = 0; i < n; i++) {
        struct er_call *c = &j->calls[i];
        c->started_ms = client_mono_ms();
        /* The call may end (and the job settle) before dispatch_start
         * returns: nothing of j is touched after the last start. */
        struct dispatch_op *op = dispatch_start(app->client, &mon.pol, "report_error", input,
                                                &c->p, 1, id ? id : "error", false, reported, c);
        if (op == NULL) {
            pthread_mutex_lock(&mon.mu);
            retry_on(j, c->p->name);
            snprintf(j->err, sizeof(j->err), "out of memory starting the call");
            bool last = --j->pending == 0;
            pthread_mutex_unlock(&mon.mu);
            if (last) {
                job_settle(j);
            }
        }
    }
    return WORKER_ITEM_TAKEN;
}

/* ---- the thread ---------------------------------------------------------------- */

static void free_grave(bool all)
{
    struct er_job *dead = NULL;
    int64_t now = client_mono_ms();
    pthread_mutex_lock(&mon.mu);
    struct er_job **pp = &mon.grave;
    while (*pp != NULL) {
        struct er_job *j = *pp;
        if (all || now - j->dead_ms >= ERROR_GRAVE_MS) {
            *pp = j->next;
            j->next = dead;
            dead = j;
        } else {
            pp = &j->next;
        }
    }
    pthread_mutex_unlock(&mon.mu);
    while (dead != NULL) {
        struct er_job *j = dead;
        dead = j->next;
        job_free(j);
    }
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *monitor_main(void *arg)
{
    (void)arg;
    for (;;) {
        analytics_tick();
        flush_tick();
        int64_t now = client_mono_ms();
        if (now >= mon.next_circuit_ms) {
            mon.next_circuit_ms = now + MONITOR_CIRCUIT_CHECK_MS;
            check_circuits();
        }
        commit_reports();
        free_grave(false);
        pthread_mutex_lock(&mon.mu);
        if (!mon.stop && json_array_size(mon.reports) == 0) {
            struct timespec ts;
            deadline_in(&ts, MONITOR_TICK_MS);
            pthread_cond_timedwait(&mon.cv, &mon.mu, &ts);
        }
        bool stop = mon.stop;
        pthread_mutex_unlock(&mon.mu);
        if (stop) {
            break;
        }
    }
    return NULL;
}

int monitor_start(struct app *app)
{
    const struct conf *c = app->conf;
    int rc = analytics_start(app);
    if (rc == AGAPE_OK) {
        rc = flush_start(app);
    }
    if (rc == AGAPE_OK) {
        rc = worker_register_kind("error", error_handle, NULL);
        if (rc != AGAPE_OK) {
            log_error("monitor: the \"error\" kind could not be registered (rc %d)", rc);
        }
    }
    if (rc != AGAPE_OK) {
        return rc;
    }
    pthread_mutex_lock(&mon.mu);
    mon.app = app;
    mon.max_attempts = (int)monitor_conf_int(c, "error_max_attempts", 10, 1, 1000, true);
    mon.backoff_ms = monitor_conf_int(c, "error_backoff_ms", 1000, 1, 3600000, true);
    mon.backoff_max_ms = monitor_conf_int(c, "error_backoff_max_ms", 300000, 1, 86400000, true);
    if (mon.backoff_max_ms < mon.backoff_ms) {
        mon.backoff_max_ms = mon.backoff_ms;
    }
    mon.limit_ms =
        monitor_conf_int(c, "self_report_interval_seconds", 60, 0, 86400, true) * 1000;
    mon.pol = (struct dispatch_policy){
        .max_retries = c->max_retries,
        .backoff_base_ms = c->backoff_base_ms,
        .backoff_max_ms = c->backoff_max_ms,
        .connect_timeout_ms = c->connect_timeout_ms,
        .attempt_timeout_ms = c->attempt_timeout_ms,
        .deadline_ms = c->payment_deadline_ms,
    };
    mon.reports = json_array();
    mon.limits = json_object();
    mon.n_opened = app->reg->n_providers;
    mon.opened = calloc(mon.n_opened ? mon.n_opened : 1, sizeof(*mon.opened));
    for (size_t i = 0; mon.opened != NULL && i < mon.n_opened; i++) {
        struct breaker_snapshot snap;
        memset(&snap, 0, sizeof(snap));
        dispatch_circuit(app->reg->providers[i], &snap);
        mon.opened[i] = snap.opened_at_ms;
    }
    if (mon.opened == NULL) {
        mon.n_opened = 0;
    }
    mon.next_circuit_ms = client_mono_ms() + MONITOR_CIRCUIT_CHECK_MS;
    pthread_condattr_t ca;
    pthread_cond_destroy(&mon.cv);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&mon.cv, &ca);
    pthread_condattr_destroy(&ca);
    mon.stop = false;
    mon.running = true;
    if (pthread_create(&mon.th, NULL, monitor_main, NULL) != 0) {
        mon.running = false;
        pthread_mutex_unlock(&mon.mu);
        log_error("monitor: cannot start the thread");
        return AGAPE_ERROR;
    }
    pthread_mutex_unlock(&mon.mu);
    return AGAPE_OK;
}

void monitor_stop(void)
{
    pthread_mutex_lock(&mon.mu);
    if (!mon.running) {
        pthread_mutex_unlock(&mon.mu);
        return;
    }
    mon.stop = true;
    pthread_cond_signal(&mon.cv);
    pthread_mutex_unlock(&mon.mu);
    pthread_join(mon.th, NULL);
    analytics_stop();
    flush_stop();
}

void monitor_free(void)
{
    analytics_free();
    flush_free();
    free_grave(true);
    pthread_mutex_lock(&mon.mu);
    json_decref(mon.reports);
    json_decref(mon.limits);
    mon.reports = NULL;
    mon.limits = NULL;
    free(mon.opened);
    mon.opened = NULL;
    mon.n_opened = 0;
    mon.running = false;
    mon.app = NULL;
    pthread_mutex_unlock(&mon.mu);
}

/* ---- /metrics ---------------------------------------------------------------- */

static void counter_line(struct agape_buf *out, const char *name, const char *label,
                         const char *value, unsigned long long v)
{
    buf_printf(out, "%s{%s=\"", name, label);
    metrics_escape(out, value);
    buf_printf(out, "\"} %llu\n", v);
}

void monitor_gauges(struct agape_buf *out)
{
    struct analytics_stats as;
    analytics_get_stats(&as);
    pthread_mutex_lock(&mon.mu);
    unsigned long long er[3] = {mon.st_err[0], mon.st_err[1], mon.st_err[2]};
    unsigned long long refused = mon.st_refused;
    unsigned long long queued = mon.st_self_queued;
    unsigned long long limited = mon.st_self_limited;
    pthread_mutex_unlock(&mon.mu);

    metrics_header(out, "agape_events_total", "counter",
                   "Analytics events by fate: delivered, rescheduled (for another attempt), "
                   "dropped (after event_max_attempts), refused (by a provider, as invalid).");
    counter_line(out, "agape_events_total", "outcome", "delivered", as.delivered);
    counter_line(out, "agape_events_total", "outcome", "rescheduled", as.rescheduled);
    counter_line(out, "agape_events_total", "outcome", "dropped", as.dropped);
    counter_line(out, "agape_events_total", "outcome", "refused", as.refused);
    metrics_header(out, "agape_analytics_batches_total", "counter",
                   "track_batch calls made to analytics providers.");
    buf_printf(out, "agape_analytics_batches_total %llu\n", as.batches);
    metrics_gauge_header(out, "agape_events_held", "Analytics events in memory now (waiting "
                                                   "for their batch or their answer).");
    buf_printf(out, "agape_events_held %llu\n", as.held);
    metrics_header(out, "agape_errors_total", "counter",
                   "Error reports by fate: delivered, rescheduled, dropped (after "
                   "error_max_attempts), refused (by a provider, as invalid).");
    counter_line(out, "agape_errors_total", "outcome", "delivered", er[ER_DELIVERED]);
    counter_line(out, "agape_errors_total", "outcome", "rescheduled", er[ER_RESCHEDULED]);
    counter_line(out, "agape_errors_total", "outcome", "dropped", er[ER_DROPPED]);
    counter_line(out, "agape_errors_total", "outcome", "refused", refused);
    metrics_header(out, "agape_self_reports_total", "counter",
                   "The gateway's own error reports: queued, or limited (over "
                   "self_report_interval_seconds).");
    counter_line(out, "agape_self_reports_total", "outcome", "queued", queued);
    counter_line(out, "agape_self_reports_total", "outcome", "limited", limited);
    json_t *fc = flush_counts();
    metrics_header(out, "agape_metrics_flushes_total", "counter",
                   "Metrics flushes to monitoring providers, by outcome.");
    const char *k;
    json_t *v;
    json_object_foreach(fc, k, v) {
        static const char *const outs[] = {"ok", "failed", NULL};
        for (int i = 0; outs[i]; i++) {
            buf_adds(out, "agape_metrics_flushes_total{provider=\"");
            metrics_escape(out, k);
            buf_printf(out, "\",outcome=\"%s\"} %lld\n", outs[i],
                       (long long)json_integer_value(json_object_get(v, outs[i])));
        }
    }
    json_decref(fc);
}
