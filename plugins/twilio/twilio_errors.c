/* twilio_errors — a Twilio non-2xx answer → one outcome class.
 *
 * The table (first matching row wins; README.md has the same table), from
 * PROVIDERS.md §3.5 and the error body {"code", "message", "more_info",
 * "status"} of §10.5:
 *
 *   HTTP 429, or code 20429                  → RATE_LIMITED (Retry-After s → ms)
 *   HTTP 401, 403, or code 20003             → AUTH
 *   code 21211 (invalid To), 21408 (region   → DECLINED (result {"status": "failed",
 *     not enabled), 21610 (unsubscribed,        "error_code", "message"})
 *     STOP), 21614 (not SMS-capable)
 *   HTTP 400, 404, other 4xx                 → INVALID (err: Twilio's message and code)
 *   HTTP 5xx                                 → UNAVAILABLE
 *   anything else (1xx, 3xx)                 → UNKNOWN
 *
 * The four DECLINED codes are about the recipient, not about our request or
 * account: another provider would get the same answer (or, for STOP, must not
 * send at all), so the core neither retries nor fails over. 404 is INVALID:
 * with a well-formed path it means the account SID or base URL is wrong. */
#include "twilio.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TWILIO_RETRY_AFTER_MAX_S 3600
#define TWILIO_MESSAGE_MAX 160

static const struct {
    int64_t code;
    const char *why;
} twilio_declines[] = {
    {21211, "invalid To number"},
    {21408, "region not enabled for this account"},
    {21610, "recipient unsubscribed (STOP)"},
    {21614, "To number cannot receive SMS"},
};

static void twilio_scrub(char *s, size_t cap, const char *secret)
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

int twilio_utf8_cut(const char *s, size_t max)
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

void twilio_err(struct agape_call *call, const char *fmt, ...)
{
    const struct twilio_ctx *ctx = call->ctx;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    if (ctx != NULL) {
        twilio_scrub(call->err, sizeof(call->err), ctx->auth_token);
    }
    /* Drop an incomplete UTF-8 sequence left at the end by truncation. */
    size_t len = strlen(call->err);
    size_t i = len;
    while (i > 0 && len - i < 4 && ((unsigned char)call->err[i - 1] & 0xc0) == 0x80) {
        i--;
    }
    if (i > 0) {
        unsigned char lead = (unsigned char)call->err[i - 1];
        size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
        if (lead >= 0x80 && len - (i - 1) < want) {
            call->err[i - 1] = '\0';
        }
    }
}

/* Retry-After in delta-seconds → ms (capped), or -1. */
static int64_t twilio_retry_after(const char *v)
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
    if (s > TWILIO_RETRY_AFTER_MAX_S) {
        s = TWILIO_RETRY_AFTER_MAX_S;
    }
    return (int64_t)s * 1000;
}

static const char *twilio_decline_reason(int64_t code)
{
    for (size_t i = 0; i < sizeof(twilio_declines) / sizeof(twilio_declines[0]); i++) {
        if (twilio_declines[i].code == code) {
            return twilio_declines[i].why;
        }
    }
    return NULL;
}

enum agape_step twilio_classify_error(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    int status = call->resp->status;
    struct agape_json *body = h->json_parse(call->resp->body, call->resp->body_len, NULL, 0);
    int64_t code = h->json_int(body, "code", 0);
    const char *message = h->json_str(body, "message");
    const char *decline = twilio_decline_reason(code);

    call->retry_after_ms = -1;
    if (message == NULL) {
        message = "(no message)";
    }
    int mlen = twilio_utf8_cut(message, TWILIO_MESSAGE_MAX);

    if (status == 429 || code == 20429) {
        call->outcome = AGAPE_OUTCOME_RATE_LIMITED;
        call->retry_after_ms = twilio_retry_after(h->resp_header(call, "Retry-After"));
        twilio_err(call, "Twilio rate limit (HTTP %d, code %lld): %.*s", status,
                   (long long)code, mlen, message);
    } else if (status == 401 || status == 403 || code == 20003) {
        call->outcome = AGAPE_OUTCOME_AUTH;
        twilio_err(call, "Twilio refused the account credentials (HTTP %d, code %lld): %.*s",
                   status, (long long)code, mlen, message);
    } else if (decline != NULL && status >= 400 && status <= 499) {
        call->outcome = AGAPE_OUTCOME_DECLINED;
        twilio_err(call, "declined by Twilio (code %lld, %s): %.*s", (long long)code, decline,
                   mlen, message);
        char msg[TWILIO_MESSAGE_MAX + 1];
        snprintf(msg, sizeof(msg), "%.*s", mlen, message);
        int rc = h->json_set_str(call->result, "status", "failed");
        if (rc == AGAPE_OK) {
            rc = h->json_set_int(call->result, "error_code", code);
        }
        if (rc == AGAPE_OK) {
            rc = h->json_set_str(call->result, "message", msg);
        }
        if (rc != AGAPE_OK) {
            h->json_free(body);
            twilio_err(call, "out of memory");
            return AGAPE_STEP_FAIL;
        }
    } else if (status >= 400 && status <= 499) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        twilio_err(call, "Twilio refused the message (HTTP %d, code %lld): %.*s", status,
                   (long long)code, mlen, message);
    } else if (status >= 500 && status <= 599) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        twilio_err(call, "Twilio answered HTTP %d: %.*s", status, mlen, message);
    } else {
        call->outcome = AGAPE_OUTCOME_UNKNOWN;
        twilio_err(call, "unexpected HTTP %d from Twilio", status);
    }
    h->json_free(body);
    return AGAPE_STEP_DONE;
}
