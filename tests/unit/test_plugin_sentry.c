/* test_plugin_sentry — the sentry plugin, byte for byte: DSN parsing (the
 * sentry-python cases of PROVIDERS.md §10.7), X-Sentry-Auth, the envelope and
 * its item length (§7.4), scrubbing, and the answer table (§7.5).
 *
 * The real build/plugins/sentry.so is loaded with the real loader and driven
 * through the real host table with answers filled in by hand.
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

#include <cmocka.h>

#define DSN "https://pk@o1.ingest.sentry.io/42"

/* §10.7's constructed 145-byte event. */
#define EVENT145                                                                             \
    "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"timestamp\":\"2024-01-01T00:00:00Z\"," \
    "\"platform\":\"c\",\"level\":\"error\",\"message\":{\"formatted\":\"hello\"}}"

/* ---------------------------------------------------------------- */
/* Scaffolding                                                      */

static struct harness g;

HARNESS_FIXTURES(g, "sentry")

static void provider_dsn(const char *dsn)
{
    char err[AGAPE_ERR_SIZE];
    if (harness_provider_init(&g, "sentry", json_pack("{s:s}", "dsn", dsn), err, sizeof(err)) !=
        AGAPE_OK) {
        fail_msg("init with %s: %s", dsn, err);
    }
}

static int setup_default(void **state)
{
    (void)state;
    provider_dsn(DSN);
    return 0;
}

static enum agape_step report(struct harness_op *o, const char *input_json)
{
    return harness_op_start(o, &g.prov, "report_error", g.pl->desc->monitoring->report_error,
                            input_json);
}

/* The envelope's three lines (and the final newline), checked for shape:
 * copies into the out buffers (malloc'd). The item header's length must be
 * the exact byte length of the payload line. */
static void split_envelope(const struct harness_op *o, char **header, char **item, char **payload)
{
    const char *b = o->x.body;
    size_t len = o->x.body_len;
    assert_non_null(b);
    const char *nl1 = memchr(b, '\n', len);
    assert_non_null(nl1);
    const char *nl2 = memchr(nl1 + 1, '\n', len - (size_t)(nl1 + 1 - b));
    assert_non_null(nl2);
    *header = strndup(b, (size_t)(nl1 - b));
    *item = strndup(nl1 + 1, (size_t)(nl2 - nl1 - 1));
    const char *p = nl2 + 1;
    size_t rest = len - (size_t)(p - b);
    assert_true(rest >= 1);
    assert_int_equal(p[rest - 1], '\n'); /* the payload line ends the body */
    *payload = strndup(p, rest - 1);
    assert_null(memchr(*payload, '\n', rest - 1));

    json_t *ih = json_loads(*item, 0, NULL);
    assert_non_null(ih);
    assert_int_equal(json_integer_value(json_object_get(ih, "length")), rest - 1);
    json_decref(ih);
}

/* The event JSON the request carries (new reference). */
static json_t *sent_event(const struct harness_op *o)
{
    char *h, *i, *p;
    split_envelope(o, &h, &i, &p);
    json_t *ev = json_loads(p, 0, NULL);
    assert_non_null(ev);
    free(h);
    free(i);
    free(p);
    return ev;
}

/* ---------------------------------------------------------------- */
/* Descriptor and DSNs                                              */

static void test_descriptor(void **state)
{
    (void)state;
    const struct agape_plugin *d = g.pl->desc;
    assert_string_equal(d->name, "sentry");
    assert_int_equal(d->kinds, AGAPE_KIND_MONITORING);
    assert_non_null(d->monitoring->report_error);
    assert_null(d->monitoring->send_metrics); /* Sentry takes no metrics */
    assert_null(d->analytics);
    bool dsn = false, env = false;
    for (const struct agape_option *o = d->options; o->name; o++) {
        if (strcmp(o->name, "dsn") == 0) {
            dsn = true;
            assert_int_equal(o->flags, AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET);
            assert_string_equal(o->env, "SENTRY_DSN");
        }
        if (strcmp(o->name, "environment") == 0) {
            env = true;
            assert_string_equal(o->env, "AGAPE_ENV");
        }
    }
    assert_true(dsn && env);
}

static void expect_url(const char *dsn, const char *url, const char *auth)
{
    struct harness_op o;
    provider_dsn(dsn);
    assert_int_equal(report(&o, "{\"message\":\"m\"}"), AGAPE_STEP_SEND);
    if (strcmp(o.x.url, url) != 0) {
        fail_msg("DSN %s: URL %s, wanted %s", dsn, o.x.url, url);
    }
    if (auth != NULL) {
        assert_string_equal(harness_req_header(&o.x, "X-Sentry-Auth"), auth);
    }
    harness_op_end(&o);
    harness_provider_fini(&g);
}

static void test_dsn_valid(void **state)
{
    (void)state;
    /* §10.7, from sentry-python's tests. */
    expect_url("https://foobar@sentry.io/123", "https://sentry.io/api/123/envelope/", NULL);
    expect_url("https://foobar@sentry.io/bam/123", "https://sentry.io/bam/api/123/envelope/",
               NULL);
    expect_url("https://foobar@sentry.io/bam/baz/123",
               "https://sentry.io/bam/baz/api/123/envelope/", NULL);
    expect_url("https://public@sentry.example.com/1", "https://sentry.example.com/api/1/envelope/",
               "Sentry sentry_key=public, sentry_version=7, sentry_client=agape/1.0.0");
    /* urlsplit details sentry-python inherits. */
    expect_url("http://pk@127.0.0.1:9000/42", "http://127.0.0.1:9000/api/42/envelope/", NULL);
    expect_url("https://pk@Sentry.IO:443/7", "https://sentry.io/api/7/envelope/", NULL);
    expect_url("http://pk@localhost:80/7", "http://localhost/api/7/envelope/", NULL);
    expect_url("HTTPS://pk@sentry.io/7?x=1#f", "https://sentry.io/api/7/envelope/", NULL);
    expect_url("https://pk@sentry.io/0042", "https://sentry.io/api/42/envelope/", NULL);
    expect_url("http://pk@[::1]:9000/5", "http://[::1]:9000/api/5/envelope/", NULL);
    /* The deprecated secret is sent last, as Auth.to_header does; an empty one is not. */
    expect_url("https://pk:sk@sentry.io/3", "https://sentry.io/api/3/envelope/",
               "Sentry sentry_key=pk, sentry_version=7, sentry_client=agape/1.0.0, "
               "sentry_secret=sk");
    expect_url("https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42",
               "https://sentry.io/api/42/envelope/",
               "Sentry sentry_key=e12d836b15bb49d7bbf99e64295d995b, sentry_version=7, "
               "sentry_client=agape/1.0.0");
}

static void expect_bad_dsn(const char *dsn, const char *reason)
{
    char err[AGAPE_ERR_SIZE], want[AGAPE_ERR_SIZE];
    assert_int_equal(
        harness_provider_init(&g, "sentry", json_pack("{s:s}", "dsn", dsn), err, sizeof(err)),
        AGAPE_EINVAL);
    assert_null(g.prov.ctx);
    snprintf(want, sizeof(want), "dsn: %s (SENTRY_DSN)", reason);
    if (strcmp(err, want) != 0) {
        fail_msg("DSN %s: \"%s\", wanted \"%s\"", dsn, err, want);
    }
    /* The keys never reach the message. */
    assert_null(strstr(err, "foobar"));
    assert_null(strstr(err, "barbaz"));
    harness_provider_fini(&g);
}

static void test_dsn_invalid(void **state)
{
    (void)state;
    /* §10.7 BadDsn cases, with sentry-python's wording. */
    expect_bad_dsn("https://foobar@sentry.io", "Invalid project in DSN ('')");
    expect_bad_dsn("https://foobar@sentry.io/", "Invalid project in DSN ('')");
    expect_bad_dsn("https://foobar@sentry.io/asdf", "Invalid project in DSN ('asdf')");
    expect_bad_dsn("https://foobar@sentry.io/asdf/", "Invalid project in DSN ('asdf/')");
    expect_bad_dsn("https://foobar@sentry.io/asdf/123/", "Invalid project in DSN ('asdf/123/')");
    expect_bad_dsn("foo://barbaz@sentry.io", "Unsupported scheme 'foo'");
    expect_bad_dsn("https://foobar@", "Missing hostname");
    expect_bad_dsn("https://@sentry.io", "Missing public key");
    /* More of the same rules. */
    expect_bad_dsn("sentry.io/42", "Unsupported scheme ''");
    expect_bad_dsn("https://sentry.io/42", "Missing public key");
    expect_bad_dsn("https://:secret@sentry.io/42", "Missing public key");
    expect_bad_dsn("https://foobar@sentry.io:x/42", "Invalid port in DSN");
    expect_bad_dsn("https://foobar@sentry.io:99999/42", "Invalid port in DSN");
    expect_bad_dsn("https://foobar@sentry.io/-1", "Invalid project in DSN ('-1')");

    char err[AGAPE_ERR_SIZE];
    assert_int_equal(harness_provider_init(&g, "sentry",
                                           json_pack("{s:s}", "dsn", "https://foo bar@sentry.io/1"),
                                           err, sizeof(err)),
                     AGAPE_EINVAL);
    assert_non_null(strstr(err, "spaces or control characters"));
    harness_provider_fini(&g);
    assert_int_equal(harness_provider_init(&g, "sentry", json_object(), err, sizeof(err)),
                     AGAPE_EINVAL);
    assert_string_equal(err, "dsn is required (set SENTRY_DSN)");
    harness_provider_fini(&g);
    assert_int_equal(harness_provider_init(&g, "sentry",
                                           json_pack("{s:s, s:s}", "dsn", DSN, "release", "a/b"),
                                           err, sizeof(err)),
                     AGAPE_EINVAL);
    assert_non_null(strstr(err, "release"));
    harness_provider_fini(&g);
    assert_int_equal(
        harness_provider_init(&g, "sentry",
                              json_pack("{s:s, s:s}", "dsn", DSN, "send_default_pii", "perhaps"),
                              err, sizeof(err)),
        AGAPE_EINVAL);
    assert_non_null(strstr(err, "send_default_pii"));
    harness_provider_fini(&g);
}

/* ---------------------------------------------------------------- */
/* The request                                                      */

static void test_envelope_bytes(void **state)
{
    (void)state;
    struct harness_op o;
    int64_t before = (int64_t)time(NULL);
    assert_int_equal(report(&o, "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\","
                                "\"timestamp\":\"2024-01-01T00:00:00Z\",\"message\":\"hello\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "POST");
    assert_string_equal(o.x.url, "https://o1.ingest.sentry.io/api/42/envelope/");
    assert_int_equal(o.x.n_req_headers, 3);
    assert_string_equal(harness_req_header(&o.x, "X-Sentry-Auth"),
                        "Sentry sentry_key=pk, sentry_version=7, sentry_client=agape/1.0.0");
    assert_string_equal(harness_req_header(&o.x, "User-Agent"), "agape/1.0.0");
    assert_string_equal(harness_req_header(&o.x, "Content-Type"), "application/x-sentry-envelope");

    /* Line 1: sent_at is now, in RFC 3339 UTC with milliseconds. */
    char *h, *i, *p;
    split_envelope(&o, &h, &i, &p);
    const char *prefix = "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"sent_at\":\"";
    const char *suffix = "\",\"dsn\":\"https://pk@o1.ingest.sentry.io/42\"}";
    assert_int_equal(strlen(h), strlen(prefix) + 24 + strlen(suffix));
    assert_memory_equal(h, prefix, strlen(prefix));
    assert_string_equal(h + strlen(prefix) + 24, suffix);
    const char *sent = h + strlen(prefix);
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    char *end = strptime(sent, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_non_null(end);
    assert_true(end[0] == '.' && end[4] == 'Z');
    int64_t t = (int64_t)timegm(&tm);
    assert_true(t >= before && t <= (int64_t)time(NULL));
    /* Lines 2 and 3: §7.4's item header and §10.7's 145 bytes exactly. */
    assert_string_equal(
        i, "{\"type\":\"event\",\"length\":145,\"content_type\":\"application/json\"}");
    assert_int_equal(strlen(EVENT145), 145);
    assert_string_equal(p, EVENT145);
    /* The whole body, byte for byte. */
    char whole[1024];
    snprintf(whole, sizeof(whole), "%s\n%s\n%s\n", h, i, p);
    assert_int_equal(o.x.body_len, strlen(whole));
    assert_memory_equal(o.x.body, whole, o.x.body_len);
    free(h);
    free(i);
    free(p);

    assert_int_equal(
        harness_op_answer_text(&o, 200, "{\"id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}", NULL),
        AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_int_equal(o.hc.pub.retry_after_ms, -1);
    assert_string_equal(json_string_value(json_object_get(o.hc.result, "event_id")),
                        "9ec79c33ec9942ab8353589fcb2e04dc");
    harness_op_end(&o);
}

static void test_full_event(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE];
    assert_int_equal(harness_provider_init(&g, "sentry",
                                           json_pack("{s:s, s:s, s:s}", "dsn", DSN, "environment",
                                                     "staging", "release", "agape@0.1.0"),
                                           err, sizeof(err)),
                     AGAPE_OK);
    struct harness_op o;
    assert_int_equal(report(&o, "{\"event_id\":\"0123456789ABCDEF0123456789abcdef\","
                                "\"level\":\"warning\",\"message\":\"caf\xc3\xa9 \\n down\","
                                "\"exception\":{\"type\":\"ValueError\",\"value\":\"bad\"},"
                                "\"tags\":{\"provider\":\"stripe\",\"attempt\":2,\"retry\":true},"
                                "\"user\":{\"id\":42,\"username\":\"ana\"},"
                                "\"timestamp\":\"2024-05-06T07:08:09.123+02:00\","
                                "\"platform\":\"python\"}"),
                     AGAPE_STEP_SEND);
    char *h, *i, *p;
    split_envelope(&o, &h, &i, &p);
    const char *expect =
        "{\"event_id\":\"0123456789abcdef0123456789abcdef\","
        "\"timestamp\":\"2024-05-06T07:08:09.123+02:00\",\"platform\":\"python\","
        "\"level\":\"warning\",\"message\":{\"formatted\":\"caf\xc3\xa9 \\n down\"},"
        "\"exception\":{\"values\":[{\"type\":\"ValueError\",\"value\":\"bad\"}]},"
        "\"environment\":\"staging\",\"release\":\"agape@0.1.0\","
        "\"tags\":{\"provider\":\"stripe\",\"attempt\":\"2\",\"retry\":\"true\"},"
        "\"user\":{\"id\":\"42\",\"username\":\"ana\"}}";
    assert_string_equal(p, expect);
    char want_item[128];
    /* Bytes, not characters: é counts 2. */
    snprintf(want_item, sizeof(want_item),
             "{\"type\":\"event\",\"length\":%zu,\"content_type\":\"application/json\"}",
             strlen(expect));
    assert_string_equal(i, want_item);
    assert_non_null(strstr(h, "\"event_id\":\"0123456789abcdef0123456789abcdef\""));
    free(h);
    free(i);
    free(p);
    harness_op_end(&o);
    harness_provider_fini(&g);
}

static void test_input_rules(void **state)
{
    (void)state;
    struct harness_op o;
    /* No event_id: a random UUID4 in 32 lowercase hex; level error; now. */
    assert_int_equal(report(&o, "{\"exception\":{\"type\":\"Boom\"}}"), AGAPE_STEP_SEND);
    json_t *ev = sent_event(&o);
    const char *id = json_string_value(json_object_get(ev, "event_id"));
    assert_int_equal(strlen(id), 32);
    assert_int_equal(strspn(id, "0123456789abcdef"), 32);
    assert_int_equal(id[12], '4');
    assert_string_equal(json_string_value(json_object_get(ev, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(ev, "platform")), "c");
    assert_int_equal(strlen(json_string_value(json_object_get(ev, "timestamp"))), 24);
    assert_null(json_object_get(ev, "message"));
    char *exc = json_dumps(json_object_get(ev, "exception"), JSON_COMPACT);
    assert_string_equal(exc, "{\"values\":[{\"type\":\"Boom\"}]}");
    free(exc);
    json_decref(ev);
    harness_op_end(&o);

    static const struct {
        const char *input;
        const char *err;
    } bad[] = {
        {"{}", "message or exception is required"},
        {"{\"message\":\"m\",\"level\":\"critical\"}", "level must be one of"},
        {"{\"message\":\"m\",\"event_id\":\"xyz\"}", "event_id must be 32 hexadecimal"},
        {"{\"message\":\"m\",\"event_id\":\"9ec79c33-ec99-42ab-8353-589fcb2e04dc\"}",
         "event_id must be 32 hexadecimal"},
        {"{\"message\":5}", "message must be a string"},
        {"{\"exception\":{\"value\":\"v\"}}", "exception.type must be a string"},
        {"{\"exception\":\"boom\"}", "exception must be an object"},
        {"{\"message\":\"m\",\"timestamp\":\"yesterday\"}", "timestamp must be an RFC 3339"},
        {"{\"message\":\"m\",\"timestamp\":\"2024-02-30T00:00:00Z\"}",
         "timestamp must be an RFC 3339"},
        {"{\"message\":\"m\",\"tags\":[1]}", "tags must be an object"},
        {"{\"message\":\"m\",\"user\":\"42\"}", "user must be an object"},
        {"{\"message\":\"m\",\"platform\":\"cobol\"}", "platform must be"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        assert_int_equal(report(&o, bad[k].input), AGAPE_STEP_FAIL);
        assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
        assert_null(o.x.url);
        if (strstr(o.hc.pub.err, bad[k].err) == NULL) {
            fail_msg("%s: err \"%s\" lacks \"%s\"", bad[k].input, o.hc.pub.err, bad[k].err);
        }
        harness_op_end(&o);
    }

    /* Tags Sentry would refuse are dropped; the event still goes. */
    assert_int_equal(report(&o, "{\"message\":\"m\",\"tags\":{\"ok\":\"1\",\"has space\":\"x\","
                                "\"nested\":{\"a\":1},\"this_key_is_longer_than_32_bytes_\":\"x\","
                                "\"long\":\"" /* 250 x: cut to 200 */
                                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}"),
                     AGAPE_STEP_SEND);
    ev = sent_event(&o);
    json_t *tags = json_object_get(ev, "tags");
    assert_int_equal(json_object_size(tags), 2);
    assert_string_equal(json_string_value(json_object_get(tags, "ok")), "1");
    assert_int_equal(strlen(json_string_value(json_object_get(tags, "long"))), 200);
    json_decref(ev);
    harness_op_end(&o);
}

static void test_scrubbing(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(
        report(&o, "{\"message\":\"charge failed for ana@example.com with card "
                   "4242 4242 4242 4242 key sk_live_abc123 and Authorization: Bearer "
                   "eyJhbGciOi.abc-def_ghi\","
                   "\"exception\":{\"type\":\"StripeError\",\"value\":\"token whsec_xyz99 for "
                   "a.b+c@mail.example.co.uk, card 4000-0566-5566-5556\"},"
                   "\"tags\":{\"card\":\"4242424242424242\",\"session\":\"ses_0123abcd\","
                   "\"order\":\"123456789012\",\"trace\":\"12345678901234567890\"},"
                   "\"user\":{\"id\":\"42\",\"email\":\"ana@example.com\","
                   "\"ip_address\":\"10.0.0.1\"}}"),
        AGAPE_STEP_SEND);
    json_t *ev = sent_event(&o);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "message"),
                                                          "formatted")),
                        "charge failed for [Filtered] with card [Filtered] key [Filtered] and "
                        "Authorization: Bearer [Filtered]");
    json_t *exc = json_array_get(json_object_get(json_object_get(ev, "exception"), "values"), 0);
    assert_string_equal(json_string_value(json_object_get(exc, "type")), "StripeError");
    assert_string_equal(json_string_value(json_object_get(exc, "value")),
                        "token [Filtered] for [Filtered], card [Filtered]");
    json_t *tags = json_object_get(ev, "tags");
    assert_string_equal(json_string_value(json_object_get(tags, "card")), "[Filtered]");
    assert_string_equal(json_string_value(json_object_get(tags, "session")), "[Filtered]");
    /* 12 digits is not a card; 20 digits is not one either. */
    assert_string_equal(json_string_value(json_object_get(tags, "order")), "123456789012");
    assert_string_equal(json_string_value(json_object_get(tags, "trace")),
                        "12345678901234567890");
    /* Personal data of the user is dropped by default. */
    json_t *user = json_object_get(ev, "user");
    assert_int_equal(json_object_size(user), 1);
    assert_string_equal(json_string_value(json_object_get(user, "id")), "42");
    /* Nothing of it anywhere in the request. */
    assert_null(memmem(o.x.body, o.x.body_len, "ana@example.com", 15));
    assert_null(memmem(o.x.body, o.x.body_len, "sk_live_", 8));
    assert_null(memmem(o.x.body, o.x.body_len, "4242", 4));
    assert_null(memmem(o.x.body, o.x.body_len, "10.0.0.1", 8));
    json_decref(ev);
    harness_op_end(&o);

    /* More shapes. */
    static const struct {
        const char *in;
        const char *out;
    } rows[] = {
        {"rk_live_51H and agk_0123abcd", "[Filtered] and [Filtered]"},
        {"disk_live_x tasks processes_x", "disk_live_x tasks processes_x"},
        {"bearer short", "bearer short"},
        {"BEARER\tabcdefgh12==", "BEARER\t[Filtered]"},
        {"card 4242-4242-4242-4242.", "card [Filtered]."},
        {"ids 4242424242424242 12 34", "ids [Filtered] 34"},
        {"at 1700000000000 ms", "at [Filtered] ms"},
        {"mail root@localhost or x@y.c0m", "mail root@localhost or x@y.c0m"},
        {"<ana.maria@example.org>", "<[Filtered]>"},
        {"caf\xc3\xa9 ana@example.com \xe2\x82\xac", "caf\xc3\xa9 [Filtered] \xe2\x82\xac"},
    };
    for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
        json_t *in = json_pack("{s:s}", "message", rows[k].in);
        char *text = json_dumps(in, JSON_COMPACT);
        json_decref(in);
        assert_int_equal(report(&o, text), AGAPE_STEP_SEND);
        free(text);
        ev = sent_event(&o);
        const char *got =
            json_string_value(json_object_get(json_object_get(ev, "message"), "formatted"));
        if (strcmp(got, rows[k].out) != 0) {
            fail_msg("scrub \"%s\": \"%s\", wanted \"%s\"", rows[k].in, got, rows[k].out);
        }
        json_decref(ev);
        harness_op_end(&o);
    }
}

static void test_send_default_pii(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE];
    assert_int_equal(
        harness_provider_init(&g, "sentry",
                              json_pack("{s:s, s:s}", "dsn", DSN, "send_default_pii", "true"), err,
                              sizeof(err)),
        AGAPE_OK);
    struct harness_op o;
    assert_int_equal(report(&o, "{\"message\":\"write ana@example.com\",\"user\":{\"id\":\"42\","
                                "\"email\":\"ana@example.com\",\"ip_address\":\"10.0.0.1\"}}"),
                     AGAPE_STEP_SEND);
    json_t *ev = sent_event(&o);
    char *user = json_dumps(json_object_get(ev, "user"), JSON_COMPACT);
    assert_string_equal(user, "{\"id\":\"42\",\"email\":\"ana@example.com\","
                              "\"ip_address\":\"10.0.0.1\"}");
    free(user);
    /* Free text is still scrubbed. */
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "message"),
                                                          "formatted")),
                        "write [Filtered]");
    json_decref(ev);
    harness_op_end(&o);
    harness_provider_fini(&g);
}

/* ---------------------------------------------------------------- */
/* The answers                                                      */

static void answer_row(int status, const char *body, const char *h1, const char *v1,
                       const char *h2, const char *v2, enum agape_outcome outcome,
                       int64_t retry_after_ms, const char *err)
{
    struct harness_op o;
    assert_int_equal(report(&o, "{\"message\":\"m\",\"event_id\":"
                                "\"9ec79c33ec9942ab8353589fcb2e04dc\"}"),
                     AGAPE_STEP_SEND);
    enum agape_step st;
    if (h2 != NULL) {
        st = harness_op_answer_text(&o, status, body, h1, v1, h2, v2, NULL);
    } else if (h1 != NULL) {
        st = harness_op_answer_text(&o, status, body, h1, v1, NULL);
    } else {
        st = harness_op_answer_text(&o, status, body, NULL);
    }
    assert_int_equal(st, AGAPE_STEP_DONE);
    if (o.hc.pub.outcome != outcome || o.hc.pub.retry_after_ms != retry_after_ms) {
        fail_msg("HTTP %d (%s: %s): outcome %d retry %lld, wanted %d %lld", status,
                 h1 ? h1 : "-", v1 ? v1 : "-", o.hc.pub.outcome,
                 (long long)o.hc.pub.retry_after_ms, outcome, (long long)retry_after_ms);
    }
    if (err != NULL && strstr(o.hc.pub.err, err) == NULL) {
        fail_msg("HTTP %d: err \"%s\" lacks \"%s\"", status, o.hc.pub.err, err);
    }
    if (outcome == AGAPE_OUTCOME_OK) {
        assert_string_equal(json_string_value(json_object_get(o.hc.result, "event_id")),
                            "9ec79c33ec9942ab8353589fcb2e04dc");
    }
    assert_null(strstr(o.hc.pub.err, "pk@"));
    harness_op_end(&o);
}

static void test_answers(void **state)
{
    (void)state;
    const char *rl = "X-Sentry-Rate-Limits";
    answer_row(200, "{\"id\":\"x\"}", NULL, NULL, NULL, NULL, AGAPE_OUTCOME_OK, -1, NULL);
    /* A limit on a 200 is passed on: send nothing more for a minute. */
    answer_row(200, "{}", rl, "60:error:key", NULL, NULL, AGAPE_OUTCOME_OK, 60000, NULL);
    answer_row(200, "{}", rl, "60:transaction:key", NULL, NULL, AGAPE_OUTCOME_OK, -1, NULL);
    /* 429: the error category's limit. */
    answer_row(429, "", rl, "60:error;transaction:key", NULL, NULL,
               AGAPE_OUTCOME_RATE_LIMITED, 60000, "HTTP 429");
    answer_row(429, "", rl, "120:transaction:key, 30:error:organization:quota_exceeded", NULL,
               NULL, AGAPE_OUTCOME_RATE_LIMITED, 30000, NULL);
    answer_row(429, "", rl, "10::organization", NULL, NULL, AGAPE_OUTCOME_RATE_LIMITED, 10000,
               NULL);
    answer_row(429, "", rl, "2.5:default:key", NULL, NULL, AGAPE_OUTCOME_RATE_LIMITED, 2500,
               NULL);
    answer_row(429, "", "Retry-After", "5", rl, "60:error:key", AGAPE_OUTCOME_RATE_LIMITED,
               60000, NULL);
    answer_row(429, "", "Retry-After", "90", rl, "60:error:key", AGAPE_OUTCOME_RATE_LIMITED,
               90000, NULL);
    answer_row(429, "", "Retry-After", "7", NULL, NULL, AGAPE_OUTCOME_RATE_LIMITED, 7000, NULL);
    /* Neither says: 60 s (§7.5). */
    answer_row(429, "", NULL, NULL, NULL, NULL, AGAPE_OUTCOME_RATE_LIMITED, 60000, NULL);
    answer_row(429, "", rl, "120:transaction:key", NULL, NULL, AGAPE_OUTCOME_RATE_LIMITED,
               60000, NULL);
    answer_row(429, "", rl, "garbage, :error", NULL, NULL, AGAPE_OUTCOME_RATE_LIMITED, 60000,
               NULL);
    /* §10.5's 400 fixture: the reason from X-Sentry-Error. */
    answer_row(400,
               "{\"detail\":\"failed to read request body\",\"causes\":[\"failed to decode zlib "
               "payload\",\"corrupt deflate stream\"]}",
               "X-Sentry-Error", "failed to read request body", NULL, NULL,
               AGAPE_OUTCOME_INVALID, -1,
               "Sentry refused the event (HTTP 400): failed to read request body");
    answer_row(400, "{\"detail\":\"invalid event envelope\"}", NULL, NULL, NULL, NULL,
               AGAPE_OUTCOME_INVALID, -1, "invalid event envelope");
    answer_row(413, "", NULL, NULL, NULL, NULL, AGAPE_OUTCOME_INVALID, -1, "too large");
    answer_row(404, "", NULL, NULL, NULL, NULL, AGAPE_OUTCOME_INVALID, -1, "envelope endpoint");
    answer_row(401, "", NULL, NULL, NULL, NULL, AGAPE_OUTCOME_AUTH, -1, "SENTRY_DSN");
    answer_row(403, "", NULL, NULL, NULL, NULL, AGAPE_OUTCOME_AUTH, -1, NULL);
    answer_row(500, "", NULL, NULL, NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE, -1, NULL);
    answer_row(503, "", "Retry-After", "3", NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE, 3000, NULL);
    answer_row(301, "", NULL, NULL, NULL, NULL, AGAPE_OUTCOME_UNKNOWN, -1, NULL);
}

/* ---------------------------------------------------------------- */
/* Against the emulator: build/mockprov started here, the real       */
/* client (libcurl) sending what the plugin built.                  */

static void live_report(struct harness_mock *m, const char *dsn, const char *project)
{
    char buf[128];
    struct harness_op o;
    provider_dsn(dsn);
    enum agape_step st = report(&o, "{\"message\":\"paid by ana@example.com\",\"level\":\"info\","
                                    "\"tags\":{\"provider\":\"stripe\"},\"user\":{\"id\":\"42\","
                                    "\"email\":\"ana@example.com\"}}");
    assert_int_equal(harness_mock_run(m, &o.hc, g.pl->desc->monitoring->report_error, st),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    const char *id = json_string_value(json_object_get(o.hc.result, "event_id"));
    assert_non_null(id);

    /* The emulator parsed the envelope (item length included) and kept the event. */
    snprintf(buf, sizeof(buf), "sentry.events/%s", id);
    json_t *ev = harness_mock_state(m, buf);
    assert_string_equal(json_string_value(json_object_get(ev, "event_id")), id);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "message"),
                                                          "formatted")),
                        "paid by [Filtered]");
    assert_string_equal(json_string_value(json_object_get(ev, "level")), "info");
    json_t *user = json_pack("{s:s}", "id", "42");
    assert_true(json_equal(json_object_get(ev, "user"), user));
    json_decref(user);
    json_decref(ev);
    snprintf(buf, sizeof(buf), "sentry.envelopes/%s", id);
    json_t *env = harness_mock_state(m, buf);
    assert_string_equal(json_string_value(json_object_get(env, "project")), project);
    assert_string_equal(json_string_value(json_object_get(env, "sentry_key")), "pk");
    assert_string_equal(json_string_value(json_object_get(json_object_get(env, "header"), "dsn")),
                        dsn);
    json_decref(env);
    harness_op_end(&o);
    harness_provider_fini(&g);
}

static void test_against_mockprov(void **state)
{
    (void)state;
    struct harness_mock m;
    char dsn[128];
    harness_mock_start(&m);
    snprintf(dsn, sizeof(dsn), "http://pk@127.0.0.1:%d/42", m.port);
    live_report(&m, dsn, "42");
    snprintf(dsn, sizeof(dsn), "http://pk:sk@127.0.0.1:%d/bam/7", m.port);
    live_report(&m, dsn, "7");
    harness_mock_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_dsn_valid),
        cmocka_unit_test(test_dsn_invalid),
        cmocka_unit_test_setup_teardown(test_envelope_bytes, setup_default, teardown_provider),
        cmocka_unit_test(test_full_event),
        cmocka_unit_test_setup_teardown(test_input_rules, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_scrubbing, setup_default, teardown_provider),
        cmocka_unit_test(test_send_default_pii),
        cmocka_unit_test_setup_teardown(test_answers, setup_default, teardown_provider),
        cmocka_unit_test(test_against_mockprov),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
