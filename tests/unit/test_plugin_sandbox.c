/* test_plugin_sandbox — every documented sandbox input gives its outcome.
 *
 * The real build/plugins/sandbox.so through the real loader and host table.
 * The sandbox never builds a request: every operation answers at step 0. */
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

#include <cmocka.h>

#define WHSEC "sbx_whsec_test"

static struct harness g;

static int load_plugin(void **state)
{
    (void)state;
    return harness_load(&g, "sandbox");
}

static int unload_plugin(void **state)
{
    (void)state;
    harness_unload(&g);
    return 0;
}

static int setup(void **state)
{
    char err[AGAPE_ERR_SIZE];
    (void)state;
    return harness_provider_init(&g, "sandbox", json_pack("{s:s}", "webhook_secret", WHSEC), err,
                                 sizeof(err)) == AGAPE_OK
               ? 0
               : -1;
}

static int teardown(void **state)
{
    (void)state;
    harness_provider_fini(&g);
    return 0;
}

static enum agape_step run(struct harness_op *o, agape_step_fn fn, const char *input_json)
{
    enum agape_step st = harness_op_start(o, &g.prov, "op", fn, input_json);
    assert_int_not_equal(st, AGAPE_STEP_SEND);
    assert_null(o->x.url);
    return st;
}

static void charge(struct harness_op *o, int64_t amount, const char *metadata)
{
    char in[512];
    snprintf(in, sizeof(in),
             "{\"payment_id\":\"pay_7\",\"amount\":%" PRId64 ",\"currency\":\"usd\","
             "\"idempotency_key\":\"k\"%s%s}",
             amount, metadata ? ",\"metadata\":" : "", metadata ? metadata : "");
    assert_int_equal(run(o, g.pl->desc->payment->charge, in), AGAPE_STEP_DONE);
}

/* ---------------------------------------------------------------- */

static void test_descriptor(void **state)
{
    (void)state;
    const struct agape_plugin *d = g.pl->desc;
    assert_string_equal(d->name, "sandbox");
    assert_int_equal(d->kinds, AGAPE_KIND_AUTH | AGAPE_KIND_PAYMENT | AGAPE_KIND_MESSAGING |
                                   AGAPE_KIND_ANALYTICS | AGAPE_KIND_MONITORING |
                                   AGAPE_KIND_WEBHOOK);
    assert_non_null(d->payment->capture);
    assert_non_null(d->auth->authorize_url);
    assert_non_null(d->monitoring->send_metrics);
    /* Works with no configuration at all. */
    char err[AGAPE_ERR_SIZE];
    assert_int_equal(harness_provider_init(&g, "sandbox", json_object(), err, sizeof(err)),
                     AGAPE_OK);
    harness_provider_fini(&g);
    assert_int_not_equal(harness_provider_init(&g, "sandbox",
                                               json_pack("{s:s}", "base_url", "ftp://x"), err,
                                               sizeof(err)),
                         AGAPE_OK);
    assert_non_null(strstr(err, "base_url"));
    harness_provider_fini(&g);
}

static void test_charge_ok(void **state)
{
    (void)state;
    struct harness_op o;
    charge(&o, 1999, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "status"), "succeeded");
    assert_string_equal(harness_res_str(&o, "provider_ref"), "sbx_pay_7");
    assert_null(harness_res_str(&o, "approval_url"));
    assert_int_equal(o.hc.pub.delay_ms, 0);
    harness_op_end(&o);

    charge(&o, 1999, "{\"sandbox_action\":\"approve\"}");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "status"), "requires_action");
    assert_string_equal(harness_res_str(&o, "approval_url"),
                        "https://sandbox.invalid/approve/pay_7");
    harness_op_end(&o);
}

static void test_charge_table(void **state)
{
    (void)state;
    struct harness_op o;

    charge(&o, 4002, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_DECLINED);
    assert_string_equal(harness_res_str(&o, "status"), "failed");
    assert_string_equal(harness_res_str(&o, "decline_code"), "card_declined");
    harness_op_end(&o);

    charge(&o, 5003, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNAVAILABLE);
    assert_int_equal(o.hc.pub.retry_after_ms, -1);
    harness_op_end(&o);

    charge(&o, 4290, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_RATE_LIMITED);
    assert_int_equal(o.hc.pub.retry_after_ms, 1000);
    harness_op_end(&o);

    charge(&o, 4080, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNKNOWN);
    harness_op_end(&o);

    charge(&o, 4000, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_string_equal(o.hc.pub.err, "amount 4000 is refused by the sandbox");
    harness_op_end(&o);

    /* Neighbours of the test amounts are ordinary. */
    charge(&o, 4001, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);

    assert_int_equal(run(&o, g.pl->desc->payment->charge,
                         "{\"payment_id\":\"p\",\"amount\":0,\"currency\":\"usd\"}"),
                     AGAPE_STEP_FAIL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    harness_op_end(&o);
}

static void test_charge_delay(void **state)
{
    (void)state;
    struct harness_op o;
    charge(&o, 1999, "{\"sandbox_delay_ms\":\"250\"}");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_int_equal(o.hc.pub.delay_ms, 250);
    harness_op_end(&o);

    /* The delay applies to every outcome (a slow decline). */
    charge(&o, 4002, "{\"sandbox_delay_ms\":\"60000\"}");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_DECLINED);
    assert_int_equal(o.hc.pub.delay_ms, 60000);
    harness_op_end(&o);

    static const char *const bad[] = {"\"60001\"", "\"-1\"", "\"1e3\"", "\"\"", "250",
                                      "\"9999999999\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char in[256];
        snprintf(in, sizeof(in),
                 "{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\","
                 "\"metadata\":{\"sandbox_delay_ms\":%s}}",
                 bad[i]);
        assert_int_equal(run(&o, g.pl->desc->payment->charge, in), AGAPE_STEP_FAIL);
        assert_non_null(strstr(o.hc.pub.err, "metadata.sandbox_delay_ms"));
        harness_op_end(&o);
    }
}

static void test_get_capture_refund(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(run(&o, g.pl->desc->payment->get,
                         "{\"payment_id\":\"pay_7\",\"provider_ref\":\"sbx_pay_7\"}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "status"), "succeeded");
    assert_string_equal(harness_res_str(&o, "provider_ref"), "sbx_pay_7");
    harness_op_end(&o);

    assert_int_equal(run(&o, g.pl->desc->payment->get,
                         "{\"payment_id\":\"pay_7\",\"provider_ref\":\"pi_123\"}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    harness_op_end(&o);

    assert_int_equal(run(&o, g.pl->desc->payment->capture,
                         "{\"payment_id\":\"pay_7\",\"provider_ref\":\"sbx_pay_7\","
                         "\"idempotency_key\":\"k\"}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "status"), "succeeded");
    harness_op_end(&o);

    assert_int_equal(run(&o, g.pl->desc->payment->refund,
                         "{\"payment_id\":\"pay_7\",\"provider_ref\":\"sbx_pay_7\","
                         "\"amount\":500,\"currency\":\"usd\",\"idempotency_key\":\"k\"}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "refund_ref"), "sbxre_pay_7");
    assert_string_equal(harness_res_str(&o, "status"), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(o.hc.result, "amount")), 500);
    harness_op_end(&o);
}

static void test_messaging(void **state)
{
    (void)state;
    struct harness_op o;
    unsigned char d[32];
    char hex[65], want[80];

    assert_int_equal(run(&o, g.pl->desc->messaging->send_email,
                         "{\"to\":\"ana@example.com\",\"subject\":\"Hi\",\"text\":\"Hi\"}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    crypto_sha256("ana@example.com", strlen("ana@example.com"), d);
    crypto_hex(d, 8, hex);
    snprintf(want, sizeof(want), "sbxmsg_%s", hex);
    assert_string_equal(harness_res_str(&o, "provider_ref"), want);
    assert_int_equal(strlen(want), 7 + 16);
    harness_op_end(&o);

    static const struct {
        bool sms;
        const char *to;
        enum agape_outcome outcome;
    } cases[] = {
        {false, "ana+declined@example.com", AGAPE_OUTCOME_DECLINED},
        {true, "+15005550001", AGAPE_OUTCOME_DECLINED},
        {false, "ana+unavailable@example.com", AGAPE_OUTCOME_UNAVAILABLE},
        {true, "+14155550100", AGAPE_OUTCOME_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char in[256];
        snprintf(in, sizeof(in), "{\"to\":\"%s\",\"body\":\"x\"}", cases[i].to);
        agape_step_fn fn =
            cases[i].sms ? g.pl->desc->messaging->send_sms : g.pl->desc->messaging->send_email;
        assert_int_equal(run(&o, fn, in), AGAPE_STEP_DONE);
        assert_int_equal(o.hc.pub.outcome, cases[i].outcome);
        harness_op_end(&o);
    }
    assert_int_equal(run(&o, g.pl->desc->messaging->send_sms, "{\"body\":\"x\"}"), AGAPE_STEP_FAIL);
    assert_non_null(strstr(o.hc.pub.err, "to is required"));
    harness_op_end(&o);
}

static void test_analytics_monitoring(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(run(&o, g.pl->desc->analytics->track_batch,
                         "{\"events\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"c\"}]}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_int_equal(json_integer_value(json_object_get(o.hc.result, "accepted")), 3);
    harness_op_end(&o);
    assert_int_equal(run(&o, g.pl->desc->analytics->track_batch, "{}"), AGAPE_STEP_FAIL);
    harness_op_end(&o);
    assert_int_equal(run(&o, g.pl->desc->monitoring->report_error, "{\"message\":\"boom\"}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);
    assert_int_equal(run(&o, g.pl->desc->monitoring->send_metrics, "{\"metrics\":[]}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);
}

static void test_auth(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(run(&o, g.pl->desc->auth->authorize_url,
                         "{\"state\":\"s 1\",\"nonce\":\"n1\",\"code_challenge\":\"c1\"}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "url"),
                        "http://127.0.0.1/sandbox-auth/authorize?state=s%201"
                        "&nonce=n1&code_challenge=c1");
    harness_op_end(&o);

    /* The base is configurable (trailing slash ignored). */
    char err[AGAPE_ERR_SIZE];
    harness_provider_fini(&g);
    assert_int_equal(harness_provider_init(
                         &g, "sandbox", json_pack("{s:s}", "base_url", "http://127.0.0.1:9/auth/"),
                         err, sizeof(err)),
                     AGAPE_OK);
    assert_int_equal(run(&o, g.pl->desc->auth->authorize_url, "{\"state\":\"xyz\"}"),
                     AGAPE_STEP_DONE);
    assert_string_equal(harness_res_str(&o, "url"), "http://127.0.0.1:9/auth/authorize?state=xyz");
    harness_op_end(&o);

    assert_int_equal(run(&o, g.pl->desc->auth->exchange_code, "{\"code\":\"c-1\"}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "subject"), "sandbox-user-1");
    assert_string_equal(harness_res_str(&o, "email"), "sandbox@example.com");
    assert_true(json_is_true(json_object_get(o.hc.result, "email_verified")));
    assert_string_equal(harness_res_str(&o, "name"), "Sandbox User");
    harness_op_end(&o);

    assert_int_equal(run(&o, g.pl->desc->auth->exchange_code, "{\"code\":\"bad\"}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    harness_op_end(&o);
    assert_int_equal(run(&o, g.pl->desc->auth->verify_id_token, "{\"id_token\":\"eyJ.x.y\"}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "subject"), "sandbox-user-1");
    harness_op_end(&o);
    assert_int_equal(run(&o, g.pl->desc->auth->verify_id_token, "{\"id_token\":\"bad\"}"),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    harness_op_end(&o);
}

/* ---------------------------------------------------------------- */
/* Webhooks                                                         */

struct wh {
    struct host_call hc;
    struct agape_webhook w;
    struct client_header hdr;
};

static enum agape_step wh_run(struct wh *c, agape_step_fn fn, const char *body, const char *sig,
                              int64_t now_s)
{
    memset(c, 0, sizeof(*c));
    host_call_init(&c->hc, &g.prov, "verify", NULL, NULL);
    c->w.body = body;
    c->w.body_len = strlen(body);
    c->w.url = "http://127.0.0.1:8080/v1/webhooks/sandbox";
    c->w.now_s = now_s;
    c->hc.pub.webhook = &c->w;
    c->hdr.name = (char *)"sandbox-signature"; /* header names are case-insensitive */
    c->hdr.value = (char *)sig;
    c->hc.wh_headers = &c->hdr;
    c->hc.n_wh_headers = sig ? 1 : 0;
    return host_call_step(&c->hc, fn);
}

static void sign(char *out, size_t outlen, const char *secret, int64_t t, const char *body)
{
    struct agape_buf b;
    unsigned char mac[32];
    char hex[65];
    buf_init(&b, 0);
    buf_printf(&b, "%" PRId64 ".%s", t, body);
    assert_int_equal(crypto_hmac_sha256(secret, strlen(secret), b.data, b.len, mac), AGAPE_OK);
    crypto_hex(mac, sizeof(mac), hex);
    snprintf(out, outlen, "t=%" PRId64 ",v1=%s", t, hex);
    buf_fini(&b);
}

static void expect_verify(const char *body, const char *sig, int64_t now,
                          enum agape_outcome outcome, const char *err)
{
    struct wh c;
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->verify, body, sig, now), AGAPE_STEP_DONE);
    assert_int_equal(c.hc.pub.outcome, outcome);
    assert_string_equal(c.hc.pub.err, err);
    host_call_fini(&c.hc);
}

static void test_webhook_verify(void **state)
{
    (void)state;
    const char body[] = "{\"id\":\"sbxev_1\",\"type\":\"payment.succeeded\","
                        "\"payment_ref\":\"sbx_pay_7\",\"status\":\"succeeded\"}";
    const int64_t now = 1700000000;
    char sig[256], two[512];

    sign(sig, sizeof(sig), WHSEC, now, body);
    expect_verify(body, sig, now, AGAPE_OUTCOME_OK, "");
    snprintf(two, sizeof(two), "%s,v1=bad_signature", sig);
    expect_verify(body, two, now, AGAPE_OUTCOME_OK, "");
    sign(sig, sizeof(sig), "other", now, body);
    expect_verify(body, sig, now, AGAPE_OUTCOME_INVALID,
                  "No signatures found matching the expected signature for payload");
    sign(sig, sizeof(sig), WHSEC, now, "{\"id\":\"sbxev_2\"}");
    expect_verify(body, sig, now, AGAPE_OUTCOME_INVALID,
                  "No signatures found matching the expected signature for payload");
    sign(sig, sizeof(sig), WHSEC, now - 301, body);
    expect_verify(body, sig, now, AGAPE_OUTCOME_INVALID, "Timestamp outside the tolerance zone");
    sign(sig, sizeof(sig), WHSEC, now + 301, body);
    expect_verify(body, sig, now, AGAPE_OUTCOME_INVALID, "Timestamp outside the tolerance zone");
    expect_verify(body, "t=1700000000,v0=abc", now, AGAPE_OUTCOME_INVALID,
                  "No signatures found with expected scheme v1");
    expect_verify(body, "garbage", now, AGAPE_OUTCOME_INVALID,
                  "Unable to extract timestamp and signatures from header");
    expect_verify(body, NULL, now, AGAPE_OUTCOME_INVALID, "No Sandbox-Signature header");

    /* Without a secret nothing is accepted. */
    char err[AGAPE_ERR_SIZE];
    harness_provider_fini(&g);
    assert_int_equal(harness_provider_init(&g, "sandbox", json_object(), err, sizeof(err)),
                     AGAPE_OK);
    sign(sig, sizeof(sig), WHSEC, now, body);
    expect_verify(body, sig, now, AGAPE_OUTCOME_INVALID, "webhook_secret not configured");
}

static void test_webhook_normalize(void **state)
{
    (void)state;
    struct wh c;
    const char body[] = "{\"id\":\"sbxev_1\",\"type\":\"payment.succeeded\","
                        "\"payment_ref\":\"sbx_pay_7\",\"status\":\"succeeded\"}";
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, body, "x", 0), AGAPE_STEP_DONE);
    assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_OK);
    json_t *r = c.hc.result;
    assert_string_equal(json_string_value(json_object_get(r, "event_id")), "sbxev_1");
    assert_string_equal(json_string_value(json_object_get(r, "type")), "payment.succeeded");
    assert_string_equal(json_string_value(json_object_get(r, "payment_ref")), "sbx_pay_7");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "succeeded");
    host_call_fini(&c.hc);

    assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, "{\"id\":\"e\",\"type\":\"t\"}",
                            "x", 0),
                     AGAPE_STEP_DONE);
    assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_null(json_object_get(c.hc.result, "payment_ref"));
    host_call_fini(&c.hc);

    static const char *const bad[] = {"{\"type\":\"t\"}", "{\"id\":\"e\"}", "[]", "nope",
                                      "{\"id\":\"e\",\"type\":\"t\",\"status\":1}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, bad[i], "x", 0),
                         AGAPE_STEP_DONE);
        assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
        host_call_fini(&c.hc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test_setup_teardown(test_charge_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_charge_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_charge_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_capture_refund, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messaging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_analytics_monitoring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_normalize, setup, teardown),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
