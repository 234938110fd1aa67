/* client — outgoing HTTP on one libcurl multi handle, owned by one thread.
 *
 * Shape (NOTES.md, "Client thread loop"): other threads append jobs to a
 * mutex-protected queue and call curl_multi_wakeup; the client thread moves
 * the queue into a min-heap ordered by due time (delayed submits and
 * client_defer timers share it), starts or fires what is due, runs
 * curl_multi_perform, reads every finished message into an array before
 * removing any handle (removing while reading is O(n²) in 7.88), and sleeps
 * in curl_multi_poll no longer than the next timer.
 *
 * Easy handles are recycled through a free list: curl_easy_reset keeps the
 * handle's allocations but drops every option, so each start sets all of
 * them again. The connection pool lives in the multi handle, not in the easy
 * handles, so recycling does not cost connections.
 *
 * Whether a failed request reached the provider is decided in classify()
 * (HTTP) and classify_mail() (SMTP), the core's one place for it.
 *
 * SMTP transfers (the request has mail_from; the URL is smtp:// or smtps://)
 * are uploads: libcurl speaks EHLO, STARTTLS when required, AUTH when
 * credentials are set, MAIL FROM, RCPT TO, DATA, reads the message from
 * on_read() and dot-stuffs it itself (lib/smtp.c escapes "\r\n." while
 * uploading). Their "status" is the last SMTP reply code. */
#include "client.h"

#include "log.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CLIENT_CONNECT_TIMEOUT_MS 2000
#define CLIENT_TIMEOUT_MS 10000
#define CLIENT_MAX_CONNECTIONS 1024
#define CLIENT_POLL_MAX_MS 1000
#define CLIENT_MAX_SPARE 256 /* idle easy handles kept; each holds a receive buffer */

/* A transfer to start (x != NULL) or a timer to fire, once due. */
struct job {
    int64_t due_us;
    uint64_t seq; /* submission order: equal due times keep FIFO order */
    struct client_xfer *x;
    client_timer_fn fn;
    void *arg;
};

struct job_vec {
    struct job *v;
    size_t n;
    size_t cap;
};

/* An easy handle and the state of the transfer it carries. */
struct conn {
    CURL *easy;
    struct client_xfer *x;      /* borrowed from submit until done */
    struct curl_slist *headers; /* request headers, freed when the transfer ends */
    struct curl_slist *rcpts;   /* SMTP recipients, freed when the transfer ends */
    size_t upload_pos;          /* SMTP: message bytes handed to libcurl so far */
    int64_t start_us;
    int body_error;             /* the response body's buffer refused an append */
    struct conn *prev;          /* in the active list; next is also the free list link */
    struct conn *next;
    char errbuf[CURL_ERROR_SIZE];
};

struct finished {
    CURL *easy;
    CURLcode rc;
};

struct client {
    CURLM *multi;
    pthread_t thread;

    /* Shared with submitters, under mu. */
    pthread_mutex_t mu;
    struct job_vec queue;
    uint64_t seq;
    bool stopping; /* client_destroy has begun */
    bool closed;   /* the thread has cancelled its last job: submits are refused */

    /* Client thread only. */
    struct job_vec heap;
    struct conn *active; /* handles added to the multi */
    struct conn *spare;  /* reset handles ready for reuse */
    int n_spare;
    int max_spare;
    struct finished *fin;
    size_t fin_cap;

    atomic_int inflight;
};

/* ------------------------------------------------------------------ */
/* Clocks */

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}

int64_t client_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t client_mono_ms(void)
{
    return mono_us() / 1000;
}

int64_t client_wall_ms(void)
{
    return clock_us(CLOCK_REALTIME) / 1000;
}

/* ------------------------------------------------------------------ */
/* Transfers */

static void free_headers(struct client_header *h, int *n)
{
    for (int i = 0; i < *n; i++) {
        free(h[i].name);
        free(h[i].value);
        h[i].name = NULL;
        h[i].value = NULL;
    }
    *n = 0;
}

void client_xfer_init(struct client_xfer *x)
{
    memset(x, 0, sizeof(*x));
    buf_init(&x->resp_body, CLIENT_BODY_MAX);
}

void client_xfer_reset(struct client_xfer *x)
{
    free(x->url);
    free(x->body);
    free(x->userpwd);
    free(x->mail_from);
    for (int i = 0; i < x->n_mail_rcpt; i++) {
        free(x->mail_rcpt[i]);
    }
    free_headers(x->req_headers, &x->n_req_headers);
    free_headers(x->resp_headers, &x->n_resp_headers);
    buf_fini(&x->resp_body);
    client_xfer_init(x);
}

/* A CR or LF in a header would let a value smuggle in another header. */
static bool header_text_ok(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

int client_xfer_add_header(struct client_xfer *x, const char *name, const char *value)
{
    if (name == NULL || value == NULL || name[0] == '\0' || strpbrk(name, ": \t") != NULL ||
        !header_text_ok(name) || !header_text_ok(value)) {
        return AGAPE_EINVAL;
    }
    if (x->n_req_headers >= CLIENT_MAX_HEADERS) {
        return AGAPE_ERANGE;
    }
    char *n = strdup(name);
    char *v = strdup(value);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return AGAPE_ENOMEM;
    }
    x->req_headers[x->n_req_headers].name = n;
    x->req_headers[x->n_req_headers].value = v;
    x->n_req_headers++;
    return AGAPE_OK;
}

const char *client_xfer_resp_header(const struct client_xfer *x, const char *name)
{
    for (int i = 0; i < x->n_resp_headers; i++) {
        if (strcasecmp(x->resp_headers[i].name, name) == 0) {
            return x->resp_headers[i].value;
        }
    }
    return NULL;
}

static void answer_clear(struct client_xfer *x)
{
    x->result = CLIENT_DONE;
    x->status = 0;
    buf_reset(&x->resp_body);
    x->resp_body.max = CLIENT_BODY_MAX;
    free_headers(x->resp_headers, &x->n_resp_headers);
    x->elapsed_ms = 0;
    x->err[0] = '\0';
}

static void xfer_fail(struct client_xfer *x, enum client_result r, const char *why)
{
    x->result = r;
    x->status = 0;
    buf_reset(&x->resp_body);
    snprintf(x->err, sizeof(x->err), "%s", why);
}

/* ------------------------------------------------------------------ */
/* Job vectors and the timer heap */

static int vec_push(struct job_vec *q, const struct job *j)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        struct job *v = realloc(q->v, cap * sizeof(*v));
        if (v == NULL) {
            return AGAPE_ENOMEM;
        }
        q->v = v;
        q->cap = cap;
    }
    q->v[q->n++] = *j;
    return AGAPE_OK;
}

static bool job_before(const struct job *a, const struct job *b)
{
    return a->due_us < b->due_us || (a->due_us == b->due_us && a->seq < b->seq);
}

static int heap_push(struct job_vec *h, const struct job *j)
{
    if (vec_push(h, j) != AGAPE_OK) {
        return AGAPE_ENOMEM;
    }
    size_t i = h->n - 1;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!job_before(&h->v[i], &h->v[parent])) {
            break;
        }
        struct job t = h->v[i];
        h->v[i] = h->v[parent];
        h->v[parent] = t;
        i = parent;
    }
    return AGAPE_OK;
}

static struct job heap_pop(struct job_vec *h)
{
    struct job top = h->v[0];
    h->v[0] = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        size_t r = l + 1;
        size_t m = i;
        if (l < h->n && job_before(&h->v[l], &h->v[m])) {
            m = l;
        }
        if (r < h->n && job_before(&h->v[r], &h->v[m])) {
            m = r;
        }
        if (m == i) {
            break;
        }
        struct job t = h->v[i];
        h->v[i] = h->v[m];
        h->v[m] = t;
        i = m;
    }
    return top;
}

/* A job that will never run: a transfer not started, or a timer. */
static void job_cancel(const struct job *j, const char *why)
{
    if (j->x != NULL) {
        xfer_fail(j->x, CLIENT_NOT_SENT, why);
        if (j->x->done != NULL) {
            j->x->done(j->x, j->x->arg);
        }
    } else if (j->fn != NULL) {
        j->fn(j->arg, true);
    }
}

/* ------------------------------------------------------------------ */
/* Submitting (any thread) */

static void enqueue(struct client *c, struct client_xfer *x, client_timer_fn fn, void *arg,
                    int64_t delay_ms)
{
    struct job j = {.x = x, .fn = fn, .arg = arg};
    j.due_us = mono_us() + (delay_ms > 0 ? delay_ms * 1000 : 0);

    pthread_mutex_lock(&c->mu);
    if (c->closed) {
        pthread_mutex_unlock(&c->mu);
        /* The thread is gone: refuse now, on the caller's thread. */
        job_cancel(&j, "client stopped");
        return;
    }
    j.seq = c->seq++;
    bool was_empty = c->queue.n == 0;
    if (vec_push(&c->queue, &j) != AGAPE_OK) {
        /* A void API with no place to report it; a few bytes failing means
         * the process is already lost. */
        pthread_mutex_unlock(&c->mu);
        log_error("client: out of memory queueing a transfer");
        abort();
    }
    /* One wakeup per non-empty queue is enough: the thread drains the whole
     * queue after the poll that consumes it. Waking under the lock keeps the
     * multi handle alive until client_destroy's join. */
    if (was_empty) {
        curl_multi_wakeup(c->multi);
    }
    pthread_mutex_unlock(&c->mu);
}

void client_submit(struct client *c, struct client_xfer *x, int64_t delay_ms)
{
    answer_clear(x);
    enqueue(c, x, NULL, NULL, delay_ms);
}

void client_defer(struct client *c, int64_t delay_ms, client_timer_fn fn, void *arg)
{
    enqueue(c, NULL, fn, arg, delay_ms);
}

int client_inflight(struct client *c)
{
    return atomic_load_explicit(&c->inflight, memory_order_relaxed);
}

/* ------------------------------------------------------------------ */
/* libcurl callbacks (client thread, inside curl_multi_perform) */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct conn *k = ud;
    size_t len = size * nmemb;
    int rc = buf_add(&k->x->resp_body, data, len);
    if (rc != AGAPE_OK) {
        k->body_error = rc;
        return 0; /* anything but len aborts the transfer */
    }
    return len;
}

/* The SMTP message, from the transfer's body. libcurl calls this only once
 * the server has answered DATA with 354, so upload_pos > 0 means the message
 * has started to leave this host. */
static size_t on_read(char *dst, size_t size, size_t nitems, void *ud)
{
    struct conn *k = ud;
    struct client_xfer *x = k->x;
    size_t room = size * nitems;
    size_t left = x->body_len > k->upload_pos ? x->body_len - k->upload_pos : 0;
    size_t n = left < room ? left : room;
    if (n > 0) {
        memcpy(dst, x->body + k->upload_pos, n);
        k->upload_pos += n;
    }
    return n;
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && strchr(" \t\r\n", (*s)[0]) != NULL) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && strchr(" \t\r\n", (*s)[*len - 1]) != NULL) {
        (*len)--;
    }
}

/* libcurl passes every header line of every response (100 Continue, a 3xx,
 * a proxy's CONNECT answer, then the final one); a status line starts a new
 * response, so it drops what was collected before. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    struct conn *k = ud;
    struct client_xfer *x = k->x;
    size_t total = size * nmemb;
    const char *line = data;
    size_t len = total;

    trim(&line, &len);
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        free_headers(x->resp_headers, &x->n_resp_headers);
        return total;
    }
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || x->n_resp_headers >= CLIENT_MAX_HEADERS) {
        return total;
    }
    const char *name = line;
    size_t name_len = (size_t)(colon - line);
    const char *value = colon + 1;
    size_t value_len = len - name_len - 1;
    trim(&name, &name_len);
    trim(&value, &value_len);
    if (name_len == 0) {
        return total;
    }
    char *n = strndup(name, name_len);
    char *v = strndup(value, value_len);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return total; /* a header lost to memory pressure; the answer stands */
    }
    x->resp_headers[x->n_resp_headers].name = n;
    x->resp_headers[x->n_resp_headers].value = v;
    x->n_resp_headers++;
    return total;
}

/* ------------------------------------------------------------------ */
/* Starting and finishing transfers (client thread) */

static struct conn *conn_get(struct client *c)
{
    struct conn *k = c->spare;
    if (k != NULL) {
        c->spare = k->next;
        c->n_spare--;
        k->next = NULL;
        return k;
    }
    k = calloc(1, sizeof(*k));
    if (k == NULL) {
        return NULL;
    }
    k->easy = curl_easy_init();
    if (k->easy == NULL) {
        free(k);
        return NULL;
    }
    return k;
}

static void conn_free(struct conn *k)
{
    curl_slist_free_all(k->headers);
    curl_slist_free_all(k->rcpts);
    curl_easy_cleanup(k->easy);
    free(k);
}

/* Back to the free list, or freed when the list is full. */
static void conn_put(struct client *c, struct conn *k)
{
    curl_slist_free_all(k->headers);
    k->headers = NULL;
    curl_slist_free_all(k->rcpts);
    k->rcpts = NULL;
    k->upload_pos = 0;
    k->x = NULL;
    k->body_error = AGAPE_OK;
    k->prev = NULL;
    if (c->n_spare >= c->max_spare) {
        conn_free(k);
        return;
    }
    curl_easy_reset(k->easy);
    k->next = c->spare;
    c->spare = k;
    c->n_spare++;
}

static void active_link(struct client *c, struct conn *k)
{
    k->prev = NULL;
    k->next = c->active;
    if (c->active != NULL) {
        c->active->prev = k;
    }
    c->active = k;
    atomic_fetch_add_explicit(&c->inflight, 1, memory_order_relaxed);
}

static void active_unlink(struct client *c, struct conn *k)
{
    if (k->prev != NULL) {
        k->prev->next = k->next;
    } else {
        c->active = k->next;
    }
    if (k->next != NULL) {
        k->next->prev = k->prev;
    }
    k->prev = k->next = NULL;
    atomic_fetch_sub_explicit(&c->inflight, 1, memory_order_relaxed);
}

static bool method_ok(const char *m)
{
    if (m[0] == '\0') {
        return false;
    }
    for (const char *p = m; *p; p++) {
        if (*p < 'A' || *p > 'Z') {
            return false;
        }
    }
    return true;
}

#define SETOPT(e, opt, val)                                                                        \
    do {                                                                                           \
        rc = curl_easy_setopt((e), (opt), (val));                                                  \
        if (rc != CURLE_OK) {                                                                      \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* The request header list, owned by the conn until the transfer ends. */
static int build_headers(struct conn *k, const struct client_xfer *x)
{
    struct agape_buf line;
    struct curl_slist *list = NULL;
    bool has_expect = false;
    int rc = AGAPE_OK;

    buf_init(&line, 0);
    for (int i = 0; i < x->n_req_headers; i++) {
        const struct client_header *h = &x->req_headers[i];
        buf_reset(&line);
        /* "Name:" would remove a header libcurl adds; "Name;" sends it empty. */
        if (h->value[0] == '\0') {
            buf_printf(&line, "%s;", h->name);
        } else {
            buf_printf(&line, "%s: %s", h->name, h->value);
        }
        if (strcasecmp(h->name, "Expect") == 0) {
            has_expect = true;
        }
        if (line.error) {
            rc = line.error;
            goto out;
        }
        struct curl_slist *l = curl_slist_append(list, line.data);
        if (l == NULL) {
            rc = AGAPE_ENOMEM;
            goto out;
        }
        list = l;
    }
    if (!has_expect) {
        /* No 100-continue round trip before a POST body. */
        struct curl_slist *l = curl_slist_append(list, "Expect:");
        if (l == NULL) {
            rc = AGAPE_ENOMEM;
            goto out;
        }
        list = l;
    }
    k->headers = list;
    list = NULL;
out:
    curl_slist_free_all(list);
    buf_fini(&line);
    return rc;
}

/* An smtp:// or smtps:// URL (the only ones a mail transfer may use). */
static bool mail_url(const char *url)
{
    return strncasecmp(url, "smtp://", 7) == 0 || strncasecmp(url, "smtps://", 8) == 0;
}

/* The envelope and the upload of an SMTP transfer. */
static CURLcode configure_mail(struct conn *k, struct client_xfer *x)
{
    CURL *e = k->easy;
    CURLcode rc = CURLE_OK;

    for (int i = 0; i < x->n_mail_rcpt; i++) {
        struct curl_slist *l = curl_slist_append(k->rcpts, x->mail_rcpt[i]);
        if (l == NULL) {
            rc = CURLE_OUT_OF_MEMORY;
            goto out;
        }
        k->rcpts = l;
    }
    SETOPT(e, CURLOPT_MAIL_FROM, x->mail_from);
    SETOPT(e, CURLOPT_MAIL_RCPT, k->rcpts);
    SETOPT(e, CURLOPT_UPLOAD, 1L);
    SETOPT(e, CURLOPT_READFUNCTION, on_read);
    SETOPT(e, CURLOPT_READDATA, (void *)k);
    SETOPT(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(x->body ? x->body_len : 0));
    if (x->mail_require_tls) {
        /* STARTTLS or nothing: CURLE_USE_SSL_FAILED before MAIL FROM when the
         * server does not offer it. (smtps:// is TLS from the start anyway.) */
        SETOPT(e, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    }
out:
    return rc;
}

/* Every option, every time: the handle was reset. */
static CURLcode configure(struct conn *k, struct client_xfer *x, const char *method)
{
    CURL *e = k->easy;
    CURLcode rc = CURLE_OK;
    long connect_ms = x->connect_timeout_ms > 0 ? (long)x->connect_timeout_ms
                                                : CLIENT_CONNECT_TIMEOUT_MS;
    long timeout_ms = x->timeout_ms > 0 ? (long)x->timeout_ms : CLIENT_TIMEOUT_MS;

    SETOPT(e, CURLOPT_URL, x->url);
    SETOPT(e, CURLOPT_PRIVATE, (void *)k);
    SETOPT(e, CURLOPT_NOSIGNAL, 1L);
    SETOPT(e, CURLOPT_ERRORBUFFER, k->errbuf);
    /* A mail transfer may speak only SMTP, any other only HTTP: a plugin
     * cannot turn one into the other through its URL. */
    SETOPT(e, CURLOPT_PROTOCOLS_STR, x->mail_from != NULL ? "smtp,smtps" : "http,https");
    SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SETOPT(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (x->mail_from != NULL) {
        /* No header callback: SMTP has no answer headers. The write
         * callback stays so that nothing ever reaches stdout. */
        SETOPT(e, CURLOPT_WRITEFUNCTION, on_body);
        SETOPT(e, CURLOPT_WRITEDATA, (void *)k);
        if (x->userpwd != NULL) {
            SETOPT(e, CURLOPT_USERPWD, x->userpwd);
        }
        rc = configure_mail(k, x);
        goto out;
    }
    SETOPT(e, CURLOPT_HTTPHEADER, k->headers);
    SETOPT(e, CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(e, CURLOPT_HEADERDATA, (void *)k);
    SETOPT(e, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(e, CURLOPT_WRITEDATA, (void *)k);
    /* Refuses early when Content-Length says too much; on_body catches the rest. */
    SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CLIENT_BODY_MAX);
    if (x->userpwd != NULL) {
        SETOPT(e, CURLOPT_USERPWD, x->userpwd);
    }

    if (strcmp(method, "GET") == 0) {
        SETOPT(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        SETOPT(e, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(method, "POST") != 0) {
            SETOPT(e, CURLOPT_CUSTOMREQUEST, method);
        }
        if (strcmp(method, "POST") == 0 || x->body != NULL) {
            /* Size first, or libcurl would strlen() the body. An empty POST
             * still needs both, or a reused handle could send stale data. */
            SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(x->body ? x->body_len : 0));
            SETOPT(e, CURLOPT_POSTFIELDS, x->body ? x->body : "");
        }
    }
out:
    return rc;
}

static void xfer_start(struct client *c, struct client_xfer *x)
{
    char method[sizeof(x->method) + 1];
    size_t mlen = strnlen(x->method, sizeof(x->method));
    memcpy(method, x->method, mlen);
    method[mlen] = '\0';
    if (mlen == 0) {
        memcpy(method, "GET", 4);
    }

    const char *why = NULL;
    struct conn *k = NULL;
    if (x->url == NULL || !method_ok(method)) {
        why = "invalid request (no URL or bad method)";
        goto fail;
    }
    if (x->mail_from != NULL && (!mail_url(x->url) || x->n_mail_rcpt == 0)) {
        why = "invalid mail request (needs an smtp:// or smtps:// URL and a recipient)";
        goto fail;
    }
    k = conn_get(c);
    if (k == NULL) {
        why = "out of memory";
        goto fail;
    }
    k->x = x;
    k->errbuf[0] = '\0';
    k->body_error = AGAPE_OK;
    k->upload_pos = 0;
    if (build_headers(k, x) != AGAPE_OK) {
        why = "out of memory";
        goto fail;
    }
    CURLcode rc = configure(k, x, method);
    if (rc != CURLE_OK) {
        why = curl_easy_strerror(rc);
        goto fail;
    }
    k->start_us = mono_us();
    CURLMcode mrc = curl_multi_add_handle(c->multi, k->easy);
    if (mrc != CURLM_OK) {
        why = curl_multi_strerror(mrc);
        goto fail;
    }
    active_link(c, k);
    return;

fail:
    if (k != NULL) {
        conn_put(c, k);
    }
    xfer_fail(x, CLIENT_NOT_SENT, why);
    if (x->done != NULL) {
        x->done(x, x->arg);
    }
}

/* The one place that decides whether a failed transfer reached the provider.
 * CURLINFO_REQUEST_SIZE counts request bytes written to a socket, so 0 means
 * nothing left this host: that covers resolve, connect and TLS handshake
 * failures (CURLE_COULDNT_RESOLVE_HOST/_PROXY, CURLE_COULDNT_CONNECT,
 * CURLE_SSL_CONNECT_ERROR) and a SYN queued until the timeout. Those codes
 * are NOT trusted on their own: when a reused keep-alive connection dies
 * without an answer, libcurl re-sends on a new connection by itself, and if
 * that connect fails the code is CURLE_COULDNT_CONNECT although the request
 * did go out once (REQUEST_SIZE > 0); for a payment that is "unknown". */
static void classify(struct client_xfer *x, CURLcode rc, long request_size, int body_error,
                     const char *errbuf)
{
    if (body_error != AGAPE_OK || rc == CURLE_FILESIZE_EXCEEDED) {
        xfer_fail(x, CLIENT_NO_ANSWER,
                  body_error == AGAPE_ENOMEM ? "out of memory" : "response too large");
        return;
    }
    if (rc == CURLE_OK) {
        x->result = CLIENT_DONE;
        buf_add(&x->resp_body, "", 0); /* NUL-terminated even when empty */
        return;
    }
    xfer_fail(x, request_size > 0 ? CLIENT_NO_ANSWER : CLIENT_NOT_SENT,
              errbuf[0] ? errbuf : curl_easy_strerror(rc));
}

/* SMTP's version of classify(). REQUEST_SIZE does not count SMTP commands,
 * so what was sent is judged by the message itself:
 * - an SMTP error reply (≥ 400) that made libcurl give up — MAIL or RCPT
 *   refused (CURLE_SEND_ERROR), AUTH refused (CURLE_LOGIN_DENIED,
 *   CURLE_AUTH_ERROR), HELO refused (CURLE_REMOTE_ACCESS_DENIED), STARTTLS
 *   refused (CURLE_USE_SSL_FAILED), a bad greeting or a refused end of data
 *   (CURLE_WEIRD_SERVER_REPLY), DATA refused (CURLE_SEND_ERROR) — is an
 *   answer: CLIENT_DONE with that code, for the plugin to map;
 * - otherwise, once on_read() has handed out message bytes (after DATA was
 *   accepted), the server may have taken the message: CLIENT_NO_ANSWER;
 * - otherwise the message never left: CLIENT_NOT_SENT (connect and TLS
 *   failures, STARTTLS missing, a connection lost before DATA). */
static void classify_mail(struct client_xfer *x, CURLcode rc, long code, size_t uploaded,
                          const char *errbuf)
{
    bool smtp_refusal = rc == CURLE_SEND_ERROR || rc == CURLE_LOGIN_DENIED ||
                        rc == CURLE_AUTH_ERROR || rc == CURLE_REMOTE_ACCESS_DENIED ||
                        rc == CURLE_USE_SSL_FAILED || rc == CURLE_WEIRD_SERVER_REPLY ||
                        rc == CURLE_QUOTE_ERROR;
    if (rc == CURLE_OK || (smtp_refusal && code >= 400 && code <= 599)) {
        x->result = CLIENT_DONE;
        x->status = (int)code;
        buf_add(&x->resp_body, "", 0); /* NUL-terminated, like an HTTP answer */
        return;
    }
    xfer_fail(x, uploaded > 0 ? CLIENT_NO_ANSWER : CLIENT_NOT_SENT,
              errbuf[0] ? errbuf : curl_easy_strerror(rc));
}

/* Called once the handle is out of the multi. The conn is recycled before
 * done runs, which may free or resubmit the transfer. */
static void xfer_finish(struct client *c, struct conn *k, CURLcode rc, bool aborted)
{
    struct client_xfer *x = k->x;
    long status = 0;
    long request_size = 0;

    curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(k->easy, CURLINFO_REQUEST_SIZE, &request_size);
    x->elapsed_ms = (mono_us() - k->start_us) / 1000;
    if (aborted) {
        bool sent = x->mail_from != NULL ? k->upload_pos > 0 : request_size > 0;
        xfer_fail(x, sent ? CLIENT_NO_ANSWER : CLIENT_NOT_SENT, "client stopped");
    } else if (x->mail_from != NULL) {
        classify_mail(x, rc, status, k->upload_pos, k->errbuf);
    } else {
        classify(x, rc, request_size, k->body_error, k->errbuf);
        if (x->result == CLIENT_DONE) {
            x->status = (int)status;
        }
    }
    active_unlink(c, k);
    conn_put(c, k);
    if (x->done != NULL) {
        x->done(x, x->arg);
    }
}

static struct conn *conn_of(CURL *easy)
{
    char *p = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p);
    return (struct conn *)(void *)p;
}

static void collect_finished(struct client *c)
{
    size_t n = 0;
    int left = 0;
    CURLMsg *m;

    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        if (n == c->fin_cap) {
            size_t cap = c->fin_cap ? c->fin_cap * 2 : 256;
            struct finished *f = realloc(c->fin, cap * sizeof(*f));
            if (f == NULL) {
                /* Degrade to the slow path rather than lose a transfer. */
                CURL *e = m->easy_handle;
                CURLcode rc = m->data.result;
                curl_multi_remove_handle(c->multi, e);
                xfer_finish(c, conn_of(e), rc, false);
                continue;
            }
            c->fin = f;
            c->fin_cap = cap;
        }
        c->fin[n].easy = m->easy_handle;
        c->fin[n].rc = m->data.result;
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        curl_multi_remove_handle(c->multi, c->fin[i].easy);
    }
    for (size_t i = 0; i < n; i++) {
        xfer_finish(c, conn_of(c->fin[i].easy), c->fin[i].rc, false);
    }
}

/* ------------------------------------------------------------------ */
/* The client thread */

/* Moves the shared queue into the heap; returns whether to stop. */
static bool take_queue(struct client *c, struct job_vec *batch)
{
    pthread_mutex_lock(&c->mu);
    struct job_vec t = c->queue;
    c->queue = *batch;
    *batch = t;
    bool stopping = c->stopping;
    pthread_mutex_unlock(&c->mu);

    for (size_t i = 0; i < batch->n; i++) {
        if (heap_push(&c->heap, &batch->v[i]) != AGAPE_OK) {
            job_cancel(&batch->v[i], "out of memory");
        }
    }
    batch->n = 0;
    return stopping;
}

static void run_due(struct client *c)
{
    int64_t now = mono_us();
    while (c->heap.n > 0 && c->heap.v[0].due_us <= now) {
        struct job j = heap_pop(&c->heap);
        if (j.x != NULL) {
            xfer_start(c, j.x);
        } else if (j.fn != NULL) {
            j.fn(j.arg, false);
        }
    }
}

static int poll_timeout_ms(const struct client *c)
{
    if (c->heap.n == 0) {
        return CLIENT_POLL_MAX_MS;
    }
    int64_t wait_us = c->heap.v[0].due_us - mono_us();
    if (wait_us <= 0) {
        return 0;
    }
    int64_t ms = (wait_us + 999) / 1000; /* round up: waking early would spin */
    return ms < CLIENT_POLL_MAX_MS ? (int)ms : CLIENT_POLL_MAX_MS;
}

/* Abort what is in flight, cancel what is pending, including whatever the
 * callbacks submit meanwhile, then refuse further submits. */
static void shut_down(struct client *c, struct job_vec *batch)
{
    while (c->active != NULL) {
        struct conn *k = c->active;
        curl_multi_remove_handle(c->multi, k->easy);
        xfer_finish(c, k, CURLE_OK, true);
    }
    for (;;) {
        pthread_mutex_lock(&c->mu);
        struct job_vec t = c->queue;
        c->queue = *batch;
        *batch = t;
        if (batch->n == 0 && c->heap.n == 0) {
            c->closed = true;
            pthread_mutex_unlock(&c->mu);
            break;
        }
        pthread_mutex_unlock(&c->mu);
        for (size_t i = 0; i < batch->n; i++) {
            if (heap_push(&c->heap, &batch->v[i]) != AGAPE_OK) {
                job_cancel(&batch->v[i], "client stopped");
            }
        }
        batch->n = 0;
        while (c->heap.n > 0) {
            struct job j = heap_pop(&c->heap);
            job_cancel(&j, "client stopped");
        }
    }
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    struct job_vec batch = {0};

    while (!take_queue(c, &batch)) {
        run_due(c);
        int running = 0;
        curl_multi_perform(c->multi, &running);
        collect_finished(c);
        curl_multi_poll(c->multi, NULL, 0, poll_timeout_ms(c), NULL);
    }
    shut_down(c, &batch);
    free(batch.v);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Lifecycle (main thread) */

static void client_free(struct client *c)
{
    while (c->spare != NULL) {
        struct conn *k = c->spare;
        c->spare = k->next;
        conn_free(k);
    }
    if (c->multi != NULL) {
        curl_multi_cleanup(c->multi);
    }
    free(c->queue.v);
    free(c->heap.v);
    free(c->fin);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int client_create(const struct client_options *opt, struct client **out)
{
    int rc = AGAPE_ERROR;
    struct client *c = calloc(1, sizeof(*c));
    *out = NULL;
    if (c == NULL) {
        return AGAPE_ENOMEM;
    }
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->inflight, 0);

    long max_conn = CLIENT_MAX_CONNECTIONS;
    long max_host = 0;
    if (opt != NULL && opt->max_connections > 0) {
        max_conn = opt->max_connections;
    }
    if (opt != NULL && opt->max_host_connections > 0) {
        max_host = opt->max_host_connections;
    }
    c->max_spare = max_conn < CLIENT_MAX_SPARE ? (int)max_conn : CLIENT_MAX_SPARE;

    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        rc = AGAPE_ENOMEM;
        goto out;
    }
    if (curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, max_conn) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host) != CURLM_OK) {
        goto out;
    }

    /* The client thread takes no signals: they belong to main's handling. */
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int e = pthread_create(&c->thread, NULL, client_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        goto out;
    }
    *out = c;
    c = NULL;
    rc = AGAPE_OK;
out:
    if (c != NULL) {
        client_free(c);
    }
    return rc;
}

void client_destroy(struct client *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    curl_multi_wakeup(c->multi);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    client_free(c);
}
