/* mockprov shared state: one lock over a few JSON documents. A mock needs
 * correctness and readable state more than speed. */
#include "mock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOCK_MAX_RECORDS 200000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *records;  /* [request, ...] */
static json_t *faults;   /* "METHOD path" -> [fault, ...]; method "*" = any */
static json_t *idem;     /* "provider\nkey" -> stored answer */
static json_t *charges;  /* idempotency key -> count */
static json_t *buckets;  /* name -> provider state object */
static json_t *counters; /* name -> last id */
static long delay_ms;

void mock_state_init(void)
{
    records = json_array();
    faults = json_object();
    idem = json_object();
    charges = json_object();
    buckets = json_object();
    counters = json_object();
    delay_ms = 0;
}

void mock_state_free(void)
{
    json_decref(records);
    json_decref(faults);
    json_decref(idem);
    json_decref(charges);
    json_decref(buckets);
    json_decref(counters);
    records = faults = idem = charges = buckets = counters = NULL;
}

void mock_lock(void)
{
    pthread_mutex_lock(&mu);
}

void mock_unlock(void)
{
    pthread_mutex_unlock(&mu);
}

void mock_state_reset(void)
{
    mock_state_free();
    mock_state_init();
}

json_t *mock_bucket(const char *name)
{
    json_t *b = json_object_get(buckets, name);
    if (b == NULL) {
        b = json_object();
        json_object_set_new(buckets, name, b);
    }
    return b;
}

long mock_next_id(const char *counter)
{
    long n = (long)json_integer_value(json_object_get(counters, counter)) + 1;
    json_object_set_new(counters, counter, json_integer(n));
    return n;
}

void mock_count_charge(const char *idem_key)
{
    const char *k = idem_key ? idem_key : "";
    json_int_t n = json_integer_value(json_object_get(charges, k));
    json_object_set_new(charges, k, json_integer(n + 1));
}

json_t *mock_charges(void)
{
    return json_deep_copy(charges);
}

void mock_record(const char *method, const char *uri, json_t *headers, const char *body,
                 size_t body_len, const char *fault)
{
    if (json_array_size(records) >= MOCK_MAX_RECORDS) {
        return;
    }
    json_t *r = json_object();
    json_object_set_new(r, "method", json_string(method));
    json_object_set_new(r, "path", json_string(uri));
    json_object_set_new(r, "headers", headers ? json_deep_copy(headers) : json_object());
    json_t *b = body ? json_stringn(body, body_len) : NULL;
    if (body != NULL && b == NULL) {
        /* Not UTF-8 (a gzip envelope, say): keep the bytes as base64. */
        char *enc = mock_b64_encode((const unsigned char *)body, body_len);
        json_object_set_new(r, "body_b64", enc ? json_string(enc) : json_null());
        free(enc);
    }
    json_object_set_new(r, "body", b ? b : json_null());
    json_object_set_new(r, "time_ms", json_integer(mock_now_ms()));
    json_object_set_new(r, "fault", fault ? json_string(fault) : json_null());
    json_array_append_new(records, r);
}

static bool path_under(const char *path, const char *filter)
{
    size_t n = strlen(filter);
    return strncmp(path, filter, n) == 0 && (path[n] == '\0' || path[n] == '/' || path[n] == '?');
}

json_t *mock_requests(const char *path, const char *method)
{
    json_t *out = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(records, i, r) {
        const char *p = json_string_value(json_object_get(r, "path"));
        const char *m = json_string_value(json_object_get(r, "method"));
        if ((path == NULL || path_under(p, path)) &&
            (method == NULL || strcmp(method, m) == 0)) {
            json_array_append_new(out, json_deep_copy(r));
        }
    }
    return out;
}

static const char *const actions[] = {"hang", "reset_before_read", "close_after_read",
                                      "malformed", NULL};

static int fault_check(json_t *f, char *err, size_t errlen)
{
    if (!json_is_object(f)) {
        snprintf(err, errlen, "each fault must be an object");
        return -1;
    }
    json_t *action = json_object_get(f, "action");
    json_t *status = json_object_get(f, "status");
    json_t *delay = json_object_get(f, "delay_ms");
    json_t *times = json_object_get(f, "times");
    if (action != NULL) {
        bool known = false;
        for (int i = 0; json_is_string(action) && actions[i]; i++) {
            known = known || strcmp(actions[i], json_string_value(action)) == 0;
        }
        if (!known) {
            snprintf(err, errlen, "unknown action");
            return -1;
        }
    } else if (status == NULL && delay == NULL) {
        snprintf(err, errlen, "a fault needs action, status or delay_ms");
        return -1;
    }
    if ((status && (!json_is_integer(status) || json_integer_value(status) < 100 ||
                    json_integer_value(status) > 599)) ||
        (delay && (!json_is_integer(delay) || json_integer_value(delay) < 0)) ||
        (times && (!json_is_integer(times) || json_integer_value(times) < 1))) {
        snprintf(err, errlen, "status, delay_ms or times out of range");
        return -1;
    }
    json_t *body = json_object_get(f, "body");
    json_t *headers = json_object_get(f, "headers");
    if ((body && !json_is_string(body)) || (headers && !json_is_object(headers))) {
        snprintf(err, errlen, "body must be a string and headers an object");
        return -1;
    }
    return 0;
}

int mock_faults_add(json_t *spec, char *err, size_t errlen)
{
    const char *path = json_string_value(json_object_get(spec, "path"));
    const char *method = json_string_value(json_object_get(spec, "method"));
    json_t *list = json_object_get(spec, "faults");
    if (path == NULL || path[0] != '/' || !json_is_array(list)) {
        snprintf(err, errlen, "need {\"path\": \"/...\", \"method\": \"POST\", \"faults\": [...]}");
        return -1;
    }
    size_t i;
    json_t *f;
    json_array_foreach(list, i, f) {
        if (fault_check(f, err, errlen) != 0) {
            return -1;
        }
    }
    char key[1100];
    int n = snprintf(key, sizeof(key), "%s %s", method ? method : "*", path);
    if (n < 0 || (size_t)n >= sizeof(key)) {
        snprintf(err, errlen, "path too long");
        return -1;
    }
    json_t *queue = json_object_get(faults, key);
    if (queue == NULL) {
        queue = json_array();
        json_object_set_new(faults, key, queue);
    }
    json_array_foreach(list, i, f) {
        json_t *copy = json_deep_copy(f);
        if (json_object_get(copy, "times") == NULL) {
            json_object_set_new(copy, "times", json_integer(1));
        }
        json_array_append_new(queue, copy);
    }
    return 0;
}

static json_t *take_from(const char *method, const char *path)
{
    char key[1100];
    int n = snprintf(key, sizeof(key), "%s %s", method, path);
    if (n < 0 || (size_t)n >= sizeof(key)) {
        return NULL;
    }
    json_t *queue = json_object_get(faults, key);
    json_t *f = json_array_get(queue, 0);
    if (f == NULL) {
        return NULL;
    }
    json_t *copy = json_deep_copy(f);
    json_int_t left = json_integer_value(json_object_get(f, "times")) - 1;
    if (left > 0) {
        json_object_set_new(f, "times", json_integer(left));
    } else {
        json_array_remove(queue, 0);
    }
    return copy;
}

json_t *mock_fault_take(const char *method, const char *path)
{
    json_t *f = take_from(method, path);
    return f ? f : take_from("*", path);
}

static int idem_key(char *out, size_t len, const char *provider, const char *key)
{
    int n = snprintf(out, len, "%s\n%s", provider, key);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

json_t *mock_idem_get(const char *provider, const char *key)
{
    char k[512];
    if (idem_key(k, sizeof(k), provider, key) != 0) {
        return NULL;
    }
    return json_object_get(idem, k);
}

void mock_idem_put(const char *provider, const char *key, const char *path, const char *body,
                   const struct mock_resp *rs)
{
    char k[512];
    if (idem_key(k, sizeof(k), provider, key) != 0) {
        return;
    }
    json_t *s = json_object();
    json_object_set_new(s, "status", json_integer(rs->status));
    json_object_set_new(s, "body", json_string(rs->body ? rs->body : ""));
    json_object_set_new(s, "content_type", json_string(rs->content_type));
    json_object_set_new(s, "headers", rs->headers ? json_deep_copy(rs->headers) : json_object());
    json_object_set_new(s, "path", json_string(path));
    json_object_set_new(s, "request_body", json_string(body ? body : ""));
    json_object_set_new(idem, k, s);
}

long mock_delay_ms(void)
{
    return delay_ms;
}

void mock_set_delay_ms(long ms)
{
    delay_ms = ms;
}
