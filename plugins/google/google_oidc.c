/* google_oidc — authorize_url, exchange_code and verify_id_token as steps.
 *
 * One driver serves the three operations. Each time it is called it first
 * takes in the answer of the request it sent last (call->state "pending"
 * names which), then does the next thing that is missing, in this order:
 *
 *   discovery document  (state "discovery", else cache "discovery", else GET)
 *   authorize_url: build the URL → DONE
 *   JWKS                (state "jwks", else cache "jwks", else GET jwks_uri)
 *   exchange_code: POST token_endpoint → the id_token into state "id_token"
 *   verify the id_token → DONE; an unknown kid refetches the JWKS once
 *
 * The JWKS is fetched before the code is exchanged: a code is single-use, so
 * a failure after the exchange cannot be retried. Documents taken from the
 * cache are copied into the state, so a cache entry that expires between two
 * steps cannot make the driver go round. state "jwks_fetched" records that
 * this call fetched the JWKS itself; an unknown kid after that is final, so
 * a call fetches the JWKS at most once (a key set fetched on a cache miss is
 * already fresh: an unknown kid is then final at once). A refetch that still
 * lacks the kid starts a cooldown (cache "jwks_cooldown") during which
 * unknown kids are refused without a refetch: the kid comes from whoever
 * sends the token, and must not let them make us hammer the JWKS endpoint. */
#include "google.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum google_op { GOOGLE_OP_AUTHORIZE, GOOGLE_OP_EXCHANGE, GOOGLE_OP_VERIFY };

/* What taking in an answer decided. */
enum google_next { GOOGLE_GO_ON, GOOGLE_DONE };

static enum agape_step google_fail(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum agape_step google_fail(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    return AGAPE_STEP_FAIL;
}

static enum agape_step google_done(struct agape_call *call, enum agape_outcome o,
                                   const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static enum agape_step google_done(struct agape_call *call, enum agape_outcome o,
                                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    call->outcome = o;
    return AGAPE_STEP_DONE;
}

static enum agape_step google_oom(struct agape_call *call)
{
    return google_fail(call, "google: out of memory");
}

/* ---------------------------------------------------------------- */
/* Input checks                                                     */

/* Printable ASCII without spaces, 1..max bytes. */
static bool google_printable(const char *s, size_t min, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (c <= 0x20 || c >= 0x7f || n >= max) {
            return false;
        }
    }
    return n >= min;
}

/* RFC 7636: 43..128 characters of [A-Za-z0-9-._~]. */
static bool google_verifier_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~') ||
            n >= 128) {
            return false;
        }
    }
    return n >= 43;
}

/* An S256 challenge: base64url without padding of 32 bytes, 43 characters. */
static bool google_challenge_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_') ||
            n >= 43) {
            return false;
        }
    }
    return n == 43;
}

static const char *google_need(struct agape_call *call, const char *field, size_t max)
{
    const char *v = call->host->json_str(call->input, field);
    if (v == NULL || !google_printable(v, 1, max)) {
        snprintf(call->err, sizeof(call->err),
                 "%s is required: a string of 1 to %zu printable characters without spaces",
                 field, max);
        return NULL;
    }
    return v;
}

static enum agape_step google_check_input(struct agape_call *call, enum google_op op)
{
    const struct agape_host *h = call->host;
    switch (op) {
    case GOOGLE_OP_AUTHORIZE: {
        const char *cc = h->json_str(call->input, "code_challenge");
        if (google_need(call, "state", GOOGLE_PARAM_MAX) == NULL ||
            google_need(call, "nonce", GOOGLE_PARAM_MAX) == NULL) {
            return AGAPE_STEP_FAIL;
        }
        if (cc == NULL || !google_challenge_ok(cc)) {
            return google_fail(call, "code_challenge is required: the S256 challenge "
                                     "(43 base64url characters)");
        }
        break;
    }
    case GOOGLE_OP_EXCHANGE: {
        const char *cv = h->json_str(call->input, "code_verifier");
        if (google_need(call, "code", GOOGLE_CODE_MAX) == NULL ||
            google_need(call, "nonce", GOOGLE_PARAM_MAX) == NULL) {
            return AGAPE_STEP_FAIL;
        }
        if (cv == NULL || !google_verifier_ok(cv)) {
            return google_fail(call, "code_verifier is required: 43 to 128 characters of "
                                     "A-Z a-z 0-9 - . _ ~ (RFC 7636)");
        }
        break;
    }
    case GOOGLE_OP_VERIFY: {
        const char *t = h->json_str(call->input, "id_token");
        const struct agape_json *n = h->json_get(call->input, "nonce");
        if (t == NULL || t[0] == '\0') {
            return google_fail(call, "id_token is required: the JWT as a string");
        }
        if (strlen(t) > GOOGLE_ID_TOKEN_MAX) {
            return google_fail(call, "id_token is over %zu bytes", GOOGLE_ID_TOKEN_MAX);
        }
        if (h->json_type(n) != AGAPE_JSON_ABSENT && h->json_type(n) != AGAPE_JSON_NULL &&
            google_need(call, "nonce", GOOGLE_PARAM_MAX) == NULL) {
            return AGAPE_STEP_FAIL;
        }
        break;
    }
    }
    return AGAPE_STEP_DONE;
}

/* ---------------------------------------------------------------- */
/* Documents: discovery and JWKS                                    */

static bool google_url_ok(const char *s)
{
    if (s == NULL || (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)) {
        return false;
    }
    return google_printable(s, 9, 2048);
}

static const char *google_doc_bad(const struct agape_host *h, const char *key,
                                  const struct agape_json *doc)
{
    if (h->json_type(doc) != AGAPE_JSON_OBJECT) {
        return "is not a JSON object";
    }
    if (strcmp(key, "jwks") == 0) {
        return h->json_type(h->json_get(doc, "keys")) == AGAPE_JSON_ARRAY
                   ? NULL
                   : "has no keys array";
    }
    const char *iss = h->json_str(doc, "issuer");
    if (iss == NULL || !google_printable(iss, 1, 512)) {
        return "has no issuer";
    }
    if (!google_url_ok(h->json_str(doc, "authorization_endpoint"))) {
        return "has no http(s) authorization_endpoint";
    }
    if (!google_url_ok(h->json_str(doc, "token_endpoint"))) {
        return "has no http(s) token_endpoint";
    }
    if (!google_url_ok(h->json_str(doc, "jwks_uri"))) {
        return "has no http(s) jwks_uri";
    }
    return NULL;
}

/* The document `key` for this call: from the state, or from the provider
 * cache (then copied into the state). NULL when neither has it. */
static const struct agape_json *google_doc(struct agape_call *call, const char *key)
{
    const struct agape_host *h = call->host;
    const struct agape_json *v = h->json_get(call->state, key);
    if (v != NULL) {
        return v;
    }
    const char *cached = h->cache_get(call, key);
    if (cached == NULL) {
        return NULL;
    }
    struct agape_json *doc = h->json_parse(cached, strlen(cached), NULL, 0);
    if (doc == NULL || google_doc_bad(h, key, doc) != NULL ||
        h->json_set_copy(call->state, key, doc) != AGAPE_OK) {
        v = NULL;
    } else {
        v = h->json_get(call->state, key);
    }
    if (doc != NULL) {
        h->json_free(doc);
    }
    return v;
}

/* Seconds from Cache-Control: max-age=N; 0 for no-store / no-cache; dflt
 * without either. Capped at GOOGLE_TTL_MAX_S. */
static int64_t google_ttl_s(const char *cc, int64_t dflt)
{
    const char *p = cc;
    int64_t ttl = dflt;
    if (cc == NULL) {
        return dflt;
    }
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        size_t n = strcspn(p, ",");
        if ((n >= 8 && strncasecmp(p, "no-store", 8) == 0) ||
            (n >= 8 && strncasecmp(p, "no-cache", 8) == 0)) {
            return 0;
        }
        if (n > 8 && strncasecmp(p, "max-age=", 8) == 0) {
            int64_t v = 0;
            size_t i = 8;
            for (; i < n && p[i] >= '0' && p[i] <= '9' && v <= GOOGLE_TTL_MAX_S; i++) {
                v = v * 10 + (p[i] - '0');
            }
            if (i > 8) {
                ttl = v;
            }
        }
        p += n;
    }
    return ttl > GOOGLE_TTL_MAX_S ? GOOGLE_TTL_MAX_S : ttl;
}

static void google_retry_after(struct agape_call *call)
{
    const char *ra = call->host->resp_header(call, "Retry-After");
    int64_t v = 0;
    size_t i = 0;
    if (ra == NULL) {
        return;
    }
    for (; ra[i] >= '0' && ra[i] <= '9' && i < 7; i++) {
        v = v * 10 + (ra[i] - '0');
    }
    if (i > 0 && ra[i] == '\0') {
        call->retry_after_ms = v * 1000;
    }
}

static enum agape_step google_send_get(struct agape_call *call, const char *what,
                                       const char *url)
{
    const struct agape_host *h = call->host;
    int rc = h->req_start(call, "GET", url);
    if (rc == AGAPE_OK) {
        rc = h->req_header(call, "Accept", "application/json");
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->state, "pending", what);
    }
    if (rc != AGAPE_OK) {
        return google_fail(call, "google: cannot build the %s request (rc %d)", what, rc);
    }
    return AGAPE_STEP_SEND;
}

/* Take in the answer to GET discovery / jwks. */
static enum google_next google_on_doc(struct agape_call *call, const char *key, enum agape_step *s)
{
    const struct agape_host *h = call->host;
    const struct agape_response *r = call->resp;
    const char *what = strcmp(key, "jwks") == 0 ? "JWKS" : "discovery document";
    size_t max = strcmp(key, "jwks") == 0 ? GOOGLE_JWKS_MAX : GOOGLE_DISCOVERY_MAX;

    if (r->status == 429) {
        google_retry_after(call);
        *s = google_done(call, AGAPE_OUTCOME_RATE_LIMITED, "%s: HTTP 429", what);
        return GOOGLE_DONE;
    }
    if (r->status < 200 || r->status > 299) {
        /* Not ours to fix, and nothing was done: another try may work. */
        *s = google_done(call, AGAPE_OUTCOME_UNAVAILABLE, "%s: HTTP %d", what, r->status);
        return GOOGLE_DONE;
    }
    if (r->body_len > max || strlen(r->body) != r->body_len) {
        *s = google_done(call, AGAPE_OUTCOME_UNAVAILABLE, "%s is over %zu bytes or not text",
                         what, max);
        return GOOGLE_DONE;
    }
    struct agape_json *doc = h->json_parse(r->body, r->body_len, NULL, 0);
    const char *bad = doc ? google_doc_bad(h, key, doc) : "is not JSON";
    if (bad != NULL) {
        if (doc != NULL) {
            h->json_free(doc);
        }
        *s = google_done(call, AGAPE_OUTCOME_UNAVAILABLE, "%s %s", what, bad);
        return GOOGLE_DONE;
    }
    int rc = h->json_set_copy(call->state, key, doc);
    h->json_free(doc);
    if (rc == AGAPE_OK && strcmp(key, "jwks") == 0) {
        rc = h->json_set_bool(call->state, "jwks_fetched", true);
    }
    if (rc != AGAPE_OK) {
        *s = google_oom(call);
        return GOOGLE_DONE;
    }
    int64_t dflt = strcmp(key, "jwks") == 0 ? GOOGLE_JWKS_TTL_S : GOOGLE_DISCOVERY_TTL_S;
    int64_t ttl = google_ttl_s(h->resp_header(call, "Cache-Control"), dflt);
    /* ttl 0 (no-store) removes a stale entry; a cache failure is not the
     * caller's problem, the next call fetches again. */
    h->cache_put(call, key, r->body, ttl * 1000);
    return GOOGLE_GO_ON;
}

/* ---------------------------------------------------------------- */
/* The token endpoint                                               */

static enum agape_step google_send_token(struct agape_call *call,
                                         const struct agape_json *discovery)
{
    const struct agape_host *h = call->host;
    const struct google_ctx *ctx = call->ctx;
    struct agape_buf *form = h->buf_new();
    int rc = form ? AGAPE_OK : AGAPE_ENOMEM;

    if (rc == AGAPE_OK) {
        h->form_add(form, "grant_type", "authorization_code");
        h->form_add(form, "code", h->json_str(call->input, "code"));
        h->form_add(form, "client_id", ctx->client_id);
        h->form_add(form, "client_secret", ctx->client_secret);
        h->form_add(form, "redirect_uri", ctx->redirect_uri);
        rc = h->form_add(form, "code_verifier", h->json_str(call->input, "code_verifier"));
    }
    if (rc == AGAPE_OK) {
        rc = h->req_start(call, "POST", h->json_str(discovery, "token_endpoint"));
    }
    if (rc == AGAPE_OK) {
        rc = h->req_header(call, "Accept", "application/json");
    }
    if (rc == AGAPE_OK) {
        rc = h->req_body(call, "application/x-www-form-urlencoded", h->buf_data(form),
                         h->buf_len(form));
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->state, "pending", "token");
    }
    h->buf_free(form);
    if (rc != AGAPE_OK) {
        return google_fail(call, "google: cannot build the token request (rc %d)", rc);
    }
    return AGAPE_STEP_SEND;
}

/* The provider's "error" code, shortened and printable, for err. */
static void google_error_code(const struct agape_host *h, const struct agape_json *body,
                              char out[48])
{
    const char *e = body ? h->json_str(body, "error") : NULL;
    size_t i = 0;
    if (e == NULL) {
        snprintf(out, 48, "no error code");
        return;
    }
    for (; e[i] != '\0' && i < 47; i++) {
        char c = e[i];
        out[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.')
                     ? c
                     : '?';
    }
    out[i] = '\0';
}

/* Take in the token endpoint's answer: the id_token into the state, or the
 * outcome (PROVIDERS.md §5.3; never the code or the secret in err). */
static enum google_next google_on_token(struct agape_call *call, enum agape_step *s)
{
    const struct agape_host *h = call->host;
    const struct agape_response *r = call->resp;
    struct agape_json *body = NULL;
    char code[48];
    enum google_next next = GOOGLE_DONE;

    if (r->body_len <= GOOGLE_TOKEN_RESP_MAX) {
        body = h->json_parse(r->body, r->body_len, NULL, 0);
    }
    google_error_code(h, body, code);
    if (r->status >= 200 && r->status <= 299) {
        const char *t = body ? h->json_str(body, "id_token") : NULL;
        if (t == NULL || t[0] == '\0') {
            *s = google_done(call, AGAPE_OUTCOME_INVALID,
                             "token endpoint answered without an id_token");
        } else if (strlen(t) > GOOGLE_ID_TOKEN_MAX) {
            *s = google_done(call, AGAPE_OUTCOME_INVALID, "id_token is over %zu bytes",
                             GOOGLE_ID_TOKEN_MAX);
        } else if (h->json_set_str(call->state, "id_token", t) != AGAPE_OK) {
            *s = google_oom(call);
        } else {
            next = GOOGLE_GO_ON;
        }
    } else if (r->status == 429) {
        google_retry_after(call);
        *s = google_done(call, AGAPE_OUTCOME_RATE_LIMITED, "token endpoint: HTTP 429");
    } else if (r->status >= 500) {
        *s = google_done(call, AGAPE_OUTCOME_UNAVAILABLE, "token endpoint: HTTP %d", r->status);
    } else if (r->status == 401 || r->status == 403 || strcmp(code, "invalid_client") == 0 ||
               strcmp(code, "unauthorized_client") == 0) {
        *s = google_done(call, AGAPE_OUTCOME_AUTH,
                         "token endpoint refused the client credentials: HTTP %d %s",
                         r->status, code);
    } else if (strcmp(code, "invalid_grant") == 0) {
        *s = google_done(call, AGAPE_OUTCOME_INVALID,
                         "token endpoint: invalid_grant (the code is expired, already used, "
                         "or the verifier or redirect_uri does not match)");
    } else {
        *s = google_done(call, AGAPE_OUTCOME_INVALID, "token endpoint: HTTP %d %s", r->status,
                         code);
    }
    if (body != NULL) {
        h->json_free(body);
    }
    return next;
}

/* ---------------------------------------------------------------- */
/* The steps                                                        */

static enum agape_step google_build_authorize(struct agape_call *call,
                                              const struct agape_json *discovery)
{
    const struct agape_host *h = call->host;
    const struct google_ctx *ctx = call->ctx;
    const char *ep = h->json_str(discovery, "authorization_endpoint");
    static const char *const from_input[] = {"state", "nonce", "code_challenge"};
    struct agape_buf *url = h->buf_new();
    int rc = url ? AGAPE_OK : AGAPE_ENOMEM;

    if (rc == AGAPE_OK) {
        h->buf_printf(url, "%s%cresponse_type=code&client_id=", ep,
                      strchr(ep, '?') != NULL ? '&' : '?');
        h->url_escape(url, ctx->client_id, strlen(ctx->client_id));
        h->buf_printf(url, "&redirect_uri=");
        h->url_escape(url, ctx->redirect_uri, strlen(ctx->redirect_uri));
        h->buf_printf(url, "&scope=openid%%20email%%20profile");
        for (size_t i = 0; i < sizeof(from_input) / sizeof(from_input[0]); i++) {
            const char *v = h->json_str(call->input, from_input[i]);
            h->buf_printf(url, "&%s=", from_input[i]);
            h->url_escape(url, v, strlen(v));
        }
        rc = h->buf_printf(url, "&code_challenge_method=S256");
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "url", h->buf_data(url));
    }
    h->buf_free(url);
    if (rc != AGAPE_OK) {
        return google_oom(call);
    }
    return google_done(call, AGAPE_OUTCOME_OK, "%s", "");
}

/* The accepted issuers: configured, or the discovery document's issuer plus
 * both spellings of Google's when it is Google's. */
static size_t google_issuer_list(const struct agape_call *call,
                                 const struct agape_json *discovery, const char **out)
{
    const struct google_ctx *ctx = call->ctx;
    size_t n = 0;
    if (ctx->n_issuers > 0) {
        for (; n < ctx->n_issuers; n++) {
            out[n] = ctx->issuers[n];
        }
        return n;
    }
    const char *iss = call->host->json_str(discovery, "issuer");
    out[n++] = iss;
    if (strcmp(iss, "https://accounts.google.com") == 0 ||
        strcmp(iss, "accounts.google.com") == 0) {
        out[n++] = "https://accounts.google.com";
        out[n++] = "accounts.google.com";
    }
    return n;
}

static enum agape_step google_verify(struct agape_call *call, enum google_op op,
                                     const struct agape_json *discovery,
                                     const struct agape_json *jwks)
{
    const struct agape_host *h = call->host;
    const char *issuers[GOOGLE_MAX_ISSUERS + 3];
    size_t n_iss = google_issuer_list(call, discovery, issuers);
    const char *token = op == GOOGLE_OP_EXCHANGE ? h->json_str(call->state, "id_token")
                                                 : h->json_str(call->input, "id_token");
    const char *nonce = h->json_str(call->input, "nonce");

    switch (google_jwt_verify(call, token, jwks, issuers, n_iss, nonce, h->now_ms() / 1000)) {
    case GOOGLE_JWT_OK:
        return google_done(call, AGAPE_OUTCOME_OK, "%s", "");
    case GOOGLE_JWT_UNKNOWN_KID:
        if (!h->json_bool(call->state, "jwks_fetched", false) &&
            h->cache_get(call, "jwks_cooldown") == NULL) {
            /* The cached key set may predate a rotation: fetch it once. */
            int rc = h->json_set_null(call->state, "jwks");
            if (rc == AGAPE_OK) {
                rc = h->json_set_bool(call->state, "jwks_refetch", true);
            }
            if (rc != AGAPE_OK) {
                return google_oom(call);
            }
            call->err[0] = '\0';
            return google_send_get(call, "jwks", h->json_str(discovery, "jwks_uri"));
        }
        if (h->json_bool(call->state, "jwks_refetch", false)) {
            /* A refetch that did not help: anyone can send a token with a
             * made-up kid, so no more refetches for a while. */
            h->cache_put(call, "jwks_cooldown", "1", GOOGLE_REFETCH_COOLDOWN_S * 1000);
        }
        call->outcome = AGAPE_OUTCOME_INVALID;
        return AGAPE_STEP_DONE;
    case GOOGLE_JWT_INVALID:
        call->outcome = AGAPE_OUTCOME_INVALID;
        return AGAPE_STEP_DONE;
    case GOOGLE_JWT_NOMEM:
        break;
    }
    return google_oom(call);
}

static enum agape_step google_run(struct agape_call *call, enum google_op op)
{
    const struct agape_host *h = call->host;
    const struct google_ctx *ctx = call->ctx;
    enum agape_step s = AGAPE_STEP_DONE;

    if (call->step == 0 && google_check_input(call, op) == AGAPE_STEP_FAIL) {
        return AGAPE_STEP_FAIL;
    }
    if (call->resp != NULL) {
        const char *pending = h->json_str(call->state, "pending");
        enum google_next next;
        if (pending == NULL) {
            return google_fail(call, "google: an answer came for no request");
        }
        if (strcmp(pending, "token") == 0) {
            next = google_on_token(call, &s);
        } else {
            next = google_on_doc(call, strcmp(pending, "jwks") == 0 ? "jwks" : "discovery", &s);
        }
        if (next == GOOGLE_DONE) {
            return s;
        }
    }

    const struct agape_json *discovery = google_doc(call, "discovery");
    if (discovery == NULL) {
        return google_send_get(call, "discovery", ctx->discovery_url);
    }
    if (op == GOOGLE_OP_AUTHORIZE) {
        return google_build_authorize(call, discovery);
    }
    /* A null "jwks" in the state means "refetch": skip the cache then. */
    const struct agape_json *jwks = NULL;
    if (h->json_type(h->json_get(call->state, "jwks")) != AGAPE_JSON_NULL) {
        jwks = google_doc(call, "jwks");
    }
    if (jwks == NULL) {
        return google_send_get(call, "jwks", h->json_str(discovery, "jwks_uri"));
    }
    if (op == GOOGLE_OP_EXCHANGE && h->json_str(call->state, "id_token") == NULL) {
        return google_send_token(call, discovery);
    }
    return google_verify(call, op, discovery, jwks);
}

enum agape_step google_authorize_url(struct agape_call *call)
{
    return google_run(call, GOOGLE_OP_AUTHORIZE);
}

enum agape_step google_exchange_code(struct agape_call *call)
{
    return google_run(call, GOOGLE_OP_EXCHANGE);
}

enum agape_step google_verify_id_token(struct agape_call *call)
{
    return google_run(call, GOOGLE_OP_VERIFY);
}
