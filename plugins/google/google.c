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
    {.name = "client_id",
     .flags = AGAPE_OPT_REQUIRED,
     .env = "GOOGLE_OAUTH_CLIENT_ID",
     .description = "OAuth client id (…apps.googleusercontent.com); the expected id_token audience"},
    {.name = "client_secret",
     .flags = AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET,
     .env = "GOOGLE_OAUTH_CLIENT_SECRET",
     .description = "OAuth client secret, sent to the token endpoint only"},
    /* Exact: Google compares it with the registered URI, trailing slash included. */
    {.name = "redirect_uri",
     .flags = AGAPE_OPT_REQUIRED,
     .env = "GOOGLE_OAUTH_REDIRECT_URI",
     .description = "the registered redirect URI (the page that receives ?code=…&state=…)",
     .type = AGAPE_OPT_URL_EXACT},
    {.name = "discovery_url",
     .env = "GOOGLE_OAUTH_DISCOVERY_URL",
     .description = "OpenID discovery document",
     .type = AGAPE_OPT_URL_EXACT,
     .dflt = GOOGLE_DEFAULT_DISCOVERY},
    {.name = "issuers",
     .description = "accepted id_token issuers; default the discovery document's issuer, plus both spellings of Google's",
     .type = AGAPE_OPT_LIST,
     .max = GOOGLE_MAX_ISSUERS},
    {.name = "clock_skew_s",
     .description = "accepted clock skew for exp and iat in seconds",
     .type = AGAPE_OPT_INT,
     .dflt = "60",
     .max = 600},
    {0},};

static void google_destroy(void *p)
{
    free(p);
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

/* "issuers": the core made it a list of at most GOOGLE_MAX_ISSUERS strings. */
static int google_issuers(const struct agape_host *host, const struct agape_json *conf,
                          struct google_ctx *ctx, char *err, size_t errlen)
{
    const struct agape_json *v = host->json_get(conf, "issuers");
    for (size_t i = 0; i < host->json_size(v) && i < GOOGLE_MAX_ISSUERS; i++) {
        const char *s = host->json_str(host->json_at(v, i), "");
        if (s == NULL || !google_token_ok(s, 512)) {
            snprintf(err, errlen, "issuers[%zu] must be a non-empty string without spaces", i + 1);
            return AGAPE_EINVAL;
        }
        ctx->issuers[ctx->n_issuers++] = s;
    }
    return AGAPE_OK;
}

/* The core has read the options by their declared types (plugin.h): the
 * URLs are checked, clock_skew_s is an integer in range, the strings are
 * non-empty or absent. */
static int google_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                       char *err, size_t errlen)
{
    struct google_ctx *ctx = NULL;
    const char *id = host->json_str(conf, "client_id");
    const char *secret = host->json_str(conf, "client_secret");
    const char *redirect = host->json_str(conf, "redirect_uri");
    const char *disc = host->json_str(conf, "discovery_url");
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (id == NULL || !google_token_ok(id, 256)) {
        snprintf(err, errlen, "client_id must be the OAuth client id, without spaces "
                              "(set GOOGLE_OAUTH_CLIENT_ID)");
        goto out;
    }
    if (secret == NULL || !google_token_ok(secret, 256)) {
        /* Never echo the value. */
        snprintf(err, errlen, "client_secret must be the OAuth client secret, without spaces "
                              "(set GOOGLE_OAUTH_CLIENT_SECRET)");
        goto out;
    }
    if (redirect == NULL) {
        snprintf(err, errlen, "redirect_uri must be an http(s) URL without spaces "
                              "(set GOOGLE_OAUTH_REDIRECT_URI)");
        goto out;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ctx->skew_s = host->json_int(conf, "clock_skew_s", GOOGLE_DEFAULT_SKEW_S);
    ctx->client_id = id;
    ctx->client_secret = secret;
    ctx->redirect_uri = redirect;
    ctx->discovery_url = disc != NULL ? disc : GOOGLE_DEFAULT_DISCOVERY;
    rc = google_issuers(host, conf, ctx, err, errlen);
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
