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
    {"api_key", AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET, "SENDGRID_API_KEY",
     "API key (SG.…) with the Mail Send permission"},
    {"from_email", 0, "DEFAULT_FROM_EMAIL",
     "default sender address (a verified sender); a message's own from wins"},
    {"base_url", 0, "SENDGRID_API_BASE",
     "API base URL, default https://api.sendgrid.com (EU subusers: https://api.eu.sendgrid.com)"},
    {"webhook_public_key", 0, "SENDGRID_WEBHOOK_PUBLIC_KEY",
     "Event Webhook verification key: base64 DER (MFkw…) or PEM; needed to accept webhooks"},
    {"webhook_tolerance_s", 0, NULL,
     "accepted webhook timestamp age in seconds, default 600; 0 disables the check"},
    {NULL, 0, NULL, NULL},
};

static char *sendgrid_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void sendgrid_destroy(void *p)
{
    struct sendgrid_ctx *ctx = p;
    if (ctx == NULL) {
        return;
    }
    if (ctx->api_key != NULL) {
        explicit_bzero(ctx->api_key, strlen(ctx->api_key));
    }
    free(ctx->api_key);
    free(ctx->from_email);
    free(ctx->base_url);
    free(ctx->webhook_key);
    free(ctx);
}

/* An optional string option: NULL when absent, null or empty (an unset
 * environment variable in agape.conf gives nil or ""). -1 when present but
 * not a string. */
static int sendgrid_opt_str(const struct agape_host *host, const struct agape_json *conf,
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

static int sendgrid_tolerance(const struct agape_host *host, const struct agape_json *conf,
                              int64_t *out, char *err, size_t errlen)
{
    const struct agape_json *v = host->json_get(conf, "webhook_tolerance_s");
    enum agape_json_type t = host->json_type(v);
    int64_t n = SENDGRID_DEFAULT_TOLERANCE_S;

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

static int sendgrid_init(const struct agape_host *host, const struct agape_json *conf,
                         void **out, char *err, size_t errlen)
{
    struct sendgrid_ctx *ctx = NULL;
    const char *key = NULL, *from = NULL, *base = NULL, *pub = NULL;
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (sendgrid_opt_str(host, conf, "api_key", &key) != 0) {
        snprintf(err, errlen, "api_key must be a string (set SENDGRID_API_KEY)");
        goto out;
    }
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
    if (sendgrid_opt_str(host, conf, "from_email", &from) != 0 ||
        (from != NULL && !sendgrid_addr_ok(from))) {
        snprintf(err, errlen, "from_email must be an e-mail address (DEFAULT_FROM_EMAIL)");
        goto out;
    }
    if (sendgrid_opt_str(host, conf, "base_url", &base) != 0) {
        snprintf(err, errlen, "base_url must be a string (SENDGRID_API_BASE)");
        goto out;
    }
    if (base == NULL) {
        base = SENDGRID_DEFAULT_BASE;
    }
    if ((strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0) ||
        !sendgrid_token_ok(base)) {
        snprintf(err, errlen, "base_url must start with http:// or https:// and contain no "
                              "spaces (SENDGRID_API_BASE)");
        goto out;
    }
    if (sendgrid_opt_str(host, conf, "webhook_public_key", &pub) != 0) {
        snprintf(err, errlen, "webhook_public_key must be a string "
                              "(SENDGRID_WEBHOOK_PUBLIC_KEY)");
        goto out;
    }

    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = sendgrid_tolerance(host, conf, &ctx->tolerance_s, err, errlen);
    if (rc != AGAPE_OK) {
        goto out;
    }
    if (pub != NULL) {
        rc = sendgrid_public_key(host, pub, ctx, err, errlen);
        if (rc != AGAPE_OK) {
            goto out;
        }
    }
    ctx->api_key = sendgrid_dup(key);
    ctx->base_url = sendgrid_dup(base);
    ctx->from_email = from ? sendgrid_dup(from) : NULL;
    if (ctx->api_key == NULL || ctx->base_url == NULL || (from && !ctx->from_email)) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    size_t n = strlen(ctx->base_url);
    size_t scheme = strncmp(ctx->base_url, "https://", 8) == 0 ? 8 : 7;
    while (n > scheme && ctx->base_url[n - 1] == '/') {
        ctx->base_url[--n] = '\0';
    }
    if (n == scheme) {
        rc = AGAPE_EINVAL;
        snprintf(err, errlen, "base_url has no host (SENDGRID_API_BASE)");
        goto out;
    }
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
