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
    {.name = "client_id",
     .flags = AGAPE_OPT_REQUIRED,
     .env = "PAYPAL_CLIENT_ID",
     .description = "REST app client id"},
    {.name = "client_secret",
     .flags = AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET,
     .env = "PAYPAL_CLIENT_SECRET",
     .description = "REST app secret"},
    {.name = "mode",
     .env = "PAYPAL_MODE",
     .description = "sandbox or live; picks the default base_url",
     .type = AGAPE_OPT_STRING,
     .dflt = "sandbox"},
    {.name = "base_url",
     .env = "PAYPAL_API_BASE",
     .description = "API base URL; overrides mode (sandbox https://api-m.sandbox.paypal.com, live https://api-m.paypal.com)",
     .type = AGAPE_OPT_URL},
    {.name = "webhook_id",
     .env = "PAYPAL_WEBHOOK_ID",
     .description = "webhook id of the app; without it every webhook is refused"},
    {.name = "webhook_verify",
     .description = "how webhooks are verified: offline (certificate + RSA) or api (PayPal's verify-webhook-signature)",
     .type = AGAPE_OPT_STRING,
     .dflt = "offline"},
    {.name = "cert_url_prefixes",
     .description = "allowed PAYPAL-CERT-URL prefixes, default PayPal's API hosts",
     .type = AGAPE_OPT_LIST,
     .dflt = PAYPAL_CERT_PREFIXES_DEFAULT,
     .max = PAYPAL_CERT_PREFIXES_MAX},
    {.name = "webhook_check_cert_expiry",
     .description = "refuse an expired or not yet valid signing certificate",
     .type = AGAPE_OPT_BOOL,
     .dflt = "true"},
    {.name = "webhook_tolerance_s",
     .description = "accepted PAYPAL-TRANSMISSION-TIME skew in seconds; 0 disables the check",
     .type = AGAPE_OPT_INT,
     .dflt = "300",
     .max = 31536000},
    {.name = "brand_name",
     .description = "label shown to the buyer instead of the account's business name"},
    {0},};

static void paypal_destroy(void *p)
{
    struct paypal_ctx *ctx = p;
    if (ctx != NULL) {
        paypal_webhook_destroy(ctx);
        free(ctx);
    }
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

/* The core has read the options by their declared types (plugin.h): the
 * strings are non-empty or absent, base_url is a checked URL without a
 * trailing slash. Mode → host and the credential rules are PayPal's. */
static int paypal_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                       char *err, size_t errlen)
{
    struct paypal_ctx *ctx = NULL;
    const char *id = host->json_str(conf, "client_id");
    const char *secret = host->json_str(conf, "client_secret");
    const char *mode = host->json_str(conf, "mode");
    const char *base = host->json_str(conf, "base_url");
    const char *whid = host->json_str(conf, "webhook_id");
    const char *brand = host->json_str(conf, "brand_name");
    bool live = false;
    int rc = AGAPE_EINVAL;

    *out = NULL;
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
    if (base == NULL) {
        base = live ? PAYPAL_LIVE_BASE : PAYPAL_SANDBOX_BASE;
    }
    if (whid != NULL && (!paypal_token_ok(whid) || strlen(whid) > 64)) {
        snprintf(err, errlen, "webhook_id must be a PayPal webhook id such as 4JH86294D6297924G "
                              "(PAYPAL_WEBHOOK_ID)");
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
    ctx->client_id = id;
    ctx->client_secret = secret;
    ctx->base_url = base;
    ctx->webhook_id = whid;
    ctx->brand_name = brand;
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
