/* Unit tests of core/events.c (what POST /v1/events and POST /v1/errors
 * accept, and the outbox items they make) and of core/flush.c's pure parts
 * (the metrics snapshot and the send_metrics input with deltas). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "events.h"
#include "flush.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    if (v == NULL) {
        fail_msg("bad test JSON %s: %s", text, e.text);
    }
    return v;
}

static void assert_event_ok(const char *text)
{
    json_t *v = parse(text);
    struct events_problem p = {{0}, {0}};
    if (!events_check(v, "", &p)) {
        fail_msg("%s refused: %s (%s)", text, p.message, p.param);
    }
    json_decref(v);
}

/* Refused, naming `param`, with `words` in the message. */
static void assert_event_refused(const char *text, const char *prefix, const char *param,
                                 const char *words)
{
    json_t *v = parse(text);
    struct events_problem p = {{0}, {0}};
    if (events_check(v, prefix, &p)) {
        fail_msg("%s accepted", text);
    }
    if (strcmp(p.param, param) != 0 || strstr(p.message, words) == NULL) {
        fail_msg("%s: param '%s' message '%s'; expected '%s' and '%s'", text, p.param,
                 p.message, param, words);
    }
    json_decref(v);
}

static void test_event_shapes(void **state)
{
    (void)state;
    assert_event_ok("{\"name\":\"sign_up\"}");
    assert_event_ok("{\"name\":\"purchase\",\"user_id\":\"42\",\"client_id\":\"555.1\","
                    "\"timestamp_micros\":1700000000000000,\"params\":{\"value\":12.5,"
                    "\"currency\":\"USD\",\"coupon\":true,\"items\":[{\"item_id\":\"SKU1\","
                    "\"price\":3}]}}");
    assert_event_ok("{\"name\":\"ad_impression\",\"user_id\":42}");
    assert_event_ok("{\"category\":\"User\",\"action\":\"Registration\"}");
    assert_event_ok("{\"category\":\"User\",\"action\":\"Sign Up\",\"label\":\"web\","
                    "\"value\":1,\"user_id\":\"42\"}");
    /* 40 characters exactly; 25 params exactly. */
    assert_event_ok("{\"name\":\"a234567890123456789012345678901234567890\"}");
    json_t *ev = parse("{\"name\":\"many\",\"params\":{}}");
    json_t *params = json_object_get(ev, "params");
    for (int i = 0; i < EVENTS_PARAMS_MAX; i++) {
        char k[16];
        snprintf(k, sizeof(k), "p%d", i);
        json_object_set_new(params, k, json_integer(i));
    }
    struct events_problem p;
    assert_true(events_check(ev, "", &p));
    json_object_set_new(params, "one_more", json_integer(1));
    assert_false(events_check(ev, "events[7]", &p));
    assert_string_equal(p.param, "events[7].params");
    json_decref(ev);
}

static void test_event_refusals(void **state)
{
    (void)state;
    assert_event_refused("[]", "", "", "must be an object");
    assert_event_refused("{}", "", "name", "is required");
    assert_event_refused("{\"name\":7}", "", "name", "must be a string");
    assert_event_refused("{\"name\":\"sign-up\"}", "events[3]", "events[3].name",
                         "letters, digits and underscores");
    assert_event_refused("{\"name\":\"1st\"}", "", "name", "start with a letter");
    assert_event_refused("{\"name\":\"\"}", "", "name", "1 to 40");
    assert_event_refused("{\"name\":\"a2345678901234567890123456789012345678901\"}", "", "name",
                         "1 to 40");
    assert_event_refused("{\"name\":\"GA_thing\"}", "", "name", "reserved");
    assert_event_refused("{\"name\":\"session_start\"}", "", "name", "reserved");
    assert_event_refused("{\"name\":\"x\",\"action\":\"y\"}", "", "name", "cannot be combined");
    assert_event_refused("{\"name\":\"x\",\"colour\":\"red\"}", "events[0]", "events[0].colour",
                         "not a known field");
    assert_event_refused("{\"name\":\"x\",\"user_id\":\"\"}", "", "user_id", "1 to 256");
    assert_event_refused("{\"name\":\"x\",\"user_id\":1.5}", "", "user_id", "1 to 256");
    assert_event_refused("{\"name\":\"x\",\"user_id\":\"ana@example.com\"}", "", "user_id",
                         "e-mail");
    assert_event_refused("{\"name\":\"x\",\"client_id\":42}", "", "client_id", "string");
    assert_event_refused("{\"name\":\"x\",\"params\":[]}", "", "params", "must be an object");
    assert_event_refused("{\"name\":\"x\",\"params\":{\"a b\":1}}", "", "params.a b",
                         "not a valid parameter name");
    assert_event_refused("{\"name\":\"x\",\"params\":{\"a\":null}}", "", "params.a",
                         "string, a number or a boolean");
    assert_event_refused("{\"name\":\"x\",\"params\":{\"a\":{\"b\":1}}}", "", "params.a",
                         "string, a number or a boolean");
    assert_event_refused("{\"name\":\"x\",\"params\":{\"items\":[{\"p\":{}}]}}", "",
                         "params.items[0].p", "string, a number or a boolean");
    assert_event_refused("{\"name\":\"x\",\"timestamp_micros\":0}", "", "timestamp_micros",
                         "positive integer");
    assert_event_refused("{\"category\":\"User\"}", "", "action", "is required");
    assert_event_refused("{\"action\":\"Go\"}", "", "category", "is required");
    assert_event_refused("{\"category\":\"User\",\"action\":\"9lives\"}", "", "action",
                         "start with a letter");
    assert_event_refused("{\"category\":\"User\",\"action\":\"Go\",\"value\":\"1\"}", "",
                         "value", "number");
    assert_event_refused("{\"category\":\"User\",\"action\":\"Go\",\"label\":3}", "", "label",
                         "string");

    /* 100 characters of text, counted as characters (é is two bytes). */
    char text[512];
    char *o = text + snprintf(text, sizeof(text), "{\"name\":\"x\",\"params\":{\"t\":\"");
    for (int i = 0; i < 100; i++) {
        *o++ = (char)0xc3;
        *o++ = (char)0xa9;
    }
    snprintf(o, sizeof(text) - (size_t)(o - text), "\"}}");
    assert_event_ok(text);
    o = text + strlen(text) - 3;
    snprintf(o, sizeof(text) - (size_t)(o - text), "x\"}}");
    assert_event_refused(text, "", "params.t", "at most 100 characters");
}

static void test_body(void **state)
{
    (void)state;
    struct events_problem p;
    json_t *one = parse("{\"name\":\"sign_up\",\"user_id\":\"42\"}");
    json_t *list = events_check_body(one, &p);
    assert_non_null(list);
    assert_int_equal(json_array_size(list), 1);
    assert_ptr_equal(json_array_get(list, 0), one);
    json_decref(list);
    json_decref(one);

    json_t *body = json_pack("{s:[]}", "events");
    assert_null(events_check_body(body, &p));
    assert_string_equal(p.param, "events");
    for (int i = 0; i < EVENTS_MAX_PER_REQUEST; i++) {
        json_array_append_new(json_object_get(body, "events"),
                              json_pack("{s:s}", "name", "tick"));
    }
    list = events_check_body(body, &p);
    assert_non_null(list);
    assert_int_equal(json_array_size(list), EVENTS_MAX_PER_REQUEST);
    json_decref(list);
    json_array_append_new(json_object_get(body, "events"), json_pack("{s:s}", "name", "tick"));
    assert_null(events_check_body(body, &p));
    assert_string_equal(p.param, "events");
    assert_non_null(strstr(p.message, "1 to 500"));
    json_array_remove(json_object_get(body, "events"), 500);
    json_array_set_new(json_object_get(body, "events"), 3, json_pack("{s:s}", "name", "x-y"));
    assert_null(events_check_body(body, &p));
    assert_string_equal(p.param, "events[3].name");
    json_decref(body);

    body = parse("{\"events\":[{\"name\":\"a\"}],\"name\":\"b\"}");
    assert_null(events_check_body(body, &p));
    assert_string_equal(p.param, "name");
    json_decref(body);
    body = parse("{\"events\":{\"name\":\"a\"}}");
    assert_null(events_check_body(body, &p));
    assert_string_equal(p.param, "events");
    json_decref(body);
}

static void test_items(void **state)
{
    (void)state;
    json_t *ev = parse("{\"category\":\"User\",\"action\":\"Registration\",\"user_id\":42}");
    json_t *item = events_item(ev, 1700000000123);
    char *text = json_dumps(item, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text, "{\"kind\":\"event\",\"category\":\"User\",\"action\":"
                              "\"Registration\",\"user_id\":42,\"timestamp_micros\":"
                              "1700000000123000,\"received_ms\":1700000000123}");
    free(text);
    json_object_set_new(item, "attempts", json_integer(2));
    json_object_set_new(item, "providers", json_pack("[s]", "ga"));
    json_object_set_new(item, "last_error", json_string("ga: unavailable"));
    json_t *back = events_plugin_event(item);
    json_object_set_new(ev, "timestamp_micros", json_integer(1700000000123000));
    assert_true(json_equal(back, ev));
    json_decref(back);

    /* A client's own time is kept. */
    json_t *ev2 = parse("{\"name\":\"x\",\"timestamp_micros\":5}");
    json_t *item2 = events_item(ev2, 1700000000123);
    assert_int_equal(json_integer_value(json_object_get(item2, "timestamp_micros")), 5);
    /* A rule's item (agape.track) loses its bookkeeping too. */
    json_t *rule = parse("{\"name\":\"purchase\",\"user_id\":\"42\",\"kind\":\"event\","
                         "\"created_at\":\"2026-01-01T00:00:00Z\",\"source\":\"stripe:evt_1\"}");
    back = events_plugin_event(rule);
    json_t *want = parse("{\"name\":\"purchase\",\"user_id\":\"42\"}");
    assert_true(json_equal(back, want));
    json_decref(want);
    json_decref(back);

    char key[600];
    events_client_key(item, key, sizeof(key));
    assert_memory_equal(key, "\x1f" "42", 4);
    json_t *both = parse("{\"client_id\":\"c.1\",\"user_id\":\"42\"}");
    events_client_key(both, key, sizeof(key));
    assert_string_equal(key, "c.1\x1f" "42");
    json_decref(both);
    events_client_key(rule, key, sizeof(key));
    assert_string_equal(key, "\x1f" "42"); /* "42" and 42 are one user */

    json_t *other = json_pack("[s]", "other");
    json_t *retry = events_retry_item(item, 3, other, false, "boom");
    json_decref(other);
    assert_int_equal(json_integer_value(json_object_get(retry, "attempts")), 3);
    assert_string_equal(json_string_value(json_array_get(json_object_get(retry, "providers"),
                                                         0)),
                        "other");
    assert_string_equal(json_string_value(json_object_get(retry, "last_error")), "boom");
    json_decref(retry);
    retry = events_retry_item(item, 3, NULL, true, NULL);
    assert_null(json_object_get(retry, "providers"));
    assert_string_equal(json_string_value(json_object_get(retry, "last_error")), "?");
    json_decref(retry);
    json_decref(rule);
    json_decref(item2);
    json_decref(ev2);
    json_decref(item);
    json_decref(ev);
}

static void assert_error_refused(const char *text, const char *param, const char *words)
{
    json_t *v = parse(text);
    struct events_problem p = {{0}, {0}};
    if (events_check_error(v, &p)) {
        fail_msg("%s accepted", text);
    }
    if (strcmp(p.param, param) != 0 || strstr(p.message, words) == NULL) {
        fail_msg("%s: param '%s' message '%s'; expected '%s' and '%s'", text, p.param,
                 p.message, param, words);
    }
    json_decref(v);
}

static void test_errors(void **state)
{
    (void)state;
    struct events_problem p;
    json_t *ok = parse("{\"message\":\"boom\",\"level\":\"warning\",\"exception\":{\"type\":"
                       "\"ValueError\",\"value\":\"bad\"},\"tags\":{\"plan\":\"pro\",\"n\":3,"
                       "\"beta\":true},\"user\":{\"id\":\"42\",\"email\":\"a@b.io\"}}");
    assert_true(events_check_error(ok, &p));
    json_t *exc_only = parse("{\"exception\":{\"type\":\"E\"}}");
    assert_true(events_check_error(exc_only, &p));
    json_decref(exc_only);

    assert_error_refused("{}", "message", "is required");
    assert_error_refused("{\"message\":\"\"}", "message", "1 to 8192");
    assert_error_refused("{\"message\":\"x\",\"level\":\"warn\"}", "level", "one of");
    assert_error_refused("{\"message\":\"x\",\"extra\":1}", "extra", "not a known field");
    assert_error_refused("{\"exception\":{\"value\":\"v\"}}", "exception.type", "required");
    assert_error_refused("{\"exception\":{\"type\":\"E\",\"stack\":[]}}", "exception.stack",
                         "not a known field");
    assert_error_refused("{\"message\":\"x\",\"tags\":{\"a b\":\"c\"}}", "tags.a b",
                         "not a valid tag name");
    assert_error_refused("{\"message\":\"x\",\"tags\":{\"a\":1.5}}", "tags.a", "integer");
    assert_error_refused("{\"message\":\"x\",\"user\":{\"password\":\"p\"}}", "user.password",
                         "not a known field");
    assert_error_refused("{\"message\":\"x\",\"user\":{\"id\":[]}}", "user.id", "1 to 256");

    json_t *in = events_error_input(ok, "0123456789abcdef0123456789abcdef", 1700000000123);
    assert_string_equal(json_string_value(json_object_get(in, "event_id")),
                        "0123456789abcdef0123456789abcdef");
    assert_string_equal(json_string_value(json_object_get(in, "level")), "warning");
    assert_string_equal(json_string_value(json_object_get(in, "timestamp")),
                        "2023-11-14T22:13:20.123Z");
    assert_true(json_equal(json_object_get(in, "user"), json_object_get(ok, "user")));
    json_t *item = events_error_item(in, "0123456789abcdef0123456789abcdef", 1, true);
    assert_string_equal(json_string_value(json_object_get(item, "kind")), "error");
    assert_true(json_is_true(json_object_get(item, "self")));
    assert_true(json_equal(json_object_get(item, "error"), in));
    json_decref(item);
    json_decref(in);
    json_t *plain = parse("{\"message\":\"m\"}");
    in = events_error_input(plain, "x", 0);
    assert_string_equal(json_string_value(json_object_get(in, "level")), "error");
    json_decref(in);
    json_decref(plain);
    json_decref(ok);

    char id[33];
    char id2[33];
    assert_int_equal(events_new_error_id(id), AGAPE_OK);
    assert_int_equal(events_new_error_id(id2), AGAPE_OK);
    assert_int_equal(strlen(id), 32);
    assert_int_equal(strspn(id, "0123456789abcdef"), 32);
    assert_string_not_equal(id, id2);
}

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(events_backoff_ms(1, 1000, 300000), 1000);
    assert_int_equal(events_backoff_ms(2, 1000, 300000), 2000);
    assert_int_equal(events_backoff_ms(4, 1000, 300000), 8000);
    assert_int_equal(events_backoff_ms(30, 1000, 300000), 300000);
}

static const json_t *metric(const json_t *input, const char *name, const char *attr,
                            const char *value)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(input, "metrics"), i, m) {
        const char *a = json_string_value(json_object_get(json_object_get(m, "attributes"),
                                                          attr ? attr : ""));
        if (strcmp(json_string_value(json_object_get(m, "name")), name) == 0 &&
            (attr == NULL || (a && strcmp(a, value) == 0))) {
            return m;
        }
    }
    return NULL;
}

static void test_flush_input(void **state)
{
    (void)state;
    metrics_init();
    metrics_http("/v1/payments", 201, 0.003);
    metrics_http("/v1/payments", 201, 0.02);
    metrics_http("/v1/events", 202, 0.0005);
    json_t *s1 = flush_snapshot();
    const json_t *c = json_object_get(s1, "agape_http_requests_total{route=\"/v1/payments\","
                                          "status=\"201\"}");
    assert_non_null(c);
    assert_int_equal(json_integer_value(json_object_get(c, "value")), 2);
    /* Gauges come from the exposition. */
    const json_t *bi = NULL;
    const char *id;
    json_t *e;
    json_object_foreach(s1, id, e) {
        if (strcmp(json_string_value(json_object_get(e, "name")), "agape_build_info") == 0) {
            bi = e;
        }
    }
    assert_non_null(bi);
    assert_string_equal(json_string_value(json_object_get(bi, "type")), "gauge");

    /* First flush: everything since the start. */
    json_t *in = flush_input(s1, NULL, 1000, 61000);
    assert_int_equal(json_integer_value(json_object_get(in, "timestamp_ms")), 1000);
    assert_int_equal(json_integer_value(json_object_get(in, "interval_ms")), 60000);
    const json_t *m = metric(in, "agape_http_requests_total", "route", "/v1/payments");
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "type")), "count");
    assert_int_equal(json_integer_value(json_object_get(m, "value")), 2);
    m = metric(in, "agape_http_request_duration_seconds", "route", "/v1/payments");
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "type")), "summary");
    const json_t *v = json_object_get(m, "value");
    assert_int_equal(json_integer_value(json_object_get(v, "count")), 2);
    double sum = json_real_value(json_object_get(v, "sum"));
    assert_true(sum > 0.0229 && sum < 0.0231);
    /* 0.003 is in (0.001, 0.005], 0.02 in (0.01, 0.025]: bounds of the buckets. */
    assert_true(json_real_value(json_object_get(v, "min")) == 0.001);
    /* max: the upper bound 0.025, never above the sum. */
    assert_true(json_real_value(json_object_get(v, "max")) == sum);
    m = metric(in, "agape_http_request_duration_seconds", "route", "/v1/events");
    v = json_object_get(m, "value");
    /* One observation: exact. */
    assert_true(json_real_value(json_object_get(v, "min")) ==
                json_real_value(json_object_get(v, "sum")));
    assert_true(json_real_value(json_object_get(v, "max")) ==
                json_real_value(json_object_get(v, "sum")));
    m = metric(in, "agape_build_info", NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(m, "type")), "gauge");
    assert_int_equal(json_integer_value(json_object_get(m, "timestamp_ms")), 61000);
    json_decref(in);

    /* Next flush: only what changed since s1; nothing observed → no summary. */
    metrics_http("/v1/payments", 201, 0.2);
    json_t *s2 = flush_snapshot();
    in = flush_input(s2, s1, 61000, 121000);
    m = metric(in, "agape_http_requests_total", "route", "/v1/payments");
    assert_int_equal(json_integer_value(json_object_get(m, "value")), 1);
    m = metric(in, "agape_http_requests_total", "route", "/v1/events");
    assert_int_equal(json_integer_value(json_object_get(m, "value")), 0);
    assert_null(metric(in, "agape_http_request_duration_seconds", "route", "/v1/events"));
    m = metric(in, "agape_http_request_duration_seconds", "route", "/v1/payments");
    v = json_object_get(m, "value");
    assert_int_equal(json_integer_value(json_object_get(v, "count")), 1);
    assert_true(json_real_value(json_object_get(v, "min")) > 0.1999);
    json_decref(in);
    json_decref(s2);
    json_decref(s1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_shapes),  cmocka_unit_test(test_event_refusals),
        cmocka_unit_test(test_body),          cmocka_unit_test(test_items),
        cmocka_unit_test(test_errors),        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_flush_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
