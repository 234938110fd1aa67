/* api_events — POST /v1/events (scope events) and POST /v1/errors (scope
 * errors). Both only validate and commit: the answer (202) leaves once every
 * item is durable in the outbox, and nothing on the request path waits for a
 * provider — delivery is the worker's (analytics.c for "event", monitor.c for
 * "error"). Idempotency-Key works as for payments (idem.c): the items, the
 * in-progress record (an insert, so two concurrent requests with one key
 * cannot both commit) and the stored answer go in ONE batch, so a replay
 * never queues the events twice. */
#include "api.h"
#include "events.h"

#include "log.h"
#include "script_rules.h"
#include "store_keys.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ev_work {
    struct idem idem;
};

static void work_free(void *p)
{
    free(p);
}

/* After the batch: the answer set before the commit leaves only if it is
 * durable. */
static void committed(struct httpd_req *r)
{
    struct ev_work *w = r->work;
    if (r->commit_rc == AGAPE_OK) {
        worker_notify();
        return;
    }
    free(r->resp);
    r->resp = NULL;
    r->resp_len = 0;
    if (r->commit_rc == AGAPE_EEXIST) {
        /* A concurrent request with the same key committed first. */
        if (!idem_check(r, &w->idem, NULL, 0)) {
            httpd_reply_error(r, 409, "in_progress", "Idempotency-Key",
                              "a request with this Idempotency-Key is still in progress");
        }
        return;
    }
    log_event(AGAPE_LOG_ERROR, &(struct log_fields){.request_id = r->id, .route = r->route,
                                                    .latency_ms = -1},
              "could not queue the request's items (rc %d)", r->commit_rc);
    httpd_reply_error(r, 503, "not_ready", NULL, "the request could not be stored; nothing was "
                                                 "queued, send it again");
}

/* Auth, body, idempotency. Returns the parsed body (new reference) or NULL
 * when already answered. */
static json_t *begin(struct httpd_req *r, uint32_t scope, const char *idem_scope)
{
    if (!httpd_auth(r, scope)) {
        return NULL;
    }
    json_t *in = httpd_body_json(r);
    if (in == NULL) {
        return NULL;
    }
    struct ev_work *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        json_decref(in);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return NULL;
    }
    r->work = w;
    r->free_work = work_free;
    char earlier[64];
    if (!idem_prepare(r, idem_scope, in, &w->idem) ||
        idem_check(r, &w->idem, earlier, sizeof(earlier))) {
        json_decref(in);
        return NULL;
    }
    /* earlier[0]: impossible here (the in-progress record and the answer
     * commit together); if an old record says so, the request runs again. */
    return in;
}

static void reply_problem(struct httpd_req *r, const struct events_problem *p)
{
    httpd_reply_error(r, 400, "invalid_request", p->param[0] ? p->param : NULL, "%s",
                      p->message);
}

static bool put_item(struct store_batch *b, json_t *item, int64_t due_ms)
{
    uint8_t key[16];
    char *text = item ? json_dumps(item, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text == NULL || script_rules_outbox_key(key, due_ms) != AGAPE_OK) {
        free(text);
        return false;
    }
    store_batch_put(b, STORE_OUTBOX, key, sizeof(key), text, strlen(text));
    free(text);
    return true;
}

/* The answer is set in r: add the idempotency records and commit. */
static void commit(struct httpd_req *r, struct store_batch *b, const char *resource)
{
    struct ev_work *w = r->work;
    idem_begin(r, &w->idem, b, resource);
    idem_finish(r, &w->idem, b, resource);
    httpd_commit(r, b, committed);
}

static void events_create(struct httpd_req *r)
{
    json_t *in = begin(r, APIKEYS_SCOPE_EVENTS, "/v1/events");
    if (in == NULL) {
        return;
    }
    struct events_problem p;
    json_t *events = events_check_body(in, &p);
    if (events == NULL) {
        reply_problem(r, &p);
        json_decref(in);
        return;
    }
    int64_t now = client_wall_ms();
    struct store_batch *b = store_batch_new();
    size_t i;
    json_t *ev;
    bool ok = true;
    json_array_foreach(events, i, ev) {
        json_t *item = events_item(ev, now);
        ok = put_item(b, item, now) && ok;
        json_decref(item);
    }
    size_t n = json_array_size(events);
    json_decref(events);
    json_decref(in);
    if (!ok) {
        store_batch_free(b);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory queueing the events");
        return;
    }
    httpd_reply_json(r, 202, json_pack("{s:I}", "accepted", (json_int_t)n));
    commit(r, b, "events");
}

/* Replace every configured secret in the strings of v (recursively) by
 * "[redacted]": a client quoting one of our credentials in an error report
 * must not make the gateway forward it. (The plugins also scrub what looks
 * like a key, an e-mail address or a card number; this covers our own
 * secrets whatever they look like.) */
static void redact_strings(json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            redact_strings(x);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            redact_strings(x);
        }
    } else if (json_is_string(v)) {
        struct agape_buf b;
        buf_init(&b, 0);
        buf_add(&b, json_string_value(v), json_string_length(v));
        size_t before = b.len;
        log_redact(&b);
        if (b.error == AGAPE_OK && b.data != NULL &&
            (b.len != before || memcmp(b.data, json_string_value(v), b.len) != 0)) {
            json_string_setn(v, b.data, b.len);
        }
        buf_fini(&b);
    }
}

static void errors_create(struct httpd_req *r)
{
    json_t *in = begin(r, APIKEYS_SCOPE_ERRORS, "/v1/errors");
    if (in == NULL) {
        return;
    }
    struct events_problem p;
    if (!events_check_error(in, &p)) {
        reply_problem(r, &p);
        json_decref(in);
        return;
    }
    char id[33];
    int64_t now = client_wall_ms();
    json_t *input = NULL;
    json_t *item = NULL;
    if (events_new_error_id(id) == AGAPE_OK) {
        input = events_error_input(in, id, now);
        redact_strings(input);
        item = input ? events_error_item(input, id, now, false) : NULL;
    }
    json_decref(in);
    json_decref(input);
    struct store_batch *b = store_batch_new();
    if (item == NULL || !put_item(b, item, now)) {
        json_decref(item);
        store_batch_free(b);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory queueing the error");
        return;
    }
    json_decref(item);
    httpd_reply_json(r, 202, json_pack("{s:s}", "id", id));
    commit(r, b, id);
}

bool api_events_route(struct httpd_req *r)
{
    if (strcmp(r->method, "POST") != 0) {
        return false;
    }
    if (strcmp(r->path, "/v1/events") == 0) {
        snprintf(r->route, sizeof(r->route), "/v1/events");
        events_create(r);
        return true;
    }
    if (strcmp(r->path, "/v1/errors") == 0) {
        snprintf(r->route, sizeof(r->route), "/v1/errors");
        errors_create(r);
        return true;
    }
    return false;
}
