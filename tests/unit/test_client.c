/* client — transfers against an in-process libmicrohttpd server on
 * 127.0.0.1:0 (thread per connection, so handlers may sleep), and SMTP
 * transfers against an in-process SMTP sink (a thread per connection). */
#include "client.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>

/* ------------------------------------------------------------------ */
/* The test server */

struct srv {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    bool quit;
    int hits;          /* requests whose body was read */
    int64_t stamp_ms;  /* when /stamp last arrived */
};

struct srv_req {
    char body[4096];
    size_t len;
    bool started;
};

/* Sleeps up to ms, cut short by teardown so a test never waits on a handler. */
static void srv_sleep(struct srv *s, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->quit) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

static long query_long(struct MHD_Connection *conn, const char *name, long dflt)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    if (v == NULL) {
        return dflt;
    }
    char *end = NULL;
    long n = strtol(v, &end, 10);
    return (end != v && *end == '\0') ? n : dflt;
}

static enum MHD_Result reply(struct MHD_Connection *conn, int status, const char *body,
                             size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "X-Reply", "yes");
    MHD_add_response_header(r, "X-Padded", "  padded value  ");
    MHD_add_response_header(r, "Content-Type", "text/plain");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Streams `n` bytes of 'x' with no Content-Length (chunked). */
static ssize_t big_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    uint64_t n = *(uint64_t *)cls;
    if (pos >= n) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t k = (size_t)(n - pos) < max ? (size_t)(n - pos) : max;
    memset(buf, 'x', k);
    return (ssize_t)k;
}

static enum MHD_Result srv_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    struct srv *s = cls;
    struct srv_req *rq = *con_cls;
    (void)version;

    if (rq == NULL) {
        rq = calloc(1, sizeof(*rq));
        *con_cls = rq;
        return rq ? MHD_YES : MHD_NO;
    }
    if (*upload_size > 0) {
        size_t room = sizeof(rq->body) - 1 - rq->len;
        size_t k = *upload_size < room ? *upload_size : room;
        memcpy(rq->body + rq->len, upload_data, k);
        rq->len += k;
        *upload_size = 0;
        return MHD_YES;
    }
    rq->body[rq->len] = '\0';
    pthread_mutex_lock(&s->mu);
    s->hits++;
    if (strcmp(url, "/stamp") == 0) {
        s->stamp_ms = client_mono_ms();
    }
    pthread_mutex_unlock(&s->mu);

    if (strcmp(url, "/echo") == 0 || strcmp(url, "/stamp") == 0) {
        const char *xt = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Test");
        char out[4200];
        int n = snprintf(out, sizeof(out), "method=%s;xtest=%s;body=%s", method,
                         xt ? xt : "-", rq->body);
        return reply(conn, (int)query_long(conn, "status", 200), out, (size_t)n);
    }
    if (strcmp(url, "/sleep") == 0) {
        srv_sleep(s, query_long(conn, "ms", 100));
        return reply(conn, 200, "slept", 5);
    }
    if (strcmp(url, "/close") == 0) {
        return MHD_NO; /* read, then close without an answer */
    }
    if (strcmp(url, "/big") == 0) {
        size_t n = (size_t)query_long(conn, "n", (long)CLIENT_BODY_MAX + 1);
        char *big = malloc(n);
        if (big == NULL) {
            return MHD_NO;
        }
        memset(big, 'x', n);
        struct MHD_Response *r =
            MHD_create_response_from_buffer(n, big, MHD_RESPMEM_MUST_FREE);
        enum MHD_Result ret = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strcmp(url, "/bigchunked") == 0) {
        uint64_t *n = malloc(sizeof(*n));
        if (n == NULL) {
            return MHD_NO;
        }
        *n = (uint64_t)CLIENT_BODY_MAX + 1;
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, big_stream, n, free);
        enum MHD_Result ret = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    return reply(conn, 404, "not found", 9);
}

static void srv_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static struct srv *srv_start(void)
{
    struct srv *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD, 0,
                            NULL, NULL, srv_handle, s, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_CONNECTION_LIMIT, 2000u, MHD_OPTION_NOTIFY_COMPLETED,
                            srv_completed, s, MHD_OPTION_END);
    assert_non_null(s->d);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(di);
    s->port = di->port;
    assert_true(s->port > 0);
    return s;
}

static void srv_stop(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    MHD_stop_daemon(s->d);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int srv_hits(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->hits;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ------------------------------------------------------------------ */
/* Completion tracking */

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
};

struct tx {
    struct client_xfer x;
    struct waiter *w;
    int calls;          /* how many times done ran: must end at 1 */
    int64_t done_ms;
    struct client *c;   /* for callbacks that submit */
    struct tx *next;    /* submitted from this one's callback */
};

static struct waiter waiter;

static void waiter_init(struct waiter *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = 0;
}

static void waiter_fini(struct waiter *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static void waiter_bump(struct waiter *w)
{
    pthread_mutex_lock(&w->mu);
    w->done++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* True when `n` completions were seen within timeout_ms. */
static bool waiter_wait(struct waiter *w, int n, int64_t timeout_ms)
{
    int64_t until = client_mono_ms() + timeout_ms;
    pthread_mutex_lock(&w->mu);
    while (w->done < n && client_mono_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    bool ok = w->done >= n;
    pthread_mutex_unlock(&w->mu);
    return ok;
}

static void tx_done(struct client_xfer *x, void *arg)
{
    struct tx *t = arg;
    (void)x;
    t->calls++;
    t->done_ms = client_mono_ms();
    if (t->next != NULL) {
        client_submit(t->c, &t->next->x, 0);
    }
    waiter_bump(t->w);
}

static void tx_init(struct tx *t, const char *method, const char *url)
{
    memset(t, 0, sizeof(*t));
    client_xfer_init(&t->x);
    snprintf(t->x.method, sizeof(t->x.method), "%s", method);
    t->x.url = strdup(url);
    assert_non_null(t->x.url);
    t->x.done = tx_done;
    t->x.arg = t;
    t->w = &waiter;
}

static void tx_fini(struct tx *t)
{
    client_xfer_reset(&t->x);
}

struct fixture {
    struct srv *s;
    struct client *c;
    char base[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->s = srv_start();
    snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", f->s->port);
    struct client_options opt = {0};
    assert_int_equal(client_create(&opt, &f->c), AGAPE_OK);
    waiter_init(&waiter);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    client_destroy(f->c);
    srv_stop(f->s);
    waiter_fini(&waiter);
    free(f);
    return 0;
}

static void url_of(const struct fixture *f, const char *path, char *out, size_t len)
{
    int n = snprintf(out, len, "%s%s", f->base, path);
    assert_true(n > 0 && (size_t)n < len);
}

/* Submits one transfer and waits for it. */
static void run_one(struct fixture *f, struct tx *t, int64_t delay_ms)
{
    int before = waiter.done;
    client_submit(f->c, &t->x, delay_ms);
    assert_true(waiter_wait(&waiter, before + 1, 10000));
    assert_int_equal(t->calls, 1);
}

/* ------------------------------------------------------------------ */
/* Tests */

static void test_get_and_post_round_trip(void **state)
{
    struct fixture *f = *state;
    char url[128];
    struct tx t;

    url_of(f, "/echo", url, sizeof(url));
    tx_init(&t, "GET", url);
    assert_int_equal(client_xfer_add_header(&t.x, "X-Test", "hello"), AGAPE_OK);
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_DONE);
    assert_int_equal(t.x.status, 200);
    assert_string_equal(t.x.resp_body.data, "method=GET;xtest=hello;body=");
    assert_string_equal(t.x.err, "");
    assert_true(t.x.elapsed_ms >= 0 && t.x.elapsed_ms < 5000);
    tx_fini(&t);

    url_of(f, "/echo?status=201", url, sizeof(url));
    tx_init(&t, "POST", url);
    assert_int_equal(client_xfer_add_header(&t.x, "X-Test", "form"), AGAPE_OK);
    assert_int_equal(client_xfer_add_header(&t.x, "Content-Type",
                                            "application/x-www-form-urlencoded"), AGAPE_OK);
    t.x.body = strdup("amount=2000&currency=usd");
    t.x.body_len = strlen(t.x.body);
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_DONE);
    assert_int_equal(t.x.status, 201);
    assert_string_equal(t.x.resp_body.data,
                        "method=POST;xtest=form;body=amount=2000&currency=usd");

    /* The same transfer again, as the next step of a call: the answer part
     * starts clean and the handle recycling resends everything. */
    t.calls = 0;
    run_one(f, &t, 0);
    assert_int_equal(t.x.status, 201);
    assert_string_equal(t.x.resp_body.data,
                        "method=POST;xtest=form;body=amount=2000&currency=usd");
    tx_fini(&t);

    /* An empty POST, and another method with a body. */
    url_of(f, "/echo", url, sizeof(url));
    tx_init(&t, "POST", url);
    run_one(f, &t, 0);
    assert_string_equal(t.x.resp_body.data, "method=POST;xtest=-;body=");
    tx_fini(&t);

    tx_init(&t, "PATCH", url);
    t.x.body = strdup("{\"a\":1}");
    t.x.body_len = strlen(t.x.body);
    run_one(f, &t, 0);
    assert_int_equal(t.x.status, 200);
    assert_string_equal(t.x.resp_body.data, "method=PATCH;xtest=-;body={\"a\":1}");
    tx_fini(&t);

    /* An empty answer body is still a NUL-terminated string. */
    url_of(f, "/big?n=0", url, sizeof(url));
    tx_init(&t, "GET", url);
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_DONE);
    assert_non_null(t.x.resp_body.data);
    assert_int_equal(t.x.resp_body.len, 0);
    assert_string_equal(t.x.resp_body.data, "");
    tx_fini(&t);
}

static void test_answer_headers(void **state)
{
    struct fixture *f = *state;
    char url[128];
    struct tx t;

    url_of(f, "/echo", url, sizeof(url));
    tx_init(&t, "GET", url);
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_DONE);
    assert_string_equal(client_xfer_resp_header(&t.x, "x-reply"), "yes");
    assert_string_equal(client_xfer_resp_header(&t.x, "X-REPLY"), "yes");
    assert_string_equal(client_xfer_resp_header(&t.x, "content-type"), "text/plain");
    assert_string_equal(client_xfer_resp_header(&t.x, "X-Padded"), "padded value");
    assert_null(client_xfer_resp_header(&t.x, "X-Missing"));
    /* Resubmitting does not pile up the previous answer's headers. */
    int n = t.x.n_resp_headers;
    assert_true(n >= 3);
    t.calls = 0;
    run_one(f, &t, 0);
    assert_int_equal(t.x.n_resp_headers, n);
    tx_fini(&t);
}

static void test_request_header_validation(void **state)
{
    (void)state;
    struct client_xfer x;
    client_xfer_init(&x);
    assert_int_equal(client_xfer_add_header(&x, "X-A", "a\r\nX-Injected: 1"), AGAPE_EINVAL);
    assert_int_equal(client_xfer_add_header(&x, "X-A\n", "a"), AGAPE_EINVAL);
    assert_int_equal(client_xfer_add_header(&x, "X:A", "a"), AGAPE_EINVAL);
    assert_int_equal(client_xfer_add_header(&x, "", "a"), AGAPE_EINVAL);
    for (int i = 0; i < CLIENT_MAX_HEADERS; i++) {
        assert_int_equal(client_xfer_add_header(&x, "X-N", "v"), AGAPE_OK);
    }
    assert_int_equal(client_xfer_add_header(&x, "X-N", "v"), AGAPE_ERANGE);
    client_xfer_reset(&x);
    assert_int_equal(x.n_req_headers, 0);
    client_xfer_reset(&x);
}

static void test_closed_port_is_not_sent(void **state)
{
    struct fixture *f = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd); /* nothing listens there now */

    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(sa.sin_port));
    struct tx t;
    tx_init(&t, "POST", url);
    t.x.body = strdup("a=1");
    t.x.body_len = 3;
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_NOT_SENT);
    assert_int_equal(t.x.status, 0);
    assert_true(strlen(t.x.err) > 0);
    tx_fini(&t);
}

static void test_tls_handshake_failure_is_not_sent(void **state)
{
    struct fixture *f = *state;
    char url[128];
    /* TLS to a plain HTTP port: the handshake fails, no request was written. */
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/echo", f->s->port);
    struct tx t;
    tx_init(&t, "POST", url);
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_NOT_SENT);
    assert_true(strlen(t.x.err) > 0);
    tx_fini(&t);
}

static void test_no_answer(void **state)
{
    struct fixture *f = *state;
    char url[128];
    struct tx t;

    /* Accepted and read, never answered within the deadline. */
    url_of(f, "/sleep?ms=5000", url, sizeof(url));
    tx_init(&t, "POST", url);
    t.x.timeout_ms = 300;
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_NO_ANSWER);
    assert_true(t.x.elapsed_ms >= 250 && t.x.elapsed_ms < 3000);
    assert_true(strlen(t.x.err) > 0);
    tx_fini(&t);

    /* Read, then the connection closed without an answer. */
    url_of(f, "/close", url, sizeof(url));
    tx_init(&t, "POST", url);
    t.x.body = strdup("a=1");
    t.x.body_len = 3;
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_NO_ANSWER);
    tx_fini(&t);
}

static void test_answer_over_limit(void **state)
{
    struct fixture *f = *state;
    char url[128];
    struct tx t;

    url_of(f, "/big", url, sizeof(url)); /* Content-Length: 1 MiB + 1 */
    tx_init(&t, "GET", url);
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_NO_ANSWER);
    assert_string_equal(t.x.err, "response too large");
    tx_fini(&t);

    url_of(f, "/bigchunked", url, sizeof(url)); /* no length: caught while reading */
    tx_init(&t, "GET", url);
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_NO_ANSWER);
    assert_string_equal(t.x.err, "response too large");
    tx_fini(&t);

    snprintf(url, sizeof(url), "%s/big?n=%zu", f->base, CLIENT_BODY_MAX); /* exactly the limit */
    tx_init(&t, "GET", url);
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_DONE);
    assert_int_equal(t.x.resp_body.len, CLIENT_BODY_MAX);
    tx_fini(&t);
}

static void test_delayed_submit(void **state)
{
    struct fixture *f = *state;
    char url[128];
    struct tx t;

    url_of(f, "/stamp", url, sizeof(url));
    tx_init(&t, "GET", url);
    int64_t t0 = client_mono_ms();
    run_one(f, &t, 200);
    assert_int_equal(t.x.result, CLIENT_DONE);
    pthread_mutex_lock(&f->s->mu);
    int64_t arrived = f->s->stamp_ms;
    pthread_mutex_unlock(&f->s->mu);
    assert_true(arrived - t0 >= 200);
    assert_true(arrived - t0 < 2000);
    /* elapsed_ms is the transfer, not the wait before it. */
    assert_true(t.x.elapsed_ms < 200);
    tx_fini(&t);
}

struct order {
    pthread_mutex_t mu;
    int seen[16];
    int n;
    int cancelled;
    struct client *c;
};

struct timer_arg {
    struct order *o;
    int id;
    int64_t then_delay; /* >= 0: defer timer id+100 from inside this one */
};

static struct order order;
static struct timer_arg targs[8];

static void on_timer(void *arg, bool cancelled)
{
    struct timer_arg *a = arg;
    pthread_mutex_lock(&a->o->mu);
    if (a->o->n < 16) {
        a->o->seen[a->o->n++] = a->id;
    }
    if (cancelled) {
        a->o->cancelled++;
    }
    pthread_mutex_unlock(&a->o->mu);
    if (!cancelled && a->then_delay >= 0) {
        targs[7].o = a->o;
        targs[7].id = a->id + 100;
        targs[7].then_delay = -1;
        client_defer(a->o->c, a->then_delay, on_timer, &targs[7]);
    }
    waiter_bump(&waiter);
}

static void test_defer_order(void **state)
{
    struct fixture *f = *state;
    memset(&order, 0, sizeof(order));
    pthread_mutex_init(&order.mu, NULL);
    order.c = f->c;

    const int64_t delays[] = {200, 50, 150, 0, 50, 0};
    for (int i = 0; i < 6; i++) {
        targs[i].o = &order;
        targs[i].id = i;
        targs[i].then_delay = i == 3 ? 50 : -1; /* timer 3 (at 0) defers 103 (at 50+) */
    }
    int64_t t0 = client_mono_ms();
    for (int i = 0; i < 6; i++) {
        client_defer(f->c, delays[i], on_timer, &targs[i]);
    }
    assert_true(waiter_wait(&waiter, 7, 5000));
    assert_true(client_mono_ms() - t0 >= 200);
    /* By due time; equal due times in submission order. 103 is due 50 ms
     * after timer 3 ran, so after the two 50s and before the 150. */
    const int want[] = {3, 5, 1, 4, 103, 2, 0};
    assert_int_equal(order.n, 7);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(order.seen[i], want[i]);
    }
    assert_int_equal(order.cancelled, 0);
    pthread_mutex_destroy(&order.mu);
}

static void test_many_concurrent_transfers(void **state)
{
    struct fixture *f = *state;
    enum { N = 200 };
    char url[128];
    struct tx *t = calloc(N, sizeof(*t));
    assert_non_null(t);

    url_of(f, "/sleep?ms=200", url, sizeof(url));
    for (int i = 0; i < N; i++) {
        tx_init(&t[i], "GET", url);
    }
    int64_t t0 = client_mono_ms();
    for (int i = 0; i < N; i++) {
        client_submit(f->c, &t[i].x, 0);
    }
    assert_true(waiter_wait(&waiter, N, 10000));
    int64_t took = client_mono_ms() - t0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(t[i].calls, 1);
        assert_int_equal(t[i].x.result, CLIENT_DONE);
        assert_int_equal(t[i].x.status, 200);
        assert_string_equal(t[i].x.resp_body.data, "slept");
        tx_fini(&t[i]);
    }
    /* Sequentially this is 40 s; asynchronously one sleep plus overhead. */
    assert_true(took >= 200);
    assert_true(took < 1500);
    assert_int_equal(client_inflight(f->c), 0);
    free(t);
}

static void test_chained_submits_from_callbacks(void **state)
{
    struct fixture *f = *state;
    char url[128];
    struct tx t[3];

    url_of(f, "/echo", url, sizeof(url));
    for (int i = 0; i < 3; i++) {
        tx_init(&t[i], "GET", url);
        t[i].c = f->c;
        t[i].next = i < 2 ? &t[i + 1] : NULL;
    }
    client_submit(f->c, &t[0].x, 0);
    assert_true(waiter_wait(&waiter, 3, 10000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t[i].calls, 1);
        assert_int_equal(t[i].x.result, CLIENT_DONE);
        tx_fini(&t[i]);
    }
    assert_true(t[0].done_ms <= t[1].done_ms && t[1].done_ms <= t[2].done_ms);
}

static void test_destroy_with_work_in_flight(void **state)
{
    struct fixture *f = *state;
    enum { FLIGHT = 20, LATER = 5 };
    char url[128];
    struct tx flight[FLIGHT];
    struct tx later[LATER];
    struct tx resubmitted;

    memset(&order, 0, sizeof(order));
    pthread_mutex_init(&order.mu, NULL);
    order.c = f->c;

    url_of(f, "/sleep?ms=5000", url, sizeof(url));
    tx_init(&resubmitted, "GET", url);
    for (int i = 0; i < FLIGHT; i++) {
        tx_init(&flight[i], "POST", url);
        if (i == 0) {
            /* This callback submits again while the client stops. */
            flight[i].c = f->c;
            flight[i].next = &resubmitted;
        }
        client_submit(f->c, &flight[i].x, 0);
    }
    for (int i = 0; i < LATER; i++) {
        tx_init(&later[i], "GET", url);
        client_submit(f->c, &later[i].x, 10000);
    }
    for (int i = 0; i < 3; i++) {
        targs[i].o = &order;
        targs[i].id = i;
        targs[i].then_delay = -1;
        client_defer(f->c, 10000, on_timer, &targs[i]);
    }
    /* Wait until the server holds every in-flight request. */
    int64_t until = client_mono_ms() + 5000;
    while (srv_hits(f->s) < FLIGHT && client_mono_ms() < until) {
        usleep(5000);
    }
    assert_int_equal(srv_hits(f->s), FLIGHT);
    assert_int_equal(client_inflight(f->c), FLIGHT);

    int64_t t0 = client_mono_ms();
    client_destroy(f->c);
    f->c = NULL;
    assert_true(client_mono_ms() - t0 < 1000);

    for (int i = 0; i < FLIGHT; i++) {
        assert_int_equal(flight[i].calls, 1);
        assert_int_equal(flight[i].x.result, CLIENT_NO_ANSWER);
        tx_fini(&flight[i]);
    }
    assert_int_equal(resubmitted.calls, 1);
    assert_int_equal(resubmitted.x.result, CLIENT_NOT_SENT);
    tx_fini(&resubmitted);
    for (int i = 0; i < LATER; i++) {
        assert_int_equal(later[i].calls, 1);
        assert_int_equal(later[i].x.result, CLIENT_NOT_SENT);
        assert_string_equal(later[i].x.err, "client stopped");
        tx_fini(&later[i]);
    }
    assert_int_equal(order.n, 3);
    assert_int_equal(order.cancelled, 3);
    pthread_mutex_destroy(&order.mu);
}

static void test_clocks(void **state)
{
    (void)state;
    int64_t a = client_mono_ms();
    usleep(20000);
    int64_t b = client_mono_ms();
    assert_true(b - a >= 20 && b - a < 1000);
    /* 2020-01-01 < now < 2100-01-01 */
    assert_true(client_wall_ms() > 1577836800000LL);
    assert_true(client_wall_ms() < 4102444800000LL);
}

/* ------------------------------------------------------------------ */
/* SMTP transfers against a tiny in-process SMTP sink                  */

enum sink_mode {
    SINK_OK,
    SINK_RCPT_550,       /* refuses every recipient */
    SINK_AUTH_535,       /* refuses every credential */
    SINK_DATA_554,       /* refuses the message after its end */
    SINK_DROP_AFTER_DATA /* reads the message, then closes without a reply */
};

#define SINK_MAX_CONNS 8
#define SINK_DATA_MAX (64 * 1024)

struct sink {
    int fd;
    int port;
    enum sink_mode mode;
    pthread_t acceptor;
    pthread_mutex_t mu;
    bool stop;
    int conns[SINK_MAX_CONNS];
    pthread_t threads[SINK_MAX_CONNS];
    int n_conns;
    /* what the last transaction said (under mu) */
    char from[256];
    char rcpt[256];
    char auth[256];
    char wire[SINK_DATA_MAX]; /* DATA as received: dot-stuffed, without ".\r\n" */
    size_t wire_len;
    int messages; /* accepted with 250 */
    int mails;    /* MAIL FROM commands seen */
};

struct sink_conn {
    struct sink *s;
    int fd;
};

static bool sink_send(int fd, const char *text)
{
    size_t n = strlen(text);
    return send(fd, text, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* One CRLF-terminated line, without the CRLF; false at EOF or error. */
static bool sink_line(int fd, char *out, size_t cap)
{
    size_t n = 0;
    char c;
    while (recv(fd, &c, 1, 0) == 1) {
        if (c == '\n') {
            if (n > 0 && out[n - 1] == '\r') {
                n--;
            }
            out[n] = '\0';
            return true;
        }
        if (n + 1 < cap) {
            out[n++] = c;
        }
    }
    return false;
}

/* The message after 354, up to the "\r\n.\r\n" that ends it. */
static bool sink_data(struct sink *s, int fd)
{
    char buf[SINK_DATA_MAX];
    size_t n = 0;
    char c;
    while (recv(fd, &c, 1, 0) == 1) {
        if (n < sizeof(buf)) {
            buf[n++] = c;
        }
        if (n == 3 && memcmp(buf, ".\r\n", 3) == 0) {
            n = 0;
            break;
        }
        if (n >= 5 && memcmp(buf + n - 5, "\r\n.\r\n", 5) == 0) {
            n -= 3; /* keep the CRLF that ends the last line */
            break;
        }
    }
    pthread_mutex_lock(&s->mu);
    memcpy(s->wire, buf, n);
    s->wire_len = n;
    pthread_mutex_unlock(&s->mu);
    return true;
}

static void *sink_serve(void *arg)
{
    struct sink_conn *sc = arg;
    struct sink *s = sc->s;
    int fd = sc->fd;
    char line[1024];
    free(sc);

    sink_send(fd, "220 sink ESMTP\r\n");
    while (sink_line(fd, line, sizeof(line))) {
        if (strncasecmp(line, "EHLO", 4) == 0) {
            sink_send(fd, "250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n");
        } else if (strncasecmp(line, "HELO", 4) == 0) {
            sink_send(fd, "250 sink\r\n");
        } else if (strncasecmp(line, "AUTH PLAIN", 10) == 0) {
            char cred[256];
            if (line[10] == ' ') {
                snprintf(cred, sizeof(cred), "%.255s", line + 11);
            } else {
                sink_send(fd, "334 \r\n");
                if (!sink_line(fd, cred, sizeof(cred))) {
                    break;
                }
            }
            pthread_mutex_lock(&s->mu);
            snprintf(s->auth, sizeof(s->auth), "%s", cred);
            pthread_mutex_unlock(&s->mu);
            sink_send(fd, s->mode == SINK_AUTH_535 ? "535 5.7.8 Authentication failed\r\n"
                                                   : "235 2.7.0 Authenticated\r\n");
        } else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
            pthread_mutex_lock(&s->mu);
            snprintf(s->from, sizeof(s->from), "%.255s", line + 10);
            s->mails++;
            pthread_mutex_unlock(&s->mu);
            sink_send(fd, "250 2.1.0 Ok\r\n");
        } else if (strncasecmp(line, "RCPT TO:", 8) == 0) {
            pthread_mutex_lock(&s->mu);
            snprintf(s->rcpt, sizeof(s->rcpt), "%.255s", line + 8);
            pthread_mutex_unlock(&s->mu);
            sink_send(fd, s->mode == SINK_RCPT_550 ? "550 5.1.1 No such user\r\n"
                                                   : "250 2.1.5 Ok\r\n");
        } else if (strcasecmp(line, "DATA") == 0) {
            sink_send(fd, "354 End data with <CR><LF>.<CR><LF>\r\n");
            sink_data(s, fd);
            if (s->mode == SINK_DROP_AFTER_DATA) {
                break;
            }
            if (s->mode == SINK_DATA_554) {
                sink_send(fd, "554 5.7.1 Message rejected\r\n");
            } else {
                pthread_mutex_lock(&s->mu);
                s->messages++;
                pthread_mutex_unlock(&s->mu);
                sink_send(fd, "250 2.0.0 Ok: queued\r\n");
            }
        } else if (strcasecmp(line, "RSET") == 0 || strcasecmp(line, "NOOP") == 0) {
            sink_send(fd, "250 2.0.0 Ok\r\n");
        } else if (strcasecmp(line, "QUIT") == 0) {
            sink_send(fd, "221 2.0.0 Bye\r\n");
            break;
        } else {
            sink_send(fd, "502 5.5.2 Command not recognized\r\n");
        }
    }
    /* The fd is closed by sink_stop, after this thread is joined. */
    shutdown(fd, SHUT_RDWR);
    return NULL;
}

static void *sink_accept(void *arg)
{
    struct sink *s = arg;
    for (;;) {
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0) {
            break; /* sink_stop shut the listening socket down */
        }
        pthread_mutex_lock(&s->mu);
        struct sink_conn *sc = malloc(sizeof(*sc));
        if (s->stop || s->n_conns >= SINK_MAX_CONNS || sc == NULL) {
            pthread_mutex_unlock(&s->mu);
            free(sc);
            close(fd);
            continue;
        }
        sc->s = s;
        sc->fd = fd;
        s->conns[s->n_conns] = fd;
        if (pthread_create(&s->threads[s->n_conns], NULL, sink_serve, sc) != 0) {
            free(sc);
            close(fd);
        } else {
            s->n_conns++;
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

static struct sink *sink_start(enum sink_mode mode)
{
    struct sink *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->mode = mode;
    pthread_mutex_init(&s->mu, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->acceptor, NULL, sink_accept, s), 0);
    return s;
}

static void sink_stop(struct sink *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    for (int i = 0; i < s->n_conns; i++) {
        shutdown(s->conns[i], SHUT_RDWR);
    }
    pthread_mutex_unlock(&s->mu);
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->acceptor, NULL);
    for (int i = 0; i < s->n_conns; i++) {
        pthread_join(s->threads[i], NULL);
        close(s->conns[i]);
    }
    close(s->fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* A mail transfer to the sink: envelope a@example.com → b@example.com. */
static void mail_init(struct tx *t, const struct sink *s, const char *body)
{
    char url[64];
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", s->port);
    tx_init(t, "POST", url);
    t->x.mail_from = strdup("a@example.com");
    t->x.mail_rcpt[0] = strdup("b@example.com");
    t->x.n_mail_rcpt = 1;
    t->x.body = strdup(body);
    t->x.body_len = strlen(body);
    t->x.timeout_ms = 3000;
    assert_non_null(t->x.mail_from);
    assert_non_null(t->x.mail_rcpt[0]);
    assert_non_null(t->x.body);
}

/* The wire text with the dot-stuffing undone (RFC 5321 §4.5.2). */
static size_t unstuff(const char *in, size_t len, char *out)
{
    size_t o = 0;
    bool bol = true;
    for (size_t i = 0; i < len; i++) {
        if (bol && in[i] == '.') {
            bol = false;
            continue;
        }
        out[o++] = in[i];
        bol = in[i] == '\n';
    }
    return o;
}

static const char mail_body[] = "From: a@example.com\r\n"
                                "To: b@example.com\r\n"
                                "Subject: hi\r\n"
                                "\r\n"
                                "line one\r\n"
                                ".leading dot\r\n"
                                "..two dots\r\n"
                                ".\r\n"
                                "last\r\n";

static void test_smtp_send(void **state)
{
    struct fixture *f = *state;
    struct sink *s = sink_start(SINK_OK);
    struct tx t;

    mail_init(&t, s, mail_body);
    t.x.userpwd = strdup("user:secret");
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_DONE);
    assert_string_equal(t.x.err, "");
    assert_int_equal(t.x.status, 250);

    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->messages, 1);
    assert_string_equal(s->from, "<a@example.com>");
    assert_string_equal(s->rcpt, "<b@example.com>");
    assert_string_equal(s->auth, "AHVzZXIAc2VjcmV0"); /* base64("\0user\0secret") */
    /* libcurl dot-stuffs: a line starting with '.' gets another one... */
    s->wire[s->wire_len] = '\0';
    assert_non_null(strstr(s->wire, "\r\n..leading dot\r\n...two dots\r\n..\r\nlast\r\n"));
    /* ...and undoing it gives back the exact message. */
    char plain[SINK_DATA_MAX];
    size_t n = unstuff(s->wire, s->wire_len, plain);
    assert_int_equal(n, strlen(mail_body));
    assert_memory_equal(plain, mail_body, n);
    pthread_mutex_unlock(&s->mu);

    /* The same transfer again (the next message): still delivered. */
    t.calls = 0;
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_DONE);
    assert_int_equal(t.x.status, 250);
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->messages, 2);
    pthread_mutex_unlock(&s->mu);
    tx_fini(&t);
    sink_stop(s);
}

/* An SMTP refusal is an answer: CLIENT_DONE with the reply code. */
static void expect_refusal(struct fixture *f, enum sink_mode mode, bool auth, int code)
{
    struct sink *s = sink_start(mode);
    struct tx t;
    mail_init(&t, s, mail_body);
    if (auth) {
        t.x.userpwd = strdup("user:wrong");
    }
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_DONE);
    assert_int_equal(t.x.status, code);
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->messages, 0);
    pthread_mutex_unlock(&s->mu);
    tx_fini(&t);
    sink_stop(s);
}

static void test_smtp_refusals(void **state)
{
    struct fixture *f = *state;
    expect_refusal(f, SINK_RCPT_550, false, 550);
    expect_refusal(f, SINK_AUTH_535, true, 535);
    expect_refusal(f, SINK_DATA_554, false, 554);
}

static void test_smtp_not_sent_and_no_answer(void **state)
{
    struct fixture *f = *state;
    struct tx t;

    /* STARTTLS required, the server does not offer it: refused before MAIL. */
    struct sink *s = sink_start(SINK_OK);
    mail_init(&t, s, mail_body);
    t.x.mail_require_tls = true;
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_NOT_SENT);
    assert_true(strlen(t.x.err) > 0);
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->mails, 0);
    pthread_mutex_unlock(&s->mu);
    tx_fini(&t);
    sink_stop(s);

    /* The message went out, then the connection closed without a reply. */
    s = sink_start(SINK_DROP_AFTER_DATA);
    mail_init(&t, s, mail_body);
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_NO_ANSWER);
    pthread_mutex_lock(&s->mu);
    assert_true(s->wire_len > 0);
    pthread_mutex_unlock(&s->mu);
    tx_fini(&t);
    int port = s->port;
    sink_stop(s);

    /* Nothing listens any more. */
    char url[64];
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", port);
    tx_init(&t, "POST", url);
    t.x.mail_from = strdup("a@example.com");
    t.x.mail_rcpt[0] = strdup("b@example.com");
    t.x.n_mail_rcpt = 1;
    t.x.body = strdup(mail_body);
    t.x.body_len = strlen(mail_body);
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_NOT_SENT);
    tx_fini(&t);
}

/* A mail transfer speaks only SMTP, any other transfer only HTTP. */
static void test_smtp_protocol_separation(void **state)
{
    struct fixture *f = *state;
    struct sink *s = sink_start(SINK_OK);
    struct tx t;
    char url[64];

    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", s->port);
    tx_init(&t, "POST", url);
    t.x.body = strdup(mail_body);
    t.x.body_len = strlen(mail_body);
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_NOT_SENT);
    tx_fini(&t);

    url_of(f, "/echo", url, sizeof(url));
    tx_init(&t, "POST", url);
    t.x.mail_from = strdup("a@example.com");
    t.x.mail_rcpt[0] = strdup("b@example.com");
    t.x.n_mail_rcpt = 1;
    run_one(f, &t, 0);
    assert_int_equal(t.x.result, CLIENT_NOT_SENT);
    assert_int_equal(srv_hits(f->s), 0);
    tx_fini(&t);

    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->mails, 0);
    pthread_mutex_unlock(&s->mu);
    sink_stop(s);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_and_post_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_headers, setup, teardown),
        cmocka_unit_test(test_request_header_validation),
        cmocka_unit_test_setup_teardown(test_closed_port_is_not_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_handshake_failure_is_not_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_over_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delayed_submit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_concurrent_transfers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chained_submits_from_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_work_in_flight, setup, teardown),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test_setup_teardown(test_smtp_send, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smtp_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smtp_not_sent_and_no_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smtp_protocol_separation, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
