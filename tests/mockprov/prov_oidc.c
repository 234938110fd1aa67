/* An OpenID Connect issuer shaped like Google's (PROVIDERS.md §5): the
 * discovery document, the JWKS, and a token endpoint that exchanges codes
 * for RS256 id_tokens signed with a key the mock made itself (OpenSSL,
 * RSA 2048, generated on first use).
 *
 *   GET  /.well-known/openid-configuration   issuer = http://<Host>, endpoints under it;
 *                                            Cache-Control: public, max-age=3600
 *   GET  /oauth2/certs                       {"keys": [the current key]}, max-age=3600
 *   POST /token                              grant_type=authorization_code&code&client_id&
 *                                            client_secret&redirect_uri&code_verifier →
 *                                            {"access_token", "id_token", …}; an unknown or
 *                                            used code → 400 invalid_grant; a code_verifier
 *                                            that does not hash to the registered
 *                                            code_challenge → 400 invalid_grant
 * Controls (never recorded):
 *   POST /_mock/oidc/code  {"code", "sub", "email"?, "email_verified"?, "name"?,
 *                           "picture"?, "nonce"?, "aud"?, "azp"?, "iss"?, "exp_offset"?,
 *                           "iat_offset"?, "alg"?, "tamper"?, "kid"?, "code_challenge"?}
 *          registers what /token answers for that code (once). aud defaults to the
 *          client_id of the token request, iss to the mock's URL, exp to now + 3600.
 *          alg "none" or "HS256" signs that way; tamper flips a signature bit; kid
 *          overrides the header's key id.
 *   POST /_mock/oidc/token {same fields but code} → {"id_token"} at once (aud defaults to
 *          "agape-test-client").
 *   POST /_mock/oidc/rotate → a new key with a new kid; the old one leaves the JWKS.
 * Registered codes live in the bucket "oidc.codes" (/_mock/state/oidc.codes). */
#include "mock.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The signing key; guarded by the mock lock (handlers run with it held). */
static EVP_PKEY *oidc_key;
static char oidc_kid[32];
static long oidc_generation;

static void oidc_error(struct mock_resp *rs, int status, const char *error, const char *desc)
{
    mock_json(rs, status, json_pack("{s:s, s:s}", "error", error, "error_description", desc));
}

static bool oidc_ensure_key(void)
{
    if (oidc_key != NULL) {
        return true;
    }
    oidc_key = EVP_RSA_gen(2048);
    if (oidc_key == NULL) {
        return false;
    }
    oidc_generation++;
    snprintf(oidc_kid, sizeof(oidc_kid), "mock-key-%ld", oidc_generation);
    return true;
}

/* Base64url without padding; malloc'd. */
static char *oidc_b64url(const unsigned char *p, size_t len)
{
    char *s = mock_b64_encode(p, len);
    if (s == NULL) {
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (s[i] == '=') {
            break;
        }
        s[n++] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    }
    s[n] = '\0';
    return s;
}

static char *oidc_bn_b64url(const char *param)
{
    BIGNUM *bn = NULL;
    char *out = NULL;
    if (EVP_PKEY_get_bn_param(oidc_key, param, &bn) != 1) {
        return NULL;
    }
    int n = BN_num_bytes(bn);
    unsigned char *raw = malloc((size_t)n + 1);
    if (raw != NULL && BN_bn2bin(bn, raw) == n) {
        out = oidc_b64url(raw, (size_t)n);
    }
    free(raw);
    BN_free(bn);
    return out;
}

/* http://<Host>: the URL tests and the gateway reach the mock under. */
static void oidc_base(const struct mock_req *rq, char *out, size_t len)
{
    const char *host = mock_req_header(rq, "host");
    snprintf(out, len, "http://%s", host ? host : "127.0.0.1");
}

static char *oidc_sign(const char *alg, const char *input, bool tamper)
{
    unsigned char sig[512];
    size_t siglen = sizeof(sig);
    if (strcmp(alg, "none") == 0) {
        return strdup("");
    }
    if (strcmp(alg, "HS256") == 0) {
        static const char secret[] = "mock-hs256-secret";
        unsigned int hlen = 0;
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)input,
             strlen(input), sig, &hlen);
        siglen = hlen;
    } else {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        int ok = md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, oidc_key) == 1 &&
                 EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input,
                                strlen(input)) == 1;
        EVP_MD_CTX_free(md);
        if (!ok) {
            return NULL;
        }
    }
    if (tamper && siglen > 0) {
        sig[siglen / 2] ^= 0x01;
    }
    return oidc_b64url(sig, siglen);
}

/* An id_token from a spec (the registration's fields). New string or NULL. */
static char *oidc_jwt(json_t *spec, const char *dflt_iss, const char *dflt_aud)
{
    int64_t now = mock_now_s();
    const char *alg = json_string_value(json_object_get(spec, "alg"));
    const char *kid = json_string_value(json_object_get(spec, "kid"));
    json_t *aud = json_object_get(spec, "aud");
    json_t *v;
    char *out = NULL;

    if (alg == NULL) {
        alg = "RS256";
    }
    json_t *hdr = json_pack("{s:s, s:s}", "alg", alg, "typ", "JWT");
    if (strcmp(alg, "none") != 0) {
        json_object_set_new(hdr, "kid", json_string(kid ? kid : oidc_kid));
    }
    json_t *claims = json_object();
    const char *iss = json_string_value(json_object_get(spec, "iss"));
    json_object_set_new(claims, "iss", json_string(iss ? iss : dflt_iss));
    if (json_object_get(spec, "azp") != NULL) {
        json_object_set(claims, "azp", json_object_get(spec, "azp"));
    } else if (aud == NULL || json_is_string(aud)) {
        json_object_set_new(claims, "azp", json_string(aud ? json_string_value(aud) : dflt_aud));
    }
    if (aud != NULL) {
        json_object_set(claims, "aud", aud);
    } else {
        json_object_set_new(claims, "aud", json_string(dflt_aud));
    }
    static const char *const copy[] = {"sub", "email", "email_verified", "name", "picture",
                                       "nonce", "hd", NULL};
    for (int i = 0; copy[i] != NULL; i++) {
        if ((v = json_object_get(spec, copy[i])) != NULL) {
            json_object_set(claims, copy[i], v);
        }
    }
    if (json_object_get(claims, "email_verified") == NULL &&
        json_object_get(claims, "email") != NULL) {
        json_object_set_new(claims, "email_verified", json_true());
    }
    int64_t exp_off = json_is_integer(json_object_get(spec, "exp_offset"))
                          ? (int64_t)json_integer_value(json_object_get(spec, "exp_offset"))
                          : 3600;
    int64_t iat_off = json_is_integer(json_object_get(spec, "iat_offset"))
                          ? (int64_t)json_integer_value(json_object_get(spec, "iat_offset"))
                          : 0;
    json_object_set_new(claims, "iat", json_integer(now + iat_off));
    json_object_set_new(claims, "exp", json_integer(now + exp_off));

    char *htext = json_dumps(hdr, JSON_COMPACT);
    char *ctext = json_dumps(claims, JSON_COMPACT);
    char *h64 = htext ? oidc_b64url((const unsigned char *)htext, strlen(htext)) : NULL;
    char *c64 = ctext ? oidc_b64url((const unsigned char *)ctext, strlen(ctext)) : NULL;
    if (h64 != NULL && c64 != NULL) {
        size_t n = strlen(h64) + strlen(c64) + 2;
        char *input = malloc(n);
        if (input != NULL) {
            snprintf(input, n, "%s.%s", h64, c64);
            char *sig = oidc_sign(alg, input, json_is_true(json_object_get(spec, "tamper")));
            if (sig != NULL) {
                size_t m = n + strlen(sig) + 1;
                out = malloc(m);
                if (out != NULL) {
                    snprintf(out, m, "%s.%s", input, sig);
                }
            }
            free(sig);
            free(input);
        }
    }
    free(htext);
    free(ctext);
    free(h64);
    free(c64);
    json_decref(hdr);
    json_decref(claims);
    return out;
}

/* ------------------------------------------------------------------ */
/* The issuer's endpoints                                              */

static void discovery(const struct mock_req *rq, struct mock_resp *rs)
{
    char base[300], a[400], t[400], j[400], u[400];
    oidc_base(rq, base, sizeof(base));
    snprintf(a, sizeof(a), "%s/o/oauth2/auth", base);
    snprintf(t, sizeof(t), "%s/token", base);
    snprintf(j, sizeof(j), "%s/oauth2/certs", base);
    snprintf(u, sizeof(u), "%s/v1/userinfo", base);
    mock_json(rs, 200,
              json_pack("{s:s, s:s, s:s, s:s, s:s, s:[s], s:[s], s:[s], s:[s,s,s], s:[s,s], "
                        "s:[s,s]}",
                        "issuer", base, "authorization_endpoint", a, "token_endpoint", t,
                        "userinfo_endpoint", u, "jwks_uri", j, "response_types_supported",
                        "code", "subject_types_supported", "public",
                        "id_token_signing_alg_values_supported", "RS256", "scopes_supported",
                        "openid", "email", "profile", "token_endpoint_auth_methods_supported",
                        "client_secret_post", "client_secret_basic",
                        "code_challenge_methods_supported", "plain", "S256"));
    mock_header(rs, "Cache-Control", "public, max-age=3600");
}

static void certs(const struct mock_req *rq, struct mock_resp *rs)
{
    (void)rq;
    if (!oidc_ensure_key()) {
        oidc_error(rs, 500, "internal", "mockprov: no key");
        return;
    }
    char *n = oidc_bn_b64url(OSSL_PKEY_PARAM_RSA_N);
    char *e = oidc_bn_b64url(OSSL_PKEY_PARAM_RSA_E);
    if (n == NULL || e == NULL) {
        oidc_error(rs, 500, "internal", "mockprov: cannot export the key");
    } else {
        mock_json(rs, 200,
                  json_pack("{s:[{s:s, s:s, s:s, s:s, s:s, s:s}]}", "keys", "kty", "RSA", "alg",
                            "RS256", "use", "sig", "kid", oidc_kid, "n", n, "e", e));
        mock_header(rs, "Cache-Control", "public, max-age=3600, must-revalidate, no-transform");
    }
    free(n);
    free(e);
}

/* BASE64URL(SHA256(verifier)) == challenge (RFC 7636 S256). */
static bool pkce_ok(const char *verifier, const char *challenge)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (verifier == NULL ||
        EVP_Digest(verifier, strlen(verifier), md, &mdlen, EVP_sha256(), NULL) != 1) {
        return false;
    }
    char *got = oidc_b64url(md, mdlen);
    bool ok = got != NULL && strcmp(got, challenge) == 0;
    free(got);
    return ok;
}

static void token(const struct mock_req *rq, struct mock_resp *rs)
{
    json_t *form = mock_form_parse(rq->body, rq->body_len);
    const char *grant = mock_form_get(form, "grant_type");
    const char *code = mock_form_get(form, "code");
    const char *client_id = mock_form_get(form, "client_id");
    const char *secret = mock_form_get(form, "client_secret");
    char base[300];
    oidc_base(rq, base, sizeof(base));

    if (client_id == NULL || client_id[0] == '\0' || secret == NULL || secret[0] == '\0') {
        oidc_error(rs, 401, "invalid_client", "The OAuth client was not found.");
    } else if (grant == NULL || strcmp(grant, "authorization_code") != 0) {
        oidc_error(rs, 400, "unsupported_grant_type", "Invalid grant_type");
    } else if (mock_form_get(form, "redirect_uri") == NULL) {
        oidc_error(rs, 400, "invalid_request", "Missing parameter: redirect_uri");
    } else {
        json_t *spec = code ? json_object_get(mock_bucket("oidc.codes"), code) : NULL;
        const char *challenge = json_string_value(json_object_get(spec, "code_challenge"));
        if (spec == NULL || json_is_true(json_object_get(spec, "used"))) {
            oidc_error(rs, 400, "invalid_grant", "Bad Request");
        } else if (challenge != NULL &&
                   !pkce_ok(mock_form_get(form, "code_verifier"), challenge)) {
            json_object_set_new(spec, "used", json_true());
            oidc_error(rs, 400, "invalid_grant", "Invalid code verifier.");
        } else if (!oidc_ensure_key()) {
            oidc_error(rs, 500, "internal", "mockprov: no key");
        } else {
            json_object_set_new(spec, "used", json_true());
            char *jwt = oidc_jwt(spec, base, client_id);
            if (jwt == NULL) {
                oidc_error(rs, 500, "internal", "mockprov: cannot sign");
            } else {
                char at[48];
                snprintf(at, sizeof(at), "ya29.mock-%ld", mock_next_id("oidc.access"));
                mock_json(rs, 200,
                          json_pack("{s:s, s:i, s:s, s:s, s:s}", "access_token", at,
                                    "expires_in", 3599, "token_type", "Bearer", "scope",
                                    "openid https://www.googleapis.com/auth/userinfo.email "
                                    "https://www.googleapis.com/auth/userinfo.profile",
                                    "id_token", jwt));
                mock_header(rs, "Cache-Control", "no-store");
            }
            free(jwt);
        }
    }
    json_decref(form);
}

/* ------------------------------------------------------------------ */
/* Controls                                                            */

static json_t *control_body(const struct mock_req *rq, struct mock_resp *rs)
{
    json_t *in = rq->body_len ? json_loadb(rq->body, rq->body_len, 0, NULL) : json_object();
    if (!json_is_object(in)) {
        json_decref(in);
        oidc_error(rs, 400, "invalid_request", "body must be a JSON object");
        return NULL;
    }
    return in;
}

static void control_code(const struct mock_req *rq, struct mock_resp *rs)
{
    json_t *in = control_body(rq, rs);
    if (in == NULL) {
        return;
    }
    const char *code = json_string_value(json_object_get(in, "code"));
    if (code == NULL || code[0] == '\0' || !json_is_string(json_object_get(in, "sub"))) {
        oidc_error(rs, 400, "invalid_request", "code and sub are required strings");
    } else {
        json_object_set_new(in, "used", json_false());
        json_object_set(mock_bucket("oidc.codes"), code, in);
        mock_json(rs, 200, json_pack("{s:b}", "ok", 1));
    }
    json_decref(in);
}

static void control_token(const struct mock_req *rq, struct mock_resp *rs)
{
    char base[300];
    json_t *in = control_body(rq, rs);
    if (in == NULL) {
        return;
    }
    oidc_base(rq, base, sizeof(base));
    char *jwt = oidc_ensure_key() ? oidc_jwt(in, base, "agape-test-client") : NULL;
    if (jwt == NULL) {
        oidc_error(rs, 500, "internal", "mockprov: cannot sign");
    } else {
        mock_json(rs, 200, json_pack("{s:s, s:s}", "id_token", jwt, "kid", oidc_kid));
    }
    free(jwt);
    json_decref(in);
}

static void control_rotate(const struct mock_req *rq, struct mock_resp *rs)
{
    (void)rq;
    EVP_PKEY_free(oidc_key);
    oidc_key = NULL;
    if (!oidc_ensure_key()) {
        oidc_error(rs, 500, "internal", "mockprov: no key");
        return;
    }
    mock_json(rs, 200, json_pack("{s:s}", "kid", oidc_kid));
}

static const struct mock_route routes[] = {
    {"GET", "/.well-known/openid-configuration", discovery, NULL},
    {"GET", "/oauth2/certs", certs, NULL},
    {"POST", "/token", token, NULL},
    {"POST", "/_mock/oidc/code", control_code, NULL},
    {"POST", "/_mock/oidc/token", control_token, NULL},
    {"POST", "/_mock/oidc/rotate", control_rotate, NULL},
    {NULL, NULL, NULL, NULL},
};

const struct mock_provider mock_oidc = {"oidc", routes, NULL};
