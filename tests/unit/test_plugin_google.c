/* test_plugin_google — the google plugin, byte for byte, without a network.
 *
 * The real build/plugins/google.so is loaded with the real loader, given a
 * provider context by its own init(), and driven through the real host table
 * (host_call_step / host_call_answer) with answers filled in by hand. The
 * id_tokens are made here: RSA 2048 keys generated with OpenSSL at start,
 * JWTs signed over "header.payload", the JWKS built from each key's n and e
 * in base64url. Also the RFC 7636 PKCE vector (PROVIDERS.md §10.6) against
 * the core's auth_pkce_s256. */
#include "auth.h"
#include "buf.h"
#include "client.h"
#include "crypto.h"
#include "host.h"
#include "options.h"
#include "plugins.h"
#include "plugin_harness.h"

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>

#define CID "123-abc.apps.googleusercontent.com"
#define SECRET "GOCSPX-test-secret-1"
#define REDIRECT "https://app.example.com/auth/callback"
#define DISC_URL "https://accounts.google.com/.well-known/openid-configuration"
#define AUTH_EP "https://accounts.google.com/o/oauth2/v2/auth"
#define TOKEN_EP "https://oauth2.googleapis.com/token"
#define JWKS_URL "https://www.googleapis.com/oauth2/v3/certs"
#define VERIFIER "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

static const char disc_doc[] =
    "{\"issuer\":\"https://accounts.google.com\","
    "\"authorization_endpoint\":\"" AUTH_EP "\","
    "\"token_endpoint\":\"" TOKEN_EP "\","
    "\"userinfo_endpoint\":\"https://openidconnect.googleapis.com/v1/userinfo\","
    "\"jwks_uri\":\"" JWKS_URL "\","
    "\"response_types_supported\":[\"code\"],"
    "\"id_token_signing_alg_values_supported\":[\"RS256\"]}";

/* ---------------------------------------------------------------- */
/* Scaffolding                                                      */

/* Test state beside the harness: the signing keys and the fake endpoints' state. */
struct env {
    EVP_PKEY *k1, *k2;
    char *jwks;        /* what the JWKS endpoint answers now */
    int disc_fetches;  /* requests seen by answer_fetches() */
    int jwks_fetches;
};

static struct harness g;
static struct env t;

static char *jwks_of(int n, ...);

static int group_setup(void **state)
{
    (void)state;
    if (harness_load(&g, "google") != 0) {
        return -1;
    }
    t.k1 = EVP_RSA_gen(2048);
    t.k2 = EVP_RSA_gen(2048);
    return t.k1 && t.k2 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    harness_unload(&g);
    EVP_PKEY_free(t.k1);
    EVP_PKEY_free(t.k2);
    free(t.jwks);
    return 0;
}

static json_t *default_conf(void)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "plugin", "google", "client_id", CID,
                     "client_secret", SECRET, "redirect_uri", REDIRECT);
}

static int setup_default(void **state)
{
    char err[AGAPE_ERR_SIZE];
    (void)state;
    free(t.jwks);
    t.jwks = jwks_of(1, t.k1, "k1");
    t.disc_fetches = t.jwks_fetches = 0;
    return harness_provider_init(&g, "google", default_conf(), err, sizeof(err)) == AGAPE_OK
               ? 0
               : -1;
}

static int teardown_provider(void **state)
{
    (void)state;
    harness_provider_fini(&g);
    return 0;
}

/* Answer every discovery and JWKS request as the provider would, counting
 * them, until the call asks for something else or is done. */
static enum agape_step answer_fetches(struct harness_op *o, enum agape_step s)
{
    while (s == AGAPE_STEP_SEND && strcmp(o->x.method, "GET") == 0) {
        assert_string_equal(harness_req_header(&o->x, "Accept"), "application/json");
        if (strcmp(o->x.url, DISC_URL) == 0) {
            t.disc_fetches++;
            s = harness_op_reanswer_text(o, 200, disc_doc, "Cache-Control", "public, max-age=3600",
                                         NULL);
        } else if (strcmp(o->x.url, JWKS_URL) == 0) {
            t.jwks_fetches++;
            s = harness_op_reanswer_text(o, 200, t.jwks, "Cache-Control",
                                         "public, max-age=19800, must-revalidate, no-transform",
                                         NULL);
        } else {
            fail_msg("unexpected GET %s", o->x.url);
        }
    }
    return s;
}

/* ---------------------------------------------------------------- */
/* Keys and tokens                                                  */

static char *b64url(const void *p, size_t n)
{
    struct agape_buf b;
    buf_init(&b, 0);
    assert_int_equal(crypto_base64url(&b, p, n), AGAPE_OK);
    return buf_take(&b);
}

static char *bn_b64url(EVP_PKEY *k, const char *param)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    int n = BN_num_bytes(bn);
    unsigned char *raw = malloc((size_t)n);
    assert_int_equal(BN_bn2bin(bn, raw), n);
    char *out = b64url(raw, (size_t)n);
    free(raw);
    BN_free(bn);
    return out;
}

/* {"keys": [...]} of n (key, kid) pairs. */
static char *jwks_of(int n, ...)
{
    va_list ap;
    json_t *keys = json_array();
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        EVP_PKEY *k = va_arg(ap, EVP_PKEY *);
        const char *kid = va_arg(ap, const char *);
        char *nn = bn_b64url(k, OSSL_PKEY_PARAM_RSA_N);
        char *e = bn_b64url(k, OSSL_PKEY_PARAM_RSA_E);
        json_array_append_new(keys, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "RSA",
                                              "alg", "RS256", "use", "sig", "kid", kid, "n", nn,
                                              "e", e));
        free(nn);
        free(e);
    }
    va_end(ap);
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* The claims of a good token for this client and nonce "n-1". */
static json_t *good_claims(void)
{
    int64_t now = now_s();
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:I, s:I}", "iss",
                     "https://accounts.google.com", "azp", CID, "aud", CID, "sub",
                     "110169484474386276334", "email", "ana@example.com", "email_verified", 1,
                     "name", "Ana Lima", "picture", "https://lh3.googleusercontent.com/a/x",
                     "nonce", "n-1", "iat", (json_int_t)now, "exp", (json_int_t)(now + 3600));
}

/* A JWT: header {"alg", "kid"?, "typ"}, the claims (stolen), signed with k
 * (RS256), with an HMAC (HS256) or not at all (none). */
static char *make_jwt(const char *alg, const char *kid, EVP_PKEY *k, json_t *claims, bool tamper)
{
    json_t *hdr = json_pack("{s:s, s:s}", "alg", alg, "typ", "JWT");
    if (kid != NULL) {
        json_object_set_new(hdr, "kid", json_string(kid));
    }
    char *ht = json_dumps(hdr, JSON_COMPACT);
    char *ct = json_dumps(claims, JSON_COMPACT);
    char *h64 = b64url(ht, strlen(ht));
    char *c64 = b64url(ct, strlen(ct));
    struct agape_buf in;
    buf_init(&in, 0);
    buf_printf(&in, "%s.%s", h64, c64);
    unsigned char sig[512];
    size_t siglen = 0;
    if (strcmp(alg, "RS256") == 0) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        siglen = sizeof(sig);
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
        assert_int_equal(EVP_DigestSign(md, sig, &siglen, (const unsigned char *)in.data, in.len),
                         1);
        EVP_MD_CTX_free(md);
    } else if (strcmp(alg, "HS256") == 0) {
        unsigned int n = 0;
        HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)in.data, in.len,
             sig, &n);
        siglen = n;
    }
    if (tamper) {
        sig[siglen / 2] ^= 0x01;
    }
    char *s64 = b64url(sig, siglen);
    buf_printf(&in, ".%s", s64);
    json_decref(hdr);
    json_decref(claims);
    free(ht);
    free(ct);
    free(h64);
    free(c64);
    free(s64);
    return buf_take(&in);
}

static json_t *verify_input(const char *token, const char *nonce)
{
    json_t *in = json_pack("{s:s}", "id_token", token);
    if (nonce != NULL) {
        json_object_set_new(in, "nonce", json_string(nonce));
    }
    return in;
}

/* verify_id_token to the end; returns the op (ended by the caller). */
static void verify(struct harness_op *o, const char *token, const char *nonce)
{
    enum agape_step s =
        harness_op_start_json(o, &g.prov, "verify_id_token", g.pl->desc->auth->verify_id_token,
                              verify_input(token, nonce));
    assert_int_equal(answer_fetches(o, s), AGAPE_STEP_DONE);
}

/* ---------------------------------------------------------------- */
/* Descriptor, options, init                                        */

static void test_descriptor(void **state)
{
    (void)state;
    const struct agape_plugin *d = g.pl->desc;
    assert_string_equal(d->name, "google");
    assert_int_equal(d->kinds, AGAPE_KIND_AUTH);
    assert_non_null(d->auth->authorize_url);
    assert_non_null(d->auth->exchange_code);
    assert_non_null(d->auth->verify_id_token);
    assert_null(d->payment);
    assert_null(d->webhook);
    struct {
        const char *name;
        uint32_t flags;
        const char *env;
    } want[] = {
        {"client_id", AGAPE_OPT_REQUIRED, "GOOGLE_OAUTH_CLIENT_ID"},
        {"client_secret", AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET, "GOOGLE_OAUTH_CLIENT_SECRET"},
        {"redirect_uri", AGAPE_OPT_REQUIRED, "GOOGLE_OAUTH_REDIRECT_URI"},
        {"discovery_url", 0, "GOOGLE_OAUTH_DISCOVERY_URL"},
        {"issuers", 0, NULL},
        {"clock_skew_s", 0, NULL},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct agape_option *o = d->options;
        while (o->name != NULL && strcmp(o->name, want[i].name) != 0) {
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
    assert_int_not_equal(harness_provider_init(&g, "google", conf, err, sizeof(err)), AGAPE_OK);
    assert_null(g.prov.ctx);
    if (strstr(err, needle) == NULL) {
        fail_msg("init error \"%s\" lacks \"%s\"", err, needle);
    }
    assert_null(strstr(err, "s3cr3t"));
    harness_provider_fini(&g);
}

static json_t *conf_with(const char *key, json_t *v)
{
    json_t *c = default_conf();
    if (v == NULL) {
        json_object_del(c, key);
    } else {
        json_object_set_new(c, key, v);
    }
    return c;
}

static void test_init(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE];
    expect_init_error(conf_with("client_id", NULL), "GOOGLE_OAUTH_CLIENT_ID");
    expect_init_error(conf_with("client_secret", json_string("")), "GOOGLE_OAUTH_CLIENT_SECRET");
    expect_init_error(conf_with("client_secret", json_string("s3cr3t with space")),
                      "client_secret");
    expect_init_error(conf_with("redirect_uri", json_string("app.example.com/cb")),
                      "GOOGLE_OAUTH_REDIRECT_URI");
    expect_init_error(conf_with("discovery_url", json_string("ftp://x")), "discovery_url");
    expect_init_error(conf_with("clock_skew_s", json_string("5m")), "clock_skew_s");
    expect_init_error(conf_with("clock_skew_s", json_integer(601)), "clock_skew_s");
    expect_init_error(conf_with("issuers", json_pack("[s,i]", "https://a", 2)), "issuers[2]");

    /* From env(): strings; an empty discovery_url means the default. */
    json_t *c = conf_with("clock_skew_s", json_string("120"));
    json_object_set_new(c, "discovery_url", json_string(""));
    json_object_set_new(c, "issuers", json_pack("[s]", "https://issuer.example"));
    assert_int_equal(harness_provider_init(&g, "google", c, err, sizeof(err)), AGAPE_OK);
    harness_provider_fini(&g);
}

/* ---------------------------------------------------------------- */
/* PKCE (the core's function) and authorize_url                     */

static void test_pkce_vector(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(auth_pkce_s256(VERIFIER, out, sizeof(out)), AGAPE_OK);
    assert_string_equal(out, CHALLENGE);
    assert_int_equal(auth_pkce_s256("too-short", out, sizeof(out)), AGAPE_EINVAL);
    assert_int_equal(auth_pkce_s256("dBjftJeZ4CVP+mB92K27uhbUJU1p1r/wW1gFWFOEjXk", out,
                                    sizeof(out)),
                     AGAPE_EINVAL);
    assert_int_equal(auth_pkce_s256(VERIFIER, out, 43), AGAPE_ERANGE);
    /* 32 random bytes give a 43-character verifier the function accepts. */
    char v[64];
    assert_int_equal(auth_random_b64url(32, v, sizeof(v)), AGAPE_OK);
    assert_int_equal(strlen(v), 43);
    assert_int_equal(auth_pkce_s256(v, out, sizeof(out)), AGAPE_OK);
}

static void test_authorize_url(void **state)
{
    (void)state;
    struct harness_op o;
    char challenge[64];
    assert_int_equal(auth_pkce_s256(VERIFIER, challenge, sizeof(challenge)), AGAPE_OK);
    json_t *in = json_pack("{s:s, s:s, s:s, s:s}", "state", "st/ate+1", "nonce", "n-1",
                           "code_challenge", challenge, "return_to", "https://app.example.com/");
    json_incref(in);
    assert_int_equal(
        harness_op_start_json(&o, &g.prov, "authorize_url", g.pl->desc->auth->authorize_url, in),
        AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "GET");
    assert_string_equal(o.x.url, DISC_URL);
    assert_null(o.x.body);
    assert_int_equal(
        harness_op_reanswer_text(&o, 200, disc_doc, "Cache-Control", "public, max-age=3600", NULL),
        AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    const char expect[] = AUTH_EP "?response_type=code&client_id=" CID
                                  "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fauth%2Fcallback"
                                  "&scope=openid%20email%20profile&state=st%2Fate%2B1&nonce=n-1"
                                  "&code_challenge=" CHALLENGE "&code_challenge_method=S256";
    assert_string_equal(harness_res_str(&o, "url"), expect);
    harness_op_end(&o);

    /* The discovery document is cached: the next URL needs no request. */
    assert_int_equal(
        harness_op_start_json(&o, &g.prov, "authorize_url", g.pl->desc->auth->authorize_url, in),
        AGAPE_STEP_DONE);
    assert_string_equal(harness_res_str(&o, "url"), expect);
    harness_op_end(&o);
}

static void test_authorize_bad_input(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(
        harness_op_start_json(&o, &g.prov, "authorize_url", g.pl->desc->auth->authorize_url,
                              json_pack("{s:s, s:s}", "nonce", "n", "code_challenge", CHALLENGE)),
        AGAPE_STEP_FAIL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_non_null(strstr(o.hc.pub.err, "state is required"));
    harness_op_end(&o);
    assert_int_equal(harness_op_start_json(&o, &g.prov, "authorize_url",
                                           g.pl->desc->auth->authorize_url,
                                           json_pack("{s:s, s:s, s:s}", "state", "s", "nonce", "n",
                                                     "code_challenge", "plain-challenge")),
                     AGAPE_STEP_FAIL);
    assert_non_null(strstr(o.hc.pub.err, "code_challenge"));
    harness_op_end(&o);
}

static void test_discovery_failures(void **state)
{
    (void)state;
    struct harness_op o;
    json_t *in = json_pack("{s:s, s:s, s:s}", "state", "s", "nonce", "n", "code_challenge",
                           CHALLENGE);
    json_incref(in); /* op_start takes one reference per call: four calls */
    json_incref(in);
    json_incref(in);
    assert_int_equal(
        harness_op_start_json(&o, &g.prov, "authorize_url", g.pl->desc->auth->authorize_url, in),
        AGAPE_STEP_SEND);
    assert_int_equal(harness_op_reanswer_text(&o, 503, "oops", NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNAVAILABLE);
    harness_op_end(&o);
    assert_int_equal(
        harness_op_start_json(&o, &g.prov, "authorize_url", g.pl->desc->auth->authorize_url, in),
        AGAPE_STEP_SEND);
    assert_int_equal(
        harness_op_reanswer_text(&o, 200, "{\"issuer\":\"https://accounts.google.com\"}", NULL),
        AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNAVAILABLE);
    assert_non_null(strstr(o.hc.pub.err, "authorization_endpoint"));
    harness_op_end(&o);
    /* no-store: used for this call, not kept. */
    assert_int_equal(
        harness_op_start_json(&o, &g.prov, "authorize_url", g.pl->desc->auth->authorize_url, in),
        AGAPE_STEP_SEND);
    assert_int_equal(harness_op_reanswer_text(&o, 200, disc_doc, "Cache-Control", "no-store", NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);
    assert_int_equal(
        harness_op_start_json(&o, &g.prov, "authorize_url", g.pl->desc->auth->authorize_url, in),
        AGAPE_STEP_SEND);
    harness_op_end(&o);
}

/* ---------------------------------------------------------------- */
/* exchange_code                                                    */

static json_t *exchange_input(void)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "code", "4/0AX4XfWh-code", "code_verifier",
                     VERIFIER, "nonce", "n-1", "idempotency_key", "agape-x");
}

/* Start exchange_code and answer discovery + JWKS: the token request is next. */
static void exchange_to_token(struct harness_op *o)
{
    enum agape_step s = harness_op_start_json(o, &g.prov, "exchange_code",
                                              g.pl->desc->auth->exchange_code, exchange_input());
    assert_int_equal(answer_fetches(o, s), AGAPE_STEP_SEND);
    assert_string_equal(o->x.method, "POST");
}

static void test_exchange_code(void **state)
{
    (void)state;
    struct harness_op o;
    exchange_to_token(&o);
    /* The key set is fetched before the single-use code is spent. */
    assert_int_equal(t.disc_fetches, 1);
    assert_int_equal(t.jwks_fetches, 1);
    assert_string_equal(o.x.url, TOKEN_EP);
    assert_string_equal(harness_req_header(&o.x, "Content-Type"),
                        "application/x-www-form-urlencoded");
    assert_string_equal(harness_req_header(&o.x, "Accept"), "application/json");
    assert_null(harness_req_header(&o.x, "Authorization"));
    const char expect[] = "grant_type=authorization_code&code=4%2F0AX4XfWh-code"
                          "&client_id=" CID "&client_secret=" SECRET
                          "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fauth%2Fcallback"
                          "&code_verifier=" VERIFIER;
    assert_int_equal(o.x.body_len, strlen(expect));
    assert_memory_equal(o.x.body, expect, strlen(expect));

    char *jwt = make_jwt("RS256", "k1", t.k1, good_claims(), false);
    json_t *ans = json_pack("{s:s, s:i, s:s, s:s, s:s}", "access_token", "ya29.a0", "expires_in",
                            3599, "token_type", "Bearer", "scope", "openid email profile",
                            "id_token", jwt);
    char *text = json_dumps(ans, JSON_COMPACT);
    assert_int_equal(harness_op_reanswer_text(&o, 200, text, NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "subject"), "110169484474386276334");
    assert_string_equal(harness_res_str(&o, "email"), "ana@example.com");
    assert_true(json_is_true(json_object_get(o.hc.result, "email_verified")));
    assert_string_equal(harness_res_str(&o, "name"), "Ana Lima");
    assert_string_equal(harness_res_str(&o, "picture"), "https://lh3.googleusercontent.com/a/x");
    assert_string_equal(harness_res_str(&o, "issuer"), "https://accounts.google.com");
    harness_op_end(&o);
    free(text);
    free(jwt);
    json_decref(ans);

    /* A wrong verifier is refused before anything is sent. */
    json_t *bad = exchange_input();
    json_object_set_new(bad, "code_verifier", json_string("short"));
    assert_int_equal(
        harness_op_start_json(&o, &g.prov, "exchange_code", g.pl->desc->auth->exchange_code, bad),
        AGAPE_STEP_FAIL);
    assert_non_null(strstr(o.hc.pub.err, "code_verifier"));
    harness_op_end(&o);
}

static void test_exchange_errors(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *body;
        const char *retry_after;
        enum agape_outcome outcome;
        const char *err;
    } cases[] = {
        {400, "{\"error\":\"invalid_grant\",\"error_description\":\"Bad Request\"}", NULL,
         AGAPE_OUTCOME_INVALID, "invalid_grant"},
        {401, "{\"error\":\"invalid_client\",\"error_description\":\"Unauthorized\"}", NULL,
         AGAPE_OUTCOME_AUTH, "invalid_client"},
        {400, "{\"error\":\"invalid_client\"}", NULL, AGAPE_OUTCOME_AUTH, "client credentials"},
        {400, "{\"error\":\"redirect_uri_mismatch\"}", NULL, AGAPE_OUTCOME_INVALID,
         "redirect_uri_mismatch"},
        {503, "unavailable", NULL, AGAPE_OUTCOME_UNAVAILABLE, "HTTP 503"},
        {500, "{}", NULL, AGAPE_OUTCOME_UNAVAILABLE, "HTTP 500"},
        {429, "{\"error\":\"rate_limit_exceeded\"}", "7", AGAPE_OUTCOME_RATE_LIMITED, "429"},
        {200, "{\"access_token\":\"ya29\"}", NULL, AGAPE_OUTCOME_INVALID, "without an id_token"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct harness_op o;
        exchange_to_token(&o);
        enum agape_step s =
            cases[i].retry_after
                ? harness_op_reanswer_text(&o, cases[i].status, cases[i].body, "Retry-After",
                                           cases[i].retry_after, NULL)
                : harness_op_reanswer_text(&o, cases[i].status, cases[i].body, NULL);
        assert_int_equal(s, AGAPE_STEP_DONE);
        assert_int_equal(o.hc.pub.outcome, cases[i].outcome);
        if (strstr(o.hc.pub.err, cases[i].err) == NULL) {
            fail_msg("case %zu: err \"%s\" lacks \"%s\"", i, o.hc.pub.err, cases[i].err);
        }
        assert_null(strstr(o.hc.pub.err, SECRET));
        assert_null(strstr(o.hc.pub.err, "4/0AX4XfWh-code"));
        assert_int_equal(o.hc.pub.retry_after_ms, cases[i].retry_after ? 7000 : -1);
        harness_op_end(&o);
    }
    /* Discovery and JWKS came from the cache after the first case. */
    assert_int_equal(t.disc_fetches, 1);
    assert_int_equal(t.jwks_fetches, 1);
}

/* ---------------------------------------------------------------- */
/* verify_id_token                                                  */

static void test_verify_ok(void **state)
{
    (void)state;
    struct harness_op o;
    char *jwt = make_jwt("RS256", "k1", t.k1, good_claims(), false);
    verify(&o, jwt, "n-1");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(harness_res_str(&o, "subject"), "110169484474386276334");
    harness_op_end(&o);
    /* Without a nonce in the input, the token's nonce is not checked. */
    verify(&o, jwt, NULL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);
    assert_int_equal(t.disc_fetches, 1);
    assert_int_equal(t.jwks_fetches, 1);
    free(jwt);

    /* The legacy issuer spelling; aud as an array with azp; email_verified "true". */
    json_t *c = good_claims();
    json_object_set_new(c, "iss", json_string("accounts.google.com"));
    json_object_set_new(c, "aud", json_pack("[s,s]", "other-client", CID));
    json_object_set_new(c, "email_verified", json_string("true"));
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    verify(&o, jwt, "n-1");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_true(json_is_true(json_object_get(o.hc.result, "email_verified")));
    assert_string_equal(harness_res_str(&o, "issuer"), "accounts.google.com");
    harness_op_end(&o);
    free(jwt);
}

struct refusal {
    const char *what;
    const char *err;
};

static void expect_refused(const char *jwt, const char *nonce, const char *needle)
{
    struct harness_op o;
    verify(&o, jwt, nonce);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    if (strstr(o.hc.pub.err, needle) == NULL) {
        fail_msg("err \"%s\" lacks \"%s\"", o.hc.pub.err, needle);
    }
    /* Never the token, nor its signature, in the reason. */
    const char *sig = strrchr(jwt, '.');
    assert_null(strstr(o.hc.pub.err, jwt));
    if (sig != NULL && strlen(sig) > 8) {
        assert_null(strstr(o.hc.pub.err, sig + 1));
    }
    assert_int_equal(json_object_size(o.hc.result), 0);
    harness_op_end(&o);
}

static void test_verify_refusals(void **state)
{
    (void)state;
    int64_t now = now_s();
    char *jwt;
    json_t *c;

    jwt = make_jwt("RS256", "k1", t.k1, good_claims(), true);
    expect_refused(jwt, "n-1", "signature does not verify");
    free(jwt);
    /* Signed by another key under k1's kid. */
    jwt = make_jwt("RS256", "k1", t.k2, good_claims(), false);
    expect_refused(jwt, "n-1", "signature does not verify");
    free(jwt);

    c = good_claims();
    json_object_set_new(c, "aud", json_string("someone-else.apps.googleusercontent.com"));
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    expect_refused(jwt, "n-1", "audience");
    free(jwt);

    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s,s]", CID, "other"));
    json_object_set_new(c, "azp", json_string("other"));
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    expect_refused(jwt, "n-1", "azp");
    free(jwt);

    c = good_claims();
    json_object_set_new(c, "iss", json_string("https://evil.example.com"));
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    expect_refused(jwt, "n-1", "issuer \"https://evil.example.com\" is not accepted");
    free(jwt);

    c = good_claims();
    json_object_set_new(c, "iat", json_integer(now - 7200));
    json_object_set_new(c, "exp", json_integer(now - 61)); /* past the 60 s skew */
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    expect_refused(jwt, "n-1", "expired");
    free(jwt);

    /* Within the skew: accepted. */
    c = good_claims();
    json_object_set_new(c, "exp", json_integer(now - 30));
    json_object_set_new(c, "iat", json_integer(now - 3630));
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    struct harness_op o;
    verify(&o, jwt, "n-1");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);
    free(jwt);

    c = good_claims();
    json_object_set_new(c, "iat", json_integer(now + 600));
    json_object_set_new(c, "exp", json_integer(now + 4200));
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    expect_refused(jwt, "n-1", "iat is in the future");
    free(jwt);

    c = good_claims();
    json_object_set_new(c, "exp", json_integer(now + 2 * 86400));
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    expect_refused(jwt, "n-1", "lifetime");
    free(jwt);

    jwt = make_jwt("RS256", "k1", t.k1, good_claims(), false);
    expect_refused(jwt, "n-2", "nonce does not match");
    free(jwt);
    c = good_claims();
    json_object_del(c, "nonce");
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    expect_refused(jwt, "n-1", "has no nonce");
    free(jwt);

    jwt = make_jwt("none", NULL, NULL, good_claims(), false);
    expect_refused(jwt, "n-1", "alg \"none\" is refused");
    free(jwt);
    jwt = make_jwt("HS256", "k1", NULL, good_claims(), false);
    expect_refused(jwt, "n-1", "alg \"HS256\" is refused");
    free(jwt);
    jwt = make_jwt("RS512", "k1", t.k1, good_claims(), false);
    expect_refused(jwt, "n-1", "only RS256");
    free(jwt);

    expect_refused("abc.def", "n-1", "not a JWT");
    expect_refused("a.b.c.d", "n-1", "not a JWT");
    expect_refused("e30.e30.", "n-1", "no alg");
    expect_refused("!!!.e30.abc", "n-1", "not a JWT");
    c = good_claims();
    json_object_del(c, "sub");
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    expect_refused(jwt, "n-1", "subject");
    free(jwt);
    /* Nothing fetched more than once for all of the above. */
    assert_int_equal(t.disc_fetches, 1);
    assert_int_equal(t.jwks_fetches, 1);
}

static void test_unknown_kid_refetch(void **state)
{
    (void)state;
    struct harness_op o;
    char *good = make_jwt("RS256", "k1", t.k1, good_claims(), false);
    char *rotated = make_jwt("RS256", "k2", t.k2, good_claims(), false);
    char *made_up = make_jwt("RS256", "k3", t.k2, good_claims(), false);

    /* A first call fills the cache with {k1}. */
    verify(&o, good, "n-1");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);
    assert_int_equal(t.jwks_fetches, 1);

    /* The provider rotated to k2: the unknown kid makes one refetch, which
     * brings k2, and the token passes. */
    free(t.jwks);
    t.jwks = jwks_of(1, t.k2, "k2");
    verify(&o, rotated, "n-1");
    assert_int_equal(t.jwks_fetches, 2);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);
    /* …and the new key set is cached for the next call. */
    verify(&o, rotated, "n-1");
    assert_int_equal(t.jwks_fetches, 2);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);

    /* k1 left the key set: one refetch, still without it → INVALID, no loop. */
    verify(&o, good, "n-1");
    assert_int_equal(t.jwks_fetches, 3);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_non_null(strstr(o.hc.pub.err, "unknown key id \"k1\""));
    harness_op_end(&o);
    /* That fruitless refetch started a cooldown: a made-up kid fetches nothing. */
    verify(&o, made_up, "n-1");
    assert_int_equal(t.jwks_fetches, 3);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_non_null(strstr(o.hc.pub.err, "unknown key id \"k3\""));
    harness_op_end(&o);
    /* Once the cooldown is over, an unknown kid refetches again (once). */
    pthread_mutex_lock(&g.prov.cache_lock);
    assert_int_equal(json_object_del(g.prov.cache, "jwks_cooldown"), 0);
    pthread_mutex_unlock(&g.prov.cache_lock);
    verify(&o, made_up, "n-1");
    assert_int_equal(t.jwks_fetches, 4);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    harness_op_end(&o);
    assert_int_equal(t.disc_fetches, 1);
    free(good);
    free(rotated);
    free(made_up);
}

static void test_unknown_kid_fresh_fetch_is_final(void **state)
{
    (void)state;
    struct harness_op o;
    char *rotated = make_jwt("RS256", "k2", t.k2, good_claims(), false);
    /* Nothing cached: the JWKS fetched for this call is already fresh, so an
     * unknown kid is final at once. */
    verify(&o, rotated, "n-1");
    assert_int_equal(t.jwks_fetches, 1);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_non_null(strstr(o.hc.pub.err, "unknown key id"));
    harness_op_end(&o);
    free(rotated);
}

static void test_configured_issuers_and_skew(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE];
    json_t *conf = default_conf();
    json_object_set_new(conf, "issuers", json_pack("[s]", "https://issuer.example"));
    json_object_set_new(conf, "clock_skew_s", json_integer(0));
    harness_provider_fini(&g); /* replace the default provider */
    assert_int_equal(harness_provider_init(&g, "google", conf, err, sizeof(err)), AGAPE_OK);

    /* Only the configured issuer: Google's own is refused now. */
    char *jwt = make_jwt("RS256", "k1", t.k1, good_claims(), false);
    expect_refused(jwt, "n-1", "issuer");
    free(jwt);
    json_t *c = good_claims();
    json_object_set_new(c, "iss", json_string("https://issuer.example"));
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    struct harness_op o;
    verify(&o, jwt, "n-1");
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_OK);
    harness_op_end(&o);
    free(jwt);
    /* Skew 0: a token that expired a second ago is refused. */
    c = good_claims();
    json_object_set_new(c, "iss", json_string("https://issuer.example"));
    json_object_set_new(c, "exp", json_integer(now_s() - 1));
    jwt = make_jwt("RS256", "k1", t.k1, c, false);
    expect_refused(jwt, "n-1", "expired");
    free(jwt);
}

static void test_jwks_failures(void **state)
{
    (void)state;
    struct harness_op o;
    char *jwt = make_jwt("RS256", "k1", t.k1, good_claims(), false);
    enum agape_step s = harness_op_start_json(
        &o, &g.prov, "verify_id_token", g.pl->desc->auth->verify_id_token, verify_input(jwt, NULL));
    s = harness_op_reanswer_text(&o, 200, disc_doc, NULL);
    assert_int_equal(s, AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, JWKS_URL);
    assert_int_equal(harness_op_reanswer_text(&o, 502, "bad gateway", NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNAVAILABLE);
    harness_op_end(&o);
    s = harness_op_start_json(&o, &g.prov, "verify_id_token", g.pl->desc->auth->verify_id_token,
                              verify_input(jwt, NULL));
    assert_int_equal(s, AGAPE_STEP_SEND); /* discovery was cached, the JWKS was not */
    assert_string_equal(o.x.url, JWKS_URL);
    assert_int_equal(harness_op_reanswer_text(&o, 200, "{\"keys\":{}}", NULL), AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_UNAVAILABLE);
    assert_non_null(strstr(o.hc.pub.err, "keys"));
    harness_op_end(&o);
    s = harness_op_start_json(&o, &g.prov, "verify_id_token", g.pl->desc->auth->verify_id_token,
                              verify_input(jwt, NULL));
    assert_int_equal(harness_op_reanswer_text(&o, 429, "{}", "Retry-After", "3", NULL),
                     AGAPE_STEP_DONE);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_RATE_LIMITED);
    assert_int_equal(o.hc.pub.retry_after_ms, 3000);
    harness_op_end(&o);
    free(jwt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_pkce_vector),
        cmocka_unit_test_setup_teardown(test_authorize_url, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_authorize_bad_input, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_discovery_failures, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_exchange_code, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_exchange_errors, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_verify_ok, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_verify_refusals, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_unknown_kid_refetch, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_unknown_kid_fresh_fetch_is_final, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_configured_issuers_and_skew, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_jwks_failures, setup_default, teardown_provider),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
