/* Stripe, as PROVIDERS.md §1 describes it: form-encoded requests, JSON
 * answers, Basic or Bearer secret key, Idempotency-Key replay.
 *
 * Test payment methods: pm_card_chargeDeclined declines (402 card_error),
 * pm_card_authenticationRequired needs 3-D Secure (requires_action), any
 * other pm_… succeeds (or waits for capture with capture_method=manual). */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void stripe_error(struct mock_resp *rs, int status, const char *type, const char *code,
                         const char *param, const char *message)
{
    json_t *e = json_object();
    json_object_set_new(e, "type", json_string(type));
    if (code != NULL) {
        json_object_set_new(e, "code", json_string(code));
    }
    if (param != NULL) {
        json_object_set_new(e, "param", json_string(param));
    }
    json_object_set_new(e, "message", json_string(message));
    mock_json(rs, status, json_pack("{s:o}", "error", e));
}

static void request_id(struct mock_resp *rs)
{
    char id[40];
    snprintf(id, sizeof(id), "req_mock_%ld", mock_next_id("stripe.req"));
    mock_header(rs, "Request-Id", id);
}

/* A secret key as Bearer, or as the Basic user name ("sk_…:"). */
static bool authorized(const struct mock_req *rq, struct mock_resp *rs)
{
    const char *a = mock_req_header(rq, "authorization");
    bool ok = false;
    if (a != NULL && strncmp(a, "Bearer ", 7) == 0) {
        ok = strncmp(a + 7, "sk_", 3) == 0 || strncmp(a + 7, "rk_", 3) == 0;
    } else if (a != NULL && strncmp(a, "Basic ", 6) == 0) {
        size_t n = 0;
        char *user = mock_b64_decode(a + 6, &n);
        ok = user != NULL && (strncmp(user, "sk_", 3) == 0 || strncmp(user, "rk_", 3) == 0) &&
             strchr(user, ':') != NULL;
        free(user);
    }
    if (!ok) {
        stripe_error(rs, 401, "invalid_request_error", NULL, NULL, "Invalid API Key provided");
        rs->no_replay = true;
    }
    request_id(rs);
    return ok;
}

static void set_opt_string(json_t *obj, const char *key, json_t *form, const char *form_key)
{
    const char *v = mock_form_get(form, form_key);
    json_object_set_new(obj, key, v ? json_string(v) : json_null());
}

/* A token that looks like Stripe's and differs per intent and per run. */
static void make_secret(char *out, size_t len, const char *id)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)mock_now_ms();
    for (const char *p = id; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    }
    snprintf(out, len, "%s_secret_%016llx", id, (unsigned long long)h);
}

static void create_intent(const struct mock_req *rq, struct mock_resp *rs)
{
    if (!authorized(rq, rs)) {
        return;
    }
    json_t *form = mock_form_parse(rq->body, rq->body_len);
    const char *amount_s = mock_form_get(form, "amount");
    const char *currency = mock_form_get(form, "currency");
    const char *confirm = mock_form_get(form, "confirm");
    const char *pm = mock_form_get(form, "payment_method");
    const char *capture = mock_form_get(form, "capture_method");
    long long amount = 0;

    /* Failed validation is not stored under the idempotency key (§1.5). */
    rs->no_replay = true;
    if (amount_s == NULL) {
        stripe_error(rs, 400, "invalid_request_error", "parameter_missing", "amount",
                     "Missing required param: amount.");
        goto out;
    }
    if (!mock_parse_int(amount_s, &amount) || amount <= 0) {
        stripe_error(rs, 400, "invalid_request_error", "parameter_invalid_integer", "amount",
                     "Invalid integer: amount must be a positive integer.");
        goto out;
    }
    if (currency == NULL || strlen(currency) != 3) {
        stripe_error(rs, 400, "invalid_request_error", "parameter_missing", "currency",
                     "Missing required param: currency.");
        goto out;
    }
    bool confirming = confirm != NULL && strcmp(confirm, "true") == 0;
    if (confirming && pm == NULL) {
        stripe_error(rs, 400, "invalid_request_error", "payment_intent_unexpected_state", NULL,
                     "You cannot confirm this PaymentIntent because it's missing a payment "
                     "method.");
        goto out;
    }
    rs->no_replay = false;

    long n = mock_next_id("stripe.pi");
    char id[40];
    char secret[96];
    snprintf(id, sizeof(id), "pi_mock_%ld", n);
    make_secret(secret, sizeof(secret), id);

    json_t *pi = json_object();
    json_object_set_new(pi, "id", json_string(id));
    json_object_set_new(pi, "object", json_string("payment_intent"));
    json_object_set_new(pi, "amount", json_integer(amount));
    json_object_set_new(pi, "amount_received", json_integer(0));
    json_object_set_new(pi, "amount_refunded", json_integer(0));
    json_object_set_new(pi, "currency", json_string(currency));
    json_object_set_new(pi, "status", json_string("requires_payment_method"));
    json_object_set_new(pi, "client_secret", json_string(secret));
    json_object_set_new(pi, "capture_method", json_string(capture ? capture : "automatic"));
    set_opt_string(pi, "customer", form, "customer");
    set_opt_string(pi, "description", form, "description");
    set_opt_string(pi, "payment_method", form, "payment_method");
    set_opt_string(pi, "receipt_email", form, "receipt_email");
    json_object_set_new(pi, "metadata", mock_form_sub(form, "metadata"));
    json_object_set_new(pi, "latest_charge", json_null());
    json_object_set_new(pi, "last_payment_error", json_null());
    json_object_set_new(pi, "next_action", json_null());
    json_object_set_new(pi, "livemode", json_false());
    json_object_set_new(pi, "created", json_integer(mock_now_s()));
    mock_count_charge(rq->idem_key);

    if (confirming && strcmp(pm, "pm_card_chargeDeclined") == 0) {
        json_t *err = json_pack("{s:s,s:s,s:s,s:s}", "type", "card_error", "code",
                                "card_declined", "decline_code", "generic_decline", "message",
                                "Your card was declined.");
        json_object_set_new(pi, "last_payment_error", json_deep_copy(err));
        json_object_set_new(err, "payment_intent", json_deep_copy(pi));
        json_object_set_new(mock_bucket("stripe.intents"), id, pi);
        mock_json(rs, 402, json_pack("{s:o}", "error", err));
        goto out;
    }
    if (confirming && strcmp(pm, "pm_card_authenticationRequired") == 0) {
        json_object_set_new(pi, "status", json_string("requires_action"));
        json_object_set_new(pi, "next_action", json_pack("{s:s}", "type", "use_stripe_sdk"));
    } else if (confirming) {
        char charge[40];
        snprintf(charge, sizeof(charge), "ch_mock_%ld", n);
        bool manual = capture != NULL && strcmp(capture, "manual") == 0;
        json_object_set_new(pi, "status",
                            json_string(manual ? "requires_capture" : "succeeded"));
        json_object_set_new(pi, "amount_received", json_integer(manual ? 0 : amount));
        json_object_set_new(pi, "latest_charge", json_string(charge));
    }
    json_object_set_new(mock_bucket("stripe.intents"), id, json_deep_copy(pi));
    mock_json(rs, 200, pi);
out:
    json_decref(form);
}

static void missing(struct mock_resp *rs, int status, const char *what, const char *id,
                    const char *param)
{
    char msg[300];
    snprintf(msg, sizeof(msg), "No such %s: '%.200s'", what, id);
    stripe_error(rs, status, "invalid_request_error", "resource_missing", param, msg);
}

static void get_intent(const struct mock_req *rq, struct mock_resp *rs)
{
    if (!authorized(rq, rs)) {
        return;
    }
    json_t *pi = json_object_get(mock_bucket("stripe.intents"), rq->params[0]);
    if (pi == NULL) {
        missing(rs, 404, "payment_intent", rq->params[0], "intent");
        return;
    }
    mock_json(rs, 200, json_deep_copy(pi));
}

static void create_refund(const struct mock_req *rq, struct mock_resp *rs)
{
    if (!authorized(rq, rs)) {
        return;
    }
    json_t *form = mock_form_parse(rq->body, rq->body_len);
    const char *pi_id = mock_form_get(form, "payment_intent");
    const char *amount_s = mock_form_get(form, "amount");
    rs->no_replay = true;
    if (pi_id == NULL) {
        stripe_error(rs, 400, "invalid_request_error", "parameter_missing", "payment_intent",
                     "Missing required param: payment_intent.");
        goto out;
    }
    json_t *pi = json_object_get(mock_bucket("stripe.intents"), pi_id);
    if (pi == NULL) {
        missing(rs, 404, "payment_intent", pi_id, "payment_intent");
        goto out;
    }
    if (strcmp(json_string_value(json_object_get(pi, "status")), "succeeded") != 0) {
        stripe_error(rs, 400, "invalid_request_error", "payment_intent_unexpected_state", NULL,
                     "This PaymentIntent does not have a successful charge to refund.");
        goto out;
    }
    json_int_t received = json_integer_value(json_object_get(pi, "amount_received"));
    json_int_t refunded = json_integer_value(json_object_get(pi, "amount_refunded"));
    long long amount = received - refunded;
    if (amount_s != NULL && (!mock_parse_int(amount_s, &amount) || amount <= 0)) {
        stripe_error(rs, 400, "invalid_request_error", "parameter_invalid_integer", "amount",
                     "Invalid integer: amount must be a positive integer.");
        goto out;
    }
    if (amount > received - refunded || amount <= 0) {
        stripe_error(rs, 400, "invalid_request_error", "amount_too_large", "amount",
                     "Refund amount is greater than the unrefunded amount of the charge.");
        goto out;
    }
    rs->no_replay = false;
    json_object_set_new(pi, "amount_refunded", json_integer(refunded + amount));

    char id[40];
    snprintf(id, sizeof(id), "re_mock_%ld", mock_next_id("stripe.re"));
    json_t *re = json_object();
    json_object_set_new(re, "id", json_string(id));
    json_object_set_new(re, "object", json_string("refund"));
    json_object_set_new(re, "status", json_string("succeeded"));
    json_object_set_new(re, "amount", json_integer(amount));
    json_object_set(re, "currency", json_object_get(pi, "currency"));
    json_object_set_new(re, "payment_intent", json_string(pi_id));
    json_object_set(re, "charge", json_object_get(pi, "latest_charge"));
    json_object_set_new(re, "metadata", mock_form_sub(form, "metadata"));
    set_opt_string(re, "reason", form, "reason");
    json_object_set_new(re, "created", json_integer(mock_now_s()));
    json_object_set_new(mock_bucket("stripe.refunds"), id, json_deep_copy(re));
    mock_json(rs, 200, re);
out:
    json_decref(form);
}

static void idem_conflict(const struct mock_req *rq, struct mock_resp *rs)
{
    (void)rq;
    stripe_error(rs, 400, "idempotency_error", NULL, NULL,
                 "Keys for idempotent requests can only be used with the same parameters they "
                 "were first used with. Try using a key other than the one used before.");
    request_id(rs);
}

static const struct mock_route routes[] = {
    {"POST", "/v1/payment_intents", create_intent, "idempotency-key"},
    {"GET", "/v1/payment_intents/*", get_intent, NULL},
    {"POST", "/v1/refunds", create_refund, "idempotency-key"},
    {NULL, NULL, NULL, NULL},
};

const struct mock_provider mock_stripe = {"stripe", routes, idem_conflict};
