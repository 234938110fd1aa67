/* breaker — see breaker.h. One mutex per breaker guards everything; log
 * lines are composed under it but written after it is released, so a slow
 * stderr never holds the lock a server thread may be waiting on. */
#include "breaker.h"

#include <agape/plugin.h>

#include "log.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BREAKER_NAME_MAX 64
#define BREAKER_MSG_MAX 160

struct breaker {
    pthread_mutex_t lock;
    char name[BREAKER_NAME_MAX];
    struct breaker_config cfg;
    enum breaker_state state;

    /* closed: the sliding window, a ring of the last cfg.window results */
    unsigned char *ring;  /* 1 = failure */
    int head;             /* next slot to write */
    int count;            /* results in the ring */
    int fails;            /* failures in the ring */
    int run;              /* consecutive failures */

    /* open / half-open */
    int64_t opened_at;
    int inflight;         /* half-open admissions not yet recorded */
    int successes;        /* half-open successes so far */
    int64_t last_admit;   /* last half-open admission, for the lease */
    uint64_t transitions;
};

/* A transition to log once the lock is released. */
struct note {
    enum agape_log_level level;
    char msg[BREAKER_MSG_MAX];
};

struct breaker_config breaker_config_defaults(void)
{
    struct breaker_config c = {
        .failure_run = 5,
        .window = 20,
        .failure_ratio = 0.5,
        .min_calls = 10,
        .open_ms = 5000,
        .half_open_probes = 2,
        .probe_successes = 2,
        .probe_lease_ms = 30000,
    };
    return c;
}

static bool config_valid(const struct breaker_config *c)
{
    return c->failure_run >= 0 && c->window >= 1 && c->window <= BREAKER_MAX_WINDOW &&
           c->failure_ratio > 0.0 && c->failure_ratio <= 1.0 && c->min_calls >= 1 &&
           c->min_calls <= c->window && c->open_ms >= 1 && c->half_open_probes >= 1 &&
           c->probe_successes >= 1 && c->probe_lease_ms >= 1;
}

/* ---------------------------------------------------------------------- */
/* Configuration                                                          */

static const char *const known_keys[] = {
    "failure_run", "window", "failure_ratio", "min_calls",
    "open_seconds", "half_open_probes", "probe_successes", NULL,
};

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "a table";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "nil";
    }
    return "a value";
}

/* An integer key in [min, max]. Lua hands integral floats (1e3) over as
 * reals, so those are accepted too. Absent: *present false, AGAPE_OK. */
static int read_int(const json_t *tab, const char *key, long long min, long long max,
                    long long *out, bool *present, char *err, size_t errlen)
{
    const json_t *v = json_object_get(tab, key);
    long long x;

    *present = false;
    if (v == NULL) {
        return AGAPE_OK;
    }
    if (json_is_integer(v)) {
        x = (long long)json_integer_value(v);
    } else if (json_is_real(v) && fabs(json_real_value(v)) <= 9e15 &&
               json_real_value(v) == floor(json_real_value(v))) {
        x = (long long)json_real_value(v);
    } else {
        snprintf(err, errlen, "breaker.%s: expected an integer between %lld and %lld, got %s",
                 key, min, max, json_kind(v));
        return AGAPE_EINVAL;
    }
    if (x < min || x > max) {
        snprintf(err, errlen, "breaker.%s: expected an integer between %lld and %lld, got %lld",
                 key, min, max, x);
        return AGAPE_EINVAL;
    }
    *out = x;
    *present = true;
    return AGAPE_OK;
}

int breaker_config_from_json(struct breaker_config *c, const json_t *provider_conf, char *err,
                             size_t errlen)
{
    struct breaker_config n = breaker_config_defaults();
    const json_t *tab = NULL;
    const char *key;
    json_t *val;
    long long x = 0;
    bool have = false;
    bool have_min_calls = false;
    bool have_successes = false;
    int rc = AGAPE_EINVAL;

    if (provider_conf != NULL && json_is_object(provider_conf)) {
        tab = json_object_get(provider_conf, "breaker");
    }
    if (tab == NULL) {
        *c = n;
        return AGAPE_OK;
    }
    if (!json_is_object(tab)) {
        snprintf(err, errlen, "breaker: expected a table, got %s", json_kind(tab));
        goto out;
    }
    json_object_foreach((json_t *)tab, key, val) {
        bool known = false;
        for (size_t i = 0; known_keys[i] != NULL; i++) {
            known = known || strcmp(known_keys[i], key) == 0;
        }
        if (!known) {
            snprintf(err, errlen,
                     "breaker.%.64s: unknown key (known: failure_run, window, failure_ratio, "
                     "min_calls, open_seconds, half_open_probes, probe_successes)",
                     key);
            goto out;
        }
    }

    if (read_int(tab, "failure_run", 0, 100000, &x, &have, err, errlen) != AGAPE_OK) {
        goto out;
    }
    if (have) {
        n.failure_run = (int)x;
    }
    if (read_int(tab, "window", 1, BREAKER_MAX_WINDOW, &x, &have, err, errlen) != AGAPE_OK) {
        goto out;
    }
    if (have) {
        n.window = (int)x;
    }
    if (read_int(tab, "min_calls", 1, n.window, &x, &have_min_calls, err, errlen) != AGAPE_OK) {
        goto out;
    }
    n.min_calls = have_min_calls ? (int)x : (n.min_calls < n.window ? n.min_calls : n.window);
    if (read_int(tab, "half_open_probes", 1, 1000, &x, &have, err, errlen) != AGAPE_OK) {
        goto out;
    }
    if (have) {
        n.half_open_probes = (int)x;
    }
    if (read_int(tab, "probe_successes", 1, 1000, &x, &have_successes, err, errlen) !=
        AGAPE_OK) {
        goto out;
    }
    n.probe_successes = have_successes ? (int)x : n.half_open_probes;

    val = json_object_get(tab, "failure_ratio");
    if (val != NULL) {
        if (!json_is_number(val)) {
            snprintf(err, errlen,
                     "breaker.failure_ratio: expected a number above 0 and at most 1, got %s",
                     json_kind(val));
            goto out;
        }
        double r = json_number_value(val);
        if (!(r > 0.0 && r <= 1.0)) {
            snprintf(err, errlen,
                     "breaker.failure_ratio: expected a number above 0 and at most 1, got %g", r);
            goto out;
        }
        n.failure_ratio = r;
    }

    val = json_object_get(tab, "open_seconds");
    if (val != NULL) {
        if (!json_is_number(val)) {
            snprintf(err, errlen,
                     "breaker.open_seconds: expected a number between 0.001 and 86400, got %s",
                     json_kind(val));
            goto out;
        }
        double s = json_number_value(val);
        if (!(s >= 0.001 && s <= 86400.0)) {
            snprintf(err, errlen,
                     "breaker.open_seconds: expected a number between 0.001 and 86400, got %g",
                     s);
            goto out;
        }
        n.open_ms = (int64_t)llround(s * 1000.0);
    }

    *c = n;
    rc = AGAPE_OK;
out:
    return rc;
}

/* ---------------------------------------------------------------------- */
/* The state machine (every function below runs with b->lock held)        */

static void window_reset(struct breaker *b)
{
    memset(b->ring, 0, (size_t)b->cfg.window);
    b->head = 0;
    b->count = 0;
    b->fails = 0;
    b->run = 0;
}

static void to_open(struct breaker *b, int64_t now, struct note *n, const char *why)
{
    enum breaker_state from = b->state;
    b->state = BREAKER_OPEN;
    b->opened_at = now;
    b->inflight = 0;
    b->successes = 0;
    b->transitions++;
    n->level = AGAPE_LOG_WARN;
    snprintf(n->msg, sizeof(n->msg), "circuit %s \u2192 open (%s); calls refused for %lld ms",
             breaker_state_name(from), why, (long long)b->cfg.open_ms);
}

static void to_half_open(struct breaker *b, struct note *n)
{
    b->state = BREAKER_HALF_OPEN;
    b->inflight = 0;
    b->successes = 0;
    b->transitions++;
    n->level = AGAPE_LOG_INFO;
    snprintf(n->msg, sizeof(n->msg), "circuit open \u2192 half_open (up to %d probe%s)",
             b->cfg.half_open_probes, b->cfg.half_open_probes == 1 ? "" : "s");
}

static void to_closed(struct breaker *b, struct note *n)
{
    b->state = BREAKER_CLOSED;
    b->inflight = 0;
    b->successes = 0;
    b->transitions++;
    window_reset(b);
    n->level = AGAPE_LOG_INFO;
    snprintf(n->msg, sizeof(n->msg), "circuit half_open \u2192 closed (%d probe%s succeeded)",
             b->cfg.probe_successes, b->cfg.probe_successes == 1 ? "" : "s");
}

/* Open → half-open once the open period is over. */
static void advance(struct breaker *b, int64_t now, struct note *n)
{
    if (b->state == BREAKER_OPEN && now - b->opened_at >= b->cfg.open_ms) {
        to_half_open(b, n);
    }
}

static void flush_note(const struct breaker *b, const struct note *n)
{
    if (n->msg[0] != '\0') {
        log_msg(n->level, b->name, "%s", n->msg);
    }
}

struct breaker *breaker_create(const char *provider_name, const struct breaker_config *cfg)
{
    struct breaker_config d = breaker_config_defaults();
    struct breaker *b = NULL;

    if (cfg == NULL) {
        cfg = &d;
    }
    if (!config_valid(cfg)) {
        return NULL;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    b->ring = calloc((size_t)cfg->window, 1);
    if (b->ring == NULL || pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b->ring);
        free(b);
        return NULL;
    }
    snprintf(b->name, sizeof(b->name), "%s", provider_name ? provider_name : "");
    b->cfg = *cfg;
    b->state = BREAKER_CLOSED;
    return b;
}

void breaker_destroy(struct breaker *b)
{
    if (b == NULL) {
        return;
    }
    pthread_mutex_destroy(&b->lock);
    free(b->ring);
    free(b);
}

bool breaker_allow(struct breaker *b, int64_t now_ms)
{
    struct note n = {.msg = ""};
    bool ok = false;

    pthread_mutex_lock(&b->lock);
    advance(b, now_ms, &n);
    switch (b->state) {
    case BREAKER_CLOSED:
        ok = true;
        break;
    case BREAKER_OPEN:
        ok = false;
        break;
    case BREAKER_HALF_OPEN:
        /* An admission whose result never came (a lost call) must not keep
         * the breaker half-open and refusing for ever. */
        if (b->inflight >= b->cfg.half_open_probes &&
            now_ms - b->last_admit >= b->cfg.probe_lease_ms) {
            b->inflight = 0;
        }
        if (b->inflight < b->cfg.half_open_probes) {
            b->inflight++;
            b->last_admit = now_ms;
            ok = true;
        }
        break;
    }
    pthread_mutex_unlock(&b->lock);
    flush_note(b, &n);
    return ok;
}

static void record_closed(struct breaker *b, bool failure, int64_t now, struct note *n)
{
    char why[96];

    if (b->count == b->cfg.window) {
        b->fails -= b->ring[b->head];
    } else {
        b->count++;
    }
    b->ring[b->head] = failure ? 1 : 0;
    b->fails += failure ? 1 : 0;
    b->head = (b->head + 1) % b->cfg.window;
    b->run = failure ? b->run + 1 : 0;

    /* Checked after successes too: the call that brings the window up to
     * min_calls may be a success. */
    if (b->cfg.failure_run > 0 && b->run >= b->cfg.failure_run) {
        snprintf(why, sizeof(why), "%d consecutive failures", b->run);
        to_open(b, now, n, why);
        return;
    }
    if (b->count >= b->cfg.min_calls &&
        (double)b->fails >= b->cfg.failure_ratio * (double)b->count) {
        snprintf(why, sizeof(why), "%d of the last %d calls failed", b->fails, b->count);
        to_open(b, now, n, why);
    }
}

void breaker_record(struct breaker *b, bool failure, int64_t now_ms)
{
    struct note n = {.msg = ""};

    pthread_mutex_lock(&b->lock);
    advance(b, now_ms, &n);
    switch (b->state) {
    case BREAKER_CLOSED:
        record_closed(b, failure, now_ms, &n);
        break;
    case BREAKER_OPEN:
        break; /* a late answer from before it opened: the period stands */
    case BREAKER_HALF_OPEN:
        if (b->inflight > 0) {
            b->inflight--;
        }
        if (failure) {
            to_open(b, now_ms, &n, "a probe failed");
        } else if (++b->successes >= b->cfg.probe_successes) {
            to_closed(b, &n);
        }
        break;
    }
    pthread_mutex_unlock(&b->lock);
    flush_note(b, &n);
}

void breaker_cancel(struct breaker *b, int64_t now_ms)
{
    struct note n = {.msg = ""};

    pthread_mutex_lock(&b->lock);
    advance(b, now_ms, &n);
    if (b->state == BREAKER_HALF_OPEN && b->inflight > 0) {
        b->inflight--;
    }
    pthread_mutex_unlock(&b->lock);
    flush_note(b, &n);
}

enum breaker_state breaker_state(struct breaker *b, int64_t now_ms)
{
    struct note n = {.msg = ""};
    enum breaker_state s;

    pthread_mutex_lock(&b->lock);
    advance(b, now_ms, &n);
    s = b->state;
    pthread_mutex_unlock(&b->lock);
    flush_note(b, &n);
    return s;
}

const char *breaker_state_name(enum breaker_state s)
{
    switch (s) {
    case BREAKER_CLOSED:
        return "closed";
    case BREAKER_OPEN:
        return "open";
    case BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

void breaker_snapshot(struct breaker *b, struct breaker_snapshot *out)
{
    pthread_mutex_lock(&b->lock);
    out->state = b->state;
    out->window_calls = b->count;
    out->window_failures = b->fails;
    out->consecutive_failures = b->run;
    out->probes_inflight = b->inflight;
    out->probe_successes = b->successes;
    out->opened_at_ms = b->opened_at;
    out->open_until_ms = b->state == BREAKER_OPEN ? b->opened_at + b->cfg.open_ms : 0;
    out->transitions = b->transitions;
    pthread_mutex_unlock(&b->lock);
}
