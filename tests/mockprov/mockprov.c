/* mockprov — the HTTP side: libmicrohttpd with a thread per connection (a
 * delayed or hung answer only blocks its own thread), request capture with
 * a 1 MiB body limit, routing to the providers' handlers, faults, and the
 * control API under /_mock/ (never recorded, never faulted).
 *
 * Usage: mockprov [--port N] [--port-file FILE]
 * Listens on 127.0.0.1 (port 0 = any free port); once ready, writes the
 * port to FILE (atomically, via rename). SIGTERM or SIGINT stops it. */
#include "mock.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define MOCK_PARAM_LEN 256
#define MOCK_HANG_DEFAULT_MS 30000

static const struct mock_provider *const providers[] = {
    &mock_stripe,
    &mock_ga4,
    &mock_sentry,
    &mock_newrelic,
    &mock_paypal,
    &mock_oidc,
    &mock_sendgrid,
    &mock_twilio,
};

/* One HTTP request, from the URI callback to NOTIFY_COMPLETED. */
struct request {
    char *uri;          /* raw, with the query string */
    char *path;         /* up to '?' */
    const char *query;  /* into uri, after '?', or "" */
    char method[16];
    json_t *headers;    /* lowercase name -> value */
    char *body;
    size_t len;
    size_t cap;
    bool started;
    bool too_large;
    bool control;
    json_t *fault;      /* the fault this request consumed, or NULL */
};

static void request_free(struct request *rq)
{
    if (rq == NULL) {
        return;
    }
    free(rq->uri);
    free(rq->path);
    free(rq->body);
    json_decref(rq->headers);
    json_decref(rq->fault);
    free(rq);
}

static void resp_free(struct mock_resp *rs)
{
    free(rs->body);
    json_decref(rs->headers);
    memset(rs, 0, sizeof(*rs));
}

/* ------------------------------------------------------------------ */
/* Answers */

static enum MHD_Result send_resp(struct MHD_Connection *c, struct mock_resp *rs)
{
    size_t len = rs->body ? strlen(rs->body) : 0;
    struct MHD_Response *r;
    if (rs->body != NULL) {
        r = MHD_create_response_from_buffer(len, rs->body, MHD_RESPMEM_MUST_FREE);
        rs->body = NULL; /* MHD frees it */
    } else {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (r == NULL) {
        resp_free(rs);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type",
                            rs->content_type[0] ? rs->content_type : "application/json");
    const char *name;
    json_t *v;
    json_object_foreach(rs->headers, name, v) {
        if (json_is_string(v)) {
            MHD_add_response_header(r, name, json_string_value(v));
        }
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)(rs->status ? rs->status : 200), r);
    MHD_destroy_response(r);
    resp_free(rs);
    return ret;
}

static void plain_error(struct mock_resp *rs, int status, const char *message)
{
    mock_json(rs, status, json_pack("{s:{s:s,s:s}}", "error", "type", "invalid_request_error",
                                    "message", message));
}

/* ------------------------------------------------------------------ */
/* Provider routes */

static bool match_pattern(const char *pat, const char *path, char params[][MOCK_PARAM_LEN],
                          int *np)
{
    while (*pat && *path) {
        if (*pat == '*') {
            const char *end = strchr(path, '/');
            size_t n = end ? (size_t)(end - path) : strlen(path);
            if (n == 0 || n >= MOCK_PARAM_LEN || *np >= MOCK_MAX_PARAMS) {
                return false;
            }
            memcpy(params[*np], path, n);
            params[*np][n] = '\0';
            (*np)++;
            path += n;
            pat++;
        } else if (*pat == *path) {
            pat++;
            path++;
        } else {
            return false;
        }
    }
    return *pat == '\0' && *path == '\0';
}

/* The provider's normal answer, idempotent replay included. Takes the lock. */
static void provider_answer(const struct request *rq, struct mock_resp *rs)
{
    char params[MOCK_MAX_PARAMS][MOCK_PARAM_LEN];
    const struct mock_provider *prov = NULL;
    const struct mock_route *route = NULL;
    int np = 0;

    for (size_t p = 0; route == NULL && p < sizeof(providers) / sizeof(providers[0]); p++) {
        for (const struct mock_route *r = providers[p]->routes; r->pattern != NULL; r++) {
            np = 0;
            if (strcmp(r->method, rq->method) == 0 &&
                match_pattern(r->pattern, rq->path, params, &np)) {
                prov = providers[p];
                route = r;
                break;
            }
        }
    }
    if (route == NULL) {
        char msg[300];
        snprintf(msg, sizeof(msg), "Unrecognized request URL (%s: %.200s)", rq->method,
                 rq->path);
        plain_error(rs, 404, msg);
        return;
    }

    struct mock_req mr = {
        .method = rq->method,
        .path = rq->path,
        .query = rq->query,
        .headers = rq->headers,
        .body = rq->body ? rq->body : "",
        .body_len = rq->len,
    };
    for (int i = 0; i < np; i++) {
        mr.params[i] = params[i];
    }
    if (route->idem_header != NULL) {
        mr.idem_key = mock_req_header(&mr, route->idem_header);
        if (mr.idem_key != NULL && mr.idem_key[0] == '\0') {
            mr.idem_key = NULL;
        }
    }

    mock_lock();
    json_t *stored = mr.idem_key ? mock_idem_get(prov->name, mr.idem_key) : NULL;
    if (stored != NULL) {
        const char *spath = json_string_value(json_object_get(stored, "path"));
        const char *sbody = json_string_value(json_object_get(stored, "request_body"));
        if (prov->idem_conflict != NULL &&
            (spath == NULL || sbody == NULL || strcmp(spath, mr.path) != 0 ||
             strcmp(sbody, mr.body) != 0)) {
            prov->idem_conflict(&mr, rs);
        } else {
            rs->status = (int)json_integer_value(json_object_get(stored, "status"));
            rs->body = strdup(json_string_value(json_object_get(stored, "body")));
            snprintf(rs->content_type, sizeof(rs->content_type), "%s",
                     json_string_value(json_object_get(stored, "content_type")));
            rs->headers = json_deep_copy(json_object_get(stored, "headers"));
            mock_header(rs, "Idempotent-Replayed", "true");
        }
    } else {
        route->fn(&mr, rs);
        if (mr.idem_key != NULL && !rs->no_replay) {
            mock_idem_put(prov->name, mr.idem_key, mr.path, mr.body, rs);
        }
    }
    mock_unlock();
}

static const char *fault_kind(json_t *f)
{
    if (f == NULL) {
        return NULL;
    }
    const char *action = json_string_value(json_object_get(f, "action"));
    if (action != NULL) {
        return action;
    }
    return json_object_get(f, "status") ? "status" : "delay";
}

static long fault_long(json_t *f, const char *key, long dflt)
{
    json_t *v = json_object_get(f, key);
    return json_is_integer(v) ? (long)json_integer_value(v) : dflt;
}

static enum MHD_Result provider_request(struct MHD_Connection *c, struct request *rq)
{
    json_t *f = rq->fault;
    const char *kind = fault_kind(f);
    struct mock_resp rs;
    memset(&rs, 0, sizeof(rs));

    mock_lock();
    mock_record(rq->method, rq->uri, rq->headers, rq->body ? rq->body : "", rq->len, kind);
    long delay = mock_delay_ms();
    mock_unlock();
    mock_sleep_ms(delay + fault_long(f, "delay_ms", 0));

    if (kind != NULL && strcmp(kind, "hang") == 0) {
        mock_sleep_ms(fault_long(f, "ms", MOCK_HANG_DEFAULT_MS));
        if (json_is_true(json_object_get(f, "apply"))) {
            provider_answer(rq, &rs);
            resp_free(&rs);
        }
        return MHD_NO; /* closes the connection without an answer */
    }
    if (kind != NULL && strcmp(kind, "close_after_read") == 0) {
        provider_answer(rq, &rs); /* the side effects happen, the answer is lost */
        resp_free(&rs);
        return MHD_NO;
    }
    if (kind != NULL && strcmp(kind, "malformed") == 0) {
        /* The provider did the work; its answer arrives mangled. */
        provider_answer(rq, &rs);
        free(rs.body);
        rs.body = strdup(json_string_value(json_object_get(f, "body"))
                             ? json_string_value(json_object_get(f, "body"))
                             : "{not json");
        rs.status = (int)fault_long(f, "status", 200);
        return send_resp(c, &rs);
    }
    if (kind != NULL && strcmp(kind, "status") == 0) {
        /* Instead of the provider: nothing happens behind it. */
        const char *body = json_string_value(json_object_get(f, "body"));
        rs.status = (int)fault_long(f, "status", 500);
        rs.body = strdup(body ? body : "");
        rs.headers = json_deep_copy(json_object_get(f, "headers"));
        const char *ctype = json_string_value(json_object_get(f, "content_type"));
        snprintf(rs.content_type, sizeof(rs.content_type), "%s", ctype ? ctype : "");
        return send_resp(c, &rs);
    }
    provider_answer(rq, &rs);
    return send_resp(c, &rs);
}

/* ------------------------------------------------------------------ */
/* Control API */

/* A provider's own controls: its routes whose pattern starts with /_mock/
 * (approving a PayPal order, say). Like the rest of the control API they are
 * never recorded or faulted and have no idempotency. Called with the lock
 * held; false when no provider has the route. */
static bool provider_control(const struct request *rq, struct mock_resp *rs)
{
    char params[MOCK_MAX_PARAMS][MOCK_PARAM_LEN];
    for (size_t p = 0; p < sizeof(providers) / sizeof(providers[0]); p++) {
        for (const struct mock_route *r = providers[p]->routes; r->pattern != NULL; r++) {
            int np = 0;
            if (strncmp(r->pattern, "/_mock/", 7) != 0 || strcmp(r->method, rq->method) != 0 ||
                !match_pattern(r->pattern, rq->path, params, &np)) {
                continue;
            }
            struct mock_req mr = {
                .method = rq->method,
                .path = rq->path,
                .query = rq->query,
                .headers = rq->headers,
                .body = rq->body ? rq->body : "",
                .body_len = rq->len,
            };
            for (int i = 0; i < np; i++) {
                mr.params[i] = params[i];
            }
            r->fn(&mr, rs);
            return true;
        }
    }
    return false;
}

static const char *arg(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

static void control(struct MHD_Connection *c, const struct request *rq, struct mock_resp *rs)
{
    const char *p = rq->path;
    bool post = strcmp(rq->method, "POST") == 0;
    bool get = strcmp(rq->method, "GET") == 0;
    json_t *in = NULL;
    char err[200];

    if (post) {
        json_error_t je;
        in = rq->len ? json_loadb(rq->body, rq->len, 0, &je) : json_object();
        if (in == NULL) {
            plain_error(rs, 400, "body must be JSON");
            return;
        }
    }
    mock_lock();
    if (post && strcmp(p, "/_mock/reset") == 0) {
        mock_state_reset();
        mock_json(rs, 200, json_pack("{s:b}", "ok", 1));
    } else if (post && strcmp(p, "/_mock/faults") == 0) {
        if (mock_faults_add(in, err, sizeof(err)) != 0) {
            plain_error(rs, 400, err);
        } else {
            mock_json(rs, 200, json_pack("{s:b}", "ok", 1));
        }
    } else if (post && strcmp(p, "/_mock/config") == 0) {
        json_t *d = json_object_get(in, "delay_ms");
        if (d != NULL && (!json_is_integer(d) || json_integer_value(d) < 0)) {
            plain_error(rs, 400, "delay_ms must be a non-negative integer");
        } else {
            if (d != NULL) {
                mock_set_delay_ms((long)json_integer_value(d));
            }
            mock_json(rs, 200, json_pack("{s:I}", "delay_ms", (json_int_t)mock_delay_ms()));
        }
    } else if (get && strcmp(p, "/_mock/requests") == 0) {
        mock_json(rs, 200, mock_requests(arg(c, "path"), arg(c, "method")));
    } else if (get && strcmp(p, "/_mock/charges") == 0) {
        mock_json(rs, 200, mock_charges());
    } else if (get && strncmp(p, "/_mock/intents/", 15) == 0) {
        json_t *pi = json_object_get(mock_bucket("stripe.intents"), p + 15);
        if (pi != NULL) {
            mock_json(rs, 200, json_deep_copy(pi));
        } else {
            plain_error(rs, 404, "no such intent");
        }
    } else if (get && strncmp(p, "/_mock/state/", 13) == 0) {
        /* /_mock/state/<bucket>[/<id>]: any provider's state, for tests. */
        char bucket[128];
        const char *slash = strchr(p + 13, '/');
        size_t n = slash ? (size_t)(slash - (p + 13)) : strlen(p + 13);
        json_t *found = NULL;
        if (n > 0 && n < sizeof(bucket)) {
            memcpy(bucket, p + 13, n);
            bucket[n] = '\0';
            found = mock_bucket(bucket);
            found = slash ? json_object_get(found, slash + 1) : found;
        }
        if (found != NULL) {
            mock_json(rs, 200, json_deep_copy(found));
        } else {
            plain_error(rs, 404, "no such state");
        }
    } else if (!provider_control(rq, rs)) {
        plain_error(rs, 404, "unknown control endpoint");
    }
    mock_unlock();
    json_decref(in);
}

/* ------------------------------------------------------------------ */
/* libmicrohttpd callbacks */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    struct request *rq = calloc(1, sizeof(*rq));
    if (rq == NULL) {
        return NULL;
    }
    const char *q = strchr(uri, '?');
    rq->uri = strdup(uri);
    rq->path = strndup(uri, q ? (size_t)(q - uri) : strlen(uri));
    rq->headers = json_object();
    if (rq->uri == NULL || rq->path == NULL || rq->headers == NULL) {
        request_free(rq);
        return NULL;
    }
    rq->query = q ? rq->uri + (q - uri) + 1 : "";
    return rq;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    struct request *rq = cls;
    (void)kind;
    char name[256];
    size_t n = strlen(key);
    if (n >= sizeof(name)) {
        return MHD_YES;
    }
    for (size_t i = 0; i <= n; i++) {
        name[i] = (char)tolower((unsigned char)key[i]);
    }
    const char *v = value ? value : "";
    const char *old = json_string_value(json_object_get(rq->headers, name));
    if (old != NULL) {
        size_t len = strlen(old) + 2 + strlen(v) + 1;
        char *joined = malloc(len);
        if (joined != NULL) {
            snprintf(joined, len, "%s, %s", old, v);
            json_object_set_new(rq->headers, name, json_string(joined));
            free(joined);
        }
    } else {
        json_t *js = json_string(v);
        json_object_set_new(rq->headers, name, js ? js : json_string("(not UTF-8)"));
    }
    return MHD_YES;
}

static enum MHD_Result too_large(struct MHD_Connection *c)
{
    struct mock_resp rs;
    memset(&rs, 0, sizeof(rs));
    plain_error(&rs, 413, "request body over 1 MiB");
    return send_resp(c, &rs);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    struct request *rq = *con_cls;
    (void)cls;
    (void)url;
    (void)version;

    if (rq == NULL) {
        return MHD_NO;
    }
    if (!rq->started) {
        /* Headers are in; the body (if any) comes in the next calls. */
        rq->started = true;
        snprintf(rq->method, sizeof(rq->method), "%s", method);
        MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header, rq);
        const char *cl = json_string_value(json_object_get(rq->headers, "content-length"));
        long long n = 0;
        if (cl != NULL && mock_parse_int(cl, &n) && n > (long long)MOCK_BODY_MAX) {
            /* Read and drop the body, then answer 413: an early answer would
             * race with a client still sending (EPIPE instead of a status). */
            rq->too_large = true;
        }
        rq->control = strncmp(rq->path, "/_mock/", 7) == 0;
        if (!rq->control && !rq->too_large) {
            mock_lock();
            rq->fault = mock_fault_take(rq->method, rq->path);
            if (rq->fault != NULL && strcmp(fault_kind(rq->fault), "reset_before_read") == 0) {
                mock_record(rq->method, rq->uri, rq->headers, NULL, 0, "reset_before_read");
                mock_unlock();
                return MHD_NO;
            }
            mock_unlock();
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (rq->too_large || n > MOCK_BODY_MAX - rq->len) {
            rq->too_large = true; /* keep reading, answer 413 at the end */
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 1024;
            while (cap < rq->len + n + 1) {
                cap *= 2;
            }
            char *b = realloc(rq->body, cap);
            if (b == NULL) {
                return MHD_NO;
            }
            rq->body = b;
            rq->cap = cap;
        }
        memcpy(rq->body + rq->len, upload_data, n);
        rq->len += n;
        rq->body[rq->len] = '\0';
        return MHD_YES;
    }
    if (rq->too_large) {
        return too_large(c);
    }
    if (rq->control) {
        struct mock_resp rs;
        memset(&rs, 0, sizeof(rs));
        control(c, rq, &rs);
        return send_resp(c, &rs);
    }
    return provider_request(c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    request_free(*con_cls);
    *con_cls = NULL;
}

/* ------------------------------------------------------------------ */
/* main */

static int write_port_file(const char *file, int port)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", file);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        return -1;
    }
    FILE *fp = fopen(tmp, "w");
    if (fp == NULL) {
        return -1;
    }
    fprintf(fp, "%d\n", port);
    if (fclose(fp) != 0) {
        return -1;
    }
    return rename(tmp, file);
}

static void usage(void)
{
    fprintf(stderr, "usage: mockprov [--port N] [--port-file FILE]\n");
}

int main(int argc, char **argv)
{
    long port = 0;
    const char *port_file = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            char *end = NULL;
            port = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end != '\0' || port < 0 || port > 65535) {
                usage();
                return 2;
            }
        } else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) {
            port_file = argv[++i];
        } else {
            usage();
            return 2;
        }
    }

    /* Hundreds of delayed connections each hold a socket and a thread. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* Signals go to sigwait below; every thread started later inherits the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    mock_state_init();
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
        MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_THREAD_STACK_SIZE,
        (size_t)512 * 1024, MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "mockprov: cannot listen on 127.0.0.1:%ld\n", port);
        mock_state_free();
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int bound = di ? di->port : 0;
    if (port_file != NULL && write_port_file(port_file, bound) != 0) {
        fprintf(stderr, "mockprov: cannot write %s: %s\n", port_file, strerror(errno));
        MHD_stop_daemon(d);
        mock_state_free();
        return 1;
    }
    fprintf(stderr, "mockprov: listening on 127.0.0.1:%d\n", bound);

    int sig = 0;
    sigwait(&stop, &sig);
    mock_quit(); /* cuts every delay and hang short */
    MHD_stop_daemon(d);
    mock_state_free();
    fprintf(stderr, "mockprov: stopped (signal %d)\n", sig);
    return 0;
}
