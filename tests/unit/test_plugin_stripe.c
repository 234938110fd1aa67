/* test_plugin_stripe — the stripe plugin, byte for byte, without a network.
 *
 * The real build/plugins/stripe.so is loaded with the real loader, given a
 * provider context by its own init(), and driven through the real host table
 * (host_call_step / host_call_answer) with a client_xfer whose answer part is
 * filled by hand from tests/fixtures/stripe/. */
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

#define SK "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
#define WHSEC "whsec_test_secret"

/* ---------------------------------------------------------------- */
/* Scaffolding                                                      */

static struct harness g; /* the loaded plugin; a provider is made per test */

HARNESS_FIXTURES(g, "stripe")

/* The default provider: a test key, nothing else configured. */
static int setup_default(void **state)
{
    char err[AGAPE_ERR_SIZE];
    (void)state;
    return harness_provider_init(&g, "stripe",
                                 json_pack("{s:s, s:s}", "secret_key", SK, "webhook_secret", WHSEC),
                                 err, sizeof(err)) == AGAPE_OK
               ? 0
               : -1;
}

/* Charge with the fixture answer `file` and status; returns the op, ended
 * by the caller. */
static void charge_answer_fixture(struct harness_op *o, int status, const char *file,
                                  const char *h1, const char *v1)
{
    size_t len;
    char *body = harness_fixture("stripe", file, &len);
    assert_int_equal(
        harness_op_start(o, &g.prov, "charge", g.pl->desc->payment->charge,
                         "{\"payment_id\":\"pay_1\",\"amount\":1099,\"currency\":\"usd\","
                         "\"idempotency_key\":\"idem-1\"}"),
        AGAPE_STEP_SEND);
    assert_int_equal(harness_op_answer(o, status, body, len, h1, v1, NULL), AGAPE_STEP_DONE);
    free(body);
}

static void charge_answer_text(struct harness_op *o, int status, const char *body, const char *h1,
                               const char *v1)
{
    assert_int_equal(
        harness_op_start(o, &g.prov, "charge", g.pl->desc->payment->charge,
                         "{\"payment_id\":\"pay_1\",\"amount\":1099,\"currency\":\"usd\","
                         "\"idempotency_key\":\"idem-1\"}"),
        AGAPE_STEP_SEND);
    assert_int_equal(harness_op_answer(o, status, body, strlen(body), h1, v1, NULL),
                     AGAPE_STEP_DONE);
}

/* ---------------------------------------------------------------- */
/* Descriptor and init                                              */

static void test_descriptor(void **state)
{
    (void)state;
    const struct agape_plugin *d = g.pl->desc;
    assert_string_equal(d->name, "stripe");
    assert_int_equal(d->kinds, AGAPE_KIND_PAYMENT | AGAPE_KIND_WEBHOOK);
    assert_non_null(d->payment->charge);
    assert_non_null(d->payment->get);
    assert_non_null(d->payment->refund);
    assert_null(d->payment->capture); /* automatic capture */
    assert_non_null(d->webhook->verify);
    assert_non_null(d->webhook->normalize);
    assert_null(d->auth);
    assert_null(d->messaging);

    /* The option table: secret_key required and secret, with its variable. */
    bool seen_sk = false, seen_wh = false;
    for (const struct agape_option *o = d->options; o->name; o++) {
        if (strcmp(o->name, "secret_key") == 0) {
            seen_sk = true;
            assert_int_equal(o->flags, AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET);
            assert_string_equal(o->env, "STRIPE_SECRET_KEY");
        }
        if (strcmp(o->name, "webhook_secret") == 0) {
            seen_wh = true;
            assert_int_equal(o->flags, AGAPE_OPT_SECRET);
            assert_string_equal(o->env, "STRIPE_WEBHOOK_SECRET");
        }
    }
    assert_true(seen_sk && seen_wh);
}

static void expect_init_error(json_t *conf, const char *needle)
{
    char err[AGAPE_ERR_SIZE];
    assert_int_not_equal(harness_provider_init(&g, "stripe", conf, err, sizeof(err)), AGAPE_OK);
    assert_null(g.prov.ctx);
    if (strstr(err, needle) == NULL) {
        fail_msg("init error \"%s\" lacks \"%s\"", err, needle);
    }
    harness_provider_fini(&g);
}

static void test_init_errors(void **state)
{
    (void)state;
    expect_init_error(json_object(), "secret_key is required (set STRIPE_SECRET_KEY)");
    expect_init_error(json_pack("{s:s}", "secret_key", ""), "secret_key is required");
    expect_init_error(json_pack("{s:i}", "secret_key", 5),
                      "secret_key: expected a string (STRIPE_SECRET_KEY)");
    /* A publishable key in the wrong place: refused, and never echoed. */
    char err[AGAPE_ERR_SIZE];
    assert_int_equal(harness_provider_init(&g, "stripe",
                                           json_pack("{s:s}", "secret_key", "pk_test_abcdefgh"),
                                           err, sizeof(err)),
                     AGAPE_EINVAL);
    assert_non_null(strstr(err, "sk_ or rk_"));
    assert_null(strstr(err, "pk_test_abcdefgh"));
    harness_provider_fini(&g);
    expect_init_error(json_pack("{s:s, s:s}", "secret_key", SK, "base_url", "ftp://x"),
                      "base_url: expected an http:// or https:// URL");
    expect_init_error(json_pack("{s:s, s:s}", "secret_key", SK, "base_url", "https://"),
                      "base_url: expected an http:// or https:// URL with a host");
    expect_init_error(json_pack("{s:s, s:i}", "secret_key", SK, "webhook_tolerance_s", -1),
                      "webhook_tolerance_s");
    expect_init_error(json_pack("{s:s, s:s}", "secret_key", SK, "webhook_tolerance_s", "5m"),
                      "webhook_tolerance_s");
    expect_init_error(json_pack("{s:s, s:s}", "secret_key", SK, "api_version", "2023 08"),
                      "api_version");

    /* A restricted key is fine. */
    assert_int_equal(harness_provider_init(&g, "stripe",
                                           json_pack("{s:s}", "secret_key", "rk_test_abc"), err,
                                           sizeof(err)),
                     AGAPE_OK);
    harness_provider_fini(&g);
}

/* ---------------------------------------------------------------- */
/* charge: the request                                              */

static const char charge_input[] =
    "{\"payment_id\":\"pay_1\",\"amount\":1999,\"currency\":\"usd\","
    "\"description\":\"Pro plan, monthly\","
    "\"customer\":{\"id\":\"usr_42\",\"email\":\"ana@example.com\"},"
    "\"metadata\":{\"user_id\":\"42\"},"
    "\"return_url\":\"https://app.example.com/paid\","
    "\"idempotency_key\":\"gw-pay_1-charge-stripe\"}";

static void test_charge_request(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(
        harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, charge_input),
        AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "POST");
    assert_string_equal(o.x.url, "https://api.stripe.com/v1/payment_intents");
    assert_int_equal(o.x.n_req_headers, 3);
    assert_string_equal(harness_req_header(&o.x, "Authorization"), "Bearer " SK);
    assert_string_equal(harness_req_header(&o.x, "Idempotency-Key"), "gw-pay_1-charge-stripe");
    assert_string_equal(harness_req_header(&o.x, "Content-Type"),
                        "application/x-www-form-urlencoded");
    assert_null(harness_req_header(&o.x, "Stripe-Version"));
    assert_null(o.x.userpwd);
    /* customer.id is ours (usr_…), so no customer=; return_url is only valid
     * with confirm=true, which the gateway does not send. */
    const char expect[] = "amount=1999&currency=usd&description=Pro%20plan%2C%20monthly"
                          "&receipt_email=ana%40example.com"
                          "&automatic_payment_methods[enabled]=true"
                          "&metadata[agape_payment_id]=pay_1&metadata[user_id]=42";
    assert_int_equal(o.x.body_len, strlen(expect));
    assert_memory_equal(o.x.body, expect, strlen(expect));
    harness_op_end(&o);
}

static void test_charge_request_customer(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(
        harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge,
                         "{\"payment_id\":\"pay_2\",\"amount\":2000,\"currency\":\"eur\","
                         "\"customer\":{\"id\":\"cus_NffrFeUfNV2Hib\"},"
                         "\"metadata\":{\"order id\":\"A-17/ü\",\"z\":\"\"},"
                         "\"idempotency_key\":\"k2\"}"),
        AGAPE_STEP_SEND);
    const char expect[] = "amount=2000&currency=eur&customer=cus_NffrFeUfNV2Hib"
                          "&automatic_payment_methods[enabled]=true"
                          "&metadata[agape_payment_id]=pay_2"
                          "&metadata[order%20id]=A-17%2F%C3%BC&metadata[z]=";
    assert_string_equal(o.x.body, expect);
    assert_int_equal(o.x.body_len, strlen(expect));
    harness_op_end(&o);
}

static void test_charge_request_configured(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE];
    harness_provider_fini(&g);
    assert_int_equal(
        harness_provider_init(&g, "stripe",
                              json_pack("{s:s, s:s, s:s}", "secret_key", SK, "base_url",
                                        "http://127.0.0.1:12111//", "api_version", "2023-08-16"),
                              err, sizeof(err)),
        AGAPE_OK);
    struct harness_op o;
    assert_int_equal(
        harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, charge_input),
        AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, "http://127.0.0.1:12111/v1/payment_intents");
    assert_string_equal(harness_req_header(&o.x, "Stripe-Version"), "2023-08-16");
    assert_int_equal(o.x.n_req_headers, 4);
    harness_op_end(&o);
}

static void test_charge_zero_decimal(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(
        harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge,
                         "{\"payment_id\":\"pay_3\",\"amount\":1999,\"currency\":\"jpy\","
                         "\"idempotency_key\":\"k3\"}"),
        AGAPE_STEP_SEND);
    assert_string_equal(o.x.body, "amount=1999&currency=jpy"
                                  "&automatic_payment_methods[enabled]=true"
                                  "&metadata[agape_payment_id]=pay_3");
    harness_op_end(&o);
}

/* The step fails before any request: outcome INVALID, err contains needle. */
static void expect_charge_invalid(const char *input, const char *needle)
{
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, input),
                     AGAPE_STEP_FAIL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_null(o.x.url); /* nothing built */
    if (strstr(o.hc.pub.err, needle) == NULL) {
        fail_msg("err \"%s\" lacks \"%s\"", o.hc.pub.err, needle);
    }
    harness_op_end(&o);
}

static void test_charge_currency_rules(void **state)
{
    (void)state;
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":5124,\"currency\":\"kwd\","
                          "\"idempotency_key\":\"k\"}",
                          "amount 5124 is not valid for kwd");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":1001,\"currency\":\"bhd\","
                          "\"idempotency_key\":\"k\"}",
                          "e.g. 1000 or 1010");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":550,\"currency\":\"isk\","
                          "\"idempotency_key\":\"k\"}",
                          "divisible by 100");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"USD\","
                          "\"idempotency_key\":\"k\"}",
                          "currency must be a three-letter lowercase");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100000000,\"currency\":\"usd\","
                          "\"idempotency_key\":\"k\"}",
                          "eight digits");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":1.5,\"currency\":\"usd\","
                          "\"idempotency_key\":\"k\"}",
                          "amount must be an integer");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\"}",
                          "idempotency_key is required");
    expect_charge_invalid("{\"amount\":100,\"currency\":\"usd\",\"idempotency_key\":\"k\"}",
                          "payment_id is required");

    /* The valid neighbours go out unchanged. */
    struct harness_op o;
    assert_int_equal(harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge,
                                      "{\"payment_id\":\"p\",\"amount\":5120,\"currency\":\"kwd\","
                                      "\"idempotency_key\":\"k\"}"),
                     AGAPE_STEP_SEND);
    assert_non_null(strstr(o.x.body, "amount=5120&currency=kwd&"));
    harness_op_end(&o);
    assert_int_equal(harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge,
                                      "{\"payment_id\":\"p\",\"amount\":500,\"currency\":\"isk\","
                                      "\"idempotency_key\":\"k\"}"),
                     AGAPE_STEP_SEND);
    assert_non_null(strstr(o.x.body, "amount=500&currency=isk&"));
    harness_op_end(&o);
}

static void test_charge_metadata_rules(void **state)
{
    (void)state;
    char input[8192];
    const char key41[] = "k2345678901234567890123456789012345678901";
    assert_int_equal(strlen(key41), 41);

    snprintf(input, sizeof(input),
             "{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\",\"idempotency_key\":\"k\","
             "\"metadata\":{\"%s\":\"v\"}}",
             key41);
    expect_charge_invalid(input, key41);

    /* 40 characters, counted as characters (é is two bytes). */
    struct harness_op o;
    snprintf(input, sizeof(input),
             "{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\",\"idempotency_key\":\"k\","
             "\"metadata\":{\"%.39sé\":\"v\"}}",
             key41);
    assert_int_equal(harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, input),
                     AGAPE_STEP_SEND);
    harness_op_end(&o);

    char value[600];
    memset(value, 'v', 501);
    value[501] = '\0';
    snprintf(input, sizeof(input),
             "{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\",\"idempotency_key\":\"k\","
             "\"metadata\":{\"note\":\"%s\"}}",
             value);
    expect_charge_invalid(input, "metadata.note has 501 characters; Stripe allows 500");
    value[500] = '\0';
    snprintf(input, sizeof(input),
             "{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\",\"idempotency_key\":\"k\","
             "\"metadata\":{\"note\":\"%s\"}}",
             value);
    assert_int_equal(harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, input),
                     AGAPE_STEP_SEND);
    harness_op_end(&o);

    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\","
                          "\"idempotency_key\":\"k\",\"metadata\":{\"user_id\":42}}",
                          "metadata.user_id must be a string");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\","
                          "\"idempotency_key\":\"k\",\"metadata\":{\"a[b]\":\"x\"}}",
                          "must not contain [ or ]");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\","
                          "\"idempotency_key\":\"k\",\"metadata\":{\"agape_payment_id\":\"x\"}}",
                          "metadata.agape_payment_id is reserved");

    /* 49 keys of ours + agape_payment_id = 50: fine; 50 + 1: refused. */
    for (int n = 49; n <= 50; n++) {
        struct agape_buf b;
        buf_init(&b, 0);
        buf_adds(&b, "{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\","
                     "\"idempotency_key\":\"k\",\"metadata\":{");
        for (int i = 0; i < n; i++) {
            buf_printf(&b, "%s\"k%d\":\"v\"", i ? "," : "", i);
        }
        buf_adds(&b, "}}");
        if (n == 49) {
            assert_int_equal(
                harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, buf_cstr(&b)),
                AGAPE_STEP_SEND);
            harness_op_end(&o);
        } else {
            expect_charge_invalid(buf_cstr(&b), "metadata has 50 keys; Stripe allows 50");
        }
        buf_fini(&b);
    }
}

/* ---------------------------------------------------------------- */
/* charge: the answers                                              */

static void test_charge_ok_fixture(void **state)
{
    (void)state;
    struct harness_op o;
    charge_answer_fixture(&o, 200, "payment_intent_200.json", "Request-Id", "req_1");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "status"),
                        "requires_action"); /* requires_payment_method */
    assert_string_equal(harness_res_str(&o, "provider_ref"), "pi_1NnlpVGPxmnHQRkJNuz3w9tH");
    assert_string_equal(harness_res_str(&o, "client_secret"),
                        "pi_1NnlpVGPxmnHQRkJNuz3w9tH_secret_h5EkobjXWLvrU8iWiSmSgifBy");
    assert_int_equal(json_object_size(o.hc.result), 3);
    harness_op_end(&o);
}

static void test_charge_status_map(void **state)
{
    (void)state;
    static const char *const map[][2] = {
        {"requires_payment_method", "requires_action"},
        {"requires_confirmation", "requires_action"},
        {"requires_action", "requires_action"},
        {"requires_capture", "requires_action"},
        {"processing", "processing"},
        {"succeeded", "succeeded"},
        {"canceled", "canceled"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"id\":\"pi_3\",\"object\":\"payment_intent\",\"status\":\"%s\"}", map[i][0]);
        struct harness_op o;
        charge_answer_text(&o, 200, body, NULL, NULL);
        assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
        assert_string_equal(harness_res_str(&o, "status"), map[i][1]);
        assert_string_equal(harness_res_str(&o, "provider_ref"), "pi_3");
        assert_null(harness_res_str(&o, "client_secret"));
        harness_op_end(&o);
    }
}

static void expect_charge_outcome(int status, const char *body, const char *h, const char *v,
                                  enum agape_outcome outcome, const char *needle)
{
    struct harness_op o;
    charge_answer_text(&o, status, body, h, v);
    assert_int_equal(o.hc.pub.outcome, outcome);
    if (strstr(o.hc.pub.err, needle) == NULL) {
        fail_msg("HTTP %d: err \"%s\" lacks \"%s\"", status, o.hc.pub.err, needle);
    }
    assert_null(strstr(o.hc.pub.err, SK));
    harness_op_end(&o);
}

static void test_charge_unparseable_2xx(void **state)
{
    (void)state;
    expect_charge_outcome(200, "<html>oops</html>", NULL, NULL, AGAPE_OUTCOME_UNKNOWN,
                          "not a PaymentIntent");
    expect_charge_outcome(200, "", NULL, NULL, AGAPE_OUTCOME_UNKNOWN, "not a PaymentIntent");
    expect_charge_outcome(200, "{\"object\":\"payment_intent\",\"status\":\"succeeded\"}", NULL,
                          NULL, AGAPE_OUTCOME_UNKNOWN, "not a PaymentIntent");
    expect_charge_outcome(200, "{\"id\":\"pi_1\",\"status\":\"exploded\"}", NULL, NULL,
                          AGAPE_OUTCOME_UNKNOWN, "unknown status");
}

static void test_charge_declined(void **state)
{
    (void)state;
    struct harness_op o;
    charge_answer_fixture(&o, 402, "card_error_402.json", NULL, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_DECLINED);
    assert_string_equal(harness_res_str(&o, "status"), "failed");
    assert_string_equal(harness_res_str(&o, "decline_code"), "insufficient_funds");
    assert_string_equal(harness_res_str(&o, "message"), "Your card has insufficient funds.");
    assert_string_equal(harness_res_str(&o, "provider_ref"), "pi_1NnlpVGPxmnHQRkJNuz3w9tH");
    assert_non_null(strstr(o.hc.pub.err, "insufficient_funds"));
    harness_op_end(&o);

    /* card_error decides even without 402; a decline without decline_code
     * reports its code. */
    charge_answer_text(&o, 400,
                       "{\"error\":{\"type\":\"card_error\",\"code\":\"expired_card\","
                       "\"message\":\"Your card has expired.\"}}",
                       NULL, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_DECLINED);
    assert_string_equal(harness_res_str(&o, "decline_code"), "expired_card");
    assert_null(harness_res_str(&o, "provider_ref"));
    harness_op_end(&o);
}

static void test_charge_invalid_request(void **state)
{
    (void)state;
    struct harness_op o;
    charge_answer_fixture(&o, 400, "invalid_request_400.json", NULL, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_string_equal(o.hc.pub.err, "Missing required param: currency. (param: currency)");
    assert_int_equal(json_object_size(o.hc.result), 0);
    harness_op_end(&o);

    charge_answer_fixture(&o, 400, "idempotency_error_400.json", NULL, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_non_null(strstr(o.hc.pub.err, "idempotency_error: Keys for idempotent requests"));
    harness_op_end(&o);

    expect_charge_outcome(404,
                          "{\"error\":{\"type\":\"invalid_request_error\",\"code\":"
                          "\"resource_missing\",\"message\":\"No such payment_intent: 'pi_x'\","
                          "\"param\":\"intent\"}}",
                          NULL, NULL, AGAPE_OUTCOME_INVALID, "No such payment_intent");
}

static void test_charge_rate_limited(void **state)
{
    (void)state;
    struct harness_op o;
    charge_answer_fixture(&o, 429, "rate_limit_429.json", "Retry-After", "2");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_RATE_LIMITED);
    assert_int_equal(o.hc.pub.retry_after_ms, 2000);
    assert_non_null(strstr(o.hc.pub.err, "Too many requests"));
    harness_op_end(&o);

    charge_answer_fixture(&o, 429, "rate_limit_429.json", NULL, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_RATE_LIMITED);
    assert_int_equal(o.hc.pub.retry_after_ms, -1);
    harness_op_end(&o);

    /* Stripe also reports rate limits as 400 code=rate_limit. */
    charge_answer_fixture(&o, 400, "rate_limit_429.json", "retry-after", "1");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_RATE_LIMITED);
    assert_int_equal(o.hc.pub.retry_after_ms, 1000);
    harness_op_end(&o);

    /* An HTTP-date is not used (the core's backoff applies). */
    charge_answer_fixture(&o, 429, "rate_limit_429.json", "Retry-After",
                          "Wed, 21 Oct 2015 07:28:00 GMT");
    assert_int_equal(o.hc.pub.retry_after_ms, -1);
    harness_op_end(&o);
}

static void test_charge_error_table(void **state)
{
    (void)state;
    const char *auth = "{\"error\":{\"type\":\"invalid_request_error\","
                       "\"message\":\"Invalid API Key provided: " SK "\"}}";
    expect_charge_outcome(401, auth, NULL, NULL, AGAPE_OUTCOME_AUTH, "[redacted]");
    expect_charge_outcome(403, "{\"error\":{\"type\":\"invalid_request_error\","
                               "\"message\":\"The provided key does not have access\"}}",
                          NULL, NULL, AGAPE_OUTCOME_AUTH, "does not have access");
    expect_charge_outcome(409, "{\"error\":{\"type\":\"idempotency_error\","
                               "\"message\":\"concurrent\"}}",
                          NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE, "same key");
    expect_charge_outcome(500, "{\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}", NULL,
                          NULL, AGAPE_OUTCOME_UNAVAILABLE, "HTTP 500: boom");
    expect_charge_outcome(503, "Service Unavailable", NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE,
                          "HTTP 503");
    expect_charge_outcome(500, "{\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}",
                          "Stripe-Should-Retry", "false", AGAPE_OUTCOME_UNKNOWN,
                          "reconcile");
    expect_charge_outcome(500, "{}", "Stripe-Should-Retry", "true", AGAPE_OUTCOME_UNAVAILABLE,
                          "Stripe-Should-Retry: true");
    expect_charge_outcome(400, "{\"error\":{\"type\":\"invalid_request_error\","
                               "\"message\":\"lock\"}}",
                          "Stripe-Should-Retry", "true", AGAPE_OUTCOME_UNAVAILABLE,
                          "asks for a retry");
    /* 402 is a decline whatever the body says. */
    expect_charge_outcome(402, "Payment Required", NULL, NULL, AGAPE_OUTCOME_DECLINED,
                          "declined by Stripe");
    expect_charge_outcome(302, "", NULL, NULL, AGAPE_OUTCOME_UNKNOWN, "unexpected HTTP 302");
    expect_charge_outcome(424, "{}", NULL, NULL, AGAPE_OUTCOME_UNKNOWN, "unexpected HTTP 424");
    /* A 400 whose body is not Stripe's is still a refusal before processing. */
    expect_charge_outcome(400, "bad", NULL, NULL, AGAPE_OUTCOME_INVALID, "HTTP 400");
}

/* ---------------------------------------------------------------- */
/* get and refund                                                   */

static void test_get(void **state)
{
    (void)state;
    struct harness_op o;
    size_t len;
    assert_int_equal(harness_op_start(&o, &g.prov, "get", g.pl->desc->payment->get,
                                      "{\"payment_id\":\"pay_1\","
                                      "\"provider_ref\":\"pi_1NnlpVGPxmnHQRkJNuz3w9tH\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "GET");
    assert_string_equal(o.x.url,
                        "https://api.stripe.com/v1/payment_intents/pi_1NnlpVGPxmnHQRkJNuz3w9tH");
    assert_int_equal(o.x.n_req_headers, 1);
    assert_string_equal(harness_req_header(&o.x, "Authorization"), "Bearer " SK);
    assert_null(o.x.body);
    char *body = harness_fixture("stripe", "payment_intent_200.json", &len);
    assert_int_equal(harness_op_answer(&o, 200, body, len, NULL), AGAPE_STEP_DONE);
    free(body);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "provider_ref"), "pi_1NnlpVGPxmnHQRkJNuz3w9tH");
    harness_op_end(&o);

    static const char *const bad[] = {
        "{\"payment_id\":\"p\",\"provider_ref\":\"pi_../../v1/charges\"}",
        "{\"payment_id\":\"p\",\"provider_ref\":\"ch_123\"}",
        "{\"payment_id\":\"p\",\"provider_ref\":\"pi_\"}",
        "{\"payment_id\":\"p\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(harness_op_start(&o, &g.prov, "get", g.pl->desc->payment->get, bad[i]),
                         AGAPE_STEP_FAIL);
        assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
        assert_non_null(strstr(o.hc.pub.err, "provider_ref"));
        harness_op_end(&o);
    }
}

static void test_refund(void **state)
{
    (void)state;
    struct harness_op o;
    size_t len;
    assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                      "{\"payment_id\":\"pay_1\",\"provider_ref\":\"pi_123\","
                                      "\"amount\":500,\"currency\":\"usd\","
                                      "\"idempotency_key\":\"gw-pay_1-refund-1\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "POST");
    assert_string_equal(o.x.url, "https://api.stripe.com/v1/refunds");
    assert_string_equal(harness_req_header(&o.x, "Authorization"), "Bearer " SK);
    assert_string_equal(harness_req_header(&o.x, "Idempotency-Key"), "gw-pay_1-refund-1");
    assert_string_equal(harness_req_header(&o.x, "Content-Type"),
                        "application/x-www-form-urlencoded");
    assert_int_equal(o.x.n_req_headers, 3);
    assert_string_equal(o.x.body,
                        "payment_intent=pi_123&amount=500&metadata[agape_payment_id]=pay_1");
    char *body = harness_fixture("stripe", "refund_200.json", &len);
    assert_int_equal(harness_op_answer(&o, 200, body, len, NULL), AGAPE_STEP_DONE);
    free(body);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "refund_ref"), "re_1NnmX5GPxmnHQRkJzG1txqB9");
    assert_string_equal(harness_res_str(&o, "status"), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(o.hc.result, "amount")), 100);
    harness_op_end(&o);

    /* Full refund: no amount. Pending → processing, canceled → failed. */
    static const char *const map[][2] = {
        {"pending", "processing"}, {"failed", "failed"}, {"canceled", "failed"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                          "{\"payment_id\":\"pay_1\",\"provider_ref\":\"pi_123\","
                                          "\"currency\":\"usd\",\"idempotency_key\":\"k\"}"),
                         AGAPE_STEP_SEND);
        assert_string_equal(o.x.body, "payment_intent=pi_123&metadata[agape_payment_id]=pay_1");
        char rb[128];
        snprintf(rb, sizeof(rb), "{\"id\":\"re_9\",\"object\":\"refund\",\"status\":\"%s\"}",
                 map[i][0]);
        assert_int_equal(harness_op_answer(&o, 200, rb, strlen(rb), NULL), AGAPE_STEP_DONE);
        assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
        assert_string_equal(harness_res_str(&o, "status"), map[i][1]);
        assert_null(json_object_get(o.hc.result, "amount"));
        harness_op_end(&o);
    }

    /* Errors go through the same table; garbage 200 is UNKNOWN. */
    assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                      "{\"payment_id\":\"pay_1\",\"provider_ref\":\"pi_123\","
                                      "\"idempotency_key\":\"k\"}"),
                     AGAPE_STEP_SEND);
    body = harness_fixture("stripe", "invalid_request_400.json", &len);
    assert_int_equal(harness_op_answer(&o, 400, body, len, NULL), AGAPE_STEP_DONE);
    free(body);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    harness_op_end(&o);
    assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                      "{\"payment_id\":\"pay_1\",\"provider_ref\":\"pi_123\","
                                      "\"idempotency_key\":\"k\"}"),
                     AGAPE_STEP_SEND);
    assert_int_equal(harness_op_answer(&o, 200, "{", 1, NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNKNOWN);
    harness_op_end(&o);

    /* Refund amounts follow the currency rules too. */
    assert_int_equal(
        harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                         "{\"payment_id\":\"pay_1\",\"provider_ref\":\"pi_123\","
                         "\"amount\":5124,\"currency\":\"kwd\",\"idempotency_key\":\"k\"}"),
        AGAPE_STEP_FAIL);
    assert_non_null(strstr(o.hc.pub.err, "kwd"));
    harness_op_end(&o);
}

/* ---------------------------------------------------------------- */
/* Webhooks                                                         */

struct wh {
    struct host_call hc;
    struct agape_webhook w;
    struct client_header hdr[2];
};

/* Run verify (or normalize) over body with a Stripe-Signature header (NULL:
 * none) at time now_s. */
static enum agape_step wh_run(struct wh *c, agape_step_fn fn, const char *body, size_t len,
                              const char *sig, int64_t now_s)
{
    memset(c, 0, sizeof(*c));
    host_call_init(&c->hc, &g.prov, "verify", NULL, NULL);
    c->w.body = body;
    c->w.body_len = len;
    c->w.url = "http://127.0.0.1:8080/v1/webhooks/stripe";
    c->w.now_s = now_s;
    c->hc.pub.webhook = &c->w;
    c->hdr[0].name = (char *)"Content-Type";
    c->hdr[0].value = (char *)"application/json";
    c->hdr[1].name = (char *)"Stripe-Signature";
    c->hdr[1].value = (char *)sig;
    c->hc.wh_headers = c->hdr;
    c->hc.n_wh_headers = sig ? 2 : 1;
    return host_call_step(&c->hc, fn);
}

/* verify → expected outcome, and err equal to `err` (NULL: empty). */
static void expect_verify(const char *body, size_t len, const char *sig, int64_t now_s,
                          enum agape_outcome outcome, const char *err)
{
    struct wh c;
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->verify, body, len, sig, now_s),
                     AGAPE_STEP_DONE);
    assert_int_equal(c.hc.pub.outcome, outcome);
    assert_string_equal(c.hc.pub.err, err ? err : "");
    host_call_fini(&c.hc);
}

/* "t=<t>,v1=<hmac>" computed here, independently of the plugin. */
static void sign(char *out, size_t outlen, const char *secret, int64_t t, const char *body,
                 size_t len)
{
    struct agape_buf b;
    unsigned char mac[32];
    char hex[65];
    buf_init(&b, 0);
    buf_printf(&b, "%" PRId64 ".", t);
    buf_add(&b, body, len);
    assert_int_equal(crypto_hmac_sha256(secret, strlen(secret), b.data, b.len, mac), AGAPE_OK);
    crypto_hex(mac, sizeof(mac), hex);
    snprintf(out, outlen, "t=%" PRId64 ",v1=%s", t, hex);
    buf_fini(&b);
}

static int setup_no_tolerance(void **state)
{
    char err[AGAPE_ERR_SIZE];
    (void)state;
    return harness_provider_init(&g, "stripe",
                                 json_pack("{s:s, s:s, s:i}", "secret_key", SK, "webhook_secret",
                                           WHSEC, "webhook_tolerance_s", 0),
                                 err, sizeof(err)) == AGAPE_OK
               ? 0
               : -1;
}

#define V_COMPACT "67da5088c63e080c71bd2bb0cb5c03d85a8fc6a21ce3aaf484df809654745b92"
#define V_PRETTY_1700 "3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd"
#define V_PRETTY_12345 "07b1ede164afb7b5de91267ffa656f568c65d6e0783ce0ac55ee094643578eda"

/* PROVIDERS.md §10.1 with the tolerance disabled: any timestamp. */
static void test_webhook_vectors_no_tolerance(void **state)
{
    (void)state;
    size_t clen, plen;
    char *compact = harness_fixture("stripe", "webhook_compact.json", &clen);
    char *pretty = harness_fixture("stripe", "webhook_dummy.json", &plen);
    assert_int_equal(plen, 125);

    expect_verify(compact, clen, "t=1700000000,v1=" V_COMPACT, 5, AGAPE_OUTCOME_OK, NULL);
    expect_verify(pretty, plen, "t=1700000000,v1=" V_PRETTY_1700, 5, AGAPE_OUTCOME_OK, NULL);
    /* stripe-python test_timestamp_off_but_no_tolerance */
    expect_verify(pretty, plen, "t=12345,v1=" V_PRETTY_12345, 1700000000, AGAPE_OUTCOME_OK,
                  NULL);
    free(compact);
    free(pretty);
}

static void test_webhook_vectors(void **state)
{
    (void)state;
    size_t clen, plen;
    char *compact = harness_fixture("stripe", "webhook_compact.json", &clen);
    char *pretty = harness_fixture("stripe", "webhook_dummy.json", &plen);
    const int64_t t = 1700000000;

    expect_verify(compact, clen, "t=1700000000,v1=" V_COMPACT, t + 10, AGAPE_OUTCOME_OK, NULL);
    expect_verify(pretty, plen, "t=1700000000,v1=" V_PRETTY_1700, t - 10, AGAPE_OUTCOME_OK,
                  NULL);
    /* With the default tolerance, t=12345 is stale. */
    expect_verify(pretty, plen, "t=12345,v1=" V_PRETTY_12345, t, AGAPE_OUTCOME_INVALID,
                  "Timestamp outside the tolerance zone");
    /* An extra bad v1 (a secret being rolled) and a v0 do not matter. */
    expect_verify(compact, clen, "t=1700000000,v1=" V_COMPACT ",v1=bad_signature", t,
                  AGAPE_OUTCOME_OK, NULL);
    expect_verify(compact, clen, "t=1700000000,v1=bad_signature,v1=" V_COMPACT ",v0=ab", t,
                  AGAPE_OUTCOME_OK, NULL);
    expect_verify(compact, clen, "t=1700000000,v0=" V_COMPACT, t, AGAPE_OUTCOME_INVALID,
                  "No signatures found with expected scheme v1");
    expect_verify(compact, clen, "bad_header", t, AGAPE_OUTCOME_INVALID,
                  "Unable to extract timestamp and signatures from header");
    expect_verify(compact, clen, "i'm not even a real signature header", t,
                  AGAPE_OUTCOME_INVALID, "Unable to extract timestamp and signatures from header");
    expect_verify(compact, clen, "t=17e8,v1=" V_COMPACT, t, AGAPE_OUTCOME_INVALID,
                  "Unable to extract timestamp and signatures from header");
    expect_verify(compact, clen, "t=1700000000,v1=bad_signature", t, AGAPE_OUTCOME_INVALID,
                  "No signatures found matching the expected signature for payload");
    /* Uppercase hex is not the signature Stripe sends. */
    expect_verify(compact, clen,
                  "t=1700000000,v1=67DA5088C63E080C71BD2BB0CB5C03D8"
                  "5A8FC6A21CE3AAF484DF809654745B92",
                  t, AGAPE_OUTCOME_INVALID,
                  "No signatures found matching the expected signature for payload");
    /* Tampered body: one byte cut, one byte changed. */
    expect_verify(compact, clen - 1, "t=1700000000,v1=" V_COMPACT, t, AGAPE_OUTCOME_INVALID,
                  "No signatures found matching the expected signature for payload");
    char saved = compact[8];
    compact[8] = 'V';
    expect_verify(compact, clen, "t=1700000000,v1=" V_COMPACT, t, AGAPE_OUTCOME_INVALID,
                  "No signatures found matching the expected signature for payload");
    compact[8] = saved;
    /* The signature binds the timestamp. */
    expect_verify(compact, clen, "t=1700000001,v1=" V_COMPACT, t, AGAPE_OUTCOME_INVALID,
                  "No signatures found matching the expected signature for payload");
    expect_verify(compact, clen, NULL, t, AGAPE_OUTCOME_INVALID, "No Stripe-Signature header");
    free(compact);
    free(pretty);
}

static void test_webhook_tolerance(void **state)
{
    (void)state;
    const char body[] = "{\"id\":\"evt_2\",\"object\":\"event\",\"type\":\"charge.refunded\"}";
    const int64_t now = 1800000000;
    char sig[256];

    sign(sig, sizeof(sig), WHSEC, now - 300, body, strlen(body));
    expect_verify(body, strlen(body), sig, now, AGAPE_OUTCOME_OK, NULL);
    sign(sig, sizeof(sig), WHSEC, now - 301, body, strlen(body));
    expect_verify(body, strlen(body), sig, now, AGAPE_OUTCOME_INVALID,
                  "Timestamp outside the tolerance zone");
    sign(sig, sizeof(sig), WHSEC, now + 300, body, strlen(body));
    expect_verify(body, strlen(body), sig, now, AGAPE_OUTCOME_OK, NULL);
    sign(sig, sizeof(sig), WHSEC, now + 301, body, strlen(body));
    expect_verify(body, strlen(body), sig, now, AGAPE_OUTCOME_INVALID,
                  "Timestamp outside the tolerance zone");
    /* The wrong secret, and the secret without its whsec_ prefix. */
    sign(sig, sizeof(sig), "whsec_other", now, body, strlen(body));
    expect_verify(body, strlen(body), sig, now, AGAPE_OUTCOME_INVALID,
                  "No signatures found matching the expected signature for payload");
    sign(sig, sizeof(sig), "test_secret", now, body, strlen(body));
    expect_verify(body, strlen(body), sig, now, AGAPE_OUTCOME_INVALID,
                  "No signatures found matching the expected signature for payload");
}

static void test_webhook_no_secret(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE];
    harness_provider_fini(&g);
    assert_int_equal(
        harness_provider_init(&g, "stripe", json_pack("{s:s}", "secret_key", SK), err, sizeof(err)),
        AGAPE_OK);
    expect_verify("{}", 2, "t=1700000000,v1=" V_COMPACT, 1700000000, AGAPE_OUTCOME_INVALID,
                  "webhook_secret not configured");
}

static void expect_normalize_invalid(const char *body, const char *needle)
{
    struct wh c;
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, body, strlen(body), "x", 0),
                     AGAPE_STEP_DONE);
    assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    if (strstr(c.hc.pub.err, needle) == NULL) {
        fail_msg("err \"%s\" lacks \"%s\"", c.hc.pub.err, needle);
    }
    host_call_fini(&c.hc);
}

static void test_webhook_normalize(void **state)
{
    (void)state;
    struct wh c;
    const char pi_ev[] =
        "{\"id\":\"evt_3MtwBwLkdIwHu7ix28a3tqPa\",\"object\":\"event\","
        "\"type\":\"payment_intent.succeeded\",\"api_version\":\"2023-08-16\","
        "\"data\":{\"object\":{\"id\":\"pi_3MtwBwLkdIwHu7ix28a3tqPa\","
        "\"object\":\"payment_intent\",\"amount\":2000,\"status\":\"succeeded\","
        "\"metadata\":{\"agape_payment_id\":\"pay_1\"}}}}";
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, pi_ev, strlen(pi_ev), "x", 0),
                     AGAPE_STEP_DONE);
    assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_OK);
    json_t *r = c.hc.result;
    assert_string_equal(json_string_value(json_object_get(r, "event_id")),
                        "evt_3MtwBwLkdIwHu7ix28a3tqPa");
    assert_string_equal(json_string_value(json_object_get(r, "type")),
                        "payment_intent.succeeded");
    assert_string_equal(json_string_value(json_object_get(r, "payment_ref")),
                        "pi_3MtwBwLkdIwHu7ix28a3tqPa");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "succeeded");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(r, "object"), "metadata"),
                            "agape_payment_id")),
                        "pay_1");
    host_call_fini(&c.hc);

    static const char *const types[][2] = {
        {"payment_intent.payment_failed", "failed"},
        {"payment_intent.canceled", "canceled"},
        {"payment_intent.processing", "processing"},
        {"payment_intent.created", NULL},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"id\":\"evt_1\",\"object\":\"event\",\"type\":\"%s\",\"data\":{\"object\":"
                 "{\"id\":\"pi_9\",\"object\":\"payment_intent\",\"status\":"
                 "\"requires_payment_method\"}}}",
                 types[i][0]);
        assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, body, strlen(body), "x", 0),
                         AGAPE_STEP_DONE);
        assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_OK);
        assert_string_equal(json_string_value(json_object_get(c.hc.result, "payment_ref")),
                            "pi_9");
        const char *st = json_string_value(json_object_get(c.hc.result, "status"));
        if (types[i][1]) {
            assert_string_equal(st, types[i][1]);
        } else {
            assert_null(st);
        }
        host_call_fini(&c.hc);
    }

    /* A charge: the PaymentIntent it belongs to; refunded in full. */
    const char ch_ev[] = "{\"id\":\"evt_4\",\"object\":\"event\",\"type\":\"charge.refunded\","
                         "\"data\":{\"object\":{\"id\":\"ch_1\",\"object\":\"charge\","
                         "\"payment_intent\":\"pi_7\",\"refunded\":true}}}";
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, ch_ev, strlen(ch_ev), "x", 0),
                     AGAPE_STEP_DONE);
    assert_string_equal(json_string_value(json_object_get(c.hc.result, "payment_ref")), "pi_7");
    assert_string_equal(json_string_value(json_object_get(c.hc.result, "status")), "refunded");
    host_call_fini(&c.hc);
    /* A partial refund leaves the payment's status alone. */
    const char part_ev[] = "{\"id\":\"evt_5\",\"object\":\"event\",\"type\":\"charge.refunded\","
                           "\"data\":{\"object\":{\"id\":\"ch_1\",\"object\":\"charge\","
                           "\"payment_intent\":\"pi_7\",\"refunded\":false}}}";
    assert_int_equal(
        wh_run(&c, g.pl->desc->webhook->normalize, part_ev, strlen(part_ev), "x", 0),
        AGAPE_STEP_DONE);
    assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_null(json_object_get(c.hc.result, "status"));
    host_call_fini(&c.hc);

    /* A subscription event: Stripe's object translated into the core's
     * normalized "subscription" (expanded ids, the period on the item). */
    const char sub_ev[] =
        "{\"id\":\"evt_9\",\"object\":\"event\",\"type\":\"customer.subscription.updated\","
        "\"created\":1700000123,\"data\":{\"object\":{\"id\":\"sub_1\","
        "\"object\":\"subscription\",\"customer\":{\"id\":\"cus_1\"},\"status\":\"active\","
        "\"cancel_at_period_end\":false,\"metadata\":{\"user_id\":\"42\"},"
        "\"items\":{\"data\":[{\"id\":\"si_1\",\"quantity\":2,"
        "\"current_period_end\":1900000000,"
        "\"price\":{\"id\":\"price_1\",\"product\":\"prod_1\"}}]}}}}";
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, sub_ev, strlen(sub_ev), "x", 0),
                     AGAPE_STEP_DONE);
    assert_int_equal(json_integer_value(json_object_get(c.hc.result, "created")), 1700000123);
    json_t *sub = json_object_get(c.hc.result, "subscription");
    assert_string_equal(json_string_value(json_object_get(sub, "id")), "sub_1");
    assert_string_equal(json_string_value(json_object_get(sub, "customer")), "cus_1");
    assert_string_equal(json_string_value(json_object_get(sub, "status")), "active");
    assert_false(json_is_true(json_object_get(sub, "deleted")));
    assert_int_equal(json_integer_value(json_object_get(sub, "current_period_end")), 1900000000);
    json_t *item = json_array_get(json_object_get(sub, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "price")), "price_1");
    assert_string_equal(json_string_value(json_object_get(item, "product")), "prod_1");
    assert_int_equal(json_integer_value(json_object_get(item, "quantity")), 2);
    host_call_fini(&c.hc);

    /* The §10.1 compact payload: no data.object, so no ref and no object. */
    size_t len;
    char *compact = harness_fixture("stripe", "webhook_compact.json", &len);
    assert_int_equal(wh_run(&c, g.pl->desc->webhook->normalize, compact, len, "x", 0),
                     AGAPE_STEP_DONE);
    assert_int_equal(c.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(json_string_value(json_object_get(c.hc.result, "event_id")), "evt_1");
    assert_string_equal(json_string_value(json_object_get(c.hc.result, "status")), "succeeded");
    assert_null(json_object_get(c.hc.result, "payment_ref"));
    assert_null(json_object_get(c.hc.result, "object"));
    host_call_fini(&c.hc);
    free(compact);

    expect_normalize_invalid("{\"id\":\"evt_6\",\"object\":\"v2.core.event\","
                             "\"type\":\"v1.billing.meter.error_report_triggered\"}",
                             "thin events");
    expect_normalize_invalid("{\"id\":\"6\",\"object\":\"event\",\"type\":\"x\"}", "evt_");
    expect_normalize_invalid("{\"id\":\"evt_6\",\"type\":\"x\"}", "not a Stripe event");
    expect_normalize_invalid("{\"id\":\"evt_6\",\"object\":\"event\"}", "type");
    expect_normalize_invalid("[1,2]", "not a JSON object");
    expect_normalize_invalid("{\"id\":", "not a JSON object");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test_setup_teardown(test_charge_request, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_request_customer, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_request_configured, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_zero_decimal, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_currency_rules, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_metadata_rules, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_ok_fixture, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_status_map, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_unparseable_2xx, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_declined, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_invalid_request, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_rate_limited, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_error_table, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_get, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_refund, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_vectors_no_tolerance, setup_no_tolerance,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_vectors, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_tolerance, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_no_secret, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_webhook_normalize, setup_default,
                                        teardown_provider),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
