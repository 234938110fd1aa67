/* httpd — the server side: libmicrohttpd, request bodies and limits, the
 * error shape of API.md, API-key checks, and suspending a connection while
 * its work runs elsewhere (a provider call, a commit).
 *
 * A handler runs on one of libmicrohttpd's threads once the whole body is in.
 * It either answers at once (httpd_reply_*) or calls httpd_suspend() and
 * hands the request to another thread, which calls httpd_resume() when the
 * work is done; the on_resume function then runs on a server thread and
 * answers (or suspends again). */
#ifndef AGAPE_HTTPD_H
#define AGAPE_HTTPD_H

#include "apikeys.h"
#include "app.h"
#include "buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define HTTPD_MAX_RESP_HEADERS 6

struct MHD_Connection;
struct httpd_req;
typedef void (*httpd_resume_fn)(struct httpd_req *r);

struct httpd_req {
    struct app *app;
    struct MHD_Connection *conn;
    char id[48];                /* X-Request-Id */
    char method[8];
    char *path;                 /* without the query string; owned */
    char route[48];             /* route template for logs and metrics */
    struct agape_buf body;      /* the request body (limit: conf body_max) */
    bool too_large;
    int64_t start_ms;           /* monotonic */
    int64_t start_us;           /* monotonic, for latency metrics */
    struct apikey key;          /* valid after httpd_auth() succeeded */

    /* the answer */
    int status;
    char *resp;                 /* owned */
    size_t resp_len;
    char *resp_hdr_name[HTTPD_MAX_RESP_HEADERS];
    char *resp_hdr_value[HTTPD_MAX_RESP_HEADERS];
    int n_resp_hdrs;
    bool answered;

    /* asynchronous work */
    int state;                  /* internal */
    httpd_resume_fn on_resume;
    void *work;                 /* the handler's state, freed with free_work */
    int commit_rc;              /* the result of the last httpd_commit */
    void (*free_work)(void *work);
};

/* Start listening on conf->listen_host:listen_port. Main thread. */
int httpd_start(struct app *app, struct httpd **out, char *err, size_t errlen);
/* Suspended requests right now (for draining). Any thread. */
int httpd_suspended(struct httpd *h);
/* Stop: call only once nothing is suspended (libmicrohttpd aborts
 * otherwise). Main thread. */
void httpd_stop(struct httpd *h);

/* Answers. `body` is stolen. Error bodies follow API.md:
 * {"error": {"type", "message", "param"?, "request_id"}} */
void httpd_reply_json(struct httpd_req *r, int status, json_t *body);
void httpd_reply_raw(struct httpd_req *r, int status, const char *body, size_t len);
/* As httpd_reply_raw, taking `body` (malloc'd, NUL-terminated after len
 * bytes) instead of copying it; NULL answers 500 (out of memory). Any thread
 * that holds the request (a handler, or the thread a suspended request was
 * handed to). */
void httpd_reply_take(struct httpd_req *r, int status, char *body, size_t len);
void httpd_reply_error(struct httpd_req *r, int status, const char *type, const char *param,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void httpd_add_header(struct httpd_req *r, const char *name, const char *value);

/* Request headers and query arguments; borrowed; NULL if absent. */
const char *httpd_header(struct httpd_req *r, const char *name);
const char *httpd_query(struct httpd_req *r, const char *name);

/* Check the Bearer API key and its scope (APIKEYS_SCOPE_*). On failure the
 * answer (401 or 403) is already set and false returned. */
bool httpd_auth(struct httpd_req *r, uint32_t scope);

/* Parse the body as a JSON object; on failure answers 400 and returns NULL.
 * Returns a new reference. */
json_t *httpd_body_json(struct httpd_req *r);

/* Server thread only, from a handler or on_resume. */
void httpd_suspend(struct httpd_req *r, httpd_resume_fn on_resume);
/* Commit `b` (taken) without holding the thread: the connection is
 * suspended, the batch joins the store's next group commit, and `then` runs
 * on a server thread with the result in r->commit_rc. Server thread only. */
void httpd_commit(struct httpd_req *r, struct store_batch *b, httpd_resume_fn then);
/* Any thread; exactly once per httpd_suspend. */
void httpd_resume(struct httpd_req *r);
/* httpd_resume, with `then` to run on the server thread instead of the
 * function given to httpd_suspend (a request suspended once can go through
 * several threads' hands before it is resumed). Any thread; exactly once per
 * httpd_suspend, in place of httpd_resume. */
void httpd_resume_then(struct httpd_req *r, httpd_resume_fn then);

/* The request headers: up to `max` name/value pairs copied into out as
 * pointers borrowed from libmicrohttpd (valid until the request ends; never
 * free or modify them). Returns how many were copied. Server thread, from a
 * handler or on_resume. (Added for webhooks: plugins read them through
 * host->webhook_header.) */
int httpd_headers(struct httpd_req *r, struct client_header *out, int max);

#endif
