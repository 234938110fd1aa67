/* worker — the background thread that runs due outbox work (STORE_OUTBOX).
 *
 * ---- kinds (the seam other modules plug into) ----------------------------
 * Every outbox item is a JSON object with a "kind" member. ONE scanner looks
 * at the due items (due_ms <= now, oldest first) and hands each to the
 * handler registered for its kind (worker_register_kind). "webhook" is built
 * in (below); "message" is registered by messages.c, "event" by the
 * analytics module. Fairness: a tick collects at most WORKER_KIND_QUOTA due
 * items PER KIND (the scan goes on past a kind whose quota is full, up to
 * WORKER_SCAN_MAX entries looked at), then hands them out round-robin across
 * kinds, so a backlog of one kind never starves another. Items of a kind no
 * one registered are left where they are and counted (worker_get_stats).
 *
 * A handler (called on the worker thread, one item at a time):
 *   - finishes the item synchronously: commits (store_commit) the deletion
 *     or rescheduling of the outbox item before returning WORKER_ITEM_DONE;
 *   - or takes it asynchronously: returns WORKER_ITEM_TAKEN and later (any
 *     thread, e.g. a store_commit_async callback) calls worker_item_release
 *     once the item's deletion or rescheduling is durable. Until then the
 *     item is leased: the worker never hands it out again;
 *   - or returns WORKER_ITEM_BUSY (back-pressure: it takes no more items this
 *     tick; the item stays and is offered again), WORKER_ITEM_LATER (this one
 *     item stays for a later tick, e.g. its subject is busy) or a negative rc
 *     (a store failure: the item stays; the worker waits before the next
 *     tick).
 * The handler must not block for long: it holds up every other kind.
 * Leases live in memory only. A crash voids them: an item taken but not yet
 * committed runs again after restart, so delivery is AT LEAST ONCE; the
 * window is from the hand-off to the durable commit of the item's outcome
 * (for a message: the provider call and the commit of its result).
 *
 * ---- webhooks ------------------------------------------------------------
 * Items {"kind": "webhook", "provider", "event_id"}. For each due webhook
 * item, under one lock per process (so an admin replay cannot interleave),
 * the worker:
 *   1. loads the inbox event; an item that is not the event's current one
 *      (outbox_key differs) or whose event is no longer pending is dropped;
 *   2. applies the core's updates: the payment named by the event
 *      (provider + normalized payment_ref, through the "pref:<provider>"
 *      index in STORE_META) moves to the event's status when the order of
 *      webhook.h allows it; customer.subscription.* events write the
 *      subscription record (kv "subscriptions"); a delivery-status event
 *      (normalized "message_ref"/"status", or "events": [...]) is handed to
 *      the hook set by worker_set_message_status_hook (messages.c);
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

/* Run one tick now, on the calling thread (what the thread does on each
 * tick): hand every due, unleased item of a registered kind to its handler
 * (at most WORKER_KIND_QUOTA per kind). Returns how many items were handed
 * out and finished or taken (DONE + TAKEN), or -1 after a store failure.
 * For tests and for the thread itself. */
int worker_run_due(struct app *app, const struct worker_conf *wc);

/* ---- kinds ------------------------------------------------------------ */

#define WORKER_KIND_MAX 16         /* registered kinds, "webhook" included */
#define WORKER_KIND_NAME_MAX 31    /* bytes of a kind name */
#define WORKER_KIND_QUOTA 64       /* items per kind per tick */

enum worker_item_rc {
    WORKER_ITEM_DONE = 0,   /* finished and committed synchronously */
    WORKER_ITEM_TAKEN = 1,  /* taken: worker_item_release(key) follows the commit */
    WORKER_ITEM_BUSY = 2,   /* not now (back-pressure); the item stays; no more of
                               this kind this tick */
    WORKER_ITEM_LATER = 3   /* this item not now (it stays, offered again next tick);
                               the kind's other items go on */
    /* negative: a store failure; the item stays */
};

/* A kind's handler. `key` is the item's 16-byte outbox key (due_ms | seq,
 * store_keys.h; valid during the call only: copy it to keep it); `item` is
 * the parsed item (borrowed: json_incref it to keep it). Worker thread (or
 * the thread calling worker_run_due). */
typedef int (*worker_kind_fn)(struct app *app, const uint8_t key[16], json_t *item, void *arg);

/* Register (or replace) the handler of `kind`. Main thread, before
 * worker_start (or before worker_run_due in tests). AGAPE_OK, AGAPE_EINVAL
 * (bad name or NULL fn; "webhook" cannot be replaced), AGAPE_ERANGE (table
 * full). */
int worker_register_kind(const char *kind, worker_kind_fn fn, void *arg);

/* End the lease of an item a handler took (WORKER_ITEM_TAKEN): call it after
 * the item's deletion or rescheduling is durable (store_commit returned, or
 * in the store_commit_async callback). Wakes the worker. Any thread,
 * including the store's writer callback; releasing a key that is not leased
 * does nothing. */
void worker_item_release(const uint8_t key[16]);

/* Counters. Any thread. */
struct worker_stats {
    unsigned long long handed;     /* items handed to a handler (DONE + TAKEN), total */
    unsigned long long busy;       /* BUSY answers, total */
    unsigned long long failed;     /* negative answers, total */
    unsigned long long unknown;    /* due items of an unregistered kind seen by the last tick */
    unsigned long long leased;     /* items taken and not yet released, now */
    unsigned long long ticks;
};
void worker_get_stats(struct worker_stats *out);

/* Forget every registered kind but "webhook" and every lease (tests; also
 * done by worker_stop for the leases). Main thread, no worker running. */
void worker_kinds_reset(void);

/* ---- delivery status from webhooks --------------------------------------- */

/* Set by the messages module: called inside a webhook item's processing
 * (worker thread, under the event lock) with the provider name, the event id
 * and the normalized event when it carries "message_ref" or
 * "agape_message_id" or "events". It adds its record updates to `b` (the
 * event's batch, committed with the inbox "done"). Returns AGAPE_OK or a
 * negative rc (logged; the event is still marked done). Main thread, before
 * worker_start. NULL clears it. */
typedef int (*worker_message_status_fn)(struct app *app, struct store_batch *b,
                                        const char *provider, const char *event_id,
                                        json_t *normalized);
void worker_set_message_status_hook(worker_message_status_fn fn);

#endif
