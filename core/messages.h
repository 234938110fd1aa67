/* messages — e-mail and SMS through the durable outbox: validation, message
 * records, delivery by the worker (kind "message"), delivery status from
 * webhooks, and the admin operations. The HTTP side is api_messages.c; the
 * user's guide is docs/messaging.md.
 *
 * The life of a message:
 *   1. POST /v1/messages validates the request and renders its template
 *      (templates.h) — a bad request or a missing variable is a 400 and
 *      nothing is stored; then the message record (status "queued", the
 *      rendered content inside) and its outbox item {"kind":"message","id"}
 *      commit in one batch, and only then is 202 answered. A rule
 *      (agape.enqueue_message) queues an item that carries the request
 *      itself; its record is made when the worker first takes it.
 *   2. The worker hands the due item to messages' kind handler (worker
 *      thread): the routing script's route_message(msg, ctx) gives the
 *      provider chain; the message shows "sending" (in memory: GET overlays
 *      it; the stored record stays "queued", so a crash sends it again);
 *      dispatch_start(send_email | send_sms) runs the chain on the client
 *      thread with retries and fail-over (money = false).
 *   3. The outcome (client thread) is committed with store_commit_async in
 *      ONE batch — the record and the outbox change — and the item's lease
 *      is released once that batch is durable:
 *        ok                 → "sent" (provider, provider_ref; the index
 *                             "mref:<provider>" | 0x00 | ref → id is written)
 *        declined, invalid  → "failed" at once (never retried elsewhere)
 *        auth, rate_limited, unavailable, unknown (after the whole chain)
 *                           → "queued" again, due after message_backoff_ms ×
 *                             2^(rounds-1) (at most message_backoff_max_ms);
 *                             after message_max_attempts rounds → "failed".
 *                             After `unknown` the next round uses the same
 *                             chain. Every attempt that ended ok or unknown
 *                             may have delivered a copy: all but one count
 *                             in "possible_duplicates" (the providers have
 *                             no idempotency key for sends).
 *   4. Delivery webhooks (SendGrid events, Twilio status callbacks), through
 *      the webhook inbox and the worker (worker_set_message_status_hook):
 *      "sent" → "delivered" or "failed"; "queued" → "delivered" (an earlier
 *      attempt whose answer was lost did arrive).
 * Delivery is AT LEAST ONCE: a crash (or a lost provider answer) between a
 * provider accepting a message and the commit of that outcome sends it again.
 *
 * Store layout (STORE_META; store_keys.h):
 *   "msg:" id (S)                      → JSON message record (below)
 *   "mref:<provider>" | 0x00 | ref (S) → message id (S), written with "sent"
 *   "mfail:" id (S)                    → "" — the failed messages, for the admin
 *                                        list; written with "failed", deleted by
 *                                        a retry
 * Record: {"v":1, "id", "channel", "to", "from"?, "from_name"?, "template"?,
 *   "template_id"?, "data"? (template_id only), "content": {"subject"?, "text"?,
 *   "html"?} | {"body"}, "status", "provider", "provider_ref", "attempts":
 *   [{"provider","outcome","http_status","latency_ms","error"?,"at"}] (the last
 *   MESSAGES_ATTEMPTS_KEPT), "rounds" (delivery rounds so far), "maybe_delivered"
 *   (attempts that ended ok or unknown), "possible_duplicates" (maybe_delivered
 *   - 1, at least 0), "created_at", "updated_at", "next_at", "error"?,
 *   "outbox_key" (32 hex of the item that runs it, or null), "chain"? (after
 *   unknown), "api_key_id"?, "source"? (the webhook event of a rule's message),
 *   "retries"? (admin retries), "delivered_at"?}
 *
 * Configuration (optional globals in agape.conf):
 *   message_max_attempts   = 8       delivery rounds before "failed"
 *   message_backoff_ms     = 1000    wait after the first failed round, doubled…
 *   message_backoff_max_ms = 300000  …up to this
 *   message_first_delay_ms = 0       delay between accepting and the first round
 *   message_max_inflight   = 256     messages being sent at once
 *   message_deadline_ms    = 30000   one round across the chain (retries included)
 *   templates              = "templates" (default: "templates" beside the
 *                                    scripts directory) */
#ifndef AGAPE_MESSAGES_H
#define AGAPE_MESSAGES_H

#include "app.h"
#include "httpd.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESSAGES_ID_MAX 48
#define MESSAGES_EMAIL_MAX 254                /* bytes of an e-mail address */
#define MESSAGES_EMAIL_LOCAL_MAX 64
#define MESSAGES_SUBJECT_MAX 998              /* bytes */
#define MESSAGES_EMAIL_BODY_MAX (256 * 1024)  /* bytes of text, and of html */
#define MESSAGES_SMS_BODY_MAX 1600            /* characters (code points) */
#define MESSAGES_FROM_NAME_MAX 256
#define MESSAGES_SMS_FROM_MAX 64
#define MESSAGES_TEMPLATE_ID_MAX 128
#define MESSAGES_DATA_MAX 65536               /* bytes of `data` as JSON */
#define MESSAGES_ATTEMPTS_KEPT 50
#define MESSAGES_LIST_MAX 1000                /* admin list limit */

#define MESSAGES_META_MSG "msg:"
#define MESSAGES_META_FAIL "mfail:"
#define MESSAGES_META_REF "mref:"

struct messages_conf {
    int max_attempts;
    int64_t backoff_ms;
    int64_t backoff_max_ms;
    int64_t first_delay_ms;
    int max_inflight;
    int64_t deadline_ms;
    char templates_dir[1024];
};

/* ---- pure helpers (any thread; tests/unit/test_messages.c) ------------- */

/* One well-formed address: local@domain, printable ASCII without spaces,
 * quotes, angle brackets, parentheses, commas, semicolons, colons, brackets
 * or backslashes; the local part a dot-atom of at most 64 bytes; the domain
 * of labels [A-Za-z0-9-] (not starting or ending with '-') with at least
 * one dot; at most MESSAGES_EMAIL_MAX bytes in all. */
bool messages_email_ok(const char *s);
/* E.164: ^\+[1-9][0-9]{6,14}$. */
bool messages_e164_ok(const char *s);
/* Code points in s[0..len) (each byte that does not continue a UTF-8
 * sequence counts one). */
size_t messages_utf8_chars(const char *s, size_t len);
/* A message id: "msg_" + 8..40 of [0-9a-z]. */
bool messages_id_ok(const char *id);
/* A new, time-ordered id "msg_" + 13 hex (µs) + 8 random hex. */
void messages_new_id(char out[MESSAGES_ID_MAX]);
/* base × 2^(rounds-1), at most cap (rounds >= 1). */
int64_t messages_backoff_ms(int rounds, int64_t base, int64_t cap);

/* Check a request. `from_api`: only the fields of API.md are allowed; else
 * (an item queued by a rule) its bookkeeping members too (kind, id, status,
 * created_at, source). On failure returns AGAPE_EINVAL with `param` naming
 * the field and `msg` saying why. */
int messages_validate(json_t *in, bool from_api, char *param, size_t paramlen, char *msg,
                      size_t msglen);

/* A new record (status "queued", no outbox key yet) for a valid request
 * `in`: its template rendered from conf->templates_dir. AGAPE_OK and *out (new
 * reference), or a negative rc with param/msg (AGAPE_ENOENT unknown template,
 * AGAPE_EINVAL validation or missing variable, AGAPE_ENOMEM). Any thread. */
int messages_record_new(const struct messages_conf *conf, json_t *in, const char *id,
                        int64_t now_ms, const char *api_key_id, json_t **out, char *param,
                        size_t paramlen, char *msg, size_t msglen);

/* The record as clients see it: {"id", "channel", "to", "status", "provider",
 * "provider_ref", "attempts", "created_at", "updated_at", "template"?,
 * "error"?, "next_at"?, "possible_duplicates"?, "delivered_at"?}. New
 * reference. */
json_t *messages_public(json_t *rec);

/* Key of a record in STORE_META into out (cap bytes); its length, or 0. */
size_t messages_key(char *out, size_t cap, const char *id);

/* Add to `b`: the record (with outbox_key set to a new item due at due_ms)
 * and its outbox item. AGAPE_OK or AGAPE_ENOMEM. `insert`: fail the batch
 * with AGAPE_EEXIST when the record exists. */
int messages_enqueue(struct store_batch *b, json_t *rec, int64_t due_ms, bool insert);

/* Read the messages_* and templates keys (c may be NULL); defaults applied,
 * values clamped. `warn`: log what was clamped. */
void messages_conf_load(const struct conf *c, struct messages_conf *out, bool warn);

/* ---- the running module ------------------------------------------------ */

/* Load the configuration, register the "message" kind with the worker and
 * the delivery-status hook. Main thread, before worker_start. */
int messages_start(struct app *app);
/* The configuration in force; NULL before messages_start (requests then
 * answer 503 not_ready). Any thread. */
const struct messages_conf *messages_config(void);
/* Wait up to grace_ms for the messages being sent to finish (after
 * worker_stop, before client_destroy). Main thread. */
void messages_drain(int64_t grace_ms);
/* Wait (bounded) for every outcome commit, then forget the module's state.
 * After client_destroy (which ends the calls still running), before
 * store_close. Main thread; a no-op when not started. */
void messages_stop(void);

/* The public view of message `id`: "sending" while it is being sent.
 * AGAPE_OK and *out (new reference), AGAPE_ENOENT, AGAPE_ESTORE. Any thread. */
int messages_lookup(struct app *app, const char *id, json_t **out);

/* Admin list: records with `status` (NULL: any), oldest first, at most
 * `limit`; a new array in *out (public views). Any thread. */
int messages_list(struct app *app, const char *status, int limit, json_t **out);

/* Admin retry of a failed message: adds to `b` the record made "queued"
 * (rounds and attempts reset, error cleared) with a new item due now, and
 * the removal of its failed index. *rec_out gets the new record (new
 * reference). AGAPE_OK; AGAPE_ENOENT; AGAPE_EBUSY (being sent);
 * AGAPE_EINVAL (not failed: err says its status); AGAPE_ESTORE. Any thread;
 * the caller commits b (and then calls worker_notify). */
int messages_retry(struct app *app, const char *id, struct store_batch *b, json_t **rec_out,
                   char *err, size_t errlen);

/* ---- HTTP (api_messages.c) --------------------------------------------- */

/* POST /v1/messages, GET /v1/messages/{id} (scope messages); GET
 * /v1/messages?status=&limit= and POST /v1/messages/{id}/retry (scope
 * admin). Answers and returns true for these paths, false otherwise. Server
 * thread. */
bool api_messages_route(struct httpd_req *r);

#endif
