/* google — plugin-private declarations shared by the plugin's files.
 *
 * Sign in with Google (OpenID Connect, authorization code flow with PKCE)
 * and id_token verification. Every fetch — the discovery document, the JWKS,
 * the token exchange — is a step the core sends; the plugin does no I/O. The
 * context is made by google_init() on the main thread and only read
 * afterwards, so every step function is reentrant. */
#ifndef GOOGLE_H
#define GOOGLE_H

#include <agape/plugin.h>

#define GOOGLE_DEFAULT_DISCOVERY "https://accounts.google.com/.well-known/openid-configuration"
#define GOOGLE_DEFAULT_SKEW_S 60
#define GOOGLE_MAX_ISSUERS 8

/* Size limits on what comes from the network or the caller. */
#define GOOGLE_DISCOVERY_MAX ((size_t)64 * 1024)
#define GOOGLE_JWKS_MAX ((size_t)128 * 1024)
#define GOOGLE_TOKEN_RESP_MAX ((size_t)64 * 1024)
#define GOOGLE_ID_TOKEN_MAX ((size_t)16 * 1024)
#define GOOGLE_CODE_MAX 2048
#define GOOGLE_PARAM_MAX 512 /* state, nonce, code_challenge */

/* Cache lifetimes when the answer has no Cache-Control max-age. */
#define GOOGLE_DISCOVERY_TTL_S 3600
#define GOOGLE_JWKS_TTL_S 300
#define GOOGLE_TTL_MAX_S 86400
/* After a refetch on an unknown kid that did not find it: no refetch for so long. */
#define GOOGLE_REFETCH_COOLDOWN_S 30

/* Longest id_token lifetime accepted (exp − iat), as google-auth-library. */
#define GOOGLE_MAX_LIFETIME_S 86400

/* The strings are borrowed from the normalized configuration init received,
 * which the core keeps until destroy. */
struct google_ctx {
    const char *client_id;
    const char *client_secret; /* never logged, never in err or result */
    const char *redirect_uri;
    const char *discovery_url;
    const char *issuers[GOOGLE_MAX_ISSUERS]; /* configured; n_issuers 0: from discovery */
    size_t n_issuers;
    int64_t skew_s;
};

/* google_oidc.c: the three auth operations. */
enum agape_step google_authorize_url(struct agape_call *call);
enum agape_step google_exchange_code(struct agape_call *call);
enum agape_step google_verify_id_token(struct agape_call *call);

/* google_jwt.c */

enum google_jwt_rc {
    GOOGLE_JWT_OK = 0,     /* verified; the claims are in call->result */
    GOOGLE_JWT_INVALID,    /* refused; call->err says why */
    GOOGLE_JWT_UNKNOWN_KID,/* no key with the token's kid in `jwks` */
    GOOGLE_JWT_NOMEM
};

/* Verify `token` (RS256 JWT) against `jwks` ({"keys": [...]}) in the order
 * of PROVIDERS.md §5.4: shape, alg, kid, signature, iss (one of `issuers`),
 * aud/azp (ctx->client_id), exp/iat (now_s, ctx->skew_s), nonce (when
 * `nonce` is non-NULL). On GOOGLE_JWT_OK call->result holds {"subject",
 * "email", "email_verified", "name", "picture", "issuer"}. call->err never
 * holds the token or any part of it beyond short claim values. */
enum google_jwt_rc google_jwt_verify(struct agape_call *call, const char *token,
                                     const struct agape_json *jwks,
                                     const char *const *issuers, size_t n_issuers,
                                     const char *nonce, int64_t now_s);

#endif
