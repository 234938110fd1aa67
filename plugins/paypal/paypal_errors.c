/* paypal_errors — a PayPal non-2xx answer → one outcome class.
 *
 * API calls (orders, captures, refunds); the status decides first, then
 * details[0].issue (PROVIDERS.md §2.4: "branch on HTTP status first"). README.md
 * has the same table:
 *
 *   400 (INVALID_REQUEST)                          → INVALID (err: issue, description, field)
 *   401 (after the one token refresh of the op)    → AUTH
 *   403 (NOT_AUTHORIZED, PERMISSION_DENIED)        → AUTH
 *   404 (RESOURCE_NOT_FOUND, INVALID_RESOURCE_ID)  → INVALID
 *   409 (a request with the same id in flight)     → UNAVAILABLE (retry with the same id)
 *   422 INSTRUMENT_DECLINED, TRANSACTION_REFUSED,  → DECLINED (result status "failed",
 *       PAYER_CANNOT_PAY, PAYER_ACTION_REQUIRED       decline_code = issue, message,
 *                                                     approval_url from links?, provider_ref?)
 *   422 ORDER_NOT_APPROVED                         → INVALID ("the buyer has not approved the
 *                                                     order yet")
 *   422 anything else                              → INVALID
 *   429 (RATE_LIMIT_REACHED)                       → RATE_LIMITED (Retry-After → ms)
 *   5xx                                            → UNAVAILABLE
 *   other 4xx (405, 415, …)                        → INVALID
 *   anything else (1xx, 3xx)                       → UNKNOWN
 *
 * 422 ORDER_ALREADY_CAPTURED on a capture never gets here: the capture
 * follows it with a GET of the order (paypal_payment.c).
 *
 * Why 5xx is UNAVAILABLE and not UNKNOWN: PayPal documents every 5xx as
 * "retry with the same PayPal-Request-Id" (§2.4, §9), and the id makes the
 * retry safe. Creating an order moves no money (the buyer approves and the
 * gateway captures later), so failing a create over to another provider
 * cannot charge twice; capture and refund only ever go to the provider that
 * holds the order.
 *
 * The token call is classified by paypal_classify_token_error(): nothing was
 * charged, so 429 is RATE_LIMITED, 5xx UNAVAILABLE, and every other refusal
 * (invalid_client and the like) AUTH.
 *
 * Neither the client secret nor a token ever reaches err or result:
 * paypal_scrub() removes any full copy, and a truncated tail of one. */
#include "paypal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAYPAL_RETRY_AFTER_MAX_S 3600
#define PAYPAL_MESSAGE_MAX 300
#define PAYPAL_SCRUB_MAX 1024

static void paypal_err(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void paypal_err(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
}

/* Every full occurrence of `secret` in `s` becomes "[redacted]"; a prefix of
 * it of 8 characters or more left at the very end (by truncation) is cut. */
static void paypal_scrub_one(char *s, size_t cap, const char *secret)
{
    static const char red[] = "[redacted]";
    char tmp[PAYPAL_SCRUB_MAX];
    size_t slen;

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
        from = pre + sizeof(red) - 1; /* past the marker: no loop on a secret inside it */
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

void paypal_utf8_trim(char *s)
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

void paypal_scrub(struct agape_call *call, char *s, size_t cap)
{
    const struct paypal_ctx *ctx = call->ctx;
    if (ctx != NULL) {
        paypal_scrub_one(s, cap, ctx->client_secret);
    }
    paypal_scrub_one(s, cap, call->host->cache_get(call, PAYPAL_TOKEN_KEY));
    paypal_utf8_trim(s);
}

void paypal_scrub_err(struct agape_call *call)
{
    paypal_scrub(call, call->err, sizeof(call->err));
}

int64_t paypal_retry_after(const char *v)
{
    if (v == NULL) {
        return -1;
    }
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    if (*v < '0' || *v > '9') {
        return -1; /* an HTTP-date or junk: the core's backoff applies */
    }
    char *end = NULL;
    long long s = strtoll(v, &end, 10);
    while (*end == ' ' || *end == '\t') {
        end++;
    }
    if (*end != '\0' || s < 0) {
        return -1;
    }
    if (s > PAYPAL_RETRY_AFTER_MAX_S) {
        s = PAYPAL_RETRY_AFTER_MAX_S;
    }
    return (int64_t)s * 1000;
}

const char *paypal_error_issue(const struct agape_host *h, const struct agape_json *body)
{
    const char *issue = h->json_str(body, "details.0.issue");
    /* Older APIs put the issue in name ({"name":"INVALID_RESOURCE_ID",...}). */
    return issue != NULL ? issue : h->json_str(body, "name");
}

static bool paypal_eq(const char *a, const char *b)
{
    return a != NULL && strcmp(a, b) == 0;
}

/* The parts of an error body every message uses. */
struct paypal_fault {
    const char *issue;
    const char *text;
    const char *field;
    const char *debug_id;
};

static void paypal_fault_read(struct agape_call *call, const struct agape_json *body,
                              struct paypal_fault *f)
{
    const struct agape_host *h = call->host;
    f->issue = paypal_error_issue(h, body);
    f->text = h->json_str(body, "details.0.description");
    if (f->text == NULL) {
        f->text = h->json_str(body, "message");
    }
    /* OAuth-style bodies: {"error":"invalid_token","error_description":"…"}. */
    if (f->issue == NULL) {
        f->issue = h->json_str(body, "error");
    }
    if (f->text == NULL) {
        f->text = h->json_str(body, "error_description");
    }
    if (f->issue == NULL) {
        f->issue = "(no issue)";
    }
    if (f->text == NULL) {
        f->text = "(no message)";
    }
    f->field = h->json_str(body, "details.0.field");
    f->debug_id = h->json_str(body, "debug_id");
    if (f->debug_id == NULL) {
        f->debug_id = h->resp_header(call, "Paypal-Debug-Id");
    }
}

/* "<what> (HTTP n ISSUE): text (field: f) [debug_id d]" into err. */
static void paypal_fault_err(struct agape_call *call, const char *what,
                             const struct paypal_fault *f)
{
    char field[96] = "";
    char debug[64] = "";
    if (f->field != NULL && f->field[0] != '\0') {
        snprintf(field, sizeof(field), " (field: %.64s)", f->field);
    }
    if (f->debug_id != NULL && f->debug_id[0] != '\0') {
        snprintf(debug, sizeof(debug), " [debug_id %.40s]", f->debug_id);
    }
    paypal_err(call, "%s (HTTP %d %.64s): %.160s%s%s", what, call->resp->status, f->issue,
               f->text, field, debug);
}

/* href of the first links[] element whose rel is approve or payer-action. */
static const char *paypal_approval_link(const struct agape_host *h, const struct agape_json *obj)
{
    const struct agape_json *links = h->json_get(obj, "links");
    size_t n = h->json_type(links) == AGAPE_JSON_ARRAY ? h->json_size(links) : 0;
    for (size_t i = 0; i < n; i++) {
        const struct agape_json *l = h->json_at(links, i);
        const char *rel = h->json_str(l, "rel");
        const char *href = h->json_str(l, "href");
        if (href != NULL && (paypal_eq(rel, "approve") || paypal_eq(rel, "payer-action"))) {
            return href;
        }
    }
    return NULL;
}

static bool paypal_is_decline(const char *issue)
{
    static const char *const declines[] = {"INSTRUMENT_DECLINED", "TRANSACTION_REFUSED",
                                           "PAYER_CANNOT_PAY", "PAYER_ACTION_REQUIRED"};
    for (size_t i = 0; i < sizeof(declines) / sizeof(declines[0]); i++) {
        if (paypal_eq(issue, declines[i])) {
            return true;
        }
    }
    return false;
}

/* {"status":"failed","decline_code","message","approval_url"?,"provider_ref"?}. */
static int paypal_decline_result(struct agape_call *call, const struct agape_json *body,
                                 const struct paypal_fault *f, enum paypal_what what)
{
    const struct agape_host *h = call->host;
    char msg[PAYPAL_MESSAGE_MAX + 1];

    int rc = h->json_set_str(call->result, "status", "failed");
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "decline_code", f->issue);
    }
    if (rc == AGAPE_OK) {
        /* Bounded and scrubbed like err: the result is shown to API clients. */
        snprintf(msg, sizeof(msg), "%s", f->text);
        paypal_scrub(call, msg, sizeof(msg));
        rc = h->json_set_str(call->result, "message", msg);
    }
    /* INSTRUMENT_DECLINED: the buyer picks another funding source at the
     * approval link again (§2.4); keep it when PayPal sends one. */
    const char *approve = paypal_approval_link(h, body);
    if (rc == AGAPE_OK && approve != NULL && paypal_eq(f->issue, "INSTRUMENT_DECLINED")) {
        rc = h->json_set_str(call->result, "approval_url", approve);
    }
    const char *ref = h->json_str(call->input, "provider_ref");
    if (rc == AGAPE_OK && ref != NULL && what != PAYPAL_WHAT_ORDER && what != PAYPAL_WHAT_REFUND) {
        rc = h->json_set_str(call->result, "provider_ref", ref);
    }
    return rc;
}

static const char *paypal_what_str(enum paypal_what what)
{
    switch (what) {
    case PAYPAL_WHAT_ORDER:
        return "create order";
    case PAYPAL_WHAT_GET:
        return "get order";
    case PAYPAL_WHAT_CAPTURE:
        return "capture order";
    case PAYPAL_WHAT_REFUND:
        return "refund capture";
    }
    return "request";
}

enum agape_step paypal_classify_error(struct agape_call *call, enum paypal_what what)
{
    const struct agape_host *h = call->host;
    int status = call->resp->status;
    struct agape_json *body = h->json_parse(call->resp->body, call->resp->body_len, NULL, 0);
    struct paypal_fault f;
    enum agape_step st = AGAPE_STEP_DONE;
    char what_s[160];

    paypal_fault_read(call, body, &f);
    call->retry_after_ms = -1;

    if (status == 400) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        snprintf(what_s, sizeof(what_s), "PayPal refused the %s", paypal_what_str(what));
        paypal_fault_err(call, what_s, &f);
    } else if (status == 401 || status == 403) {
        call->outcome = AGAPE_OUTCOME_AUTH;
        snprintf(what_s, sizeof(what_s), "PayPal refused the %s for our credentials%s",
                 paypal_what_str(what), status == 401 ? " (after a token refresh)" : "");
        paypal_fault_err(call, what_s, &f);
    } else if (status == 404) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        snprintf(what_s, sizeof(what_s), "PayPal does not know the resource of the %s",
                 paypal_what_str(what));
        paypal_fault_err(call, what_s, &f);
    } else if (status == 409) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        snprintf(what_s, sizeof(what_s),
                 "PayPal is still processing a request with the same PayPal-Request-Id "
                 "(%s); retry with the same id",
                 paypal_what_str(what));
        paypal_fault_err(call, what_s, &f);
    } else if (status == 422 && paypal_is_decline(f.issue)) {
        call->outcome = AGAPE_OUTCOME_DECLINED;
        snprintf(what_s, sizeof(what_s), "declined by PayPal (%s)", paypal_what_str(what));
        paypal_fault_err(call, what_s, &f);
        if (paypal_decline_result(call, body, &f, what) != AGAPE_OK) {
            snprintf(call->err, sizeof(call->err), "out of memory");
            st = AGAPE_STEP_FAIL;
        }
    } else if (status == 422 && paypal_eq(f.issue, "ORDER_NOT_APPROVED")) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        paypal_fault_err(call, "the buyer has not approved the order yet", &f);
    } else if (status == 422) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        snprintf(what_s, sizeof(what_s), "PayPal could not process the %s",
                 paypal_what_str(what));
        paypal_fault_err(call, what_s, &f);
    } else if (status == 429) {
        call->outcome = AGAPE_OUTCOME_RATE_LIMITED;
        call->retry_after_ms = paypal_retry_after(h->resp_header(call, "Retry-After"));
        paypal_fault_err(call, "PayPal rate limit", &f);
    } else if (status >= 500 && status <= 599) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        snprintf(what_s, sizeof(what_s), "PayPal failed the %s; retry with the same "
                 "PayPal-Request-Id", paypal_what_str(what));
        paypal_fault_err(call, what_s, &f);
    } else if (status >= 400 && status <= 499) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        snprintf(what_s, sizeof(what_s), "PayPal refused the %s", paypal_what_str(what));
        paypal_fault_err(call, what_s, &f);
    } else {
        call->outcome = AGAPE_OUTCOME_UNKNOWN;
        snprintf(what_s, sizeof(what_s), "unexpected answer from PayPal to the %s",
                 paypal_what_str(what));
        paypal_fault_err(call, what_s, &f);
    }
    h->json_free(body);
    paypal_scrub_err(call);
    return st;
}

enum agape_step paypal_classify_token_error(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    int status = call->resp->status;
    struct agape_json *body = h->json_parse(call->resp->body, call->resp->body_len, NULL, 0);
    struct paypal_fault f;

    paypal_fault_read(call, body, &f);
    call->retry_after_ms = -1;
    if (status == 429) {
        call->outcome = AGAPE_OUTCOME_RATE_LIMITED;
        call->retry_after_ms = paypal_retry_after(h->resp_header(call, "Retry-After"));
        paypal_fault_err(call, "PayPal rate limit on the token call", &f);
    } else if (status >= 500 && status <= 599) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        paypal_fault_err(call, "PayPal failed the token call", &f);
    } else if (status >= 400 && status <= 499) {
        call->outcome = AGAPE_OUTCOME_AUTH;
        paypal_fault_err(call, "PayPal refused the client credentials (check client_id, "
                               "client_secret and mode)", &f);
    } else {
        /* 1xx, 3xx, a 2xx other than 200: no token, nothing charged. */
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        paypal_fault_err(call, "unexpected answer from PayPal to the token call", &f);
    }
    h->json_free(body);
    paypal_scrub_err(call);
    return AGAPE_STEP_DONE;
}
