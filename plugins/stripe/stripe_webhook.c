/* stripe_webhook — Stripe-Signature verification and event normalization.
 *
 * The scheme (PROVIDERS.md §1.7), in the SDK's order: parse the header →
 * check the signature → check the timestamp → parse the JSON. Messages are
 * stripe-python's, so an operator can search for them. One difference from
 * the SDKs, on purpose: a timestamp more than the tolerance in the future is
 * refused too (a signature cannot legitimately come from the future, and
 * accepting one would let a captured request be replayed for longer). */
#include "stripe.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define STRIPE_SIG_HEADER_MAX 8192 /* a header with many rolled secrets is still small */
#define STRIPE_SIG_MAX_V1 16       /* signatures looked at per header */

static enum agape_step stripe_reject(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum agape_step stripe_reject(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    call->outcome = AGAPE_OUTCOME_INVALID;
    return AGAPE_STEP_DONE;
}

struct stripe_sig {
    int64_t t;
    const char *v1[STRIPE_SIG_MAX_V1];
    size_t v1_len[STRIPE_SIG_MAX_V1];
    size_t n_v1;
};

/* A decimal timestamp: digits only, at most 18 of them (fits int64). */
static bool stripe_parse_t(const char *s, size_t len, int64_t *out)
{
    int64_t v = 0;
    if (len == 0 || len > 18) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* "t=<unix>,v1=<hex>[,v1=<hex>…][,v0=<hex>]": elements split on ',', each on
 * its first '='. The first t counts; every v1 is kept; other schemes and
 * elements without '=' are ignored. False when there is no usable t. */
static bool stripe_parse_header(const char *hdr, struct stripe_sig *sig)
{
    bool have_t = false;
    const char *p = hdr;

    memset(sig, 0, sizeof(*sig));
    if (strlen(hdr) > STRIPE_SIG_HEADER_MAX) {
        return false;
    }
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (eq != NULL) {
            size_t klen = (size_t)(eq - p);
            const char *val = eq + 1;
            size_t vlen = len - klen - 1;
            if (klen == 1 && p[0] == 't' && !have_t) {
                if (!stripe_parse_t(val, vlen, &sig->t)) {
                    return false;
                }
                have_t = true;
            } else if (klen == 2 && p[0] == 'v' && p[1] == '1' && sig->n_v1 < STRIPE_SIG_MAX_V1) {
                sig->v1[sig->n_v1] = val;
                sig->v1_len[sig->n_v1] = vlen;
                sig->n_v1++;
            }
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    return have_t;
}

enum agape_step stripe_webhook_verify(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct stripe_ctx *ctx = call->ctx;
    const struct agape_webhook *wh = call->webhook;
    struct agape_buf *payload = NULL, *expected = NULL;
    struct stripe_sig sig;
    unsigned char mac[32];
    enum agape_step st = AGAPE_STEP_FAIL;

    if (wh == NULL || (wh->body == NULL && wh->body_len > 0)) {
        snprintf(call->err, sizeof(call->err), "verify called without a webhook");
        return AGAPE_STEP_FAIL;
    }
    if (ctx->webhook_secret == NULL) {
        return stripe_reject(call, "webhook_secret not configured");
    }
    const char *hdr = h->webhook_header(call, "Stripe-Signature");
    if (hdr == NULL) {
        return stripe_reject(call, "No Stripe-Signature header");
    }
    if (!stripe_parse_header(hdr, &sig)) {
        return stripe_reject(call, "Unable to extract timestamp and signatures from header");
    }
    if (sig.n_v1 == 0) {
        return stripe_reject(call, "No signatures found with expected scheme v1");
    }

    /* Signed payload: "<t>.<raw body>", the secret's ASCII bytes as the key
     * (whsec_ prefix included, never base64-decoded). */
    payload = h->buf_new();
    expected = h->buf_new();
    if (payload == NULL || expected == NULL) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        goto out;
    }
    int rc = h->buf_printf(payload, "%" PRId64 ".", sig.t);
    if (rc == AGAPE_OK && wh->body_len > 0) {
        rc = h->buf_add(payload, wh->body, wh->body_len);
    }
    if (rc == AGAPE_OK) {
        rc = h->hmac_sha256(ctx->webhook_secret, strlen(ctx->webhook_secret),
                            h->buf_data(payload), h->buf_len(payload), mac);
    }
    if (rc == AGAPE_OK) {
        rc = h->hex(expected, mac, sizeof(mac));
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "cannot compute the signature (rc %d)", rc);
        goto out;
    }
    bool match = false;
    for (size_t i = 0; i < sig.n_v1; i++) {
        /* Every candidate is compared, so the time taken does not say which. */
        if (h->ct_equal(h->buf_data(expected), h->buf_len(expected), sig.v1[i],
                        sig.v1_len[i])) {
            match = true;
        }
    }
    if (!match) {
        st = stripe_reject(call, "No signatures found matching the expected signature for "
                                 "payload");
        goto out;
    }
    if (ctx->tolerance_s > 0 &&
        (sig.t < wh->now_s - ctx->tolerance_s || sig.t > wh->now_s + ctx->tolerance_s)) {
        st = stripe_reject(call, "Timestamp outside the tolerance zone");
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    h->buf_free(payload);
    h->buf_free(expected);
    return st;
}

/* Event type → the payment status it announces. Other payment_intent.*
 * events (created, amount_capturable_updated, …) set no status: they do not
 * move a payment by themselves. */
static const char *stripe_event_status(const char *type, const struct agape_host *h,
                                       const struct agape_json *object)
{
    static const struct {
        const char *type;
        const char *status;
    } map[] = {
        {"payment_intent.succeeded", "succeeded"},
        {"payment_intent.payment_failed", "failed"},
        {"payment_intent.canceled", "canceled"},
        {"payment_intent.processing", "processing"},
        {"payment_intent.requires_action", "requires_action"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i].type, type) == 0) {
            return map[i].status;
        }
    }
    /* charge.refunded also fires for a partial refund; the Charge says
     * whether it is now fully refunded (refunded: true). */
    if (strcmp(type, "charge.refunded") == 0 && h->json_bool(object, "refunded", true)) {
        return "refunded";
    }
    return NULL;
}

/* A member that is a string, or an expanded object's "id". */
static const char *stripe_id_of(const struct agape_host *h, const struct agape_json *o,
                                const char *key)
{
    const struct agape_json *v = h->json_get(o, key);
    if (h->json_type(v) == AGAPE_JSON_STRING) {
        return h->json_str(v, "");
    }
    return h->json_str(v, "id");
}

/* customer.subscription.* → the normalized "subscription" the core stores:
 * {id, customer, status, current_period_end, cancel_at_period_end,
 *  items: [{id, price, product, quantity}], metadata, deleted}. */
static int stripe_subscription(const struct agape_host *h, struct agape_json *result,
                               const char *type, const struct agape_json *obj)
{
    const char *id = h->json_str(obj, "id");
    if (id == NULL || id[0] == '\0') {
        return AGAPE_OK; /* nothing to name it by */
    }
    bool deleted = strcmp(type, "customer.subscription.deleted") == 0;
    struct agape_json *sub = h->json_add_object(result, "subscription");
    if (sub == NULL) {
        return AGAPE_ENOMEM;
    }
    const char *status = h->json_str(obj, "status");
    int rc = h->json_set_str(sub, "id", id);
    rc = rc ? rc : h->json_set_str(sub, "customer", stripe_id_of(h, obj, "customer"));
    rc = rc ? rc : h->json_set_str(sub, "status", status ? status : deleted ? "canceled" : NULL);
    rc = rc ? rc : h->json_set_bool(sub, "deleted", deleted);
    const struct agape_json *end = h->json_get(obj, "current_period_end");
    const struct agape_json *cancel = h->json_get(obj, "cancel_at_period_end");
    const struct agape_json *meta = h->json_get(obj, "metadata");
    rc = rc ? rc : (cancel ? h->json_set_copy(sub, "cancel_at_period_end", cancel)
                           : h->json_set_null(sub, "cancel_at_period_end"));
    rc = rc ? rc : (meta ? h->json_set_copy(sub, "metadata", meta)
                         : h->json_set_null(sub, "metadata"));
    struct agape_json *items = rc ? NULL : h->json_add_array(sub, "items");
    const struct agape_json *data = h->json_get(obj, "items.data");
    for (size_t i = 0; rc == AGAPE_OK && items && i < h->json_size(data); i++) {
        const struct agape_json *it = h->json_at(data, i);
        struct agape_json *o = h->json_add_object(items, NULL);
        if (o == NULL) {
            return AGAPE_ENOMEM;
        }
        const struct agape_json *price = h->json_get(it, "price");
        const struct agape_json *qty = h->json_get(it, "quantity");
        rc = h->json_set_str(o, "id", stripe_id_of(h, it, "id"));
        rc = rc ? rc : h->json_set_str(o, "price", stripe_id_of(h, it, "price"));
        rc = rc ? rc : h->json_set_str(o, "product", stripe_id_of(h, price, "product"));
        rc = rc ? rc : (qty ? h->json_set_copy(o, "quantity", qty) : h->json_set_null(o, "quantity"));
        if (end == NULL) {
            end = h->json_get(it, "current_period_end"); /* newer API versions: per item */
        }
    }
    rc = rc ? rc : (end ? h->json_set_copy(sub, "current_period_end", end)
                        : h->json_set_null(sub, "current_period_end"));
    return rc;
}

enum agape_step stripe_webhook_normalize(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_webhook *wh = call->webhook;
    struct agape_json *ev = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;
    int rc;

    if (wh == NULL || wh->body == NULL) {
        snprintf(call->err, sizeof(call->err), "normalize called without a webhook");
        return AGAPE_STEP_FAIL;
    }
    ev = h->json_parse(wh->body, wh->body_len, NULL, 0);
    if (h->json_type(ev) != AGAPE_JSON_OBJECT) {
        st = stripe_reject(call, "the webhook body is not a JSON object");
        goto out;
    }
    const char *object = h->json_str(ev, "object");
    if (object != NULL && strcmp(object, "v2.core.event") == 0) {
        st = stripe_reject(call, "thin events (v2.core.event) are not supported; use a "
                                 "snapshot (v1) event destination");
        goto out;
    }
    if (object == NULL || strcmp(object, "event") != 0) {
        st = stripe_reject(call, "the webhook body is not a Stripe event (object \"event\")");
        goto out;
    }
    const char *id = h->json_str(ev, "id");
    const char *type = h->json_str(ev, "type");
    if (id == NULL || strncmp(id, "evt_", 4) != 0 || id[4] == '\0') {
        st = stripe_reject(call, "event id must be a string starting with evt_");
        goto out;
    }
    if (type == NULL || type[0] == '\0') {
        st = stripe_reject(call, "event type must be a non-empty string");
        goto out;
    }
    const struct agape_json *obj = h->json_get(ev, "data.object");
    if (h->json_type(obj) != AGAPE_JSON_OBJECT) {
        obj = NULL;
    }

    rc = h->json_set_str(call->result, "event_id", id);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "type", type);
    }
    if (rc == AGAPE_OK && obj != NULL) {
        rc = h->json_set_copy(call->result, "object", obj);
    }
    /* The PaymentIntent the event is about: the object itself, or the one a
     * charge or refund (or any object with a payment_intent) belongs to. */
    const char *oo = h->json_str(obj, "object");
    const char *ref = NULL;
    if (oo != NULL && strcmp(oo, "payment_intent") == 0) {
        ref = h->json_str(obj, "id");
    } else {
        ref = h->json_str(obj, "payment_intent");
    }
    if (rc == AGAPE_OK && ref != NULL && ref[0] != '\0') {
        rc = h->json_set_str(call->result, "payment_ref", ref);
    }
    const char *status = stripe_event_status(type, h, obj);
    if (rc == AGAPE_OK && status != NULL) {
        rc = h->json_set_str(call->result, "status", status);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_int(call->result, "created", h->json_int(ev, "created", 0));
    }
    if (rc == AGAPE_OK && obj != NULL && strncmp(type, "customer.subscription.", 22) == 0) {
        rc = stripe_subscription(h, call->result, type, obj);
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    h->json_free(ev);
    return st;
}
