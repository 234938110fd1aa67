/* api_messages — POST /v1/messages, GET /v1/messages/{id} (scope messages),
 * GET /v1/messages?status=&limit= and POST /v1/messages/{id}/retry (scope
 * admin). See messages.h for what happens to a message afterwards.
 *
 * POST: validate and render (nothing is stored for a bad request), then the
 * record, its outbox item and the Idempotency-Key record commit in one batch
 * (httpd_commit: the thread is not held), and only then 202 leaves. */
#include "api.h"
#include "log.h"
#include "messages.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_LIST_DEFAULT 50

struct msg_work {
    struct idem idem;
    char id[MESSAGES_ID_MAX];
};

static void work_free(void *p)
{
    free(p);
}

/* Only a durable commit is acknowledged: a failed one replaces the answer. */
static void created(struct httpd_req *r)
{
    struct msg_work *w = r->work;
    if (r->commit_rc == AGAPE_OK) {
        worker_notify();
        return;
    }
    free(r->resp);
    r->resp = NULL;
    for (int i = 0; i < r->n_resp_hdrs; i++) {
        free(r->resp_hdr_name[i]);
        free(r->resp_hdr_value[i]);
    }
    r->n_resp_hdrs = 0;
    if (r->commit_rc == AGAPE_EEXIST && w->idem.present) {
        /* A concurrent request with the same key got there first. */
        if (!idem_check(r, &w->idem, NULL, 0)) {
            httpd_reply_error(r, 409, "in_progress", "Idempotency-Key",
                              "a request with this Idempotency-Key is still in progress");
        }
        return;
    }
    log_event(AGAPE_LOG_ERROR, &(struct log_fields){.request_id = r->id, .latency_ms = -1},
              "message %s could not be recorded (rc %d)", w->id, r->commit_rc);
    httpd_reply_error(r, 503, "not_ready", NULL, "the message could not be recorded; "
                      "nothing was queued");
}

static void create(struct httpd_req *r)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_MESSAGES)) {
        return;
    }
    json_t *in = httpd_body_json(r);
    if (in == NULL) {
        return;
    }
    struct msg_work *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        json_decref(in);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return;
    }
    r->work = w;
    r->free_work = work_free;
    char param[96];
    char msg[512];
    json_t *rec = NULL;
    if (messages_validate(in, true, param, sizeof(param), msg, sizeof(msg)) != AGAPE_OK) {
        httpd_reply_error(r, 400, "invalid_request", param[0] ? param : NULL, "%s", msg);
        goto out;
    }
    char earlier[64];
    if (!idem_prepare(r, "/v1/messages", in, &w->idem) ||
        idem_check(r, &w->idem, earlier, sizeof(earlier))) {
        goto out;
    }
    if (earlier[0]) {
        /* The record and the key commit together, so a key left "in progress"
         * by an earlier run has no message: make it now, under a new id. */
        log_event(AGAPE_LOG_INFO, &(struct log_fields){.request_id = r->id, .latency_ms = -1},
                  "Idempotency-Key of an interrupted request reused");
    }
    const struct messages_conf *mc = messages_config();
    if (mc == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "starting");
        goto out;
    }
    messages_new_id(w->id);
    int64_t now = client_wall_ms();
    int rc = messages_record_new(mc, in, w->id, now, r->key.id, &rec, param, sizeof(param), msg,
                                 sizeof(msg));
    if (rc == AGAPE_ENOMEM) {
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        goto out;
    }
    if (rc != AGAPE_OK) {
        httpd_reply_error(r, 400, "invalid_request", param[0] ? param : NULL, "%s", msg);
        goto out;
    }
    struct store_batch *b = store_batch_new();
    if (messages_enqueue(b, rec, now + mc->first_delay_ms, true) != AGAPE_OK) {
        store_batch_free(b);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        goto out;
    }
    httpd_reply_json(r, 202, json_pack("{s:s, s:s}", "id", w->id, "status", "queued"));
    if (w->idem.present) {
        /* The insert makes a concurrent twin fail (EEXIST); the final record
         * replaces it in the same batch, so the answer replays from now on. */
        if (!earlier[0]) {
            idem_begin(r, &w->idem, b, w->id);
        }
        idem_finish(r, &w->idem, b, w->id);
    }
    httpd_commit(r, b, created);
out:
    json_decref(rec);
    json_decref(in);
}

static void get_one(struct httpd_req *r, const char *id)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_MESSAGES)) {
        return;
    }
    json_t *view = NULL;
    int rc = messages_lookup(r->app, id, &view);
    if (rc == AGAPE_OK) {
        httpd_reply_json(r, 200, view);
    } else if (rc == AGAPE_ENOENT) {
        httpd_reply_error(r, 404, "not_found", "id", "no message %.64s", id);
    } else {
        httpd_reply_error(r, 503, "not_ready", NULL, "the message store is not available");
    }
}

static void list(struct httpd_req *r)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_ADMIN)) {
        return;
    }
    static const char *const statuses[] = {"queued", "sent", "delivered", "failed", NULL};
    const char *status = httpd_query(r, "status");
    const char *lim = httpd_query(r, "limit");
    long limit = MSG_LIST_DEFAULT;
    if (status != NULL && status[0] != '\0') {
        bool ok = false;
        for (int i = 0; statuses[i] && !ok; i++) {
            ok = strcmp(status, statuses[i]) == 0;
        }
        if (!ok) {
            httpd_reply_error(r, 400, "invalid_request", "status",
                              "status must be queued, sent, delivered or failed");
            return;
        }
    } else {
        status = NULL;
    }
    if (lim != NULL) {
        char *end = NULL;
        limit = strtol(lim, &end, 10);
        if (end == lim || *end != '\0' || limit < 1 || limit > MESSAGES_LIST_MAX) {
            httpd_reply_error(r, 400, "invalid_request", "limit",
                              "limit must be an integer from 1 to %d", MESSAGES_LIST_MAX);
            return;
        }
    }
    json_t *arr = NULL;
    if (messages_list(r->app, status, (int)limit, &arr) != AGAPE_OK) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the message store is not available");
        return;
    }
    httpd_reply_json(r, 200, json_pack("{s:o}", "messages", arr));
}

struct retry_work {
    json_t *rec;
};

static void retry_free(void *p)
{
    struct retry_work *w = p;
    if (w != NULL) {
        json_decref(w->rec);
        free(w);
    }
}

static void retried(struct httpd_req *r)
{
    struct retry_work *w = r->work;
    if (r->commit_rc != AGAPE_OK) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the retry could not be recorded");
        return;
    }
    worker_notify();
    httpd_reply_json(r, 200, messages_public(w->rec));
}

static void retry(struct httpd_req *r, const char *id)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_ADMIN)) {
        return;
    }
    struct retry_work *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return;
    }
    r->work = w;
    r->free_work = retry_free;
    char err[256] = "";
    struct store_batch *b = store_batch_new();
    int rc = messages_retry(r->app, id, b, &w->rec, err, sizeof(err));
    switch (rc) {
    case AGAPE_OK:
        httpd_commit(r, b, retried);
        return;
    case AGAPE_ENOENT:
        httpd_reply_error(r, 404, "not_found", "id", "no message %.64s", id);
        break;
    case AGAPE_EBUSY:
        httpd_reply_error(r, 409, "in_progress", "id", "%s", err);
        break;
    case AGAPE_EINVAL:
        httpd_reply_error(r, 400, "invalid_request", "id", "%s", err);
        break;
    default:
        httpd_reply_error(r, 503, "not_ready", NULL, "the message store is not available");
        break;
    }
    store_batch_free(b);
}

/* "/v1/messages/{id}<suffix>" → id (1..MESSAGES_ID_MAX-1 of [a-z0-9_]). */
static bool match(const char *path, const char *suffix, char *id, size_t idlen)
{
    static const char prefix[] = "/v1/messages/";
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0) {
        return false;
    }
    const char *s = path + sizeof(prefix) - 1;
    size_t n = 0;
    while (s[n] && s[n] != '/') {
        n++;
    }
    if (n == 0 || n >= idlen || strcmp(s + n, suffix) != 0) {
        return false;
    }
    memcpy(id, s, n);
    id[n] = '\0';
    return true;
}

static void set_route(struct httpd_req *r, const char *route)
{
    snprintf(r->route, sizeof(r->route), "%s", route);
}

bool api_messages_route(struct httpd_req *r)
{
    const char *p = r->path;
    bool get = strcmp(r->method, "GET") == 0;
    bool post = strcmp(r->method, "POST") == 0;
    char id[MESSAGES_ID_MAX];

    if (strcmp(p, "/v1/messages") == 0) {
        set_route(r, "/v1/messages");
        if (post) {
            create(r);
        } else if (get) {
            list(r);
        } else {
            httpd_reply_error(r, 404, "not_found", NULL, "no route for %s %s", r->method, p);
        }
        return true;
    }
    if (strncmp(p, "/v1/messages/", 13) != 0) {
        return false;
    }
    if (get && match(p, "", id, sizeof(id))) {
        set_route(r, "/v1/messages/{id}");
        get_one(r, id);
        return true;
    }
    if (post && match(p, "/retry", id, sizeof(id))) {
        set_route(r, "/v1/messages/{id}/retry");
        retry(r, id);
        return true;
    }
    set_route(r, "/v1/messages/{id}");
    httpd_reply_error(r, 404, "not_found", NULL, "no route for %s %.100s", r->method, p);
    return true;
}
