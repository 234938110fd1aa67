/* client — outgoing HTTP on libcurl's multi interface.
 *
 * One client thread owns one CURLM and its connection pool (keep-alive).
 * Other threads hand it transfers (client_submit) and timers (client_defer);
 * it wakes with curl_multi_wakeup. Completion callbacks run on the client
 * thread: they must be short and never block (no store_commit, no sleeping).
 * They may submit further transfers and timers.
 *
 * Whether a failed transfer reached the provider is decided here, once:
 * CLIENT_NOT_SENT — nothing left this host (resolve or connect failure, or the
 * transfer was cancelled before it started); CLIENT_NO_ANSWER — the request
 * was (or may have been) sent and no complete answer came (timeout, reset
 * after send, truncated body). */
#ifndef AGAPE_CLIENT_H
#define AGAPE_CLIENT_H

#include "buf.h"

#include <stdbool.h>
#include <stdint.h>

#define CLIENT_MAX_HEADERS 32
#define CLIENT_MAX_RCPT 16
#define CLIENT_BODY_MAX ((size_t)1 << 20)  /* a provider answer over 1 MiB is refused */

enum client_result {
    CLIENT_DONE = 0,   /* an HTTP answer came back (any status) */
    CLIENT_NOT_SENT,   /* known not to have reached the provider */
    CLIENT_NO_ANSWER   /* sent (or possibly sent), no complete answer */
};

struct client_header {
    char *name;  /* owned */
    char *value; /* owned */
};

struct client_xfer;
typedef void (*client_done_fn)(struct client_xfer *x, void *arg);

/* One request and its answer. The submitter fills the request part, the
 * client fills the answer part before calling done. The submitter owns the
 * struct; the client borrows it from submit until done returns. */
struct client_xfer {
    /* request */
    char method[8];                 /* "GET", "POST", … */
    char *url;                      /* owned (freed by client_xfer_reset) */
    struct client_header req_headers[CLIENT_MAX_HEADERS];
    int n_req_headers;
    char *body;                     /* owned; may be NULL */
    size_t body_len;
    char *userpwd;                  /* owned; "user:password" for Basic (or SMTP AUTH) */
    char *mail_from;                /* owned; SMTP envelope sender (smtp:// URLs only) */
    char *mail_rcpt[CLIENT_MAX_RCPT]; /* owned; SMTP envelope recipients */
    int n_mail_rcpt;
    bool mail_require_tls;          /* STARTTLS required on smtp:// */
    int64_t connect_timeout_ms;     /* 0: 2000 */
    int64_t timeout_ms;             /* total; 0: 10000 */
    client_done_fn done;
    void *arg;

    /* answer */
    enum client_result result;
    int status;                     /* with CLIENT_DONE: the HTTP status, or for a mail
                                       transfer the last SMTP reply code */
    struct agape_buf resp_body;     /* NUL-terminated */
    struct client_header resp_headers[CLIENT_MAX_HEADERS];
    int n_resp_headers;
    int64_t elapsed_ms;
    char err[256];                  /* libcurl's reason when not CLIENT_DONE */
};

/* Initialise / free what a transfer owns (request and answer). reset keeps
 * the struct usable for another request. */
void client_xfer_init(struct client_xfer *x);
void client_xfer_reset(struct client_xfer *x);
int client_xfer_add_header(struct client_xfer *x, const char *name, const char *value);
/* Case-insensitive lookup of an answer header; borrowed. */
const char *client_xfer_resp_header(const struct client_xfer *x, const char *name);

struct client_options {
    int max_connections;       /* total pool size; 0: 1024 */
    int max_host_connections;  /* per host; 0: unlimited */
};

struct client;

/* Start the client thread. Main thread. */
int client_create(const struct client_options *opt, struct client **out);
/* Stop: transfers still in flight finish with CLIENT_NO_ANSWER (or
 * CLIENT_NOT_SENT if not started) and their callbacks run; pending timers run
 * with cancelled=true. Then the thread ends. Main thread. */
void client_destroy(struct client *c);

/* Queue a transfer, to start after delay_ms (0: now). The answer part is
 * cleared first (a transfer is reused across the steps of a call). Any thread. */
void client_submit(struct client *c, struct client_xfer *x, int64_t delay_ms);

/* Run fn(arg, cancelled) on the client thread after delay_ms. Any thread. */
typedef void (*client_timer_fn)(void *arg, bool cancelled);
void client_defer(struct client *c, int64_t delay_ms, client_timer_fn fn, void *arg);

/* In-flight transfers now (for /metrics). */
int client_inflight(struct client *c);

/* Monotonic and wall clocks in ms, used across the core. */
int64_t client_mono_ms(void);
int64_t client_mono_us(void);
int64_t client_wall_ms(void);

#endif
