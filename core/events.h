/* events — what clients send to POST /v1/events (analytics events) and
 * POST /v1/errors (error reports): the validation rules, and the outbox items
 * the two endpoints commit (kinds "event" and "error"). Pure functions on
 * jansson values, so the rules are tested without a server; the handlers are
 * in api_events.c, the delivery in analytics.c ("event") and monitor.c
 * ("error"). docs/observability.md is the user's guide.
 *
 * An event is one of two shapes (never both):
 *   GA4:  {"name", "user_id"?, "client_id"?, "params"?, "timestamp_micros"?}
 *   seed: {"category", "action", "label"?, "value"?, "user_id"?, "client_id"?, "params"?,
 *          "timestamp_micros"?}
 * Rules (GA4 Measurement Protocol limits, PROVIDERS.md §6.1):
 *   name          1..40 bytes, [A-Za-z][A-Za-z0-9_]*, no reserved prefix (google_, ga_,
 *                 firebase_, any case) and not a name Google Analytics reserves
 *                 (session_start, first_visit, …)
 *   category      string, 1..150 bytes
 *   action        string, 1..40 characters, starting with an ASCII letter (the
 *                 google_analytics plugin maps it to a GA4 name, one character each)
 *   label         string, at most 100 characters
 *   value         number
 *   user_id       string of 1..256 bytes without '@' (no e-mail addresses: GA forbids
 *                 personal data), or an integer
 *   client_id     string of 1..256 bytes
 *   params        object of at most 25 members; names as event names (reserved
 *                 names aside); values: string (at most 100 characters), number,
 *                 boolean, or an array (at most 200 elements) of such scalars or of
 *                 flat objects (at most 30 members, names 1..40 bytes) of them
 *   timestamp_micros  positive integer (microseconds since the epoch)
 * Unknown members are refused. A request holds one event, or {"events": [..]}
 * with 1..EVENTS_MAX_PER_REQUEST of them.
 *
 * An error report:
 *   {"message"?, "level"?, "exception"?: {"type", "value"?}, "tags"?, "user"?}
 *   message       string, 1..8192 bytes; message or exception is required
 *   level         "fatal" | "error" (default) | "warning" | "info" | "debug"
 *   exception     type: string 1..256 bytes; value: string of at most 8192 bytes
 *   tags          object of at most 64 members; names 1..32 of [A-Za-z0-9_.:-];
 *                 values strings (at most 200 bytes), integers or booleans
 *   user          object with id (string of 1..256 bytes, or an integer), username,
 *                 email, ip_address, name (strings of at most 256 bytes)
 *
 * Outbox items (STORE_OUTBOX, JSON text, "kind" first):
 *   event: {"kind": "event", <the event's members>, "received_ms": int,
 *           "attempts"?: int, "providers"?: [names], "last_error"?: string}
 *          timestamp_micros is set to the time of acceptance when the client sent
 *          none, so a late or retried delivery keeps the event's real time. Rules
 *          queue events too (agape.track): {"kind": "event", "name", "user_id"?,
 *          "params"?, "created_at", "source"}.
 *   error: {"kind": "error", "id": "<32 hex>", "error": <the report_error input>,
 *           "received_ms": int, "self"?: true, "attempts"?: int, "providers"?: [names],
 *           "last_error"?: string}
 *          where the report_error input is {"event_id": id, "level", "timestamp"
 *          (RFC 3339), "message"?, "exception"?, "tags"?, "user"?}.
 * "providers" (set when an item is rescheduled) lists the providers it still
 * has to reach; without it the routing rule chooses. */
#ifndef AGAPE_EVENTS_H
#define AGAPE_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVENTS_MAX_PER_REQUEST 500
#define EVENTS_NAME_MAX 40
#define EVENTS_PARAMS_MAX 25
#define EVENTS_TEXT_MAX 100       /* characters of a string param or label */
#define EVENTS_ID_MAX 256         /* bytes of user_id / client_id */
#define EVENTS_ERROR_TEXT_MAX 8192

/* Why a request was refused: the field (API.md "param") and the message. */
struct events_problem {
    char param[96];
    char message[256];
};

/* Check one event. `prefix` names it in problems ("" for a lone event,
 * "events[3]" inside a list: params become "name" or "events[3].name").
 * Returns true, or false with *p filled. Any thread. */
bool events_check(const json_t *ev, const char *prefix, struct events_problem *p);

/* Check a whole POST /v1/events body (one event or {"events": [...]}) and
 * return the events as a new array reference (for a lone event, an array of
 * it), or NULL with *p filled. */
json_t *events_check_body(const json_t *body, struct events_problem *p);

/* The outbox item of a checked event (new reference; NULL without memory). */
json_t *events_item(const json_t *ev, int64_t now_ms);

/* The event a plugin receives from an item: the event's members only, the
 * internal ones (kind, received_ms, attempts, providers, last_error,
 * created_at, source) left out. New reference, or NULL when the item is not
 * an object. */
json_t *events_plugin_event(const json_t *item);

/* Which GA client an item belongs to, as one string (client_id, then 0x1f,
 * then user_id as text; integers in decimal): events batched together must
 * share it. Truncated to outlen. */
void events_client_key(const json_t *item, char *out, size_t outlen);

/* Check an error report (the body of POST /v1/errors). */
bool events_check_error(const json_t *in, struct events_problem *p);

/* The report_error input for a checked report: event_id `id` (32 hex),
 * level (default "error"), timestamp (RFC 3339 of now_ms) and the report's
 * members. New reference or NULL. */
json_t *events_error_input(const json_t *in, const char *id, int64_t now_ms);

/* The outbox item of an error (new reference or NULL): `input` as made by
 * events_error_input (borrowed); self marks the gateway's own reports. */
json_t *events_error_item(const json_t *input, const char *id, int64_t now_ms, bool self);

/* POST /v1/events and POST /v1/errors (api_events.c): answers a request
 * for either path and returns true, or returns false (not one of them).
 * Server thread. */
struct httpd_req;
bool api_events_route(struct httpd_req *r);

/* The item to put back in the outbox for another attempt: a copy of `item`
 * with "attempts", "last_error" (err, or "?") and "providers" = `retry`
 * (borrowed), or without "providers" when `reroute` (the routing rule chooses
 * again). New reference or NULL. */
json_t *events_retry_item(const json_t *item, int attempts, const json_t *retry, bool reroute,
                          const char *err);

/* A fresh error id: 32 lowercase hex digits (16 random bytes). */
int events_new_error_id(char out[33]);

/* ms since the epoch → "2026-11-28T10:00:00.123Z" (UTC). */
void events_rfc3339(int64_t ms, char out[32]);

/* The backoff before attempt `attempts` + 1: base * 2^(attempts-1), at most
 * max (no jitter: the outbox spreads the load by due time). attempts >= 1. */
int64_t events_backoff_ms(int attempts, int64_t base, int64_t max);

#endif
