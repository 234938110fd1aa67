/* flush — the gateway's own metrics, sent to the monitoring providers
 * (New Relic) every metrics_flush_seconds (docs/observability.md).
 *
 * The figures are those of GET /metrics: the counters and histograms of
 * metrics.c (metrics_foreach), plus the gauge families (and any counter
 * family not in metrics.c) of the rendered exposition (circuit state,
 * in-flight calls, build info, …). Each usable monitoring provider whose
 * plugin has send_metrics gets the normalized input
 *   {"timestamp_ms": start of the interval, "interval_ms": its length,
 *    "metrics": [{"name", "type", "value", "attributes"?, "timestamp_ms"?}, …]}
 * with
 *   counters    → "count", value = the increase since the last flush that
 *                 provider took (so a failed flush is not lost: the next one
 *                 carries both periods);
 *   histograms  → "summary", value = {"count", "sum", "min", "max"} of that
 *                 interval (seconds; skipped when nothing was observed). Only the
 *                 buckets are known, so min and max are bucket bounds: min the
 *                 lower bound of the lowest bucket that gained, max the upper bound
 *                 of the highest (the sum for +Inf), never past the mean, and never
 *                 max above the sum; exact for a single observation;
 *   gauges      → "gauge", value now, "timestamp_ms" now;
 * labels become attributes. Calls go through dispatch (send_metrics, no retry
 * within a period); a failure is logged and the next period retries. Metrics
 * are a stream: nothing is queued durably.
 *
 * Histogram series carry "buckets" (cumulative counts) and "bounds" in a
 * snapshot.
 *
 * The period: metrics_flush_seconds in agape.conf, else the environment
 * variable AGAPE_METRICS_FLUSH_SECONDS, else 60; 0 turns the flush off.
 *
 * Threads: flush_tick on the monitor thread; outcomes on the client thread. */
#ifndef AGAPE_FLUSH_H
#define AGAPE_FLUSH_H

#include "app.h"

#include <jansson.h>
#include <stdint.h>

#define FLUSH_DEFAULT_SECONDS 60

/* Read the period. Main thread. */
int flush_start(struct app *app);
/* Flush when the period is over; free finished calls. Monitor thread. */
void flush_tick(void);
/* No new flush after this (call before client_destroy); flush_free after
 * the client is gone frees what is left. Main thread. */
void flush_stop(void);
void flush_free(void);

/* The series now: an object "series id" → {"name", "type" ("counter",
 * "histogram" or "gauge"), "labels": {…}, "value" (number), "sum"?
 * (histograms)}. New reference. Any thread. */
json_t *flush_snapshot(void);

/* The send_metrics input for the interval [from_ms, now_ms] (wall ms): the
 * series of `now` (a snapshot) less those of `base` (the snapshot the
 * provider last took; may be NULL or empty). New reference. Pure. */
json_t *flush_input(const json_t *now, const json_t *base, int64_t from_ms, int64_t now_ms);

/* The flushes made, per provider and outcome: {"<provider>": {"ok": n,
 * "failed": n}}. New reference. Any thread. */
json_t *flush_counts(void);

#endif
