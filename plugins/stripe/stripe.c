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
    {"secret_key", AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET, "STRIPE_SECRET_KEY",
     "secret API key, sk_… or a restricted rk_… key"},
    {"public_key", 0, "STRIPE_PUBLIC_KEY", "publishable key pk_… (not used by the gateway)"},
    {"webhook_secret", AGAPE_OPT_SECRET, "STRIPE_WEBHOOK_SECRET",
     "endpoint signing secret whsec_…, needed to accept webhooks"},
    {"base_url", 0, "STRIPE_API_BASE", "API base URL, default https://api.stripe.com"},
    {"webhook_tolerance_s", 0, NULL,
     "accepted webhook timestamp skew in seconds, default 300; 0 disables the check"},
    {"api_version", 0, NULL, "Stripe-Version header to pin, default none (account default)"},
    {NULL, 0, NULL, NULL},
};

static char *stripe_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void stripe_destroy(void *p)
{
    struct stripe_ctx *ctx = p;
    if (ctx == NULL) {
        return;
    }
    /* Wipe the secrets before the memory goes back to the allocator. */
    if (ctx->secret_key != NULL) {
        explicit_bzero(ctx->secret_key, strlen(ctx->secret_key));
    }
    if (ctx->webhook_secret != NULL) {
        explicit_bzero(ctx->webhook_secret, strlen(ctx->webhook_secret));
    }
    free(ctx->secret_key);
    free(ctx->public_key);
    free(ctx->webhook_secret);
    free(ctx->base_url);
    free(ctx->api_version);
    free(ctx);
}

/* An optional string option: NULL when absent, null or empty (an unset
 * environment variable in agape.conf gives nil or ""). -1 when present but
 * not a string. */
static int stripe_opt_str(const struct agape_host *host, const struct agape_json *conf,
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
    const char *s = host->json_str(conf, name);
    if (s != NULL && s[0] != '\0') {
        *out = s;
    }
    return 0;
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

static int stripe_tolerance(const struct agape_host *host, const struct agape_json *conf,
                            int64_t *out, char *err, size_t errlen)
{
    const struct agape_json *v = host->json_get(conf, "webhook_tolerance_s");
    enum agape_json_type t = host->json_type(v);
    int64_t n = STRIPE_DEFAULT_TOLERANCE_S;

    if (t == AGAPE_JSON_INT) {
        n = host->json_int(conf, "webhook_tolerance_s", -1);
    } else if (t == AGAPE_JSON_STRING) {
        /* From env() in agape.conf the value arrives as a string. */
        const char *s = host->json_str(conf, "webhook_tolerance_s");
        char *end = NULL;
        if (s[0] < '0' || s[0] > '9') {
            n = -1;
        } else {
            n = strtoll(s, &end, 10);
            if (*end != '\0') {
                n = -1;
            }
        }
    } else if (t != AGAPE_JSON_ABSENT && t != AGAPE_JSON_NULL) {
        n = -1;
    }
    if (n < 0 || n > 31536000) {
        snprintf(err, errlen, "webhook_tolerance_s must be an integer from 0 to 31536000 "
                              "(seconds; 0 disables the timestamp check)");
        return AGAPE_EINVAL;
    }
    *out = n;
    return AGAPE_OK;
}

static int stripe_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                       char *err, size_t errlen)
{
    struct stripe_ctx *ctx = NULL;
    const char *secret = NULL, *pub = NULL, *whsec = NULL, *base = NULL, *version = NULL;
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (stripe_opt_str(host, conf, "secret_key", &secret) != 0) {
        snprintf(err, errlen, "secret_key must be a string (set STRIPE_SECRET_KEY)");
        goto out;
    }
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
    if (stripe_opt_str(host, conf, "public_key", &pub) != 0) {
        snprintf(err, errlen, "public_key must be a string (STRIPE_PUBLIC_KEY)");
        goto out;
    }
    if (stripe_opt_str(host, conf, "webhook_secret", &whsec) != 0) {
        snprintf(err, errlen, "webhook_secret must be a string (STRIPE_WEBHOOK_SECRET)");
        goto out;
    }
    if (stripe_opt_str(host, conf, "base_url", &base) != 0) {
        snprintf(err, errlen, "base_url must be a string (STRIPE_API_BASE)");
        goto out;
    }
    if (base == NULL) {
        base = STRIPE_DEFAULT_BASE;
    }
    if ((strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0) ||
        !stripe_token_ok(base)) {
        snprintf(err, errlen, "base_url must start with http:// or https:// and contain no "
                              "spaces (STRIPE_API_BASE)");
        goto out;
    }
    if (stripe_opt_str(host, conf, "api_version", &version) != 0 ||
        (version != NULL && (strlen(version) > 64 || !stripe_token_ok(version)))) {
        snprintf(err, errlen, "api_version must be a Stripe API version such as 2023-08-16");
        goto out;
    }

    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = stripe_tolerance(host, conf, &ctx->tolerance_s, err, errlen);
    if (rc != AGAPE_OK) {
        goto out;
    }
    ctx->secret_key = stripe_dup(secret);
    ctx->base_url = stripe_dup(base);
    ctx->public_key = pub ? stripe_dup(pub) : NULL;
    ctx->webhook_secret = whsec ? stripe_dup(whsec) : NULL;
    ctx->api_version = version ? stripe_dup(version) : NULL;
    if (ctx->secret_key == NULL || ctx->base_url == NULL || (pub && !ctx->public_key) ||
        (whsec && !ctx->webhook_secret) || (version && !ctx->api_version)) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    /* "https://api.stripe.com/" and "https://api.stripe.com" are the same base. */
    size_t n = strlen(ctx->base_url);
    size_t scheme = strncmp(ctx->base_url, "https://", 8) == 0 ? 8 : 7;
    while (n > scheme && ctx->base_url[n - 1] == '/') {
        ctx->base_url[--n] = '\0';
    }
    if (n == scheme) {
        rc = AGAPE_EINVAL;
        snprintf(err, errlen, "base_url has no host (STRIPE_API_BASE)");
        goto out;
    }
    *out = ctx;
    ctx = NULL;
    rc = AGAPE_OK;
out:
    stripe_destroy(ctx);
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
