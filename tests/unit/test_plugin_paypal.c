/* test_plugin_paypal — the paypal plugin, byte for byte, without a network.
 *
 * The real build/plugins/paypal.so is loaded with the real loader, given a
 * provider context by its own init(), and driven through the real host table
 * (host_call_step / host_call_answer) with a client_xfer whose answer part is
 * filled by hand from tests/fixtures/paypal/. Each operation may take several
 * requests (token, call, refreshed token, call again, a follow-up GET); the
 * helpers answer them one at a time. */
#include "buf.h"
#include "client.h"
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

#define CID "AeA1QIZXiflr1_-r0U2UbWTziOWX1GRQer5test"
#define SECRET "ECYYrrSHdKfk_Q0EdvzdGkzj58a66kKaUQ5dtestsecret"
/* The access_token of the recorded token answer (PROVIDERS.md §10.5). */
#define TOKEN "A015HzkFvnySgStf6vaZ9cqs.f.Csm1WbKZ9sJUBJOXu5Vk"
#define SANDBOX "https://api-m.sandbox.paypal.com"
#define ORDER_ID "5O190127TN364715T"
#define CAPTURE_ID "3C679366HH908993F"

/* ---------------------------------------------------------------- */
/* Scaffolding                                                      */

static struct harness g; /* the loaded plugin; a provider is made per test */

HARNESS_FIXTURES(g, "paypal")

static int setup_default(void **state)
{
    char err[AGAPE_ERR_SIZE];
    (void)state;
    return harness_provider_init(&g, "paypal",
                                 json_pack("{s:s, s:s}", "client_id", CID, "client_secret", SECRET),
                                 err, sizeof(err)) == AGAPE_OK
               ? 0
               : -1;
}

/* The provider cache as the host keeps it: {"v": value, "exp": mono ms}. */
static const char *cached_token(void)
{
    json_t *e = g.prov.cache ? json_object_get(g.prov.cache, "token") : NULL;
    return json_string_value(json_object_get(e, "v"));
}

static int64_t cached_ttl_ms(void)
{
    json_t *e = json_object_get(g.prov.cache, "token");
    assert_non_null(e);
    return (int64_t)json_integer_value(json_object_get(e, "exp")) - host_table()->mono_ms();
}

/* Put a token in the cache, as an earlier call would have. */
static void seed_token(const char *token)
{
    if (g.prov.cache == NULL) {
        g.prov.cache = json_object();
    }
    json_object_set_new(g.prov.cache, "token",
                        json_pack("{s:s, s:I}", "v", token, "exp",
                                  (json_int_t)(host_table()->mono_ms() + 3600 * 1000)));
}

static enum agape_step op_answer_fixture(struct harness_op *o, int status, const char *file,
                                         const char *h1, const char *v1)
{
    char *body = harness_fixture("paypal", file, NULL);
    enum agape_step st = harness_op_reanswer_text(o, status, body, h1, v1, NULL);
    free(body);
    return st;
}

/* The pending request is the token request, exactly. */
static void assert_token_request(struct harness_op *o, const char *base)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/oauth2/token", base);
    assert_string_equal(o->x.method, "POST");
    assert_string_equal(o->x.url, url);
    /* Basic client_id:client_secret: the host hands "user:password" to
     * libcurl (CURLOPT_USERPWD), which sends base64 of exactly these bytes. */
    assert_string_equal(o->x.userpwd, CID ":" SECRET);
    assert_int_equal(o->x.n_req_headers, 1);
    assert_string_equal(harness_req_header(&o->x, "Content-Type"),
                        "application/x-www-form-urlencoded");
    assert_null(harness_req_header(&o->x, "Authorization"));
    assert_int_equal(o->x.body_len, strlen("grant_type=client_credentials"));
    assert_memory_equal(o->x.body, "grant_type=client_credentials", o->x.body_len);
}

static void assert_bearer(struct harness_op *o, const char *token)
{
    char want[256];
    snprintf(want, sizeof(want), "Bearer %s", token);
    assert_string_equal(harness_req_header(&o->x, "Authorization"), want);
    assert_null(o->x.userpwd);
}

static void assert_body(struct harness_op *o, const char *want)
{
    if (o->x.body == NULL || o->x.body_len != strlen(want) ||
        memcmp(o->x.body, want, o->x.body_len) != 0) {
        fail_msg("body\n  %s\nwanted\n  %s", o->x.body ? o->x.body : "(none)", want);
    }
}

static void assert_err_has(struct harness_op *o, const char *needle)
{
    if (strstr(o->hc.pub.err, needle) == NULL) {
        fail_msg("err \"%s\" lacks \"%s\"", o->hc.pub.err, needle);
    }
}

/* No secret in err or in the result, ever. */
static void assert_no_secret(struct harness_op *o)
{
    char *res = json_dumps(o->hc.result, JSON_COMPACT);
    assert_null(strstr(o->hc.pub.err, SECRET));
    assert_null(strstr(o->hc.pub.err, TOKEN));
    assert_null(strstr(res, SECRET));
    assert_null(strstr(res, TOKEN));
    free(res);
}

static const char charge_input[] =
    "{\"payment_id\":\"pay_1\",\"amount\":1999,\"currency\":\"usd\","
    "\"description\":\"Pro plan, monthly\","
    "\"customer\":{\"id\":\"usr_42\",\"email\":\"ana@example.com\"},"
    "\"metadata\":{\"user_id\":\"42\"},"
    "\"return_url\":\"https://app.example.com/paid\","
    "\"cancel_url\":\"https://app.example.com/cancel\","
    "\"idempotency_key\":\"gw-pay_1-charge-paypal\"}";

static const char charge_body[] =
    "{\"intent\":\"CAPTURE\",\"purchase_units\":[{\"reference_id\":\"pay_1\","
    "\"custom_id\":\"pay_1\",\"description\":\"Pro plan, monthly\","
    "\"amount\":{\"currency_code\":\"USD\",\"value\":\"19.99\"}}],"
    "\"payment_source\":{\"paypal\":{\"experience_context\":{"
    "\"return_url\":\"https://app.example.com/paid\","
    "\"cancel_url\":\"https://app.example.com/cancel\",\"user_action\":\"PAY_NOW\"}}}}";

/* Start a charge with a token already cached; returns the op at the order
 * request. */
static void charge_cached(struct harness_op *o, const char *input)
{
    seed_token(TOKEN);
    assert_int_equal(harness_op_start(o, &g.prov, "charge", g.pl->desc->payment->charge, input),
                     AGAPE_STEP_SEND);
    assert_string_equal(o->x.url, SANDBOX "/v2/checkout/orders");
    assert_bearer(o, TOKEN);
}

/* ---------------------------------------------------------------- */
/* Descriptor and init                                              */

static void test_descriptor(void **state)
{
    (void)state;
    const struct agape_plugin *d = g.pl->desc;
    assert_string_equal(d->name, "paypal");
    assert_int_equal(d->kinds, AGAPE_KIND_PAYMENT | AGAPE_KIND_WEBHOOK);
    assert_non_null(d->payment->charge);
    assert_non_null(d->payment->get);
    assert_non_null(d->payment->capture);
    assert_non_null(d->payment->refund);
    assert_non_null(d->webhook->verify); /* test_plugin_paypal_webhook.c */
    assert_non_null(d->webhook->normalize);
    assert_null(d->auth);
    assert_null(d->messaging);

    static const struct {
        const char *name;
        uint32_t flags;
        const char *env;
    } want[] = {
        {"client_id", AGAPE_OPT_REQUIRED, "PAYPAL_CLIENT_ID"},
        {"client_secret", AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET, "PAYPAL_CLIENT_SECRET"},
        {"mode", 0, "PAYPAL_MODE"},
        {"base_url", 0, "PAYPAL_API_BASE"},
        {"webhook_id", 0, "PAYPAL_WEBHOOK_ID"},
        {"brand_name", 0, NULL},
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
        } else {
            assert_null(o->env);
        }
    }
}

static void expect_init_error(json_t *conf, const char *needle)
{
    char err[AGAPE_ERR_SIZE];
    assert_int_not_equal(harness_provider_init(&g, "paypal", conf, err, sizeof(err)), AGAPE_OK);
    assert_null(g.prov.ctx);
    if (strstr(err, needle) == NULL) {
        fail_msg("init error \"%s\" lacks \"%s\"", err, needle);
    }
    assert_null(strstr(err, SECRET));
    harness_provider_fini(&g);
}

static void test_init_errors(void **state)
{
    (void)state;
    expect_init_error(json_pack("{s:s}", "client_secret", SECRET),
                      "client_id is required (set PAYPAL_CLIENT_ID)");
    expect_init_error(json_pack("{s:s}", "client_id", CID),
                      "client_secret is required (set PAYPAL_CLIENT_SECRET)");
    expect_init_error(json_pack("{s:s, s:s}", "client_id", CID, "client_secret", ""),
                      "client_secret is required");
    expect_init_error(json_pack("{s:s, s:i}", "client_id", CID, "client_secret", 7),
                      "client_secret: expected a string (PAYPAL_CLIENT_SECRET)");
    expect_init_error(json_pack("{s:s, s:s}", "client_id", "a:b", "client_secret", SECRET),
                      "client_id must be printable ASCII without spaces or ':'");
    expect_init_error(json_pack("{s:s, s:s}", "client_id", CID, "client_secret", SECRET " x"),
                      "client_secret must be printable ASCII");
    expect_init_error(json_pack("{s:s, s:s, s:s}", "client_id", CID, "client_secret", SECRET,
                                "mode", "production"),
                      "mode must be \"sandbox\" or \"live\" (PAYPAL_MODE), not \"production\"");
    expect_init_error(json_pack("{s:s, s:s, s:i}", "client_id", CID, "client_secret", SECRET,
                                "mode", 1),
                      "mode: expected a string (PAYPAL_MODE)");
    expect_init_error(json_pack("{s:s, s:s, s:s}", "client_id", CID, "client_secret", SECRET,
                                "base_url", "ftp://x"),
                      "base_url: expected an http:// or https:// URL");
    expect_init_error(json_pack("{s:s, s:s, s:s}", "client_id", CID, "client_secret", SECRET,
                                "base_url", "https:///"),
                      "base_url: expected an http:// or https:// URL with a host");
}

/* The base URL each configuration gives, read off the token request. */
static void expect_base(json_t *conf, const char *base)
{
    char err[AGAPE_ERR_SIZE];
    assert_int_equal(harness_provider_init(&g, "paypal", conf, err, sizeof(err)), AGAPE_OK);
    struct harness_op o;
    assert_int_equal(
        harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, charge_input),
        AGAPE_STEP_SEND);
    assert_token_request(&o, base);
    harness_op_end(&o);
    harness_provider_fini(&g);
}

static void test_init_mode_and_base(void **state)
{
    (void)state;
    expect_base(json_pack("{s:s, s:s}", "client_id", CID, "client_secret", SECRET), SANDBOX);
    expect_base(json_pack("{s:s, s:s, s:s}", "client_id", CID, "client_secret", SECRET, "mode",
                          "sandbox"),
                SANDBOX);
    expect_base(json_pack("{s:s, s:s, s:s}", "client_id", CID, "client_secret", SECRET, "mode",
                          "live"),
                "https://api-m.paypal.com");
    /* An unset PAYPAL_MODE arrives as "": the default. */
    expect_base(json_pack("{s:s, s:s, s:s}", "client_id", CID, "client_secret", SECRET, "mode",
                          ""),
                SANDBOX);
    /* base_url wins over mode; trailing slashes go. */
    expect_base(json_pack("{s:s, s:s, s:s, s:s, s:s}", "client_id", CID, "client_secret", SECRET,
                          "mode", "live", "base_url", "http://127.0.0.1:8089//", "webhook_id",
                          "4JH86294D6297924G"),
                "http://127.0.0.1:8089");
}

/* ---------------------------------------------------------------- */
/* Token, then the order, in one call                               */

static void test_token_then_order(void **state)
{
    (void)state;
    struct harness_op o;
    assert_null(cached_token());
    assert_int_equal(
        harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, charge_input),
        AGAPE_STEP_SEND);
    assert_token_request(&o, SANDBOX);
    assert_string_equal(json_string_value(json_object_get(o.hc.state, "phase")), "token");

    /* The recorded token answer: cached for expires_in − 300 s, and the
     * order goes out in the same call. */
    assert_int_equal(op_answer_fixture(&o, 200, "token_200.json", NULL, NULL), AGAPE_STEP_SEND);
    assert_string_equal(cached_token(), TOKEN);
    int64_t ttl = cached_ttl_ms();
    assert_true(ttl > (28800 - 300) * 1000LL - 5000 && ttl <= (28800 - 300) * 1000LL);

    assert_string_equal(o.x.method, "POST");
    assert_string_equal(o.x.url, SANDBOX "/v2/checkout/orders");
    assert_int_equal(o.x.n_req_headers, 4);
    assert_bearer(&o, TOKEN);
    assert_string_equal(harness_req_header(&o.x, "Content-Type"), "application/json");
    assert_string_equal(harness_req_header(&o.x, "PayPal-Request-Id"), "gw-pay_1-charge-paypal");
    assert_string_equal(harness_req_header(&o.x, "Prefer"), "return=representation");
    assert_body(&o, charge_body);
    /* The token never goes into the call's state. */
    char *st = json_dumps(o.hc.state, JSON_COMPACT);
    assert_null(strstr(st, TOKEN));
    free(st);

    assert_int_equal(op_answer_fixture(&o, 201, "order_payer_action_201.json", NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "status"), "requires_action");
    assert_string_equal(harness_res_str(&o, "provider_ref"), ORDER_ID);
    assert_string_equal(harness_res_str(&o, "approval_url"),
                        "https://www.sandbox.paypal.com/checkoutnow?token=" ORDER_ID);
    assert_int_equal(json_object_size(o.hc.result), 3);
    assert_int_equal(o.hc.pub.step, 2);
    harness_op_end(&o);

    /* The second charge skips the token step. */
    assert_int_equal(
        harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, charge_input),
        AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, SANDBOX "/v2/checkout/orders");
    assert_bearer(&o, TOKEN);
    assert_body(&o, charge_body);
    assert_int_equal(op_answer_fixture(&o, 201, "order_created_201.json", NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    /* The classic flow's link is "approve". */
    assert_string_equal(harness_res_str(&o, "approval_url"),
                        "https://www.sandbox.paypal.com/checkoutnow?token=" ORDER_ID);
    harness_op_end(&o);
}

static void test_token_ttl_floor(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(
        harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, charge_input),
        AGAPE_STEP_SEND);
    assert_int_equal(
        harness_op_reanswer_text(&o, 200,
                                 "{\"access_token\":\"A21AA-short\",\"token_type\":\"Bearer\","
                                 "\"expires_in\":100}",
                                 NULL),
        AGAPE_STEP_SEND);
    int64_t ttl = cached_ttl_ms();
    assert_true(ttl > 55000 && ttl <= 60000);
    assert_bearer(&o, "A21AA-short");
    harness_op_end(&o);
}

static void expect_token_error(int status, const char *body, const char *h, const char *v,
                               enum agape_outcome outcome, int64_t retry_ms, const char *needle)
{
    struct harness_op o;
    assert_int_equal(
        harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, charge_input),
        AGAPE_STEP_SEND);
    assert_int_equal(harness_op_reanswer_text(&o, status, body, h, v, NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, outcome);
    assert_int_equal(o.hc.pub.retry_after_ms, retry_ms);
    assert_err_has(&o, needle);
    assert_no_secret(&o);
    assert_null(cached_token());
    harness_op_end(&o);
}

static void test_token_errors(void **state)
{
    (void)state;
    char *body = harness_fixture("paypal", "token_401.json", NULL);
    expect_token_error(401, body, NULL, NULL, AGAPE_OUTCOME_AUTH, -1,
                       "(HTTP 401 invalid_client): Client Authentication failed");
    free(body);
    expect_token_error(400,
                       "{\"error\":\"invalid_client\",\"error_description\":"
                       "\"Client Authentication failed\"}",
                       NULL, NULL, AGAPE_OUTCOME_AUTH, -1, "refused the client credentials");
    expect_token_error(429, "{\"name\":\"RATE_LIMIT_REACHED\"}", "Retry-After", "7",
                       AGAPE_OUTCOME_RATE_LIMITED, 7000, "RATE_LIMIT_REACHED");
    expect_token_error(503, "", NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE, -1, "HTTP 503");
    expect_token_error(200, "<html>", NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE, -1,
                       "no usable Bearer access_token");
    expect_token_error(200, "{\"access_token\":\"a b\",\"expires_in\":9}", NULL, NULL,
                       AGAPE_OUTCOME_UNAVAILABLE, -1, "no usable");
    /* A message that echoes the secret has it redacted. */
    expect_token_error(401,
                       "{\"error\":\"invalid_client\",\"error_description\":\"bad " SECRET
                       "\"}",
                       NULL, NULL, AGAPE_OUTCOME_AUTH, -1, "bad [redacted]");
}

/* ---------------------------------------------------------------- */
/* 401: one refresh, one retry                                      */

static void test_refresh_on_401(void **state)
{
    (void)state;
    struct harness_op o;
    charge_cached(&o, charge_input);
    char *e401 = harness_fixture("paypal", "error_401_invalid_token.json", NULL);
    assert_int_equal(harness_op_reanswer_text(&o, 401, e401, NULL), AGAPE_STEP_SEND);
    /* The stale token is gone and a new one is fetched. */
    assert_null(cached_token());
    assert_token_request(&o, SANDBOX);
    assert_string_equal(json_string_value(json_object_get(o.hc.state, "phase")), "retry_token");
    assert_int_equal(harness_op_reanswer_text(&o, 200,
                                              "{\"scope\":\"x\",\"access_token\":\"A21AA-new\","
                                              "\"token_type\":\"Bearer\",\"app_id\":\"APP-1\","
                                              "\"expires_in\":32400}",
                                              NULL),
                     AGAPE_STEP_SEND);
    assert_string_equal(cached_token(), "A21AA-new");
    /* The same order again, same PayPal-Request-Id, with the new token. */
    assert_bearer(&o, "A21AA-new");
    assert_string_equal(harness_req_header(&o.x, "PayPal-Request-Id"), "gw-pay_1-charge-paypal");
    assert_body(&o, charge_body);
    assert_int_equal(op_answer_fixture(&o, 201, "order_payer_action_201.json", NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "status"), "requires_action");
    harness_op_end(&o);

    /* A second 401, with the fresh token: AUTH, no loop. */
    charge_cached(&o, charge_input);
    assert_int_equal(harness_op_reanswer_text(&o, 401, e401, NULL), AGAPE_STEP_SEND);
    assert_int_equal(op_answer_fixture(&o, 200, "token_200.json", NULL, NULL), AGAPE_STEP_SEND);
    assert_int_equal(harness_op_reanswer_text(&o, 401, e401, NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_AUTH);
    assert_err_has(&o, "invalid_token");
    assert_no_secret(&o);
    assert_int_equal(o.hc.pub.step, 3);
    harness_op_end(&o);

    /* A 401 to a token fetched in this very call is AUTH at once. */
    json_object_clear(g.prov.cache);
    assert_int_equal(
        harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, charge_input),
        AGAPE_STEP_SEND);
    assert_int_equal(op_answer_fixture(&o, 200, "token_200.json", NULL, NULL), AGAPE_STEP_SEND);
    assert_int_equal(harness_op_reanswer_text(&o, 401, e401, NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_AUTH);
    harness_op_end(&o);

    /* The refresh's token call may fail on its own terms. */
    charge_cached(&o, charge_input);
    assert_int_equal(harness_op_reanswer_text(&o, 401, e401, NULL), AGAPE_STEP_SEND);
    assert_int_equal(harness_op_reanswer_text(&o, 503, "", NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNAVAILABLE);
    harness_op_end(&o);
    free(e401);
}

/* ---------------------------------------------------------------- */
/* The order body                                                   */

/* The charge's amount member for this input amount and currency. */
static void expect_amount(int64_t amount, const char *cur, const char *want_member)
{
    char input[256];
    snprintf(input, sizeof(input),
             "{\"payment_id\":\"p\",\"amount\":%" PRId64 ",\"currency\":\"%s\","
             "\"idempotency_key\":\"k\"}",
             amount, cur);
    struct harness_op o;
    charge_cached(&o, input);
    if (strstr(o.x.body, want_member) == NULL) {
        fail_msg("%" PRId64 " %s: body %s lacks %s", amount, cur, o.x.body, want_member);
    }
    harness_op_end(&o);
}

static void expect_charge_invalid(const char *input, const char *needle)
{
    struct harness_op o;
    seed_token(TOKEN);
    assert_int_equal(harness_op_start(&o, &g.prov, "charge", g.pl->desc->payment->charge, input),
                     AGAPE_STEP_FAIL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_null(o.x.url); /* nothing built, not even the token request */
    assert_err_has(&o, needle);
    harness_op_end(&o);
}

static void test_amounts(void **state)
{
    (void)state;
    expect_amount(1999, "usd", "\"amount\":{\"currency_code\":\"USD\",\"value\":\"19.99\"}");
    expect_amount(5, "usd", "\"amount\":{\"currency_code\":\"USD\",\"value\":\"0.05\"}");
    expect_amount(100, "eur", "\"amount\":{\"currency_code\":\"EUR\",\"value\":\"1.00\"}");
    expect_amount(1000, "jpy", "\"amount\":{\"currency_code\":\"JPY\",\"value\":\"1000\"}");
    expect_amount(7, "krw", "\"value\":\"7\"}");
    expect_amount(5124, "kwd", "\"amount\":{\"currency_code\":\"KWD\",\"value\":\"5.124\"}");
    expect_amount(50, "bhd", "\"value\":\"0.050\"}");
    /* HUF and TWD: hundredths in, whole units out. */
    expect_amount(150000, "huf", "\"amount\":{\"currency_code\":\"HUF\",\"value\":\"1500\"}");
    expect_amount(100, "twd", "\"amount\":{\"currency_code\":\"TWD\",\"value\":\"1\"}");
    expect_amount(999999999999999LL * 100 + 99, "usd", "\"value\":\"999999999999999.99\"}");

    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":150050,\"currency\":\"huf\","
                          "\"idempotency_key\":\"k\"}",
                          "amount 150050 is not valid for huf: PayPal takes HUF in whole units");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":12345,\"currency\":\"twd\","
                          "\"idempotency_key\":\"k\"}",
                          "divisible by 100");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100000000000000000,"
                          "\"currency\":\"usd\",\"idempotency_key\":\"k\"}",
                          "amount is too large");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":0,\"currency\":\"usd\","
                          "\"idempotency_key\":\"k\"}",
                          "amount must be a positive integer");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":1.5,\"currency\":\"usd\","
                          "\"idempotency_key\":\"k\"}",
                          "amount must be an integer");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"USD\","
                          "\"idempotency_key\":\"k\"}",
                          "currency must be a three-letter lowercase");
}

static void test_charge_input_rules(void **state)
{
    (void)state;
    char input[1024];
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\"}",
                          "idempotency_key is required");
    expect_charge_invalid("{\"amount\":100,\"currency\":\"usd\",\"idempotency_key\":\"k\"}",
                          "payment_id is required");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\","
                          "\"idempotency_key\":\"a b\"}",
                          "idempotency_key must be 1 to 108 printable");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\","
                          "\"idempotency_key\":\"k\",\"description\":5}",
                          "description must be a string");
    expect_charge_invalid("{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\","
                          "\"idempotency_key\":\"k\",\"return_url\":[]}",
                          "return_url must be a string");
    char id[200];
    memset(id, 'x', 128);
    id[128] = '\0';
    snprintf(input, sizeof(input),
             "{\"payment_id\":\"%s\",\"amount\":100,\"currency\":\"usd\","
             "\"idempotency_key\":\"k\"}",
             id);
    expect_charge_invalid(input, "payment_id has more than 127 characters");
    char key[200];
    memset(key, 'k', 109);
    key[109] = '\0';
    snprintf(input, sizeof(input),
             "{\"payment_id\":\"p\",\"amount\":100,\"currency\":\"usd\","
             "\"idempotency_key\":\"%s\"}",
             key);
    expect_charge_invalid(input, "idempotency_key must be 1 to 108");
}

static void test_order_body_variants(void **state)
{
    (void)state;
    struct harness_op o;
    /* No return/cancel URL: no payment_source at all. */
    charge_cached(&o, "{\"payment_id\":\"pay_2\",\"amount\":2000,\"currency\":\"eur\","
                      "\"idempotency_key\":\"k2\"}");
    assert_body(&o, "{\"intent\":\"CAPTURE\",\"purchase_units\":[{\"reference_id\":\"pay_2\","
                    "\"custom_id\":\"pay_2\",\"amount\":{\"currency_code\":\"EUR\","
                    "\"value\":\"20.00\"}}]}");
    harness_op_end(&o);

    /* Only a return URL; description cut at 127 bytes. */
    char desc[200];
    memset(desc, 'd', 130);
    desc[130] = '\0';
    char input[512];
    snprintf(input, sizeof(input),
             "{\"payment_id\":\"pay_3\",\"amount\":1,\"currency\":\"usd\",\"description\":\"%s\","
             "\"return_url\":\"https://a.example/ok\",\"idempotency_key\":\"k3\"}",
             desc);
    charge_cached(&o, input);
    desc[127] = '\0';
    char want[1024];
    snprintf(want, sizeof(want),
             "{\"intent\":\"CAPTURE\",\"purchase_units\":[{\"reference_id\":\"pay_3\","
             "\"custom_id\":\"pay_3\",\"description\":\"%s\",\"amount\":{\"currency_code\":"
             "\"USD\",\"value\":\"0.01\"}}],\"payment_source\":{\"paypal\":{"
             "\"experience_context\":{\"return_url\":\"https://a.example/ok\","
             "\"user_action\":\"PAY_NOW\"}}}}",
             desc);
    assert_body(&o, want);
    harness_op_end(&o);

    /* 126 ASCII bytes and a two-byte é straddling byte 127: é goes whole. */
    memset(desc, 'd', 126);
    desc[126] = '\0';
    snprintf(input, sizeof(input),
             "{\"payment_id\":\"pay_4\",\"amount\":1,\"currency\":\"usd\","
             "\"description\":\"%s\xc3\xa9z\",\"idempotency_key\":\"k4\"}",
             desc);
    charge_cached(&o, input);
    snprintf(want, sizeof(want), "\"description\":\"%s\",\"amount\"", desc);
    assert_non_null(strstr(o.x.body, want));
    harness_op_end(&o);
    /* 125 ASCII + é fits in 127 bytes and is kept. */
    desc[125] = '\0';
    snprintf(input, sizeof(input),
             "{\"payment_id\":\"pay_5\",\"amount\":1,\"currency\":\"usd\","
             "\"description\":\"%s\xc3\xa9z\",\"idempotency_key\":\"k5\"}",
             desc);
    charge_cached(&o, input);
    snprintf(want, sizeof(want), "\"description\":\"%s\xc3\xa9\",\"amount\"", desc);
    assert_non_null(strstr(o.x.body, want));
    harness_op_end(&o);
}

static void test_order_body_brand(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE];
    assert_int_equal(
        harness_provider_init(&g, "paypal",
                              json_pack("{s:s, s:s, s:s}", "client_id", CID, "client_secret",
                                        SECRET, "brand_name", "Agape Inc"),
                              err, sizeof(err)),
        AGAPE_OK);
    struct harness_op o;
    charge_cached(&o, charge_input);
    assert_non_null(strstr(o.x.body, "\"experience_context\":{\"return_url\":\"https://app."
                                      "example.com/paid\",\"cancel_url\":\"https://app.example."
                                      "com/cancel\",\"user_action\":\"PAY_NOW\",\"brand_name\":"
                                      "\"Agape Inc\"}}}}"));
    harness_op_end(&o);
    /* Without URLs there is no experience context to carry it. */
    charge_cached(&o, "{\"payment_id\":\"p\",\"amount\":1,\"currency\":\"usd\","
                      "\"idempotency_key\":\"k\"}");
    assert_null(strstr(o.x.body, "brand_name"));
    harness_op_end(&o);
    harness_provider_fini(&g);
}

/* ---------------------------------------------------------------- */
/* Order answers and the error table                                */

/* A charge (token cached) answered with status/body; returns the op done. */
static void charge_answered(struct harness_op *o, int status, const char *body, const char *h,
                            const char *v)
{
    charge_cached(o, charge_input);
    assert_int_equal(harness_op_reanswer_text(o, status, body, h, v, NULL), AGAPE_STEP_DONE);
}

static void expect_charge_outcome(int status, const char *body, const char *h, const char *v,
                                  enum agape_outcome outcome, const char *needle)
{
    struct harness_op o;
    charge_answered(&o, status, body, h, v);
    if (o.hc.pub.outcome != outcome) {
        fail_msg("HTTP %d: outcome %d, wanted %d (err %s)", status, (int)o.hc.pub.outcome,
                 (int)outcome, o.hc.pub.err);
    }
    assert_err_has(&o, needle);
    assert_no_secret(&o);
    harness_op_end(&o);
}

static void expect_charge_fixture(int status, const char *file, enum agape_outcome outcome,
                                  const char *needle)
{
    char *body = harness_fixture("paypal", file, NULL);
    expect_charge_outcome(status, body, NULL, NULL, outcome, needle);
    free(body);
}

/* A 422 body with one issue; free() it. */
static char *error_422(const char *issue)
{
    size_t cap = 512;
    char *s = malloc(cap);
    assert_non_null(s);
    int n = snprintf(s, cap,
                     "{\"name\":\"UNPROCESSABLE_ENTITY\",\"details\":[{\"issue\":\"%s\","
                     "\"description\":\"about %s\"}],\"message\":\"The requested action could "
                     "not be performed.\",\"debug_id\":\"d1\"}",
                     issue, issue);
    assert_true(n > 0 && (size_t)n < cap);
    return s;
}

static void test_error_table(void **state)
{
    (void)state;
    struct harness_op o;

    /* 400: issue, description and the field. */
    charge_cached(&o, charge_input);
    char *body = harness_fixture("paypal", "error_400.json", NULL);
    assert_int_equal(harness_op_reanswer_text(&o, 400, body, "Paypal-Debug-Id", "hdr", NULL),
                     AGAPE_STEP_DONE);
    free(body);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_string_equal(o.hc.pub.err,
                        "PayPal refused the create order (HTTP 400 INVALID_PARAMETER_VALUE): "
                        "A parameter value is not valid. (field: /purchase_units/0/amount/value)"
                        " [debug_id b56b8a1e2c3d4]");
    assert_int_equal(json_object_size(o.hc.result), 0);
    harness_op_end(&o);

    expect_charge_outcome(403,
                          "{\"name\":\"NOT_AUTHORIZED\",\"details\":[{\"issue\":"
                          "\"PERMISSION_DENIED\",\"description\":\"You do not have permission "
                          "to access or perform operations on this resource.\"}]}",
                          "Paypal-Debug-Id", "f00d", AGAPE_OUTCOME_AUTH,
                          "PERMISSION_DENIED): You do not have permission");
    expect_charge_outcome(403, "", "Paypal-Debug-Id", "f00d", AGAPE_OUTCOME_AUTH,
                          "[debug_id f00d]");
    expect_charge_fixture(404, "order_404.json", AGAPE_OUTCOME_INVALID,
                          "(HTTP 404 INVALID_RESOURCE_ID): Resource id is invalid");
    expect_charge_outcome(409, "{}", NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE,
                          "retry with the same id");
    expect_charge_fixture(422, "error_422_not_approved.json", AGAPE_OUTCOME_INVALID,
                          "the buyer has not approved the order yet");
    char *e = error_422("DECIMAL_PRECISION");
    expect_charge_outcome(422, e, NULL, NULL, AGAPE_OUTCOME_INVALID,
                          "(HTTP 422 DECIMAL_PRECISION): about DECIMAL_PRECISION");
    free(e);
    expect_charge_outcome(429, "{\"name\":\"RATE_LIMIT_REACHED\"}", NULL, NULL,
                          AGAPE_OUTCOME_RATE_LIMITED, "RATE_LIMIT_REACHED");
    expect_charge_outcome(500, "{\"name\":\"INTERNAL_SERVER_ERROR\",\"message\":\"An internal "
                               "server error occurred.\"}",
                          NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE, "INTERNAL_SERVER_ERROR");
    expect_charge_outcome(503, "upstream down", NULL, NULL, AGAPE_OUTCOME_UNAVAILABLE,
                          "HTTP 503");
    expect_charge_outcome(415, "", NULL, NULL, AGAPE_OUTCOME_INVALID, "HTTP 415");
    expect_charge_outcome(302, "", NULL, NULL, AGAPE_OUTCOME_UNKNOWN, "HTTP 302");

    /* Unreadable 2xx: the order may exist; we cannot tell. */
    expect_charge_outcome(201, "<html>", NULL, NULL, AGAPE_OUTCOME_UNKNOWN, "not an order");
    expect_charge_outcome(201, "{\"id\":\"abc\",\"status\":\"CREATED\"}", NULL, NULL,
                          AGAPE_OUTCOME_UNKNOWN, "not an order");
    expect_charge_outcome(201, "{\"id\":\"ABC\",\"status\":\"EXPLODED\"}", NULL, NULL,
                          AGAPE_OUTCOME_UNKNOWN, "unknown status");

    /* A provider message that echoes our secrets has them redacted. */
    expect_charge_outcome(400,
                          "{\"name\":\"INVALID_REQUEST\",\"details\":[{\"issue\":\"X\","
                          "\"description\":\"" SECRET " and " TOKEN "\"}]}",
                          NULL, NULL, AGAPE_OUTCOME_INVALID, "[redacted] and [redacted]");
}

static void test_declines(void **state)
{
    (void)state;
    static const char *const issues[] = {"INSTRUMENT_DECLINED", "TRANSACTION_REFUSED",
                                         "PAYER_CANNOT_PAY", "PAYER_ACTION_REQUIRED"};
    for (size_t i = 0; i < sizeof(issues) / sizeof(issues[0]); i++) {
        struct harness_op o;
        char *e = error_422(issues[i]);
        charge_answered(&o, 422, e, NULL, NULL);
        free(e);
        assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_DECLINED);
        assert_string_equal(harness_res_str(&o, "status"), "failed");
        assert_string_equal(harness_res_str(&o, "decline_code"), issues[i]);
        char msg[64];
        snprintf(msg, sizeof(msg), "about %s", issues[i]);
        assert_string_equal(harness_res_str(&o, "message"), msg);
        assert_null(harness_res_str(&o, "approval_url"));
        assert_err_has(&o, issues[i]);
        harness_op_end(&o);
    }
}

static void test_rate_limited(void **state)
{
    (void)state;
    struct harness_op o;
    charge_cached(&o, charge_input);
    char *body = harness_fixture("paypal", "error_429.json", NULL);
    assert_int_equal(harness_op_reanswer_text(&o, 429, body, "Retry-After", "30", NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_RATE_LIMITED);
    assert_int_equal(o.hc.pub.retry_after_ms, 30000);
    assert_err_has(&o, "Too many requests");
    harness_op_end(&o);

    charge_cached(&o, charge_input);
    assert_int_equal(harness_op_reanswer_text(&o, 429, body, "Retry-After",
                                              "Wed, 21 Oct 2015 07:28:00 GMT", NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_RATE_LIMITED);
    assert_int_equal(o.hc.pub.retry_after_ms, -1);
    harness_op_end(&o);

    charge_cached(&o, charge_input);
    assert_int_equal(harness_op_reanswer_text(&o, 429, body, "Retry-After", "86400", NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.retry_after_ms, 3600 * 1000);
    harness_op_end(&o);

    /* Only a 429 carries a wait. */
    charge_cached(&o, charge_input);
    assert_int_equal(harness_op_reanswer_text(&o, 503, "", "Retry-After", "5", NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.retry_after_ms, -1);
    harness_op_end(&o);
    free(body);
}

/* ---------------------------------------------------------------- */
/* get                                                              */

static void get_answered(struct harness_op *o, int status, const char *body)
{
    seed_token(TOKEN);
    assert_int_equal(harness_op_start(o, &g.prov, "get", g.pl->desc->payment->get,
                                      "{\"payment_id\":\"pay_1\",\"provider_ref\":\"" ORDER_ID "\","
                                      "\"idempotency_key\":\"g1\"}"),
                     AGAPE_STEP_SEND);
    assert_int_equal(harness_op_reanswer_text(o, status, body, NULL), AGAPE_STEP_DONE);
}

static void test_get(void **state)
{
    (void)state;
    struct harness_op o;
    seed_token(TOKEN);
    assert_int_equal(harness_op_start(&o, &g.prov, "get", g.pl->desc->payment->get,
                                      "{\"payment_id\":\"pay_1\",\"provider_ref\":\"" ORDER_ID
                                      "\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "GET");
    assert_string_equal(o.x.url, SANDBOX "/v2/checkout/orders/" ORDER_ID);
    assert_int_equal(o.x.n_req_headers, 1);
    assert_bearer(&o, TOKEN);
    assert_null(o.x.body);
    assert_int_equal(op_answer_fixture(&o, 200, "order_approved_200.json", NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "status"), "requires_action");
    assert_string_equal(harness_res_str(&o, "provider_ref"), ORDER_ID);
    assert_null(harness_res_str(&o, "approval_url")); /* approved: no approval link left */
    harness_op_end(&o);

    static const char *const bad[] = {"5o190127tn364715t", "../orders", "",
                                      "0123456789012345678901234567890123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char input[256];
        snprintf(input, sizeof(input), "{\"payment_id\":\"p\",\"provider_ref\":\"%s\"}", bad[i]);
        assert_int_equal(harness_op_start(&o, &g.prov, "get", g.pl->desc->payment->get, input),
                         AGAPE_STEP_FAIL);
        assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
        assert_err_has(&o, "provider_ref must be a PayPal order id");
        assert_null(o.x.url);
        harness_op_end(&o);
    }

    char *nf = harness_fixture("paypal", "order_404.json", NULL);
    get_answered(&o, 404, nf);
    free(nf);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_err_has(&o, "get order (HTTP 404 INVALID_RESOURCE_ID)");
    harness_op_end(&o);
}

static void test_status_map(void **state)
{
    (void)state;
    static const struct {
        const char *order;   /* order status */
        const char *capture; /* captures[0].status or NULL */
        const char *want;
    } map[] = {
        {"CREATED", NULL, "requires_action"},
        {"SAVED", NULL, "requires_action"},
        {"APPROVED", NULL, "requires_action"},
        {"PAYER_ACTION_REQUIRED", NULL, "requires_action"},
        {"VOIDED", NULL, "canceled"},
        {"COMPLETED", NULL, "processing"}, /* no capture to look at */
        {"COMPLETED", "COMPLETED", "succeeded"},
        {"COMPLETED", "PENDING", "processing"},
        {"COMPLETED", "DECLINED", "failed"},
        {"COMPLETED", "FAILED", "failed"},
        {"COMPLETED", "PARTIALLY_REFUNDED", "succeeded"},
        {"COMPLETED", "REFUNDED", "refunded"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        char body[512];
        if (map[i].capture) {
            snprintf(body, sizeof(body),
                     "{\"id\":\"" ORDER_ID "\",\"status\":\"%s\",\"purchase_units\":[{"
                     "\"payments\":{\"captures\":[{\"id\":\"" CAPTURE_ID "\",\"status\":\"%s\"}"
                     "]}}]}",
                     map[i].order, map[i].capture);
        } else {
            snprintf(body, sizeof(body), "{\"id\":\"" ORDER_ID "\",\"status\":\"%s\"}",
                     map[i].order);
        }
        struct harness_op o;
        get_answered(&o, 200, body);
        assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
        assert_string_equal(harness_res_str(&o, "status"), map[i].want);
        if (map[i].capture) {
            assert_string_equal(harness_res_str(&o, "capture_ref"), CAPTURE_ID);
        } else {
            assert_null(harness_res_str(&o, "capture_ref"));
        }
        harness_op_end(&o);
    }
    struct harness_op o;
    get_answered(&o, 200, "{\"id\":\"" ORDER_ID "\",\"status\":\"COMPLETED\",\"purchase_units\":"
                          "[{\"payments\":{\"captures\":[{\"id\":\"C1\",\"status\":\"NEW\"}]}}]}");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNKNOWN);
    harness_op_end(&o);
}

/* ---------------------------------------------------------------- */
/* capture                                                          */

static const char capture_input[] = "{\"payment_id\":\"pay_1\",\"provider_ref\":\"" ORDER_ID
                                    "\",\"idempotency_key\":\"gw-pay_1-capture-paypal\"}";

static void capture_start(struct harness_op *o)
{
    seed_token(TOKEN);
    assert_int_equal(
        harness_op_start(o, &g.prov, "capture", g.pl->desc->payment->capture, capture_input),
        AGAPE_STEP_SEND);
}

static void test_capture(void **state)
{
    (void)state;
    struct harness_op o;
    capture_start(&o);
    assert_string_equal(o.x.method, "POST");
    assert_string_equal(o.x.url, SANDBOX "/v2/checkout/orders/" ORDER_ID "/capture");
    assert_int_equal(o.x.n_req_headers, 4);
    assert_bearer(&o, TOKEN);
    assert_string_equal(harness_req_header(&o.x, "Content-Type"), "application/json");
    assert_string_equal(harness_req_header(&o.x, "PayPal-Request-Id"), "gw-pay_1-capture-paypal");
    assert_string_equal(harness_req_header(&o.x, "Prefer"), "return=representation");
    assert_body(&o, "{}");
    assert_int_equal(op_answer_fixture(&o, 201, "order_captured_201.json", NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "status"), "succeeded");
    assert_string_equal(harness_res_str(&o, "provider_ref"), ORDER_ID);
    assert_string_equal(harness_res_str(&o, "capture_ref"), CAPTURE_ID);
    harness_op_end(&o);

    /* A capture the processor declined: the order is COMPLETED, the
     * payment is not. */
    capture_start(&o);
    assert_int_equal(harness_op_reanswer_text(
                         &o, 201,
                         "{\"id\":\"" ORDER_ID "\",\"status\":\"COMPLETED\","
                         "\"purchase_units\":[{\"payments\":{\"captures\":[{\"id\":\"" CAPTURE_ID
                         "\",\"status\":\"DECLINED\",\"status_details\":{"
                         "\"reason\":\"DECLINED_BY_RISK_FRAUD_FILTERS\"}}]}}]}",
                         NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_DECLINED);
    assert_string_equal(harness_res_str(&o, "status"), "failed");
    assert_string_equal(harness_res_str(&o, "decline_code"), "DECLINED_BY_RISK_FRAUD_FILTERS");
    assert_string_equal(harness_res_str(&o, "capture_ref"), CAPTURE_ID);
    harness_op_end(&o);

    /* PENDING: money not there yet. */
    capture_start(&o);
    assert_int_equal(harness_op_reanswer_text(
                         &o, 201,
                         "{\"id\":\"" ORDER_ID "\",\"status\":\"COMPLETED\","
                         "\"purchase_units\":[{\"payments\":{\"captures\":[{\"id\":\"" CAPTURE_ID
                         "\",\"status\":\"PENDING\"}]}}]}",
                         NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "status"), "processing");
    harness_op_end(&o);

    assert_int_equal(harness_op_start(&o, &g.prov, "capture", g.pl->desc->payment->capture,
                                      "{\"payment_id\":\"p\",\"provider_ref\":\"" ORDER_ID "\"}"),
                     AGAPE_STEP_FAIL);
    assert_err_has(&o, "idempotency_key is required");
    harness_op_end(&o);
}

static void test_capture_already_captured(void **state)
{
    (void)state;
    struct harness_op o;
    capture_start(&o);
    assert_int_equal(op_answer_fixture(&o, 422, "error_422_already_captured.json", NULL, NULL),
                     AGAPE_STEP_SEND);
    /* The follow-up: a plain GET of the order, in the same call. */
    assert_string_equal(o.x.method, "GET");
    assert_string_equal(o.x.url, SANDBOX "/v2/checkout/orders/" ORDER_ID);
    assert_int_equal(o.x.n_req_headers, 1);
    assert_bearer(&o, TOKEN);
    assert_null(o.x.body);
    assert_int_equal(op_answer_fixture(&o, 200, "order_captured_201.json", NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "status"), "succeeded");
    assert_string_equal(harness_res_str(&o, "capture_ref"), CAPTURE_ID);
    harness_op_end(&o);

    /* The follow-up's own failure is classified as a get. */
    capture_start(&o);
    assert_int_equal(op_answer_fixture(&o, 422, "error_422_already_captured.json", NULL, NULL),
                     AGAPE_STEP_SEND);
    assert_int_equal(harness_op_reanswer_text(&o, 503, "", NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNAVAILABLE);
    assert_err_has(&o, "get order");
    harness_op_end(&o);

    /* With the token gone meanwhile, the follow-up fetches one first. */
    capture_start(&o);
    json_object_clear(g.prov.cache);
    assert_int_equal(op_answer_fixture(&o, 422, "error_422_already_captured.json", NULL, NULL),
                     AGAPE_STEP_SEND);
    assert_token_request(&o, SANDBOX);
    assert_int_equal(op_answer_fixture(&o, 200, "token_200.json", NULL, NULL), AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "GET");
    assert_int_equal(op_answer_fixture(&o, 200, "order_captured_201.json", NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_string_equal(harness_res_str(&o, "status"), "succeeded");
    harness_op_end(&o);

    /* One refresh per call: after a refresh, a 401 to the follow-up GET
     * (which carries the now cached token) is AUTH, not a second refresh. */
    capture_start(&o);
    assert_int_equal(harness_op_reanswer_text(&o, 401, "{\"error\":\"invalid_token\"}", NULL),
                     AGAPE_STEP_SEND);
    assert_int_equal(op_answer_fixture(&o, 200, "token_200.json", NULL, NULL), AGAPE_STEP_SEND);
    assert_int_equal(op_answer_fixture(&o, 422, "error_422_already_captured.json", NULL, NULL),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "GET");
    assert_int_equal(harness_op_reanswer_text(&o, 401, "{\"error\":\"invalid_token\"}", NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_AUTH);
    assert_int_equal(o.hc.pub.step, 4);
    harness_op_end(&o);
}

static void test_capture_errors(void **state)
{
    (void)state;
    struct harness_op o;
    capture_start(&o);
    assert_int_equal(op_answer_fixture(&o, 422, "error_422_not_approved.json", NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_err_has(&o, "the buyer has not approved the order yet (HTTP 422 ORDER_NOT_APPROVED)");
    harness_op_end(&o);

    capture_start(&o);
    assert_int_equal(op_answer_fixture(&o, 422, "error_422_instrument_declined.json", NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_DECLINED);
    assert_string_equal(harness_res_str(&o, "status"), "failed");
    assert_string_equal(harness_res_str(&o, "decline_code"), "INSTRUMENT_DECLINED");
    assert_string_equal(harness_res_str(&o, "provider_ref"), ORDER_ID);
    /* The buyer goes back to PayPal to pick another funding source. */
    assert_string_equal(harness_res_str(&o, "approval_url"),
                        "https://www.sandbox.paypal.com/checkoutnow?token=" ORDER_ID);
    assert_err_has(&o, "declined by PayPal (capture order) (HTTP 422 INSTRUMENT_DECLINED)");
    assert_err_has(&o, "[debug_id ce07a7cbd4982]");
    harness_op_end(&o);

    /* A 401 on capture refreshes the token like any call. */
    capture_start(&o);
    assert_int_equal(harness_op_reanswer_text(&o, 401, "{\"error\":\"invalid_token\"}", NULL),
                     AGAPE_STEP_SEND);
    assert_int_equal(op_answer_fixture(&o, 200, "token_200.json", NULL, NULL), AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, SANDBOX "/v2/checkout/orders/" ORDER_ID "/capture");
    assert_string_equal(harness_req_header(&o.x, "PayPal-Request-Id"), "gw-pay_1-capture-paypal");
    assert_int_equal(op_answer_fixture(&o, 201, "order_captured_201.json", NULL, NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);
}

/* ---------------------------------------------------------------- */
/* refund                                                           */

static void test_refund(void **state)
{
    (void)state;
    struct harness_op o;
    seed_token(TOKEN);
    assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                      "{\"payment_id\":\"pay_1\",\"provider_ref\":\"" ORDER_ID "\","
                                      "\"capture_ref\":\"" CAPTURE_ID "\",\"amount\":1099,"
                                      "\"currency\":\"usd\",\"idempotency_key\":\"gw-r1\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "POST");
    assert_string_equal(o.x.url, SANDBOX "/v2/payments/captures/" CAPTURE_ID "/refund");
    assert_bearer(&o, TOKEN);
    assert_string_equal(harness_req_header(&o.x, "Content-Type"), "application/json");
    assert_string_equal(harness_req_header(&o.x, "PayPal-Request-Id"), "gw-r1");
    assert_body(&o, "{\"amount\":{\"value\":\"10.99\",\"currency_code\":\"USD\"}}");
    assert_int_equal(op_answer_fixture(&o, 201, "refund_201.json", NULL, NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "refund_ref"), "1JU08902781691411");
    assert_string_equal(harness_res_str(&o, "status"), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(o.hc.result, "amount")), 1099);
    harness_op_end(&o);

    /* Full refund: an empty object. */
    assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                      "{\"payment_id\":\"pay_1\",\"provider_ref\":\"" ORDER_ID "\","
                                      "\"capture_ref\":\"" CAPTURE_ID "\",\"currency\":\"usd\","
                                      "\"idempotency_key\":\"gw-r2\"}"),
                     AGAPE_STEP_SEND);
    assert_body(&o, "{}");
    static const char *const map[][2] = {
        {"PENDING", "processing"},
        {"FAILED", "failed"},
        {"CANCELLED", "failed"},
    };
    harness_op_end(&o);
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"id\":\"R1\",\"status\":\"%s\",\"amount\":{\"value\":\"1500\","
                 "\"currency_code\":\"HUF\"}}",
                 map[i][0]);
        assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                          "{\"payment_id\":\"p\",\"capture_ref\":\"C1\","
                                          "\"idempotency_key\":\"k\"}"),
                         AGAPE_STEP_SEND);
        assert_int_equal(harness_op_reanswer_text(&o, 201, body, NULL), AGAPE_STEP_DONE);
        assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
        assert_string_equal(harness_res_str(&o, "status"), map[i][1]);
        /* Back to hundredths for HUF. */
        assert_int_equal(json_integer_value(json_object_get(o.hc.result, "amount")), 150000);
        harness_op_end(&o);
    }

    /* Not captured yet. */
    assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                      "{\"payment_id\":\"p\",\"provider_ref\":\"" ORDER_ID "\","
                                      "\"currency\":\"usd\",\"idempotency_key\":\"k\"}"),
                     AGAPE_STEP_FAIL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_string_equal(o.hc.pub.err, "capture_ref missing: capture the payment first");
    assert_null(o.x.url);
    harness_op_end(&o);
    assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                      "{\"payment_id\":\"p\",\"capture_ref\":\"C1\",\"amount\":5,"
                                      "\"idempotency_key\":\"k\"}"),
                     AGAPE_STEP_FAIL);
    assert_err_has(&o, "(needed with amount)");
    harness_op_end(&o);
    assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                      "{\"payment_id\":\"p\",\"capture_ref\":\"C1/../x\","
                                      "\"idempotency_key\":\"k\"}"),
                     AGAPE_STEP_FAIL);
    assert_err_has(&o, "capture_ref must be a PayPal capture id");
    harness_op_end(&o);

    /* An unknown refund status, and an error. */
    assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                      "{\"payment_id\":\"p\",\"capture_ref\":\"C1\","
                                      "\"idempotency_key\":\"k\"}"),
                     AGAPE_STEP_SEND);
    assert_int_equal(
        harness_op_reanswer_text(&o, 201, "{\"id\":\"R1\",\"status\":\"WEIRD\"}", NULL),
        AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNKNOWN);
    harness_op_end(&o);
    char *e = error_422("CAPTURE_FULLY_REFUNDED");
    assert_int_equal(harness_op_start(&o, &g.prov, "refund", g.pl->desc->payment->refund,
                                      "{\"payment_id\":\"p\",\"capture_ref\":\"C1\","
                                      "\"idempotency_key\":\"k\"}"),
                     AGAPE_STEP_SEND);
    assert_int_equal(harness_op_reanswer_text(&o, 422, e, NULL), AGAPE_STEP_DONE);
    free(e);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_err_has(&o, "refund capture (HTTP 422 CAPTURE_FULLY_REFUNDED)");
    harness_op_end(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_init_mode_and_base),
        cmocka_unit_test(test_order_body_brand),
        cmocka_unit_test_setup_teardown(test_token_then_order, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_token_ttl_floor, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_token_errors, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_refresh_on_401, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_amounts, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_charge_input_rules, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_order_body_variants, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_error_table, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_declines, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_rate_limited, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_get, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_status_map, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_capture, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_capture_already_captured, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_capture_errors, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_refund, setup_default, teardown_provider),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
