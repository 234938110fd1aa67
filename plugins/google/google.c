/* google — the descriptor, the options and the context.
 *
 * Auth kind only: authorize_url, exchange_code and verify_id_token, in
 * google_oidc.c; the id_token checks are in google_jwt.c. README.md documents
 * the options, the requests and every check for operators and reviewers. */
#include "google.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct agape_option google_options[] = {
    {"client_id", AGAPE_OPT_REQUIRED, "GOOGLE_OAUTH_CLIENT_ID",
     "OAuth client id (…apps.googleusercontent.com); the expected id_token audience"},
    {"client_secret", AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET, "GOOGLE_OAUTH_CLIENT_SECRET",
     "OAuth client secret, sent to the token endpoint only"},
    {"redirect_uri", AGAPE_OPT_REQUIRED, "GOOGLE_OAUTH_REDIRECT_URI",
     "the registered redirect URI (the page that receives ?code=…&state=…)"},
    {"discovery_url", 0, "GOOGLE_OAUTH_DISCOVERY_URL",
     "OpenID discovery document, default " GOOGLE_DEFAULT_DISCOVERY},
    {"issuers", 0, NULL,
     "accepted id_token issuers (a list); default the discovery document's issuer, plus "
     "both spellings of Google's"},
    {"clock_skew_s", 0, NULL, "accepted clock skew for exp and iat in seconds, default 60"},
    {NULL, 0, NULL, NULL},
};

static char *google_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void google_destroy(void *p)
{
    struct google_ctx *ctx = p;
    if (ctx == NULL) {
        return;
    }
    if (ctx->client_secret != NULL) {
        explicit_bzero(ctx->client_secret, strlen(ctx->client_secret));
    }
    free(ctx->client_id);
    free(ctx->client_secret);
    free(ctx->redirect_uri);
    free(ctx->discovery_url);
    for (size_t i = 0; i < ctx->n_issuers; i++) {
        free(ctx->issuers[i]);
    }
    free(ctx);
}

/* An optional string option: NULL when absent, null or empty (an unset
 * variable through env() gives nil or ""); -1 when present but not a string. */
static int google_opt_str(const struct agape_host *host, const struct agape_json *conf,
                          const char *name, const char **out)
{
    enum agape_json_type t = host->json_type(host->json_get(conf, name));
    *out = NULL;
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return 0;
    }
    if (t != AGAPE_JSON_STRING) {
        return -1;
    }
    const char *s = host->json_str(conf, name);
    if (s != NULL && s[0] != '\0') {
        *out = s;
    }
    return 0;
}

/* Printable ASCII without spaces, 1..max bytes: safe in a form body, a query
 * string and an error message. */
static bool google_token_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (c <= 0x20 || c >= 0x7f || n >= max) {
            return false;
        }
    }
    return n > 0;
}

static bool google_url_ok(const char *s)
{
    if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0) {
        return false;
    }
    size_t scheme = s[4] == 's' ? 8 : 7;
    return google_token_ok(s, 2048) && s[scheme] != '\0' && s[scheme] != '/';
}

/* "issuers": a list of strings, or one string. */
static int google_issuers(const struct agape_host *host, const struct agape_json *conf,
                          struct google_ctx *ctx, char *err, size_t errlen)
{
    const struct agape_json *v = host->json_get(conf, "issuers");
    enum agape_json_type t = host->json_type(v);
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return AGAPE_OK;
    }
    if (t == AGAPE_JSON_STRING) {
        const char *s = host->json_str(v, "");
        if (s[0] == '\0') {
            return AGAPE_OK;
        }
        if (!google_token_ok(s, 512)) {
            snprintf(err, errlen, "issuers must be non-empty strings without spaces");
            return AGAPE_EINVAL;
        }
        ctx->issuers[0] = google_dup(s);
        if (ctx->issuers[0] == NULL) {
            snprintf(err, errlen, "out of memory");
            return AGAPE_ENOMEM;
        }
        ctx->n_issuers = 1;
        return AGAPE_OK;
    }
    /* A Lua list arrives as an array; an empty table as {}. */
    if (t == AGAPE_JSON_OBJECT && host->json_size(v) == 0) {
        return AGAPE_OK;
    }
    if (t != AGAPE_JSON_ARRAY || host->json_size(v) > GOOGLE_MAX_ISSUERS) {
        snprintf(err, errlen, "issuers must be a list of at most %d strings",
                 GOOGLE_MAX_ISSUERS);
        return AGAPE_EINVAL;
    }
    for (size_t i = 0; i < host->json_size(v); i++) {
        const char *s = host->json_str(host->json_at(v, i), "");
        if (s == NULL || !google_token_ok(s, 512)) {
            snprintf(err, errlen, "issuers[%zu] must be a non-empty string without spaces", i + 1);
            return AGAPE_EINVAL;
        }
        ctx->issuers[ctx->n_issuers] = google_dup(s);
        if (ctx->issuers[ctx->n_issuers] == NULL) {
            snprintf(err, errlen, "out of memory");
            return AGAPE_ENOMEM;
        }
        ctx->n_issuers++;
    }
    return AGAPE_OK;
}

static int google_skew(const struct agape_host *host, const struct agape_json *conf,
                       int64_t *out, char *err, size_t errlen)
{
    const struct agape_json *v = host->json_get(conf, "clock_skew_s");
    enum agape_json_type t = host->json_type(v);
    int64_t n = GOOGLE_DEFAULT_SKEW_S;

    if (t == AGAPE_JSON_INT) {
        n = host->json_int(conf, "clock_skew_s", -1);
    } else if (t == AGAPE_JSON_STRING) {
        /* From env() in agape.conf the value arrives as a string. */
        const char *s = host->json_str(conf, "clock_skew_s");
        char *end = NULL;
        n = -1;
        if (s[0] >= '0' && s[0] <= '9') {
            n = strtoll(s, &end, 10);
            if (*end != '\0') {
                n = -1;
            }
        }
    } else if (t != AGAPE_JSON_ABSENT && t != AGAPE_JSON_NULL) {
        n = -1;
    }
    if (n < 0 || n > 600) {
        snprintf(err, errlen, "clock_skew_s must be an integer from 0 to 600 (seconds)");
        return AGAPE_EINVAL;
    }
    *out = n;
    return AGAPE_OK;
}

static int google_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                       char *err, size_t errlen)
{
    struct google_ctx *ctx = NULL;
    const char *id = NULL, *secret = NULL, *redirect = NULL, *disc = NULL;
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (google_opt_str(host, conf, "client_id", &id) != 0 || id == NULL ||
        !google_token_ok(id, 256)) {
        snprintf(err, errlen, "client_id must be the OAuth client id, without spaces "
                              "(set GOOGLE_OAUTH_CLIENT_ID)");
        goto out;
    }
    if (google_opt_str(host, conf, "client_secret", &secret) != 0 || secret == NULL ||
        !google_token_ok(secret, 256)) {
        /* Never echo the value. */
        snprintf(err, errlen, "client_secret must be the OAuth client secret, without spaces "
                              "(set GOOGLE_OAUTH_CLIENT_SECRET)");
        goto out;
    }
    if (google_opt_str(host, conf, "redirect_uri", &redirect) != 0 || redirect == NULL ||
        !google_url_ok(redirect)) {
        snprintf(err, errlen, "redirect_uri must be an http(s) URL without spaces "
                              "(set GOOGLE_OAUTH_REDIRECT_URI)");
        goto out;
    }
    if (google_opt_str(host, conf, "discovery_url", &disc) != 0 ||
        (disc != NULL && !google_url_ok(disc))) {
        snprintf(err, errlen, "discovery_url must be an http(s) URL without spaces "
                              "(GOOGLE_OAUTH_DISCOVERY_URL)");
        goto out;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ctx->client_id = google_dup(id);
    ctx->client_secret = google_dup(secret);
    ctx->redirect_uri = google_dup(redirect);
    ctx->discovery_url = google_dup(disc != NULL ? disc : GOOGLE_DEFAULT_DISCOVERY);
    if (ctx->client_id == NULL || ctx->client_secret == NULL || ctx->redirect_uri == NULL ||
        ctx->discovery_url == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = google_issuers(host, conf, ctx, err, errlen);
    if (rc == AGAPE_OK) {
        rc = google_skew(host, conf, &ctx->skew_s, err, errlen);
    }
    if (rc != AGAPE_OK) {
        goto out;
    }
    *out = ctx;
    ctx = NULL;
out:
    google_destroy(ctx);
    return rc;
}

static const struct agape_auth_ops google_auth_ops = {
    .size = sizeof(struct agape_auth_ops),
    .authorize_url = google_authorize_url,
    .exchange_code = google_exchange_code,
    .verify_id_token = google_verify_id_token,
};

static const struct agape_plugin google_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "google",
    .version = "1.0.0",
    .kinds = AGAPE_KIND_AUTH,
    .options = google_options,
    .init = google_init,
    .destroy = google_destroy,
    .auth = &google_auth_ops,
};

AGAPE_PLUGIN_DEFINE(google_plugin)
