/* api — the HTTP API of API.md: the route table and the handlers.
 * api.c routes and serves operations endpoints; api_payments.c the payments;
 * idem.c the Idempotency-Key bookkeeping shared by POST endpoints. */
#ifndef AGAPE_API_H
#define AGAPE_API_H

#include "httpd.h"

/* Route a request whose body is complete (server thread). */
void api_route(struct httpd_req *r);
/* Called when a request's connection is done, answered or not. */
void api_request_done(struct httpd_req *r);

void api_payments_create(struct httpd_req *r);
void api_payments_get(struct httpd_req *r, const char *id);
void api_payments_refund(struct httpd_req *r, const char *id);
void api_payments_capture(struct httpd_req *r, const char *id);

/* Webhooks (api_webhooks.c): POST /v1/webhooks/{provider} (public,
 * signature-checked), and with scope admin GET /v1/webhooks/events
 * (?provider=&status=&limit=), GET /v1/webhooks/events/{id},
 * POST /v1/webhooks/events/{id}/replay, where {id} is "<provider>:<event_id>"
 * percent-encoded (webhook.h); plus GET /v1/admin/kv/{ns}/{key} and
 * GET /v1/admin/outbox (?kind=&limit=). api_webhooks_route answers any of
 * these paths and returns true, or returns false (not one of them). */
bool api_webhooks_route(struct httpd_req *r);
void api_webhooks_receive(struct httpd_req *r, const char *provider);
void api_webhooks_list(struct httpd_req *r);
void api_webhooks_get(struct httpd_req *r, const char *id);
void api_webhooks_replay(struct httpd_req *r, const char *id);
void api_admin_kv_get(struct httpd_req *r, const char *ns, const char *key);
void api_admin_outbox(struct httpd_req *r);

/* ISO-8601 UTC with seconds ("2026-11-28T10:00:00Z") of a wall-clock ms time. */
void api_time_iso(int64_t wall_ms, char out[32]);

/* Idempotency (idem.c). A client's Idempotency-Key is scoped to its API key.
 * The record: {"state": "in_progress"|"done", "hash": request hash,
 * "resource": id, "boot": boot id, "status": int, "answer": text}. */
struct idem {
    bool present;          /* the request carried a key */
    char client_key[256];
    char store_key[320];   /* api key id | 0 | client key */
    size_t store_klen;
    char hash[65];         /* sha256 hex of the canonical request */
    char base[80];         /* seed of provider idempotency keys */
};

/* Read and check the Idempotency-Key header and hash `canonical` (the
 * request's canonical form). False when the header is malformed (400 set). */
bool idem_prepare(struct httpd_req *r, const char *scope, json_t *canonical, struct idem *id);
/* Look up an earlier request with the same key. Returns true when the
 * request was answered from it: a replay of the stored answer
 * (Idempotent-Replayed: true), 409 idempotency_conflict (another body),
 * 409 in_progress (still running in this process). `resource_out` (may be
 * NULL) receives the resource id of a request that was interrupted by a
 * restart and was left unfinished; the caller decides what to answer. */
bool idem_check(struct httpd_req *r, const struct idem *id, char *resource_out, size_t outlen);
/* Add the in-progress record (an insert: it fails the batch with
 * AGAPE_EEXIST when a concurrent request took the key first). */
void idem_begin(struct httpd_req *r, const struct idem *id, struct store_batch *b,
                const char *resource);
/* Add the final record: the answer replays from now on. */
void idem_finish(struct httpd_req *r, const struct idem *id, struct store_batch *b,
                 const char *resource);

#endif
