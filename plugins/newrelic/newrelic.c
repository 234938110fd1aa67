/* newrelic — the descriptor, the options and the context.
 *
 * Monitoring: send_metrics → the Metric API, report_error → the Event API
 * (an AgapeError event), both gzip-compressed JSON with the license key in
 * Api-Key (newrelic_ops.c). README.md documents the payloads and answers. */
#include "newrelic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct agape_option newrelic_options[] = {
    {.name = "license_key",
     .flags = AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET,
     .env = "NEW_RELIC_LICENSE_KEY",
     .description = "ingest license key, sent as Api-Key"},
    {.name = "app_name",
     .env = "NEW_RELIC_APP_NAME",
     .description = "app.name and service.name attributes",
     .type = AGAPE_OPT_STRING,
     .dflt = "agape"},
    {.name = "account_id",
     .env = "NEW_RELIC_ACCOUNT_ID",
     .description = "account number, needed for errors (Event API)",
     .type = AGAPE_OPT_INT,
     .min = 1,
     .max = INT64_MAX},
    {.name = "region",
     .env = "NEW_RELIC_REGION",
     .description = "us or eu: which ingest hosts",
     .type = AGAPE_OPT_STRING,
     .dflt = "us"},
    {.name = "base_url",
     .env = "NEW_RELIC_API_BASE",
     .description = "one base URL for both the Metric and the Event paths (tests, proxies)",
     .type = AGAPE_OPT_URL},
    {.name = "environment",
     .env = "AGAPE_ENV",
     .description = "environment attribute sent with metrics and errors"},
    {.name = "send_default_pii",
     .description = "true: keep user.email and user.ip_address in errors (else dropped)",
     .type = AGAPE_OPT_BOOL,
     .dflt = "false"},
    {0},};

static void newrelic_destroy(void *p)
{
    free(p);
}

/* The core has read the options by their declared types (plugin.h): the
 * strings are non-empty or absent, account_id a positive integer, base_url a
 * checked URL without a trailing slash, send_default_pii a boolean. */
static int newrelic_init(const struct agape_host *host, const struct agape_json *conf,
                         void **out, char *err, size_t errlen)
{
    struct newrelic_ctx *ctx = NULL;
    const char *key = host->json_str(conf, "license_key");
    const char *app = host->json_str(conf, "app_name");
    const char *region = host->json_str(conf, "region");
    const char *base = host->json_str(conf, "base_url");
    const char *env = host->json_str(conf, "environment");
    int64_t account = host->json_int(conf, "account_id", 0);
    bool eu = region != NULL && strcasecmp(region, "eu") == 0;
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (key == NULL) {
        snprintf(err, errlen, "license_key is required (set NEW_RELIC_LICENSE_KEY)");
        goto out;
    }
    if (!sentry_token_ok(key) || strlen(key) > 256) {
        /* never echo it */
        snprintf(err, errlen, "license_key must be printable without spaces "
                              "(check NEW_RELIC_LICENSE_KEY)");
        goto out;
    }
    if (app != NULL && (strlen(app) > 255 || strpbrk(app, "\r\n\t") != NULL)) {
        snprintf(err, errlen, "app_name must be 1 to 255 characters (NEW_RELIC_APP_NAME)");
        goto out;
    }
    if (region != NULL && strcasecmp(region, "us") != 0 && strcasecmp(region, "eu") != 0) {
        snprintf(err, errlen, "region must be us or eu (NEW_RELIC_REGION)");
        goto out;
    }
    if (env != NULL && (strlen(env) > 255 || strpbrk(env, "\r\n\t") != NULL)) {
        snprintf(err, errlen, "environment must be 1 to 255 characters (AGAPE_ENV)");
        goto out;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ctx->send_default_pii = host->json_bool(conf, "send_default_pii", false);
    ctx->license_key = key;
    ctx->app_name = app ? app : "agape";
    if (account > 0) {
        snprintf(ctx->account_text, sizeof(ctx->account_text), "%lld", (long long)account);
        ctx->account_id = ctx->account_text;
    }
    ctx->metric_base = base ? base : eu ? NEWRELIC_EU_METRIC : NEWRELIC_US_METRIC;
    ctx->event_base = base ? base : eu ? NEWRELIC_EU_EVENT : NEWRELIC_US_EVENT;
    ctx->environment = env;
    if (ctx->account_id == NULL) {
        host->log(NULL, AGAPE_LOG_WARN,
                  "newrelic: account_id is not set (NEW_RELIC_ACCOUNT_ID): metrics are sent, "
                  "errors are refused (the Event API needs the account)");
    }
    /* EU license keys start with "eu01x" (New Relic's key format); a mismatch
     * is answered 403 by the other region's hosts. */
    if (base == NULL && !eu && strncmp(key, "eu01x", 5) == 0) {
        host->log(NULL, AGAPE_LOG_WARN,
                  "newrelic: the license key looks like an EU key but region is us; "
                  "set NEW_RELIC_REGION=eu if New Relic answers 403");
    }
    *out = ctx;
    rc = AGAPE_OK;
out:
    return rc;
}

static const struct agape_monitoring_ops newrelic_monitoring_ops = {
    .size = sizeof(struct agape_monitoring_ops),
    .report_error = newrelic_report_error,
    .send_metrics = newrelic_send_metrics,
};

static const struct agape_plugin newrelic_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "newrelic",
    .version = NEWRELIC_PLUGIN_VERSION,
    .kinds = AGAPE_KIND_MONITORING,
    .options = newrelic_options,
    .init = newrelic_init,
    .destroy = newrelic_destroy,
    .monitoring = &newrelic_monitoring_ops,
};

AGAPE_PLUGIN_DEFINE(newrelic_plugin)
