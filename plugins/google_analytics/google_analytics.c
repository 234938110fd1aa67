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
    {.name = "measurement_id",
     .env = "GA_MEASUREMENT_ID",
     .description = "GA4 web stream measurement id G-… (required)"},
    {.name = "api_secret",
     .flags = AGAPE_OPT_SECRET,
     .env = "GA_API_SECRET",
     .description = "Measurement Protocol API secret of that stream (required)"},
    {.name = "tracking_id",
     .env = "GA_TRACKING_ID",
     .description = "legacy Universal Analytics id UA-…: retired, refused unless measurement_id is set"},
    {.name = "base_url",
     .env = "GA_API_BASE",
     .description = "collection base URL",
     .type = AGAPE_OPT_URL,
     .dflt = GA_DEFAULT_BASE},
    {.name = "debug",
     .description = "true: send to /debug/mp/collect (validated by Google, not recorded)",
     .type = AGAPE_OPT_BOOL,
     .dflt = "false"},
    {0},};

static void ga_destroy(void *p)
{
    struct ga_ctx *ctx = p;
    if (ctx == NULL) {
        return;
    }
    if (ctx->collect_url != NULL) {
        explicit_bzero(ctx->collect_url, strlen(ctx->collect_url)); /* holds the secret */
    }
    free(ctx->collect_url);
    free(ctx);
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

/* "G-" and 1 to 32 upper-case letters or digits (G-1AB2CD3EF4). */
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

/* The core has read the options by their declared types (plugin.h): the
 * strings are non-empty or absent, base_url is a checked URL without a
 * trailing slash, debug a boolean. */
static int ga_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                   char *err, size_t errlen)
{
    struct ga_ctx *ctx = NULL;
    const char *mid = host->json_str(conf, "measurement_id");
    const char *secret = host->json_str(conf, "api_secret");
    const char *ua = host->json_str(conf, "tracking_id");
    const char *base = host->json_str(conf, "base_url");
    int rc = AGAPE_EINVAL;

    *out = NULL;
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
                     : "measurement_id must be a GA4 measurement id such as G-1AB2CD3EF4 "
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
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ctx->debug = host->json_bool(conf, "debug", false);
    /* Both ids are unreserved characters: url-escaping leaves them as they are. */
    size_t cap = strlen(base) + strlen(mid) + strlen(secret) + 64;
    ctx->collect_url = malloc(cap);
    if (ctx->collect_url == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    snprintf(ctx->collect_url, cap, "%s%s/mp/collect?measurement_id=%s&api_secret=%s", base,
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
