/* metrics — see metrics.h.
 *
 * Why this shape: the hot path (every HTTP request, every provider attempt)
 * must not serialize the server threads. Series live in one static pool that
 * only grows (up to METRICS_MAX_SERIES); an open-addressing index twice that
 * size maps (family, label values) to a pool slot. A lookup reads the index
 * with acquire loads and never locks; making a series takes insert_lock,
 * fills the slot, bumps n_series and only then publishes the index entry
 * (release), so a reader that finds an entry sees a complete series.
 * Values are relaxed atomic adds. Histograms keep per-bucket (not
 * cumulative) counts and derive _count from them at render time, so +Inf and
 * _count always agree; sums are kept in integer nanoseconds (C11 has no
 * atomic add on doubles) and printed exactly. */
#include "metrics.h"

#include "buf.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifndef AGAPE_VERSION
#define AGAPE_VERSION "unknown"
#endif

#define INDEX_SIZE (2 * METRICS_MAX_SERIES) /* a power of two; at most half full */

enum family {
    F_HTTP_REQUESTS = 0,
    F_HTTP_DURATION,
    F_PROVIDER_CALLS,
    F_PROVIDER_DURATION,
    F_PROVIDER_RETRIES,
    F_PROVIDER_FAILOVERS,
    F_PROVIDER_SHORT_CIRCUITS,
    F_COUNT
};

struct family_def {
    const char *name;
    const char *help;
    enum metrics_type type;
    int n_labels;
    const char *labels[METRICS_MAX_LABELS];
};

static const struct family_def families[F_COUNT] = {
    [F_HTTP_REQUESTS] = {"agape_http_requests_total",
                         "HTTP requests answered, by route template and status.",
                         METRICS_COUNTER, 2, {"route", "status", NULL}},
    [F_HTTP_DURATION] = {"agape_http_request_duration_seconds",
                         "Time from request to answer, by route template.",
                         METRICS_HISTOGRAM, 1, {"route", NULL, NULL}},
    [F_PROVIDER_CALLS] = {"agape_provider_calls_total",
                          "Provider attempts, by provider, operation and outcome class.",
                          METRICS_COUNTER, 3, {"provider", "operation", "outcome"}},
    [F_PROVIDER_DURATION] = {"agape_provider_call_duration_seconds",
                             "Duration of provider attempts, by provider and operation.",
                             METRICS_HISTOGRAM, 2, {"provider", "operation", NULL}},
    [F_PROVIDER_RETRIES] = {"agape_provider_retries_total",
                            "Retries on the same provider.", METRICS_COUNTER, 1,
                            {"provider", NULL, NULL}},
    [F_PROVIDER_FAILOVERS] = {"agape_provider_failovers_total",
                              "Fail-overs from this provider to the next in the chain.",
                              METRICS_COUNTER, 1, {"provider", NULL, NULL}},
    [F_PROVIDER_SHORT_CIRCUITS] = {"agape_provider_short_circuits_total",
                                   "Calls not sent because the provider's circuit was open.",
                                   METRICS_COUNTER, 1, {"provider", NULL, NULL}},
};

static const double bounds[METRICS_BUCKETS] = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
/* Written out rather than printed from the doubles, so `le` is exact. */
static const char *const bound_names[METRICS_BUCKETS] = {
    "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
};

struct series {
    int family;
    uint32_t hash;
    char v[METRICS_MAX_LABELS][METRICS_LABEL_MAX];
    atomic_ullong count;                      /* counters */
    atomic_ullong buckets[METRICS_BUCKETS + 1]; /* histograms; the last is above 10 s */
    atomic_ullong sum_ns;                     /* histograms */
};

static struct series pool[METRICS_MAX_SERIES];
static atomic_int n_series;
static atomic_int index_slots[INDEX_SIZE]; /* 0 = empty, else pool index + 1 */
static pthread_mutex_t insert_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ullong overflow;
static int64_t start_ms;

static pthread_mutex_t gauge_lock = PTHREAD_MUTEX_INITIALIZER;
static metrics_gauge_fn gauge_fn;
static void *gauge_arg;

void metrics_init(void)
{
    struct timespec ts;

    pthread_mutex_lock(&insert_lock);
    for (int i = 0; i < INDEX_SIZE; i++) {
        atomic_store(&index_slots[i], 0);
    }
    for (int i = 0; i < METRICS_MAX_SERIES; i++) {
        struct series *s = &pool[i];
        s->family = 0;
        s->hash = 0;
        memset(s->v, 0, sizeof(s->v));
        atomic_store(&s->count, 0);
        for (int j = 0; j <= METRICS_BUCKETS; j++) {
            atomic_store(&s->buckets[j], 0);
        }
        atomic_store(&s->sum_ns, 0);
    }
    atomic_store(&n_series, 0);
    atomic_store(&overflow, 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    start_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    pthread_mutex_unlock(&insert_lock);

    metrics_set_gauge_fn(NULL, NULL);
}

void metrics_set_gauge_fn(metrics_gauge_fn fn, void *arg)
{
    pthread_mutex_lock(&gauge_lock);
    gauge_fn = fn;
    gauge_arg = arg;
    pthread_mutex_unlock(&gauge_lock);
}

/* ---------------------------------------------------------------------- */
/* Finding and making series                                              */

/* The label values as stored: cut to METRICS_LABEL_MAX - 1 bytes. */
struct key {
    int family;
    uint32_t hash;
    char v[METRICS_MAX_LABELS][METRICS_LABEL_MAX];
};

static void key_make(struct key *k, int family, const char *a, const char *b, const char *c)
{
    const char *in[METRICS_MAX_LABELS] = {a, b, c};
    uint32_t h = 2166136261u ^ (uint32_t)family; /* FNV-1a */

    k->family = family;
    for (int i = 0; i < METRICS_MAX_LABELS; i++) {
        size_t n = 0;
        const char *s = in[i] ? in[i] : "";
        while (n < METRICS_LABEL_MAX - 1 && s[n] != '\0') {
            h = (h ^ (unsigned char)s[n]) * 16777619u;
            n++;
        }
        memcpy(k->v[i], s, n);
        k->v[i][n] = '\0';
        h = (h ^ 0x1fu) * 16777619u; /* separator: ("ab","") differs from ("a","b") */
    }
    k->hash = h;
}

static bool key_matches(const struct series *s, const struct key *k)
{
    if (s->hash != k->hash || s->family != k->family) {
        return false;
    }
    for (int i = 0; i < METRICS_MAX_LABELS; i++) {
        if (strcmp(s->v[i], k->v[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* The slot holding k, or the empty slot where it would go (*found false). */
static struct series *probe(const struct key *k, uint32_t *slot, bool *found)
{
    uint32_t i = k->hash & (INDEX_SIZE - 1);

    for (;;) {
        int e = atomic_load_explicit(&index_slots[i], memory_order_acquire);
        if (e == 0) {
            *slot = i;
            *found = false;
            return NULL;
        }
        struct series *s = &pool[e - 1];
        if (key_matches(s, k)) {
            *found = true;
            return s;
        }
        i = (i + 1) & (INDEX_SIZE - 1);
    }
}

static struct series *get_series(int family, const char *a, const char *b, const char *c)
{
    struct key k;
    struct series *s;
    uint32_t slot;
    bool found;

    key_make(&k, family, a, b, c);
    s = probe(&k, &slot, &found);
    if (found) {
        return s;
    }
    if (atomic_load_explicit(&n_series, memory_order_relaxed) >= METRICS_MAX_SERIES) {
        atomic_fetch_add_explicit(&overflow, 1, memory_order_relaxed);
        return NULL;
    }
    pthread_mutex_lock(&insert_lock);
    /* Another thread may have made it (or taken the slot) meanwhile. */
    s = probe(&k, &slot, &found);
    if (!found) {
        int n = atomic_load_explicit(&n_series, memory_order_relaxed);
        if (n >= METRICS_MAX_SERIES) {
            atomic_fetch_add_explicit(&overflow, 1, memory_order_relaxed);
            s = NULL;
        } else {
            s = &pool[n];
            s->family = k.family;
            s->hash = k.hash;
            memcpy(s->v, k.v, sizeof(s->v));
            atomic_store_explicit(&n_series, n + 1, memory_order_release);
            atomic_store_explicit(&index_slots[slot], n + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&insert_lock);
    return s;
}

static void count(int family, const char *a, const char *b, const char *c)
{
    struct series *s = get_series(family, a, b, c);
    if (s != NULL) {
        atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    }
}

static void observe(int family, const char *a, const char *b, double seconds)
{
    struct series *s = get_series(family, a, b, NULL);
    int i = 0;

    if (s == NULL) {
        return;
    }
    if (!(seconds >= 0.0)) { /* negative or NaN: a clock oddity, count it as 0 */
        seconds = 0.0;
    }
    while (i < METRICS_BUCKETS && seconds > bounds[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    double ns = seconds * 1e9;
    atomic_fetch_add_explicit(&s->sum_ns, ns < 1.8e19 ? (unsigned long long)llround(ns) : 0,
                              memory_order_relaxed);
}

void metrics_http(const char *route, int status, double seconds)
{
    char st[16];
    snprintf(st, sizeof(st), "%d", status);
    count(F_HTTP_REQUESTS, route, st, NULL);
    observe(F_HTTP_DURATION, route, NULL, seconds);
}

void metrics_provider_call(const char *provider, const char *op, const char *outcome,
                           double seconds)
{
    count(F_PROVIDER_CALLS, provider, op, outcome);
    observe(F_PROVIDER_DURATION, provider, op, seconds);
}

void metrics_retry(const char *provider)
{
    count(F_PROVIDER_RETRIES, provider, NULL, NULL);
}

void metrics_failover(const char *provider)
{
    count(F_PROVIDER_FAILOVERS, provider, NULL, NULL);
}

void metrics_short_circuit(const char *provider)
{
    count(F_PROVIDER_SHORT_CIRCUITS, provider, NULL, NULL);
}

uint64_t metrics_overflow(void)
{
    return atomic_load(&overflow);
}

/* ---------------------------------------------------------------------- */
/* Rendering                                                              */

void metrics_escape(struct agape_buf *out, const char *s)
{
    const char *run = s;

    for (; s != NULL && *s != '\0'; s++) {
        const char *rep = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        if (rep != NULL) {
            buf_add(out, run, (size_t)(s - run));
            buf_adds(out, rep);
            run = s + 1;
        }
    }
    if (s != NULL) {
        buf_add(out, run, (size_t)(s - run));
    }
}

/* HELP text escapes only backslash and newline. */
static void help_line(struct agape_buf *out, const char *name, const char *help, const char *type)
{
    buf_printf(out, "# HELP %s ", name);
    for (const char *p = help; p && *p; p++) {
        if (*p == '\\') {
            buf_adds(out, "\\\\");
        } else if (*p == '\n') {
            buf_adds(out, "\\n");
        } else {
            buf_add(out, p, 1);
        }
    }
    buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

void metrics_header(struct agape_buf *out, const char *name, const char *type, const char *help)
{
    help_line(out, name, help, type);
}

void metrics_gauge_header(struct agape_buf *out, const char *name, const char *help)
{
    help_line(out, name, help, "gauge");
}

/* Prometheus floats: integers without a fraction, NaN and ±Inf by name. */
static void put_double(struct agape_buf *out, double v)
{
    if (isnan(v)) {
        buf_adds(out, "NaN");
    } else if (isinf(v)) {
        buf_adds(out, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        buf_printf(out, "%lld", (long long)v);
    } else {
        buf_printf(out, "%.15g", v);
    }
}

void metrics_gauge_line(struct agape_buf *out, const char *name, const char *label,
                        const char *value, double v)
{
    buf_adds(out, name);
    if (label != NULL) {
        buf_printf(out, "{%s=\"", label);
        metrics_escape(out, value);
        buf_adds(out, "\"}");
    }
    buf_adds(out, " ");
    put_double(out, v);
    buf_adds(out, "\n");
}

/* Exact seconds from nanoseconds, without trailing zeros: 1500000 → 0.0015. */
static void put_ns(struct agape_buf *out, unsigned long long ns)
{
    char frac[16];
    int n;

    n = snprintf(frac, sizeof(frac), "%09llu", ns % 1000000000ull);
    while (n > 0 && frac[n - 1] == '0') {
        frac[--n] = '\0';
    }
    if (n == 0) {
        buf_printf(out, "%llu", ns / 1000000000ull);
    } else {
        buf_printf(out, "%llu.%s", ns / 1000000000ull, frac);
    }
}

/* {a="x",b="y"  — the closing brace is the caller's, so `le` can follow. */
static void labels_open(struct agape_buf *out, const struct family_def *f, const struct series *s)
{
    buf_adds(out, "{");
    for (int i = 0; i < f->n_labels; i++) {
        buf_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
        metrics_escape(out, s->v[i]);
        buf_adds(out, "\"");
    }
}

static void render_series(struct agape_buf *out, const struct family_def *f,
                          const struct series *s)
{
    if (f->type == METRICS_COUNTER) {
        buf_adds(out, f->name);
        labels_open(out, f, s);
        buf_printf(out, "} %llu\n",
                   (unsigned long long)atomic_load_explicit(&s->count, memory_order_relaxed));
        return;
    }
    unsigned long long cum = 0;
    for (int i = 0; i <= METRICS_BUCKETS; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        buf_printf(out, "%s_bucket", f->name);
        labels_open(out, f, s);
        buf_printf(out, "%sle=\"%s\"} %llu\n", f->n_labels ? "," : "",
                   i < METRICS_BUCKETS ? bound_names[i] : "+Inf", cum);
    }
    buf_printf(out, "%s_sum", f->name);
    labels_open(out, f, s);
    buf_adds(out, "} ");
    put_ns(out, atomic_load_explicit(&s->sum_ns, memory_order_relaxed));
    buf_printf(out, "\n%s_count", f->name);
    labels_open(out, f, s);
    buf_printf(out, "} %llu\n", cum);
}

int metrics_render(struct agape_buf *out)
{
    int n = atomic_load_explicit(&n_series, memory_order_acquire);
    metrics_gauge_fn fn;
    void *arg;

    for (int fam = 0; fam < F_COUNT; fam++) {
        const struct family_def *f = &families[fam];
        help_line(out, f->name, f->help, f->type == METRICS_COUNTER ? "counter" : "histogram");
        for (int i = 0; i < n; i++) {
            if (pool[i].family == fam) {
                render_series(out, f, &pool[i]);
            }
        }
    }
    help_line(out, "agape_metrics_series_overflow_total",
              "Observations dropped because the cap on label combinations was reached.",
              "counter");
    buf_printf(out, "agape_metrics_series_overflow_total %llu\n",
               (unsigned long long)atomic_load(&overflow));
    metrics_gauge_header(out, "agape_build_info", "The running agape version; always 1.");
    metrics_gauge_line(out, "agape_build_info", "version", AGAPE_VERSION, 1);
    metrics_gauge_header(out, "process_start_time_seconds",
                         "Start time of the process since the Unix epoch, in seconds.");
    buf_printf(out, "process_start_time_seconds %lld.%03d\n", (long long)(start_ms / 1000),
               (int)(start_ms % 1000));

    pthread_mutex_lock(&gauge_lock);
    fn = gauge_fn;
    arg = gauge_arg;
    pthread_mutex_unlock(&gauge_lock);
    if (fn != NULL) {
        fn(out, arg);
    }
    return out->error;
}

size_t metrics_foreach(void (*fn)(const struct metrics_sample *s, void *arg), void *arg)
{
    int n = atomic_load_explicit(&n_series, memory_order_acquire);
    size_t visited = 0;

    for (int fam = 0; fam < F_COUNT; fam++) {
        const struct family_def *f = &families[fam];
        for (int i = 0; i < n; i++) {
            const struct series *s = &pool[i];
            struct metrics_sample m;
            if (s->family != fam) {
                continue;
            }
            memset(&m, 0, sizeof(m));
            m.name = f->name;
            m.type = f->type;
            m.n_labels = f->n_labels;
            for (int j = 0; j < f->n_labels; j++) {
                m.label_names[j] = f->labels[j];
                m.label_values[j] = s->v[j];
            }
            if (f->type == METRICS_COUNTER) {
                m.value = atomic_load_explicit(&s->count, memory_order_relaxed);
            } else {
                unsigned long long cum = 0;
                for (int j = 0; j <= METRICS_BUCKETS; j++) {
                    cum += atomic_load_explicit(&s->buckets[j], memory_order_relaxed);
                    if (j < METRICS_BUCKETS) {
                        m.buckets[j] = cum;
                    }
                }
                m.value = cum;
                m.sum = (double)atomic_load_explicit(&s->sum_ns, memory_order_relaxed) / 1e9;
                m.bounds = bounds;
            }
            fn(&m, arg);
            visited++;
        }
    }
    return visited;
}
