/* api_payments — POST /v1/payments, GET /v1/payments/{id},
 * POST /v1/payments/{id}/refunds, POST /v1/payments/{id}/capture.
 *
 * The life of a payment (create):
 *   1. validate the body (nothing is stored for a bad request);
 *   2. Idempotency-Key: replay, conflict or in-progress answers come from idem.c;
 *   3. the routing script chooses the provider chain;
 *   4. the payment record (status `processing`) and the in-progress
 *      idempotency record are committed together, BEFORE any provider call —
 *      so a crash mid-call leaves a record to reconcile, never a lost charge;
 *      the connection is suspended from here to the answer;
 *   5. once that commit is durable, the store's writer thread starts the
 *      chain (no server thread is woken in between); the dispatcher runs it
 *      on the client thread;
 *   6. resumed on a server thread, the final record and the stored answer
 *      are committed together, and only then is the answer sent.
 * The record is dumped once for both the store and the answer
 * (payments_put_public).
 */
#include "api.h"

#include "crypto.h"
#include "currency.h"
#include "idgen.h"
#include "jsonr.h"
#include "jsonw.h"
#include "log.h"
#include "paylock.h"
#include "payments.h"
#include "reconcile.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAY_AMOUNT_MAX 99999999999LL /* 12 digits of minor units */
#define PAY_TEXT_MAX 1000
#define PAY_URL_MAX 2048
#define PAY_METADATA_MAX 50

enum pay_kind { PAY_CREATE, PAY_REFUND, PAY_CAPTURE };

struct pay_work {
    enum pay_kind kind;
    struct httpd_req *r;
    json_t *record;        /* the payment record */
    json_t *refund;        /* PAY_REFUND: the refund being made */
    struct idem idem;
    struct dispatch_op *op;
    bool locked;           /* holds the per-payment lock */
    struct provider *chain[DISPATCH_MAX_CHAIN]; /* PAY_CREATE: the routed chain */
    size_t n;
    char base[96];         /* seed of the provider idempotency keys */
};

static void work_free(void *p)
{
    struct pay_work *w = p;
    if (w == NULL) {
        return;
    }
    dispatch_free(w->op);
    if (w->locked) {
        paylock_release(json_string_value(json_object_get(w->record, "id")));
    }
    json_decref(w->record);
    json_decref(w->refund);
    free(w);
}

/* "pay_" + the wall clock in µs (13 hex digits) + 8 random hex digits:
 * unique, and in time order, so new records land at the end of the payments
 * table (NOTES.md: time-ordered keys commit several times faster). */
static void payment_new_id(char *out, size_t outlen)
{
    uint32_t rnd = 0;
    if (idgen_random(&rnd, sizeof(rnd)) != AGAPE_OK) {
        rnd = (uint32_t)client_mono_us();
    }
    snprintf(out, outlen, "pay_%013llx%08x", (unsigned long long)(client_wall_ms() * 1000 +
                                                                 client_mono_us() % 1000),
             (unsigned)rnd);
}

/* ---- validation ----------------------------------------------------- */

static bool check_text(struct httpd_req *r, json_t *in, const char *name, size_t max)
{
    json_t *v = json_object_get(in, name);
    if (v == NULL || json_is_null(v)) {
        return true;
    }
    if (!json_is_string(v)) {
        httpd_reply_error(r, 400, "invalid_request", name, "%s must be a string", name);
        return false;
    }
    if (json_string_length(v) > max) {
        httpd_reply_error(r, 400, "invalid_request", name, "%s must be at most %zu bytes", name,
                          max);
        return false;
    }
    return true;
}

static bool check_url(struct httpd_req *r, json_t *in, const char *name)
{
    if (!check_text(r, in, name, PAY_URL_MAX)) {
        return false;
    }
    const char *s = json_string_value(json_object_get(in, name));
    if (s && strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0) {
        httpd_reply_error(r, 400, "invalid_request", name, "%s must be an http(s) URL", name);
        return false;
    }
    return true;
}

static bool check_amount(struct httpd_req *r, json_t *v, bool required)
{
    if (v == NULL) {
        if (required) {
            httpd_reply_error(r, 400, "invalid_request", "amount",
                              "amount is required: a positive integer (minor units)");
            return false;
        }
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
        json_integer_value(v) > PAY_AMOUNT_MAX) {
        httpd_reply_error(r, 400, "invalid_request", "amount",
                          "amount must be a positive integer (minor units) of at most 12 digits");
        return false;
    }
    return true;
}

/* The request of POST /v1/payments, checked field by field. */
static bool validate_create(struct httpd_req *r, json_t *in)
{
    static const char *known[] = {"amount",   "currency",   "description", "customer",
                                  "metadata", "provider",   "return_url",  "cancel_url",
                                  NULL};
    const char *k;
    json_t *v;
    json_object_foreach(in, k, v) {
        bool ok = false;
        for (int i = 0; known[i]; i++) {
            ok = ok || strcmp(k, known[i]) == 0;
        }
        if (!ok) {
            httpd_reply_error(r, 400, "invalid_request", k, "unknown field '%s'", k);
            return false;
        }
    }
    if (!check_amount(r, json_object_get(in, "amount"), true)) {
        return false;
    }
    v = json_object_get(in, "currency");
    if (!json_is_string(v)) {
        httpd_reply_error(r, 400, "invalid_request", "currency",
                          "currency is required: a lowercase ISO 4217 code such as \"usd\"");
        return false;
    }
    if (currency_exponent(json_string_value(v)) < 0) {
        httpd_reply_error(r, 400, "invalid_request", "currency",
                          "unknown currency '%.8s' (lowercase ISO 4217, e.g. \"usd\")",
                          json_string_value(v));
        return false;
    }
    if (!check_text(r, in, "description", PAY_TEXT_MAX) || !check_text(r, in, "provider", 64) ||
        !check_url(r, in, "return_url") || !check_url(r, in, "cancel_url")) {
        return false;
    }
    v = json_object_get(in, "customer");
    if (v && !json_is_null(v)) {
        if (!json_is_object(v)) {
            httpd_reply_error(r, 400, "invalid_request", "customer",
                              "customer must be an object {\"id\", \"email\"}");
            return false;
        }
        json_t *f;
        json_object_foreach(v, k, f) {
            if ((strcmp(k, "id") != 0 && strcmp(k, "email") != 0 && strcmp(k, "name") != 0) ||
                !json_is_string(f) || json_string_length(f) > 256) {
                httpd_reply_error(r, 400, "invalid_request", "customer",
                                  "customer.%s: only id, email and name, as strings of at "
                                  "most 256 bytes",
                                  k);
                return false;
            }
        }
        const char *email = json_string_value(json_object_get(v, "email"));
        if (email && (strchr(email, '@') == NULL || strchr(email, ' ') != NULL)) {
            httpd_reply_error(r, 400, "invalid_request", "customer.email",
                              "customer.email is not an e-mail address");
            return false;
        }
    }
    v = json_object_get(in, "metadata");
    if (v && !json_is_null(v)) {
        if (!json_is_object(v) || json_object_size(v) > PAY_METADATA_MAX) {
            httpd_reply_error(r, 400, "invalid_request", "metadata",
                              "metadata must be an object of at most %d string values",
                              PAY_METADATA_MAX);
            return false;
        }
        json_t *f;
        json_object_foreach(v, k, f) {
            if (!json_is_string(f) || strlen(k) > 40 || json_string_length(f) > 500) {
                httpd_reply_error(r, 400, "invalid_request", "metadata",
                                  "metadata.%.40s: keys of at most 40 bytes, string values of "
                                  "at most 500",
                                  k);
                return false;
            }
        }
    }
    return true;
}

/* ---- records and answers -------------------------------------------- */

static json_t *record_load(struct httpd_req *r, const char *id)
{
    char *val = NULL;
    size_t vlen = 0;
    int rc = store_get(r->app->store, STORE_PAYMENTS, id, strlen(id), &val, &vlen);
    if (rc == AGAPE_ENOENT) {
        httpd_reply_error(r, 404, "not_found", "id", "no payment %s", id);
        return NULL;
    }
    json_t *rec = rc == AGAPE_OK ? jsonr_loadb(val, vlen, 0, NULL) : NULL;
    free(val);
    if (rec == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the payment store is not available");
    }
    return rec;
}

static void answered(struct httpd_req *r)
{
    struct pay_work *w = r->work;
    if (w->locked) {
        /* The outcome is durable: the next operation on this payment may
         * start, even before this answer has left. */
        paylock_release(json_string_value(json_object_get(w->record, "id")));
        w->locked = false;
    }
    if (r->commit_rc != AGAPE_OK) {
        log_event(AGAPE_LOG_ERROR, &(struct log_fields){.request_id = r->id, .latency_ms = -1},
                  "could not record the outcome of %s (rc %d)",
                  json_string_value(json_object_get(w->record, "id")), r->commit_rc);
        free(r->resp);
        r->resp = NULL;
        for (int i = 0; i < r->n_resp_hdrs; i++) {
            free(r->resp_hdr_name[i]);
            free(r->resp_hdr_value[i]);
        }
        r->n_resp_hdrs = 0;
        httpd_reply_error(r, 500, "internal", NULL,
                          "the outcome could not be recorded; GET the payment to see its state");
    }
}

/* Commit `b` (which holds the record) with the stored answer, then answer.
 * The answer is already set in r; it leaves only once the batch is durable,
 * and a failed commit replaces it with a 500: nothing is acknowledged that
 * is not durable. The thread is not held while the commit runs. */
static void commit_and_answer(struct httpd_req *r, struct pay_work *w, struct store_batch *b,
                              const char *resource)
{
    idem_finish(r, &w->idem, b, resource);
    httpd_commit(r, b, answered);
}

/* ---- create --------------------------------------------------------- */

static void dispatched(struct dispatch_op *op, void *arg)
{
    (void)op;
    httpd_resume(arg); /* client thread → a server thread runs on_resume */
}

static void answer_with_payment(struct httpd_req *r, int status, json_t *rec, const char *type,
                                const char *message)
{
    if (type == NULL) {
        httpd_reply_json(r, status, payments_public(rec));
        return;
    }
    json_t *e = json_pack("{s:s, s:s, s:s}", "type", type, "message", message ? message : type,
                          "request_id", r->id);
    httpd_reply_json(r, status, json_pack("{s:o, s:o}", "error", e, "payment",
                                          payments_public(rec)));
}

/* The answer with the payment's public view `pub` (taken): the view itself,
 * or {"error": {type, message, request_id}, "payment": view}. Written as
 * text: the view is already text (payments_put_public), and re-parsing or
 * re-dumping it would cost more than the rest of the answer. */
static void answer_with_text(struct httpd_req *r, int status, char *pub, size_t publen,
                             const char *type, const char *message)
{
    if (pub == NULL) {
        httpd_reply_take(r, 500, NULL, 0); /* and the batch was made to fail */
        return;
    }
    if (type == NULL) {
        httpd_reply_take(r, status, pub, publen);
        return;
    }
    struct agape_buf b;
    buf_init(&b, 0);
    buf_adds(&b, "{\"error\":{");
    jsonw_key(&b, "type", 1);
    jsonw_str(&b, type);
    jsonw_key(&b, "message", 0);
    jsonw_str(&b, message ? message : type);
    jsonw_key(&b, "request_id", 0);
    jsonw_str(&b, r->id);
    buf_adds(&b, "},\"payment\":");
    buf_add(&b, pub, publen);
    buf_add(&b, "}", 1);
    free(pub);
    if (b.error != AGAPE_OK) {
        buf_fini(&b);
        httpd_reply_take(r, 500, NULL, 0);
        return;
    }
    size_t len = b.len;
    httpd_reply_take(r, status, buf_take(&b), len);
}

/* The outcome of the charge: applied to the record, the answer set in r,
 * and the batch that records both (the record, the reconciliation entry,
 * the idempotent answer). */
static struct store_batch *charge_outcome(struct httpd_req *r, struct pay_work *w,
                                          const struct dispatch_outcome *o)
{
    json_t *rec = w->record;
    const char *pid = json_string_value(json_object_get(rec, "id"));
    enum payments_verdict v = payments_apply(rec, o, false);
    struct store_batch *b = store_batch_new();
    char *pub = NULL;
    size_t publen = 0;
    payments_put_public(b, rec, &pub, &publen);
    switch (v) {
    case PAYMENTS_DONE:
    case PAYMENTS_PENDING:
        answer_with_text(r, 201, pub, publen, NULL, NULL);
        break;
    case PAYMENTS_DECLINED:
        answer_with_text(r, 402, pub, publen, "declined",
                         o->err[0] ? o->err : "the provider declined the payment");
        break;
    case PAYMENTS_INVALID:
        answer_with_text(r, 400, pub, publen, "invalid_request",
                         o->err[0] ? o->err : "the provider refused the request");
        break;
    case PAYMENTS_FAILED:
        answer_with_text(r, 502, pub, publen, "provider_unavailable",
                         "every provider in the chain failed; nothing was charged");
        break;
    }
    if (v == PAYMENTS_PENDING) {
        reconcile_schedule(b, pid, 1000, 0);
    } else {
        reconcile_clear(b, pid);
    }
    idem_finish(r, &w->idem, b, pid);
    return b;
}

/* Server thread: the chain is done; record the outcome and the answer,
 * then answer once that is durable. */
static void charge_done(struct httpd_req *r)
{
    struct pay_work *w = r->work;
    struct store_batch *b = charge_outcome(r, w, dispatch_result(w->op));
    httpd_commit(r, b, answered);
}

/* Client thread: hand the outcome to a server thread. Building the answer
 * here instead (and committing from here) was measured: the same CPU per
 * payment, one wake-up fewer, but 6-8 µs more per payment on the client
 * thread, which is single while the server threads are a pool. */
static void charge_dispatched(struct dispatch_op *op, void *arg)
{
    (void)op;
    httpd_resume_then(arg, charge_done);
}

/* Server thread, when the first commit failed. */
static void create_failed(struct httpd_req *r)
{
    struct pay_work *w = r->work;
    if (r->commit_rc == AGAPE_EEXIST) {
        /* A concurrent request with the same key got there first. */
        if (!idem_check(r, &w->idem, NULL, 0)) {
            httpd_reply_error(r, 409, "in_progress", "Idempotency-Key",
                              "a request with this Idempotency-Key is still in progress");
        }
        return;
    }
    httpd_reply_error(r, 503, "not_ready", NULL, "the payment could not be recorded");
}

/* Writer thread: the payment's first record is durable (or failed). The
 * chain starts from here: it runs on the client thread anyway, and waking a
 * server thread only to hand it on would cost a context switch. */
static void created(int rc, void *arg)
{
    struct httpd_req *r = arg;
    struct pay_work *w = r->work;
    r->commit_rc = rc;
    if (rc == AGAPE_OK) {
        dispatch_go(w->op);
        return;
    }
    httpd_resume(r); /* create_failed answers */
}

/* The provider chain from the routing script, as usable providers. */
static size_t route_chain(struct httpd_req *r, json_t *in, struct provider **chain, size_t cap)
{
    struct app *app = r->app;
    struct provider *avail[DISPATCH_MAX_CHAIN * 2];
    size_t na = registry_by_kind(app->reg, AGAPE_KIND_PAYMENT, avail, DISPATCH_MAX_CHAIN * 2);
    const char *explicit = json_string_value(json_object_get(in, "provider"));
    if (explicit) {
        struct provider *p = registry_find(app->reg, explicit);
        if (p == NULL || !(p->plugin->desc->kinds & AGAPE_KIND_PAYMENT)) {
            httpd_reply_error(r, 400, "invalid_request", "provider",
                              "unknown payment provider '%s'", explicit);
            return 0;
        }
        if (!p->usable) {
            httpd_reply_error(r, 502, "provider_unavailable", "provider",
                              "provider '%s' is not usable: %s", explicit, p->why);
            return 0;
        }
    }
    json_t *names = json_array();
    for (size_t i = 0; i < na; i++) {
        json_array_append_new(names, json_string(avail[i]->name));
    }
    json_t *ctx = json_pack("{s:o}", "available", names);
    json_t *ret = NULL;
    char err[512];
    json_t *args[2] = {in, ctx};
    int rc = script_callv(app->scripts, "route_payment", args, 2, &ret, err, sizeof(err));
    json_decref(ctx);
    if (rc != AGAPE_OK) {
        log_event(AGAPE_LOG_ERROR, &(struct log_fields){.request_id = r->id, .latency_ms = -1},
                  "routing script failed: %s", err);
        httpd_reply_error(r, 500, "script_error", NULL, "the routing script failed: %s", err);
        return 0;
    }
    size_t n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(ret, i, v) {
        struct provider *p = registry_find(app->reg, json_string_value(v) ? json_string_value(v)
                                                                          : "");
        if (p == NULL || !p->usable || !(p->plugin->desc->kinds & AGAPE_KIND_PAYMENT)) {
            log_event(AGAPE_LOG_WARN, &(struct log_fields){.request_id = r->id, .latency_ms = -1},
                      "routing script named an unusable payment provider; skipped");
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < n; j++) {
            dup = dup || chain[j] == p;
        }
        if (!dup && n < cap) {
            chain[n++] = p;
        }
    }
    json_decref(ret);
    if (n == 0) {
        httpd_reply_error(r, 502, "provider_unavailable", NULL,
                          "no usable payment provider for this payment");
    }
    return n;
}

void api_payments_create(struct httpd_req *r)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_PAYMENTS)) {
        return;
    }
    json_t *in = httpd_body_json(r);
    if (in == NULL) {
        return;
    }
    struct pay_work *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        json_decref(in);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return;
    }
    w->kind = PAY_CREATE;
    w->r = r;
    r->work = w;
    r->free_work = work_free;

    char earlier[64];
    if (!validate_create(r, in) || !idem_prepare(r, "/v1/payments", in, &w->idem) ||
        idem_check(r, &w->idem, earlier, sizeof(earlier))) {
        json_decref(in);
        return;
    }
    if (earlier[0]) {
        /* Interrupted by a restart after its record was made: answer with
         * the payment as it stands; it is never sent again. */
        json_decref(in);
        json_t *rec = record_load(r, earlier);
        if (rec) {
            answer_with_payment(r, 201, rec, NULL, NULL);
            json_decref(rec);
        }
        return;
    }
    struct provider *chain[DISPATCH_MAX_CHAIN];
    size_t n = route_chain(r, in, chain, DISPATCH_MAX_CHAIN);
    if (n == 0) {
        json_decref(in);
        return;
    }

    char pid[48];
    char now[32];
    payment_new_id(pid, sizeof(pid));
    payments_now_iso(now);
    json_t *rec = json_pack("{s:s, s:s, s:O, s:O, s:o, s:o, s:o, s:o, s:n, s:n, s:n, s:n, s:s, "
                            "s:s, s:I, s:[]}",
                            "id", pid, "status", "processing", "amount",
                            json_object_get(in, "amount"), "currency",
                            json_object_get(in, "currency"), "description",
                            json_object_get(in, "description")
                                ? json_incref(json_object_get(in, "description"))
                                : json_null(),
                            "customer",
                            json_object_get(in, "customer")
                                ? json_incref(json_object_get(in, "customer"))
                                : json_null(),
                            "metadata",
                            json_object_get(in, "metadata")
                                ? json_incref(json_object_get(in, "metadata"))
                                : json_object(),
                            "provider", json_string(chain[0]->name), "provider_ref",
                            "client_secret", "approval_url", "capture_ref", "created_at", now,
                            "updated_at", now, "refunded_amount", (json_int_t)0, "attempts");
    if (rec == NULL) {
        json_decref(in);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return;
    }
    json_object_set_new(rec, "refunds", json_array());
    if (json_object_get(in, "return_url")) {
        json_object_set(rec, "return_url", json_object_get(in, "return_url"));
    }
    if (json_object_get(in, "cancel_url")) {
        json_object_set(rec, "cancel_url", json_object_get(in, "cancel_url"));
    }
    json_object_set_new(rec, "api_key_id", json_string(r->key.id));
    char base[96];
    snprintf(base, sizeof(base), "%s", w->idem.present ? w->idem.base : pid);
    json_object_set_new(rec, "idem_base", json_string(base));
    w->record = rec;
    /* The payment's lock, held from its first record to its outcome's
     * commit, so a webhook or the reconciler never writes over it mid-call
     * (a new id: nobody else can hold it). */
    w->locked = paylock_try(pid);

    struct store_batch *b = store_batch_new();
    payments_put(b, rec);
    idem_begin(r, &w->idem, b, pid);
    /* If this process dies mid-call, the reconciler finds out what happened
     * once the payment's deadline has surely passed. */
    reconcile_schedule(b, pid, r->app->payment_policy.deadline_ms + 5000, 0);
    json_decref(in);
    memcpy(w->chain, chain, n * sizeof(chain[0]));
    w->n = n;
    snprintf(w->base, sizeof(w->base), "%s", base);
    /* The op is built here, on the thread that frees it, and started by the
     * writer's callback (created) once the record is durable. */
    json_t *input = payments_charge_input(rec);
    w->op = dispatch_new(r->app->client, &r->app->payment_policy, "charge", input, w->chain,
                         w->n, w->base, true, charge_dispatched, r);
    if (w->op) {
        dispatch_set_request_id(w->op, r->id);
    }
    json_decref(input);
    if (w->op == NULL) {
        store_batch_free(b);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory starting the payment");
        return;
    }
    /* Suspended from here to the answer. */
    r->commit_rc = AGAPE_ERROR;
    httpd_suspend(r, create_failed);
    store_commit_async(r->app->store, b, created, r);
}

/* ---- read ----------------------------------------------------------- */

void api_payments_get(struct httpd_req *r, const char *id)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_PAYMENTS)) {
        return;
    }
    json_t *rec = record_load(r, id);
    if (rec) {
        httpd_reply_json(r, 200, payments_public(rec));
        json_decref(rec);
    }
}

/* ---- refunds and capture -------------------------------------------- */

/* Common start of an operation on an existing payment: auth, load, lock,
 * idempotency. Returns the work or NULL when already answered. */
static struct pay_work *op_begin(struct httpd_req *r, const char *id, enum pay_kind kind,
                                 json_t *canonical, const char *scope)
{
    struct pay_work *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return NULL;
    }
    w->kind = kind;
    w->r = r;
    r->work = w;
    r->free_work = work_free;
    char earlier[64];
    if (!idem_prepare(r, scope, canonical, &w->idem) ||
        idem_check(r, &w->idem, earlier, sizeof(earlier))) {
        return NULL;
    }
    if (earlier[0]) {
        httpd_reply_error(r, 409, "in_progress", "Idempotency-Key",
                          "an earlier request with this key was interrupted by a restart; "
                          "GET the payment to see its state");
        return NULL;
    }
    w->record = record_load(r, id);
    if (w->record == NULL) {
        return NULL;
    }
    if (!paylock_try(id)) {
        httpd_reply_error(r, 409, "in_progress", "id",
                          "another operation on payment %s is in progress", id);
        return NULL;
    }
    w->locked = true;
    return w;
}

static struct provider *payment_provider(struct httpd_req *r, json_t *rec)
{
    const char *name = json_string_value(json_object_get(rec, "provider"));
    struct provider *p = name ? registry_find(r->app->reg, name) : NULL;
    if (p == NULL || !p->usable) {
        httpd_reply_error(r, 502, "provider_unavailable", "provider",
                          "the payment's provider '%s' is not available", name ? name : "?");
        return NULL;
    }
    return p;
}

static void refund_done(struct httpd_req *r)
{
    struct pay_work *w = r->work;
    json_t *rec = w->record;
    json_t *rf = w->refund;
    const char *pid = json_string_value(json_object_get(rec, "id"));
    if (w->op == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory starting the operation");
        return;
    }
    const struct dispatch_outcome *o = dispatch_result(w->op);
    json_object_set(rf, "attempts", o->attempts);
    json_t *refund_ref = json_object_get(o->result, "refund_ref");
    if (refund_ref) {
        json_object_set(rf, "provider_ref", refund_ref);
    }
    json_int_t amount = json_integer_value(json_object_get(rf, "amount"));
    json_int_t total = json_integer_value(json_object_get(rec, "amount"));
    json_int_t done = json_integer_value(json_object_get(rec, "refunded_amount"));
    const char *st = json_string_value(json_object_get(o->result, "status"));
    int http = 201;
    const char *etype = NULL;
    const char *emsg = NULL;

    switch (o->outcome) {
    case AGAPE_OUTCOME_OK:
        json_object_set_new(rf, "status", json_string(st ? st : "succeeded"));
        if (st == NULL || strcmp(st, "failed") != 0) {
            done += amount;
            json_object_set_new(rec, "refunded_amount", json_integer(done));
            if (done >= total) {
                json_object_set_new(rec, "status", json_string("refunded"));
            }
        }
        break;
    case AGAPE_OUTCOME_UNKNOWN:
        /* May have been refunded: counted as pending, reconciled later. */
        json_object_set_new(rf, "status", json_string("processing"));
        break;
    case AGAPE_OUTCOME_DECLINED:
        json_object_set_new(rf, "status", json_string("failed"));
        http = 402, etype = "declined", emsg = o->err;
        break;
    case AGAPE_OUTCOME_INVALID:
        json_object_set_new(rf, "status", json_string("failed"));
        http = 400, etype = "invalid_request", emsg = o->err;
        break;
    default:
        json_object_set_new(rf, "status", json_string("failed"));
        http = 502, etype = "provider_unavailable", emsg = "the provider could not refund now";
        break;
    }
    json_array_append(json_object_get(rec, "refunds"), rf);
    payments_touch(rec);
    if (etype) {
        json_t *e = json_pack("{s:s, s:s, s:s}", "type", etype, "message",
                              emsg && emsg[0] ? emsg : etype, "request_id", r->id);
        httpd_reply_json(r, http, json_pack("{s:o, s:O}", "error", e, "refund", rf));
    } else {
        httpd_reply_json(r, http, json_incref(rf));
    }
    struct store_batch *b = store_batch_new();
    payments_put(b, rec);
    commit_and_answer(r, w, b, pid);
}

void api_payments_refund(struct httpd_req *r, const char *id)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_PAYMENTS)) {
        return;
    }
    json_t *in = r->body.len ? httpd_body_json(r) : json_object();
    if (in == NULL) {
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(in, k, v) {
        if (strcmp(k, "amount") != 0 && strcmp(k, "reason") != 0) {
            httpd_reply_error(r, 400, "invalid_request", k, "unknown field '%s'", k);
            json_decref(in);
            return;
        }
    }
    if (!check_amount(r, json_object_get(in, "amount"), false) ||
        !check_text(r, in, "reason", 200)) {
        json_decref(in);
        return;
    }
    char scope[96];
    snprintf(scope, sizeof(scope), "/v1/payments/%s/refunds", id);
    struct pay_work *w = op_begin(r, id, PAY_REFUND, in, scope);
    if (w == NULL) {
        json_decref(in);
        return;
    }
    json_t *rec = w->record;
    const char *status = json_string_value(json_object_get(rec, "status"));
    json_int_t total = json_integer_value(json_object_get(rec, "amount"));
    json_int_t pending = json_integer_value(json_object_get(rec, "refunded_amount"));
    size_t i;
    json_array_foreach(json_object_get(rec, "refunds"), i, v) {
        const char *s = json_string_value(json_object_get(v, "status"));
        if (s && strcmp(s, "processing") == 0) {
            pending += json_integer_value(json_object_get(v, "amount"));
        }
    }
    json_int_t left = total - pending;
    json_int_t amount = json_object_get(in, "amount")
                            ? json_integer_value(json_object_get(in, "amount"))
                            : left;
    if (status == NULL || strcmp(status, "succeeded") != 0) {
        httpd_reply_error(r, 400, "invalid_request", "id",
                          "payment %s is %s; only a succeeded payment can be refunded", id,
                          status ? status : "?");
        json_decref(in);
        return;
    }
    if (amount <= 0 || amount > left) {
        httpd_reply_error(r, 400, "invalid_request", "amount",
                          "amount %" PRId64 " is over what is left to refund (%" PRId64 ")",
                          (int64_t)amount, (int64_t)left);
        json_decref(in);
        return;
    }
    struct provider *p = payment_provider(r, rec);
    if (p == NULL) {
        json_decref(in);
        return;
    }
    char rid[48];
    char now[32];
    crypto_random_id("re_", 12, rid, sizeof(rid));
    api_time_iso(client_wall_ms(), now);
    w->refund = json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", rid, "payment_id", id, "amount",
                          amount, "status", "processing", "created_at", now);
    json_t *input = json_pack("{s:s, s:O, s:I, s:O}", "payment_id", id, "provider_ref",
                              json_object_get(rec, "provider_ref"), "amount", amount,
                              "currency", json_object_get(rec, "currency"));
    if (json_object_get(rec, "capture_ref")) {
        json_object_set(input, "capture_ref", json_object_get(rec, "capture_ref"));
    }
    char base[128];
    snprintf(base, sizeof(base), "r%s", w->idem.present ? w->idem.base : rid);
    json_decref(in);
    httpd_suspend(r, refund_done);
    struct provider *chain[1] = {p};
    w->op = dispatch_new(r->app->client, &r->app->payment_policy, "refund", input, chain, 1,
                           base, true, dispatched, r);
    if (w->op) {
        dispatch_set_request_id(w->op, r->id);
        dispatch_go(w->op);
    }
    json_decref(input);
    if (w->op == NULL) {
        httpd_resume(r);
    }
}

static void capture_done(struct httpd_req *r)
{
    struct pay_work *w = r->work;
    json_t *rec = w->record;
    const char *pid = json_string_value(json_object_get(rec, "id"));
    if (w->op == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory starting the operation");
        return;
    }
    const struct dispatch_outcome *o = dispatch_result(w->op);
    json_t *att = json_object_get(rec, "attempts");
    size_t i;
    json_t *v;
    json_array_foreach(o->attempts, i, v) {
        json_array_append(att, v);
    }
    payments_touch(rec);
    const char *st = json_string_value(json_object_get(o->result, "status"));
    switch (o->outcome) {
    case AGAPE_OUTCOME_OK:
        json_object_set_new(rec, "status", json_string(st ? st : "processing"));
        if (json_object_get(o->result, "capture_ref")) {
            json_object_set(rec, "capture_ref", json_object_get(o->result, "capture_ref"));
        }
        answer_with_payment(r, 200, rec, NULL, NULL);
        break;
    case AGAPE_OUTCOME_UNKNOWN:
        json_object_set_new(rec, "status", json_string("processing"));
        answer_with_payment(r, 200, rec, NULL, NULL);
        break;
    case AGAPE_OUTCOME_DECLINED:
        json_object_set_new(rec, "status", json_string("failed"));
        answer_with_payment(r, 402, rec, "declined", o->err);
        break;
    case AGAPE_OUTCOME_INVALID:
        answer_with_payment(r, 400, rec, "invalid_request", o->err);
        break;
    default:
        answer_with_payment(r, 502, rec, "provider_unavailable",
                            "the provider could not capture now");
        break;
    }
    struct store_batch *b = store_batch_new();
    payments_put(b, rec);
    commit_and_answer(r, w, b, pid);
}

void api_payments_capture(struct httpd_req *r, const char *id)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_PAYMENTS)) {
        return;
    }
    json_t *in = json_object();
    char scope[96];
    snprintf(scope, sizeof(scope), "/v1/payments/%s/capture", id);
    struct pay_work *w = op_begin(r, id, PAY_CAPTURE, in, scope);
    json_decref(in);
    if (w == NULL) {
        return;
    }
    const char *status = json_string_value(json_object_get(w->record, "status"));
    if (status == NULL || strcmp(status, "requires_action") != 0) {
        httpd_reply_error(r, 400, "invalid_request", "id",
                          "payment %s is %s; only a payment awaiting approval can be captured",
                          id, status ? status : "?");
        return;
    }
    struct provider *p = payment_provider(r, w->record);
    if (p == NULL) {
        return;
    }
    if (dispatch_find_op(p, "capture") == NULL) {
        httpd_reply_error(r, 400, "invalid_request", "id",
                          "provider %s captures payments itself; nothing to capture", p->name);
        return;
    }
    json_t *input = json_pack("{s:s, s:O, s:O, s:O}", "payment_id", id, "provider_ref",
                              json_object_get(w->record, "provider_ref"), "amount",
                              json_object_get(w->record, "amount"), "currency",
                              json_object_get(w->record, "currency"));
    char base[128];
    snprintf(base, sizeof(base), "c%s",
             json_string_value(json_object_get(w->record, "idem_base"))
                 ? json_string_value(json_object_get(w->record, "idem_base"))
                 : id);
    httpd_suspend(r, capture_done);
    struct provider *chain[1] = {p};
    w->op = dispatch_new(r->app->client, &r->app->payment_policy, "capture", input, chain, 1,
                           base, true, dispatched, r);
    if (w->op) {
        dispatch_set_request_id(w->op, r->id);
        dispatch_go(w->op);
    }
    json_decref(input);
    if (w->op == NULL) {
        httpd_resume(r);
    }
}
