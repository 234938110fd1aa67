/* metrics — the gateway's counters and histograms, rendered in the
 * Prometheus text exposition format (version 0.0.4) for GET /metrics and
 * visited by the monitoring flush (New Relic).
 *
 * Families (one series per label combination, made on first use):
 *   agape_http_requests_total{route,status}                     counter
 *   agape_http_request_duration_seconds{route}                  histogram
 *   agape_provider_calls_total{provider,operation,outcome}      counter
 *   agape_provider_call_duration_seconds{provider,operation}    histogram
 *   agape_provider_retries_total{provider}                      counter
 *   agape_provider_failovers_total{provider}                    counter
 *   agape_provider_short_circuits_total{provider}               counter
 *   agape_metrics_series_overflow_total                         counter
 *   agape_build_info{version}                                   gauge, always 1
 *   process_start_time_seconds                                  gauge
 * followed by whatever the gauge callback appends (metrics_set_gauge_fn).
 * Histogram buckets (seconds): 0.001 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1
 * 2.5 5 10 +Inf; an observation falls in every bucket whose bound is >= it.
 *
 * The label space must stay small and bounded: routes are route templates,
 * providers the configured ones, operations and outcomes fixed names. As a
 * guard, at most METRICS_MAX_SERIES label combinations exist in all; an
 * observation that would need one more is dropped and counted in
 * agape_metrics_series_overflow_total. Label values longer than
 * METRICS_LABEL_MAX - 1 bytes are cut to that length; NULL is "".
 *
 * Cost on the hot path: one hash of the label values, a lock-free lookup and
 * relaxed atomic adds; the lock is taken only to make a new series.
 *
 * Threads: metrics_init() on the main thread before any other thread uses
 * this module (it also clears everything, for tests); every other function
 * from any thread. */
#ifndef AGAPE_METRICS_H
#define AGAPE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agape_buf;

#define METRICS_MAX_SERIES 1024
#define METRICS_LABEL_MAX 64   /* bytes per label value, with the NUL */
#define METRICS_MAX_LABELS 3
#define METRICS_BUCKETS 12     /* finite bounds; +Inf comes on top */

/* Clear every series and the gauge callback; note the process start time. */
void metrics_init(void);

/* One answered HTTP request: `route` is the route template ("/v1/payments"),
 * `status` the HTTP status, `seconds` the time from the first byte to the
 * answer. */
void metrics_http(const char *route, int status, double seconds);
/* One provider attempt that ended with `outcome` (dispatch_outcome_name()). */
void metrics_provider_call(const char *provider, const char *op, const char *outcome,
                           double seconds);
void metrics_retry(const char *provider);
void metrics_failover(const char *provider);
/* A call not sent because the provider's circuit was open (breaker_allow
 * said no). */
void metrics_short_circuit(const char *provider);

/* Lines appended to every render, after the built-in families: the gauges
 * whose value lives elsewhere (agape_provider_inflight{provider},
 * agape_circuit_state{provider}, …). fn runs on the rendering thread, with
 * no lock of this module held; it must append whole lines (# HELP and
 * # TYPE included — metrics_gauge_header() and metrics_gauge_line() do
 * that). NULL removes it. Set it at start, before the server runs. */
typedef void (*metrics_gauge_fn)(struct agape_buf *out, void *arg);
void metrics_set_gauge_fn(metrics_gauge_fn fn, void *arg);

/* Helpers for gauge callbacks:
 *   # HELP <name> <help>\n# TYPE <name> <type>\n   (type "gauge", "counter", …)
 *   <name>{<label>="<escaped value>"} <value>\n   (no braces when label is NULL) */
void metrics_header(struct agape_buf *out, const char *name, const char *type, const char *help);
void metrics_gauge_header(struct agape_buf *out, const char *name, const char *help);
void metrics_gauge_line(struct agape_buf *out, const char *name, const char *label,
                        const char *value, double v);
/* Append s escaped as a label value (\ → \\, " → \", newline → \n). */
void metrics_escape(struct agape_buf *out, const char *s);

/* The whole exposition into `out` (appended). Returns AGAPE_OK, or the
 * buffer's error (out->error) if an append failed. Any thread. */
int metrics_render(struct agape_buf *out);

/* ---------------------------------------------------------------------- */
/* Reading the series one by one (the monitoring flush).                  */

enum metrics_type {
    METRICS_COUNTER = 0,
    METRICS_HISTOGRAM
};

struct metrics_sample {
    const char *name;                       /* family name, e.g. "agape_http_requests_total" */
    enum metrics_type type;
    int n_labels;
    const char *label_names[METRICS_MAX_LABELS];
    const char *label_values[METRICS_MAX_LABELS]; /* unescaped */
    uint64_t value;                          /* counter value; histogram observation count */
    double sum;                              /* histogram: sum of observations, seconds */
    const double *bounds;                    /* histogram: METRICS_BUCKETS finite bounds */
    uint64_t buckets[METRICS_BUCKETS];       /* histogram: cumulative counts per bound */
};

/* Call fn once per series that exists (counters and histograms; not the
 * callback gauges, build info or start time), family by family. The sample
 * and its strings are valid only during the call. Returns the number of
 * series visited. Any thread. */
size_t metrics_foreach(void (*fn)(const struct metrics_sample *s, void *arg), void *arg);

/* Observations dropped because the series cap was reached. */
uint64_t metrics_overflow(void);

#endif
