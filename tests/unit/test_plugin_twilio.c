/* test_plugin_twilio — the twilio plugin, byte for byte, without a network.
 *
 * The real build/plugins/twilio.so, its own init(), the real host table; the
 * answers are filled by hand (bodies from PROVIDERS.md §3 and §10.5). The
 * X-Twilio-Signature cases are those of twilio-python's
 * tests/unit/test_request_validator.py (PROVIDERS.md §10.2). */
#include "buf.h"
#include "client.h"
#include "crypto.h"
#include "host.h"
#include "options.h"
#include "plugins.h"
#include "plugin_harness.h"

#include <inttypes.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#define SID "AC0123456789abcdef0123456789abcdef"
#define TOKEN "f0e1d2c3b4a5f0e1d2c3b4a5f0e1d2c3"
#define MG "MG0123456789abcdef0123456789abcdef"
#define MSG_SID "SM0123456789abcdef0123456789abcdef"

/* ---------------------------------------------------------------- */
/* Scaffolding                                                      */

static struct harness g; /* the loaded plugin; a provider is made per test */

HARNESS_FIXTURES(g, "twilio")

static int init_ok(json_t *conf)
{
    char err[AGAPE_ERR_SIZE];
    if (harness_provider_init(&g, "twilio", conf, err, sizeof(err)) != AGAPE_OK) {
        fprintf(stderr, "init: %s\n", err);
        return -1;
    }
    return 0;
}

/* The usual configuration: a number in TWILIO_PHONE_NUMBER. */
static int setup_default(void **state)
{
    (void)state;
    return init_ok(json_pack("{s:s, s:s, s:s}", "account_sid", SID, "auth_token", TOKEN,
                             "from", "+15005550006"));
}

/* twilio-python's validator tests use the auth token "12345". */
static int setup_vectors(void **state)
{
    (void)state;
    return init_ok(json_pack("{s:s, s:s}", "account_sid", SID, "auth_token", "12345"));
}

#define SEND_SMS (g.pl->desc->messaging->send_sms)

static void assert_body(const struct client_xfer *x, const char *expect)
{
    if (x->body_len != strlen(expect) || memcmp(x->body, expect, x->body_len) != 0) {
        fail_msg("body\n  got    %.*s\n  wanted %s", (int)x->body_len, x->body, expect);
    }
}

/* ---------------------------------------------------------------- */
/* Descriptor and init                                              */

static void test_descriptor(void **state)
{
    (void)state;
    const struct agape_plugin *d = g.pl->desc;
    assert_string_equal(d->name, "twilio");
    assert_int_equal(d->kinds, AGAPE_KIND_MESSAGING | AGAPE_KIND_WEBHOOK);
    assert_non_null(d->messaging->send_sms);
    assert_null(d->messaging->send_email);
    assert_non_null(d->webhook->verify);
    assert_non_null(d->webhook->normalize);

    static const struct {
        const char *name;
        uint32_t flags;
        const char *env;
    } want[] = {
        {"account_sid", AGAPE_OPT_REQUIRED, "TWILIO_ACCOUNT_SID"},
        {"auth_token", AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET, "TWILIO_AUTH_TOKEN"},
        {"from", 0, "TWILIO_PHONE_NUMBER"},
        {"messaging_service_sid", 0, NULL},
        {"base_url", 0, "TWILIO_API_BASE"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct agape_option *o = d->options;
        while (o->name && strcmp(o->name, want[i].name) != 0) {
            o++;
        }
        assert_non_null(o->name);
        assert_int_equal(o->flags, want[i].flags);
        if (want[i].env) {
            assert_string_equal(o->env, want[i].env);
        }
    }
}

static void expect_init_error(json_t *conf, const char *needle)
{
    char err[AGAPE_ERR_SIZE];
    assert_int_not_equal(harness_provider_init(&g, "twilio", conf, err, sizeof(err)), AGAPE_OK);
    assert_null(g.prov.ctx);
    if (strstr(err, needle) == NULL) {
        fail_msg("init error \"%s\" lacks \"%s\"", err, needle);
    }
    assert_null(strstr(err, TOKEN));
    harness_provider_fini(&g);
}

static void test_init(void **state)
{
    (void)state;
    expect_init_error(json_pack("{s:s}", "auth_token", TOKEN),
                      "account_sid is required (set TWILIO_ACCOUNT_SID)");
    expect_init_error(json_pack("{s:s, s:s}", "account_sid", "AC123", "auth_token", TOKEN),
                      "account_sid must be AC followed by 32 hex digits");
    expect_init_error(json_pack("{s:s, s:s}", "account_sid",
                                "SK0123456789abcdef0123456789abcdef", "auth_token", TOKEN),
                      "account_sid must be AC");
    expect_init_error(json_pack("{s:s}", "account_sid", SID),
                      "auth_token is required (set TWILIO_AUTH_TOKEN)");
    expect_init_error(json_pack("{s:s, s:s, s:s}", "account_sid", SID, "auth_token", TOKEN,
                                "messaging_service_sid", "MG1"),
                      "messaging_service_sid must be MG");
    expect_init_error(json_pack("{s:s, s:s, s:s}", "account_sid", SID, "auth_token", TOKEN,
                                "from", "+1\r\n"),
                      "from must be");
    expect_init_error(json_pack("{s:s, s:s, s:s}", "account_sid", SID, "auth_token", TOKEN,
                                "base_url", "api.twilio.com"),
                      "base_url: expected an http:// or https:// URL");
    /* Neither from nor a service: fine at init (each message may carry from). */
    assert_int_equal(init_ok(json_pack("{s:s, s:s}", "account_sid", SID, "auth_token", TOKEN)),
                     0);
    harness_provider_fini(&g);
}

/* ---------------------------------------------------------------- */
/* send_sms: the request                                            */

static void test_request(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "send_sms", SEND_SMS,
                                      "{\"message_id\":\"msg_1\",\"to\":\"+14155550100\","
                                      "\"body\":\"Your code is 123456\",\"idempotency_key\":\"k1\","
                                      "\"status_callback\":"
                                      "\"https://gw.example.com/v1/webhooks/twilio?m=msg_1\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "POST");
    assert_string_equal(o.x.url, "https://api.twilio.com/2010-04-01/Accounts/" SID
                                 "/Messages.json");
    assert_string_equal(o.x.userpwd, SID ":" TOKEN);
    /* Content-Type only: no idempotency header exists for Messages. */
    assert_int_equal(o.x.n_req_headers, 1);
    assert_string_equal(harness_req_header(&o.x, "Content-Type"),
                        "application/x-www-form-urlencoded");
    assert_body(&o.x, "To=%2B14155550100&From=%2B15005550006&Body=Your%20code%20is%20123456"
                      "&StatusCallback=https%3A%2F%2Fgw.example.com%2Fv1%2Fwebhooks%2Ftwilio"
                      "%3Fm%3Dmsg_1");
    harness_op_end(&o);

    /* The message's own sender wins; UTF-8 is percent-encoded byte by byte. */
    assert_int_equal(harness_op_start(&o, &g.prov, "send_sms", SEND_SMS,
                                      "{\"message_id\":\"msg_2\",\"to\":\"+351912345678\","
                                      "\"from\":\"AgapeShop\",\"body\":\"Ol\\u00e1 & adeus\"}"),
                     AGAPE_STEP_SEND);
    assert_body(&o.x, "To=%2B351912345678&From=AgapeShop&Body=Ol%C3%A1%20%26%20adeus");
    harness_op_end(&o);
}

static void test_request_messaging_service(void **state)
{
    (void)state;
    struct harness_op o;
    harness_provider_fini(&g);
    assert_int_equal(init_ok(json_pack("{s:s, s:s, s:s, s:s, s:s}", "account_sid", SID,
                                       "auth_token", TOKEN, "from", "+15005550006",
                                       "messaging_service_sid", MG, "base_url",
                                       "http://127.0.0.1:9/")),
                     0);
    assert_int_equal(harness_op_start(&o, &g.prov, "send_sms", SEND_SMS,
                                      "{\"message_id\":\"m\",\"to\":\"+14155550100\","
                                      "\"body\":\"hi\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, "http://127.0.0.1:9/2010-04-01/Accounts/" SID
                                 "/Messages.json");
    assert_body(&o.x, "To=%2B14155550100&MessagingServiceSid=" MG "&Body=hi");
    harness_op_end(&o);
}

static void expect_refused(const char *input, const char *needle)
{
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "send_sms", SEND_SMS, input), AGAPE_STEP_FAIL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_null(o.x.url);
    if (strstr(o.hc.pub.err, needle) == NULL) {
        fail_msg("err \"%s\" lacks \"%s\"", o.hc.pub.err, needle);
    }
    harness_op_end(&o);
}

static void test_request_refused(void **state)
{
    (void)state;
    expect_refused("{\"to\":\"+14155550100\",\"body\":\"b\"}", "message_id is required");
    const char *bad_to[] = {"4155550100", "+0123456", "+1", "+1234567890123456", "+1 415 555",
                            "+1415555010a"};
    for (size_t i = 0; i < sizeof(bad_to) / sizeof(bad_to[0]); i++) {
        char in[256];
        snprintf(in, sizeof(in), "{\"message_id\":\"m\",\"to\":\"%s\",\"body\":\"b\"}",
                 bad_to[i]);
        expect_refused(in, "to must be a phone number in E.164");
    }
    expect_refused("{\"message_id\":\"m\",\"to\":\"+14155550100\"}", "body is required");
    expect_refused("{\"message_id\":\"m\",\"to\":\"+14155550100\",\"body\":\"b\","
                   "\"status_callback\":\"ftp://x/y\"}",
                   "status_callback must be");

    /* 1600 characters pass, 1601 do not; two-byte characters count once. */
    struct agape_buf b;
    buf_init(&b, 0);
    buf_adds(&b, "{\"message_id\":\"m\",\"to\":\"+14155550100\",\"body\":\"");
    for (int i = 0; i < 1600; i++) {
        buf_adds(&b, "\xc3\xa9");
    }
    buf_adds(&b, "\"}");
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "send_sms", SEND_SMS, b.data), AGAPE_STEP_SEND);
    harness_op_end(&o);
    buf_reset(&b);
    buf_adds(&b, "{\"message_id\":\"m\",\"to\":\"+14155550100\",\"body\":\"");
    for (int i = 0; i < 1601; i++) {
        buf_adds(&b, "\xc3\xa9");
    }
    buf_adds(&b, "\"}");
    expect_refused(b.data, "body is longer than 1600 characters");
    buf_fini(&b);
}

static void test_request_needs_sender(void **state)
{
    (void)state;
    harness_provider_fini(&g);
    assert_int_equal(init_ok(json_pack("{s:s, s:s}", "account_sid", SID, "auth_token", TOKEN)),
                     0);
    expect_refused("{\"message_id\":\"m\",\"to\":\"+14155550100\",\"body\":\"b\"}",
                   "from is required");
}

/* ---------------------------------------------------------------- */
/* send_sms: the answers                                            */

static const char sms_input[] = "{\"message_id\":\"msg_1\",\"to\":\"+14155550100\","
                                "\"body\":\"hi\"}";

static void created(const char *status, enum agape_outcome outcome, const char *ours)
{
    char body[512];
    struct harness_op o;
    snprintf(body, sizeof(body),
             "{\"account_sid\":\"" SID "\",\"api_version\":\"2010-04-01\",\"body\":\"hi\","
             "\"error_code\":%s,\"error_message\":null,\"from\":\"+15005550006\","
             "\"sid\":\"" MSG_SID "\",\"status\":\"%s\",\"to\":\"+14155550100\"}",
             strcmp(status, "failed") == 0 ? "30007" : "null", status);
    assert_int_equal(harness_op_start(&o, &g.prov, "send_sms", SEND_SMS, sms_input),
                     AGAPE_STEP_SEND);
    assert_int_equal(harness_op_answer_text(&o, 201, body, NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, outcome);
    assert_string_equal(harness_res_str(&o, "provider_ref"), MSG_SID);
    assert_string_equal(harness_res_str(&o, "status"), ours);
    harness_op_end(&o);
}

static void test_created(void **state)
{
    (void)state;
    created("queued", AGAPE_OUTCOME_OK, "queued");
    created("accepted", AGAPE_OUTCOME_OK, "queued");
    created("scheduled", AGAPE_OUTCOME_OK, "queued");
    created("sending", AGAPE_OUTCOME_OK, "sent");
    created("sent", AGAPE_OUTCOME_OK, "sent");
    created("something_new", AGAPE_OUTCOME_OK, "queued");
    created("failed", AGAPE_OUTCOME_DECLINED, "failed");

    /* A 2xx we cannot read: Twilio may have the message. */
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "send_sms", SEND_SMS, sms_input),
                     AGAPE_STEP_SEND);
    assert_int_equal(harness_op_answer_text(&o, 201, "<html>", NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNKNOWN);
    harness_op_end(&o);
}

struct row {
    int status;
    const char *body;
    const char *retry_after;
    enum agape_outcome outcome;
    int64_t retry_after_ms;
    int64_t error_code; /* in the result, declines only */
    const char *err_part;
};

#define TW_ERR(code, status, msg)                                                             \
    "{\"code\": " #code ", \"message\": \"" msg "\", \"more_info\": "                         \
    "\"https://www.twilio.com/docs/errors/" #code "\", \"status\": " #status "}"

static void test_error_table(void **state)
{
    (void)state;
    const struct row rows[] = {
        /* §10.5, verbatim. */
        {400,
         "{\"code\": 21211, \"message\": \"The 'To' number +15005550001 is not a valid phone "
         "number.\", \"more_info\": \"https://www.twilio.com/docs/errors/21211\", \"status\": "
         "400}",
         NULL, AGAPE_OUTCOME_DECLINED, -1, 21211, "is not a valid phone number"},
        {400, TW_ERR(21610, 400, "Attempt to send to unsubscribed recipient"), NULL,
         AGAPE_OUTCOME_DECLINED, -1, 21610, "unsubscribed (STOP)"},
        {400, TW_ERR(21614, 400, "To number is not a valid mobile number"), NULL,
         AGAPE_OUTCOME_DECLINED, -1, 21614, "code 21614"},
        {400, TW_ERR(21408, 400, "Permission to send an SMS has not been enabled"), NULL,
         AGAPE_OUTCOME_DECLINED, -1, 21408, "region not enabled"},
        {400, TW_ERR(21604, 400, "A 'To' phone number is required."), NULL,
         AGAPE_OUTCOME_INVALID, -1, 0, "(HTTP 400, code 21604): A 'To' phone number is"},
        {400, "", NULL, AGAPE_OUTCOME_INVALID, -1, 0, "(no message)"},
        {401, TW_ERR(20003, 401, "Authenticate"), NULL, AGAPE_OUTCOME_AUTH, -1, 0,
         "code 20003"},
        {403, TW_ERR(20003, 403, "Forbidden"), NULL, AGAPE_OUTCOME_AUTH, -1, 0, "HTTP 403"},
        {404,
         "{\"code\": 20404, \"message\": \"The requested resource was not found\", "
         "\"more_info\": \"https://www.twilio.com/docs/errors/20404\", \"status\": 404}",
         NULL, AGAPE_OUTCOME_INVALID, -1, 0, "code 20404"},
        {429, TW_ERR(20429, 429, "Too Many Requests"), "3", AGAPE_OUTCOME_RATE_LIMITED, 3000, 0,
         "Too Many Requests"},
        {429, "", NULL, AGAPE_OUTCOME_RATE_LIMITED, -1, 0, "rate limit"},
        {500, TW_ERR(20500, 500, "Internal Server Error"), NULL, AGAPE_OUTCOME_UNAVAILABLE, -1,
         0, "HTTP 500"},
        {503, "", NULL, AGAPE_OUTCOME_UNAVAILABLE, -1, 0, "HTTP 503"},
        {301, "", NULL, AGAPE_OUTCOME_UNKNOWN, -1, 0, "HTTP 301"},
        /* A decline code on a 5xx is not a decline. */
        {500, TW_ERR(21610, 500, "odd"), NULL, AGAPE_OUTCOME_UNAVAILABLE, -1, 0, "HTTP 500"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct harness_op o;
        assert_int_equal(harness_op_start(&o, &g.prov, "send_sms", SEND_SMS, sms_input),
                         AGAPE_STEP_SEND);
        assert_int_equal(harness_op_answer_text(&o, rows[i].status, rows[i].body,
                                                rows[i].retry_after ? "Retry-After" : NULL,
                                                rows[i].retry_after, NULL),
                         AGAPE_STEP_DONE);
        if (o.hc.pub.outcome != rows[i].outcome ||
            o.hc.pub.retry_after_ms != rows[i].retry_after_ms ||
            strstr(o.hc.pub.err, rows[i].err_part) == NULL) {
            fail_msg("row %zu (HTTP %d): outcome %d retry %" PRId64 " err \"%s\"", i,
                     rows[i].status, o.hc.pub.outcome, o.hc.pub.retry_after_ms, o.hc.pub.err);
        }
        if (rows[i].outcome == AGAPE_OUTCOME_DECLINED) {
            assert_string_equal(harness_res_str(&o, "status"), "failed");
            assert_int_equal(json_integer_value(json_object_get(o.hc.result, "error_code")),
                             rows[i].error_code);
            assert_non_null(harness_res_str(&o, "message"));
        } else {
            assert_null(json_object_get(o.hc.result, "status"));
        }
        harness_op_end(&o);
    }
}

static void test_token_never_in_err(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "send_sms", SEND_SMS, sms_input),
                     AGAPE_STEP_SEND);
    assert_int_equal(harness_op_answer_text(&o, 401, TW_ERR(20003, 401, "bad token " TOKEN), NULL),
                     AGAPE_STEP_DONE);
    assert_null(strstr(o.hc.pub.err, TOKEN));
    assert_non_null(strstr(o.hc.pub.err, "bad token [redacted]"));
    harness_op_end(&o);
}

/* ---------------------------------------------------------------- */
/* Webhooks                                                         */

struct wh {
    struct host_call hc;
    struct agape_webhook w;
    struct client_header hdr[2];
};

static enum agape_step wh_run(struct wh *c, agape_step_fn fn, const char *url, const char *body,
                              const char *sig)
{
    memset(c, 0, sizeof(*c));
    host_call_init(&c->hc, &g.prov, "verify", NULL, NULL);
    c->w.body = body;
    c->w.body_len = strlen(body);
    c->w.url = url;
    c->w.now_s = client_wall_ms() / 1000;
    c->hc.pub.webhook = &c->w;
    c->hdr[0].name = (char *)"Content-Type";
    c->hdr[0].value = (char *)"application/x-www-form-urlencoded";
    c->hdr[1].name = (char *)"X-Twilio-Signature";
    c->hdr[1].value = (char *)sig;
    c->hc.wh_headers = c->hdr;
    c->hc.n_wh_headers = sig ? 2 : 1;
    return host_call_step(&c->hc, fn);
}

static void expect_verify(const char *url, const char *body, const char *sig,
                          enum agape_outcome outcome)
{
    struct wh c;
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->verify, url, body, sig), AGAPE_STEP_DONE);
    if (c.hc.pub.outcome != outcome) {
        fail_msg("verify %s with %s: outcome %d (%s), wanted %d", url, sig ? sig : "(none)",
                 c.hc.pub.outcome, c.hc.pub.err, outcome);
    }
    if (outcome != AGAPE_OUTCOME_OK) {
        assert_true(strlen(c.hc.pub.err) > 0);
    }
    host_call_fini(&c.hc);
}

#define V_URL "https://mycompany.com/myapp.php?foo=1&bar=2"
/* The validator test's params, form-encoded in another order than sorted. */
#define V_BODY                                                                                 \
    "CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212"              \
    "&Caller=%2B14158675309"

static void test_webhook_vectors(void **state)
{
    (void)state;
    expect_verify(V_URL, V_BODY, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", AGAPE_OUTCOME_OK);
    /* Port handling: the URL as the server saw it + the header → valid. */
    expect_verify("https://mycompany.com:1234/myapp.php?foo=1&bar=2", V_BODY,
                  "RSOYDt4T1cUTdK1PDd93/VVr8B8=", AGAPE_OUTCOME_OK); /* port stripped */
    expect_verify(V_URL, V_BODY, "kvajT1Ptam85bY51eRf/AJRuM3w=",
                  AGAPE_OUTCOME_OK); /* :443 added */
    expect_verify("http://mycompany.com:1234/myapp.php?foo=1&bar=2", V_BODY,
                  "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", AGAPE_OUTCOME_OK); /* kept as is */
    expect_verify("http://mycompany.com/myapp.php?foo=1&bar=2", V_BODY,
                  "0ZXoZLH/DfblKGATFgpif+LLRf4=", AGAPE_OUTCOME_OK); /* :80 added */
    /* Not any port: :1234's signature does not fit the plain https URL. */
    expect_verify(V_URL, V_BODY, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", AGAPE_OUTCOME_INVALID);
    expect_verify("https://mycompany.com:8443/myapp.php?foo=1&bar=2", V_BODY,
                  "kvajT1Ptam85bY51eRf/AJRuM3w=", AGAPE_OUTCOME_INVALID);

    /* Duplicate params, sorted by name then value. */
    expect_verify(V_URL, "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234",
                  "IK+Dwps556ElfBT0I3Rgjkr1wJU=", AGAPE_OUTCOME_OK);
    expect_verify(V_URL, "Digits=1234&SidAccount=AC123&Digits=5678&Sid=CA123",
                  "IK+Dwps556ElfBT0I3Rgjkr1wJU=", AGAPE_OUTCOME_OK);

    /* Tampering: a changed value, a dropped param, another URL, no header. */
    expect_verify(V_URL, "CallSid=CA1234567890ABCDE&Digits=1235&From=%2B14158675309"
                         "&To=%2B18005551212&Caller=%2B14158675309",
                  "RSOYDt4T1cUTdK1PDd93/VVr8B8=", AGAPE_OUTCOME_INVALID);
    expect_verify(V_URL, "CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309"
                         "&To=%2B18005551212",
                  "RSOYDt4T1cUTdK1PDd93/VVr8B8=", AGAPE_OUTCOME_INVALID);
    expect_verify("https://mycompany.com/myapp.php?foo=1&bar=3", V_BODY,
                  "RSOYDt4T1cUTdK1PDd93/VVr8B8=", AGAPE_OUTCOME_INVALID);
    expect_verify(V_URL, V_BODY, NULL, AGAPE_OUTCOME_INVALID);
    expect_verify(V_URL, V_BODY, "", AGAPE_OUTCOME_INVALID);
}

static void test_webhook_json_body(void **state)
{
    (void)state;
    const char *body = "{\"property\": \"value\", \"boolean\": true}";
    const char *url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256="
                      "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    expect_verify(url, body, "a9nBmqA0ju/hNViExpshrM61xv4=", AGAPE_OUTCOME_OK);
    /* The URL is signed, the body is bound by its hash. */
    expect_verify(url, "{\"property\": \"value\", \"boolean\": false}",
                  "a9nBmqA0ju/hNViExpshrM61xv4=", AGAPE_OUTCOME_INVALID);
    expect_verify(url, body, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", AGAPE_OUTCOME_INVALID);
}

/* base64(HMAC-SHA1(token, s)), computed here, apart from the plugin. */
static void sign(const char *token, const char *s, char *out, size_t outlen)
{
    unsigned char mac[20];
    struct agape_buf b;
    assert_int_equal(crypto_hmac_sha1(token, strlen(token), s, strlen(s), mac), AGAPE_OK);
    buf_init(&b, 0);
    assert_int_equal(crypto_base64(&b, mac, sizeof(mac)), AGAPE_OK);
    snprintf(out, outlen, "%s", b.data);
    buf_fini(&b);
}

static void test_webhook_status_callback(void **state)
{
    (void)state;
    char sig[64];
    const char *url = "http://127.0.0.1:8080/v1/webhooks/twilio";
    /* '+' is a space, %2B a plus, %21 a '!', an empty value counts. */
    const char *body = "MessageSid=" MSG_SID "&MessageStatus=delivered&To=%2B14155550100"
                       "&Body=Hello+World%21&Empty=";
    sign("12345",
         "http://127.0.0.1:8080/v1/webhooks/twilio"
         "BodyHello World!EmptyMessageSid" MSG_SID "MessageStatusdeliveredTo+14155550100",
         sig, sizeof(sig));
    expect_verify(url, body, sig, AGAPE_OUTCOME_OK);
    /* The same params with '+' undecoded would be another message. */
    expect_verify(url,
                  "MessageSid=" MSG_SID "&MessageStatus=delivered&To=+14155550100"
                  "&Body=Hello+World%21&Empty=",
                  sig, AGAPE_OUTCOME_INVALID);
}

static void test_webhook_limits(void **state)
{
    (void)state;
    struct agape_buf b;
    buf_init(&b, 0);
    for (int i = 0; i < 300; i++) {
        buf_printf(&b, "%sp%d=v", i ? "&" : "", i);
    }
    expect_verify(V_URL, b.data, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", AGAPE_OUTCOME_INVALID);
    buf_fini(&b);
    expect_verify("not a url", V_BODY, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", AGAPE_OUTCOME_INVALID);
}

static void expect_normalized(const char *body, const char *want)
{
    struct wh c;
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, "http://x/", body, "x"),
                     AGAPE_STEP_DONE);
    assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_OK);
    char *got = json_dumps(c.hc.result, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(got, want);
    free(got);
    host_call_fini(&c.hc);
}

static void test_webhook_normalize(void **state)
{
    (void)state;
    expect_normalized("SmsSid=" MSG_SID "&SmsStatus=delivered&MessageStatus=delivered"
                      "&To=%2B14155550100&MessageSid=" MSG_SID "&AccountSid=" SID
                      "&From=%2B15005550006&ApiVersion=2010-04-01",
                      "{\"event_id\":\"" MSG_SID ":delivered\",\"type\":\"twilio.status\","
                      "\"message_ref\":\"" MSG_SID "\",\"status\":\"delivered\","
                      "\"provider_status\":\"delivered\"}");
    expect_normalized("MessageSid=" MSG_SID "&MessageStatus=undelivered&ErrorCode=30003",
                      "{\"event_id\":\"" MSG_SID ":undelivered\",\"type\":\"twilio.status\","
                      "\"message_ref\":\"" MSG_SID "\",\"status\":\"failed\","
                      "\"provider_status\":\"undelivered\",\"error_code\":30003}");
    expect_normalized("MessageSid=" MSG_SID "&MessageStatus=failed&ErrorCode=30008",
                      "{\"event_id\":\"" MSG_SID ":failed\",\"type\":\"twilio.status\","
                      "\"message_ref\":\"" MSG_SID "\",\"status\":\"failed\","
                      "\"provider_status\":\"failed\",\"error_code\":30008}");
    expect_normalized("MessageSid=" MSG_SID "&MessageStatus=sent",
                      "{\"event_id\":\"" MSG_SID ":sent\",\"type\":\"twilio.status\","
                      "\"message_ref\":\"" MSG_SID "\",\"provider_status\":\"sent\"}");

    const char *bad[] = {"MessageStatus=sent", "MessageSid=" MSG_SID,
                         "MessageSid=SM%0A1&MessageStatus=sent", "{\"MessageSid\":\"x\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wh c;
        assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, "http://x/", bad[i], "x"),
                         AGAPE_STEP_DONE);
        assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
        host_call_fini(&c.hc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init),
        cmocka_unit_test_setup_teardown(test_request, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_request_messaging_service, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_request_refused, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_request_needs_sender, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_created, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_error_table, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_token_never_in_err, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_vectors, setup_vectors, teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_json_body, setup_vectors, teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_status_callback, setup_vectors,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_limits, setup_vectors, teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_normalize, setup_vectors, teardown_provider),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
