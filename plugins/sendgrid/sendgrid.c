/* sendgrid — the descriptor, the options and the context.
 *
 * Messaging (send_email through the v3 Mail Send API) and webhooks (the
 * signed Event Webhook). The request is built in sendgrid_mail.c, the answer
 * → outcome table is in sendgrid_errors.c, the webhook scheme in
 * sendgrid_webhook.c. README.md documents all three. */
#include "sendgrid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENDGRID_KEY_TEXT_MAX 4096 /* the configured public key, PEM or base64 */

static const struct agape_option sendgrid_options[] = {
    {.name = "api_key",
     .flags = AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET,
     .env = "SENDGRID_API_KEY",
     .description = "API key (SG.…) with the Mail Send permission"},
    {.name = "from_email",
     .env = "DEFAULT_FROM_EMAIL",
     .description = "default sender address (a verified sender); a message's own from wins"},
    {.name = "base_url",
     .env = "SENDGRID_API_BASE",
     .description = "API base URL (EU subusers: https://api.eu.sendgrid.com)",
     .type = AGAPE_OPT_URL,
     .dflt = SENDGRID_DEFAULT_BASE},
    {.name = "webhook_public_key",
     .env = "SENDGRID_WEBHOOK_PUBLIC_KEY",
     .description = "Event Webhook verification key: base64 DER (MFkw…) or PEM; needed to accept webhooks"},
    {.name = "webhook_tolerance_s",
     .description = "accepted webhook timestamp age in seconds; 0 disables the check",
     .type = AGAPE_OPT_INT,
     .dflt = "600",
     .max = 31536000},
    {0},};

static void sendgrid_destroy(void *p)
{
    struct sendgrid_ctx *ctx = p;
    if (ctx != NULL) {
        free(ctx->webhook_key);
        free(ctx);
    }
}

/* Printable ASCII without spaces: safe in a header value or a URL. */
static bool sendgrid_token_ok(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* The verification key as SendGrid shows it (base64 of a DER
 * SubjectPublicKeyInfo), or the same wrapped in PEM lines: the armour lines
 * and all whitespace are dropped, the rest must be strict base64. */
static int sendgrid_public_key(const struct agape_host *host, const char *text,
                               struct sendgrid_ctx *ctx, char *err, size_t errlen)
{
    size_t len = strlen(text);
    char b64[SENDGRID_KEY_TEXT_MAX + 1];
    size_t n = 0;
    unsigned char der[SENDGRID_KEY_MAX];

    if (len > SENDGRID_KEY_TEXT_MAX) {
        snprintf(err, errlen, "webhook_public_key is too long (SENDGRID_WEBHOOK_PUBLIC_KEY)");
        return AGAPE_EINVAL;
    }
    const char *p = text;
    while (*p != '\0') {
        if (strncmp(p, "-----", 5) == 0) {
            /* An armour line: skip to its end. */
            const char *nl = strchr(p, '\n');
            p = nl ? nl + 1 : p + strlen(p);
            continue;
        }
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            b64[n++] = *p;
        }
        p++;
    }
    b64[n] = '\0';
    long dlen = host->base64_decode(b64, n, der, sizeof(der));
    /* The shortest SubjectPublicKeyInfo of a P-256 key is 59 bytes (compressed). */
    if (dlen < 59) {
        snprintf(err, errlen, "webhook_public_key must be the base64 verification key "
                              "from SendGrid's Event Webhook settings "
                              "(SENDGRID_WEBHOOK_PUBLIC_KEY)");
        return AGAPE_EINVAL;
    }
    ctx->webhook_key = malloc((size_t)dlen);
    if (ctx->webhook_key == NULL) {
        snprintf(err, errlen, "out of memory");
        return AGAPE_ENOMEM;
    }
    memcpy(ctx->webhook_key, der, (size_t)dlen);
    ctx->webhook_key_len = (size_t)dlen;
    return AGAPE_OK;
}

/* The core has read the options by their declared types (plugin.h): strings
 * are non-empty or absent, base_url is a checked URL without a trailing
 * slash, webhook_tolerance_s an integer in range. */
static int sendgrid_init(const struct agape_host *host, const struct agape_json *conf,
                         void **out, char *err, size_t errlen)
{
    struct sendgrid_ctx *ctx = NULL;
    const char *key = host->json_str(conf, "api_key");
    const char *from = host->json_str(conf, "from_email");
    const char *base = host->json_str(conf, "base_url");
    const char *pub = host->json_str(conf, "webhook_public_key");
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (key == NULL) {
        snprintf(err, errlen, "api_key is required (set SENDGRID_API_KEY)");
        goto out;
    }
    if (!sendgrid_token_ok(key) || strlen(key) > 512) {
        /* Never echo the value. */
        snprintf(err, errlen, "api_key must be printable ASCII without spaces "
                              "(check SENDGRID_API_KEY)");
        goto out;
    }
    if (from != NULL && !sendgrid_addr_ok(from)) {
        snprintf(err, errlen, "from_email must be an e-mail address (DEFAULT_FROM_EMAIL)");
        goto out;
    }

    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ctx->tolerance_s = host->json_int(conf, "webhook_tolerance_s", SENDGRID_DEFAULT_TOLERANCE_S);
    if (pub != NULL) {
        rc = sendgrid_public_key(host, pub, ctx, err, errlen);
        if (rc != AGAPE_OK) {
            goto out;
        }
    }
    ctx->api_key = key;
    ctx->base_url = base ? base : SENDGRID_DEFAULT_BASE;
    ctx->from_email = from;
    *out = ctx;
    ctx = NULL;
    rc = AGAPE_OK;
out:
    sendgrid_destroy(ctx);
    return rc;
}

static const struct agape_messaging_ops sendgrid_messaging_ops = {
    .size = sizeof(struct agape_messaging_ops),
    .send_email = sendgrid_send_email,
    .send_sms = NULL, /* e-mail only */
};

static const struct agape_webhook_ops sendgrid_webhook_ops = {
    .size = sizeof(struct agape_webhook_ops),
    .verify = sendgrid_webhook_verify,
    .normalize = sendgrid_webhook_normalize,
};

static const struct agape_plugin sendgrid_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "sendgrid",
    .version = "1.0.0",
    .kinds = AGAPE_KIND_MESSAGING | AGAPE_KIND_WEBHOOK,
    .options = sendgrid_options,
    .init = sendgrid_init,
    .destroy = sendgrid_destroy,
    .messaging = &sendgrid_messaging_ops,
    .webhook = &sendgrid_webhook_ops,
};

AGAPE_PLUGIN_DEFINE(sendgrid_plugin)
