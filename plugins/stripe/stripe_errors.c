/* stripe_errors — a Stripe non-2xx answer → one outcome class.
 *
 * The table (first matching row wins; README.md has the same table):
 *
 *   HTTP 429, or 400 with error.code "rate_limit"  → RATE_LIMITED (Retry-After s → ms)
 *   header Stripe-Should-Retry: true (any status)  → UNAVAILABLE (Stripe says: not done, retry)
 *   HTTP 402, or error.type "card_error"           → DECLINED (result status "failed",
 *                                                     decline_code, message, provider_ref)
 *   HTTP 401, 403                                  → AUTH
 *   HTTP 400, 404 (invalid_request_error,          → INVALID (err: Stripe's message, param)
 *     idempotency_error, or no readable body)
 *   HTTP 409 (same Idempotency-Key in flight)      → UNAVAILABLE (retry with the same key)
 *   HTTP 5xx with Stripe-Should-Retry: false       → UNKNOWN (never retry; reconcile by GET)
 *   HTTP 5xx                                       → UNAVAILABLE
 *   anything else (3xx, 424, other 4xx, 1xx)       → UNKNOWN
 *
 * Why the rate limit comes first: Stripe sends its rate limits as 429 and, for
 * some endpoints, as 400 code=rate_limit (stripe-python checks it before the
 * 400 rule); neither was executed. Stripe-Should-Retry: true comes next
 * because it is Stripe telling us explicitly that the request was not
 * processed, whatever the status. A 400/404 whose body we cannot read is
 * still a refusal before processing (stripe-python maps every 400/404 to
 * InvalidRequestError or IdempotencyError), so it is INVALID too.
 *
 * Nothing from the secret key ever reaches err or result: Stripe masks keys in
 * its messages, and stripe_scrub_err() removes any full or partial copy that
 * would still appear. */
#include "stripe.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRIPE_RETRY_AFTER_MAX_S 3600
#define STRIPE_MESSAGE_MAX 500
#define STRIPE_SCRUB_MAX 1024 /* the largest buffer stripe_scrub() works on */

static void stripe_err(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void stripe_err(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
}

/* Remove `secret` from `s` (NUL-terminated, at most cap bytes): every full
 * occurrence becomes "[redacted]", and a prefix of it left at the very end by
 * truncation (8 characters or more) is cut. */
static void stripe_scrub(char *s, size_t cap, const char *secret)
{
    static const char red[] = "[redacted]";
    size_t slen;
    char tmp[STRIPE_SCRUB_MAX];

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
        /* Go on after the marker, so a secret that occurs in it cannot loop. */
        from = pre + sizeof(red) - 1;
        if (from >= strlen(s)) {
            break;
        }
    }
    size_t len = strlen(s);
    for (size_t k = slen - 1; k >= 8; k--) {
        if (k <= len && memcmp(s + len - k, secret, k) == 0) {
            s[len - k] = '\0';
            break;
        }
    }
}

/* snprintf may cut a provider's UTF-8 text inside a character; the core
 * puts err and result strings into JSON, which must be valid UTF-8. Drop an
 * incomplete last sequence. */
static void stripe_utf8_trim(char *s)
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

void stripe_scrub_err(struct agape_call *call)
{
    const struct stripe_ctx *ctx = call->ctx;
    if (ctx != NULL) {
        stripe_scrub(call->err, sizeof(call->err), ctx->secret_key);
        stripe_scrub(call->err, sizeof(call->err), ctx->webhook_secret);
    }
    stripe_utf8_trim(call->err);
}

/* Retry-After in delta-seconds (what Stripe sends) → ms, or -1. An HTTP-date
 * or junk is ignored: the core's backoff applies then. */
static int64_t stripe_retry_after(const char *v)
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
    if (s > STRIPE_RETRY_AFTER_MAX_S) {
        s = STRIPE_RETRY_AFTER_MAX_S;
    }
    return (int64_t)s * 1000;
}

static bool stripe_eq(const char *a, const char *b)
{
    return a != NULL && strcmp(a, b) == 0;
}

/* The decline result: {"status":"failed","decline_code","message","provider_ref"?}. */
static int stripe_decline_result(struct agape_call *call, const struct agape_json *body)
{
    const struct agape_host *h = call->host;
    const struct stripe_ctx *ctx = call->ctx;
    const char *decline = h->json_str(body, "error.decline_code");
    const char *code = h->json_str(body, "error.code");
    const char *message = h->json_str(body, "error.message");
    const char *pi = h->json_str(body, "error.payment_intent.id");
    char msg[STRIPE_MESSAGE_MAX + 1];

    int rc = h->json_set_str(call->result, "status", "failed");
    /* Some declines (expired_card, incorrect_cvc) carry only a code. */
    if (rc == AGAPE_OK && (decline != NULL || code != NULL)) {
        rc = h->json_set_str(call->result, "decline_code", decline ? decline : code);
    }
    if (rc == AGAPE_OK && message != NULL) {
        /* Bounded and scrubbed like err: the result is shown to API clients. */
        snprintf(msg, sizeof(msg), "%s", message);
        stripe_scrub(msg, sizeof(msg), ctx ? ctx->secret_key : NULL);
        stripe_utf8_trim(msg);
        rc = h->json_set_str(call->result, "message", msg);
    }
    if (rc == AGAPE_OK && pi != NULL) {
        rc = h->json_set_str(call->result, "provider_ref", pi);
    }
    return rc;
}

enum agape_step stripe_classify_error(struct agape_call *call, bool refund)
{
    const struct agape_host *h = call->host;
    int status = call->resp->status;
    struct agape_json *body = h->json_parse(call->resp->body, call->resp->body_len, NULL, 0);
    const char *type = h->json_str(body, "error.type");
    const char *code = h->json_str(body, "error.code");
    const char *message = h->json_str(body, "error.message");
    const char *param = h->json_str(body, "error.param");
    const char *should = h->resp_header(call, "Stripe-Should-Retry");
    const char *what = refund ? "refund" : "payment";

    call->retry_after_ms = -1;
    if (message == NULL) {
        message = "(no message)";
    }

    if (status == 429 || (status == 400 && stripe_eq(code, "rate_limit"))) {
        call->outcome = AGAPE_OUTCOME_RATE_LIMITED;
        call->retry_after_ms = stripe_retry_after(h->resp_header(call, "Retry-After"));
        stripe_err(call, "Stripe rate limit (HTTP %d): %s", status, message);
    } else if (stripe_eq(should, "true")) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        stripe_err(call, "Stripe answered HTTP %d and asks for a retry "
                         "(Stripe-Should-Retry: true): %s",
                   status, message);
    } else if (status == 402 || stripe_eq(type, "card_error")) {
        call->outcome = AGAPE_OUTCOME_DECLINED;
        stripe_err(call, "declined by Stripe (%s): %s",
                   h->json_str(body, "error.decline_code")
                       ? h->json_str(body, "error.decline_code")
                       : (code ? code : "card_error"),
                   message);
        if (stripe_decline_result(call, body) != AGAPE_OK) {
            h->json_free(body);
            stripe_err(call, "out of memory");
            return AGAPE_STEP_FAIL;
        }
    } else if (status == 401 || status == 403) {
        call->outcome = AGAPE_OUTCOME_AUTH;
        stripe_err(call, "Stripe refused the %s key (HTTP %d): %s",
                   status == 401 ? "API" : "restricted API", status, message);
    } else if (status == 400 || status == 404) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        if (param != NULL && param[0] != '\0') {
            stripe_err(call, "%s%s (param: %s)",
                       stripe_eq(type, "idempotency_error") ? "idempotency_error: " : "",
                       message, param);
        } else {
            stripe_err(call, "%s%s (HTTP %d)",
                       stripe_eq(type, "idempotency_error") ? "idempotency_error: " : "",
                       message, status);
        }
    } else if (status == 409) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        stripe_err(call, "Stripe answered HTTP 409 (a request with the same Idempotency-Key "
                         "is in flight); retry with the same key: %s",
                   message);
    } else if (status >= 500 && status <= 599 && stripe_eq(should, "false")) {
        call->outcome = AGAPE_OUTCOME_UNKNOWN;
        stripe_err(call, "Stripe answered HTTP %d and says not to retry "
                         "(Stripe-Should-Retry: false); reconcile with a GET: %s",
                   status, message);
    } else if (status >= 500 && status <= 599) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        stripe_err(call, "Stripe answered HTTP %d: %s", status, message);
    } else {
        call->outcome = AGAPE_OUTCOME_UNKNOWN;
        stripe_err(call, "unexpected HTTP %d from Stripe for a %s: %s", status, what,
                   message);
    }
    h->json_free(body);
    stripe_scrub_err(call);
    return AGAPE_STEP_DONE;
}
