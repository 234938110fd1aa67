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
    {"account_sid", AGAPE_OPT_REQUIRED, "TWILIO_ACCOUNT_SID", "Account SID, AC + 32 hex digits"},
    {"auth_token", AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET, "TWILIO_AUTH_TOKEN",
     "Auth Token: the API password and the webhook signing key"},
    {"from", 0, "TWILIO_PHONE_NUMBER",
     "default sender: a Twilio number in E.164, a short code or an alphanumeric sender id"},
    {"messaging_service_sid", 0, NULL,
     "Messaging Service SID (MG…); used when a message has no from of its own"},
    {"base_url", 0, "TWILIO_API_BASE", "API base URL, default https://api.twilio.com"},
    {NULL, 0, NULL, NULL},
};

static char *twilio_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void twilio_destroy(void *p)
{
    struct twilio_ctx *ctx = p;
    if (ctx == NULL) {
        return;
    }
    if (ctx->auth_token != NULL) {
        explicit_bzero(ctx->auth_token, strlen(ctx->auth_token));
    }
    free(ctx->auth_token);
    free(ctx->from);
    free(ctx->messaging_service_sid);
    free(ctx->base_url);
    free(ctx);
}

/* An optional string option: NULL when absent, null or empty. -1 when
 * present but not a string. */
static int twilio_opt_str(const struct agape_host *host, const struct agape_json *conf,
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

static int twilio_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                       char *err, size_t errlen)
{
    struct twilio_ctx *ctx = NULL;
    const char *sid = NULL, *token = NULL, *from = NULL, *mg = NULL, *base = NULL;
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (twilio_opt_str(host, conf, "account_sid", &sid) != 0 || sid == NULL) {
        snprintf(err, errlen, "account_sid is required (set TWILIO_ACCOUNT_SID)");
        goto out;
    }
    if (!twilio_sid_ok(sid, "AC")) {
        snprintf(err, errlen, "account_sid must be AC followed by 32 hex digits "
                              "(check TWILIO_ACCOUNT_SID)");
        goto out;
    }
    if (twilio_opt_str(host, conf, "auth_token", &token) != 0 || token == NULL) {
        snprintf(err, errlen, "auth_token is required (set TWILIO_AUTH_TOKEN)");
        goto out;
    }
    if (!twilio_token_ok(token) || strlen(token) > 256) {
        snprintf(err, errlen, "auth_token must be printable ASCII without spaces "
                              "(check TWILIO_AUTH_TOKEN)");
        goto out;
    }
    if (twilio_opt_str(host, conf, "from", &from) != 0 || (from && !twilio_from_ok(from))) {
        snprintf(err, errlen, "from must be a phone number in E.164, a short code or a "
                              "sender id of at most %d characters (TWILIO_PHONE_NUMBER)",
                 TWILIO_FROM_MAX);
        goto out;
    }
    if (twilio_opt_str(host, conf, "messaging_service_sid", &mg) != 0 ||
        (mg && !twilio_sid_ok(mg, "MG"))) {
        snprintf(err, errlen, "messaging_service_sid must be MG followed by 32 hex digits");
        goto out;
    }
    if (twilio_opt_str(host, conf, "base_url", &base) != 0) {
        snprintf(err, errlen, "base_url must be a string (TWILIO_API_BASE)");
        goto out;
    }
    if (base == NULL) {
        base = TWILIO_DEFAULT_BASE;
    }
    if ((strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0) ||
        !twilio_token_ok(base)) {
        snprintf(err, errlen, "base_url must start with http:// or https:// and contain no "
                              "spaces (TWILIO_API_BASE)");
        goto out;
    }

    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    memcpy(ctx->account_sid, sid, TWILIO_SID_LEN + 1);
    ctx->auth_token = twilio_dup(token);
    ctx->base_url = twilio_dup(base);
    ctx->from = from ? twilio_dup(from) : NULL;
    ctx->messaging_service_sid = mg ? twilio_dup(mg) : NULL;
    if (ctx->auth_token == NULL || ctx->base_url == NULL || (from && !ctx->from) ||
        (mg && !ctx->messaging_service_sid)) {
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
        snprintf(err, errlen, "base_url has no host (TWILIO_API_BASE)");
        goto out;
    }
    if (ctx->from == NULL && ctx->messaging_service_sid == NULL) {
        host->log(NULL, AGAPE_LOG_INFO,
                  "twilio: neither from (TWILIO_PHONE_NUMBER) nor messaging_service_sid is "
                  "configured; every message must carry its own from");
    }
    *out = ctx;
    ctx = NULL;
    rc = AGAPE_OK;
out:
    twilio_destroy(ctx);
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
