/* httpd — libmicrohttpd glue. See httpd.h for the handler model.
 *
 * Threading: a pool of server threads (conf http_threads) polls; handlers
 * run there. A suspended connection holds no thread: it waits for
 * httpd_resume from the client thread (provider calls) or a writer callback.
 * Facts this follows (NOTES.md): resuming from another thread is safe with
 * MHD_ALLOW_SUSPEND_RESUME; the single internal epoll thread can stall, so we
 * use poll with a thread pool; suspended connections never time out, so the
 * dispatcher's deadline must end them; MHD_stop_daemon with connections still
 * suspended aborts, so main drains first. */
#include "httpd.h"

#include "api.h"
#include "crypto.h"
#include "idgen.h"
#include "jsonr.h"
#include "jsonw.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

enum req_state { REQ_NEW = 0, REQ_SUSPENDED, REQ_RESUMED, REQ_DONE };

struct httpd {
    struct MHD_Daemon *d;
    struct app *app;
    atomic_int suspended;
};

static struct httpd *the_httpd; /* for httpd_resume's counter */

static void req_free(struct httpd_req *r)
{
    if (r == NULL) {
        return;
    }
    if (r->work && r->free_work) {
        r->free_work(r->work);
    }
    free(r->path);
    buf_fini(&r->body);
    free(r->resp);
    for (int i = 0; i < r->n_resp_hdrs; i++) {
        free(r->resp_hdr_name[i]);
        free(r->resp_hdr_value[i]);
    }
    free(r);
}

static bool valid_request_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.')) {
            return false;
        }
    }
    return n > 0 && n < 48;
}

void httpd_add_header(struct httpd_req *r, const char *name, const char *value)
{
    if (r->n_resp_hdrs >= HTTPD_MAX_RESP_HEADERS) {
        return;
    }
    r->resp_hdr_name[r->n_resp_hdrs] = strdup(name);
    r->resp_hdr_value[r->n_resp_hdrs] = strdup(value);
    r->n_resp_hdrs++;
}

void httpd_reply_raw(struct httpd_req *r, int status, const char *body, size_t len)
{
    free(r->resp);
    r->resp = malloc(len + 1);
    if (r->resp) {
        memcpy(r->resp, body, len);
        r->resp[len] = '\0';
        r->resp_len = len;
    } else {
        r->resp_len = 0;
    }
    r->status = status;
    r->answered = true;
}

void httpd_reply_take(struct httpd_req *r, int status, char *body, size_t len)
{
    if (body == NULL) {
        static const char oom[] =
            "{\"error\":{\"type\":\"internal\",\"message\":\"out of memory\"}}";
        httpd_reply_raw(r, 500, oom, sizeof(oom) - 1);
        return;
    }
    free(r->resp);
    r->resp = body;
    r->resp_len = len;
    r->status = status;
    r->answered = true;
}

void httpd_reply_json(struct httpd_req *r, int status, json_t *body)
{
    /* jsonw_value writes what json_dumps(JSON_COMPACT) would, faster. */
    struct agape_buf t;
    buf_init(&t, 0);
    jsonw_reserve(&t, 1000);
    jsonw_value(&t, body);
    json_decref(body);
    if (t.error != AGAPE_OK) {
        buf_fini(&t);
        httpd_reply_take(r, 500, NULL, 0); /* out of memory */
        return;
    }
    size_t len = t.len;
    httpd_reply_take(r, status, buf_take(&t), len);
}

void httpd_reply_error(struct httpd_req *r, int status, const char *type, const char *param,
                       const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *e = json_object();
    json_object_set_new(e, "type", json_string(type));
    json_object_set_new(e, "message", json_string(msg));
    if (param) {
        json_object_set_new(e, "param", json_string(param));
    }
    json_object_set_new(e, "request_id", json_string(r->id));
    json_t *o = json_object();
    json_object_set_new(o, "error", e);
    httpd_reply_json(r, status, o);
}

const char *httpd_header(struct httpd_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *httpd_query(struct httpd_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

bool httpd_auth(struct httpd_req *r, uint32_t scope)
{
    const char *h = httpd_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || h[7] == '\0') {
        httpd_add_header(r, "WWW-Authenticate", "Bearer");
        httpd_reply_error(r, 401, "unauthenticated", NULL,
                          "an API key is required: Authorization: Bearer <key>");
        return false;
    }
    const char *key = h + 7;
    if (strlen(key) > 256) {
        httpd_reply_error(r, 401, "unauthenticated", NULL, "unknown API key");
        return false;
    }
    int rc = apikeys_lookup(r->app->store, key, &r->key);
    if (rc == AGAPE_ENOENT) {
        httpd_reply_error(r, 401, "unauthenticated", NULL, "unknown API key");
        return false;
    }
    if (rc != AGAPE_OK) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the key store is not available");
        return false;
    }
    if (r->key.revoked) {
        httpd_reply_error(r, 401, "unauthenticated", NULL, "this API key was revoked");
        return false;
    }
    if ((r->key.scopes & scope) != scope) {
        char need[64];
        apikeys_scopes_str(scope, need, sizeof(need));
        httpd_reply_error(r, 403, "forbidden", NULL, "this API key lacks the scope '%s'", need);
        return false;
    }
    int64_t wait_ms = 0;
    if (r->app->ratelimit &&
        !ratelimit_take(r->app->ratelimit, r->key.id, client_mono_ms(), &wait_ms)) {
        char v[24];
        snprintf(v, sizeof(v), "%lld", (long long)((wait_ms + 999) / 1000));
        httpd_add_header(r, "Retry-After", v);
        httpd_reply_error(r, 429, "rate_limited", NULL,
                          "this API key is over its request rate; retry in %lld ms",
                          (long long)wait_ms);
        return false;
    }
    return true;
}

json_t *httpd_body_json(struct httpd_req *r)
{
    if (r->body.len == 0) {
        httpd_reply_error(r, 400, "invalid_request", NULL, "a JSON object body is required");
        return NULL;
    }
    json_error_t je;
    json_t *o = jsonr_loadb(r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &je);
    if (o == NULL) {
        httpd_reply_error(r, 400, "invalid_request", NULL, "malformed JSON at line %d: %s",
                          je.line, je.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        httpd_reply_error(r, 400, "invalid_request", NULL, "the body must be a JSON object");
        return NULL;
    }
    return o;
}

void httpd_suspend(struct httpd_req *r, httpd_resume_fn on_resume)
{
    r->on_resume = on_resume;
    r->state = REQ_SUSPENDED;
    atomic_fetch_add(&the_httpd->suspended, 1);
    MHD_suspend_connection(r->conn);
}

void httpd_resume(struct httpd_req *r)
{
    MHD_resume_connection(r->conn);
}

static void committed(int rc, void *arg)
{
    struct httpd_req *r = arg;
    r->commit_rc = rc;
    httpd_resume(r); /* writer thread → a server thread runs `then` */
}

void httpd_commit(struct httpd_req *r, struct store_batch *b, httpd_resume_fn then)
{
    r->commit_rc = AGAPE_ERROR;
    httpd_suspend(r, then);
    store_commit_async(r->app->store, b, committed, r);
}

void httpd_resume_then(struct httpd_req *r, httpd_resume_fn then)
{
    r->on_resume = then; /* read by the server thread after the resume */
    MHD_resume_connection(r->conn);
}

int httpd_suspended(struct httpd *h)
{
    return atomic_load(&h->suspended);
}

static enum MHD_Result send_answer(struct httpd_req *r)
{
    /* A body is handed over (libmicrohttpd frees it), not copied. */
    struct MHD_Response *resp;
    if (r->resp != NULL && r->resp_len > 0) {
        resp = MHD_create_response_from_buffer(r->resp_len, r->resp, MHD_RESPMEM_MUST_FREE);
        if (resp != NULL) {
            r->resp = NULL;
        }
    } else {
        resp = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    if (r->resp_len) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                r->status == 200 && strcmp(r->route, "/metrics") == 0
                                    ? "text/plain; version=0.0.4"
                                    : "application/json");
    }
    for (int i = 0; i < r->n_resp_hdrs; i++) {
        if (r->resp_hdr_name[i] && r->resp_hdr_value[i]) {
            MHD_add_response_header(resp, r->resp_hdr_name[i], r->resp_hdr_value[i]);
        }
    }
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    r->state = REQ_DONE;
    /* Counted when the answer is queued, not when libmicrohttpd reports the
     * connection done: by then the client may have read it and asked
     * /metrics, which must already count it. */
    metrics_http(r->route, r->status, (double)(client_mono_us() - r->start_us) / 1e6);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct app *app = cls;
    struct httpd_req *r = *con_cls;
    (void)version;

    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL) {
            return MHD_NO;
        }
        r->app = app;
        r->conn = conn;
        r->start_ms = client_mono_ms();
        r->start_us = client_mono_us();
        snprintf(r->method, sizeof(r->method), "%s", method);
        r->path = strdup(url);
        snprintf(r->route, sizeof(r->route), "unmatched");
        buf_init(&r->body, app->conf->body_max);
        const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
        if (rid && valid_request_id(rid)) {
            snprintf(r->id, sizeof(r->id), "%s", rid);
        } else if (idgen_hex("req_", 12, r->id, sizeof(r->id)) != AGAPE_OK) {
            snprintf(r->id, sizeof(r->id), "req_unknown");
        }
        *con_cls = r;
        if (r->path == NULL) {
            return MHD_NO;
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end = NULL;
            unsigned long long n = strtoull(cl, &end, 10);
            if (end == cl || *end != '\0' || n > app->conf->body_max) {
                /* Refuse before reading: MHD closes the connection after it. */
                r->too_large = true;
                httpd_reply_error(r, 413, "too_large", NULL,
                                  "the body is over the limit of %zu bytes",
                                  app->conf->body_max);
                return send_answer(r);
            }
        }
        return MHD_YES;
    }

    if (*upload_data_size) {
        if (!r->too_large && buf_add(&r->body, upload_data, *upload_data_size) != AGAPE_OK) {
            r->too_large = true; /* chunked and over the limit: discard the rest */
            buf_fini(&r->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    switch (r->state) {
    case REQ_NEW:
        if (r->too_large) {
            httpd_reply_error(r, 413, "too_large", NULL, "the body is over the limit of %zu bytes",
                              app->conf->body_max);
        } else {
            api_route(r);
        }
        break;
    case REQ_SUSPENDED:
        atomic_fetch_sub(&the_httpd->suspended, 1);
        r->state = REQ_RESUMED;
        r->on_resume(r);
        break;
    default:
        break;
    }
    if (r->state == REQ_SUSPENDED) {
        return MHD_YES;
    }
    if (!r->answered) {
        httpd_reply_error(r, 500, "internal", NULL, "the handler gave no answer");
    }
    return send_answer(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    struct httpd_req *r = *con_cls;
    if (r == NULL) {
        return;
    }
    if (r->state == REQ_SUSPENDED) {
        /* Resumed, but the client had gone: libmicrohttpd ends the
         * connection without calling the handler again, so the count of
         * suspended requests (which draining waits on) drops here. */
        atomic_fetch_sub(&the_httpd->suspended, 1);
        r->state = REQ_RESUMED;
    }
    double ms = (double)(client_mono_us() - r->start_us) / 1000.0;
    if (r->state == REQ_DONE) {
        log_event(r->status >= 500 ? AGAPE_LOG_WARN : AGAPE_LOG_INFO,
                  &(struct log_fields){.request_id = r->id, .route = r->route,
                                       .status = r->status, .latency_ms = ms},
                  "%s %s", r->method, r->path ? r->path : "");
    } else if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        log_event(AGAPE_LOG_INFO,
                  &(struct log_fields){.request_id = r->id, .route = r->route, .latency_ms = ms},
                  "%s %s: connection ended before an answer (code %d)", r->method,
                  r->path ? r->path : "", (int)toe);
    }
    api_request_done(r);
    req_free(r);
    *con_cls = NULL;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int httpd_start(struct app *app, struct httpd **out, char *err, size_t errlen)
{
    struct httpd *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return AGAPE_ENOMEM;
    }
    h->app = app;
    the_httpd = h;
    raise_fd_limit();

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    /* epoll with a thread pool: NOTES.md's stall of the single internal
     * epoll thread did not show with a pool (and the 256-burst test watches). */
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, app->conf->listen_host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)app->conf->listen_port);
    } else if (inet_pton(AF_INET6, app->conf->listen_host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)app->conf->listen_port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "listen: '%s' is not an IP address", app->conf->listen_host);
        free(h);
        return AGAPE_EINVAL;
    }
    unsigned int threads = app->conf->http_threads > 0 ? (unsigned)app->conf->http_threads : 2;
    h->d = MHD_start_daemon(
        flags, (uint16_t)app->conf->listen_port, NULL, NULL, on_request, app,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)10000, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(16 * 1024), MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)4096, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, NULL, MHD_OPTION_END);
    if (h->d == NULL) {
        snprintf(err, errlen, "cannot listen on %s:%d (in use, or not permitted)",
                 app->conf->listen_host, app->conf->listen_port);
        free(h);
        the_httpd = NULL;
        return AGAPE_ERROR;
    }
    *out = h;
    return AGAPE_OK;
}

void httpd_stop(struct httpd *h)
{
    if (h == NULL) {
        return;
    }
    MHD_stop_daemon(h->d);
    free(h);
    if (the_httpd == h) {
        the_httpd = NULL;
    }
}

/* ---- request headers (webhooks) -------------------------------------- */

struct header_copy {
    struct client_header *out;
    int max;
    int n;
};

static enum MHD_Result copy_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct header_copy *hc = cls;
    (void)kind;
    if (hc->n >= hc->max) {
        return MHD_NO;
    }
    hc->out[hc->n].name = (char *)key;
    hc->out[hc->n].value = (char *)(value ? value : "");
    hc->n++;
    return MHD_YES;
}

int httpd_headers(struct httpd_req *r, struct client_header *out, int max)
{
    struct header_copy hc = {out, max, 0};
    if (max <= 0) {
        return 0;
    }
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, copy_header, &hc);
    return hc.n;
}
