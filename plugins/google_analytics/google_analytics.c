/* google_analytics — the descriptor, the options and the context.
 *
 * Analytics: track_batch sends 1 to 25 events of one client to the GA4
 * Measurement Protocol (ga_track.c). Universal Analytics (GA_TRACKING_ID)
 * stopped processing data in 2023 (360: 2024), so it is refused at init with
 * a message `agape validate` shows, never sent to. README.md documents the
 * options, the mapping of the seed's {category, action, label, value} events
 * and the answers. */
#include "google_analytics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* measurement_id and api_secret are required, but checked by init rather
 * than flagged AGAPE_OPT_REQUIRED: the core skips init for a missing required
 * option, and the deployer who only has GA_TRACKING_ID must read why UA
 * cannot work (GA_UA_RETIRED), not just "missing measurement_id". */
static const struct agape_option ga_options[] = {
    {"measurement_id", 0, "GA_MEASUREMENT_ID", "GA4 web stream measurement id G-… (required)"},
    {"api_secret", AGAPE_OPT_SECRET, "GA_API_SECRET",
     "Measurement Protocol API secret of that stream (required)"},
    {"tracking_id", 0, "GA_TRACKING_ID",
     "legacy Universal Analytics id UA-…: retired, refused unless measurement_id is set"},
    {"base_url", 0, "GA_API_BASE", "collection base URL, default https://www.google-analytics.com"},
    {"debug", 0, NULL, "true: send to /debug/mp/collect (validated by Google, not recorded)"},
    {NULL, 0, NULL, NULL},
};

static char *ga_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void ga_destroy(void *p)
{
    struct ga_ctx *ctx = p;
    if (ctx == NULL) {
        return;
    }
    if (ctx->api_secret != NULL) {
        explicit_bzero(ctx->api_secret, strlen(ctx->api_secret));
    }
    if (ctx->collect_url != NULL) {
        explicit_bzero(ctx->collect_url, strlen(ctx->collect_url));
    }
    free(ctx->collect_url);
    free(ctx->measurement_id);
    free(ctx->api_secret);
    free(ctx);
}

/* NULL when absent, null or "" (an unset variable through env()); -1 when
 * present but not a string. */
static int ga_opt_str(const struct agape_host *host, const struct agape_json *conf,
                      const char *name, const char **out)
{
    const struct agape_json *v = host->json_get(conf, name);
    enum agape_json_type t = host->json_type(v);
    *out = NULL;
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return 0;
    }
    if (t != AGAPE_JSON_STRING) {
        return -1;
    }
    const char *s = host->json_str(v, "");
    if (s[0] != '\0') {
        *out = s;
    }
    return 0;
}

/* true/false, 1/0, "true"/"false"/"1"/"0"/"yes"/"no"; absent → false. */
static int ga_opt_bool(const struct agape_host *host, const struct agape_json *conf,
                       const char *name, bool *out)
{
    const struct agape_json *v = host->json_get(conf, name);
    enum agape_json_type t = host->json_type(v);
    *out = false;
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return 0;
    }
    if (t == AGAPE_JSON_BOOL) {
        *out = host->json_bool(v, "", false);
        return 0;
    }
    if (t == AGAPE_JSON_INT) {
        int64_t n = host->json_int(v, "", -1);
        *out = n == 1;
        return n == 0 || n == 1 ? 0 : -1;
    }
    const char *s = host->json_str(v, "");
    if (s == NULL) {
        return -1;
    }
    if (s[0] == '\0' || strcmp(s, "false") == 0 || strcmp(s, "0") == 0 ||
        strcmp(s, "no") == 0) {
        return 0;
    }
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcmp(s, "yes") == 0) {
        *out = true;
        return 0;
    }
    return -1;
}

static bool ga_unreserved(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == '~';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* "G-" and 1 to 32 upper-case letters or digits (G-XXXXXXXXXX). */
static bool ga_measurement_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 34 || s[0] != 'G' || s[1] != '-') {
        return false;
    }
    for (size_t i = 2; i < n; i++) {
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9'))) {
            return false;
        }
    }
    return true;
}

static bool ga_base_ok(const char *s)
{
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#') {
            return false;
        }
    }
    return strlen(s) <= 1024;
}

static int ga_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                   char *err, size_t errlen)
{
    struct ga_ctx *ctx = NULL;
    const char *mid = NULL, *secret = NULL, *ua = NULL, *base = NULL;
    char *b = NULL;
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (ga_opt_str(host, conf, "measurement_id", &mid) != 0 ||
        ga_opt_str(host, conf, "api_secret", &secret) != 0 ||
        ga_opt_str(host, conf, "tracking_id", &ua) != 0 ||
        ga_opt_str(host, conf, "base_url", &base) != 0) {
        snprintf(err, errlen, "measurement_id, api_secret, tracking_id and base_url must be "
                              "strings");
        goto out;
    }
    if (mid == NULL) {
        snprintf(err, errlen, "%s",
                 ua ? GA_UA_RETIRED : "measurement_id is required (set GA_MEASUREMENT_ID)");
        goto out;
    }
    if (!ga_measurement_id_ok(mid)) {
        snprintf(err, errlen, "%s",
                 strncmp(mid, "UA-", 3) == 0
                     ? "measurement_id is a Universal Analytics id (UA-…), retired; a GA4 "
                       "measurement id starts with G- (GA_MEASUREMENT_ID)"
                     : "measurement_id must be a GA4 measurement id such as G-XXXXXXXXXX "
                       "(GA_MEASUREMENT_ID)");
        goto out;
    }
    if (secret == NULL) {
        snprintf(err, errlen, "api_secret is required (set GA_API_SECRET)");
        goto out;
    }
    if (!ga_unreserved(secret, 128)) {
        /* Never echo it. Google's secrets are [A-Za-z0-9_-]{22}. */
        snprintf(err, errlen, "api_secret must be 1 to 128 letters, digits, '-', '_', '.' or "
                              "'~' (check GA_API_SECRET)");
        goto out;
    }
    if (base == NULL) {
        base = GA_DEFAULT_BASE;
    }
    if (!ga_base_ok(base)) {
        snprintf(err, errlen, "base_url must start with http:// or https:// and hold no "
                              "spaces, query or fragment (GA_API_BASE)");
        goto out;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (ga_opt_bool(host, conf, "debug", &ctx->debug) != 0) {
        snprintf(err, errlen, "debug must be true or false");
        goto out;
    }
    b = ga_dup(base);
    if (b == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    size_t n = strlen(b);
    size_t scheme = strncmp(b, "https://", 8) == 0 ? 8 : 7;
    while (n > scheme && b[n - 1] == '/') {
        b[--n] = '\0';
    }
    if (n == scheme) {
        snprintf(err, errlen, "base_url has no host (GA_API_BASE)");
        goto out;
    }
    /* Both ids are unreserved characters: url-escaping leaves them as they are. */
    size_t cap = n + strlen(mid) + strlen(secret) + 64;
    ctx->collect_url = malloc(cap);
    ctx->measurement_id = ga_dup(mid);
    ctx->api_secret = ga_dup(secret);
    if (ctx->collect_url == NULL || ctx->measurement_id == NULL || ctx->api_secret == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    snprintf(ctx->collect_url, cap, "%s%s/mp/collect?measurement_id=%s&api_secret=%s", b,
             ctx->debug ? "/debug" : "", mid, secret);
    if (ua != NULL) {
        host->log(NULL, AGAPE_LOG_WARN,
                  "google_analytics: GA_TRACKING_ID (Universal Analytics) is ignored: UA was "
                  "retired in 2023/2024; events go to GA4 measurement id %s",
                  mid);
    }
    *out = ctx;
    ctx = NULL;
    rc = AGAPE_OK;
out:
    free(b);
    ga_destroy(ctx);
    return rc;
}

static const struct agape_analytics_ops ga_analytics_ops = {
    .size = sizeof(struct agape_analytics_ops),
    .track_batch = ga_track_batch,
};

static const struct agape_plugin ga_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "google_analytics",
    .version = GA_PLUGIN_VERSION,
    .kinds = AGAPE_KIND_ANALYTICS,
    .options = ga_options,
    .init = ga_init,
    .destroy = ga_destroy,
    .analytics = &ga_analytics_ops,
};

AGAPE_PLUGIN_DEFINE(ga_plugin)
