/* analytics — delivers the outbox items of kind "event" (events.h) to the
 * analytics providers, in batches (docs/observability.md).
 *
 * The worker hands each due event item to this module's handler, which
 * takes it (WORKER_ITEM_TAKEN) and:
 *   1. chooses its providers: the item's "providers" (left by an earlier
 *      attempt), else the route_event(ev, ctx) rule of the scripts (ctx.
 *      available = the usable analytics providers, in configuration order;
 *      the event goes to EVERY provider of the returned list), else — no such
 *      rule — every usable analytics provider;
 *   2. puts it in the group of (provider, client) — client = client_id and
 *      user_id: a GA4 request is for one client — for each of them.
 * A group is sent (track_batch, through dispatch, on the client thread) as
 * soon as it holds ANALYTICS_BATCH_MAX events, or once its first event has
 * waited analytics_flush_ms (checked by the monitor thread). Per answer:
 *   ok                    → done for that provider
 *   invalid, declined     → a batch of several is split and each event sent
 *                           alone; a lone event is dropped for that provider,
 *                           with a log line (a bad event never blocks others)
 *   auth, rate_limited, unavailable, unknown (after dispatch's own retries,
 *                           which honour Retry-After within the deadline)
 *                         → to be retried on that provider
 * When every provider of an item has answered, ONE asynchronous commit
 * deletes it (all done) or reschedules it (due after backoff, "attempts" + 1,
 * "providers" = those left; a rate_limited one waits at least
 * ANALYTICS_RATE_LIMITED_MIN_MS); after event_max_attempts it is dropped and
 * counted. Then its lease is released (worker_item_release).
 * Delivery is at least once: a crash before that commit sends it again.
 *
 * Configuration (optional globals in agape.conf; defaults shown):
 *   analytics_flush_ms    = 1000     longest wait for a batch to fill
 *   event_max_attempts    = 10
 *   event_backoff_ms      = 1000     doubled per attempt…
 *   event_backoff_max_ms  = 300000   …up to this
 * Provider calls use the configuration's retry settings (max_retries,
 * backoff_base_ms, backoff_max_ms, connect/attempt timeouts) and
 * payment_deadline_ms as the deadline of one batch.
 *
 * Threads: the handler runs on the worker thread, analytics_tick on the
 * monitor thread, outcomes on the client thread and commits' ends on the
 * store's writer; one mutex guards the groups. */
#ifndef AGAPE_ANALYTICS_H
#define AGAPE_ANALYTICS_H

#include "app.h"

#include <stdint.h>

#define ANALYTICS_BATCH_MAX 25          /* GA4: events per request */
#define ANALYTICS_HELD_MAX 10000        /* items in memory before the handler says BUSY */
#define ANALYTICS_RATE_LIMITED_MIN_MS 30000

/* Read the settings and register the "event" kind. Main thread, before
 * worker_start. */
int analytics_start(struct app *app);
/* Send the groups whose time is up; free finished calls. Monitor thread. */
void analytics_tick(void);
/* Send nothing more; items still waiting in a group are left in the outbox
 * (their lease ends with the worker). Call after worker_stop, before
 * client_destroy. Main thread. */
void analytics_stop(void);
/* Free what is left. After store_close. Main thread. */
void analytics_free(void);

struct analytics_stats {
    unsigned long long delivered;   /* items done (every provider answered ok or refused) */
    unsigned long long rescheduled; /* items put back for a later attempt */
    unsigned long long dropped;     /* items given up after event_max_attempts */
    unsigned long long refused;     /* (item, provider) pairs dropped as invalid */
    unsigned long long batches;     /* track_batch calls made */
    unsigned long long held;        /* items in memory now */
};
void analytics_get_stats(struct analytics_stats *out);

#endif
