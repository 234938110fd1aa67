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
    {"license_key", AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET, "NEW_RELIC_LICENSE_KEY",
     "ingest license key, sent as Api-Key"},
    {"app_name", 0, "NEW_RELIC_APP_NAME", "app.name and service.name attributes, default agape"},
    {"account_id", 0, "NEW_RELIC_ACCOUNT_ID", "account number, needed for errors (Event API)"},
    {"region", 0, "NEW_RELIC_REGION", "us (default) or eu: which ingest hosts"},
    {"base_url", 0, "NEW_RELIC_API_BASE",
     "one base URL for both the Metric and the Event paths (tests, proxies)"},
    {"environment", 0, "AGAPE_ENV", "environment attribute sent with metrics and errors"},
    {"send_default_pii", 0, NULL,
     "true: keep user.email and user.ip_address in errors (default false: dropped)"},
    {NULL, 0, NULL, NULL},
};

static void newrelic_destroy(void *p)
{
    struct newrelic_ctx *ctx = p;
    if (ctx == NULL) {
        return;
    }
    if (ctx->license_key != NULL) {
        explicit_bzero(ctx->license_key, strlen(ctx->license_key));
    }
    free(ctx->license_key);
    free(ctx->app_name);
    free(ctx->account_id);
    free(ctx->metric_base);
    free(ctx->event_base);
    free(ctx->environment);
    free(ctx);
}

/* account_id: digits, from a string (env()) or an integer in agape.conf. */
static int newrelic_account(const struct agape_host *host, const struct agape_json *conf,
                            char *out, size_t outlen)
{
    const struct agape_json *v = host->json_get(conf, "account_id");
    enum agape_json_type t = host->json_type(v);
    out[0] = '\0';
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return 0;
    }
    if (t == AGAPE_JSON_INT) {
        int64_t n = host->json_int(v, "", -1);
        if (n <= 0) {
            return -1;
        }
        snprintf(out, outlen, "%lld", (long long)n);
        return 0;
    }
    if (t != AGAPE_JSON_STRING) {
        return -1;
    }
    const char *s = host->json_str(v, "");
    size_t n = strlen(s);
    if (n >= outlen) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
    }
    memcpy(out, s, n + 1);
    return 0;
}

static char *newrelic_base(const char *base)
{
    char *b = sentry_dup(base);
    if (b == NULL) {
        return NULL;
    }
    size_t n = strlen(b);
    size_t scheme = strncmp(b, "https://", 8) == 0 ? 8 : 7;
    while (n > scheme && b[n - 1] == '/') {
        b[--n] = '\0';
    }
    return b;
}

static int newrelic_init(const struct agape_host *host, const struct agape_json *conf,
                         void **out, char *err, size_t errlen)
{
    struct newrelic_ctx *ctx = NULL;
    const char *key = NULL, *app = NULL, *region = NULL, *base = NULL, *env = NULL;
    char account[24];
    int rc = AGAPE_EINVAL;
    bool eu = false;

    *out = NULL;
    if (sentry_opt_str(host, conf, "license_key", &key) != 0 || key == NULL) {
        snprintf(err, errlen, "license_key is required (set NEW_RELIC_LICENSE_KEY)");
        goto out;
    }
    if (!sentry_token_ok(key) || strlen(key) > 256) {
        /* never echo it */
        snprintf(err, errlen, "license_key must be printable without spaces "
                              "(check NEW_RELIC_LICENSE_KEY)");
        goto out;
    }
    if (sentry_opt_str(host, conf, "app_name", &app) != 0 ||
        (app != NULL && (strlen(app) > 255 || strpbrk(app, "\r\n\t") != NULL))) {
        snprintf(err, errlen, "app_name must be 1 to 255 characters (NEW_RELIC_APP_NAME)");
        goto out;
    }
    if (newrelic_account(host, conf, account, sizeof(account)) != 0) {
        snprintf(err, errlen, "account_id must be a positive decimal number "
                              "(NEW_RELIC_ACCOUNT_ID)");
        goto out;
    }
    if (sentry_opt_str(host, conf, "region", &region) != 0 ||
        (region != NULL && strcasecmp(region, "us") != 0 && strcasecmp(region, "eu") != 0)) {
        snprintf(err, errlen, "region must be us or eu (NEW_RELIC_REGION)");
        goto out;
    }
    eu = region != NULL && strcasecmp(region, "eu") == 0;
    if (sentry_opt_str(host, conf, "base_url", &base) != 0 ||
        (base != NULL && ((strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0) ||
                          !sentry_token_ok(base) || strlen(base) > 1024))) {
        snprintf(err, errlen, "base_url must start with http:// or https:// and contain no "
                              "spaces (NEW_RELIC_API_BASE)");
        goto out;
    }
    if (sentry_opt_str(host, conf, "environment", &env) != 0 ||
        (env != NULL && (strlen(env) > 255 || strpbrk(env, "\r\n\t") != NULL))) {
        snprintf(err, errlen, "environment must be 1 to 255 characters (AGAPE_ENV)");
        goto out;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (sentry_opt_bool(host, conf, "send_default_pii", false, &ctx->send_default_pii) != 0) {
        snprintf(err, errlen, "send_default_pii must be true or false");
        goto out;
    }
    ctx->license_key = sentry_dup(key);
    ctx->app_name = sentry_dup(app ? app : "agape");
    ctx->account_id = account[0] ? sentry_dup(account) : NULL;
    ctx->metric_base = newrelic_base(base ? base : eu ? NEWRELIC_EU_METRIC : NEWRELIC_US_METRIC);
    ctx->event_base = newrelic_base(base ? base : eu ? NEWRELIC_EU_EVENT : NEWRELIC_US_EVENT);
    ctx->environment = env ? sentry_dup(env) : NULL;
    if (!ctx->license_key || !ctx->app_name || (account[0] && !ctx->account_id) ||
        !ctx->metric_base || !ctx->event_base || (env && !ctx->environment)) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (strlen(ctx->metric_base) <= 8 || strchr(ctx->metric_base + 8, '?') != NULL) {
        snprintf(err, errlen, "base_url has no host or has a query (NEW_RELIC_API_BASE)");
        goto out;
    }
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
    ctx = NULL;
    rc = AGAPE_OK;
out:
    newrelic_destroy(ctx);
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
