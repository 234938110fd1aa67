/* script_rules — the agape.* functions that webhook rules call, and the
 * "rule run" that buffers their effects (docs/lua.md is the user's guide).
 *
 * Functions added to the `agape` table (script_register_lib):
 *   agape.kv_get(ns, key)          → value or nil   (any script; a run sees its own writes)
 *   agape.kv_put(ns, key, value)   (rule runs only; nil deletes)
 *   agape.payment(id)              → payment record or nil
 *   agape.payment_by_ref(provider, ref) → payment record or nil
 *   agape.subscription(id)         → subscription record (kv "subscriptions") or nil
 *   agape.enqueue_message{channel=, to=, template=|subject=/text=/html=|body=, data=}
 *                                  → message id (rule runs only)
 *   agape.track{name=, user_id=, params=} (rule runs only)
 *   (agape.log and agape.now are script.c's built-ins.)
 *
 * A rule run collects writes instead of making them: the worker commits them
 * in the same batch as the event's "done" (so they happen exactly once), or
 * drops them when the rule fails. The run in progress is per thread (a
 * thread-local pointer set by script_rules_begin), so the functions are
 * reentrant across threads; outside a run the writing functions raise a Lua
 * error. */
#ifndef AGAPE_SCRIPT_RULES_H
#define AGAPE_SCRIPT_RULES_H

#include "script.h"
#include "store.h"

#include <jansson.h>
#include <stdint.h>

#define SCRIPT_RULES_NS_MAX 64          /* bytes of a kv namespace */
#define SCRIPT_RULES_KEY_MAX 256        /* bytes of a kv key */
#define SCRIPT_RULES_VALUE_MAX 65536    /* bytes of a kv value as JSON */
#define SCRIPT_RULES_MAX_WRITES 1000    /* distinct kv keys written per run */
#define SCRIPT_RULES_MAX_ITEMS 100      /* messages + analytics events per run */

struct script_rules_run {
    json_t *kv;        /* [{"ns", "key", "value" (JSON null: delete), "core": bool}] */
    json_t *items;     /* outbox work items queued by the rule */
    json_t *payments;  /* payment id → record as this run has changed it */
    const char *source;/* the event's public id, recorded in queued items */
    int64_t now_ms;
};

/* Add the functions to the engine's `agape` table; `store` is used for
 * reads (borrowed; it must outlive the engine's use). Main thread. */
int script_rules_register(struct script_engine *e, struct store *store);

/* Start / end a run on this thread. begin takes ownership of nothing; end
 * frees what the run holds. Between them, script calls on this thread see
 * the run. */
int script_rules_begin(struct script_rules_run *run, const char *source, int64_t now_ms);
void script_rules_end(struct script_rules_run *run);

/* Writes made by the core itself inside the run (e.g. a subscription record):
 * visible to the rule like its own writes, but kept even when the rule fails
 * (see script_rules_to_batch). `value` is borrowed (copied in). */
int script_rules_kv_put(struct script_rules_run *run, const char *ns, const char *key,
                        json_t *value, bool core);

/* Add the run's effects to `b`: the core's kv writes always; the rule's kv
 * writes and queued items only when `rule_ok`. Queued items get outbox keys
 * due now. Returns the number of items queued, or a negative rc. */
int script_rules_to_batch(struct script_rules_run *run, struct store_batch *b, bool rule_ok);

/* A kv value as stored (JSON text of any JSON value): new reference or NULL
 * when absent or unreadable. Any thread. */
json_t *script_rules_kv_read(struct store *s, const char *ns, const char *key);

/* A fresh outbox key due at `due_ms` with a random sequence number. */
int script_rules_outbox_key(uint8_t out[16], int64_t due_ms);

#endif
