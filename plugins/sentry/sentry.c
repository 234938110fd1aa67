/* sentry — the descriptor, the options and the context.
 *
 * Monitoring: report_error sends one event per envelope (sentry_event.c) to
 * the project the DSN names (sentry_dsn.c). Sentry has no metrics ingest for
 * us, so send_metrics is NULL and the core skips this provider for metrics.
 * README.md documents the options, the event and the answer table. */
#include "sentry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct agape_option sentry_options[] = {
    /* The DSN's public key is not a secret to Sentry (browsers embed it), but
     * the DSN is what lets anyone fill our project: kept out of logs whole. */
    {.name = "dsn",
     .flags = AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET,
     .env = "SENTRY_DSN",
     .description = "project DSN https://<public_key>@<host>/<project_id>"},
    {.name = "environment",
     .env = "AGAPE_ENV",
     .description = "environment name sent with every event"},
    {.name = "release", .description = "release name sent with every event"},
    {.name = "send_default_pii",
     .description = "true: keep user.email and user.ip_address (else dropped)",
     .type = AGAPE_OPT_BOOL,
     .dflt = "false"},
    {0},};

static void sentry_destroy(void *p)
{
    struct sentry_ctx *ctx = p;
    if (ctx == NULL) {
        return;
    }
    if (ctx->auth != NULL) {
        explicit_bzero(ctx->auth, strlen(ctx->auth));
    }
    free(ctx->envelope_url);
    free(ctx->auth);
    free(ctx);
}

/* Sentry's rules for names shown in its UI: no control characters; a release
 * also has no slashes and is not "." or "..". */
static bool sentry_name_ok(const char *s, size_t max, bool release)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || (release && (strcmp(s, ".") == 0 || strcmp(s, "..") == 0))) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || (release && (c == '/' || c == '\\'))) {
            return false;
        }
    }
    return true;
}

/* The core has read the options by their declared types (plugin.h): the
 * strings are non-empty or absent, send_default_pii a boolean. The DSN's
 * shape is Sentry's (sentry_dsn.c). */
static int sentry_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                       char *err, size_t errlen)
{
    struct sentry_ctx *ctx = NULL;
    const char *dsn = host->json_str(conf, "dsn");
    const char *env = host->json_str(conf, "environment");
    const char *release = host->json_str(conf, "release");
    char *pk = NULL, *sk = NULL;
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (dsn == NULL) {
        snprintf(err, errlen, "dsn is required (set SENTRY_DSN)");
        goto out;
    }
    if (env != NULL && !sentry_name_ok(env, 64, false)) {
        snprintf(err, errlen, "environment must be 1 to 64 printable characters (AGAPE_ENV)");
        goto out;
    }
    if (release != NULL && !sentry_name_ok(release, 200, true)) {
        snprintf(err, errlen, "release must be 1 to 200 printable characters without slashes");
        goto out;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ctx->send_default_pii = host->json_bool(conf, "send_default_pii", false);
    char why[AGAPE_ERR_SIZE];
    rc = sentry_dsn_parse(dsn, &ctx->envelope_url, &pk, &sk, why, sizeof(why));
    if (rc != AGAPE_OK) {
        snprintf(err, errlen, "dsn: %s (SENTRY_DSN)", why);
        goto out;
    }
    /* sentry-python Auth.to_header: key, version, client, then the secret. */
    size_t cap = 64 + strlen(pk) + strlen(SENTRY_CLIENT) + (sk ? strlen(sk) + 16 : 0);
    ctx->auth = malloc(cap);
    ctx->dsn = dsn;
    ctx->environment = env;
    ctx->release = release;
    if (ctx->auth == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    snprintf(ctx->auth, cap, "Sentry sentry_key=%s, sentry_version=7, sentry_client=%s%s%s", pk,
             SENTRY_CLIENT, sk ? ", sentry_secret=" : "", sk ? sk : "");
    *out = ctx;
    ctx = NULL;
    rc = AGAPE_OK;
out:
    if (sk != NULL) {
        explicit_bzero(sk, strlen(sk));
    }
    free(pk);
    free(sk);
    sentry_destroy(ctx);
    return rc;
}

static const struct agape_monitoring_ops sentry_monitoring_ops = {
    .size = sizeof(struct agape_monitoring_ops),
    .report_error = sentry_report_error,
    .send_metrics = NULL, /* Sentry takes no metrics from us */
};

static const struct agape_plugin sentry_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "sentry",
    .version = SENTRY_PLUGIN_VERSION,
    .kinds = AGAPE_KIND_MONITORING,
    .options = sentry_options,
    .init = sentry_init,
    .destroy = sentry_destroy,
    .monitoring = &sentry_monitoring_ops,
};

AGAPE_PLUGIN_DEFINE(sentry_plugin)
