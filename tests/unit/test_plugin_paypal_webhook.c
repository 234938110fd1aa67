/* test_plugin_paypal_webhook — PayPal webhook verification (offline and
 * through the verify API) and normalization, on the real paypal.so driven
 * through the real host table, with the PROVIDERS.md §10.4 vector (ids,
 * CRC, signature, certificate and the 1288-byte body from
 * tests/fixtures/paypal/). Answers to the plugin's requests are filled by
 * hand, so every request it makes is seen byte for byte. */
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
#define TOKEN "A015HzkFvnySgStf6vaZ9cqs.f.Csm1WbKZ9sJUBJOXu5Vk"
#define SANDBOX "https://api-m.sandbox.paypal.com"

/* PROVIDERS.md §10.4 */
#define V_ID "dfb3be50-fd74-11e4-8bf3-77339302725b"
#define V_TIME "2015-05-18T15:45:13Z"
#define V_TIME_S INT64_C(1431963913)
#define V_WHID "4JH86294D6297924G"
#define V_CRC UINT32_C(2771810304)
#define V_CERT_URL                                                                         \
    "https://api.sandbox.paypal.com/v1/notifications/certs/"                               \
    "CERT-360caa42-fca2a594-a5cafa77"
#define V_SIG                                                                              \
    "thy4/U002quzxFavHPwbfJGcc46E8rc5jzgyeafWm5mICTBdY/8rl7WJpn8JA0GKA+oDTPsSruqusw+XXg5R" \
    "LAP7ip53Euh9Xu3UbUhQFX7UgwzE2FeYoY6lyRMiiiQLzy9BvHfIzNIVhPad4KnC339dr6y2l+mN8ALgI4G" \
    "CdIh3/SoJO5wE64Bh/ueWtt8EVuvsvXfda2Le5a2TrOI9vLEzsm9GS79hAR/5oLexNz8UiZr045Mr5ObroH4" \
    "w4oNfmkTaDk9Rj0G19uvISs5QzgmBpauKr7Nw++JI0pr/v5mFctQkoWJSGfBGzPRXawrvIIVHQ9Wer48GR2g" \
    "9ZiApWg=="
#define V_SIGNED V_ID "|" V_TIME "|" V_WHID "|2771810304"
#define NOW_2030 INT64_C(1893456000) /* 2030-01-01: the 2015 certificate has expired */

/* ---------------------------------------------------------------- */
/* Scaffolding                                                      */

static struct harness g;
static char *g_cert;      /* tests/fixtures/paypal/cert.pem */
static size_t g_cert_len;
static char *g_other;     /* cert_not_paypal.pem: CN ...paypal.com.example.net */
static size_t g_other_len;
static char *g_body;      /* webhook_body.json, 1288 bytes */
static size_t g_body_len;

static int load_all(void **state)
{
    (void)state;
    if (harness_load(&g, "paypal") != 0) {
        return -1;
    }
    g_cert = harness_fixture("paypal", "cert.pem", &g_cert_len);
    g_other = harness_fixture("paypal", "cert_not_paypal.pem", &g_other_len);
    g_body = harness_fixture("paypal", "webhook_body.json", &g_body_len);
    return g_cert && g_other && g_body ? 0 : -1;
}

static int unload_all(void **state)
{
    (void)state;
    harness_unload(&g);
    free(g_cert);
    free(g_other);
    free(g_body);
    return 0;
}

/* The base conf plus the members of `extra` (a JSON object text). */
static void provider_with(const char *extra)
{
    char err[AGAPE_ERR_SIZE];
    json_t *conf = json_pack("{s:s, s:s}", "client_id", CID, "client_secret", SECRET);
    json_t *x = json_loads(extra, 0, NULL);
    assert_non_null(x);
    json_object_update(conf, x);
    json_decref(x);
    if (harness_provider_init(&g, "paypal", conf, err, sizeof(err)) != AGAPE_OK) {
        fail_msg("init: %s", err);
    }
}

/* The §10.4 setting: the vector's webhook id, a 2015 certificate. */
#define VECTOR_CONF                                                                       \
    "{\"webhook_id\":\"" V_WHID "\",\"webhook_check_cert_expiry\":false,"                 \
    "\"webhook_tolerance_s\":0}"

static int setup_vector(void **state)
{
    (void)state;
    provider_with(VECTOR_CONF);
    return 0;
}

/* Expiry checked (the default), the transmission time not. */
static int setup_strict(void **state)
{
    (void)state;
    provider_with("{\"webhook_id\":\"" V_WHID "\",\"webhook_tolerance_s\":0}");
    return 0;
}

static int setup_api(void **state)
{
    (void)state;
    provider_with("{\"webhook_id\":\"" V_WHID "\",\"webhook_verify\":\"api\","
                  "\"webhook_tolerance_s\":0}");
    return 0;
}

static int setup_plain(void **state)
{
    (void)state;
    provider_with("{}");
    return 0;
}

static int teardown_provider(void **state)
{
    (void)state;
    harness_provider_fini(&g);
    return 0;
}

static void seed_cache(const char *key, const char *value)
{
    if (g.prov.cache == NULL) {
        g.prov.cache = json_object();
    }
    json_object_set_new(g.prov.cache, key,
                        json_pack("{s:s, s:I}", "v", value, "exp",
                                  (json_int_t)(host_table()->mono_ms() + 3600 * 1000)));
}

static json_t *cache_entry(const char *key)
{
    return g.prov.cache ? json_object_get(g.prov.cache, key) : NULL;
}

/* One webhook operation in flight. */
struct op {
    struct client_xfer x;
    struct host_call hc;
    struct agape_webhook wh;
    struct client_header hdrs[8];
    int n;
    agape_step_fn fn;
};

static void op_header(struct op *o, const char *name, const char *value)
{
    assert_true(o->n < 8);
    o->hdrs[o->n].name = (char *)name;
    o->hdrs[o->n].value = (char *)value;
    o->n++;
}

/* The §10.4 headers, with `skip` left out and replacements by name (pairs,
 * NULL-terminated); header names in mixed case, as a proxy may send them. */
static void op_vector_headers(struct op *o, const char *skip, ...)
{
    static const char *const names[][2] = {
        {"Paypal-Transmission-Id", V_ID},       {"paypal-transmission-time", V_TIME},
        {"PAYPAL-TRANSMISSION-SIG", V_SIG},     {"Paypal-Cert-Url", V_CERT_URL},
        {"PAYPAL-AUTH-ALGO", "SHA256withRSA"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = names[i][1];
        va_list ap;
        va_start(ap, skip);
        for (;;) {
            const char *n = va_arg(ap, const char *);
            if (n == NULL) {
                break;
            }
            const char *nv = va_arg(ap, const char *);
            if (strcasecmp(n, names[i][0]) == 0) {
                v = nv;
            }
        }
        va_end(ap);
        if (skip == NULL || strcasecmp(skip, names[i][0]) != 0) {
            op_header(o, names[i][0], v);
        }
    }
}

static void op_init(struct op *o, const char *fn_name, const char *body, size_t len,
                    int64_t now_s)
{
    memset(o, 0, sizeof(*o));
    client_xfer_init(&o->x);
    json_t *in = json_object();
    host_call_init(&o->hc, &g.prov, fn_name, in, &o->x);
    json_decref(in);
    o->wh.body = body;
    o->wh.body_len = len;
    o->wh.url = "https://gw.example.com/v1/webhooks/paypal";
    o->wh.now_s = now_s;
    o->fn = strcmp(fn_name, "verify") == 0 ? g.pl->desc->webhook->verify
                                           : g.pl->desc->webhook->normalize;
}

static enum agape_step op_step(struct op *o)
{
    o->hc.pub.webhook = &o->wh;
    o->hc.wh_headers = o->hdrs;
    o->hc.n_wh_headers = o->n;
    return host_call_step(&o->hc, o->fn);
}

static enum agape_step op_answer(struct op *o, int status, const char *body, size_t len)
{
    harness_set_answer(&o->x, status, body, len);
    host_call_answer(&o->hc);
    return op_step(o);
}

static void op_end(struct op *o)
{
    host_call_fini(&o->hc);
    client_xfer_reset(&o->x);
}

static void assert_err_has(struct op *o, const char *needle)
{
    if (strstr(o->hc.pub.err, needle) == NULL) {
        fail_msg("err \"%s\" lacks \"%s\"", o->hc.pub.err, needle);
    }
    assert_null(strstr(o->hc.pub.err, SECRET));
    assert_null(strstr(o->hc.pub.err, TOKEN));
}

/* A verification refused at step 0 without any request. */
static void expect_refused(struct op *o, const char *needle)
{
    assert_int_equal(op_step(o), AGAPE_STEP_DONE);
    assert_int_equal(o->hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_false(o->hc.request_built);
    assert_null(o->x.url);
    assert_err_has(o, needle);
}

/* ---------------------------------------------------------------- */
/* The vector itself                                                */

static void test_vector_facts(void **state)
{
    const struct agape_host *h = host_table();
    unsigned char sig[512];
    (void)state;
    /* The fixture is the 1288-byte body, its CRC-32 the vector's. */
    assert_int_equal(g_body_len, 1288);
    assert_true(h->crc32(g_body, g_body_len) == V_CRC);
    /* id|time|webhook_id|crc, exactly, is what the certificate's key signed. */
    long n = h->base64_decode(V_SIG, strlen(V_SIG), sig, sizeof(sig));
    assert_int_equal(n, 256);
    assert_true(h->verify_rsa_sha256_pem(g_cert, g_cert_len, V_SIGNED, strlen(V_SIGNED), sig,
                                         (size_t)n));
    assert_false(h->verify_rsa_sha256_pem(g_cert, g_cert_len, V_SIGNED "0",
                                          strlen(V_SIGNED) + 1, sig, (size_t)n));
}

static void test_x509_check(void **state)
{
    const struct agape_host *h = host_table();
    char err[AGAPE_ERR_SIZE];
    (void)state;
    assert_non_null(h->x509_check);
    /* 2016 is within 2015-03-18 .. 2017-03-22 */
    assert_true(h->x509_check(g_cert, g_cert_len, ".paypal.com", INT64_C(1460000000), true, err,
                              sizeof(err)));
    assert_true(h->x509_check(g_cert, g_cert_len, ".PayPal.COM", NOW_2030, false, err,
                              sizeof(err)));
    assert_false(h->x509_check(g_cert, g_cert_len, ".paypal.com", NOW_2030, true, err,
                               sizeof(err)));
    assert_string_equal(err, "certificate expired on 2017-03-22T12:00:00Z");
    assert_false(h->x509_check(g_cert, g_cert_len, NULL, INT64_C(1400000000), true, err,
                               sizeof(err)));
    assert_string_equal(err, "certificate not valid before 2015-03-18T00:00:00Z");
    assert_false(h->x509_check(g_cert, g_cert_len, ".example.com", V_TIME_S, true, err,
                               sizeof(err)));
    assert_string_equal(err, "certificate subject CN messageverificationcerts.sandbox.paypal.com "
                             "does not end with .example.com");
    /* A suffix match, not a substring one. */
    assert_false(h->x509_check(g_other, g_other_len, ".paypal.com", NOW_2030, true, err,
                               sizeof(err)));
    assert_non_null(strstr(err, "CN messageverificationcerts.paypal.com.example.net does not "
                                "end with .paypal.com"));
    assert_true(h->x509_check(g_other, g_other_len, ".example.net", NOW_2030, true, err,
                              sizeof(err)));
    assert_false(h->x509_check("garbage", 7, NULL, 0, false, err, sizeof(err)));
    assert_string_equal(err, "not a PEM certificate");
    assert_false(h->x509_check(NULL, 0, NULL, 0, false, NULL, 0));
}

/* ---------------------------------------------------------------- */
/* Offline                                                          */

static void test_offline_vector_fetch_then_cache(void **state)
{
    struct op o;
    (void)state;
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    /* The certificate is fetched: a plain GET of the header's URL. */
    assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "GET");
    assert_string_equal(o.x.url, V_CERT_URL);
    assert_null(harness_req_header(&o.x, "Authorization"));
    assert_null(o.x.body);
    assert_int_equal(op_answer(&o, 200, g_cert, g_cert_len), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(o.hc.pub.err, "");
    op_end(&o);

    /* Cached for 24 hours under cert:<url>. */
    json_t *e = cache_entry("cert:" V_CERT_URL);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "v")), g_cert);
    int64_t ttl = (int64_t)json_integer_value(json_object_get(e, "exp")) -
                  host_table()->mono_ms();
    assert_true(ttl > 24 * 3600 * 1000 - 60000 && ttl <= 24 * 3600 * 1000);

    /* The next delivery needs no request. */
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    assert_int_equal(op_step(&o), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_false(o.hc.request_built);
    op_end(&o);
}

static void test_offline_refusals(void **state)
{
    struct op o;
    (void)state;
    seed_cache("cert:" V_CERT_URL, g_cert);

    /* One byte of the body changed: the CRC, and so the signed string, differ. */
    char *tampered = malloc(g_body_len);
    memcpy(tampered, g_body, g_body_len);
    tampered[strstr(g_body, "20.0 USD") - g_body] = '9';
    op_init(&o, "verify", tampered, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    expect_refused(&o, "signature does not match");
    op_end(&o);
    free(tampered);

    /* A trailing newline is a different body too. */
    char *nl = malloc(g_body_len + 1);
    memcpy(nl, g_body, g_body_len);
    nl[g_body_len] = '\n';
    op_init(&o, "verify", nl, g_body_len + 1, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    expect_refused(&o, "signature does not match");
    op_end(&o);
    free(nl);

    /* Another signature (the first base64 character changed). */
    char sig[sizeof(V_SIG)];
    memcpy(sig, V_SIG, sizeof(sig));
    sig[0] = 'T';
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, "PAYPAL-TRANSMISSION-SIG", sig, NULL);
    expect_refused(&o, "signature does not match");
    op_end(&o);

    /* Another transmission id or time: part of the signed string. */
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, "PAYPAL-TRANSMISSION-ID",
                      "dfb3be50-fd74-11e4-8bf3-77339302725c", NULL);
    expect_refused(&o, "signature does not match");
    op_end(&o);
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, "PAYPAL-TRANSMISSION-TIME", "2015-05-18T15:45:14Z", NULL);
    expect_refused(&o, "signature does not match");
    op_end(&o);

    /* Not base64 at all. */
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, "PAYPAL-TRANSMISSION-SIG", "not*base64", NULL);
    expect_refused(&o, "PAYPAL-TRANSMISSION-SIG is not base64");
    op_end(&o);

    /* SHA1withRSA (and anything else) is refused; sha256withrsa is the same name. */
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, "PAYPAL-AUTH-ALGO", "SHA1withRSA", NULL);
    expect_refused(&o, "PAYPAL-AUTH-ALGO SHA1withRSA is not supported (only SHA256withRSA)");
    op_end(&o);
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, "PAYPAL-AUTH-ALGO", "sha256withrsa", NULL);
    assert_int_equal(op_step(&o), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    op_end(&o);

    /* Each header missing, named. */
    static const char *const hdrs[] = {"PAYPAL-TRANSMISSION-ID", "PAYPAL-TRANSMISSION-TIME",
                                       "PAYPAL-TRANSMISSION-SIG", "PAYPAL-CERT-URL",
                                       "PAYPAL-AUTH-ALGO"};
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        char want[64];
        snprintf(want, sizeof(want), "missing %s header", hdrs[i]);
        op_init(&o, "verify", g_body, g_body_len, NOW_2030);
        op_vector_headers(&o, hdrs[i], NULL);
        expect_refused(&o, want);
        op_end(&o);
        /* empty counts as missing */
        op_init(&o, "verify", g_body, g_body_len, NOW_2030);
        op_vector_headers(&o, NULL, hdrs[i], "", NULL);
        expect_refused(&o, want);
        op_end(&o);
    }
    /* A '|' would shift the signed string's fields. */
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, "PAYPAL-TRANSMISSION-ID", "a|b", NULL);
    expect_refused(&o, "PAYPAL-TRANSMISSION-ID header has characters outside printable ASCII "
                       "or a '|'");
    op_end(&o);
}

static void test_offline_wrong_webhook_id(void **state)
{
    struct op o;
    (void)state;
    provider_with("{\"webhook_id\":\"4JH86294D6297924H\",\"webhook_check_cert_expiry\":false,"
                  "\"webhook_tolerance_s\":0}");
    seed_cache("cert:" V_CERT_URL, g_cert);
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    expect_refused(&o, "signature does not match");
    op_end(&o);
    harness_provider_fini(&g);

    /* No webhook id at all: refused with the reason, nothing fetched. */
    provider_with("{\"webhook_check_cert_expiry\":false}");
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    expect_refused(&o, "webhook_id not configured (set PAYPAL_WEBHOOK_ID)");
    op_end(&o);
    harness_provider_fini(&g);
}

static void test_offline_cert_url_allow_list(void **state)
{
    struct op o;
    (void)state;
    static const char *const refused[] = {
        "https://evil.example.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        "https://api.sandbox.paypal.com.evil.example/v1/notifications/certs/x",
        "https://api.sandbox.paypal.com@evil.example/v1/notifications/certs/x",
        "http://api.sandbox.paypal.com/v1/notifications/certs/x",
        "HTTPS://api.sandbox.paypal.com/v1/notifications/certs/x",
        "file:///etc/passwd",
        "http://127.0.0.1:1/latest/meta-data/",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        op_init(&o, "verify", g_body, g_body_len, NOW_2030);
        op_vector_headers(&o, NULL, "PAYPAL-CERT-URL", refused[i], NULL);
        expect_refused(&o, "PAYPAL-CERT-URL is not under an allowed prefix");
        op_end(&o);
    }
    /* Every default prefix is allowed (a request goes out). */
    static const char *const allowed[] = {
        "https://api.paypal.com/v1/notifications/certs/A",
        "https://api.sandbox.paypal.com/v1/notifications/certs/A",
        "https://api-m.paypal.com/v1/notifications/certs/A",
        "https://api-m.sandbox.paypal.com/v1/notifications/certs/A",
    };
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        op_init(&o, "verify", g_body, g_body_len, NOW_2030);
        op_vector_headers(&o, NULL, "PAYPAL-CERT-URL", allowed[i], NULL);
        assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
        assert_string_equal(o.x.url, allowed[i]);
        op_end(&o);
    }
}

static void test_offline_configured_prefixes(void **state)
{
    struct op o;
    (void)state;
    /* A test mock's URL, given without a path: "/" is added, so a longer
     * port or host does not match. */
    provider_with("{\"webhook_id\":\"" V_WHID "\",\"webhook_check_cert_expiry\":false,"
                  "\"webhook_tolerance_s\":0,"
                  "\"cert_url_prefixes\":[\"http://127.0.0.1:8081\"]}");
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, "PAYPAL-CERT-URL", "http://127.0.0.1:8081/v1/c/X", NULL);
    assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, "http://127.0.0.1:8081/v1/c/X");
    /* The signature covers id|time|webhook_id|crc, not the URL. */
    assert_int_equal(op_answer(&o, 200, g_cert, g_cert_len), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    op_end(&o);
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, "PAYPAL-CERT-URL", "http://127.0.0.1:80810/v1/c/X", NULL);
    expect_refused(&o, "not under an allowed prefix");
    op_end(&o);
    /* The defaults are replaced, not extended. */
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    expect_refused(&o, "not under an allowed prefix");
    op_end(&o);
    harness_provider_fini(&g);

    /* A comma-separated string (from env()). */
    provider_with("{\"webhook_id\":\"" V_WHID "\",\"webhook_tolerance_s\":0,"
                  "\"cert_url_prefixes\":\" https://a.example/x/ , http://127.0.0.1:9/ \"}");
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, "PAYPAL-CERT-URL", "http://127.0.0.1:9/c", NULL);
    assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
    op_end(&o);
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, "PAYPAL-CERT-URL", "https://a.example/y/c", NULL);
    expect_refused(&o, "not under an allowed prefix");
    op_end(&o);
    harness_provider_fini(&g);
}

static void test_offline_cert_expired_refused(void **state)
{
    struct op o;
    (void)state;
    /* The default: the 2015 certificate is refused today, whether fetched… */
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
    assert_int_equal(op_answer(&o, 200, g_cert, g_cert_len), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_err_has(&o, "signing certificate refused: certificate expired on "
                       "2017-03-22T12:00:00Z");
    op_end(&o);
    assert_null(cache_entry("cert:" V_CERT_URL)); /* a refused certificate is not kept */

    /* …or cached earlier. */
    seed_cache("cert:" V_CERT_URL, g_cert);
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    expect_refused(&o, "certificate expired on 2017-03-22T12:00:00Z");
    op_end(&o);

    /* At the time it was sent, the same delivery verifies with the check on. */
    op_init(&o, "verify", g_body, g_body_len, V_TIME_S);
    op_vector_headers(&o, NULL, NULL);
    assert_int_equal(op_step(&o), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    op_end(&o);
}

static void test_offline_cert_not_paypal(void **state)
{
    struct op o;
    (void)state;
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
    assert_int_equal(op_answer(&o, 200, g_other, g_other_len), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_err_has(&o, "certificate subject CN messageverificationcerts.paypal.com.example.net "
                       "does not end with .paypal.com");
    op_end(&o);
    assert_null(cache_entry("cert:" V_CERT_URL));
}

static void test_offline_cert_fetch_failures(void **state)
{
    struct op o;
    (void)state;
    static const struct {
        int status;
        const char *body;
        enum agape_outcome outcome;
        const char *err;
    } cases[] = {
        {404, "{\"name\":\"INVALID_RESOURCE_ID\"}", AGAPE_OUTCOME_INVALID,
         "could not be fetched (HTTP 404)"},
        {400, "", AGAPE_OUTCOME_INVALID, "could not be fetched (HTTP 400)"},
        {503, "", AGAPE_OUTCOME_UNAVAILABLE, "could not be fetched now (HTTP 503)"},
        {429, "", AGAPE_OUTCOME_UNAVAILABLE, "could not be fetched now (HTTP 429)"},
        {200, "", AGAPE_OUTCOME_INVALID, "is not a certificate"},
        {200, "<html>hello</html>", AGAPE_OUTCOME_INVALID,
         "signing certificate refused: not a PEM certificate"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        op_init(&o, "verify", g_body, g_body_len, NOW_2030);
        op_vector_headers(&o, NULL, NULL);
        assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
        assert_int_equal(op_answer(&o, cases[i].status, cases[i].body, strlen(cases[i].body)),
                         AGAPE_STEP_DONE);
        assert_int_equal(o.hc.pub.outcome, cases[i].outcome);
        assert_err_has(&o, cases[i].err);
        op_end(&o);
        assert_null(cache_entry("cert:" V_CERT_URL));
    }
}

static void test_transmission_time_tolerance(void **state)
{
    struct op o;
    (void)state;
    provider_with("{\"webhook_id\":\"" V_WHID "\",\"webhook_check_cert_expiry\":false}");
    seed_cache("cert:" V_CERT_URL, g_cert);
    /* Default tolerance 300 s around call->webhook->now_s. */
    static const struct {
        int64_t now;
        bool ok;
    } cases[] = {
        {V_TIME_S, true},        {V_TIME_S + 300, true},  {V_TIME_S - 300, true},
        {V_TIME_S + 301, false}, {V_TIME_S - 301, false}, {NOW_2030, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        op_init(&o, "verify", g_body, g_body_len, cases[i].now);
        op_vector_headers(&o, NULL, NULL);
        assert_int_equal(op_step(&o), AGAPE_STEP_DONE);
        if (cases[i].ok) {
            assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
        } else {
            assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
            assert_err_has(&o, "PAYPAL-TRANSMISSION-TIME 2015-05-18T15:45:13Z is outside the "
                               "tolerance of 300 s");
        }
        op_end(&o);
    }
    /* Unreadable times are refused before anything else. */
    static const char *const bad[] = {"yesterday", "2015/05/18T15:45:13Z",
                                      "2015-13-18T15:45:13Z", "2015-05-18T15:45:13"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        op_init(&o, "verify", g_body, g_body_len, V_TIME_S);
        op_vector_headers(&o, NULL, "PAYPAL-TRANSMISSION-TIME", bad[i], NULL);
        expect_refused(&o, "PAYPAL-TRANSMISSION-TIME is not an RFC 3339 time");
        op_end(&o);
    }
    /* Offsets and fractions are understood (then the signature decides). */
    op_init(&o, "verify", g_body, g_body_len, V_TIME_S);
    op_vector_headers(&o, NULL, "PAYPAL-TRANSMISSION-TIME", "2015-05-18T17:45:13.250+02:00",
                      NULL);
    expect_refused(&o, "signature does not match");
    op_end(&o);
    harness_provider_fini(&g);
}

/* ---------------------------------------------------------------- */
/* API (method A)                                                   */

static const char *api_fields(void)
{
    return "{\"auth_algo\":\"SHA256withRSA\",\"cert_url\":\"" V_CERT_URL "\","
           "\"transmission_id\":\"" V_ID "\",\"transmission_sig\":\"" V_SIG "\","
           "\"transmission_time\":\"" V_TIME "\",\"webhook_id\":\"" V_WHID "\","
           "\"webhook_event\":";
}

static void test_api_request_and_answers(void **state)
{
    struct op o;
    (void)state;
    seed_cache("token", TOKEN);
    /* A raw body with spaces and its own member order: spliced, not re-dumped. */
    static const char raw[] = "{\"id\": \"WH-1\",  \"event_type\" : \"X.Y\", \"a\":1.50}";
    char want[4096];
    snprintf(want, sizeof(want), "%s%s}", api_fields(), raw);

    static const struct {
        int status;
        const char *body;
        enum agape_outcome outcome;
        const char *err;
    } cases[] = {
        {200, "{\"verification_status\":\"SUCCESS\"}", AGAPE_OUTCOME_OK, ""},
        {200, "{\"verification_status\":\"FAILURE\"}", AGAPE_OUTCOME_INVALID,
         "signature does not match (PayPal's verify API answered FAILURE)"},
        {200, "{}", AGAPE_OUTCOME_UNAVAILABLE, "without a verification_status"},
        {500, "{\"name\":\"INTERNAL_SERVER_ERROR\",\"debug_id\":\"d1\"}",
         AGAPE_OUTCOME_UNAVAILABLE, "unavailable (HTTP 500): INTERNAL_SERVER_ERROR [debug_id d1]"},
        {503, "", AGAPE_OUTCOME_UNAVAILABLE, "unavailable (HTTP 503)"},
        {400,
         "{\"name\":\"VALIDATION_ERROR\",\"details\":[{\"issue\":\"MISSING_REQUIRED_PARAMETER\"}]}",
         AGAPE_OUTCOME_INVALID, "refused the request (HTTP 400): MISSING_REQUIRED_PARAMETER"},
        {403, "", AGAPE_OUTCOME_AUTH, "refused the credentials for the verify API (HTTP 403)"},
        {429, "", AGAPE_OUTCOME_RATE_LIMITED, "rate limiting (HTTP 429)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        op_init(&o, "verify", raw, strlen(raw), NOW_2030);
        op_vector_headers(&o, NULL, NULL);
        assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
        assert_string_equal(o.x.method, "POST");
        assert_string_equal(o.x.url, SANDBOX "/v1/notifications/verify-webhook-signature");
        assert_string_equal(harness_req_header(&o.x, "Authorization"), "Bearer " TOKEN);
        assert_string_equal(harness_req_header(&o.x, "Content-Type"), "application/json");
        assert_int_equal(o.x.body_len, strlen(want));
        assert_memory_equal(o.x.body, want, o.x.body_len);
        assert_int_equal(op_answer(&o, cases[i].status, cases[i].body, strlen(cases[i].body)),
                         AGAPE_STEP_DONE);
        assert_int_equal(o.hc.pub.outcome, cases[i].outcome);
        assert_err_has(&o, cases[i].err);
        op_end(&o);
    }

    /* The §10.4 body, byte for byte inside the request. */
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
    size_t pre = strlen(api_fields());
    assert_int_equal(o.x.body_len, pre + g_body_len + 1);
    assert_memory_equal(o.x.body, api_fields(), pre);
    assert_memory_equal(o.x.body + pre, g_body, g_body_len);
    assert_int_equal(o.x.body[o.x.body_len - 1], '}');
    json_t *parsed = json_loadb(o.x.body, o.x.body_len, 0, NULL);
    assert_non_null(parsed); /* still one JSON document */
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(parsed, "webhook_event"), "id")),
                        "WH-0G2756385H040842W-5Y612302CV158622M");
    json_decref(parsed);
    op_end(&o);
}

static void test_api_token_steps(void **state)
{
    struct op o;
    static const char tok[] = "{\"access_token\":\"A21AA-fresh\",\"token_type\":\"Bearer\","
                              "\"expires_in\":32400}";
    static const char ok[] = "{\"verification_status\":\"SUCCESS\"}";
    (void)state;
    /* No token cached: the token call first, then the verify call. */
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, SANDBOX "/v1/oauth2/token");
    assert_non_null(o.x.userpwd);
    assert_int_equal(op_answer(&o, 200, tok, strlen(tok)), AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, SANDBOX "/v1/notifications/verify-webhook-signature");
    assert_string_equal(harness_req_header(&o.x, "Authorization"), "Bearer A21AA-fresh");
    assert_int_equal(op_answer(&o, 200, ok, strlen(ok)), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    op_end(&o);
    assert_string_equal(json_string_value(json_object_get(cache_entry("token"), "v")),
                        "A21AA-fresh");

    /* A revoked cached token: one refresh, the same request again. */
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
    char first[4096];
    assert_true(o.x.body_len < sizeof(first));
    memcpy(first, o.x.body, o.x.body_len);
    size_t first_len = o.x.body_len;
    assert_int_equal(op_answer(&o, 401, "{\"error\":\"invalid_token\"}", 25), AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, SANDBOX "/v1/oauth2/token");
    static const char tok2[] = "{\"access_token\":\"A21AA-second\",\"expires_in\":32400}";
    assert_int_equal(op_answer(&o, 200, tok2, strlen(tok2)), AGAPE_STEP_SEND);
    assert_string_equal(harness_req_header(&o.x, "Authorization"), "Bearer A21AA-second");
    assert_int_equal(o.x.body_len, first_len);
    assert_memory_equal(o.x.body, first, first_len);
    assert_int_equal(op_answer(&o, 401, "{}", 2), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_AUTH);
    op_end(&o);

    /* The token call refused: AUTH, and no secret in err. */
    json_object_clear(g.prov.cache);
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    assert_int_equal(op_step(&o), AGAPE_STEP_SEND);
    assert_int_equal(op_answer(&o, 401, "{\"error\":\"invalid_client\"}", 26), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_AUTH);
    assert_null(strstr(o.hc.pub.err, SECRET));
    op_end(&o);
}

static void test_api_refusals_before_sending(void **state)
{
    struct op o;
    (void)state;
    seed_cache("token", TOKEN);
    op_init(&o, "verify", "not json", 8, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    expect_refused(&o, "the webhook body is not a JSON object");
    op_end(&o);
    op_init(&o, "verify", "[1]", 3, NOW_2030);
    op_vector_headers(&o, NULL, NULL);
    expect_refused(&o, "the webhook body is not a JSON object");
    op_end(&o);
    op_init(&o, "verify", g_body, g_body_len, NOW_2030);
    op_vector_headers(&o, "PAYPAL-CERT-URL", NULL);
    expect_refused(&o, "missing PAYPAL-CERT-URL header");
    op_end(&o);
}

/* ---------------------------------------------------------------- */
/* normalize                                                        */

static json_t *normalize(const char *body, enum agape_outcome want)
{
    struct op o;
    op_init(&o, "normalize", body, strlen(body), NOW_2030);
    assert_int_equal(op_step(&o), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, want);
    json_t *r = json_incref(o.hc.result);
    op_end(&o);
    return r;
}

static const char *rs(json_t *r, const char *k)
{
    return json_string_value(json_object_get(r, k));
}

static void test_normalize(void **state)
{
    (void)state;
    static const struct {
        const char *type;
        const char *resource;
        const char *ref;
        const char *payment_id;
        const char *status;
    } cases[] = {
        {"CHECKOUT.ORDER.APPROVED", "{\"id\":\"5O190127TN364715T\",\"status\":\"APPROVED\"}",
         "5O190127TN364715T", NULL, "requires_action"},
        {"CHECKOUT.ORDER.COMPLETED", "{\"id\":\"5O190127TN364715T\",\"status\":\"COMPLETED\"}",
         "5O190127TN364715T", NULL, "succeeded"},
        {"CHECKOUT.ORDER.COMPLETED",
         "{\"id\":\"5O190127TN364715T\",\"purchase_units\":[{\"payments\":{\"captures\":"
         "[{\"id\":\"C1\",\"status\":\"PENDING\"}]}}]}",
         "5O190127TN364715T", NULL, "processing"},
        {"PAYMENT.CAPTURE.COMPLETED",
         "{\"id\":\"3C679366HH908993F\",\"status\":\"COMPLETED\",\"custom_id\":\"pay_1\","
         "\"supplementary_data\":{\"related_ids\":{\"order_id\":\"5O190127TN364715T\"}}}",
         "5O190127TN364715T", NULL, "succeeded"},
        {"PAYMENT.CAPTURE.PENDING",
         "{\"id\":\"3C679366HH908993F\","
         "\"supplementary_data\":{\"related_ids\":{\"order_id\":\"5O190127TN364715T\"}}}",
         "5O190127TN364715T", NULL, "processing"},
        {"PAYMENT.CAPTURE.DENIED",
         "{\"id\":\"3C679366HH908993F\","
         "\"supplementary_data\":{\"related_ids\":{\"order_id\":\"5O190127TN364715T\"}}}",
         "5O190127TN364715T", NULL, "failed"},
        {"PAYMENT.CAPTURE.DECLINED",
         "{\"id\":\"3C679366HH908993F\","
         "\"supplementary_data\":{\"related_ids\":{\"order_id\":\"5O190127TN364715T\"}}}",
         "5O190127TN364715T", NULL, "failed"},
        {"PAYMENT.CAPTURE.REFUNDED",
         "{\"id\":\"1Y107995YT783435V\",\"custom_id\":\"pay_01JD\","
         "\"supplementary_data\":{\"related_ids\":{\"order_id\":\"5O190127TN364715T\"}}}",
         "5O190127TN364715T", NULL, "refunded"},
        /* Without the order id: our payment id from custom_id. */
        {"PAYMENT.CAPTURE.REFUNDED", "{\"id\":\"1Y107995YT783435V\",\"custom_id\":\"pay_01JD\"}",
         NULL, "pay_01JD", "refunded"},
        {"PAYMENT.CAPTURE.COMPLETED", "{\"id\":\"3C679366HH908993F\",\"custom_id\":\"pay_7\"}",
         NULL, "pay_7", "succeeded"},
        /* Other events: no status. */
        {"PAYMENT.CAPTURE.REVERSED",
         "{\"id\":\"3C679366HH908993F\","
         "\"supplementary_data\":{\"related_ids\":{\"order_id\":\"5O190127TN364715T\"}}}",
         "5O190127TN364715T", NULL, NULL},
        {"PAYMENT.AUTHORIZATION.CREATED",
         "{\"id\":\"0VF52814937998046\","
         "\"supplementary_data\":{\"related_ids\":{\"order_id\":\"5O190127TN364715T\"}}}",
         "5O190127TN364715T", NULL, NULL},
        {"CHECKOUT.PAYMENT-APPROVAL.REVERSED", "{\"order_id\":\"5O190127TN364715T\"}",
         "5O190127TN364715T", NULL, NULL},
        {"PAYMENT.SALE.COMPLETED", "{\"id\":\"4EU7004268015634R\"}", NULL, NULL, NULL},
        /* An order id that is not one is left out. */
        {"CHECKOUT.ORDER.APPROVED", "{\"id\":\"../../x\"}", NULL, NULL, "requires_action"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[2048];
        snprintf(body, sizeof(body),
                 "{\"id\":\"WH-%zu\",\"create_time\":\"2026-11-28T10:00:00Z\","
                 "\"resource_type\":\"x\",\"event_type\":\"%s\",\"resource\":%s}",
                 i, cases[i].type, cases[i].resource);
        json_t *r = normalize(body, AGAPE_OUTCOME_OK);
        char id[16];
        snprintf(id, sizeof(id), "WH-%zu", i);
        assert_string_equal(rs(r, "event_id"), id);
        assert_string_equal(rs(r, "type"), cases[i].type);
        if (cases[i].ref) {
            assert_string_equal(rs(r, "payment_ref"), cases[i].ref);
        } else {
            assert_null(json_object_get(r, "payment_ref"));
        }
        if (cases[i].payment_id) {
            assert_string_equal(rs(r, "payment_id"), cases[i].payment_id);
        } else {
            assert_null(json_object_get(r, "payment_id"));
        }
        if (cases[i].status) {
            assert_string_equal(rs(r, "status"), cases[i].status);
        } else {
            assert_null(json_object_get(r, "status"));
        }
        json_t *want = json_loads(cases[i].resource, 0, NULL);
        assert_true(json_equal(json_object_get(r, "object"), want));
        json_decref(want);
        json_decref(r);
    }

    /* The §10.4 body. */
    json_t *r = normalize(g_body, AGAPE_OUTCOME_OK);
    assert_string_equal(rs(r, "event_id"), "WH-0G2756385H040842W-5Y612302CV158622M");
    assert_string_equal(rs(r, "type"), "PAYMENT.SALE.COMPLETED");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "object"), "id")),
                        "4EU7004268015634R");
    assert_null(json_object_get(r, "status"));
    json_decref(r);

    /* Bodies that are not PayPal events. */
    static const char *const bad[] = {
        "nope", "[]", "{\"event_type\":\"X\"}", "{\"id\":\"evt_1\",\"event_type\":\"X\"}",
        "{\"id\":\"WH-1\"}", "{\"id\":\"WH-1\",\"event_type\":\"\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_decref(normalize(bad[i], AGAPE_OUTCOME_INVALID));
    }
}

/* ---------------------------------------------------------------- */
/* Options                                                          */

static void expect_init_error(const char *extra, const char *needle)
{
    char err[AGAPE_ERR_SIZE];
    json_t *conf = json_pack("{s:s, s:s}", "client_id", CID, "client_secret", SECRET);
    json_t *x = json_loads(extra, 0, NULL);
    assert_non_null(x);
    json_object_update(conf, x);
    json_decref(x);
    assert_int_not_equal(harness_provider_init(&g, "paypal", conf, err, sizeof(err)), AGAPE_OK);
    assert_null(g.prov.ctx);
    if (strstr(err, needle) == NULL) {
        fail_msg("init error \"%s\" lacks \"%s\"", err, needle);
    }
    harness_provider_fini(&g);
}

static void test_options(void **state)
{
    (void)state;
    const struct agape_plugin *d = g.pl->desc;
    assert_true(d->kinds & AGAPE_KIND_WEBHOOK);
    static const char *const names[] = {"webhook_id", "webhook_verify", "cert_url_prefixes",
                                        "webhook_check_cert_expiry", "webhook_tolerance_s"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const struct agape_option *o = d->options;
        while (o->name && strcmp(o->name, names[i]) != 0) {
            o++;
        }
        assert_non_null(o->name);
        assert_int_equal(o->flags, 0);
    }
    expect_init_error("{\"webhook_verify\":\"online\"}",
                      "webhook_verify must be \"offline\" or \"api\"");
    expect_init_error("{\"webhook_verify\":1}", "webhook_verify: expected a string");
    expect_init_error("{\"cert_url_prefixes\":[]}", "cert_url_prefixes is empty");
    expect_init_error("{\"cert_url_prefixes\":{}}", "cert_url_prefixes is empty");
    expect_init_error("{\"cert_url_prefixes\":\" , \"}", "cert_url_prefixes is empty");
    expect_init_error("{\"cert_url_prefixes\":[\"ftp://x/\"]}",
                      "cert_url_prefixes: each prefix must be an http:// or https:// URL");
    expect_init_error("{\"cert_url_prefixes\":[\"https:///x\"]}", "cert_url_prefixes: each");
    expect_init_error("{\"cert_url_prefixes\":[\"https://a b/\"]}", "cert_url_prefixes: each");
    expect_init_error("{\"cert_url_prefixes\":[1]}", "a list of strings");
    expect_init_error("{\"cert_url_prefixes\":5}",
                      "cert_url_prefixes: expected a list of at most 16 strings");
    expect_init_error("{\"webhook_check_cert_expiry\":\"maybe\"}",
                      "webhook_check_cert_expiry: expected true or false");
    expect_init_error("{\"webhook_tolerance_s\":-1}",
                      "webhook_tolerance_s: expected an integer from 0 to 31536000");
    expect_init_error("{\"webhook_tolerance_s\":\"5m\"}", "webhook_tolerance_s: expected");
    expect_init_error("{\"webhook_tolerance_s\":1.5}", "webhook_tolerance_s: expected");

    /* Strings from env() are understood. */
    char err[AGAPE_ERR_SIZE];
    json_t *conf = json_pack("{s:s, s:s, s:s, s:s, s:s}", "client_id", CID, "client_secret",
                             SECRET, "webhook_check_cert_expiry", "false",
                             "webhook_tolerance_s", "0", "webhook_verify", "");
    assert_int_equal(harness_provider_init(&g, "paypal", conf, err, sizeof(err)), AGAPE_OK);
    harness_provider_fini(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_facts),
        cmocka_unit_test(test_x509_check),
        cmocka_unit_test(test_options),
        cmocka_unit_test_setup_teardown(test_offline_vector_fetch_then_cache, setup_vector,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_offline_refusals, setup_vector, teardown_provider),
        cmocka_unit_test(test_offline_wrong_webhook_id),
        cmocka_unit_test_setup_teardown(test_offline_cert_url_allow_list, setup_vector,
                                        teardown_provider),
        cmocka_unit_test(test_offline_configured_prefixes),
        cmocka_unit_test_setup_teardown(test_offline_cert_expired_refused, setup_strict,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_offline_cert_not_paypal, setup_strict,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_offline_cert_fetch_failures, setup_strict,
                                        teardown_provider),
        cmocka_unit_test(test_transmission_time_tolerance),
        cmocka_unit_test_setup_teardown(test_api_request_and_answers, setup_api,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_api_token_steps, setup_api, teardown_provider),
        cmocka_unit_test_setup_teardown(test_api_refusals_before_sending, setup_api,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_normalize, setup_plain, teardown_provider),
    };
    return cmocka_run_group_tests(tests, load_all, unload_all);
}
