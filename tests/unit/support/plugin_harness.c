/* plugin_harness — see plugin_harness.h. The code here was, before, copied into every
 * tests/unit/test_plugin_*.c; behaviour is unchanged. */
#include "plugin_harness.h"

#include "buf.h"
#include "options.h"

#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

int harness_load(struct harness *h, const char *plugin)
{
    char err[AGAPE_ERR_SIZE] = "";
    char path[1024];
    int n = snprintf(path, sizeof(path), "%s/%s.so", AGAPE_PLUGIN_DIR, plugin);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        fprintf(stderr, "plugin path too long\n");
        return -1;
    }
    if (plugin_load(path, &h->pl, err, sizeof(err)) != AGAPE_OK) {
        fprintf(stderr, "plugin_load: %s\n", err);
        return -1;
    }
    return 0;
}

void harness_unload(struct harness *h)
{
    plugin_unload(h->pl);
    h->pl = NULL;
}

int harness_provider_init(struct harness *h, const char *name, json_t *conf, char *err,
                          size_t errlen)
{
    memset(&h->prov, 0, sizeof(h->prov));
    pthread_mutex_init(&h->prov.cache_lock, NULL);
    h->prov.name = (char *)name;
    h->prov.plugin = h->pl;
    err[0] = '\0';
    /* What the registry does before init: the table normalized per the plugin's option
     * schema (a type error stops here, in the core's words). */
    h->prov.conf = options_for_init(name, h->pl->desc->options, conf, err, errlen);
    json_decref(conf);
    if (h->prov.conf == NULL) {
        return AGAPE_EINVAL;
    }
    int rc = h->pl->desc->init(host_table(), HOST_AJ(h->prov.conf), &h->prov.ctx, err, errlen);
    h->prov.usable = rc == AGAPE_OK;
    return rc;
}

void harness_provider_fini(struct harness *h)
{
    if (h->prov.ctx) {
        h->pl->desc->destroy(h->prov.ctx);
    }
    json_decref(h->prov.conf);
    json_decref(h->prov.cache);
    pthread_mutex_destroy(&h->prov.cache_lock);
    memset(&h->prov, 0, sizeof(h->prov));
}

enum agape_step harness_op_start_json(struct harness_op *o, struct provider *prov,
                                      const char *name, agape_step_fn fn, json_t *in)
{
    client_xfer_init(&o->x);
    host_call_init(&o->hc, prov, name, in, &o->x);
    json_decref(in);
    o->fn = fn;
    return host_call_step(&o->hc, fn);
}

void harness_op_prepare(struct harness_op *o, struct provider *prov, const char *name,
                        agape_step_fn fn, const char *input_json)
{
    json_error_t je;
    json_t *in = json_loads(input_json, 0, &je);
    if (in == NULL) {
        fail_msg("bad test input: %s", je.text);
    }
    client_xfer_init(&o->x);
    host_call_init(&o->hc, prov, name, in, &o->x);
    json_decref(in);
    o->fn = fn;
}

enum agape_step harness_op_start(struct harness_op *o, struct provider *prov, const char *name,
                                 agape_step_fn fn, const char *input_json)
{
    harness_op_prepare(o, prov, name, fn, input_json);
    return host_call_step(&o->hc, fn);
}

void harness_set_answer(struct client_xfer *x, int status, const char *body, size_t len)
{
    x->result = CLIENT_DONE;
    x->status = status;
    buf_reset(&x->resp_body);
    assert_int_equal(buf_add(&x->resp_body, body, len), AGAPE_OK);
}

void harness_add_header(struct client_xfer *x, const char *name, const char *value)
{
    assert_true(x->n_resp_headers < CLIENT_MAX_HEADERS);
    x->resp_headers[x->n_resp_headers].name = strdup(name);
    x->resp_headers[x->n_resp_headers].value = strdup(value);
    x->n_resp_headers++;
}

void harness_clear_headers(struct client_xfer *x)
{
    for (int i = 0; i < x->n_resp_headers; i++) {
        free(x->resp_headers[i].name);
        free(x->resp_headers[i].value);
    }
    x->n_resp_headers = 0;
}

void harness_add_headersv(struct client_xfer *x, va_list ap)
{
    for (;;) {
        const char *name = va_arg(ap, const char *);
        if (name == NULL) {
            break;
        }
        const char *value = va_arg(ap, const char *);
        harness_add_header(x, name, value);
    }
}

enum agape_step harness_op_resume(struct harness_op *o)
{
    host_call_answer(&o->hc);
    return host_call_step(&o->hc, o->fn);
}

enum agape_step harness_op_answer(struct harness_op *o, int status, const char *body, size_t len,
                                  ...)
{
    va_list ap;
    harness_set_answer(&o->x, status, body, len);
    va_start(ap, len);
    harness_add_headersv(&o->x, ap);
    va_end(ap);
    return harness_op_resume(o);
}

enum agape_step harness_op_answer_text(struct harness_op *o, int status, const char *body, ...)
{
    va_list ap;
    harness_set_answer(&o->x, status, body, strlen(body));
    va_start(ap, body);
    harness_add_headersv(&o->x, ap);
    va_end(ap);
    return harness_op_resume(o);
}

enum agape_step harness_op_reanswer_text(struct harness_op *o, int status, const char *body, ...)
{
    va_list ap;
    harness_clear_headers(&o->x);
    harness_set_answer(&o->x, status, body, strlen(body));
    va_start(ap, body);
    harness_add_headersv(&o->x, ap);
    va_end(ap);
    return harness_op_resume(o);
}

void harness_op_end(struct harness_op *o)
{
    host_call_fini(&o->hc);
    client_xfer_reset(&o->x);
}

const char *harness_req_header(const struct client_xfer *x, const char *name)
{
    for (int i = 0; i < x->n_req_headers; i++) {
        if (strcasecmp(x->req_headers[i].name, name) == 0) {
            return x->req_headers[i].value;
        }
    }
    return NULL;
}

const char *harness_res_str(const struct harness_op *o, const char *key)
{
    return json_string_value(json_object_get(o->hc.result, key));
}

char *harness_fixture(const char *dir, const char *name, size_t *len)
{
    char path[1024];
    int n = snprintf(path, sizeof(path), "%s/%s/%s", AGAPE_FIXTURES, dir, name);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        fail_msg("fixture path too long: %s/%s", dir, name);
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fail_msg("cannot open %s", path);
    }
    struct agape_buf b;
    buf_init(&b, 0);
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_add(&b, chunk, got);
    }
    fclose(f);
    assert_int_equal(b.error, AGAPE_OK);
    if (len != NULL) {
        *len = b.len;
    }
    return buf_take(&b);
}

void harness_mock_start(struct harness_mock *m)
{
    char bin[1024], pf[128];
    memset(m, 0, sizeof(*m));
    snprintf(bin, sizeof(bin), "%s/../mockprov", AGAPE_PLUGIN_DIR);
    snprintf(m->dir, sizeof(m->dir), "/tmp/agape-obs-XXXXXX");
    assert_non_null(mkdtemp(m->dir));
    snprintf(pf, sizeof(pf), "%s/port", m->dir);
    m->pid = fork();
    assert_true(m->pid >= 0);
    if (m->pid == 0) {
        /* A failed assertion longjmps past harness_mock_stop: the emulator must not
         * outlive us. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(bin, bin, "--port", "0", "--port-file", pf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && m->port == 0; i++) {
        FILE *f = fopen(pf, "r");
        char line[16] = "";
        if (f != NULL) {
            if (fgets(line, sizeof(line), f) != NULL) {
                m->port = (int)strtol(line, NULL, 10);
            }
            fclose(f);
        }
        if (m->port == 0) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    if (m->port <= 0) {
        fail_msg("%s did not start", bin);
    }
    unlink(pf);
    snprintf(m->url, sizeof(m->url), "http://127.0.0.1:%d", m->port);
    assert_int_equal(client_create(NULL, &m->client), AGAPE_OK);
}

void harness_mock_stop(struct harness_mock *m)
{
    int status = 0;
    client_destroy(m->client);
    kill(m->pid, SIGTERM);
    waitpid(m->pid, &status, 0);
    rmdir(m->dir);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

/* The client's completion callback runs on its thread: wake the test thread. */
static void mock_done(struct client_xfer *x, void *arg)
{
    struct waiter *w = arg;
    (void)x;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void harness_mock_send(struct harness_mock *m, struct client_xfer *x)
{
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    x->done = mock_done;
    x->arg = &w;
    client_submit(m->client, x, 0);
    pthread_mutex_lock(&w.mu);
    while (!w.done) {
        pthread_cond_wait(&w.cv, &w.mu);
    }
    pthread_mutex_unlock(&w.mu);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    if (x->result != CLIENT_DONE) {
        fail_msg("%s: no answer (%s)", x->url, x->err);
    }
}

enum agape_step harness_mock_run(struct harness_mock *m, struct host_call *hc, agape_step_fn fn,
                                 enum agape_step st)
{
    while (st == AGAPE_STEP_SEND) {
        harness_mock_send(m, hc->xfer);
        host_call_answer(hc);
        st = host_call_step(hc, fn);
    }
    return st;
}

json_t *harness_mock_state(struct harness_mock *m, const char *what)
{
    struct client_xfer x;
    char url[256];
    client_xfer_init(&x);
    snprintf(x.method, sizeof(x.method), "GET");
    snprintf(url, sizeof(url), "%s/_mock/state/%s", m->url, what);
    x.url = strdup(url);
    harness_mock_send(m, &x);
    assert_int_equal(x.status, 200);
    json_t *j = json_loadb(x.resp_body.data, x.resp_body.len, 0, NULL);
    assert_non_null(j);
    client_xfer_reset(&x);
    return j;
}
