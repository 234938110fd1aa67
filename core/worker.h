/* worker — the background thread that runs due outbox work. Today it runs
 * webhook events (outbox items {"kind": "webhook", "provider", "event_id"});
 * items of other kinds ("message", "event", queued by rules until their
 * delivery modules land) are left where they are.
 *
 * For each due webhook item, under one lock per process (so an admin replay
 * cannot interleave), the worker:
 *   1. loads the inbox event; an item that is not the event's current one
 *      (outbox_key differs) or whose event is no longer pending is dropped;
 *   2. applies the core's updates: the payment named by the event
 *      (provider + normalized payment_ref, through the "pref:<provider>"
 *      index in STORE_META) moves to the event's status when the order of
 *      webhook.h allows it; customer.subscription.* events write the
 *      subscription record (kv "subscriptions");
 *   3. calls the rule function on_webhook(ev) when the scripts define one
 *      (scripts/webhooks.lua, docs/lua.md), inside a rule run;
 *   4. commits ONE batch: the outbox item deleted (or, when the rule failed,
 *      a new one due after the backoff), the inbox status (done, pending with
 *      attempts+1 and last_error, or failed after webhook_max_attempts), the
 *      core's updates, and — only when the rule succeeded — its kv writes and
 *      queued messages/events. A crash before the commit leaves the item to
 *      run again after restart; effects and "done" commit together, so no
 *      effect is applied twice.
 * The core's updates commit even when the rule fails: they are idempotent
 * (the status order), so a rerun finds nothing more to do.
 *
 * Configuration (optional globals in agape.conf):
 *   webhook_max_attempts   = 5       rule runs before an event is `failed`
 *   webhook_backoff_ms     = 1000    wait after the first failure, doubled each time…
 *   webhook_backoff_max_ms = 300000  …up to this
 *   webhook_first_delay_ms = 0       delay between receiving and the first run
 *   webhook_poll_ms        = 50      how often the outbox is scanned when not woken */
#ifndef AGAPE_WORKER_H
#define AGAPE_WORKER_H

#include "app.h"

#include <jansson.h>
#include <stdint.h>

struct worker_conf {
    int max_attempts;
    int64_t backoff_ms;
    int64_t backoff_max_ms;
    int64_t first_delay_ms;
    int64_t poll_ms;
};

/* Read the webhook_* keys of the configuration (c may be NULL), defaults
 * applied and values clamped to sane ranges; silent (worker_start logs the
 * values it clamped, once). Any thread. */
void worker_conf_load(const struct conf *c, struct worker_conf *out);

/* Register the agape.* rule functions with the script engine and start the
 * thread (one per process). Call after the store, scripts and registry are
 * ready (after httpd_start is fine: events received before are picked up).
 * Returns AGAPE_OK or a negative rc (logged). Main thread. */
int worker_start(struct app *app);
/* Stop the thread after the item in hand (its batch commits). Call before
 * the script engine and the store go away. Main thread; a no-op when not
 * started. */
void worker_stop(void);

/* Wake the worker now (new work was committed). Any thread, including the
 * store's writer callback; a no-op when no worker runs. */
void worker_notify(void);

/* Replay an event: status pending, attempts 0, last_error null, due now
 * (its earlier outbox item, if any, is removed in the same batch). On
 * AGAPE_OK *event_out is the updated inbox record (new reference).
 * AGAPE_ENOENT when no such event, AGAPE_ESTORE when the commit failed.
 * Any thread (serialized with the worker's processing). */
int worker_replay(struct app *app, const char *provider, const char *event_id,
                  json_t **event_out);

/* Run every due webhook item once, now, on the calling thread (what the
 * thread does on each tick). Returns how many items were handled. For tests
 * and for the thread itself. */
int worker_run_due(struct app *app, const struct worker_conf *wc);

#endif
