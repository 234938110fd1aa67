/* stripe — the descriptor, the options and the context.
 *
 * Payments (PaymentIntents, refunds) and webhooks (Stripe-Signature). The
 * operations are in stripe_payment.c, the answer → outcome table in
 * stripe_errors.c, the webhook scheme in stripe_webhook.c. README.md documents
 * all three for operators and reviewers. */
#include "stripe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct agape_option stripe_options[] = {
    {.name = "secret_key",
     .flags = AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET,
     .env = "STRIPE_SECRET_KEY",
     .description = "secret API key, sk_… or a restricted rk_… key"},
    {.name = "public_key",
     .env = "STRIPE_PUBLIC_KEY",
     .description = "publishable key pk_… (not used by the gateway)"},
    {.name = "webhook_secret",
     .flags = AGAPE_OPT_SECRET,
     .env = "STRIPE_WEBHOOK_SECRET",
     .description = "endpoint signing secret whsec_…, needed to accept webhooks"},
    {.name = "base_url",
     .env = "STRIPE_API_BASE",
     .description = "API base URL",
     .type = AGAPE_OPT_URL,
     .dflt = STRIPE_DEFAULT_BASE},
    {.name = "webhook_tolerance_s",
     .description = "accepted webhook timestamp skew in seconds; 0 disables the check",
     .type = AGAPE_OPT_INT,
     .dflt = "300",
     .max = 31536000},
    {.name = "api_version",
     .description = "Stripe-Version header to pin, default none (account default)"},
    {0},};

static void stripe_destroy(void *p)
{
    free(p);
}

/* Header values must not be able to smuggle a second header: printable
 * ASCII without spaces only. */
static bool stripe_token_ok(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* The core has read the options by their declared types (plugin.h): strings
 * are non-empty or absent, base_url is a checked URL without a trailing
 * slash, webhook_tolerance_s an integer in range. What is left is Stripe's. */
static int stripe_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                       char *err, size_t errlen)
{
    struct stripe_ctx *ctx = NULL;
    const char *secret = host->json_str(conf, "secret_key");
    const char *pub = host->json_str(conf, "public_key");
    const char *whsec = host->json_str(conf, "webhook_secret");
    const char *base = host->json_str(conf, "base_url");
    const char *version = host->json_str(conf, "api_version");
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (secret == NULL) {
        snprintf(err, errlen, "secret_key is required (set STRIPE_SECRET_KEY)");
        goto out;
    }
    if ((strncmp(secret, "sk_", 3) != 0 && strncmp(secret, "rk_", 3) != 0) ||
        !stripe_token_ok(secret)) {
        /* Never echo the value: it may be a real key pasted in the wrong place. */
        snprintf(err, errlen, "secret_key must be a secret key starting with sk_ or rk_ "
                              "(check STRIPE_SECRET_KEY)");
        goto out;
    }
    if (version != NULL && (strlen(version) > 64 || !stripe_token_ok(version))) {
        snprintf(err, errlen, "api_version must be a Stripe API version such as 2023-08-16");
        goto out;
    }

    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ctx->secret_key = secret;
    ctx->public_key = pub;
    ctx->webhook_secret = whsec;
    ctx->base_url = base ? base : STRIPE_DEFAULT_BASE;
    ctx->api_version = version;
    ctx->tolerance_s = host->json_int(conf, "webhook_tolerance_s", STRIPE_DEFAULT_TOLERANCE_S);
    *out = ctx;
    rc = AGAPE_OK;
out:
    return rc;
}

static const struct agape_payment_ops stripe_payment_ops = {
    .size = sizeof(struct agape_payment_ops),
    .charge = stripe_charge,
    .get = stripe_get,
    .capture = NULL, /* automatic capture: a succeeded PaymentIntent is captured */
    .refund = stripe_refund,
};

static const struct agape_webhook_ops stripe_webhook_ops = {
    .size = sizeof(struct agape_webhook_ops),
    .verify = stripe_webhook_verify,
    .normalize = stripe_webhook_normalize,
};

static const struct agape_plugin stripe_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "stripe",
    .version = "1.0.0",
    .kinds = AGAPE_KIND_PAYMENT | AGAPE_KIND_WEBHOOK,
    .options = stripe_options,
    .init = stripe_init,
    .destroy = stripe_destroy,
    .payment = &stripe_payment_ops,
    .webhook = &stripe_webhook_ops,
};

AGAPE_PLUGIN_DEFINE(stripe_plugin)
