/* auth — end-user sign-in (API.md "End-user authentication"): the OpenID
 * Connect code flow with PKCE, id_tokens verified by the provider's plugin
 * (auth kind), users and sessions. Handlers in api_auth.c.
 *
 *   GET  /v1/auth/{provider}/login?return_to=URL   → 302 to the provider
 *   GET  /v1/auth/{provider}/callback?code&state   → 200 {"user", "session", "return_to"?}
 *   POST /v1/auth/{provider}/token {"id_token", "nonce"?} → 200 {"user", "session"}
 *   GET  /v1/auth/me      (Authorization: Bearer <session token>) → 200 {"user"}
 *   POST /v1/auth/logout  (the same header) → 204
 *
 * Configuration (agape.conf, optional):
 *   auth = { allowed_origins = {"https://app.example.com"},  -- where return_to may point
 *            session_ttl_seconds = 2592000 }                 -- 60 .. 31536000
 *
 * Store layout (store_keys.h notation):
 *   users:    provider (S) | 0x00 | subject (S)
 *               → JSON {"v":1, "id":"usr_<24 hex>" (made once, then stable), "email",
 *                       "email_verified", "name", "picture", "provider", "subject",
 *                       "created_at", "updated_at" (ISO-8601 UTC)}
 *   sessions: sha256(session token) (32 B)
 *               → JSON {"v":1, "user_id", "provider", "subject", "created" (ms),
 *                       "expires" (ms), "revoked": bool, "revoked_at"? (ms)}
 *             The token ("ses_" + 64 hex) is never stored or logged.
 *   meta:     "login:" state (S) → JSON {"v":1, "provider", "nonce", "verifier",
 *                                         "return_to"?, "expires" (ms)}
 *             "login_used:" state (S) → "1": the single-use marker; inserted (not put)
 *                                         when a callback consumes the state, so of two
 *                                         concurrent callbacks exactly one proceeds
 *             "login_exp:" expires (8 B BE) | state (S) → "": expiry index; each login
 *                                         purges up to AUTH_PURGE_MAX expired logins
 *                                         (the three keys above) in its own batch, so
 *                                         abandoned logins do not accumulate
 */
#ifndef AGAPE_AUTH_H
#define AGAPE_AUTH_H

#include "httpd.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define AUTH_LOGIN_TTL_MS ((int64_t)10 * 60 * 1000)
#define AUTH_SESSION_TTL_DEFAULT_S 2592000
#define AUTH_PURGE_MAX 32
#define AUTH_RETURN_TO_MAX 2048
#define AUTH_ID_TOKEN_MAX 16384
#define AUTH_CODE_MAX 2048

/* Route a request under /v1/auth/. Returns true when the path is one of the
 * routes above (the request is then answered or suspended), false when it
 * is not (nothing was done). Server thread. */
bool api_auth_route(struct httpd_req *r);

/* The PKCE S256 challenge of `verifier` (RFC 7636 §4.2):
 * BASE64URL-NOPAD(SHA256(ASCII(verifier))), 43 characters, into out (at
 * least 44 bytes). AGAPE_EINVAL when the verifier is not 43..128 characters
 * of [A-Za-z0-9-._~], AGAPE_ERANGE when out is too small. Any thread. */
int auth_pkce_s256(const char *verifier, char *out, size_t outlen);

/* `nbytes` random bytes as base64url without padding into out (state, nonce,
 * PKCE verifier: 32 bytes give 43 characters). Any thread. */
int auth_random_b64url(size_t nbytes, char *out, size_t outlen);

/* Whether `url` may be used as return_to: it must start with one of the
 * origins in `allowed` (a JSON array of "scheme://host[:port]" strings, or
 * one string; a trailing "/" on an origin is ignored) followed by "/" or the
 * end, with scheme and host compared case-insensitively, and hold no
 * control character, space or backslash. So "https://app.example.com.evil.com"
 * and "https://app.example.com@evil.com" are refused for the origin
 * "https://app.example.com". On false, `why` (may be NULL) says why. */
bool auth_return_to_allowed(const json_t *allowed, const char *url, char *why, size_t whylen);

#endif
