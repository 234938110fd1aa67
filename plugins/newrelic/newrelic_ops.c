/* newrelic_ops — send_metrics (Metric API) and report_error (Event API).
 *
 * Both POST gzip(JSON) with
 *   Api-Key: <license_key>
 *   Content-Type: application/json
 *   Content-Encoding: gzip
 * (PROVIDERS.md §8: Api-Key is the documented header for both APIs; the
 * legacy X-Insert-Key is not used.) Bodies:
 *
 *   metrics: [{"common":{"timestamp":ms,"interval.ms"?:n,"attributes":{"app.name",
 *              "service.name","environment"?,…}},"metrics":[{"name","type","value",
 *              "timestamp"?,"interval.ms"?,"attributes"?},…]}]
 *   error:   [{"eventType":"AgapeError","timestamp":ms,"event_id","level","message"?,
 *              "exception.type"?,"exception.value"?,"app.name","service.name",
 *              "environment"?,"user.id"?,"user.username"?,"user.email"? (pii),
 *              "user.ip_address"? (pii),"tags.<key>"…}]
 *
 * Answers (both APIs; first matching row wins):
 *   2xx           → OK (metrics: result {"requestId"}; errors: {"event_id","uuid"?})
 *   429           → RATE_LIMITED (Retry-After)
 *   401, 403      → AUTH
 *   408           → UNAVAILABLE (New Relic: retry a timeout)
 *   other 4xx     → INVALID (400 structure, 413 too big, 415 encoding, …)
 *   5xx           → UNAVAILABLE
 *   anything else → UNKNOWN */
#include "newrelic.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void nr_err(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void nr_err(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
}

static bool is_number(enum agape_json_type t)
{
    return t == AGAPE_JSON_INT || t == AGAPE_JSON_REAL;
}

/* ------------------------------------------------------------------ */
/* The request                                                         */

/* gzip `json` and build the POST. */
static enum agape_step nr_post(struct agape_call *call, const char *url,
                               const struct agape_buf *json)
{
    const struct agape_host *h = call->host;
    const struct newrelic_ctx *ctx = call->ctx;
    struct agape_buf *gz = h->buf_new();
    enum agape_step st = AGAPE_STEP_FAIL;

    if (gz == NULL || h->gzip(gz, h->buf_data(json), h->buf_len(json)) != AGAPE_OK) {
        nr_err(call, "cannot compress the payload");
        goto out;
    }
    if (h->buf_len(gz) > NEWRELIC_PAYLOAD_MAX) {
        nr_err(call, "payload is %zu bytes after gzip, over New Relic's %d; send less per call",
               h->buf_len(gz), NEWRELIC_PAYLOAD_MAX);
        goto out;
    }
    if (h->req_start(call, "POST", url) != AGAPE_OK ||
        h->req_header(call, "Api-Key", ctx->license_key) != AGAPE_OK ||
        h->req_header(call, "Content-Encoding", "gzip") != AGAPE_OK ||
        h->req_body(call, "application/json", h->buf_data(gz), h->buf_len(gz)) != AGAPE_OK) {
        nr_err(call, "cannot build the request");
        goto out;
    }
    st = AGAPE_STEP_SEND;
out:
    h->buf_free(gz);
    return st;
}

/* Copy an attributes object (string, number or boolean values) into `dst`,
 * skipping keys already there (ours win). `what` names it in err. */
static int copy_attributes(struct agape_call *call, const struct agape_json *src,
                           struct agape_json *dst, const char *what)
{
    const struct agape_host *h = call->host;
    enum agape_json_type t = h->json_type(src);
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return 0;
    }
    if (t != AGAPE_JSON_OBJECT || h->json_size(src) > NEWRELIC_ATTRS_MAX) {
        nr_err(call, "%s must be an object of at most %d attributes", what, NEWRELIC_ATTRS_MAX);
        return -1;
    }
    for (size_t i = 0;; i++) {
        const struct agape_json *v = NULL;
        const char *k = h->json_key_at(src, i, &v);
        if (k == NULL) {
            break;
        }
        enum agape_json_type vt = h->json_type(v);
        if (k[0] == '\0' || strlen(k) > NEWRELIC_NAME_MAX) {
            nr_err(call, "%s: attribute names are 1 to %d bytes", what, NEWRELIC_NAME_MAX);
            return -1;
        }
        if (vt != AGAPE_JSON_STRING && vt != AGAPE_JSON_BOOL && !is_number(vt)) {
            nr_err(call, "%s.%.64s must be a string, a number or a boolean", what, k);
            return -1;
        }
        if (vt == AGAPE_JSON_STRING && strlen(h->json_str(v, "")) > NEWRELIC_VALUE_MAX) {
            nr_err(call, "%s.%.64s is over %d bytes", what, k, NEWRELIC_VALUE_MAX);
            return -1;
        }
        /* json_get would read "app.name" as a path: compare the keys. */
        bool present = false;
        for (size_t j = 0; !present; j++) {
            const char *dk = h->json_key_at(dst, j, NULL);
            if (dk == NULL) {
                break;
            }
            present = strcmp(dk, k) == 0;
        }
        if (present) {
            continue;
        }
        if (h->json_set_copy(dst, k, v) != AGAPE_OK) {
            nr_err(call, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* An optional positive integer at `path` of `obj`: 0 when absent, -1 bad. */
static int opt_positive(const struct agape_host *h, const struct agape_json *obj,
                        const char *path, int64_t *out)
{
    const struct agape_json *v = h->json_get(obj, path);
    enum agape_json_type t = h->json_type(v);
    *out = 0;
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return 0;
    }
    int64_t n = h->json_int(v, "", -1);
    if (t != AGAPE_JSON_INT || n <= 0) {
        return -1;
    }
    *out = n;
    return 0;
}

/* One input metric → one payload metric appended to `arr`. */
static int add_metric(struct agape_call *call, size_t i, const struct agape_json *m,
                      int64_t common_interval, struct agape_json *arr)
{
    const struct agape_host *h = call->host;
    char what[48];
    snprintf(what, sizeof(what), "metrics[%zu]", i);

    if (h->json_type(m) != AGAPE_JSON_OBJECT) {
        nr_err(call, "%s must be an object", what);
        return -1;
    }
    const char *name = h->json_str(m, "name");
    if (name == NULL || name[0] == '\0' || strlen(name) > NEWRELIC_NAME_MAX) {
        nr_err(call, "%s.name must be a string of 1 to %d bytes", what, NEWRELIC_NAME_MAX);
        return -1;
    }
    const char *type = "gauge";
    enum agape_json_type tt = h->json_type(h->json_get(m, "type"));
    if (tt != AGAPE_JSON_ABSENT && tt != AGAPE_JSON_NULL) {
        type = h->json_str(m, "type");
        if (type == NULL ||
            (strcmp(type, "gauge") != 0 && strcmp(type, "count") != 0 &&
             strcmp(type, "summary") != 0)) {
            nr_err(call, "%s.type must be gauge, count or summary", what);
            return -1;
        }
    }
    const struct agape_json *value = h->json_get(m, "value");
    bool summary = strcmp(type, "summary") == 0;
    if (summary) {
        static const char *const parts[] = {"count", "sum", "min", "max", NULL};
        bool ok = h->json_type(value) == AGAPE_JSON_OBJECT;
        for (int p = 0; ok && parts[p]; p++) {
            ok = is_number(h->json_type(h->json_get(value, parts[p])));
        }
        if (!ok) {
            nr_err(call, "%s.value must be {\"count\", \"sum\", \"min\", \"max\"} (numbers) "
                         "for a summary", what);
            return -1;
        }
    } else if (!is_number(h->json_type(value))) {
        nr_err(call, "%s.value must be a number", what);
        return -1;
    }
    int64_t interval = 0, ts = 0;
    if (opt_positive(h, m, "interval_ms", &interval) != 0) {
        nr_err(call, "%s.interval_ms must be a positive integer", what);
        return -1;
    }
    if (strcmp(type, "gauge") != 0 && interval == 0 && common_interval == 0) {
        nr_err(call, "%s: a %s needs interval_ms (on the metric or the call)", what, type);
        return -1;
    }
    if (opt_positive(h, m, "timestamp_ms", &ts) != 0) {
        nr_err(call, "%s.timestamp_ms must be a positive integer (ms since the epoch)", what);
        return -1;
    }

    struct agape_json *out = h->json_add_object(arr, NULL);
    int rc = out ? h->json_set_str(out, "name", name) : AGAPE_ENOMEM;
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(out, "type", type);
    }
    if (rc == AGAPE_OK && summary) {
        /* Only the four documented fields, in New Relic's order. */
        struct agape_json *sv = h->json_add_object(out, "value");
        static const char *const parts[] = {"count", "sum", "min", "max", NULL};
        for (int p = 0; rc == AGAPE_OK && parts[p]; p++) {
            rc = sv ? h->json_set_copy(sv, parts[p], h->json_get(value, parts[p]))
                    : AGAPE_ENOMEM;
        }
    } else if (rc == AGAPE_OK) {
        rc = h->json_set_copy(out, "value", value);
    }
    if (rc == AGAPE_OK && ts > 0) {
        rc = h->json_set_int(out, "timestamp", ts);
    }
    if (rc == AGAPE_OK && interval > 0) {
        rc = h->json_set_int(out, "interval.ms", interval);
    }
    if (rc != AGAPE_OK) {
        nr_err(call, "out of memory");
        return -1;
    }
    const struct agape_json *attrs = h->json_get(m, "attributes");
    if (h->json_type(attrs) == AGAPE_JSON_OBJECT && h->json_size(attrs) > 0) {
        struct agape_json *a = h->json_add_object(out, "attributes");
        if (a == NULL) {
            nr_err(call, "out of memory");
            return -1;
        }
        snprintf(what, sizeof(what), "metrics[%zu].attributes", i);
        return copy_attributes(call, attrs, a, what);
    }
    if (h->json_type(attrs) != AGAPE_JSON_ABSENT && h->json_type(attrs) != AGAPE_JSON_NULL &&
        h->json_type(attrs) != AGAPE_JSON_OBJECT) {
        nr_err(call, "%s.attributes must be an object", what);
        return -1;
    }
    return 0;
}

/* The common block's attributes: ours first, then the call's. */
static int common_attributes(struct agape_call *call, struct agape_json *attrs)
{
    const struct agape_host *h = call->host;
    const struct newrelic_ctx *ctx = call->ctx;
    int rc = h->json_set_str(attrs, "app.name", ctx->app_name);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(attrs, "service.name", ctx->app_name);
    }
    if (rc == AGAPE_OK && ctx->environment != NULL) {
        rc = h->json_set_str(attrs, "environment", ctx->environment);
    }
    if (rc != AGAPE_OK) {
        nr_err(call, "out of memory");
        return -1;
    }
    return 0;
}

static enum agape_step classify(struct agape_call *call, bool metrics);

enum agape_step newrelic_send_metrics(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct newrelic_ctx *ctx = call->ctx;
    const struct agape_json *in = call->input;
    struct agape_json *doc = NULL;
    struct agape_buf *json = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (call->step > 0) {
        return classify(call, true);
    }
    const struct agape_json *metrics = h->json_get(in, "metrics");
    size_t n = h->json_size(metrics);
    if (h->json_type(metrics) != AGAPE_JSON_ARRAY || n == 0 || n > NEWRELIC_METRICS_MAX) {
        nr_err(call, "metrics must be an array of 1 to %d metrics", NEWRELIC_METRICS_MAX);
        return AGAPE_STEP_FAIL;
    }
    int64_t ts = 0, interval = 0;
    if (opt_positive(h, in, "timestamp_ms", &ts) != 0) {
        nr_err(call, "timestamp_ms must be a positive integer (ms since the epoch)");
        return AGAPE_STEP_FAIL;
    }
    if (ts == 0) {
        ts = h->now_ms();
    }
    if (opt_positive(h, in, "interval_ms", &interval) != 0) {
        nr_err(call, "interval_ms must be a positive integer");
        return AGAPE_STEP_FAIL;
    }

    /* The payload is an array; build it inside a wrapper object. */
    doc = h->json_new_object();
    struct agape_json *payload = doc ? h->json_add_array(doc, "p") : NULL;
    struct agape_json *batch = payload ? h->json_add_object(payload, NULL) : NULL;
    struct agape_json *common = batch ? h->json_add_object(batch, "common") : NULL;
    int rc = common ? h->json_set_int(common, "timestamp", ts) : AGAPE_ENOMEM;
    if (rc == AGAPE_OK && interval > 0) {
        rc = h->json_set_int(common, "interval.ms", interval);
    }
    struct agape_json *attrs = rc == AGAPE_OK ? h->json_add_object(common, "attributes") : NULL;
    if (attrs == NULL) {
        nr_err(call, "out of memory");
        goto out;
    }
    if (common_attributes(call, attrs) != 0 ||
        copy_attributes(call, h->json_get(in, "attributes"), attrs, "attributes") != 0) {
        goto out;
    }
    struct agape_json *list = h->json_add_array(batch, "metrics");
    if (list == NULL) {
        nr_err(call, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (add_metric(call, i, h->json_at(metrics, i), interval, list) != 0) {
            goto out;
        }
    }
    json = h->buf_new();
    if (json == NULL || h->json_dump(payload, json) != AGAPE_OK) {
        nr_err(call, "out of memory");
        goto out;
    }
    char url[1200];
    snprintf(url, sizeof(url), "%s/metric/v1", ctx->metric_base);
    st = nr_post(call, url, json);
out:
    h->buf_free(json);
    h->json_free(doc);
    return st;
}

/* ------------------------------------------------------------------ */
/* report_error                                                        */

static int set_text(const struct agape_host *h, struct agape_json *ev, const char *key,
                    const char *val)
{
    size_t n = sentry_utf8_cut(val, strlen(val), NEWRELIC_VALUE_MAX);
    return h->json_set_strn(ev, key, val, n);
}

static int error_event(struct agape_call *call, const struct sentry_error *e,
                       struct agape_json *ev)
{
    const struct agape_host *h = call->host;
    const struct newrelic_ctx *ctx = call->ctx;
    char tmp[32];

    int rc = h->json_set_str(ev, "eventType", "AgapeError");
    if (rc == AGAPE_OK) {
        rc = h->json_set_int(ev, "timestamp", e->timestamp_ms);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(ev, "event_id", e->event_id);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(ev, "level", e->level);
    }
    if (rc == AGAPE_OK && e->message != NULL) {
        rc = h->json_set_str(ev, "message", h->buf_data(e->message));
    }
    if (rc == AGAPE_OK && e->exc_type != NULL) {
        rc = set_text(h, ev, "exception.type", e->exc_type);
    }
    if (rc == AGAPE_OK && e->exc_value != NULL) {
        rc = h->json_set_str(ev, "exception.value", h->buf_data(e->exc_value));
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(ev, "app.name", ctx->app_name);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(ev, "service.name", ctx->app_name);
    }
    if (rc == AGAPE_OK && ctx->environment != NULL) {
        rc = h->json_set_str(ev, "environment", ctx->environment);
    }
    static const char *const fields[] = {"id", "username", "email", "ip_address", NULL};
    for (int i = 0; rc == AGAPE_OK && e->user != NULL && fields[i] != NULL; i++) {
        if (i >= 2 && !ctx->send_default_pii) {
            break;
        }
        const char *v = sentry_user_field(h, e, fields[i], tmp);
        if (v != NULL) {
            char key[32];
            snprintf(key, sizeof(key), "user.%s", fields[i]);
            rc = set_text(h, ev, key, v);
        }
    }
    size_t skipped = 0;
    for (size_t i = 0; rc == AGAPE_OK && e->tags != NULL; i++) {
        const char *k;
        struct agape_buf *val;
        int r = sentry_error_tag(h, e, i, NEWRELIC_VALUE_MAX, &k, &val);
        if (r < 0) {
            rc = k == NULL ? AGAPE_OK : AGAPE_ENOMEM;
            break;
        }
        if (r > 0) {
            skipped++;
            continue;
        }
        char key[48];
        snprintf(key, sizeof(key), "tags.%s", k); /* k is at most 32 bytes */
        rc = h->json_set_str(ev, key, h->buf_data(val));
        h->buf_free(val);
    }
    if (skipped > 0) {
        h->log(call->provider, AGAPE_LOG_WARN,
               "event %s: %zu tag(s) dropped: keys must be 1-32 of [A-Za-z0-9_.:-] and values "
               "strings, integers or booleans",
               e->event_id, skipped);
    }
    return rc;
}

enum agape_step newrelic_report_error(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct newrelic_ctx *ctx = call->ctx;
    struct sentry_error e;
    struct agape_json *doc = NULL;
    struct agape_buf *json = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (call->step > 0) {
        return classify(call, false);
    }
    memset(&e, 0, sizeof(e));
    if (ctx->account_id == NULL) {
        nr_err(call, "account_id is not configured (set NEW_RELIC_ACCOUNT_ID): errors go to "
                     "New Relic's Event API, which needs it");
        goto out;
    }
    if (sentry_error_read(call, NEWRELIC_VALUE_MAX, &e) != 0) {
        goto out;
    }
    doc = h->json_new_object();
    struct agape_json *payload = doc ? h->json_add_array(doc, "p") : NULL;
    struct agape_json *ev = payload ? h->json_add_object(payload, NULL) : NULL;
    if (ev == NULL || error_event(call, &e, ev) != AGAPE_OK ||
        h->json_set_str(call->state, "event_id", e.event_id) != AGAPE_OK) {
        nr_err(call, "out of memory");
        goto out;
    }
    json = h->buf_new();
    if (json == NULL || h->json_dump(payload, json) != AGAPE_OK) {
        nr_err(call, "out of memory");
        goto out;
    }
    char url[1200];
    snprintf(url, sizeof(url), "%s/v1/accounts/%s/events", ctx->event_base, ctx->account_id);
    st = nr_post(call, url, json);
out:
    sentry_error_fini(h, &e);
    h->buf_free(json);
    h->json_free(doc);
    return st;
}

/* ------------------------------------------------------------------ */
/* The answer                                                          */

static enum agape_step classify(struct agape_call *call, bool metrics)
{
    const struct agape_host *h = call->host;
    int status = call->resp->status;
    const char *api = metrics ? "Metric" : "Event";

    call->retry_after_ms = -1;
    if (status >= 200 && status < 300) {
        struct agape_json *body = h->json_parse(call->resp->body, call->resp->body_len, NULL, 0);
        int rc = AGAPE_OK;
        call->outcome = AGAPE_OUTCOME_OK;
        if (metrics) {
            const char *id = h->json_str(body, "requestId");
            if (id != NULL) {
                rc = h->json_set_str(call->result, "requestId", id);
            }
        } else {
            const char *uuid = h->json_str(body, "uuid");
            rc = h->json_set_str(call->result, "event_id", h->json_str(call->state, "event_id"));
            if (rc == AGAPE_OK && uuid != NULL) {
                rc = h->json_set_str(call->result, "uuid", uuid);
            }
        }
        h->json_free(body);
        if (rc != AGAPE_OK) {
            nr_err(call, "out of memory");
            return AGAPE_STEP_FAIL;
        }
        return AGAPE_STEP_DONE;
    }
    if (status == 429) {
        call->outcome = AGAPE_OUTCOME_RATE_LIMITED;
        call->retry_after_ms = sentry_retry_after_ms(h->resp_header(call, "Retry-After"));
        nr_err(call, "New Relic %s API rate limit (HTTP 429)", api);
    } else if (status == 401 || status == 403) {
        call->outcome = AGAPE_OUTCOME_AUTH;
        nr_err(call, "New Relic refused the license key (HTTP %d); check NEW_RELIC_LICENSE_KEY "
                     "and NEW_RELIC_REGION", status);
    } else if (status == 408) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        nr_err(call, "New Relic %s API timed out reading the request (HTTP 408)", api);
    } else if (status >= 400 && status < 500) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        nr_err(call, "New Relic %s API refused the payload (HTTP %d%s)", api, status,
               status == 413 ? ": over 1 MB" : status == 400 ? ": invalid structure" : "");
    } else if (status >= 500 && status < 600) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        call->retry_after_ms = sentry_retry_after_ms(h->resp_header(call, "Retry-After"));
        nr_err(call, "New Relic %s API unavailable (HTTP %d)", api, status);
    } else {
        call->outcome = AGAPE_OUTCOME_UNKNOWN;
        nr_err(call, "New Relic %s API answered HTTP %d", api, status);
    }
    return AGAPE_STEP_DONE;
}
