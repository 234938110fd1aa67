/* monitor — the gateway watching itself, and the delivery of error reports
 * to the monitoring providers (docs/observability.md).
 *
 * One background thread (the monitor thread) ticks every MONITOR_TICK_MS:
 *   - analytics batches whose oldest event has waited analytics_flush_ms are
 *     sent (analytics.c);
 *   - the gateway's metrics go to every usable monitoring provider that
 *     supports send_metrics every metrics_flush_seconds (flush.c);
 *   - each provider's circuit is looked at: a circuit that opened since the
 *     last look is reported as an error (monitor_report, source "circuit");
 *   - self-reports queued by monitor_report are committed as outbox items.
 *
 * Outbox items of kind "error" (events.h) are delivered by the handler this
 * module registers with the worker: report_error is dispatched to every
 * monitoring provider the route_error rule chooses (scripts/routing.lua;
 * without the rule, every usable monitoring provider that supports
 * report_error), one call per provider, in parallel. ok → the provider is
 * done; invalid or declined → dropped for that provider with a log line;
 * anything else → the item is rescheduled for the providers still to reach,
 * with backoff, until error_max_attempts (then dropped and counted).
 *
 * Configuration (optional globals in agape.conf; defaults shown):
 *   error_max_attempts          = 10
 *   error_backoff_ms            = 1000     doubled per attempt…
 *   error_backoff_max_ms        = 300000   …up to this
 *   self_report_interval_seconds = 60      at most one self-report per (source,
 *                                          provider) in this time
 * and those of analytics.c and flush.c.
 *
 * Order in main.c: monitor_start after the registry, scripts, client and
 * store exist and BEFORE worker_start (it registers the kinds); monitor_stop
 * after worker_stop and BEFORE client_destroy (nothing new is sent after
 * it; calls in flight end when the client stops and their outcomes are
 * committed asynchronously); monitor_free after store_close. */
#ifndef AGAPE_MONITOR_H
#define AGAPE_MONITOR_H

#include "app.h"

#include <agape/plugin.h>
#include <jansson.h>
#include <stdint.h>

#define MONITOR_TICK_MS 50
#define MONITOR_CIRCUIT_CHECK_MS 250
#define MONITOR_REPORTS_MAX 64    /* self-reports waiting for the thread; more are dropped */
#define MONITOR_MESSAGE_MAX 2048  /* bytes of a self-report's message */

struct agape_buf;

/* Register the "event" and "error" kinds with the worker and start the
 * monitor thread. AGAPE_OK or a negative rc (logged). Main thread. */
int monitor_start(struct app *app);
/* Stop the thread; events still waiting for their batch are left in the
 * outbox (they run again after restart). Main thread; no-op when not
 * started. */
void monitor_stop(void);
/* Free what is left (after store_close: every outcome has been committed). */
void monitor_free(void);

/* Report one of the gateway's own errors to the monitoring providers,
 * asynchronously: the report is queued in memory and the monitor thread
 * commits it as an "error" outbox item (store_commit_async), so this never
 * blocks and is safe from any thread, the store's writer callbacks and the
 * client thread included. The message (printf format) and the tags are
 * passed through log_redact (no configured secret can be in them) and cut to
 * MONITOR_MESSAGE_MAX bytes. `tags` (borrowed, may be NULL) should hold
 * "source" (what reports: "circuit", "webhook_rule", …) and "provider" when
 * one is concerned: at most one report per (source, provider) is sent per
 * self_report_interval_seconds; the rest are counted and dropped. A no-op
 * when the monitor is not running. */
void monitor_report(enum agape_log_level level, json_t *tags, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* /metrics lines (# HELP, # TYPE and values) of this module's counters:
 * agape_events_total{outcome}, agape_errors_total{outcome},
 * agape_self_reports_total{outcome}, agape_metrics_flushes_total{provider,outcome}.
 * For the gauge callback of main.c. Any thread. */
void monitor_gauges(struct agape_buf *out);

/* An integer setting of agape.conf (c may be NULL): the default when absent,
 * clamped to min..max with a warning (logged when warn). Any thread. */
int64_t monitor_conf_int(const struct conf *c, const char *key, int64_t dflt, int64_t min,
                         int64_t max, bool warn);

#endif
