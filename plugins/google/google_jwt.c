/* google_jwt — id_token verification (PROVIDERS.md §5.4), in that order:
 * shape, alg, kid, signature, iss, aud/azp, exp, iat, nonce.
 *
 * Everything here is about bytes an attacker chooses, so every length is
 * bounded before anything is decoded, nothing is trusted before the
 * signature verifies except what is needed to pick the key (alg, kid), and
 * error messages quote claim values only after the signature has verified,
 * shortened and made printable — never the token or a part of it. */
#include "google.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JWT_HEADER_MAX 2048  /* decoded */
#define JWT_SIG_MAX 1024     /* up to 8192-bit keys */
#define JWK_N_MAX 1024
#define JWK_E_MAX 16
#define CLAIM_QUOTE_MAX 64   /* characters of a claim quoted in an error */

static enum google_jwt_rc jwt_invalid(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum google_jwt_rc jwt_invalid(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    return GOOGLE_JWT_INVALID;
}

/* A short printable copy of a claim value for an error message. */
static const char *jwt_quote(const char *s, char out[CLAIM_QUOTE_MAX + 4])
{
    size_t i = 0;
    if (s == NULL) {
        return "(none)";
    }
    for (; s[i] != '\0' && i < CLAIM_QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
    }
    if (s[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

static bool jwt_b64url_chars(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            return false;
        }
    }
    return true;
}

/* Decode a base64url part into a fresh NUL-terminated buffer (free() it). */
static unsigned char *jwt_decode(const struct agape_host *h, const char *in, size_t len,
                                 size_t cap, long *outlen)
{
    unsigned char *out = malloc(cap + 1);
    if (out == NULL) {
        *outlen = -2;
        return NULL;
    }
    *outlen = h->base64url_decode(in, len, out, cap);
    if (*outlen < 0) {
        free(out);
        return NULL;
    }
    out[*outlen] = '\0';
    return out;
}

/* Parse a decoded part as a JSON object. NULL when it is not one. */
static struct agape_json *jwt_object(const struct agape_host *h, const unsigned char *p,
                                     long len)
{
    struct agape_json *o = h->json_parse((const char *)p, (size_t)len, NULL, 0);
    if (o != NULL && h->json_type(o) != AGAPE_JSON_OBJECT) {
        h->json_free(o);
        o = NULL;
    }
    return o;
}

/* The JWK with this kid, or NULL. */
static const struct agape_json *jwt_find_key(const struct agape_host *h,
                                             const struct agape_json *jwks, const char *kid)
{
    const struct agape_json *keys = h->json_get(jwks, "keys");
    if (h->json_type(keys) != AGAPE_JSON_ARRAY) {
        return NULL;
    }
    for (size_t i = 0; i < h->json_size(keys); i++) {
        const struct agape_json *k = h->json_at(keys, i);
        const char *id = h->json_str(k, "kid");
        if (id != NULL && strcmp(id, kid) == 0) {
            return k;
        }
    }
    return NULL;
}

/* RS256 over signing input with the JWK's (n, e). */
static enum google_jwt_rc jwt_check_sig(struct agape_call *call, const struct agape_json *jwk,
                                        const char *kid, const char *input, size_t input_len,
                                        const char *sig_b64, size_t sig_b64_len)
{
    const struct agape_host *h = call->host;
    char q[CLAIM_QUOTE_MAX + 4];
    const char *kty = h->json_str(jwk, "kty");
    const char *use = h->json_str(jwk, "use");
    const char *alg = h->json_str(jwk, "alg");
    const char *n64 = h->json_str(jwk, "n");
    const char *e64 = h->json_str(jwk, "e");
    enum google_jwt_rc rc = GOOGLE_JWT_INVALID;
    unsigned char *n = NULL, *e = NULL, *sig = NULL;
    long nlen = 0, elen = 0, siglen = 0;

    if (kty == NULL || strcmp(kty, "RSA") != 0 || (use != NULL && strcmp(use, "sig") != 0) ||
        (alg != NULL && strcmp(alg, "RS256") != 0) || n64 == NULL || e64 == NULL) {
        return jwt_invalid(call, "key id \"%s\" is not an RS256 signing key in the JWKS",
                           jwt_quote(kid, q));
    }
    if (sig_b64_len == 0 || sig_b64_len > (JWT_SIG_MAX * 4 + 2) / 3) {
        return jwt_invalid(call, "id_token signature is missing or too long");
    }
    n = jwt_decode(h, n64, strlen(n64), JWK_N_MAX, &nlen);
    e = jwt_decode(h, e64, strlen(e64), JWK_E_MAX, &elen);
    sig = jwt_decode(h, sig_b64, sig_b64_len, JWT_SIG_MAX, &siglen);
    if (nlen == -2 || elen == -2 || siglen == -2) {
        rc = GOOGLE_JWT_NOMEM;
        goto out;
    }
    if (n == NULL || e == NULL) {
        jwt_invalid(call, "key id \"%s\" has a malformed n or e in the JWKS",
                    jwt_quote(kid, q));
        goto out;
    }
    if (sig == NULL) {
        jwt_invalid(call, "id_token signature is not base64url");
        goto out;
    }
    if (!h->verify_rsa_sha256_jwk(n, (size_t)nlen, e, (size_t)elen, input, input_len, sig,
                                  (size_t)siglen)) {
        jwt_invalid(call, "id_token signature does not verify (RS256, key id \"%s\")",
                    jwt_quote(kid, q));
        goto out;
    }
    rc = GOOGLE_JWT_OK;
out:
    free(n);
    free(e);
    free(sig);
    return rc;
}

/* iss, aud/azp, exp, iat, nonce, sub — on a payload whose signature verified. */
static enum google_jwt_rc jwt_check_claims(struct agape_call *call,
                                           const struct agape_json *claims,
                                           const char *const *issuers, size_t n_issuers,
                                           const char *nonce, int64_t now_s)
{
    const struct agape_host *h = call->host;
    const struct google_ctx *ctx = call->ctx;
    char q[CLAIM_QUOTE_MAX + 4];

    const char *iss = h->json_str(claims, "iss");
    bool iss_ok = false;
    for (size_t i = 0; iss != NULL && i < n_issuers; i++) {
        iss_ok = iss_ok || strcmp(iss, issuers[i]) == 0;
    }
    if (!iss_ok) {
        return jwt_invalid(call, "id_token issuer \"%s\" is not accepted", jwt_quote(iss, q));
    }

    const struct agape_json *aud = h->json_get(claims, "aud");
    enum agape_json_type at = h->json_type(aud);
    if (at == AGAPE_JSON_STRING) {
        if (strcmp(h->json_str(aud, ""), ctx->client_id) != 0) {
            return jwt_invalid(call, "id_token audience \"%s\" is not this client id",
                               jwt_quote(h->json_str(aud, ""), q));
        }
    } else if (at == AGAPE_JSON_ARRAY && h->json_size(aud) > 0) {
        bool found = false;
        for (size_t i = 0; i < h->json_size(aud); i++) {
            const char *a = h->json_str(h->json_at(aud, i), "");
            found = found || (a != NULL && strcmp(a, ctx->client_id) == 0);
        }
        if (!found) {
            return jwt_invalid(call, "id_token audience does not include this client id");
        }
        const char *azp = h->json_str(claims, "azp");
        if (h->json_size(aud) > 1 && (azp == NULL || strcmp(azp, ctx->client_id) != 0)) {
            return jwt_invalid(call, "id_token has several audiences and azp \"%s\" is not "
                                     "this client id",
                               jwt_quote(azp, q));
        }
    } else {
        return jwt_invalid(call, "id_token has no audience (aud)");
    }

    if (h->json_type(h->json_get(claims, "exp")) != AGAPE_JSON_INT) {
        return jwt_invalid(call, "id_token has no integer exp");
    }
    if (h->json_type(h->json_get(claims, "iat")) != AGAPE_JSON_INT) {
        return jwt_invalid(call, "id_token has no integer iat");
    }
    int64_t exp = h->json_int(claims, "exp", 0);
    int64_t iat = h->json_int(claims, "iat", 0);
    if (exp <= now_s - ctx->skew_s) {
        return jwt_invalid(call, "id_token expired (exp %" PRId64 ", now %" PRId64
                                 ", skew %" PRId64 " s)",
                           exp, now_s, ctx->skew_s);
    }
    if (iat > now_s + ctx->skew_s) {
        return jwt_invalid(call, "id_token iat is in the future (iat %" PRId64 ", now %" PRId64
                                 ", skew %" PRId64 " s)",
                           iat, now_s, ctx->skew_s);
    }
    if (exp - iat > GOOGLE_MAX_LIFETIME_S) {
        return jwt_invalid(call, "id_token lifetime (exp - iat) is over %d s",
                           GOOGLE_MAX_LIFETIME_S);
    }

    if (nonce != NULL) {
        const char *got = h->json_str(claims, "nonce");
        if (got == NULL) {
            return jwt_invalid(call, "id_token has no nonce; this login expects one");
        }
        if (!h->ct_equal(got, strlen(got), nonce, strlen(nonce))) {
            return jwt_invalid(call, "id_token nonce does not match this login");
        }
    }

    const char *sub = h->json_str(claims, "sub");
    if (sub == NULL || sub[0] == '\0' || strlen(sub) > 255) {
        return jwt_invalid(call, "id_token has no usable subject (sub)");
    }
    return GOOGLE_JWT_OK;
}

/* A string claim into the result when it is a string of at most max bytes,
 * else null. */
static int jwt_copy_str(const struct agape_host *h, struct agape_json *out, const char *key,
                        const struct agape_json *claims, const char *claim, size_t max)
{
    const char *v = h->json_str(claims, claim);
    if (v == NULL || strlen(v) > max) {
        return h->json_set_null(out, key);
    }
    return h->json_set_str(out, key, v);
}

static enum google_jwt_rc jwt_result(struct agape_call *call, const struct agape_json *claims)
{
    const struct agape_host *h = call->host;
    struct agape_json *r = call->result;
    /* Google has sent email_verified as the string "true" in older tokens. */
    const struct agape_json *ev = h->json_get(claims, "email_verified");
    bool verified = h->json_type(ev) == AGAPE_JSON_BOOL
                        ? h->json_bool(ev, "", false)
                        : (h->json_str(ev, "") != NULL && strcmp(h->json_str(ev, ""), "true") == 0);

    int rc = h->json_set_str(r, "subject", h->json_str(claims, "sub"));
    if (rc == AGAPE_OK) {
        rc = jwt_copy_str(h, r, "email", claims, "email", 320);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_bool(r, "email_verified", verified);
    }
    if (rc == AGAPE_OK) {
        rc = jwt_copy_str(h, r, "name", claims, "name", 512);
    }
    if (rc == AGAPE_OK) {
        rc = jwt_copy_str(h, r, "picture", claims, "picture", 2048);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(r, "issuer", h->json_str(claims, "iss"));
    }
    return rc == AGAPE_OK ? GOOGLE_JWT_OK : GOOGLE_JWT_NOMEM;
}

enum google_jwt_rc google_jwt_verify(struct agape_call *call, const char *token,
                                     const struct agape_json *jwks,
                                     const char *const *issuers, size_t n_issuers,
                                     const char *nonce, int64_t now_s)
{
    const struct agape_host *h = call->host;
    char q[CLAIM_QUOTE_MAX + 4];
    enum google_jwt_rc rc = GOOGLE_JWT_INVALID;
    unsigned char *hdr_raw = NULL, *pay_raw = NULL;
    struct agape_json *hdr = NULL, *claims = NULL;
    long hlen = 0, plen = 0;

    size_t len = strlen(token);
    if (len > GOOGLE_ID_TOKEN_MAX) {
        return jwt_invalid(call, "id_token is over %zu bytes", GOOGLE_ID_TOKEN_MAX);
    }
    /* 1. Three base64url parts: header.payload.signature */
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot1 == NULL || dot2 == NULL ||
        memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL) {
        return jwt_invalid(call, "id_token is not a JWT (three dot-separated parts)");
    }
    size_t h_len = (size_t)(dot1 - token);
    size_t p_len = (size_t)(dot2 - dot1 - 1);
    const char *sig_b64 = dot2 + 1;
    size_t s_len = len - (size_t)(sig_b64 - token);
    if (h_len == 0 || p_len == 0 || !jwt_b64url_chars(token, h_len) ||
        !jwt_b64url_chars(dot1 + 1, p_len) || !jwt_b64url_chars(sig_b64, s_len)) {
        return jwt_invalid(call, "id_token is not a JWT (parts must be non-empty base64url)");
    }

    /* 2. Header: alg must be RS256; the kid picks the key. */
    hdr_raw = jwt_decode(h, token, h_len, JWT_HEADER_MAX, &hlen);
    if (hlen == -2) {
        rc = GOOGLE_JWT_NOMEM;
        goto out;
    }
    hdr = hdr_raw ? jwt_object(h, hdr_raw, hlen) : NULL;
    if (hdr == NULL) {
        jwt_invalid(call, "id_token header is not a base64url JSON object");
        goto out;
    }
    const char *alg = h->json_str(hdr, "alg");
    if (alg == NULL) {
        jwt_invalid(call, "id_token header has no alg");
        goto out;
    }
    if (strcmp(alg, "RS256") != 0) {
        jwt_invalid(call, "id_token alg \"%s\" is refused: only RS256 is accepted",
                    jwt_quote(alg, q));
        goto out;
    }
    if (h->json_get(hdr, "crit") != NULL) {
        jwt_invalid(call, "id_token header has crit extensions, which are not supported");
        goto out;
    }
    const char *kid = h->json_str(hdr, "kid");
    if (kid == NULL || kid[0] == '\0') {
        jwt_invalid(call, "id_token header has no key id (kid)");
        goto out;
    }
    const struct agape_json *jwk = jwt_find_key(h, jwks, kid);
    if (jwk == NULL) {
        rc = GOOGLE_JWT_UNKNOWN_KID;
        jwt_invalid(call, "unknown key id \"%s\": not in the provider's JWKS",
                    jwt_quote(kid, q));
        goto out;
    }

    /* 3. The signature over the ASCII bytes "header.payload". */
    rc = jwt_check_sig(call, jwk, kid, token, (size_t)(dot2 - token), sig_b64, s_len);
    if (rc != GOOGLE_JWT_OK) {
        goto out;
    }
    rc = GOOGLE_JWT_INVALID;

    /* 4. The claims. */
    pay_raw = jwt_decode(h, dot1 + 1, p_len, GOOGLE_ID_TOKEN_MAX, &plen);
    if (plen == -2) {
        rc = GOOGLE_JWT_NOMEM;
        goto out;
    }
    claims = pay_raw ? jwt_object(h, pay_raw, plen) : NULL;
    if (claims == NULL) {
        jwt_invalid(call, "id_token payload is not a base64url JSON object");
        goto out;
    }
    rc = jwt_check_claims(call, claims, issuers, n_issuers, nonce, now_s);
    if (rc == GOOGLE_JWT_OK) {
        rc = jwt_result(call, claims);
    }
out:
    if (hdr != NULL) {
        h->json_free(hdr);
    }
    if (claims != NULL) {
        h->json_free(claims);
    }
    free(hdr_raw);
    free(pay_raw);
    return rc;
}
