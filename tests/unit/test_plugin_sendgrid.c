/* test_plugin_sendgrid — the sendgrid plugin, byte for byte, without a network.
 *
 * The real build/plugins/sendgrid.so is loaded with the real loader, given a
 * provider context by its own init(), and driven through the real host
 * table (host_call_step / host_call_answer) with a client_xfer whose answer
 * part is filled by hand. Webhook vectors: PROVIDERS.md §10.3. */
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

#define API_KEY "SG.test-key.abcdefghijklmnop"

/* PROVIDERS.md §10.3 (sendgrid-nodejs eventwebhook.spec.js). */
#define V_KEY                                                                                  \
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7" \
    "yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
#define V_OTHER_KEY                                                                            \
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REnt" \
    "lo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="
#define V_SIG                                                                                  \
    "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYN" \
    "H2j/0="
#define V_SIG_BAD                                                                              \
    "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYN" \
    "H3j/0="
#define V_TS "1588788367"
#define V_T 1588788367
#define V_PAYLOAD                                                                              \
    "{\"category\":\"example_payload\",\"event\":\"test_event\",\"message_id\":\"message_id\"}"

/* ---------------------------------------------------------------- */
/* Scaffolding                                                      */

static struct harness g; /* the loaded plugin; a provider is made per test */

HARNESS_FIXTURES(g, "sendgrid")

static int setup_default(void **state)
{
    char err[AGAPE_ERR_SIZE];
    (void)state;
    return harness_provider_init(&g, "sendgrid",
                                 json_pack("{s:s, s:s, s:s}", "api_key", API_KEY, "from_email",
                                           "noreply@example.com", "webhook_public_key", V_KEY),
                                 err, sizeof(err)) == AGAPE_OK
               ? 0
               : -1;
}

static int setup_bare(void **state)
{
    char err[AGAPE_ERR_SIZE];
    (void)state;
    return harness_provider_init(&g, "sendgrid", json_pack("{s:s}", "api_key", API_KEY), err,
                                 sizeof(err)) == AGAPE_OK
               ? 0
               : -1;
}

static void assert_body(const struct client_xfer *x, const char *expect)
{
    if (x->body_len != strlen(expect) || memcmp(x->body, expect, x->body_len) != 0) {
        fail_msg("body\n  got    %.*s\n  wanted %s", (int)x->body_len, x->body, expect);
    }
}

#define SEND_EMAIL (g.pl->desc->messaging->send_email)

/* ---------------------------------------------------------------- */
/* Descriptor and init                                              */

static void test_descriptor(void **state)
{
    (void)state;
    const struct agape_plugin *d = g.pl->desc;
    assert_string_equal(d->name, "sendgrid");
    assert_int_equal(d->kinds, AGAPE_KIND_MESSAGING | AGAPE_KIND_WEBHOOK);
    assert_non_null(d->messaging->send_email);
    assert_null(d->messaging->send_sms);
    assert_non_null(d->webhook->verify);
    assert_non_null(d->webhook->normalize);
    assert_null(d->payment);

    static const struct {
        const char *name;
        uint32_t flags;
        const char *env;
    } want[] = {
        {"api_key", AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET, "SENDGRID_API_KEY"},
        {"from_email", 0, "DEFAULT_FROM_EMAIL"},
        {"base_url", 0, "SENDGRID_API_BASE"},
        {"webhook_public_key", 0, "SENDGRID_WEBHOOK_PUBLIC_KEY"},
        {"webhook_tolerance_s", 0, NULL},
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
    assert_int_not_equal(harness_provider_init(&g, "sendgrid", conf, err, sizeof(err)), AGAPE_OK);
    assert_null(g.prov.ctx);
    if (strstr(err, needle) == NULL) {
        fail_msg("init error \"%s\" lacks \"%s\"", err, needle);
    }
    harness_provider_fini(&g);
}

static void test_init(void **state)
{
    char err[AGAPE_ERR_SIZE];
    (void)state;
    expect_init_error(json_object(), "api_key is required (set SENDGRID_API_KEY)");
    expect_init_error(json_pack("{s:s}", "api_key", ""), "api_key is required");
    expect_init_error(json_pack("{s:s}", "api_key", "SG.has space"), "api_key must be");
    expect_init_error(json_pack("{s:s, s:s}", "api_key", API_KEY, "from_email", "nobody"),
                      "from_email");
    expect_init_error(json_pack("{s:s, s:s}", "api_key", API_KEY, "base_url", "ftp://x"),
                      "base_url: expected an http:// or https:// URL");
    expect_init_error(json_pack("{s:s, s:s}", "api_key", API_KEY, "webhook_public_key",
                                "not-a-key"),
                      "webhook_public_key");
    expect_init_error(json_pack("{s:s, s:i}", "api_key", API_KEY, "webhook_tolerance_s", -1),
                      "webhook_tolerance_s");

    /* The key also as PEM, as some operators paste it. */
    const char *pem = "-----BEGIN PUBLIC KEY-----\n"
                      "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqD\n"
                      "qBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==\n"
                      "-----END PUBLIC KEY-----\n";
    assert_int_equal(
        harness_provider_init(&g, "sendgrid",
                              json_pack("{s:s, s:s, s:s}", "api_key", API_KEY, "webhook_public_key",
                                        pem, "webhook_tolerance_s", "0"),
                              err, sizeof(err)),
        AGAPE_OK);
    harness_provider_fini(&g);
}

/* ---------------------------------------------------------------- */
/* send_email: the request                                          */

static void test_request_text_and_html(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL,
                                      "{\"message_id\":\"msg_1\",\"to\":\"ana@example.com\","
                                      "\"from_name\":\"Shop\",\"subject\":\"Welcome\",\"html\":"
                                      "\"<p>Hi</p>\",\"text\":\"Hi\",\"idempotency_key\":\"k1\","
                                      "\"status_callback\":\"https://gw.example.com/cb\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "POST");
    assert_string_equal(o.x.url, "https://api.sendgrid.com/v3/mail/send");
    assert_int_equal(o.x.n_req_headers, 2); /* no idempotency header: SendGrid has none */
    assert_string_equal(harness_req_header(&o.x, "Authorization"), "Bearer " API_KEY);
    assert_string_equal(harness_req_header(&o.x, "Content-Type"), "application/json");
    assert_null(o.x.userpwd);
    assert_null(o.x.mail_from);
    assert_body(&o.x, "{\"personalizations\":[{\"to\":[{\"email\":\"ana@example.com\"}],"
                      "\"custom_args\":{\"agape_message_id\":\"msg_1\"}}],"
                      "\"from\":{\"email\":\"noreply@example.com\",\"name\":\"Shop\"},"
                      "\"subject\":\"Welcome\","
                      "\"content\":[{\"type\":\"text/plain\",\"value\":\"Hi\"},"
                      "{\"type\":\"text/html\",\"value\":\"<p>Hi</p>\"}]}");
    harness_op_end(&o);

    /* html only, the message's own from, a configured base URL. */
    char err[AGAPE_ERR_SIZE];
    harness_provider_fini(&g);
    assert_int_equal(
        harness_provider_init(&g, "sendgrid",
                              json_pack("{s:s, s:s, s:s}", "api_key", API_KEY, "from_email",
                                        "noreply@example.com", "base_url", "http://127.0.0.1:9/"),
                              err, sizeof(err)),
        AGAPE_OK);
    assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL,
                                      "{\"message_id\":\"msg_2\",\"to\":\"ana@example.com\","
                                      "\"from\":\"billing@example.com\",\"subject\":\"Ol\\u00e1\","
                                      "\"html\":\"<b>x</b>\",\"text\":\"\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, "http://127.0.0.1:9/v3/mail/send");
    assert_body(&o.x, "{\"personalizations\":[{\"to\":[{\"email\":\"ana@example.com\"}],"
                      "\"custom_args\":{\"agape_message_id\":\"msg_2\"}}],"
                      "\"from\":{\"email\":\"billing@example.com\"},"
                      "\"subject\":\"Ol\xc3\xa1\","
                      "\"content\":[{\"type\":\"text/html\",\"value\":\"<b>x</b>\"}]}");
    harness_op_end(&o);
}

static void test_request_template(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL,
                                      "{\"message_id\":\"msg_3\",\"to\":\"ana@example.com\","
                                      "\"template_id\":\"d-0123456789abcdef0123456789abcdef\","
                                      "\"data\":{\"name\":\"Ana\",\"n\":2},\"text\":\"ignored\"}"),
                     AGAPE_STEP_SEND);
    assert_body(&o.x, "{\"personalizations\":[{\"to\":[{\"email\":\"ana@example.com\"}],"
                      "\"dynamic_template_data\":{\"name\":\"Ana\",\"n\":2},"
                      "\"custom_args\":{\"agape_message_id\":\"msg_3\"}}],"
                      "\"from\":{\"email\":\"noreply@example.com\"},"
                      "\"template_id\":\"d-0123456789abcdef0123456789abcdef\"}");
    harness_op_end(&o);

    /* data without a template is not sent. */
    assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL,
                                      "{\"message_id\":\"msg_4\",\"to\":\"ana@example.com\","
                                      "\"subject\":\"s\",\"text\":\"t\",\"data\":{\"a\":\"b\"}}"),
                     AGAPE_STEP_SEND);
    assert_body(&o.x, "{\"personalizations\":[{\"to\":[{\"email\":\"ana@example.com\"}],"
                      "\"custom_args\":{\"agape_message_id\":\"msg_4\"}}],"
                      "\"from\":{\"email\":\"noreply@example.com\"},\"subject\":\"s\","
                      "\"content\":[{\"type\":\"text/plain\",\"value\":\"t\"}]}");
    harness_op_end(&o);
}

static void expect_refused(const char *input, const char *needle)
{
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL, input),
                     AGAPE_STEP_FAIL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_null(o.x.url); /* nothing built */
    if (strstr(o.hc.pub.err, needle) == NULL) {
        fail_msg("err \"%s\" lacks \"%s\"", o.hc.pub.err, needle);
    }
    harness_op_end(&o);
}

static void test_request_refused(void **state)
{
    (void)state;
    expect_refused("{\"to\":\"a@example.com\",\"subject\":\"s\",\"text\":\"t\"}", "message_id");
    expect_refused("{\"message_id\":\"m\",\"subject\":\"s\",\"text\":\"t\"}", "to must be");
    expect_refused("{\"message_id\":\"m\",\"to\":\"a@b.c, x@y.z\",\"subject\":\"s\","
                   "\"text\":\"t\"}",
                   "to must be one e-mail address");
    expect_refused("{\"message_id\":\"m\",\"to\":\"a@example.com\",\"subject\":\"s\\r\\nBcc: "
                   "x@y.z\",\"text\":\"t\"}",
                   "subject must not contain CR or LF");
    expect_refused("{\"message_id\":\"m\",\"to\":\"a@example.com\",\"text\":\"t\"}",
                   "subject is required");
    expect_refused("{\"message_id\":\"m\",\"to\":\"a@example.com\",\"subject\":\"s\"}",
                   "text or html is required");
    expect_refused("{\"message_id\":\"m\",\"to\":\"a@example.com\",\"template_id\":\"d-1\","
                   "\"data\":[1]}",
                   "data must be an object");
    expect_refused("{\"message_id\":\"m\",\"to\":\"a@example.com\",\"subject\":5,\"text\":\"t\"}",
                   "subject must be a string");
}

static void test_request_needs_from(void **state)
{
    (void)state;
    expect_refused("{\"message_id\":\"m\",\"to\":\"a@example.com\",\"subject\":\"s\","
                   "\"text\":\"t\"}",
                   "from is required: pass it or configure from_email (DEFAULT_FROM_EMAIL)");
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL,
                                      "{\"message_id\":\"m\",\"to\":\"a@example.com\",\"from\":"
                                      "\"me@example.com\",\"subject\":\"s\",\"text\":\"t\"}"),
                     AGAPE_STEP_SEND);
    harness_op_end(&o);
}

/* ---------------------------------------------------------------- */
/* send_email: the answers                                          */

static const char msg_input[] = "{\"message_id\":\"msg_1\",\"to\":\"ana@example.com\","
                                "\"subject\":\"Welcome\",\"text\":\"Hi\"}";

static void test_accepted(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL, msg_input),
                     AGAPE_STEP_SEND);
    assert_int_equal(harness_op_answer_text(&o, 202, "", "X-Message-Id", "14c5d75ce93", NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "provider_ref"), "14c5d75ce93");
    assert_string_equal(harness_res_str(&o, "status"), "sent");
    harness_op_end(&o);

    /* Sandbox mode: 200 without X-Message-Id is still a success. */
    assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL, msg_input),
                     AGAPE_STEP_SEND);
    assert_int_equal(harness_op_answer_text(&o, 200, "", NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_null(harness_res_str(&o, "provider_ref"));
    assert_string_equal(harness_res_str(&o, "status"), "sent");
    harness_op_end(&o);
}

struct row {
    int status;
    const char *body;
    const char *hname;
    const char *hvalue;
    enum agape_outcome outcome;
    int64_t retry_after_ms;
    const char *err_part;
};

static void test_error_table(void **state)
{
    (void)state;
    const struct row rows[] = {
        {400,
         "{\"errors\":[{\"message\":\"Does not contain a valid address.\","
         "\"field\":\"personalizations.0.to.0.email\",\"help\":null}]}",
         NULL, NULL, AGAPE_OUTCOME_INVALID, -1,
         "Does not contain a valid address. (field: personalizations.0.to.0.email)"},
        {400, "not json", NULL, NULL, AGAPE_OUTCOME_INVALID, -1, "(no message)"},
        {401,
         "{\"errors\":[{\"field\":null,\"message\":\"The provided authorization grant is "
         "invalid, expired, or revoked\"}]}",
         NULL, NULL, AGAPE_OUTCOME_AUTH, -1, "expired, or revoked"},
        {403,
         "{\"errors\":[{\"field\":\"from\",\"message\":\"The from address does not match a "
         "verified Sender Identity.\"}]}",
         NULL, NULL, AGAPE_OUTCOME_AUTH, -1, "verified Sender Identity. (field: from)"},
        {413, "{\"errors\":[{\"field\":null,\"message\":\"too large\"}]}", NULL, NULL,
         AGAPE_OUTCOME_INVALID, -1, "HTTP 413"},
        {429, "{\"errors\":[{\"field\":null,\"message\":\"too many requests\"}]}", "Retry-After",
         "7", AGAPE_OUTCOME_RATE_LIMITED, 7000, "too many requests"},
        {429, "{\"errors\":[{\"field\":null,\"message\":\"too many requests\"}]}", "Retry-After",
         "99999", AGAPE_OUTCOME_RATE_LIMITED, 3600000, "rate limit"},
        {404, "", NULL, NULL, AGAPE_OUTCOME_INVALID, -1, "HTTP 404"},
        {405, "", NULL, NULL, AGAPE_OUTCOME_INVALID, -1, "HTTP 405"},
        {500, "{\"errors\":[{\"message\":\"internal\"}]}", NULL, NULL,
         AGAPE_OUTCOME_UNAVAILABLE, -1, "HTTP 500: internal"},
        {503, "", NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE, -1, "HTTP 503"},
        {302, "", NULL, NULL, AGAPE_OUTCOME_UNKNOWN, -1, "HTTP 302"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct harness_op o;
        assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL, msg_input),
                         AGAPE_STEP_SEND);
        enum agape_step st = rows[i].hname
                                 ? harness_op_answer_text(&o, rows[i].status, rows[i].body,
                                                          rows[i].hname, rows[i].hvalue, NULL)
                                 : harness_op_answer_text(&o, rows[i].status, rows[i].body, NULL);
        assert_int_equal(st, AGAPE_STEP_DONE);
        if (o.hc.pub.outcome != rows[i].outcome ||
            o.hc.pub.retry_after_ms != rows[i].retry_after_ms ||
            strstr(o.hc.pub.err, rows[i].err_part) == NULL) {
            fail_msg("row %zu (HTTP %d): outcome %d retry %" PRId64 " err \"%s\"", i,
                     rows[i].status, o.hc.pub.outcome, o.hc.pub.retry_after_ms, o.hc.pub.err);
        }
        assert_null(json_object_get(o.hc.result, "provider_ref"));
        harness_op_end(&o);
    }
}

static void test_rate_limit_reset_header(void **state)
{
    (void)state;
    struct harness_op o;
    char reset[32];
    int64_t now_s = client_wall_ms() / 1000;
    snprintf(reset, sizeof(reset), "%" PRId64, now_s + 30);
    assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL, msg_input),
                     AGAPE_STEP_SEND);
    assert_int_equal(harness_op_answer_text(&o, 429,
                                            "{\"errors\":[{\"field\":null,\"message\":\"too many "
                                            "requests\"}]}",
                                            "X-RateLimit-Reset", reset, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_RATE_LIMITED);
    assert_true(o.hc.pub.retry_after_ms > 28000 && o.hc.pub.retry_after_ms <= 30000);
    harness_op_end(&o);

    /* A reset in the past: retry now. */
    snprintf(reset, sizeof(reset), "%" PRId64, now_s - 100);
    assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL, msg_input),
                     AGAPE_STEP_SEND);
    assert_int_equal(harness_op_answer_text(&o, 429, "", "X-RateLimit-Reset", reset, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.retry_after_ms, 0);
    harness_op_end(&o);
}

static void test_key_never_in_err(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "send_email", SEND_EMAIL, msg_input),
                     AGAPE_STEP_SEND);
    assert_int_equal(
        harness_op_answer_text(
            &o, 401, "{\"errors\":[{\"message\":\"key " API_KEY " is not valid\"}]}", NULL),
        AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_AUTH);
    assert_null(strstr(o.hc.pub.err, API_KEY));
    assert_non_null(strstr(o.hc.pub.err, "key [redacted] is not valid"));
    harness_op_end(&o);
}

/* ---------------------------------------------------------------- */
/* Webhooks                                                         */

struct wh {
    struct host_call hc;
    struct agape_webhook w;
    struct client_header hdr[3];
};

/* Run fn over body with the signature and timestamp headers (NULL: left
 * out) at time now_s. */
static enum agape_step wh_run(struct wh *c, agape_step_fn fn, const char *body, const char *sig,
                              const char *ts, int64_t now_s)
{
    memset(c, 0, sizeof(*c));
    host_call_init(&c->hc, &g.prov, "verify", NULL, NULL);
    c->w.body = body;
    c->w.body_len = strlen(body);
    c->w.url = "http://127.0.0.1:8080/v1/webhooks/sendgrid";
    c->w.now_s = now_s;
    c->hc.pub.webhook = &c->w;
    int n = 0;
    c->hdr[n].name = (char *)"Content-Type";
    c->hdr[n++].value = (char *)"application/json";
    if (sig != NULL) {
        c->hdr[n].name = (char *)"X-Twilio-Email-Event-Webhook-Signature";
        c->hdr[n++].value = (char *)sig;
    }
    if (ts != NULL) {
        c->hdr[n].name = (char *)"x-twilio-email-event-webhook-timestamp";
        c->hdr[n++].value = (char *)ts;
    }
    c->hc.wh_headers = c->hdr;
    c->hc.n_wh_headers = n;
    return host_call_step(&c->hc, fn);
}

static void expect_verify(const char *body, const char *sig, const char *ts, int64_t now_s,
                          enum agape_outcome outcome, const char *err_part)
{
    struct wh c;
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->verify, body, sig, ts, now_s),
                     AGAPE_STEP_DONE);
    if (c.hc.pub.outcome != outcome || strstr(c.hc.pub.err, err_part) == NULL) {
        fail_msg("verify: outcome %d err \"%s\", wanted %d and \"%s\"", c.hc.pub.outcome,
                 c.hc.pub.err, outcome, err_part);
    }
    host_call_fini(&c.hc);
}

static void test_webhook_vectors(void **state)
{
    (void)state;
    /* §10.3: valid. */
    expect_verify(V_PAYLOAD, V_SIG, V_TS, V_T + 5, AGAPE_OUTCOME_OK, "");
    /* Must fail: another payload, a changed signature, a bad timestamp. */
    expect_verify("payload", V_SIG, V_TS, V_T, AGAPE_OUTCOME_INVALID, "does not match");
    expect_verify(V_PAYLOAD, V_SIG_BAD, V_TS, V_T, AGAPE_OUTCOME_INVALID, "does not match");
    expect_verify(V_PAYLOAD, V_SIG, "timestamp", V_T, AGAPE_OUTCOME_INVALID,
                  "is not a unix time");
    /* The right signature with another timestamp. */
    expect_verify(V_PAYLOAD, V_SIG, "1588788368", V_T, AGAPE_OUTCOME_INVALID, "does not match");
    /* A trailing newline is another body. */
    expect_verify(V_PAYLOAD "\n", V_SIG, V_TS, V_T, AGAPE_OUTCOME_INVALID, "does not match");
    /* Missing or broken headers. */
    expect_verify(V_PAYLOAD, NULL, V_TS, V_T, AGAPE_OUTCOME_INVALID,
                  "no X-Twilio-Email-Event-Webhook-Signature header");
    expect_verify(V_PAYLOAD, V_SIG, NULL, V_T, AGAPE_OUTCOME_INVALID,
                  "no X-Twilio-Email-Event-Webhook-Timestamp header");
    expect_verify(V_PAYLOAD, "not base64!", V_TS, V_T, AGAPE_OUTCOME_INVALID, "not base64");
}

static void test_webhook_tolerance(void **state)
{
    (void)state;
    /* Default 600 s: older is stale, and so is a timestamp from the future. */
    expect_verify(V_PAYLOAD, V_SIG, V_TS, V_T + 600, AGAPE_OUTCOME_OK, "");
    expect_verify(V_PAYLOAD, V_SIG, V_TS, V_T + 601, AGAPE_OUTCOME_INVALID,
                  "timestamp outside the tolerance zone");
    expect_verify(V_PAYLOAD, V_SIG, V_TS, V_T - 601, AGAPE_OUTCOME_INVALID,
                  "timestamp outside the tolerance zone");
    /* Tolerance 0: the 2020 vector is still good today. */
    char err[AGAPE_ERR_SIZE];
    harness_provider_fini(&g);
    assert_int_equal(
        harness_provider_init(&g, "sendgrid",
                              json_pack("{s:s, s:s, s:i}", "api_key", API_KEY, "webhook_public_key",
                                        V_KEY, "webhook_tolerance_s", 0),
                              err, sizeof(err)),
        AGAPE_OK);
    expect_verify(V_PAYLOAD, V_SIG, V_TS, client_wall_ms() / 1000, AGAPE_OUTCOME_OK, "");
}

static void test_webhook_other_key(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE];
    harness_provider_fini(&g);
    assert_int_equal(harness_provider_init(&g, "sendgrid",
                                           json_pack("{s:s, s:s}", "api_key", API_KEY,
                                                     "webhook_public_key", V_OTHER_KEY),
                                           err, sizeof(err)),
                     AGAPE_OK);
    expect_verify(V_PAYLOAD, V_SIG, V_TS, V_T, AGAPE_OUTCOME_INVALID, "does not match");
    harness_provider_fini(&g);
    /* No key configured: every webhook is refused. */
    assert_int_equal(harness_provider_init(&g, "sendgrid", json_pack("{s:s}", "api_key", API_KEY),
                                           err, sizeof(err)),
                     AGAPE_OK);
    expect_verify(V_PAYLOAD, V_SIG, V_TS, V_T, AGAPE_OUTCOME_INVALID,
                  "webhook_public_key not configured");
}

static void test_webhook_normalize(void **state)
{
    (void)state;
    struct wh c;
    const char *body =
        "[{\"email\":\"ana@example.com\",\"timestamp\":1700000000,\"event\":\"processed\","
        "\"sg_event_id\":\"ev-1\",\"sg_message_id\":"
        "\"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0\",\"agape_message_id\":\"msg_1\"},"
        "{\"event\":\"delivered\",\"sg_event_id\":\"ev-2\",\"sg_message_id\":\"14c5d75ce93.x\","
        "\"agape_message_id\":\"msg_1\"},"
        "{\"event\":\"bounce\",\"type\":\"bounce\",\"sg_message_id\":\"abc.1\"},"
        "{\"event\":\"dropped\",\"sg_message_id\":\"def\"},"
        "{\"event\":\"open\",\"sg_event_id\":\"ev-5\"},"
        "\"junk\","
        "{\"no_event\":true}]";
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, body, NULL, NULL, 0),
                     AGAPE_STEP_DONE);
    assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_OK);
    char *got = json_dumps(c.hc.result, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(
        got,
        "{\"event_id\":\"ev-1\",\"type\":\"sendgrid.events\",\"events\":["
        "{\"message_ref\":\"14c5d75ce93\",\"agape_message_id\":\"msg_1\",\"event\":\"processed\","
        "\"event_id\":\"ev-1\"},"
        "{\"message_ref\":\"14c5d75ce93\",\"agape_message_id\":\"msg_1\",\"event\":\"delivered\","
        "\"status\":\"delivered\",\"event_id\":\"ev-2\"},"
        "{\"message_ref\":\"abc\",\"event\":\"bounce\",\"status\":\"failed\"},"
        "{\"message_ref\":\"def\",\"event\":\"dropped\",\"status\":\"failed\"},"
        "{\"event\":\"open\",\"event_id\":\"ev-5\"}]}");
    free(got);
    host_call_fini(&c.hc);

    /* No sg_event_id on the first event: the hash of the exact bytes. */
    const char *anon = "[{\"event\":\"delivered\",\"sg_message_id\":\"m1.f\"}]";
    unsigned char md[32];
    char hex[65];
    char want[80];
    crypto_sha256(anon, strlen(anon), md);
    crypto_hex(md, sizeof(md), hex);
    snprintf(want, sizeof(want), "sha256:%s", hex);
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, anon, NULL, NULL, 0),
                     AGAPE_STEP_DONE);
    assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(json_string_value(json_object_get(c.hc.result, "event_id")), want);
    host_call_fini(&c.hc);

    /* Not an array, empty, nothing readable. */
    const char *bad[] = {"{\"event\":\"delivered\"}", "[]", "[1,2]", "not json"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, bad[i], NULL, NULL, 0),
                         AGAPE_STEP_DONE);
        assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
        assert_true(strlen(c.hc.pub.err) > 0);
        host_call_fini(&c.hc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init),
        cmocka_unit_test_setup_teardown(test_request_text_and_html, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_request_template, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_request_refused, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_request_needs_from, setup_bare, teardown_provider),
        cmocka_unit_test_setup_teardown(test_accepted, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_error_table, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_rate_limit_reset_header, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_key_never_in_err, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_vectors, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_tolerance, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_other_key, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_normalize, setup_default, teardown_provider),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
