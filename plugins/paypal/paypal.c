/* paypal — the descriptor, the options and the context.
 *
 * Payments through Orders v2 (create, get, capture) and capture refunds, with
 * an OAuth2 client-credentials token fetched as a step of the operation and
 * kept in the core's provider cache. The operations are in paypal_payment.c,
 * the answer → outcome table in paypal_errors.c, webhook verification
 * (offline certificate check or the verify API) and normalization in
 * paypal_webhook.c; README.md documents all three. */
#include "paypal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct agape_option paypal_options[] = {
    {"client_id", AGAPE_OPT_REQUIRED, "PAYPAL_CLIENT_ID", "REST app client id"},
    {"client_secret", AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET, "PAYPAL_CLIENT_SECRET",
     "REST app secret"},
    {"mode", 0, "PAYPAL_MODE", "sandbox (default) or live; picks the default base_url"},
    {"base_url", 0, "PAYPAL_API_BASE",
     "API base URL; overrides mode (default https://api-m.sandbox.paypal.com, live "
     "https://api-m.paypal.com)"},
    {"webhook_id", 0, "PAYPAL_WEBHOOK_ID",
     "webhook id of the app; without it every webhook is refused"},
    {"webhook_verify", 0, NULL,
     "how webhooks are verified: offline (default; certificate + RSA) or api (PayPal's "
     "verify-webhook-signature)"},
    {"cert_url_prefixes", 0, NULL,
     "allowed PAYPAL-CERT-URL prefixes (list or comma-separated), default PayPal's API hosts"},
    {"webhook_check_cert_expiry", 0, NULL,
     "refuse an expired or not yet valid signing certificate (default true)"},
    {"webhook_tolerance_s", 0, NULL,
     "accepted PAYPAL-TRANSMISSION-TIME skew in seconds, default 300; 0 disables the check"},
    {"brand_name", 0, NULL, "label shown to the buyer instead of the account's business name"},
    {NULL, 0, NULL, NULL},
};

static char *paypal_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void paypal_destroy(void *p)
{
    struct paypal_ctx *ctx = p;
    if (ctx == NULL) {
        return;
    }
    if (ctx->client_secret != NULL) {
        explicit_bzero(ctx->client_secret, strlen(ctx->client_secret));
    }
    free(ctx->client_id);
    free(ctx->client_secret);
    free(ctx->base_url);
    free(ctx->webhook_id);
    free(ctx->brand_name);
    paypal_webhook_destroy(ctx);
    free(ctx);
}

/* An optional string option: NULL when absent, null or "" (an unset
 * environment variable through env() gives nil or ""). -1 when present but
 * not a string. */
static int paypal_opt_str(const struct agape_host *host, const struct agape_json *conf,
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

/* Printable ASCII without spaces: safe in a header, a URL or userinfo. */
static bool paypal_token_ok(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* UTF-8 code points, for brand_name's limit. */
static size_t paypal_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        if (((unsigned char)*s & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

static int paypal_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                       char *err, size_t errlen)
{
    struct paypal_ctx *ctx = NULL;
    const char *id = NULL, *secret = NULL, *mode = NULL, *base = NULL, *whid = NULL,
               *brand = NULL;
    bool live = false;
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (paypal_opt_str(host, conf, "client_id", &id) != 0) {
        snprintf(err, errlen, "client_id must be a string (set PAYPAL_CLIENT_ID)");
        goto out;
    }
    if (id == NULL) {
        snprintf(err, errlen, "client_id is required (set PAYPAL_CLIENT_ID)");
        goto out;
    }
    /* Basic auth joins id and secret with ':' (RFC 7617): an id with one
     * cannot be sent. */
    if (!paypal_token_ok(id) || strchr(id, ':') != NULL) {
        snprintf(err, errlen, "client_id must be printable ASCII without spaces or ':' "
                              "(check PAYPAL_CLIENT_ID)");
        goto out;
    }
    if (paypal_opt_str(host, conf, "client_secret", &secret) != 0) {
        snprintf(err, errlen, "client_secret must be a string (set PAYPAL_CLIENT_SECRET)");
        goto out;
    }
    if (secret == NULL) {
        snprintf(err, errlen, "client_secret is required (set PAYPAL_CLIENT_SECRET)");
        goto out;
    }
    if (!paypal_token_ok(secret)) {
        /* Never echo the value. */
        snprintf(err, errlen, "client_secret must be printable ASCII without spaces "
                              "(check PAYPAL_CLIENT_SECRET)");
        goto out;
    }
    if (paypal_opt_str(host, conf, "mode", &mode) != 0) {
        snprintf(err, errlen, "mode must be \"sandbox\" or \"live\" (PAYPAL_MODE)");
        goto out;
    }
    if (mode != NULL && strcmp(mode, "live") == 0) {
        live = true;
    } else if (mode != NULL && strcmp(mode, "sandbox") != 0) {
        /* Echo a short printable value: "Live" or "production" is a typo to see. */
        if (paypal_token_ok(mode) && strlen(mode) <= 32) {
            snprintf(err, errlen, "mode must be \"sandbox\" or \"live\" (PAYPAL_MODE), not \"%s\"",
                     mode);
        } else {
            snprintf(err, errlen, "mode must be \"sandbox\" or \"live\" (PAYPAL_MODE)");
        }
        goto out;
    }
    if (paypal_opt_str(host, conf, "base_url", &base) != 0) {
        snprintf(err, errlen, "base_url must be a string (PAYPAL_API_BASE)");
        goto out;
    }
    if (base == NULL) {
        base = live ? PAYPAL_LIVE_BASE : PAYPAL_SANDBOX_BASE;
    }
    if ((strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0) ||
        !paypal_token_ok(base)) {
        snprintf(err, errlen, "base_url must start with http:// or https:// and contain no "
                              "spaces (PAYPAL_API_BASE)");
        goto out;
    }
    if (paypal_opt_str(host, conf, "webhook_id", &whid) != 0 ||
        (whid != NULL && (!paypal_token_ok(whid) || strlen(whid) > 64))) {
        snprintf(err, errlen, "webhook_id must be a PayPal webhook id such as 4JH86294D6297924G "
                              "(PAYPAL_WEBHOOK_ID)");
        goto out;
    }
    if (paypal_opt_str(host, conf, "brand_name", &brand) != 0) {
        snprintf(err, errlen, "brand_name must be a string");
        goto out;
    }
    if (brand != NULL && paypal_chars(brand) > PAYPAL_BRAND_NAME_MAX) {
        snprintf(err, errlen, "brand_name has more than %d characters (PayPal's limit)",
                 PAYPAL_BRAND_NAME_MAX);
        goto out;
    }

    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ctx->live = live;
    ctx->client_id = paypal_dup(id);
    ctx->client_secret = paypal_dup(secret);
    ctx->base_url = paypal_dup(base);
    ctx->webhook_id = whid ? paypal_dup(whid) : NULL;
    ctx->brand_name = brand ? paypal_dup(brand) : NULL;
    if (ctx->client_id == NULL || ctx->client_secret == NULL || ctx->base_url == NULL ||
        (whid && !ctx->webhook_id) || (brand && !ctx->brand_name)) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    /* "https://host/" and "https://host" are the same base. */
    size_t n = strlen(ctx->base_url);
    size_t scheme = strncmp(ctx->base_url, "https://", 8) == 0 ? 8 : 7;
    while (n > scheme && ctx->base_url[n - 1] == '/') {
        ctx->base_url[--n] = '\0';
    }
    if (n == scheme) {
        rc = AGAPE_EINVAL;
        snprintf(err, errlen, "base_url has no host (PAYPAL_API_BASE)");
        goto out;
    }
    rc = paypal_webhook_init(host, conf, ctx, err, errlen);
    if (rc != AGAPE_OK) {
        goto out;
    }
    *out = ctx;
    ctx = NULL;
    rc = AGAPE_OK;
out:
    paypal_destroy(ctx);
    return rc;
}

static const struct agape_payment_ops paypal_payment_ops = {
    .size = sizeof(struct agape_payment_ops),
    .charge = paypal_charge,
    .get = paypal_get,
    .capture = paypal_capture, /* the buyer approves, then the gateway captures */
    .refund = paypal_refund,
};

static const struct agape_webhook_ops paypal_webhook_ops = {
    .size = sizeof(struct agape_webhook_ops),
    .verify = paypal_webhook_verify,
    .normalize = paypal_webhook_normalize,
};

static const struct agape_plugin paypal_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "paypal",
    .version = "1.0.0",
    .kinds = AGAPE_KIND_PAYMENT | AGAPE_KIND_WEBHOOK,
    .options = paypal_options,
    .init = paypal_init,
    .destroy = paypal_destroy,
    .payment = &paypal_payment_ops,
    .webhook = &paypal_webhook_ops,
};

AGAPE_PLUGIN_DEFINE(paypal_plugin)
