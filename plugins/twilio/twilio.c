/* twilio — the descriptor, the options and the context.
 *
 * Messaging (send_sms through Programmable Messaging) and webhooks (message
 * status callbacks signed with X-Twilio-Signature). The request is built in
 * twilio_sms.c, the answer → outcome table is in twilio_errors.c, the
 * signature scheme in twilio_webhook.c, form decoding in twilio_form.c.
 * README.md documents them. */
#include "twilio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TWILIO_FROM_MAX 64

static const struct agape_option twilio_options[] = {
    {.name = "account_sid",
     .flags = AGAPE_OPT_REQUIRED,
     .env = "TWILIO_ACCOUNT_SID",
     .description = "Account SID, AC + 32 hex digits"},
    {.name = "auth_token",
     .flags = AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET,
     .env = "TWILIO_AUTH_TOKEN",
     .description = "Auth Token: the API password and the webhook signing key"},
    {.name = "from",
     .env = "TWILIO_PHONE_NUMBER",
     .description = "default sender: a Twilio number in E.164, a short code or an alphanumeric sender id"},
    {.name = "messaging_service_sid",
     .description = "Messaging Service SID (MG…); used when a message has no from of its own"},
    {.name = "base_url",
     .env = "TWILIO_API_BASE",
     .description = "API base URL",
     .type = AGAPE_OPT_URL,
     .dflt = TWILIO_DEFAULT_BASE},
    {0},};

static void twilio_destroy(void *p)
{
    free(p);
}

/* Two letters, then 32 hex digits: ^AC[0-9a-fA-F]{32}$ and the like
 * (specs/twilio.json). */
static bool twilio_sid_ok(const char *s, const char *prefix)
{
    if (s == NULL || strlen(s) != TWILIO_SID_LEN || strncmp(s, prefix, 2) != 0) {
        return false;
    }
    for (size_t i = 2; i < TWILIO_SID_LEN; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

/* Printable ASCII without spaces (the token goes in a Basic header). */
static bool twilio_token_ok(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* A sender: E.164, a short code or an alphanumeric id (letters, digits,
 * spaces); Twilio checks the rest. No control characters, bounded. */
static bool twilio_from_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TWILIO_FROM_MAX) {
        return false;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* The core has read the options by their declared types (plugin.h): strings
 * are non-empty or absent, base_url is a checked URL without a trailing
 * slash. The SID patterns and the sender's shape are Twilio's. */
static int twilio_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                       char *err, size_t errlen)
{
    struct twilio_ctx *ctx = NULL;
    const char *sid = host->json_str(conf, "account_sid");
    const char *token = host->json_str(conf, "auth_token");
    const char *from = host->json_str(conf, "from");
    const char *mg = host->json_str(conf, "messaging_service_sid");
    const char *base = host->json_str(conf, "base_url");
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (sid == NULL) {
        snprintf(err, errlen, "account_sid is required (set TWILIO_ACCOUNT_SID)");
        goto out;
    }
    if (!twilio_sid_ok(sid, "AC")) {
        snprintf(err, errlen, "account_sid must be AC followed by 32 hex digits "
                              "(check TWILIO_ACCOUNT_SID)");
        goto out;
    }
    if (token == NULL) {
        snprintf(err, errlen, "auth_token is required (set TWILIO_AUTH_TOKEN)");
        goto out;
    }
    if (!twilio_token_ok(token) || strlen(token) > 256) {
        snprintf(err, errlen, "auth_token must be printable ASCII without spaces "
                              "(check TWILIO_AUTH_TOKEN)");
        goto out;
    }
    if (from != NULL && !twilio_from_ok(from)) {
        snprintf(err, errlen, "from must be a phone number in E.164, a short code or a "
                              "sender id of at most %d characters (TWILIO_PHONE_NUMBER)",
                 TWILIO_FROM_MAX);
        goto out;
    }
    if (mg != NULL && !twilio_sid_ok(mg, "MG")) {
        snprintf(err, errlen, "messaging_service_sid must be MG followed by 32 hex digits");
        goto out;
    }

    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ctx->account_sid = sid;
    ctx->auth_token = token;
    ctx->base_url = base ? base : TWILIO_DEFAULT_BASE;
    ctx->from = from;
    ctx->messaging_service_sid = mg;
    if (ctx->from == NULL && ctx->messaging_service_sid == NULL) {
        host->log(NULL, AGAPE_LOG_INFO,
                  "twilio: neither from (TWILIO_PHONE_NUMBER) nor messaging_service_sid is "
                  "configured; every message must carry its own from");
    }
    *out = ctx;
    rc = AGAPE_OK;
out:
    return rc;
}

static const struct agape_messaging_ops twilio_messaging_ops = {
    .size = sizeof(struct agape_messaging_ops),
    .send_email = NULL, /* SMS only */
    .send_sms = twilio_send_sms,
};

static const struct agape_webhook_ops twilio_webhook_ops = {
    .size = sizeof(struct agape_webhook_ops),
    .verify = twilio_webhook_verify,
    .normalize = twilio_webhook_normalize,
};

static const struct agape_plugin twilio_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "twilio",
    .version = "1.0.0",
    .kinds = AGAPE_KIND_MESSAGING | AGAPE_KIND_WEBHOOK,
    .options = twilio_options,
    .init = twilio_init,
    .destroy = twilio_destroy,
    .messaging = &twilio_messaging_ops,
    .webhook = &twilio_webhook_ops,
};

AGAPE_PLUGIN_DEFINE(twilio_plugin)
