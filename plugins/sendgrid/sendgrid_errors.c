/* sendgrid_errors — a non-2xx answer to Mail Send → one outcome class.
 *
 * The table (first matching row wins; README.md has the same table):
 *
 *   HTTP 429                 → RATE_LIMITED (retry_after_ms from Retry-After, else from
 *                              X-RateLimit-Reset; both capped at one hour)
 *   HTTP 401, 403            → AUTH (bad key, missing scope, unverified sender)
 *   HTTP 400, 413            → INVALID (err: errors[0].message, naming errors[0].field)
 *   other 4xx (404, 405, …)  → INVALID (SendGrid refused the request; nothing was sent)
 *   HTTP 5xx                 → UNAVAILABLE
 *   anything else (1xx, 3xx) → UNKNOWN
 *
 * Why 403 is AUTH and not INVALID: SendGrid answers 403 for a key without the
 * mail.send scope and for a sender identity that is not verified, both
 * account configuration; another provider (SMTP) may well deliver, so the
 * core may fail over. Why 5xx is UNAVAILABLE although SendGrid has no
 * idempotency: PROVIDERS.md §4.2 and §9 say to retry on 5xx and accept the
 * risk of a duplicate e-mail; a duplicated welcome mail costs less than a
 * lost password reset. */
#include "sendgrid.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENDGRID_RETRY_AFTER_MAX_S 3600
#define SENDGRID_MESSAGE_MAX 160 /* of SendGrid's own message, in err */

/* Remove every full copy of `secret` from `s` (cap bytes, NUL-terminated). */
static void sendgrid_scrub(char *s, size_t cap, const char *secret)
{
    static const char red[] = "[redacted]";
    size_t slen;
    char tmp[AGAPE_ERR_SIZE];

    if (secret == NULL || (slen = strlen(secret)) < 4 || cap > sizeof(tmp)) {
        return;
    }
    size_t from = 0;
    char *hit;
    while ((hit = strstr(s + from, secret)) != NULL) {
        size_t pre = (size_t)(hit - s);
        int n = snprintf(tmp, cap, "%.*s%s%s", (int)pre, s, red, hit + slen);
        if (n < 0) {
            s[0] = '\0';
            return;
        }
        memcpy(s, tmp, strlen(tmp) + 1);
        from = pre + sizeof(red) - 1;
        if (from >= strlen(s)) {
            break;
        }
    }
}

/* snprintf may cut UTF-8 text inside a character; err goes into JSON. */
static void sendgrid_utf8_trim(char *s)
{
    size_t len = strlen(s);
    size_t i = len;
    while (i > 0 && len - i < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
        i--;
    }
    if (i == 0) {
        return;
    }
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    if (lead >= 0x80 && len - (i - 1) < want) {
        s[i - 1] = '\0';
    }
}

void sendgrid_err(struct agape_call *call, const char *fmt, ...)
{
    const struct sendgrid_ctx *ctx = call->ctx;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    if (ctx != NULL) {
        sendgrid_scrub(call->err, sizeof(call->err), ctx->api_key);
    }
    sendgrid_utf8_trim(call->err);
}

bool sendgrid_addr_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    const char *at = s ? strchr(s, '@') : NULL;
    if (n < 3 || n > 320 || at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@')) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c == 0x7f || strchr("\"<>,;()[]\\", c) != NULL) {
            return false;
        }
    }
    return true;
}

/* The longest prefix of s of at most max bytes that ends on a character
 * boundary, so a cut message stays valid UTF-8. */
static int sendgrid_utf8_cut(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) {
        return (int)n;
    }
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80) {
        max--;
    }
    return (int)max;
}

/* Retry-After in delta-seconds → ms, or -1 (an HTTP-date or junk). */
static int64_t sendgrid_seconds(const char *v)
{
    if (v == NULL) {
        return -1;
    }
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    if (*v < '0' || *v > '9') {
        return -1;
    }
    char *end = NULL;
    long long s = strtoll(v, &end, 10);
    while (*end == ' ' || *end == '\t') {
        end++;
    }
    if (*end != '\0' || s < 0) {
        return -1;
    }
    return s;
}

/* How long SendGrid asks us to wait: Retry-After, else X-RateLimit-Reset
 * (the unix time the window resets) minus now. Capped; -1 when neither. */
static int64_t sendgrid_retry_after(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    int64_t s = sendgrid_seconds(h->resp_header(call, "Retry-After"));
    int64_t ms = -1;
    if (s >= 0) {
        return s > SENDGRID_RETRY_AFTER_MAX_S ? SENDGRID_RETRY_AFTER_MAX_S * 1000 : s * 1000;
    }
    int64_t reset = sendgrid_seconds(h->resp_header(call, "X-RateLimit-Reset"));
    if (reset >= 0 && reset < (int64_t)1 << 40) {
        ms = reset * 1000 - h->now_ms();
        if (ms < 0) {
            ms = 0;
        }
        if (ms > SENDGRID_RETRY_AFTER_MAX_S * 1000) {
            ms = SENDGRID_RETRY_AFTER_MAX_S * 1000;
        }
    }
    return ms;
}

enum agape_step sendgrid_classify_error(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    int status = call->resp->status;
    struct agape_json *body = h->json_parse(call->resp->body, call->resp->body_len, NULL, 0);
    const char *message = h->json_str(body, "errors.0.message");
    const char *field = h->json_str(body, "errors.0.field");
    char what[SENDGRID_MESSAGE_MAX + 64];

    call->retry_after_ms = -1;
    if (message == NULL) {
        message = "(no message)";
    }
    /* "message (field: personalizations.0.to)", bounded. */
    if (field != NULL && field[0] != '\0') {
        snprintf(what, sizeof(what), "%.*s (field: %.*s)",
                 sendgrid_utf8_cut(message, SENDGRID_MESSAGE_MAX), message,
                 sendgrid_utf8_cut(field, 48), field);
    } else {
        snprintf(what, sizeof(what), "%.*s", sendgrid_utf8_cut(message, SENDGRID_MESSAGE_MAX),
                 message);
    }

    if (status == 429) {
        call->outcome = AGAPE_OUTCOME_RATE_LIMITED;
        call->retry_after_ms = sendgrid_retry_after(call);
        sendgrid_err(call, "SendGrid rate limit (HTTP 429): %s", what);
    } else if (status == 401 || status == 403) {
        call->outcome = AGAPE_OUTCOME_AUTH;
        sendgrid_err(call, "SendGrid refused the API key or sender (HTTP %d): %s", status,
                     what);
    } else if (status == 400 || status == 413) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        sendgrid_err(call, "SendGrid refused the message (HTTP %d): %s", status, what);
    } else if (status >= 400 && status <= 499) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        sendgrid_err(call, "SendGrid answered HTTP %d (check base_url): %s", status, what);
    } else if (status >= 500 && status <= 599) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        sendgrid_err(call, "SendGrid answered HTTP %d: %s", status, what);
    } else {
        call->outcome = AGAPE_OUTCOME_UNKNOWN;
        sendgrid_err(call, "unexpected HTTP %d from SendGrid mail send", status);
    }
    h->json_free(body);
    return AGAPE_STEP_DONE;
}
