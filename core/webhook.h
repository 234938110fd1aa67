/* webhook — the pure logic of incoming webhooks, shared by the HTTP side
 * (api_webhooks.c) and the worker (worker.c): inbox keys and public ids, the
 * inbox record, the order of payment statuses, and how an event changes a
 * payment record and a subscription record. No I/O and no global state here,
 * so every rule is unit-tested alone (tests/unit/test_webhooks.c). Any thread.
 *
 * Public event id: "<provider>:<event_id>" (e.g. "stripe:evt_1N…"). Provider
 * names are [a-z0-9_-]+, so the first ':' splits it. In a URL path, percent-
 * encode it like any path segment (':' may stay; '/', '?', '#', '%' and
 * spaces must be encoded).
 *
 * Inbox record (STORE_INBOX, key provider | 0x00 | event_id), JSON:
 *   {"v":1, "provider", "event_id", "type", "received_at" (ISO-8601 UTC),
 *    "status": "pending" | "done" | "failed", "attempts": rule runs so far,
 *    "next_at": ISO time of the next run or null, "last_error": text or null,
 *    "processed_at": ISO or null, "outbox_key": 32 hex of the outbox entry
 *    that will run it, or null, "normalized": the plugin's result,
 *    "body": the raw body as text (or "body_b64" when it is not UTF-8)} */
#ifndef AGAPE_WEBHOOK_H
#define AGAPE_WEBHOOK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEBHOOK_EVENT_ID_MAX 200     /* bytes of a provider's event id */
#define WEBHOOK_PROVIDER_MAX 64      /* bytes of a provider name */
#define WEBHOOK_ID_MAX (WEBHOOK_PROVIDER_MAX + 1 + WEBHOOK_EVENT_ID_MAX + 1)
#define WEBHOOK_PAYMENT_EVENTS_MAX 50 /* entries kept in a payment's "events" */
#define WEBHOOK_KV_SUBSCRIPTIONS "subscriptions"

/* A provider's event id is usable: 1..WEBHOOK_EVENT_ID_MAX bytes, no control
 * characters (and so no NUL, which would cut the store key). */
bool webhook_event_id_ok(const char *s, size_t len);
/* A provider name as the configuration allows: [a-z0-9_-]{1,64}. */
bool webhook_provider_ok(const char *s);

/* The inbox key provider | 0x00 | event_id into out (cap bytes). AGAPE_OK,
 * AGAPE_EINVAL or AGAPE_ERANGE. */
int webhook_inbox_key(const char *provider, const char *event_id, uint8_t *out, size_t cap,
                      size_t *klen);

/* "<provider>:<event_id>" into out; AGAPE_ERANGE when it does not fit. */
int webhook_public_id(const char *provider, const char *event_id, char *out, size_t outlen);
/* Split a public id; AGAPE_EINVAL when it is not "<provider>:<event_id>"
 * with both parts valid. */
int webhook_parse_id(const char *id, char *provider, size_t plen, char *event_id, size_t elen);

/* The outbox entry key (due_ms | seq) as 32 lowercase hex characters + NUL. */
void webhook_outbox_hex(const uint8_t key[16], char out[33]);

/* The outbox work item that runs an event:
 * {"kind":"webhook","provider","event_id"} as compact JSON text (malloc'd;
 * free() it), or NULL on allocation failure. */
char *webhook_outbox_item(const char *provider, const char *event_id);
/* Decode the 32 hex characters of webhook_outbox_hex; false if malformed. */
bool webhook_outbox_unhex(const char *hex, uint8_t key[16]);

/* A new inbox record (new reference, or NULL on allocation failure), status
 * "pending", attempts 0. `normalized` is copied; the body is kept as text
 * when it is valid UTF-8, else base64 in "body_b64". */
json_t *webhook_inbox_record(const char *provider, const json_t *normalized, const char *body,
                             size_t body_len, int64_t received_ms, int64_t next_ms,
                             const char *outbox_hex);

/* The record as the admin API shows it: "id" (public id) added, "outbox_key"
 * and "v" left out, and the body too unless with_body. New reference. */
json_t *webhook_inbox_public(const json_t *rec, bool with_body);

/* ---- payment statuses ------------------------------------------------
 * The order an event may move a payment along (never backwards):
 *   requires_action < processing < {succeeded, failed, canceled} < refunded
 * Within the final three: failed → succeeded (the customer retried and it
 * went through) and failed → canceled are allowed; succeeded and canceled
 * never change into another of the three. refunded is reached only from
 * succeeded (or earlier statuses, when the events came out of order). A
 * status that is not one of the six is never applied. */
int webhook_status_rank(const char *status); /* 0..3, or -1 for an unknown status */
bool webhook_status_allowed(const char *from, const char *to);

enum webhook_apply {
    WEBHOOK_APPLIED = 0, /* the status changed */
    WEBHOOK_UNCHANGED,   /* already in that status, or the event carries none */
    WEBHOOK_REFUSED      /* the order forbids it (a late or stale event) */
};
/* Apply an event's normalized status to a payment record (in place): on
 * WEBHOOK_APPLIED the status, updated_at and (for refunded) refunded_amount
 * change and {"event_id", "type", "status", "at"} is appended to "events",
 * which keeps the last WEBHOOK_PAYMENT_EVENTS_MAX entries. */
enum webhook_apply webhook_apply_payment(json_t *payment, const char *event_id, const char *type,
                                         const char *status, int64_t now_ms);

/* ---- subscriptions ---------------------------------------------------- */

/* The subscription record a webhook's normalized "subscription" (a plugin
 * translates its provider's subscription object into it: {"id", "customer",
 * "status", "current_period_end", "cancel_at_period_end", "items": [{"id",
 * "price", "product", "quantity"}], "metadata", "deleted"}) makes of `old`
 * (the stored record or NULL), for an event created at `created_s` (seconds;
 * 0 when unknown): the normalized members plus "provider", "updated_at",
 * "event_id", "event_created". Returns NULL when `sub` has no id, or when
 * `old` came from a later event (event_created greater than created_s):
 * events arrive out of order and an older one never overwrites a newer
 * state. New reference. */
json_t *webhook_subscription_record(const char *provider, const char *event_id,
                                    int64_t created_s, const json_t *sub, const json_t *old,
                                    int64_t now_ms);

/* The wait before run `attempts` + 1 after `attempts` failed runs:
 * base_ms × 2^(attempts-1), at most cap_ms. */
int64_t webhook_backoff_ms(int attempts, int64_t base_ms, int64_t cap_ms);

/* ISO-8601 UTC of a wall-clock ms time ("2026-11-28T10:00:00Z"). */
void webhook_iso(int64_t wall_ms, char out[32]);

#endif
