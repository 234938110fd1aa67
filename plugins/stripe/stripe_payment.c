/* stripe_payment — charge, get and refund as PaymentIntent and Refund calls.
 *
 * Each operation is two steps: step 0 validates the normalized input against
 * Stripe's own rules and builds the request; step 1 reads the answer. Input
 * that Stripe would refuse is refused here (AGAPE_STEP_FAIL → INVALID) before
 * anything is sent, so a bad request costs no round trip and no Stripe log
 * entry. */
#include "stripe.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* PaymentIntent amounts have at most eight digits (specs/stripe.json). */
#define STRIPE_AMOUNT_MAX 99999999
#define STRIPE_DESCRIPTION_MAX 1000
#define STRIPE_REF_MAX 255

/* Zero-decimal currencies (PROVIDERS.md §1.3): the amount is in whole units
 * and goes out unchanged; the core has already checked it is a positive
 * integer. Listed so that the rules below read as the whole table. */
static const char stripe_zero_decimal[][4] = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
    "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
};

/* Three-decimal currencies: thousandths, but the last digit must be 0. */
static const char stripe_three_decimal[][4] = {"bhd", "jod", "kwd", "omr", "tnd"};

static enum agape_step stripe_fail(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum agape_step stripe_fail(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    return AGAPE_STEP_FAIL;
}

static bool stripe_in(const char (*table)[4], size_t n, const char *cur)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i], cur) == 0) {
            return true;
        }
    }
    return false;
}

/* Characters, as Stripe counts them: UTF-8 code points. */
static size_t stripe_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        if (((unsigned char)*s & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

/* Stripe's amount and currency rules. Returns true when they hold; fills err
 * (naming the field) otherwise. */
static bool stripe_amount_ok(struct agape_call *call, int64_t amount, const char *currency)
{
    size_t n3 = sizeof(stripe_three_decimal) / sizeof(stripe_three_decimal[0]);
    size_t n0 = sizeof(stripe_zero_decimal) / sizeof(stripe_zero_decimal[0]);

    if (strlen(currency) != 3 || currency[0] < 'a' || currency[0] > 'z' || currency[1] < 'a' ||
        currency[1] > 'z' || currency[2] < 'a' || currency[2] > 'z') {
        snprintf(call->err, sizeof(call->err),
                 "currency must be a three-letter lowercase ISO code such as usd");
        return false;
    }
    if (amount <= 0 || amount > STRIPE_AMOUNT_MAX) {
        snprintf(call->err, sizeof(call->err),
                 "amount must be an integer from 1 to %d (Stripe allows eight digits)",
                 STRIPE_AMOUNT_MAX);
        return false;
    }
    if (stripe_in(stripe_zero_decimal, n0, currency)) {
        return true;
    }
    if (stripe_in(stripe_three_decimal, n3, currency) && amount % 10 != 0) {
        int64_t down = amount - amount % 10;
        snprintf(call->err, sizeof(call->err),
                 "amount %" PRId64 " is not valid for %s: Stripe needs three-decimal amounts "
                 "to end in 0 (e.g. %" PRId64 " or %" PRId64 ")",
                 amount, currency, down, down + 10);
        return false;
    }
    if (strcmp(currency, "isk") == 0 && amount % 100 != 0) {
        snprintf(call->err, sizeof(call->err),
                 "amount %" PRId64 " is not valid for isk: Stripe takes ISK ×100, so the "
                 "amount must be divisible by 100",
                 amount);
        return false;
    }
    return true;
}

/* A string safe in a header value or URL path: printable ASCII, no space. */
static bool stripe_token_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (; *s; s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || n >= max) {
            return false;
        }
    }
    return n > 0;
}

/* ^pi_[A-Za-z0-9_]+$, at most 255 characters. */
static bool stripe_pi_ref_ok(const char *s)
{
    if (s == NULL || strncmp(s, "pi_", 3) != 0 || s[3] == '\0' || strlen(s) > STRIPE_REF_MAX) {
        return false;
    }
    for (const char *p = s + 3; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_')) {
            return false;
        }
    }
    return true;
}

const char *stripe_pi_status(const char *status)
{
    static const struct {
        const char *stripe;
        const char *ours;
    } map[] = {
        {"requires_payment_method", "requires_action"},
        {"requires_confirmation", "requires_action"},
        {"requires_action", "requires_action"},
        {"requires_capture", "requires_action"},
        {"processing", "processing"},
        {"succeeded", "succeeded"},
        {"canceled", "canceled"},
    };
    if (status == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i].stripe, status) == 0) {
            return map[i].ours;
        }
    }
    return NULL;
}

/* Authorization, optional Stripe-Version and (POST) Idempotency-Key. */
static int stripe_headers(struct agape_call *call, const char *idem)
{
    const struct agape_host *h = call->host;
    const struct stripe_ctx *ctx = call->ctx;
    struct agape_buf *auth = h->buf_new();
    int rc = AGAPE_ENOMEM;

    if (auth == NULL) {
        return rc;
    }
    rc = h->buf_printf(auth, "Bearer %s", ctx->secret_key);
    if (rc == AGAPE_OK) {
        rc = h->req_header(call, "Authorization", h->buf_data(auth));
    }
    if (rc == AGAPE_OK && idem != NULL) {
        rc = h->req_header(call, "Idempotency-Key", idem);
    }
    if (rc == AGAPE_OK && ctx->api_version != NULL) {
        rc = h->req_header(call, "Stripe-Version", ctx->api_version);
    }
    h->buf_free(auth);
    return rc;
}

/* The first failure of a sequence of form_add calls is kept. */
struct stripe_form {
    const struct agape_host *h;
    struct agape_buf *b;
    int rc;
};

static void stripe_form(struct stripe_form *f, const char *key, const char *val)
{
    if (f->rc == AGAPE_OK) {
        f->rc = f->h->form_add(f->b, key, val);
    }
}

/* metadata[k]=v for each member of the input's metadata, after checking
 * Stripe's limits. Returns false with err filled on bad metadata. */
static bool stripe_metadata(struct agape_call *call, struct stripe_form *f)
{
    const struct agape_host *h = call->host;
    const struct agape_json *meta = h->json_get(call->input, "metadata");
    enum agape_json_type t = h->json_type(meta);
    char key[STRIPE_META_KEY_MAX * 4 + 16];

    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return true;
    }
    if (t != AGAPE_JSON_OBJECT) {
        snprintf(call->err, sizeof(call->err), "metadata must be an object of strings");
        return false;
    }
    size_t n = h->json_size(meta);
    if (n + 1 > STRIPE_META_MAX_KEYS) {
        snprintf(call->err, sizeof(call->err),
                 "metadata has %zu keys; Stripe allows %d, and the gateway uses one "
                 "(agape_payment_id)",
                 n, STRIPE_META_MAX_KEYS);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const struct agape_json *v = NULL;
        const char *k = h->json_key_at(meta, i, &v);
        if (k == NULL) {
            break;
        }
        if (strcmp(k, "agape_payment_id") == 0) {
            snprintf(call->err, sizeof(call->err),
                     "metadata.agape_payment_id is reserved by the gateway");
            return false;
        }
        if (h->json_type(v) != AGAPE_JSON_STRING) {
            snprintf(call->err, sizeof(call->err), "metadata.%.64s must be a string", k);
            return false;
        }
        size_t kc = stripe_chars(k);
        if (kc == 0 || kc > STRIPE_META_KEY_MAX) {
            snprintf(call->err, sizeof(call->err),
                     "metadata key \"%.64s\" has %zu characters; Stripe allows 1 to %d", k, kc,
                     STRIPE_META_KEY_MAX);
            return false;
        }
        if (strpbrk(k, "[]") != NULL) {
            snprintf(call->err, sizeof(call->err),
                     "metadata key \"%.64s\" must not contain [ or ] (Stripe)", k);
            return false;
        }
        /* The key may contain dots, so the value is read from the member
         * itself: the host reads an empty path as the value itself. */
        const char *val = h->json_str(v, "");
        if (val == NULL) {
            snprintf(call->err, sizeof(call->err), "metadata.%.64s must be a string", k);
            return false;
        }
        size_t vc = stripe_chars(val);
        if (vc > STRIPE_META_VALUE_MAX) {
            snprintf(call->err, sizeof(call->err),
                     "metadata.%.64s has %zu characters; Stripe allows %d", k, vc,
                     STRIPE_META_VALUE_MAX);
            return false;
        }
        int kn = snprintf(key, sizeof(key), "metadata[%s]", k);
        if (kn < 0 || (size_t)kn >= sizeof(key)) {
            snprintf(call->err, sizeof(call->err), "metadata key \"%.64s\" is too long", k);
            return false;
        }
        stripe_form(f, key, val);
    }
    return true;
}

/* A required string member, or NULL with err filled. */
static const char *stripe_need(struct agape_call *call, const char *path)
{
    const char *s = call->host->json_str(call->input, path);
    if (s == NULL || s[0] == '\0') {
        snprintf(call->err, sizeof(call->err), "%s is required (a non-empty string)", path);
        return NULL;
    }
    return s;
}

static const char *stripe_idem(struct agape_call *call)
{
    const char *idem = stripe_need(call, "idempotency_key");
    if (idem != NULL && !stripe_token_ok(idem, STRIPE_IDEM_KEY_MAX)) {
        snprintf(call->err, sizeof(call->err),
                 "idempotency_key must be 1 to %d printable ASCII characters without spaces",
                 STRIPE_IDEM_KEY_MAX);
        return NULL;
    }
    return idem;
}

/* POST {base}{path} with the form body in `f`. */
static enum agape_step stripe_post(struct agape_call *call, const char *path, const char *idem,
                                   struct stripe_form *f)
{
    const struct agape_host *h = call->host;
    const struct stripe_ctx *ctx = call->ctx;
    struct agape_buf *url = h->buf_new();
    enum agape_step st = AGAPE_STEP_FAIL;
    int rc;

    if (url == NULL || f->rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "cannot build the Stripe request (out of memory)");
        goto out;
    }
    rc = h->buf_printf(url, "%s%s", ctx->base_url, path);
    if (rc == AGAPE_OK) {
        rc = h->req_start(call, "POST", h->buf_data(url));
    }
    if (rc == AGAPE_OK) {
        rc = stripe_headers(call, idem);
    }
    if (rc == AGAPE_OK) {
        rc = h->req_body(call, "application/x-www-form-urlencoded", h->buf_data(f->b),
                         h->buf_len(f->b));
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "cannot build the Stripe request (rc %d)", rc);
        goto out;
    }
    st = AGAPE_STEP_SEND;
out:
    h->buf_free(url);
    return st;
}

static enum agape_step stripe_charge_send(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_json *in = call->input;
    struct stripe_form f = {h, NULL, AGAPE_OK};
    enum agape_step st = AGAPE_STEP_FAIL;
    char amount_s[32];

    const char *payment_id = stripe_need(call, "payment_id");
    const char *currency = payment_id ? stripe_need(call, "currency") : NULL;
    const char *idem = currency ? stripe_idem(call) : NULL;
    if (idem == NULL) {
        return AGAPE_STEP_FAIL;
    }
    if (h->json_type(h->json_get(in, "amount")) != AGAPE_JSON_INT) {
        return stripe_fail(call, "amount must be an integer in minor units");
    }
    int64_t amount = h->json_int(in, "amount", 0);
    if (!stripe_amount_ok(call, amount, currency)) {
        return AGAPE_STEP_FAIL;
    }
    const char *description = h->json_str(in, "description");
    if (description != NULL && stripe_chars(description) > STRIPE_DESCRIPTION_MAX) {
        return stripe_fail(call, "description has more than %d characters (Stripe's limit)",
                           STRIPE_DESCRIPTION_MAX);
    }
    /* A customer id of our own (not cus_…) means nothing to Stripe. */
    const char *customer = h->json_str(in, "customer.id");
    if (customer != NULL && strncmp(customer, "cus_", 4) != 0) {
        customer = NULL;
    }
    const char *email = h->json_str(in, "customer.email");

    f.b = h->buf_new();
    if (f.b == NULL) {
        return stripe_fail(call, "out of memory");
    }
    snprintf(amount_s, sizeof(amount_s), "%" PRId64, amount);
    stripe_form(&f, "amount", amount_s);
    stripe_form(&f, "currency", currency);
    if (description != NULL && description[0] != '\0') {
        stripe_form(&f, "description", description);
    }
    if (customer != NULL) {
        stripe_form(&f, "customer", customer);
    }
    if (email != NULL && email[0] != '\0') {
        stripe_form(&f, "receipt_email", email);
    }
    stripe_form(&f, "automatic_payment_methods[enabled]", "true");
    stripe_form(&f, "metadata[agape_payment_id]", payment_id);
    if (!stripe_metadata(call, &f)) {
        goto out;
    }
    st = stripe_post(call, "/v1/payment_intents", idem, &f);
out:
    h->buf_free(f.b);
    return st;
}

/* A 2xx whose body we cannot read: the request did something at Stripe, and
 * we do not know what. */
static enum agape_step stripe_unknown(struct agape_call *call, const char *what)
{
    call->outcome = AGAPE_OUTCOME_UNKNOWN;
    snprintf(call->err, sizeof(call->err), "Stripe answered HTTP %d with %s",
             call->resp->status, what);
    return AGAPE_STEP_DONE;
}

static enum agape_step stripe_pi_answer(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_response *r = call->resp;
    struct agape_json *pi = NULL;
    enum agape_step st;

    if (r == NULL) {
        snprintf(call->err, sizeof(call->err), "no answer to read");
        return AGAPE_STEP_FAIL;
    }
    if (r->status < 200 || r->status > 299) {
        return stripe_classify_error(call, false);
    }
    pi = h->json_parse(r->body, r->body_len, NULL, 0);
    const char *id = h->json_str(pi, "id");
    const char *object = h->json_str(pi, "object");
    const char *status = h->json_str(pi, "status");
    const char *norm = stripe_pi_status(status);
    if (h->json_type(pi) != AGAPE_JSON_OBJECT || id == NULL || strncmp(id, "pi_", 3) != 0 ||
        (object != NULL && strcmp(object, "payment_intent") != 0)) {
        st = stripe_unknown(call, "a body that is not a PaymentIntent");
        goto out;
    }
    if (norm == NULL) {
        st = stripe_unknown(call, "a PaymentIntent in an unknown status");
        goto out;
    }
    const char *secret = h->json_str(pi, "client_secret");
    int rc = h->json_set_str(call->result, "status", norm);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "provider_ref", id);
    }
    if (rc == AGAPE_OK && secret != NULL) {
        rc = h->json_set_str(call->result, "client_secret", secret);
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        st = AGAPE_STEP_FAIL;
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    h->json_free(pi);
    return st;
}

enum agape_step stripe_charge(struct agape_call *call)
{
    if (call->step == 0) {
        enum agape_step st = stripe_charge_send(call);
        if (st == AGAPE_STEP_FAIL) {
            stripe_scrub_err(call); /* a key name cut by %.64s must stay UTF-8 */
        }
        return st;
    }
    return stripe_pi_answer(call);
}

static enum agape_step stripe_get_send(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct stripe_ctx *ctx = call->ctx;
    const char *ref = h->json_str(call->input, "provider_ref");
    struct agape_buf *url = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (!stripe_pi_ref_ok(ref)) {
        return stripe_fail(call, "provider_ref must be a PaymentIntent id (pi_ followed by "
                                 "letters, digits or _)");
    }
    url = h->buf_new();
    if (url == NULL) {
        return stripe_fail(call, "out of memory");
    }
    /* The ref is [A-Za-z0-9_] only: nothing to escape in the path. GET needs
     * no Idempotency-Key (§1.5). */
    int rc = h->buf_printf(url, "%s/v1/payment_intents/%s", ctx->base_url, ref);
    if (rc == AGAPE_OK) {
        rc = h->req_start(call, "GET", h->buf_data(url));
    }
    if (rc == AGAPE_OK) {
        rc = stripe_headers(call, NULL);
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "cannot build the Stripe request (rc %d)", rc);
        goto out;
    }
    st = AGAPE_STEP_SEND;
out:
    h->buf_free(url);
    return st;
}

enum agape_step stripe_get(struct agape_call *call)
{
    if (call->step == 0) {
        enum agape_step st = stripe_get_send(call);
        if (st == AGAPE_STEP_FAIL) {
            stripe_scrub_err(call); /* a key name cut by %.64s must stay UTF-8 */
        }
        return st;
    }
    return stripe_pi_answer(call);
}

static enum agape_step stripe_refund_send(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_json *in = call->input;
    struct stripe_form f = {h, NULL, AGAPE_OK};
    enum agape_step st;
    char amount_s[32];

    const char *payment_id = stripe_need(call, "payment_id");
    const char *idem = payment_id ? stripe_idem(call) : NULL;
    if (idem == NULL) {
        return AGAPE_STEP_FAIL;
    }
    const char *ref = h->json_str(in, "provider_ref");
    if (!stripe_pi_ref_ok(ref)) {
        return stripe_fail(call, "provider_ref must be a PaymentIntent id (pi_ followed by "
                                 "letters, digits or _)");
    }
    enum agape_json_type at = h->json_type(h->json_get(in, "amount"));
    bool partial = at != AGAPE_JSON_ABSENT && at != AGAPE_JSON_NULL;
    int64_t amount = h->json_int(in, "amount", 0);
    if (partial) {
        if (at != AGAPE_JSON_INT) {
            return stripe_fail(call, "amount must be an integer in minor units");
        }
        /* With the currency known, Stripe's per-currency rules apply to a
         * partial refund as they do to a charge. */
        const char *currency = h->json_str(in, "currency");
        if (currency != NULL) {
            if (!stripe_amount_ok(call, amount, currency)) {
                return AGAPE_STEP_FAIL;
            }
        } else if (amount <= 0 || amount > STRIPE_AMOUNT_MAX) {
            return stripe_fail(call, "amount must be an integer from 1 to %d",
                               STRIPE_AMOUNT_MAX);
        }
    }

    f.b = h->buf_new();
    if (f.b == NULL) {
        return stripe_fail(call, "out of memory");
    }
    stripe_form(&f, "payment_intent", ref);
    if (partial) {
        snprintf(amount_s, sizeof(amount_s), "%" PRId64, amount);
        stripe_form(&f, "amount", amount_s);
    }
    stripe_form(&f, "metadata[agape_payment_id]", payment_id);
    st = stripe_post(call, "/v1/refunds", idem, &f);
    h->buf_free(f.b);
    return st;
}

/* Refund status → ours: pending (and requires_action, which waits on the
 * customer) are not final yet; canceled is a refund that did not happen. */
static const char *stripe_refund_status(const char *status)
{
    static const struct {
        const char *stripe;
        const char *ours;
    } map[] = {
        {"succeeded", "succeeded"}, {"pending", "processing"}, {"requires_action", "processing"},
        {"failed", "failed"},       {"canceled", "failed"},
    };
    if (status == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i].stripe, status) == 0) {
            return map[i].ours;
        }
    }
    return NULL;
}

static enum agape_step stripe_refund_answer(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_response *r = call->resp;
    struct agape_json *re = NULL;
    enum agape_step st;

    if (r == NULL) {
        snprintf(call->err, sizeof(call->err), "no answer to read");
        return AGAPE_STEP_FAIL;
    }
    if (r->status < 200 || r->status > 299) {
        return stripe_classify_error(call, true);
    }
    re = h->json_parse(r->body, r->body_len, NULL, 0);
    const char *id = h->json_str(re, "id");
    const char *object = h->json_str(re, "object");
    const char *norm = stripe_refund_status(h->json_str(re, "status"));
    if (h->json_type(re) != AGAPE_JSON_OBJECT || id == NULL || id[0] == '\0' ||
        (object != NULL && strcmp(object, "refund") != 0)) {
        st = stripe_unknown(call, "a body that is not a Refund");
        goto out;
    }
    if (norm == NULL) {
        st = stripe_unknown(call, "a Refund in an unknown status");
        goto out;
    }
    int rc = h->json_set_str(call->result, "refund_ref", id);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "status", norm);
    }
    if (rc == AGAPE_OK && h->json_type(h->json_get(re, "amount")) == AGAPE_JSON_INT) {
        rc = h->json_set_int(call->result, "amount", h->json_int(re, "amount", 0));
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        st = AGAPE_STEP_FAIL;
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    h->json_free(re);
    return st;
}

enum agape_step stripe_refund(struct agape_call *call)
{
    if (call->step == 0) {
        enum agape_step st = stripe_refund_send(call);
        if (st == AGAPE_STEP_FAIL) {
            stripe_scrub_err(call); /* a key name cut by %.64s must stay UTF-8 */
        }
        return st;
    }
    return stripe_refund_answer(call);
}
