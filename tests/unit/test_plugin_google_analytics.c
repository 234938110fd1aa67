/* test_plugin_google_analytics — the google_analytics plugin, byte for byte.
 *
 * The real build/plugins/google_analytics.so is loaded with the real loader,
 * given a context by its own init(), and driven through the real host table
 * (host_call_step / host_call_answer) with an answer filled in by hand.
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

#define MID "G-TEST123"
#define SECRET "s3cr3t_-AbC"
#define COLLECT "https://www.google-analytics.com/mp/collect?measurement_id=" MID \
                "&api_secret=" SECRET

/* The init refusal, spelled out here as a user reads it. */
#define UA_TEXT                                                                         \
    "GA_TRACKING_ID (Universal Analytics) was retired in 2023/2024 and accepts no data; " \
    "set GA_MEASUREMENT_ID and GA_API_SECRET for GA4"

/* ---------------------------------------------------------------- */
/* Scaffolding                                                      */

static struct harness g;

HARNESS_FIXTURES(g, "google_analytics")

static int setup_default(void **state)
{
    char err[AGAPE_ERR_SIZE];
    (void)state;
    return harness_provider_init(
               &g, "ga", json_pack("{s:s, s:s}", "measurement_id", MID, "api_secret", SECRET), err,
               sizeof(err)) == AGAPE_OK
               ? 0
               : -1;
}

static int setup_debug(void **state)
{
    char err[AGAPE_ERR_SIZE];
    (void)state;
    return harness_provider_init(&g, "ga",
                                 json_pack("{s:s, s:s, s:s, s:b}", "measurement_id", MID,
                                           "api_secret", SECRET, "base_url", "http://127.0.0.1:9/",
                                           "debug", 1),
                                 err, sizeof(err)) == AGAPE_OK
               ? 0
               : -1;
}

static enum agape_step track(struct harness_op *o, const char *input_json)
{
    return harness_op_start(o, &g.prov, "track_batch", g.pl->desc->analytics->track_batch,
                            input_json);
}

static void expect_body(struct harness_op *o, const char *expect)
{
    if (o->x.body == NULL || o->x.body_len != strlen(expect) ||
        memcmp(o->x.body, expect, o->x.body_len) != 0) {
        fail_msg("body\n  got    %.*s\n  wanted %s", (int)o->x.body_len,
                 o->x.body ? o->x.body : "(none)", expect);
    }
}

/* The batch is refused before any request, naming `needle`. */
static void expect_refused(const char *input, const char *needle)
{
    struct harness_op o;
    assert_int_equal(track(&o, input), AGAPE_STEP_FAIL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_null(o.x.url);
    if (strstr(o.hc.pub.err, needle) == NULL) {
        fail_msg("err \"%s\" lacks \"%s\" (input %s)", o.hc.pub.err, needle, input);
    }
    harness_op_end(&o);
}

/* ---------------------------------------------------------------- */
/* Descriptor and init                                              */

static void test_descriptor(void **state)
{
    (void)state;
    const struct agape_plugin *d = g.pl->desc;
    assert_string_equal(d->name, "google_analytics");
    assert_int_equal(d->kinds, AGAPE_KIND_ANALYTICS);
    assert_non_null(d->analytics->track_batch);
    assert_null(d->monitoring);
    assert_null(d->payment);
    int seen = 0;
    for (const struct agape_option *o = d->options; o->name; o++) {
        if (strcmp(o->name, "api_secret") == 0) {
            seen++;
            assert_true(o->flags & AGAPE_OPT_SECRET);
            assert_string_equal(o->env, "GA_API_SECRET");
        } else if (strcmp(o->name, "measurement_id") == 0) {
            seen++;
            assert_string_equal(o->env, "GA_MEASUREMENT_ID");
        } else if (strcmp(o->name, "tracking_id") == 0) {
            seen++;
            assert_string_equal(o->env, "GA_TRACKING_ID");
        } else if (strcmp(o->name, "base_url") == 0) {
            seen++;
            assert_string_equal(o->env, "GA_API_BASE");
        }
    }
    assert_int_equal(seen, 4);
}

static void expect_init_error(json_t *conf, const char *needle)
{
    char err[AGAPE_ERR_SIZE];
    assert_int_not_equal(harness_provider_init(&g, "ga", conf, err, sizeof(err)), AGAPE_OK);
    assert_null(g.prov.ctx);
    if (strstr(err, needle) == NULL) {
        fail_msg("init error \"%s\" lacks \"%s\"", err, needle);
    }
    harness_provider_fini(&g);
}

static void test_init_universal_analytics(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE];
    /* Only the retired UA id: refused with the whole explanation. */
    assert_int_equal(harness_provider_init(&g, "ga",
                                           json_pack("{s:s}", "tracking_id", "UA-12345-1"), err,
                                           sizeof(err)),
                     AGAPE_EINVAL);
    assert_string_equal(err, UA_TEXT);
    harness_provider_fini(&g);
    /* The same with an unset GA_MEASUREMENT_ID through env(): "". */
    assert_int_not_equal(
        harness_provider_init(&g, "ga",
                              json_pack("{s:s, s:s, s:s}", "tracking_id", "UA-1-1",
                                        "measurement_id", "", "api_secret", SECRET),
                              err, sizeof(err)),
        AGAPE_OK);
    assert_string_equal(err, UA_TEXT);
    harness_provider_fini(&g);
    /* A UA id pasted as the measurement id. */
    expect_init_error(json_pack("{s:s, s:s}", "measurement_id", "UA-12345-1", "api_secret",
                                SECRET),
                      "Universal Analytics id");
    /* Both: GA4 wins, init succeeds (a warning is logged). */
    assert_int_equal(harness_provider_init(&g, "ga",
                                           json_pack("{s:s, s:s, s:s}", "tracking_id", "UA-12345-1",
                                                     "measurement_id", MID, "api_secret", SECRET),
                                           err, sizeof(err)),
                     AGAPE_OK);
    struct harness_op o;
    assert_int_equal(track(&o, "{\"events\":[{\"name\":\"a\",\"client_id\":\"c\"}]}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, COLLECT);
    harness_op_end(&o);
    harness_provider_fini(&g);
}

static void test_init_errors(void **state)
{
    (void)state;
    expect_init_error(json_object(), "measurement_id is required (set GA_MEASUREMENT_ID)");
    expect_init_error(json_pack("{s:s}", "measurement_id", MID),
                      "api_secret is required (set GA_API_SECRET)");
    expect_init_error(json_pack("{s:s, s:s}", "measurement_id", "G-abc", "api_secret", SECRET),
                      "G-1AB2CD3EF4");
    char err[AGAPE_ERR_SIZE];
    assert_int_equal(harness_provider_init(&g, "ga",
                                           json_pack("{s:s, s:s}", "measurement_id", MID,
                                                     "api_secret", "se cret&x=1"),
                                           err, sizeof(err)),
                     AGAPE_EINVAL);
    assert_non_null(strstr(err, "api_secret must be"));
    assert_null(strstr(err, "se cret")); /* never echoed */
    harness_provider_fini(&g);
    expect_init_error(json_pack("{s:s, s:s, s:s}", "measurement_id", MID, "api_secret", SECRET,
                                "base_url", "ftp://x"),
                      "base_url: expected an http:// or https:// URL");
    expect_init_error(json_pack("{s:s, s:s, s:s}", "measurement_id", MID, "api_secret", SECRET,
                                "base_url", "https://x/?a=1"),
                      "base_url");
    expect_init_error(json_pack("{s:s, s:s, s:s}", "measurement_id", MID, "api_secret", SECRET,
                                "base_url", "https:///"),
                      "base_url: expected an http:// or https:// URL with a host");
    expect_init_error(json_pack("{s:s, s:s, s:s}", "measurement_id", MID, "api_secret", SECRET,
                                "debug", "maybe"),
                      "debug: expected true or false");
    expect_init_error(json_pack("{s:i, s:s}", "measurement_id", 5, "api_secret", SECRET),
                      "measurement_id: expected a string (GA_MEASUREMENT_ID)");
}

/* ---------------------------------------------------------------- */
/* The request                                                      */

static void test_request_bytes(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(track(&o, "{\"events\":[{\"name\":\"purchase\",\"user_id\":\"u1\","
                               "\"client_id\":\"123456.7654321\","
                               "\"timestamp_micros\":1700000000000000,"
                               "\"params\":{\"transaction_id\":\"T1\",\"value\":12.5,"
                               "\"currency\":\"USD\",\"session_id\":\"123\","
                               "\"engagement_time_msec\":100}}]}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "POST");
    assert_string_equal(o.x.url, COLLECT);
    assert_int_equal(o.x.n_req_headers, 1);
    assert_string_equal(harness_req_header(&o.x, "Content-Type"), "application/json");
    assert_null(o.x.userpwd);
    expect_body(&o, "{\"client_id\":\"123456.7654321\",\"user_id\":\"u1\","
                    "\"timestamp_micros\":1700000000000000,\"events\":[{\"name\":\"purchase\","
                    "\"params\":{\"transaction_id\":\"T1\",\"value\":12.5,\"currency\":\"USD\","
                    "\"session_id\":\"123\",\"engagement_time_msec\":100}}]}");

    /* GA's 204: accepted. */
    assert_int_equal(harness_op_answer_text(&o, 204, "", NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_int_equal(json_integer_value(json_object_get(o.hc.result, "accepted")), 1);
    harness_op_end(&o);
}

static void test_client_id_derivation(void **state)
{
    (void)state;
    struct harness_op o;
    /* agape. + the first 16 hex of sha256("42"); an integer user id is its text. */
    const char *expect = "{\"client_id\":\"agape.73475cb40a568e8d\",\"user_id\":\"42\","
                         "\"events\":[{\"name\":\"login\"},{\"name\":\"sign_up\","
                         "\"params\":{\"method\":\"Google\"}}]}";
    assert_int_equal(track(&o, "{\"events\":[{\"name\":\"login\",\"user_id\":\"42\"},"
                               "{\"name\":\"sign_up\",\"user_id\":\"42\","
                               "\"params\":{\"method\":\"Google\"}}]}"),
                     AGAPE_STEP_SEND);
    expect_body(&o, expect);
    harness_op_end(&o);
    assert_int_equal(track(&o, "{\"events\":[{\"name\":\"login\",\"user_id\":42},"
                               "{\"name\":\"sign_up\",\"user_id\":\"42\","
                               "\"params\":{\"method\":\"Google\"}}]}"),
                     AGAPE_STEP_SEND);
    expect_body(&o, expect);
    harness_op_end(&o);
    assert_int_equal(track(&o, "{\"events\":[{\"name\":\"x\",\"user_id\":\"usr_7f3a\"}]}"),
                     AGAPE_STEP_SEND);
    expect_body(&o, "{\"client_id\":\"agape.993347637e89d09d\",\"user_id\":\"usr_7f3a\","
                    "\"events\":[{\"name\":\"x\"}]}");
    harness_op_end(&o);
    /* Personal data never goes to GA as the user id. */
    expect_refused("{\"events\":[{\"name\":\"x\",\"user_id\":\"ana@example.com\"}]}",
                   "events[0].user_id looks like an e-mail address");

    /* One batch is one client. */
    expect_refused("{\"events\":[{\"name\":\"a\",\"user_id\":\"1\"},"
                   "{\"name\":\"b\",\"user_id\":\"2\"}]}",
                   "events[1] is for another client");
    expect_refused("{\"events\":[{\"name\":\"a\",\"client_id\":\"c1\",\"user_id\":\"1\"},"
                   "{\"name\":\"b\",\"client_id\":\"c1\"}]}",
                   "events[1] is for another client or user");
    expect_refused("{\"events\":[{\"name\":\"a\",\"client_id\":\"c\"},{\"name\":\"b\"}]}",
                   "events[1] needs client_id or user_id");
    expect_refused("{\"events\":[{\"name\":\"a\",\"client_id\":7}]}",
                   "events[0].client_id must be a string");
}

static void batch_of(char *buf, size_t cap, int n)
{
    size_t len = (size_t)snprintf(buf, cap, "{\"events\":[");
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(buf + len, cap - len, "%s{\"name\":\"e%d\",\"client_id\":\"c\"}",
                                i ? "," : "", i);
    }
    snprintf(buf + len, cap - len, "]}");
}

static void test_batch_boundaries(void **state)
{
    (void)state;
    char in[4096];
    struct harness_op o;

    batch_of(in, sizeof(in), 1);
    assert_int_equal(track(&o, in), AGAPE_STEP_SEND);
    expect_body(&o, "{\"client_id\":\"c\",\"events\":[{\"name\":\"e0\"}]}");
    harness_op_end(&o);

    batch_of(in, sizeof(in), 25);
    assert_int_equal(track(&o, in), AGAPE_STEP_SEND);
    json_t *body = json_loadb(o.x.body, o.x.body_len, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(body, "events")), 25);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(body, "events"), 24), "name")),
                        "e24");
    json_decref(body);
    assert_int_equal(harness_op_answer_text(&o, 204, "", NULL), AGAPE_STEP_DONE);
    assert_int_equal(json_integer_value(json_object_get(o.hc.result, "accepted")), 25);
    harness_op_end(&o);

    batch_of(in, sizeof(in), 26);
    expect_refused(in, "at most 25");
    expect_refused("{\"events\":[]}", "1 to 25 events");
    expect_refused("{}", "events must be an array");
    expect_refused("{\"events\":[3]}", "events[0] must be an object");
}

static void test_name_rules(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *why;
    } bad[] = {
        {"", "is empty"},
        {"1st_visit", "must start with a letter"},
        {"_private", "must start with a letter"},
        {"sign-up", "may hold only letters, digits and _"},
        {"sign up", "may hold only letters, digits and _"},
        {"caf\xc3\xa9", "may hold only letters, digits and _"},
        {"abcdefghijabcdefghijabcdefghijabcdefghijX", "is over 40 characters"},
        {"google_thing", "uses a reserved prefix"},
        {"ga_thing", "uses a reserved prefix"},
        {"GA_thing", "uses a reserved prefix"},
        {"firebase_x", "uses a reserved prefix"},
        {"session_start", "is reserved by Google Analytics"},
        {"first_visit", "is reserved by Google Analytics"},
        {"error", "is reserved by Google Analytics"},
    };
    char in[512], needle[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* The bad event is the second: the message names its index. */
        snprintf(in, sizeof(in),
                 "{\"events\":[{\"name\":\"ok\",\"client_id\":\"c\"},"
                 "{\"name\":\"%s\",\"client_id\":\"c\"}]}",
                 bad[i].name);
        snprintf(needle, sizeof(needle), "events[1].name \"%s\" %s",
                 strlen(bad[i].name) > 40 ? "abcdefghijabcdefghijabcdefghijabcdefghij..."
                                          : bad[i].name,
                 bad[i].why);
        expect_refused(in, needle);
    }
    /* Exactly 40, a capital, digits: fine. */
    struct harness_op o;
    assert_int_equal(track(&o, "{\"events\":[{\"name\":"
                               "\"abcdefghijabcdefghijabcdefghijabcdefghij\",\"client_id\":\"c\"},"
                               "{\"name\":\"Level9_up\",\"client_id\":\"c\"},"
                               "{\"name\":\"ad_impression\",\"client_id\":\"c\"}]}"),
                     AGAPE_STEP_SEND);
    harness_op_end(&o);

    /* Parameter names follow the same rules (no reserved event names). */
    expect_refused("{\"events\":[{\"name\":\"a\",\"client_id\":\"c\","
                   "\"params\":{\"ga_session\":1}}]}",
                   "events[0].params: parameter name \"ga_session\" uses a reserved prefix");
    expect_refused("{\"events\":[{\"name\":\"a\",\"client_id\":\"c\",\"params\":{\"a b\":1}}]}",
                   "parameter name \"a b\"");
    expect_refused("{\"events\":[{\"name\":\"a\",\"client_id\":\"c\",\"params\":{\"x\":null}}]}",
                   "events[0].params.x must be");
    expect_refused("{\"events\":[{\"name\":\"a\",\"client_id\":\"c\",\"params\":[1]}]}",
                   "events[0].params must be an object");
    char many[2048];
    size_t len = (size_t)snprintf(many, sizeof(many),
                                  "{\"events\":[{\"name\":\"a\",\"client_id\":\"c\",\"params\":{");
    for (int i = 0; i < 26; i++) {
        len += (size_t)snprintf(many + len, sizeof(many) - len, "%s\"p%d\":%d", i ? "," : "", i,
                                i);
    }
    snprintf(many + len, sizeof(many) - len, "}}]}");
    expect_refused(many, "events[0] has 26 params; GA4 takes at most 25");
}

static void test_seed_mapping(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(track(&o, "{\"events\":[{\"category\":\"User\",\"action\":\"Registration\","
                               "\"label\":\"web\",\"value\":1,\"user_id\":\"42\"}]}"),
                     AGAPE_STEP_SEND);
    expect_body(&o, "{\"client_id\":\"agape.73475cb40a568e8d\",\"user_id\":\"42\","
                    "\"events\":[{\"name\":\"registration\",\"params\":{\"event_category\":"
                    "\"User\",\"event_label\":\"web\",\"value\":1}}]}");
    harness_op_end(&o);

    /* One "_" per other character, multi-byte included; label and value are
     * optional; the event's own params follow and never replace the mapped ones. */
    assert_int_equal(track(&o, "{\"events\":[{\"category\":\"Shop\",\"action\":\"Add-to Cart!\","
                               "\"client_id\":\"c\",\"params\":{\"currency\":\"EUR\","
                               "\"event_category\":\"other\"}},"
                               "{\"category\":\"Shop\",\"action\":\"A\xc3\xb1" "adir\","
                               "\"value\":2.5,\"client_id\":\"c\"}]}"),
                     AGAPE_STEP_SEND);
    expect_body(&o, "{\"client_id\":\"c\",\"events\":[{\"name\":\"add_to_cart_\",\"params\":"
                    "{\"event_category\":\"Shop\",\"currency\":\"EUR\"}},{\"name\":\"a_adir\","
                    "\"params\":{\"event_category\":\"Shop\",\"value\":2.5}}]}");
    harness_op_end(&o);

    expect_refused("{\"events\":[{\"category\":\"Shop\",\"action\":\"1st purchase\","
                   "\"client_id\":\"c\"}]}",
                   "events[0].action \"1st purchase\" maps to \"1st_purchase\", which must "
                   "start with a letter");
    expect_refused("{\"events\":[{\"category\":\"S\",\"action\":\"Session Start\","
                   "\"client_id\":\"c\"}]}",
                   "maps to \"session_start\", which is reserved");
    expect_refused("{\"events\":[{\"action\":\"Registration\",\"client_id\":\"c\"}]}",
                   "events[0] needs name (GA4), or category and action");
    expect_refused("{\"events\":[{\"name\":\"x\",\"action\":\"y\",\"category\":\"z\","
                   "\"client_id\":\"c\"}]}",
                   "events[0] has both name (GA4) and action");
    expect_refused("{\"events\":[{\"category\":\"a\",\"action\":\"b\",\"value\":\"1\","
                   "\"client_id\":\"c\"}]}",
                   "events[0].value must be a number");
    expect_refused("{\"events\":[{\"category\":\"a\",\"action\":\"b\",\"label\":3,"
                   "\"client_id\":\"c\"}]}",
                   "events[0].label must be a string");
    expect_refused("{\"events\":[{\"category\":\"a\",\"action\":"
                   "\"abcdefghijabcdefghijabcdefghijabcdefghijX\",\"client_id\":\"c\"}]}",
                   "events[0].action maps to a name over 40 characters");
}

static void test_timestamps(void **state)
{
    (void)state;
    struct harness_op o;
    /* Different times: each event keeps its own. */
    assert_int_equal(track(&o, "{\"events\":[{\"name\":\"a\",\"client_id\":\"c\","
                               "\"timestamp_micros\":1700000000000000},"
                               "{\"name\":\"b\",\"client_id\":\"c\"},"
                               "{\"name\":\"c\",\"client_id\":\"c\","
                               "\"timestamp_micros\":1700000001000000}]}"),
                     AGAPE_STEP_SEND);
    expect_body(&o, "{\"client_id\":\"c\",\"events\":[{\"name\":\"a\",\"timestamp_micros\":"
                    "1700000000000000},{\"name\":\"b\"},{\"name\":\"c\",\"timestamp_micros\":"
                    "1700000001000000}]}");
    harness_op_end(&o);
    /* All the same: once, on the request. */
    assert_int_equal(track(&o, "{\"events\":[{\"name\":\"a\",\"client_id\":\"c\","
                               "\"timestamp_micros\":5},{\"name\":\"b\",\"client_id\":\"c\","
                               "\"timestamp_micros\":5}]}"),
                     AGAPE_STEP_SEND);
    expect_body(&o, "{\"client_id\":\"c\",\"timestamp_micros\":5,\"events\":[{\"name\":\"a\"},"
                    "{\"name\":\"b\"}]}");
    harness_op_end(&o);
    expect_refused("{\"events\":[{\"name\":\"a\",\"client_id\":\"c\",\"timestamp_micros\":"
                   "\"soon\"}]}",
                   "events[0].timestamp_micros must be a positive integer");
}

static void test_answers(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *h;
        const char *v;
        enum agape_outcome outcome;
        int64_t retry_after_ms;
    } rows[] = {
        {200, NULL, NULL, AGAPE_OUTCOME_OK, -1},
        {204, NULL, NULL, AGAPE_OUTCOME_OK, -1},
        {429, "Retry-After", "30", AGAPE_OUTCOME_RATE_LIMITED, 30000},
        {429, NULL, NULL, AGAPE_OUTCOME_RATE_LIMITED, -1},
        {400, NULL, NULL, AGAPE_OUTCOME_INVALID, -1},
        {404, NULL, NULL, AGAPE_OUTCOME_INVALID, -1},
        {401, NULL, NULL, AGAPE_OUTCOME_AUTH, -1},
        {403, NULL, NULL, AGAPE_OUTCOME_AUTH, -1},
        {500, NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE, -1},
        {503, "Retry-After", "5", AGAPE_OUTCOME_UNAVAILABLE, 5000},
        {302, NULL, NULL, AGAPE_OUTCOME_UNKNOWN, -1},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct harness_op o;
        assert_int_equal(track(&o, "{\"events\":[{\"name\":\"a\",\"client_id\":\"c\"},"
                                   "{\"name\":\"b\",\"client_id\":\"c\"}]}"),
                         AGAPE_STEP_SEND);
        enum agape_step st =
            rows[i].h ? harness_op_answer_text(&o, rows[i].status, "", rows[i].h, rows[i].v, NULL)
                      : harness_op_answer_text(&o, rows[i].status, "", NULL);
        assert_int_equal(st, AGAPE_STEP_DONE);
        if (o.hc.pub.outcome != rows[i].outcome) {
            fail_msg("HTTP %d: outcome %d, wanted %d", rows[i].status, o.hc.pub.outcome,
                     rows[i].outcome);
        }
        assert_int_equal(o.hc.pub.retry_after_ms, rows[i].retry_after_ms);
        if (rows[i].outcome == AGAPE_OUTCOME_OK) {
            assert_int_equal(json_integer_value(json_object_get(o.hc.result, "accepted")), 2);
        } else {
            assert_null(json_object_get(o.hc.result, "accepted"));
            assert_true(strlen(o.hc.pub.err) > 0);
            assert_null(strstr(o.hc.pub.err, SECRET));
        }
        harness_op_end(&o);
    }
}

static void test_debug_mode(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(track(&o, "{\"events\":[{\"name\":\"a\",\"client_id\":\"c\"}]}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, "http://127.0.0.1:9/debug/mp/collect?measurement_id=" MID
                                 "&api_secret=" SECRET);
    assert_int_equal(harness_op_answer_text(&o, 200, "{\"validationMessages\":[]}", NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);

    assert_int_equal(track(&o, "{\"events\":[{\"name\":\"a\",\"client_id\":\"c\"}]}"),
                     AGAPE_STEP_SEND);
    assert_int_equal(
        harness_op_answer_text(&o, 200,
                               "{\"validationMessages\":[{\"fieldPath\":\"events\","
                               "\"description\":\"Event at index: [0] has invalid name [a-].\","
                               "\"validationCode\":\"NAME_INVALID\"}]}",
                               NULL),
        AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_string_equal(o.hc.pub.err, "GA4 validation: Event at index: [0] has invalid name "
                                      "[a-]. (events) (1 message(s))");
    harness_op_end(&o);
}

/* ---------------------------------------------------------------- */
/* Against the emulator: build/mockprov started here, the real       */
/* client (libcurl) sending what the plugin built.                  */

static void test_against_mockprov(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE];
    struct harness_mock m;
    struct harness_op o;
    harness_mock_start(&m);
    assert_int_equal(harness_provider_init(&g, "ga",
                                           json_pack("{s:s, s:s, s:s}", "measurement_id", MID,
                                                     "api_secret", SECRET, "base_url", m.url),
                                           err, sizeof(err)),
                     AGAPE_OK);
    enum agape_step st = track(&o, "{\"events\":[{\"category\":\"User\",\"action\":"
                                   "\"Registration\",\"user_id\":\"42\"},{\"name\":\"login\","
                                   "\"user_id\":\"42\",\"params\":{\"method\":\"Google\"}}]}");
    assert_int_equal(harness_mock_run(&m, &o.hc, g.pl->desc->analytics->track_batch, st),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_int_equal(json_integer_value(json_object_get(o.hc.result, "accepted")), 2);
    harness_op_end(&o);
    harness_provider_fini(&g);

    /* GA4 took it as valid (an invalid batch lands in ga4.dropped). */
    json_t *batches = harness_mock_state(&m, "ga4.batches");
    json_t *want = json_loads("{\"client_id\":\"agape.73475cb40a568e8d\",\"user_id\":\"42\","
                              "\"events\":[{\"name\":\"registration\",\"params\":"
                              "{\"event_category\":\"User\"}},{\"name\":\"login\",\"params\":"
                              "{\"method\":\"Google\"}}],\"measurement_id\":\"G-TEST123\"}",
                              0, NULL);
    assert_true(json_equal(json_object_get(batches, "1"), want));
    json_decref(want);
    json_decref(batches);
    json_t *dropped = harness_mock_state(&m, "ga4.dropped");
    assert_int_equal(json_object_size(dropped), 0);
    json_decref(dropped);

    /* Debug mode: validated, not recorded. */
    assert_int_equal(
        harness_provider_init(&g, "ga",
                              json_pack("{s:s, s:s, s:s, s:s}", "measurement_id", MID, "api_secret",
                                        SECRET, "base_url", m.url, "debug", "true"),
                              err, sizeof(err)),
        AGAPE_OK);
    st = track(&o, "{\"events\":[{\"name\":\"a\",\"client_id\":\"c\"}]}");
    assert_int_equal(harness_mock_run(&m, &o.hc, g.pl->desc->analytics->track_batch, st),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);
    harness_provider_fini(&g);
    batches = harness_mock_state(&m, "ga4.batches");
    assert_int_equal(json_object_size(batches), 1);
    json_decref(batches);
    harness_mock_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init_universal_analytics),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test_setup_teardown(test_request_bytes, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_client_id_derivation, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_batch_boundaries, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_name_rules, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_seed_mapping, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_timestamps, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_answers, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_debug_mode, setup_debug, teardown_provider),
        cmocka_unit_test(test_against_mockprov),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
