/* paypal_payment — charge, get, capture and refund on Orders v2, with the
 * OAuth2 token as a step of the same call.
 *
 * Every operation runs through paypal_run(), which keeps where the call is in
 * call->state:
 *
 *   phase  "token"        the token request is in flight (no usable token was cached)
 *          "retry_token"  the same, after the API refused a cached token with 401
 *          "call"         the API request is in flight
 *   cached     the API request in flight carries a token that came from the cache
 *   refreshed  the one refresh this call allows has been used
 *   req    "main" | "follow" (capture only: the GET after ORDER_ALREADY_CAPTURED)
 *
 * Step 0 validates the input by building the request body (so validation and
 * building cannot disagree) and answers FAIL before anything is sent when
 * the input is wrong. Then: a cached token → the API request; none → the
 * token request, and on its 200 the token is cached (expires_in − 300 s, at
 * least 60 s) and the API request goes out in the same call. A 401 to a
 * request that carried a cached token drops the entry, fetches one new token
 * and repeats the request once; any other 401 is AUTH. The token itself is
 * never copied into call->state. */
#include "paypal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* token, call, retry_token, call, follow-up: five requests at most. */
#define PAYPAL_MAX_STEPS 8
/* amount.value supports 15 digits before the decimal point (specs/paypal.json). */
#define PAYPAL_INT_DIGITS_MAX 15
#define PAYPAL_CAPTURE_ID_MAX 64
#define PAYPAL_URL_MAX 2048

/* struct paypal_op (an operation: check, build, answer) is in paypal.h:
 * paypal_webhook.c runs the verify API through paypal_run() too. */

static enum agape_step paypal_fail(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum agape_step paypal_fail(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    paypal_scrub_err(call);
    return AGAPE_STEP_FAIL;
}

static bool paypal_false(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static bool paypal_false(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    return false;
}

static bool paypal_eq(const char *a, const char *b)
{
    return a != NULL && strcmp(a, b) == 0;
}

/* ------------------------------------------------------------------ */
/* Currencies and amounts                                              */

/* Zero-decimal currencies (PROVIDERS.md §1.3): the minor unit is the whole
 * unit, and PayPal's value is the integer. */
static const char paypal_zero_decimal[][4] = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
    "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
};

/* Two decimals in ISO 4217, none at PayPal (PayPal's currency-codes page:
 * HUF and TWD "do not support decimals"; not in PROVIDERS.md, see README). */
static const char paypal_whole_only[][4] = {"huf", "twd"};

/* Three-decimal currencies (PROVIDERS.md §1.3). */
static const char paypal_three_decimal[][4] = {"bhd", "jod", "kwd", "omr", "tnd"};

static bool paypal_in(const char (*table)[4], size_t n, const char *cur)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i], cur) == 0) {
            return true;
        }
    }
    return false;
}

/* Decimals of the minor unit (ISO) and of PayPal's value for a lowercase
 * currency code. */
static void paypal_decimals(const char *cur, int *iso, int *paypal)
{
    if (paypal_in(paypal_zero_decimal, sizeof(paypal_zero_decimal) / 4, cur)) {
        *iso = *paypal = 0;
    } else if (paypal_in(paypal_whole_only, sizeof(paypal_whole_only) / 4, cur)) {
        *iso = 2;
        *paypal = 0;
    } else if (paypal_in(paypal_three_decimal, sizeof(paypal_three_decimal) / 4, cur)) {
        *iso = *paypal = 3;
    } else {
        *iso = *paypal = 2;
    }
}

static bool paypal_currency_ok(const char *c)
{
    return c != NULL && strlen(c) == 3 && c[0] >= 'a' && c[0] <= 'z' && c[1] >= 'a' &&
           c[1] <= 'z' && c[2] >= 'a' && c[2] <= 'z';
}

/* Minor units → PayPal's decimal string: 1999 usd → "19.99", 5 usd →
 * "0.05", 1000 jpy → "1000", 5124 kwd → "5.124", 150000 huf → "1500".
 * `field` names the input member in err. */
static bool paypal_amount_value(struct agape_call *call, int64_t amount, const char *cur,
                                const char *field, char *out, size_t outlen)
{
    int iso, dec;
    paypal_decimals(cur, &iso, &dec);
    if (amount <= 0) {
        return paypal_false(call, "%s must be a positive integer in minor units", field);
    }
    if (iso == 2 && dec == 0) {
        if (amount % 100 != 0) {
            char up[4] = {(char)(cur[0] - 32), (char)(cur[1] - 32), (char)(cur[2] - 32), 0};
            return paypal_false(call,
                                "%s %" PRId64 " is not valid for %s: PayPal takes %s in whole "
                                "units, so the amount (in hundredths) must be divisible by 100",
                                field, amount, cur, up);
        }
        amount /= 100;
    }
    int64_t scale = dec == 3 ? 1000 : dec == 2 ? 100 : 1;
    int64_t whole = amount / scale;
    int64_t frac = amount % scale;
    if (whole > 999999999999999LL) {
        return paypal_false(call, "%s is too large: PayPal takes at most %d digits before the "
                                  "decimal point",
                            field, PAYPAL_INT_DIGITS_MAX);
    }
    int n = dec == 0 ? snprintf(out, outlen, "%" PRId64, whole)
                     : snprintf(out, outlen, "%" PRId64 ".%0*" PRId64, whole, dec, frac);
    if (n < 0 || (size_t)n >= outlen) {
        return paypal_false(call, "%s cannot be written as a decimal", field);
    }
    return true;
}

/* PayPal's decimal string back to minor units (refund results); false when
 * it is not a plain non-negative decimal or does not fit. */
static bool paypal_value_minor(const char *value, const char *cur, int64_t *out)
{
    int iso, dec;
    int64_t whole = 0, frac = 0;
    int nwhole = 0, nfrac = 0;
    const char *p = value;

    if (value == NULL || !paypal_currency_ok(cur)) {
        return false;
    }
    paypal_decimals(cur, &iso, &dec);
    for (; *p >= '0' && *p <= '9'; p++) {
        if (++nwhole > PAYPAL_INT_DIGITS_MAX) {
            return false;
        }
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (++nfrac > iso) {
                return false;
            }
            frac = frac * 10 + (*p - '0');
        }
        if (nfrac == 0) {
            return false;
        }
    }
    if (*p != '\0' || (nwhole == 0 && nfrac == 0)) {
        return false;
    }
    for (int i = nfrac; i < iso; i++) {
        frac *= 10;
    }
    int64_t scale = iso == 3 ? 1000 : iso == 2 ? 100 : 1;
    *out = whole * scale + frac;
    return true;
}

/* ------------------------------------------------------------------ */
/* Input                                                               */

/* Printable ASCII without spaces, 1..max characters. */
static bool paypal_printable(const char *s, size_t max)
{
    size_t n = 0;
    if (s == NULL) {
        return false;
    }
    for (; *s; s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || n >= max) {
            return false;
        }
    }
    return n > 0;
}

/* A required non-empty string member, or NULL with err filled. */
static const char *paypal_need(struct agape_call *call, const char *path)
{
    const char *s = call->host->json_str(call->input, path);
    if (s == NULL || s[0] == '\0') {
        snprintf(call->err, sizeof(call->err), "%s is required (a non-empty string)", path);
        return NULL;
    }
    return s;
}

/* An optional string member: NULL when absent, null or "". *bad is set when
 * it is present with another type. */
static const char *paypal_opt(struct agape_call *call, const char *path, bool *bad)
{
    const struct agape_host *h = call->host;
    enum agape_json_type t = h->json_type(h->json_get(call->input, path));
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return NULL;
    }
    if (t != AGAPE_JSON_STRING) {
        snprintf(call->err, sizeof(call->err), "%s must be a string", path);
        *bad = true;
        return NULL;
    }
    const char *s = h->json_str(call->input, path);
    return s != NULL && s[0] != '\0' ? s : NULL;
}

static const char *paypal_idem(struct agape_call *call)
{
    const char *idem = paypal_need(call, "idempotency_key");
    if (idem != NULL && !paypal_printable(idem, PAYPAL_REQUEST_ID_MAX)) {
        snprintf(call->err, sizeof(call->err),
                 "idempotency_key must be 1 to %d printable ASCII characters without spaces "
                 "(PayPal-Request-Id)",
                 PAYPAL_REQUEST_ID_MAX);
        return NULL;
    }
    return idem;
}

/* ^[A-Z0-9]{1,36}$ (an order id). */
static bool paypal_order_id_ok(const char *s)
{
    size_t n = 0;
    if (s == NULL) {
        return false;
    }
    for (; *s; s++, n++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')) ||
            n >= PAYPAL_ORDER_ID_MAX) {
            return false;
        }
    }
    return n > 0;
}

/* A capture id: letters, digits and '-', at most 64 (PayPal's are 17
 * uppercase letters and digits; the spec subset gives no pattern). */
static bool paypal_capture_id_ok(const char *s)
{
    size_t n = 0;
    if (s == NULL) {
        return false;
    }
    for (; *s; s++, n++) {
        char c = *s;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-') ||
            n >= PAYPAL_CAPTURE_ID_MAX) {
            return false;
        }
    }
    return n > 0;
}

static const char *paypal_order_ref(struct agape_call *call)
{
    const char *ref = call->host->json_str(call->input, "provider_ref");
    if (!paypal_order_id_ok(ref)) {
        snprintf(call->err, sizeof(call->err),
                 "provider_ref must be a PayPal order id (1 to %d uppercase letters or digits)",
                 PAYPAL_ORDER_ID_MAX);
        return NULL;
    }
    return ref;
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */

/* req_start with {base}{path} (path printf-formatted). */
static int paypal_start(struct agape_call *call, const char *method, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int paypal_start(struct agape_call *call, const char *method, const char *fmt, ...)
{
    const struct agape_host *h = call->host;
    const struct paypal_ctx *ctx = call->ctx;
    char path[256];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        return AGAPE_ERANGE;
    }
    struct agape_buf *url = h->buf_new();
    if (url == NULL) {
        return AGAPE_ENOMEM;
    }
    int rc = h->buf_printf(url, "%s%s", ctx->base_url, path);
    if (rc == AGAPE_OK) {
        rc = h->req_start(call, method, h->buf_data(url));
    }
    h->buf_free(url);
    return rc;
}

/* Authorization: Bearer, and for POSTs PayPal-Request-Id and Prefer. */
static int paypal_api_headers(struct agape_call *call, const char *token, const char *idem)
{
    const struct agape_host *h = call->host;
    struct agape_buf *auth = h->buf_new();
    if (auth == NULL) {
        return AGAPE_ENOMEM;
    }
    int rc = h->buf_printf(auth, "Bearer %s", token);
    if (rc == AGAPE_OK) {
        rc = h->req_header(call, "Authorization", h->buf_data(auth));
    }
    if (rc == AGAPE_OK && idem != NULL) {
        rc = h->req_header(call, "PayPal-Request-Id", idem);
    }
    if (rc == AGAPE_OK && idem != NULL) {
        /* The whole order (captures included) rather than id/status/links. */
        rc = h->req_header(call, "Prefer", "return=representation");
    }
    h->buf_free(auth);
    return rc;
}

/* The API headers and a JSON body (copied). */
static int paypal_post_json(struct agape_call *call, const char *token, const char *idem,
                            const char *body, size_t len)
{
    const struct agape_host *h = call->host;
    int rc = paypal_api_headers(call, token, idem);
    if (rc == AGAPE_OK) {
        rc = h->req_body(call, "application/json", body, len);
    }
    return rc;
}

static enum agape_step paypal_token_request(struct agape_call *call, const char *phase)
{
    const struct agape_host *h = call->host;
    const struct paypal_ctx *ctx = call->ctx;
    static const char body[] = "grant_type=client_credentials";

    int rc = h->json_set_str(call->state, "phase", phase);
    if (rc == AGAPE_OK) {
        rc = paypal_start(call, "POST", "/v1/oauth2/token");
    }
    if (rc == AGAPE_OK) {
        rc = h->req_basic_auth(call, ctx->client_id, ctx->client_secret);
    }
    if (rc == AGAPE_OK) {
        rc = h->req_body(call, "application/x-www-form-urlencoded", body, sizeof(body) - 1);
    }
    if (rc != AGAPE_OK) {
        return paypal_fail(call, "cannot build the PayPal token request (rc %d)", rc);
    }
    return AGAPE_STEP_SEND;
}

static enum agape_step paypal_api_request(struct agape_call *call, const struct paypal_op *op,
                                          const char *token, bool cached)
{
    const struct agape_host *h = call->host;
    int rc = h->json_set_str(call->state, "phase", "call");
    if (rc == AGAPE_OK) {
        rc = h->json_set_bool(call->state, "cached", cached);
    }
    if (rc == AGAPE_OK) {
        rc = op->build(call, token);
    }
    if (rc != AGAPE_OK) {
        if (call->err[0] == '\0') {
            snprintf(call->err, sizeof(call->err), "cannot build the PayPal request (rc %d)",
                     rc);
        }
        paypal_scrub_err(call);
        return AGAPE_STEP_FAIL;
    }
    return AGAPE_STEP_SEND;
}

/* The next API request: with the cached token, or the token request first. */
static enum agape_step paypal_send(struct agape_call *call, const struct paypal_op *op)
{
    const char *token = call->host->cache_get(call, PAYPAL_TOKEN_KEY);
    if (token != NULL) {
        return paypal_api_request(call, op, token, true);
    }
    bool refreshed = call->host->json_bool(call->state, "refreshed", false);
    return paypal_token_request(call, refreshed ? "retry_token" : "token");
}

/* The token call answered. */
static enum agape_step paypal_token_answer(struct agape_call *call, const struct paypal_op *op)
{
    const struct agape_host *h = call->host;
    const struct agape_response *r = call->resp;
    struct agape_json *tok = NULL;
    enum agape_step st;

    if (r->status != 200) {
        return paypal_classify_token_error(call);
    }
    tok = h->json_parse(r->body, r->body_len, NULL, 0);
    const char *access = h->json_str(tok, "access_token");
    const char *type = h->json_str(tok, "token_type");
    enum agape_json_type et = h->json_type(h->json_get(tok, "expires_in"));
    int64_t expires = h->json_int(tok, "expires_in", 0);
    if (!paypal_printable(access, PAYPAL_TOKEN_MAX) ||
        (type != NULL && strcasecmp(type, "Bearer") != 0) ||
        (et != AGAPE_JSON_ABSENT && et != AGAPE_JSON_INT)) {
        /* No token, nothing charged: the call can go elsewhere. */
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        call->retry_after_ms = -1;
        snprintf(call->err, sizeof(call->err),
                 "PayPal answered the token call with HTTP 200 but no usable Bearer "
                 "access_token");
        st = AGAPE_STEP_DONE;
        goto out;
    }
    int64_t ttl_s = expires - PAYPAL_TOKEN_MARGIN_S;
    if (ttl_s < PAYPAL_TOKEN_MIN_TTL_S) {
        ttl_s = PAYPAL_TOKEN_MIN_TTL_S;
    }
    int rc = h->cache_put(call, PAYPAL_TOKEN_KEY, access, ttl_s * 1000);
    if (rc != AGAPE_OK) {
        /* The call can go on with the token in hand; the next one fetches again. */
        h->log(call->provider, AGAPE_LOG_WARN, "cannot cache the PayPal token (rc %d)", rc);
    }
    st = paypal_api_request(call, op, access, false);
out:
    h->json_free(tok);
    return st;
}

/* The driver every operation runs through (see the top of the file). */
enum agape_step paypal_run(struct agape_call *call, const struct paypal_op *op)
{
    const struct agape_host *h = call->host;

    if (call->step == 0) {
        call->retry_after_ms = -1;
        if (!op->check(call)) {
            paypal_scrub_err(call);
            return AGAPE_STEP_FAIL;
        }
        if (h->json_set_str(call->state, "req", "main") != AGAPE_OK) {
            return paypal_fail(call, "out of memory");
        }
        return paypal_send(call, op);
    }
    if (call->resp == NULL) {
        return paypal_fail(call, "no answer to read");
    }
    if (call->step >= PAYPAL_MAX_STEPS) {
        return paypal_fail(call, "PayPal call did not finish within %d requests",
                           PAYPAL_MAX_STEPS);
    }
    const char *phase = h->json_str(call->state, "phase");
    if (paypal_eq(phase, "token") || paypal_eq(phase, "retry_token")) {
        return paypal_token_answer(call, op);
    }
    if (!paypal_eq(phase, "call")) {
        return paypal_fail(call, "lost track of the PayPal call (state.phase)");
    }
    if (call->resp->status == 401 && h->json_bool(call->state, "cached", false) &&
        !h->json_bool(call->state, "refreshed", false)) {
        /* The cached token expired early or was revoked: drop it, fetch one
         * new token and repeat the request once. */
        h->cache_put(call, PAYPAL_TOKEN_KEY, NULL, 0);
        if (h->json_set_bool(call->state, "refreshed", true) != AGAPE_OK) {
            return paypal_fail(call, "out of memory");
        }
        h->log(call->provider, AGAPE_LOG_INFO,
               "PayPal refused the cached token (HTTP 401); fetching a new one");
        return paypal_token_request(call, "retry_token");
    }
    return op->answer(call);
}

/* ------------------------------------------------------------------ */
/* Orders: reading                                                     */

static const char *paypal_approval_url(const struct agape_host *h, const struct agape_json *o)
{
    const struct agape_json *links = h->json_get(o, "links");
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

/* purchase_units[0].payments.captures[0].status → ours, or NULL. */
static const char *paypal_capture_status(const char *s)
{
    static const struct {
        const char *paypal;
        const char *ours;
    } map[] = {
        {"COMPLETED", "succeeded"}, {"PARTIALLY_REFUNDED", "succeeded"},
        {"PENDING", "processing"},  {"DECLINED", "failed"},
        {"FAILED", "failed"},       {"REFUNDED", "refunded"},
    };
    for (size_t i = 0; s != NULL && i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i].paypal, s) == 0) {
            return map[i].ours;
        }
    }
    return NULL;
}

static enum agape_step paypal_unknown(struct agape_call *call, const char *what)
{
    call->outcome = AGAPE_OUTCOME_UNKNOWN;
    snprintf(call->err, sizeof(call->err), "PayPal answered HTTP %d with %s",
             call->resp->status, what);
    return AGAPE_STEP_DONE;
}

/* A 2xx order → the result. `capture` is the capture operation: a declined
 * capture is then its outcome (DECLINED), not just a status. */
static enum agape_step paypal_order_result(struct agape_call *call, bool capture)
{
    const struct agape_host *h = call->host;
    const struct agape_response *r = call->resp;
    struct agape_json *o = h->json_parse(r->body, r->body_len, NULL, 0);
    enum agape_step st = AGAPE_STEP_DONE;
    const char *norm = NULL;
    const char *approval = NULL;
    const char *capture_ref = NULL;
    const char *cap_status = NULL;

    const char *id = h->json_str(o, "id");
    const char *status = h->json_str(o, "status");
    if (h->json_type(o) != AGAPE_JSON_OBJECT || !paypal_order_id_ok(id) || status == NULL) {
        st = paypal_unknown(call, "a body that is not an order");
        goto out;
    }
    if (paypal_eq(status, "CREATED") || paypal_eq(status, "SAVED") ||
        paypal_eq(status, "PAYER_ACTION_REQUIRED") || paypal_eq(status, "APPROVED")) {
        norm = "requires_action";
        approval = paypal_approval_url(h, o);
    } else if (paypal_eq(status, "COMPLETED")) {
        /* An order can be COMPLETED while its capture is PENDING or DECLINED
         * (§2.2): the capture decides. Without one we cannot tell yet. */
        const struct agape_json *cap = h->json_get(o, "purchase_units.0.payments.captures.0");
        cap_status = h->json_str(cap, "status");
        capture_ref = h->json_str(cap, "id");
        norm = cap == NULL ? "processing" : paypal_capture_status(cap_status);
        if (norm == NULL) {
            st = paypal_unknown(call, "a capture in an unknown status");
            goto out;
        }
    } else if (paypal_eq(status, "VOIDED")) {
        norm = "canceled";
    } else {
        st = paypal_unknown(call, "an order in an unknown status");
        goto out;
    }

    int rc = h->json_set_str(call->result, "status", norm);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "provider_ref", id);
    }
    if (rc == AGAPE_OK && approval != NULL) {
        rc = h->json_set_str(call->result, "approval_url", approval);
    }
    if (rc == AGAPE_OK && capture_ref != NULL) {
        rc = h->json_set_str(call->result, "capture_ref", capture_ref);
    }
    call->outcome = AGAPE_OUTCOME_OK;
    if (rc == AGAPE_OK && capture && paypal_eq(norm, "failed")) {
        const char *reason = h->json_str(o, "purchase_units.0.payments.captures.0."
                                            "status_details.reason");
        call->outcome = AGAPE_OUTCOME_DECLINED;
        rc = h->json_set_str(call->result, "decline_code", reason ? reason : cap_status);
        snprintf(call->err, sizeof(call->err), "declined by PayPal: capture %s%s%.64s",
                 cap_status, reason ? ", " : "", reason ? reason : "");
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        st = AGAPE_STEP_FAIL;
    }
out:
    h->json_free(o);
    return st;
}

/* ------------------------------------------------------------------ */
/* charge: create an order                                             */

/* The create-order body, compact, in the documented member order. Checks the
 * input on the way; false with err filled when it is wrong. */
static bool paypal_order_body(struct agape_call *call, struct agape_buf *out)
{
    const struct agape_host *h = call->host;
    const struct paypal_ctx *ctx = call->ctx;
    const struct agape_json *in = call->input;
    struct agape_json *o = NULL;
    bool bad = false, ok = false;
    char value[48];
    char cur_up[4];

    const char *payment_id = paypal_need(call, "payment_id");
    const char *currency = payment_id ? paypal_need(call, "currency") : NULL;
    const char *idem = currency ? paypal_idem(call) : NULL;
    if (idem == NULL) {
        return false;
    }
    if (strlen(payment_id) > PAYPAL_CUSTOM_ID_MAX) {
        return paypal_false(call, "payment_id has more than %d characters (PayPal custom_id)",
                            PAYPAL_CUSTOM_ID_MAX);
    }
    if (!paypal_currency_ok(currency)) {
        return paypal_false(call, "currency must be a three-letter lowercase ISO code such as "
                                  "usd");
    }
    if (h->json_type(h->json_get(in, "amount")) != AGAPE_JSON_INT) {
        return paypal_false(call, "amount must be an integer in minor units");
    }
    if (!paypal_amount_value(call, h->json_int(in, "amount", 0), currency, "amount", value,
                             sizeof(value))) {
        return false;
    }
    const char *description = paypal_opt(call, "description", &bad);
    const char *return_url = bad ? NULL : paypal_opt(call, "return_url", &bad);
    const char *cancel_url = bad ? NULL : paypal_opt(call, "cancel_url", &bad);
    if (bad) {
        return false;
    }
    if ((return_url != NULL && strlen(return_url) > PAYPAL_URL_MAX) ||
        (cancel_url != NULL && strlen(cancel_url) > PAYPAL_URL_MAX)) {
        return paypal_false(call, "%s is longer than %d bytes",
                            return_url && strlen(return_url) > PAYPAL_URL_MAX ? "return_url"
                                                                              : "cancel_url",
                            PAYPAL_URL_MAX);
    }
    for (int i = 0; i < 3; i++) {
        cur_up[i] = (char)(currency[i] - 'a' + 'A');
    }
    cur_up[3] = '\0';

    o = h->json_new_object();
    if (o == NULL) {
        return paypal_false(call, "out of memory");
    }
    int rc = h->json_set_str(o, "intent", "CAPTURE");
    struct agape_json *units = rc == AGAPE_OK ? h->json_add_array(o, "purchase_units") : NULL;
    struct agape_json *unit = units ? h->json_add_object(units, NULL) : NULL;
    if (unit == NULL) {
        paypal_false(call, "out of memory");
        goto out;
    }
    /* Our id twice: reference_id names the unit, custom_id comes back in
     * captures, reports and webhooks. Invalid UTF-8 fails here. */
    if (h->json_set_str(unit, "reference_id", payment_id) != AGAPE_OK ||
        h->json_set_str(unit, "custom_id", payment_id) != AGAPE_OK) {
        paypal_false(call, "payment_id must be valid UTF-8");
        goto out;
    }
    if (description != NULL) {
        /* At most 127 bytes, cut before a character that would straddle it. */
        size_t n = strlen(description);
        if (n > PAYPAL_DESCRIPTION_MAX) {
            n = PAYPAL_DESCRIPTION_MAX;
            while (n > 0 && ((unsigned char)description[n] & 0xc0) == 0x80) {
                n--;
            }
        }
        if (h->json_set_strn(unit, "description", description, n) != AGAPE_OK) {
            paypal_false(call, "description must be valid UTF-8");
            goto out;
        }
    }
    struct agape_json *amount = h->json_add_object(unit, "amount");
    if (amount == NULL || h->json_set_str(amount, "currency_code", cur_up) != AGAPE_OK ||
        h->json_set_str(amount, "value", value) != AGAPE_OK) {
        paypal_false(call, "out of memory");
        goto out;
    }
    if (return_url != NULL || cancel_url != NULL) {
        struct agape_json *ps = h->json_add_object(o, "payment_source");
        struct agape_json *pp = ps ? h->json_add_object(ps, "paypal") : NULL;
        struct agape_json *ec = pp ? h->json_add_object(pp, "experience_context") : NULL;
        if (ec == NULL) {
            paypal_false(call, "out of memory");
            goto out;
        }
        if ((return_url && h->json_set_str(ec, "return_url", return_url) != AGAPE_OK) ||
            (cancel_url && h->json_set_str(ec, "cancel_url", cancel_url) != AGAPE_OK)) {
            paypal_false(call, "return_url and cancel_url must be valid UTF-8");
            goto out;
        }
        if (h->json_set_str(ec, "user_action", "PAY_NOW") != AGAPE_OK ||
            (ctx->brand_name &&
             h->json_set_str(ec, "brand_name", ctx->brand_name) != AGAPE_OK)) {
            paypal_false(call, "brand_name must be valid UTF-8");
            goto out;
        }
    }
    if (h->json_dump(o, out) != AGAPE_OK) {
        paypal_false(call, "cannot serialize the order (out of memory)");
        goto out;
    }
    ok = true;
out:
    h->json_free(o);
    return ok;
}

static bool paypal_charge_check(struct agape_call *call)
{
    struct agape_buf *b = call->host->buf_new();
    if (b == NULL) {
        return paypal_false(call, "out of memory");
    }
    bool ok = paypal_order_body(call, b);
    call->host->buf_free(b);
    return ok;
}

static int paypal_charge_build(struct agape_call *call, const char *token)
{
    const struct agape_host *h = call->host;
    struct agape_buf *b = h->buf_new();
    int rc = AGAPE_ENOMEM;
    if (b == NULL) {
        return rc;
    }
    rc = paypal_order_body(call, b) ? AGAPE_OK : AGAPE_EINVAL;
    if (rc == AGAPE_OK) {
        rc = paypal_start(call, "POST", "/v2/checkout/orders");
    }
    if (rc == AGAPE_OK) {
        rc = paypal_post_json(call, token, h->json_str(call->input, "idempotency_key"),
                              h->buf_data(b), h->buf_len(b));
    }
    h->buf_free(b);
    return rc;
}

static enum agape_step paypal_charge_answer(struct agape_call *call)
{
    if (call->resp->status < 200 || call->resp->status > 299) {
        return paypal_classify_error(call, PAYPAL_WHAT_ORDER);
    }
    return paypal_order_result(call, false);
}

static const struct paypal_op paypal_charge_op = {
    PAYPAL_WHAT_ORDER, paypal_charge_check, paypal_charge_build, paypal_charge_answer,
};

enum agape_step paypal_charge(struct agape_call *call)
{
    return paypal_run(call, &paypal_charge_op);
}

/* ------------------------------------------------------------------ */
/* get                                                                 */

static bool paypal_get_check(struct agape_call *call)
{
    return paypal_order_ref(call) != NULL;
}

static int paypal_get_request(struct agape_call *call, const char *token)
{
    /* The id is [A-Z0-9] only: nothing to escape. A GET needs no request id. */
    const char *ref = call->host->json_str(call->input, "provider_ref");
    int rc = paypal_start(call, "GET", "/v2/checkout/orders/%s", ref);
    if (rc == AGAPE_OK) {
        rc = paypal_api_headers(call, token, NULL);
    }
    return rc;
}

static enum agape_step paypal_get_answer(struct agape_call *call)
{
    if (call->resp->status < 200 || call->resp->status > 299) {
        return paypal_classify_error(call, PAYPAL_WHAT_GET);
    }
    return paypal_order_result(call, false);
}

static const struct paypal_op paypal_get_op = {
    PAYPAL_WHAT_GET, paypal_get_check, paypal_get_request, paypal_get_answer,
};

enum agape_step paypal_get(struct agape_call *call)
{
    return paypal_run(call, &paypal_get_op);
}

/* ------------------------------------------------------------------ */
/* capture                                                             */

static bool paypal_capture_check(struct agape_call *call)
{
    return paypal_order_ref(call) != NULL && paypal_idem(call) != NULL;
}

static bool paypal_following(struct agape_call *call)
{
    return paypal_eq(call->host->json_str(call->state, "req"), "follow");
}

static int paypal_capture_build(struct agape_call *call, const char *token)
{
    const struct agape_host *h = call->host;
    const char *ref = h->json_str(call->input, "provider_ref");
    if (paypal_following(call)) {
        return paypal_get_request(call, token);
    }
    int rc = paypal_start(call, "POST", "/v2/checkout/orders/%s/capture", ref);
    if (rc == AGAPE_OK) {
        rc = paypal_post_json(call, token, h->json_str(call->input, "idempotency_key"), "{}", 2);
    }
    return rc;
}

static const struct paypal_op paypal_capture_op;

static enum agape_step paypal_capture_answer(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_response *r = call->resp;
    bool following = paypal_following(call);

    if (r->status == 422 && !following) {
        struct agape_json *body = h->json_parse(r->body, r->body_len, NULL, 0);
        bool already = paypal_eq(paypal_error_issue(h, body), "ORDER_ALREADY_CAPTURED");
        h->json_free(body);
        if (already) {
            /* Captured before (an earlier try whose answer was lost, or
             * another client): the order says how it went (§2.4). */
            if (h->json_set_str(call->state, "req", "follow") != AGAPE_OK) {
                return paypal_fail(call, "out of memory");
            }
            return paypal_send(call, &paypal_capture_op);
        }
    }
    if (r->status < 200 || r->status > 299) {
        return paypal_classify_error(call, following ? PAYPAL_WHAT_GET : PAYPAL_WHAT_CAPTURE);
    }
    return paypal_order_result(call, true);
}

static const struct paypal_op paypal_capture_op = {
    PAYPAL_WHAT_CAPTURE, paypal_capture_check, paypal_capture_build, paypal_capture_answer,
};

enum agape_step paypal_capture(struct agape_call *call)
{
    return paypal_run(call, &paypal_capture_op);
}

/* ------------------------------------------------------------------ */
/* refund                                                              */

/* {"amount":{"value","currency_code"}} for a partial amount, else "{}". */
static bool paypal_refund_body(struct agape_call *call, struct agape_buf *out)
{
    const struct agape_host *h = call->host;
    const struct agape_json *in = call->input;
    char value[48];
    char cur_up[4];

    const char *ref = h->json_str(in, "capture_ref");
    enum agape_json_type rt = h->json_type(h->json_get(in, "capture_ref"));
    if (rt == AGAPE_JSON_ABSENT || rt == AGAPE_JSON_NULL || (ref != NULL && ref[0] == '\0')) {
        return paypal_false(call, "capture_ref missing: capture the payment first");
    }
    if (!paypal_capture_id_ok(ref)) {
        return paypal_false(call, "capture_ref must be a PayPal capture id (letters, digits or "
                                  "-, at most %d)",
                            PAYPAL_CAPTURE_ID_MAX);
    }
    if (paypal_idem(call) == NULL) {
        return false;
    }
    enum agape_json_type at = h->json_type(h->json_get(in, "amount"));
    if (at == AGAPE_JSON_ABSENT || at == AGAPE_JSON_NULL) {
        return h->buf_add(out, "{}", 2) == AGAPE_OK || paypal_false(call, "out of memory");
    }
    if (at != AGAPE_JSON_INT) {
        return paypal_false(call, "amount must be an integer in minor units");
    }
    const char *currency = h->json_str(in, "currency");
    if (!paypal_currency_ok(currency)) {
        return paypal_false(call, "currency must be a three-letter lowercase ISO code such as "
                                  "usd (needed with amount)");
    }
    if (!paypal_amount_value(call, h->json_int(in, "amount", 0), currency, "amount", value,
                             sizeof(value))) {
        return false;
    }
    for (int i = 0; i < 3; i++) {
        cur_up[i] = (char)(currency[i] - 'a' + 'A');
    }
    cur_up[3] = '\0';
    struct agape_json *o = h->json_new_object();
    struct agape_json *a = o ? h->json_add_object(o, "amount") : NULL;
    bool ok = a != NULL && h->json_set_str(a, "value", value) == AGAPE_OK &&
              h->json_set_str(a, "currency_code", cur_up) == AGAPE_OK &&
              h->json_dump(o, out) == AGAPE_OK;
    h->json_free(o);
    return ok || paypal_false(call, "out of memory");
}

static bool paypal_refund_check(struct agape_call *call)
{
    struct agape_buf *b = call->host->buf_new();
    if (b == NULL) {
        return paypal_false(call, "out of memory");
    }
    bool ok = paypal_refund_body(call, b);
    call->host->buf_free(b);
    return ok;
}

static int paypal_refund_build(struct agape_call *call, const char *token)
{
    const struct agape_host *h = call->host;
    struct agape_buf *b = h->buf_new();
    int rc = AGAPE_ENOMEM;
    if (b == NULL) {
        return rc;
    }
    rc = paypal_refund_body(call, b) ? AGAPE_OK : AGAPE_EINVAL;
    if (rc == AGAPE_OK) {
        rc = paypal_start(call, "POST", "/v2/payments/captures/%s/refund",
                          h->json_str(call->input, "capture_ref"));
    }
    if (rc == AGAPE_OK) {
        rc = paypal_post_json(call, token, h->json_str(call->input, "idempotency_key"),
                              h->buf_data(b), h->buf_len(b));
    }
    h->buf_free(b);
    return rc;
}

static const char *paypal_refund_status(const char *s)
{
    static const struct {
        const char *paypal;
        const char *ours;
    } map[] = {
        {"COMPLETED", "succeeded"},
        {"PENDING", "processing"},
        {"FAILED", "failed"},
        {"CANCELLED", "failed"},
    };
    for (size_t i = 0; s != NULL && i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i].paypal, s) == 0) {
            return map[i].ours;
        }
    }
    return NULL;
}

static enum agape_step paypal_refund_answer(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_response *r = call->resp;
    struct agape_json *re = NULL;
    enum agape_step st = AGAPE_STEP_DONE;

    if (r->status < 200 || r->status > 299) {
        return paypal_classify_error(call, PAYPAL_WHAT_REFUND);
    }
    re = h->json_parse(r->body, r->body_len, NULL, 0);
    const char *id = h->json_str(re, "id");
    const char *norm = paypal_refund_status(h->json_str(re, "status"));
    if (h->json_type(re) != AGAPE_JSON_OBJECT || !paypal_capture_id_ok(id)) {
        st = paypal_unknown(call, "a body that is not a refund");
        goto out;
    }
    if (norm == NULL) {
        st = paypal_unknown(call, "a refund in an unknown status");
        goto out;
    }
    int rc = h->json_set_str(call->result, "refund_ref", id);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "status", norm);
    }
    /* Back to minor units of the refund's own currency. */
    char cur[4] = "";
    const char *code = h->json_str(re, "amount.currency_code");
    int64_t minor = 0;
    if (code != NULL && strlen(code) == 3) {
        for (int i = 0; i < 3; i++) {
            cur[i] = (char)(code[i] >= 'A' && code[i] <= 'Z' ? code[i] - 'A' + 'a' : code[i]);
        }
        cur[3] = '\0';
    }
    if (rc == AGAPE_OK && paypal_value_minor(h->json_str(re, "amount.value"), cur, &minor)) {
        rc = h->json_set_int(call->result, "amount", minor);
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        st = AGAPE_STEP_FAIL;
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
out:
    h->json_free(re);
    return st;
}

static const struct paypal_op paypal_refund_op = {
    PAYPAL_WHAT_REFUND, paypal_refund_check, paypal_refund_build, paypal_refund_answer,
};

enum agape_step paypal_refund(struct agape_call *call)
{
    return paypal_run(call, &paypal_refund_op);
}
