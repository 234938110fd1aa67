/* test_plugin_newrelic — the newrelic plugin, byte for byte: hosts (US, EU,
 * base_url), headers, and the gzip bodies, inflated here with zlib and
 * compared with the expected JSON (PROVIDERS.md §8).
 *
 * The real build/plugins/newrelic.so is loaded with the real loader and
 * driven through the real host table with answers filled in by hand.
 *
 * test_against_mockprov runs the same plugin against build/mockprov (started
 * here on a free loopback port) through the real client, so that what the
 * plugin sends is what the emulator — and the provider it models — accepts. */
#include "buf.h"
#include "client.h"
#include "host.h"
#include "options.h"
#include "plugins.h"
#include "plugin_harness.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#define KEY "0123456789abcdef0123456789abcdefNRAL"

/* ---------------------------------------------------------------- */
/* Scaffolding                                                      */

static struct harness g;

HARNESS_FIXTURES(g, "newrelic")

static void provider_conf(json_t *conf)
{
    char err[AGAPE_ERR_SIZE];
    if (harness_provider_init(&g, "newrelic", conf, err, sizeof(err)) != AGAPE_OK) {
        fail_msg("init: %s", err);
    }
}

static int setup_default(void **state)
{
    (void)state;
    provider_conf(json_pack("{s:s, s:s, s:s}", "license_key", KEY, "account_id", "12345",
                            "environment", "prod"));
    return 0;
}

static enum agape_step start(struct harness_op *o, bool metrics, const char *input_json)
{
    if (metrics) {
        return harness_op_start(o, &g.prov, "send_metrics", g.pl->desc->monitoring->send_metrics,
                                input_json);
    }
    return harness_op_start(o, &g.prov, "report_error", g.pl->desc->monitoring->report_error,
                            input_json);
}

static enum agape_step answer(struct harness_op *o, int status, const char *body, const char *h1,
                              const char *v1)
{
    return harness_op_answer_text(o, status, body, h1, v1, NULL);
}

/* The request body inflated as gzip (RFC 1952 only: a zlib or raw stream is
 * refused); malloc'd, NUL-terminated. */
static char *gunzip(const struct client_xfer *x)
{
    assert_true(x->body_len > 18);
    assert_int_equal((unsigned char)x->body[0], 0x1f);
    assert_int_equal((unsigned char)x->body[1], 0x8b);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(inflateInit2(&zs, 16 + 15), Z_OK);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    zs.next_in = (Bytef *)x->body;
    zs.avail_in = (uInt)x->body_len;
    int rc;
    do {
        if (cap - len < 4096) {
            cap *= 2;
            out = realloc(out, cap);
        }
        zs.next_out = (Bytef *)out + len;
        zs.avail_out = (uInt)(cap - len - 1);
        rc = inflate(&zs, Z_NO_FLUSH);
        len = cap - 1 - zs.avail_out;
    } while (rc == Z_OK);
    assert_int_equal(rc, Z_STREAM_END);
    assert_int_equal(zs.avail_in, 0);
    inflateEnd(&zs);
    out[len] = '\0';
    return out;
}

static void expect_json_body(const struct harness_op *o, const char *expect)
{
    char *got = gunzip(&o->x);
    if (strcmp(got, expect) != 0) {
        fail_msg("inflated body\n  got    %s\n  wanted %s", got, expect);
    }
    free(got);
}

static void expect_headers(const struct harness_op *o)
{
    assert_string_equal(o->x.method, "POST");
    assert_int_equal(o->x.n_req_headers, 3);
    assert_string_equal(harness_req_header(&o->x, "Api-Key"), KEY);
    assert_string_equal(harness_req_header(&o->x, "Content-Encoding"), "gzip");
    assert_string_equal(harness_req_header(&o->x, "Content-Type"), "application/json");
    assert_null(harness_req_header(&o->x, "X-Insert-Key"));
}

static const char metrics_input[] =
    "{\"timestamp_ms\":1700000000000,\"interval_ms\":10000,"
    "\"attributes\":{\"host\":\"gw1\",\"app.name\":\"not ours\"},"
    "\"metrics\":[{\"name\":\"gw.requests\",\"type\":\"count\",\"value\":15,"
    "\"attributes\":{\"provider\":\"stripe\",\"ok\":true}},"
    "{\"name\":\"gw.queue\",\"value\":3.5},"
    "{\"name\":\"gw.latency\",\"type\":\"summary\",\"value\":{\"max\":1,\"min\":0.25,"
    "\"sum\":1.5,\"count\":3},\"interval_ms\":5000,\"timestamp_ms\":1700000001000}]}";

static const char metrics_expect[] =
    "[{\"common\":{\"timestamp\":1700000000000,\"interval.ms\":10000,"
    "\"attributes\":{\"app.name\":\"agape\",\"service.name\":\"agape\","
    "\"environment\":\"prod\",\"host\":\"gw1\"}},"
    "\"metrics\":[{\"name\":\"gw.requests\",\"type\":\"count\",\"value\":15,"
    "\"attributes\":{\"provider\":\"stripe\",\"ok\":true}},"
    "{\"name\":\"gw.queue\",\"type\":\"gauge\",\"value\":3.5},"
    "{\"name\":\"gw.latency\",\"type\":\"summary\",\"value\":{\"count\":3,\"sum\":1.5,"
    "\"min\":0.25,\"max\":1},\"timestamp\":1700000001000,\"interval.ms\":5000}]}]";

/* ---------------------------------------------------------------- */
/* Descriptor, init, hosts                                          */

static void test_descriptor(void **state)
{
    (void)state;
    const struct agape_plugin *d = g.pl->desc;
    assert_string_equal(d->name, "newrelic");
    assert_int_equal(d->kinds, AGAPE_KIND_MONITORING);
    assert_non_null(d->monitoring->report_error);
    assert_non_null(d->monitoring->send_metrics);
    static const char *const envs[][2] = {
        {"license_key", "NEW_RELIC_LICENSE_KEY"}, {"app_name", "NEW_RELIC_APP_NAME"},
        {"account_id", "NEW_RELIC_ACCOUNT_ID"},   {"region", "NEW_RELIC_REGION"},
        {"base_url", "NEW_RELIC_API_BASE"},       {"environment", "AGAPE_ENV"},
    };
    for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
        bool seen = false;
        for (const struct agape_option *o = d->options; o->name; o++) {
            if (strcmp(o->name, envs[i][0]) == 0) {
                seen = true;
                assert_string_equal(o->env, envs[i][1]);
                assert_int_equal(o->flags, i == 0 ? AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET : 0);
            }
        }
        assert_true(seen);
    }
}

static void expect_init_error(json_t *conf, const char *needle)
{
    char err[AGAPE_ERR_SIZE];
    assert_int_not_equal(harness_provider_init(&g, "newrelic", conf, err, sizeof(err)), AGAPE_OK);
    assert_null(g.prov.ctx);
    if (strstr(err, needle) == NULL) {
        fail_msg("init error \"%s\" lacks \"%s\"", err, needle);
    }
    assert_null(strstr(err, "abc def"));
    harness_provider_fini(&g);
}

static void test_init_errors(void **state)
{
    (void)state;
    expect_init_error(json_object(), "license_key is required (set NEW_RELIC_LICENSE_KEY)");
    expect_init_error(json_pack("{s:s}", "license_key", "abc def"), "license_key must be");
    expect_init_error(json_pack("{s:s, s:s}", "license_key", KEY, "region", "asia"),
                      "region must be us or eu (NEW_RELIC_REGION)");
    expect_init_error(json_pack("{s:s, s:s}", "license_key", KEY, "account_id", "12a"),
                      "account_id: expected an integer of at least 1");
    expect_init_error(json_pack("{s:s, s:i}", "license_key", KEY, "account_id", -3),
                      "account_id");
    expect_init_error(json_pack("{s:s, s:s}", "license_key", KEY, "base_url", "ftp://x"),
                      "base_url: expected an http:// or https:// URL");
    expect_init_error(json_pack("{s:s, s:s}", "license_key", KEY, "base_url", "https://"),
                      "base_url: expected an http:// or https:// URL with a host");
    expect_init_error(json_pack("{s:s, s:s}", "license_key", KEY, "send_default_pii", "x"),
                      "send_default_pii");
}

static void expect_hosts(json_t *conf, const char *metric_url, const char *event_url)
{
    provider_conf(conf);
    struct harness_op o;
    assert_int_equal(start(&o, true, metrics_input), AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, metric_url);
    expect_headers(&o);
    harness_op_end(&o);
    assert_int_equal(start(&o, false, "{\"message\":\"m\"}"), AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, event_url);
    expect_headers(&o);
    harness_op_end(&o);
    harness_provider_fini(&g);
}

static void test_hosts(void **state)
{
    (void)state;
    /* PROVIDERS.md §8, US by default. */
    expect_hosts(json_pack("{s:s, s:s}", "license_key", KEY, "account_id", "12345"),
                 "https://metric-api.newrelic.com/metric/v1",
                 "https://insights-collector.newrelic.com/v1/accounts/12345/events");
    expect_hosts(json_pack("{s:s, s:s, s:s}", "license_key", KEY, "account_id", "12345",
                           "region", "us"),
                 "https://metric-api.newrelic.com/metric/v1",
                 "https://insights-collector.newrelic.com/v1/accounts/12345/events");
    expect_hosts(json_pack("{s:s, s:i, s:s}", "license_key", KEY, "account_id", 12345,
                           "region", "EU"),
                 "https://metric-api.eu.newrelic.com/metric/v1",
                 "https://insights-collector.eu01.nr-data.net/v1/accounts/12345/events");
    /* One base for both paths (tests, proxies), whatever the region. */
    expect_hosts(json_pack("{s:s, s:s, s:s, s:s}", "license_key", KEY, "account_id", "7",
                           "region", "eu", "base_url", "http://127.0.0.1:9//"),
                 "http://127.0.0.1:9/metric/v1", "http://127.0.0.1:9/v1/accounts/7/events");
}

/* ---------------------------------------------------------------- */
/* send_metrics                                                     */

static void test_metrics_body(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(start(&o, true, metrics_input), AGAPE_STEP_SEND);
    expect_headers(&o);
    expect_json_body(&o, metrics_expect);
    assert_int_equal(answer(&o, 202, "{\"requestId\":\"f0e7bfff-001a-b000-0000-01682bcf4565\"}",
                            NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(json_string_value(json_object_get(o.hc.result, "requestId")),
                        "f0e7bfff-001a-b000-0000-01682bcf4565");
    harness_op_end(&o);

    /* No timestamp: now; no interval: none in common; gauge by default. */
    int64_t before = (int64_t)time(NULL) * 1000;
    assert_int_equal(start(&o, true, "{\"metrics\":[{\"name\":\"up\",\"value\":1}]}"),
                     AGAPE_STEP_SEND);
    char *body = gunzip(&o.x);
    json_t *doc = json_loads(body, 0, NULL);
    json_t *common = json_object_get(json_array_get(doc, 0), "common");
    json_int_t ts = json_integer_value(json_object_get(common, "timestamp"));
    /* time() reads a coarse clock that may lag the precise one by a tick */
    assert_true(ts >= before && ts <= (int64_t)time(NULL) * 1000 + 2000);
    assert_null(json_object_get(common, "interval.ms"));
    char *metrics = json_dumps(json_object_get(json_array_get(doc, 0), "metrics"), JSON_COMPACT);
    assert_string_equal(metrics, "[{\"name\":\"up\",\"type\":\"gauge\",\"value\":1}]");
    free(metrics);
    json_decref(doc);
    free(body);
    harness_op_end(&o);
}

static void test_metrics_app_name(void **state)
{
    (void)state;
    provider_conf(json_pack("{s:s, s:s}", "license_key", KEY, "app_name", "billing-gw"));
    struct harness_op o;
    assert_int_equal(start(&o, true, "{\"timestamp_ms\":5,\"metrics\":[{\"name\":\"n\","
                                     "\"type\":\"count\",\"value\":0,\"interval_ms\":1}]}"),
                     AGAPE_STEP_SEND);
    expect_json_body(&o, "[{\"common\":{\"timestamp\":5,\"attributes\":{\"app.name\":"
                         "\"billing-gw\",\"service.name\":\"billing-gw\"}},\"metrics\":"
                         "[{\"name\":\"n\",\"type\":\"count\",\"value\":0,\"interval.ms\":1}]}]");
    harness_op_end(&o);
    harness_provider_fini(&g);
}

static void test_metrics_rules(void **state)
{
    (void)state;
    static const struct {
        const char *input;
        const char *err;
    } bad[] = {
        {"{}", "metrics must be an array of 1 to"},
        {"{\"metrics\":[]}", "metrics must be an array of 1 to"},
        {"{\"metrics\":[{\"value\":1}]}", "metrics[0].name must be a string"},
        {"{\"metrics\":[{\"name\":\"a\",\"value\":1},{\"name\":\"b\",\"type\":\"histogram\","
         "\"value\":1}]}",
         "metrics[1].type must be gauge, count or summary"},
        {"{\"metrics\":[{\"name\":\"a\",\"value\":\"1\"}]}", "metrics[0].value must be a number"},
        {"{\"metrics\":[{\"name\":\"a\",\"type\":\"count\",\"value\":1}]}",
         "metrics[0]: a count needs interval_ms"},
        {"{\"metrics\":[{\"name\":\"a\",\"type\":\"summary\",\"value\":{\"count\":1,"
         "\"sum\":1,\"min\":1}, \"interval_ms\":1}]}",
         "metrics[0].value must be {\"count\", \"sum\", \"min\", \"max\"}"},
        {"{\"metrics\":[{\"name\":\"a\",\"value\":1,\"interval_ms\":0}]}",
         "metrics[0].interval_ms must be a positive integer"},
        {"{\"metrics\":[{\"name\":\"a\",\"value\":1,\"attributes\":{\"x\":{\"y\":1}}}]}",
         "metrics[0].attributes.x must be a string, a number or a boolean"},
        {"{\"metrics\":[{\"name\":\"a\",\"value\":1}],\"attributes\":[1]}",
         "attributes must be an object"},
        {"{\"metrics\":[{\"name\":\"a\",\"value\":1}],\"timestamp_ms\":\"now\"}",
         "timestamp_ms must be a positive integer"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        struct harness_op o;
        assert_int_equal(start(&o, true, bad[k].input), AGAPE_STEP_FAIL);
        assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
        assert_null(o.x.url);
        if (strstr(o.hc.pub.err, bad[k].err) == NULL) {
            fail_msg("%s: err \"%s\" lacks \"%s\"", bad[k].input, o.hc.pub.err, bad[k].err);
        }
        harness_op_end(&o);
    }
}

static void test_metrics_payload_limit(void **state)
{
    (void)state;
    /* 10000 metrics with 200 pseudo-random characters each do not compress
     * under 1 MB: refused before sending, with the reason. */
    size_t cap = 10000 * 260 + 64, len = 0;
    char *in = malloc(cap);
    uint64_t x = 88172645463325252ULL;
    len += (size_t)snprintf(in + len, cap - len, "{\"metrics\":[");
    for (int i = 0; i < 10000; i++) {
        len += (size_t)snprintf(in + len, cap - len, "%s{\"name\":\"", i ? "," : "");
        for (int c = 0; c < 200; c++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            in[len++] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_."[x % 64];
        }
        len += (size_t)snprintf(in + len, cap - len, "\",\"value\":%d}", i);
    }
    snprintf(in + len, cap - len, "]}");
    struct harness_op o;
    assert_int_equal(start(&o, true, in), AGAPE_STEP_FAIL);
    assert_non_null(strstr(o.hc.pub.err, "after gzip, over New Relic's 1000000"));
    harness_op_end(&o);
    free(in);
}

/* ---------------------------------------------------------------- */
/* report_error                                                     */

static void test_error_event(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(start(&o, false,
                           "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\","
                           "\"message\":\"refund failed for ana@example.com\","
                           "\"level\":\"warning\","
                           "\"exception\":{\"type\":\"ValueError\",\"value\":\"key sk_test_123\"},"
                           "\"tags\":{\"provider\":\"stripe\",\"bad key\":\"x\"},"
                           "\"user\":{\"id\":\"42\",\"email\":\"ana@example.com\"},"
                           "\"timestamp\":\"2024-01-01T00:00:01.500Z\"}"),
                     AGAPE_STEP_SEND);
    expect_headers(&o);
    expect_json_body(&o, "[{\"eventType\":\"AgapeError\",\"timestamp\":1704067201500,"
                         "\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\","
                         "\"level\":\"warning\",\"message\":\"refund failed for [Filtered]\","
                         "\"exception.type\":\"ValueError\",\"exception.value\":\"key "
                         "[Filtered]\",\"app.name\":\"agape\",\"service.name\":\"agape\","
                         "\"environment\":\"prod\",\"user.id\":\"42\","
                         "\"tags.provider\":\"stripe\"}]");
    assert_int_equal(answer(&o, 200, "{\"success\":true,\"uuid\":\"a1b2\"}", NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    char *res = json_dumps(o.hc.result, JSON_COMPACT);
    assert_string_equal(res, "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\","
                             "\"uuid\":\"a1b2\"}");
    free(res);
    harness_op_end(&o);

    /* An offset is converted; a long message is cut to 4096 bytes. */
    char big[6000];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char in[6200];
    snprintf(in, sizeof(in),
             "{\"message\":\"%s\",\"timestamp\":\"2024-01-01T02:00:00+02:00\"}", big);
    assert_int_equal(start(&o, false, in), AGAPE_STEP_SEND);
    char *body = gunzip(&o.x);
    json_t *doc = json_loads(body, 0, NULL);
    json_t *ev = json_array_get(doc, 0);
    assert_int_equal(json_integer_value(json_object_get(ev, "timestamp")), 1704067200000);
    assert_int_equal(strlen(json_string_value(json_object_get(ev, "message"))), 4096);
    assert_int_equal(strlen(json_string_value(json_object_get(ev, "event_id"))), 32);
    json_decref(doc);
    free(body);
    harness_op_end(&o);
}

static void test_error_pii(void **state)
{
    (void)state;
    provider_conf(json_pack("{s:s, s:s, s:b}", "license_key", KEY, "account_id", "1",
                            "send_default_pii", 1));
    struct harness_op o;
    assert_int_equal(start(&o, false, "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\","
                                      "\"message\":\"m\",\"timestamp\":\"2024-01-01T00:00:00Z\","
                                      "\"user\":{\"id\":7,\"email\":\"ana@example.com\","
                                      "\"ip_address\":\"10.0.0.1\",\"username\":\"ana\"}}"),
                     AGAPE_STEP_SEND);
    expect_json_body(&o, "[{\"eventType\":\"AgapeError\",\"timestamp\":1704067200000,"
                         "\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"level\":\"error\","
                         "\"message\":\"m\",\"app.name\":\"agape\",\"service.name\":\"agape\","
                         "\"user.id\":\"7\",\"user.username\":\"ana\","
                         "\"user.email\":\"ana@example.com\",\"user.ip_address\":\"10.0.0.1\"}]");
    harness_op_end(&o);
    harness_provider_fini(&g);
}

static void test_error_needs_account(void **state)
{
    (void)state;
    provider_conf(json_pack("{s:s}", "license_key", KEY));
    struct harness_op o;
    assert_int_equal(start(&o, false, "{\"message\":\"m\"}"), AGAPE_STEP_FAIL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_non_null(strstr(o.hc.pub.err, "set NEW_RELIC_ACCOUNT_ID"));
    harness_op_end(&o);
    /* Metrics still flow. */
    assert_int_equal(start(&o, true, metrics_input), AGAPE_STEP_SEND);
    harness_op_end(&o);
    /* The error input rules are Sentry's. */
    harness_provider_fini(&g);
    provider_conf(json_pack("{s:s, s:s}", "license_key", KEY, "account_id", "1"));
    assert_int_equal(start(&o, false, "{\"level\":\"loud\",\"message\":\"m\"}"), AGAPE_STEP_FAIL);
    assert_non_null(strstr(o.hc.pub.err, "level must be one of"));
    harness_op_end(&o);
    harness_provider_fini(&g);
}

/* ---------------------------------------------------------------- */
/* Answers                                                          */

static void test_answers(void **state)
{
    (void)state;
    static const struct {
        bool metrics;
        int status;
        const char *h;
        const char *v;
        enum agape_outcome outcome;
        int64_t retry_after_ms;
    } rows[] = {
        {true, 202, NULL, NULL, AGAPE_OUTCOME_OK, -1},
        {false, 200, NULL, NULL, AGAPE_OUTCOME_OK, -1},
        {false, 202, NULL, NULL, AGAPE_OUTCOME_OK, -1},
        {true, 400, NULL, NULL, AGAPE_OUTCOME_INVALID, -1},
        {false, 400, NULL, NULL, AGAPE_OUTCOME_INVALID, -1},
        {true, 413, NULL, NULL, AGAPE_OUTCOME_INVALID, -1},
        {true, 415, NULL, NULL, AGAPE_OUTCOME_INVALID, -1},
        {true, 403, NULL, NULL, AGAPE_OUTCOME_AUTH, -1},
        {false, 403, NULL, NULL, AGAPE_OUTCOME_AUTH, -1},
        {true, 429, "Retry-After", "10", AGAPE_OUTCOME_RATE_LIMITED, 10000},
        {false, 429, NULL, NULL, AGAPE_OUTCOME_RATE_LIMITED, -1},
        {true, 408, NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE, -1},
        {true, 500, NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE, -1},
        {false, 503, "Retry-After", "2", AGAPE_OUTCOME_UNAVAILABLE, 2000},
        {true, 302, NULL, NULL, AGAPE_OUTCOME_UNKNOWN, -1},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct harness_op o;
        assert_int_equal(start(&o, rows[i].metrics,
                               rows[i].metrics ? metrics_input : "{\"message\":\"m\"}"),
                         AGAPE_STEP_SEND);
        assert_int_equal(answer(&o, rows[i].status, "", rows[i].h, rows[i].v), AGAPE_STEP_DONE);
        if (o.hc.pub.outcome != rows[i].outcome ||
            o.hc.pub.retry_after_ms != rows[i].retry_after_ms) {
            fail_msg("row %zu (HTTP %d): outcome %d retry %lld", i, rows[i].status,
                     o.hc.pub.outcome, (long long)o.hc.pub.retry_after_ms);
        }
        if (rows[i].outcome != AGAPE_OUTCOME_OK) {
            assert_true(strlen(o.hc.pub.err) > 0);
            assert_null(strstr(o.hc.pub.err, KEY));
        } else if (!rows[i].metrics) {
            assert_int_equal(strlen(json_string_value(json_object_get(o.hc.result,
                                                                      "event_id"))),
                             32);
        }
        harness_op_end(&o);
    }
}

/* ---------------------------------------------------------------- */
/* Against the emulator: build/mockprov started here, the real       */
/* client (libcurl) sending what the plugin built.                  */

static void test_against_mockprov(void **state)
{
    (void)state;
    struct harness_mock m;
    struct harness_op o;
    harness_mock_start(&m);
    provider_conf(json_pack("{s:s, s:s, s:s, s:s}", "license_key", KEY, "account_id", "12345",
                            "environment", "prod", "base_url", m.url));

    enum agape_step st = start(&o, true, metrics_input);
    assert_int_equal(harness_mock_run(&m, &o.hc, o.fn, st), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_non_null(json_string_value(json_object_get(o.hc.result, "requestId")));
    harness_op_end(&o);
    /* The emulator inflated the gzip body: exactly the expected JSON. */
    json_t *rec = harness_mock_state(&m, "newrelic.metrics/1");
    json_t *want = json_loads(metrics_expect, 0, NULL);
    assert_true(json_equal(json_object_get(rec, "payload"), want));
    assert_string_equal(json_string_value(json_object_get(rec, "content_encoding")), "gzip");
    json_decref(want);
    json_decref(rec);

    st = start(&o, false, "{\"message\":\"card 4242424242424242 declined\","
                          "\"timestamp\":\"2024-01-01T00:00:00Z\"}");
    assert_int_equal(harness_mock_run(&m, &o.hc, o.fn, st), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_non_null(json_string_value(json_object_get(o.hc.result, "uuid")));
    const char *id = json_string_value(json_object_get(o.hc.result, "event_id"));
    rec = harness_mock_state(&m, "newrelic.events/1");
    assert_string_equal(json_string_value(json_object_get(rec, "account_id")), "12345");
    json_t *ev = json_array_get(json_object_get(rec, "payload"), 0);
    assert_string_equal(json_string_value(json_object_get(ev, "eventType")), "AgapeError");
    assert_string_equal(json_string_value(json_object_get(ev, "event_id")), id);
    assert_string_equal(json_string_value(json_object_get(ev, "message")),
                        "card [Filtered] declined");
    assert_int_equal(json_integer_value(json_object_get(ev, "timestamp")), 1704067200000);
    json_decref(rec);
    harness_op_end(&o);
    harness_provider_fini(&g);
    harness_mock_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_hosts),
        cmocka_unit_test_setup_teardown(test_metrics_body, setup_default, teardown_provider),
        cmocka_unit_test(test_metrics_app_name),
        cmocka_unit_test_setup_teardown(test_metrics_rules, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_metrics_payload_limit, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_error_event, setup_default, teardown_provider),
        cmocka_unit_test(test_error_pii),
        cmocka_unit_test(test_error_needs_account),
        cmocka_unit_test_setup_teardown(test_answers, setup_default, teardown_provider),
        cmocka_unit_test(test_against_mockprov),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
