/* New Relic's Metric and Event APIs, as PROVIDERS.md §8 describes them.
 *
 *   POST /metric/v1                      → 202 {"requestId"}
 *   POST /v1/accounts/<id>/events        → 200 {"success":true,"uuid"}
 *
 * Both need `Api-Key` (403 otherwise), `Content-Type: application/json`
 * (415), and take `Content-Encoding: gzip` (inflated here; `identity` or none
 * also accepted; anything else 415; a corrupt stream 400). The decoded JSON
 * is checked for the documented shape (400 otherwise) and recorded so tests
 * can assert it: bucket "newrelic.metrics" or "newrelic.events", under "1",
 * "2", …, as {"payload": <decoded JSON>, "content_encoding", "account_id"?}. */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define NR_INFLATED_MAX ((size_t)16 << 20)

static void nr_error(struct mock_resp *rs, int status, const char *message)
{
    mock_json(rs, status, json_pack("{s:s}", "error", message));
    rs->no_replay = true;
}

/* gzip (RFC 1952) → malloc'd bytes, or NULL on a corrupt or oversized stream. */
static char *gunzip(const char *in, size_t len, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 16 + 15) != Z_OK) {
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    int rc = Z_OK;
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    while (out != NULL && rc == Z_OK) {
        if (cap - n < 1024) {
            if (cap >= NR_INFLATED_MAX) {
                break;
            }
            char *bigger = realloc(out, cap * 2);
            if (bigger == NULL) {
                break;
            }
            out = bigger;
            cap *= 2;
        }
        zs.next_out = (Bytef *)out + n;
        zs.avail_out = (uInt)(cap - n - 1);
        rc = inflate(&zs, Z_NO_FLUSH);
        n = cap - 1 - zs.avail_out;
    }
    inflateEnd(&zs);
    if (out == NULL || rc != Z_STREAM_END || zs.avail_in != 0) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    *out_len = n;
    return out;
}

/* Api-Key, content type and encoding checked; the decoded JSON, or NULL
 * with rs set. */
static json_t *decode(const struct mock_req *rq, struct mock_resp *rs, const char **encoding)
{
    const char *key = mock_req_header(rq, "api-key");
    if (key == NULL || key[0] == '\0') {
        nr_error(rs, 403, "missing or invalid Api-Key");
        return NULL;
    }
    const char *ctype = mock_req_header(rq, "content-type");
    if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0) {
        nr_error(rs, 415, "Content-Type must be application/json");
        return NULL;
    }
    const char *enc = mock_req_header(rq, "content-encoding");
    *encoding = enc ? enc : "identity";
    char *plain = NULL;
    size_t plain_len = 0;
    json_t *doc = NULL;
    if (enc == NULL || strcasecmp(enc, "identity") == 0) {
        doc = json_loadb(rq->body, rq->body_len, 0, NULL);
    } else if (strcasecmp(enc, "gzip") == 0) {
        plain = gunzip(rq->body, rq->body_len, &plain_len);
        if (plain == NULL) {
            nr_error(rs, 400, "corrupt gzip payload");
            return NULL;
        }
        doc = json_loadb(plain, plain_len, 0, NULL);
        free(plain);
    } else {
        nr_error(rs, 415, "unsupported Content-Encoding");
        return NULL;
    }
    if (doc == NULL) {
        nr_error(rs, 400, "payload is not JSON");
    }
    return doc;
}

static bool number(const json_t *v)
{
    return json_is_integer(v) || json_is_real(v);
}

/* [{"common"?: {...}, "metrics": [{"name", "type"?, "value", "interval.ms"?}]}] */
static bool metrics_ok(const json_t *doc)
{
    size_t i, j;
    json_t *batch, *m;
    if (!json_is_array(doc) || json_array_size(doc) == 0) {
        return false;
    }
    json_array_foreach(doc, i, batch) {
        json_t *metrics = json_object_get(batch, "metrics");
        json_t *common = json_object_get(batch, "common");
        bool common_interval = json_is_integer(json_object_get(common, "interval.ms"));
        if (!json_is_array(metrics)) {
            return false;
        }
        json_array_foreach(metrics, j, m) {
            const char *name = json_string_value(json_object_get(m, "name"));
            const char *type = json_string_value(json_object_get(m, "type"));
            json_t *value = json_object_get(m, "value");
            bool interval = common_interval || json_is_integer(json_object_get(m, "interval.ms"));
            if (name == NULL || name[0] == '\0' || strlen(name) >= 255) {
                return false;
            }
            if (type == NULL || strcmp(type, "gauge") == 0) {
                if (!number(value)) {
                    return false;
                }
            } else if (strcmp(type, "count") == 0) {
                if (!number(value) || !interval) {
                    return false;
                }
            } else if (strcmp(type, "summary") == 0) {
                if (!interval || !number(json_object_get(value, "count")) ||
                    !number(json_object_get(value, "sum")) ||
                    !number(json_object_get(value, "min")) ||
                    !number(json_object_get(value, "max"))) {
                    return false;
                }
            } else {
                return false;
            }
        }
    }
    return true;
}

/* One flat object with an eventType: string or number values only. */
static bool event_ok(const json_t *ev)
{
    const char *type = json_string_value(json_object_get(ev, "eventType"));
    const char *k;
    json_t *v;
    if (type == NULL || type[0] == '\0') {
        return false;
    }
    json_object_foreach((json_t *)ev, k, v) {
        if (json_is_object(v) || json_is_array(v) ||
            (json_is_string(v) && strlen(json_string_value(v)) > 4096)) {
            return false;
        }
    }
    return true;
}

/* An array (or one object) of events. */
static bool events_ok(const json_t *doc)
{
    size_t i;
    json_t *ev;
    if (json_is_object(doc)) {
        return event_ok(doc);
    }
    if (!json_is_array(doc) || json_array_size(doc) == 0) {
        return false;
    }
    json_array_foreach(doc, i, ev) {
        if (!event_ok(ev)) {
            return false;
        }
    }
    return true;
}

static void uuid(char *out, size_t len, long n)
{
    snprintf(out, len, "00000000-0000-4000-8000-%012ld", n);
}

static void record(const char *bucket, const char *counter, json_t *doc, const char *encoding,
                   const char *account)
{
    char key[32];
    snprintf(key, sizeof(key), "%ld", mock_next_id(counter));
    json_t *rec = json_pack("{s:O,s:s}", "payload", doc, "content_encoding", encoding);
    if (account != NULL) {
        json_object_set_new(rec, "account_id", json_string(account));
    }
    json_object_set_new(mock_bucket(bucket), key, rec);
}

static void metric_v1(const struct mock_req *rq, struct mock_resp *rs)
{
    const char *encoding = NULL;
    json_t *doc = decode(rq, rs, &encoding);
    if (doc == NULL) {
        return;
    }
    if (!metrics_ok(doc)) {
        nr_error(rs, 400, "invalid metric payload structure");
    } else {
        char id[48];
        record("newrelic.metrics", "newrelic.metrics", doc, encoding, NULL);
        uuid(id, sizeof(id), mock_next_id("newrelic.request"));
        mock_json(rs, 202, json_pack("{s:s}", "requestId", id));
    }
    json_decref(doc);
}

static void events(const struct mock_req *rq, struct mock_resp *rs)
{
    const char *encoding = NULL;
    const char *account = rq->params[0];
    if (strspn(account, "0123456789") != strlen(account)) {
        nr_error(rs, 404, "unknown account");
        return;
    }
    json_t *doc = decode(rq, rs, &encoding);
    if (doc == NULL) {
        return;
    }
    if (!events_ok(doc)) {
        nr_error(rs, 400, "invalid event payload");
    } else {
        char id[48];
        record("newrelic.events", "newrelic.events", doc, encoding, account);
        uuid(id, sizeof(id), mock_next_id("newrelic.request"));
        mock_json(rs, 200, json_pack("{s:b,s:s}", "success", 1, "uuid", id));
    }
    json_decref(doc);
}

static const struct mock_route routes[] = {
    {"POST", "/metric/v1", metric_v1, NULL},
    {"POST", "/v1/accounts/*/events", events, NULL},
    {NULL, NULL, NULL, NULL},
};

const struct mock_provider mock_newrelic = {"newrelic", routes, NULL};
