/* PayPal, as PROVIDERS.md §2 and specs/paypal.json describe it: an OAuth2
 * client-credentials token, Orders v2 (create, get, capture) and capture
 * refunds, JSON both ways, PayPal-Request-Id replay.
 *
 * Credentials: Basic mock_client:mock_secret. Tokens are "A21AA-mock-<n>"
 * and only tokens this mock issued are accepted (401 invalid_token else).
 *
 * The buyer's side, for tests:
 *   POST /_mock/paypal/approve/<order id>   marks the order APPROVED; an
 *        optional body {"capture": "PENDING" | "DECLINED" | "INSTRUMENT_DECLINED"}
 *        chooses how its capture goes (default COMPLETED)
 *   GET  /checkoutnow?token=<order id>      the approval link itself does the same
 *   POST /_mock/paypal/revoke_tokens        forgets every token (the next call gets 401)
 *   POST /_mock/paypal/verify_all           {"verify_all": true|false}: the verify API
 *        answers SUCCESS to any well-formed request (for events built by tests)
 *
 * Webhooks (PROVIDERS.md §2.5, §10.4):
 *   GET  /v1/notifications/certs/<name>     the §10.4 signing certificate for
 *        CERT-360caa42-fca2a594-a5cafa77 (404 INVALID_RESOURCE_ID for any other name)
 *   POST /v1/notifications/verify-webhook-signature   Bearer token; all seven members
 *        required (400 VALIDATION_ERROR else); SUCCESS when the request carries the §10.4
 *        transmission id, time, signature and webhook id and its raw bytes contain the
 *        §10.4 body exactly (spliced, not re-serialized), or when verify_all is on;
 *        FAILURE otherwise (HTTP 200 either way, as PayPal answers)
 *
 * Idempotency is PayPal's: a PayPal-Request-Id seen before on the same path
 * replays the stored 2xx answer with 200 instead of 201 (§2.2); refusals
 * (4xx) are not stored, so a capture refused before approval can be
 * repeated with the same id after it. State lives in the buckets
 * paypal.tokens, paypal.orders, paypal.captures, paypal.refunds (readable
 * through /_mock/state/...), and every order created counts as a charge under
 * its PayPal-Request-Id (/_mock/charges). */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PP_CLIENT_ID "mock_client"
#define PP_CLIENT_SECRET "mock_secret"
#define PP_VALUE_MAX_DIGITS 15

/* ------------------------------------------------------------------ */
/* Answers */

/* A fresh debug id, also sent as the Paypal-Debug-Id header. */
static void debug_id(struct mock_resp *rs, char *out, size_t len)
{
    char id[32];
    snprintf(id, sizeof(id), "mock%09lx", mock_next_id("paypal.debug"));
    mock_header(rs, "Paypal-Debug-Id", id);
    if (out != NULL) {
        snprintf(out, len, "%s", id);
    }
}

/* {"name", "details": [{field?, value?, location?, issue, description}], "message",
 * "debug_id"} */
static void pp_error(struct mock_resp *rs, int status, const char *name, const char *message,
                     const char *field, const char *value, const char *location,
                     const char *issue, const char *description)
{
    char dbg[32];
    json_t *e = json_object();
    json_object_set_new(e, "name", json_string(name));
    json_t *details = json_array();
    if (issue != NULL) {
        json_t *d = json_object();
        if (field != NULL) {
            json_object_set_new(d, "field", json_string(field));
        }
        if (value != NULL) {
            json_object_set_new(d, "value", json_string(value));
        }
        if (location != NULL) {
            json_object_set_new(d, "location", json_string(location));
        }
        json_object_set_new(d, "issue", json_string(issue));
        json_object_set_new(d, "description", json_string(description));
        json_array_append_new(details, d);
    }
    json_object_set_new(e, "details", details);
    json_object_set_new(e, "message", json_string(message));
    debug_id(rs, dbg, sizeof(dbg));
    json_object_set_new(e, "debug_id", json_string(dbg));
    mock_json(rs, status, e);
}

static void invalid_request(struct mock_resp *rs, const char *field, const char *issue,
                            const char *description)
{
    pp_error(rs, 400, "INVALID_REQUEST",
             "Request is not well-formed, syntactically incorrect, or violates schema.", field,
             NULL, "body", issue, description);
}

static void unprocessable(struct mock_resp *rs, const char *issue, const char *description)
{
    pp_error(rs, 422, "UNPROCESSABLE_ENTITY",
             "The requested action could not be performed, semantically incorrect, or failed "
             "business validation.",
             NULL, NULL, NULL, issue, description);
}

static void not_found(struct mock_resp *rs, const char *field, const char *id)
{
    pp_error(rs, 404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.", field, id,
             "path", "INVALID_RESOURCE_ID",
             "Specified resource ID does not exist. Please check the resource ID and try again.");
}

static void iso_now(char *out, size_t len)
{
    time_t t = (time_t)mock_now_s();
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "http://<Host header>" for the links. */
static void base_url(const struct mock_req *rq, char *out, size_t len)
{
    const char *host = mock_req_header(rq, "host");
    snprintf(out, len, "http://%s", host && host[0] ? host : "127.0.0.1");
}

static json_t *link(const char *href, const char *rel, const char *method)
{
    return json_pack("{s:s, s:s, s:s}", "href", href, "rel", rel, "method", method);
}

/* ------------------------------------------------------------------ */
/* Auth */

static void basic_refused(struct mock_resp *rs)
{
    mock_json(rs, 401, json_pack("{s:s, s:s}", "error", "invalid_client", "error_description",
                                 "Client Authentication failed"));
    debug_id(rs, NULL, 0);
}

/* A Bearer token this mock issued. */
static bool authorized(const struct mock_req *rq, struct mock_resp *rs)
{
    const char *a = mock_req_header(rq, "authorization");
    if (a == NULL) {
        pp_error(rs, 401, "AUTHENTICATION_FAILURE",
                 "Authentication failed due to missing authorization header, or invalid "
                 "authentication credentials.",
                 NULL, NULL, NULL, NULL, NULL);
        return false;
    }
    if (strncmp(a, "Bearer ", 7) != 0 ||
        json_object_get(mock_bucket("paypal.tokens"), a + 7) == NULL) {
        mock_json(rs, 401, json_pack("{s:s, s:s}", "error", "invalid_token", "error_description",
                                     "Token signature verification failed"));
        debug_id(rs, NULL, 0);
        return false;
    }
    return true;
}

static void issue_token(const struct mock_req *rq, struct mock_resp *rs)
{
    const char *a = mock_req_header(rq, "authorization");
    bool ok = false;
    if (a != NULL && strncmp(a, "Basic ", 6) == 0) {
        size_t n = 0;
        char *up = mock_b64_decode(a + 6, &n);
        ok = up != NULL && strcmp(up, PP_CLIENT_ID ":" PP_CLIENT_SECRET) == 0;
        free(up);
    }
    if (!ok) {
        basic_refused(rs);
        return;
    }
    json_t *form = mock_form_parse(rq->body, rq->body_len);
    const char *grant = mock_form_get(form, "grant_type");
    if (grant == NULL || strcmp(grant, "client_credentials") != 0) {
        mock_json(rs, 400, json_pack("{s:s, s:s}", "error", "unsupported_grant_type",
                                     "error_description",
                                     grant ? "Grant Type is not supported" : "Grant Type is NULL"));
        debug_id(rs, NULL, 0);
        json_decref(form);
        return;
    }
    json_decref(form);

    long n = mock_next_id("paypal.token");
    char token[64];
    char now[32];
    char nonce[96];
    snprintf(token, sizeof(token), "A21AA-mock-%ld", n);
    iso_now(now, sizeof(now));
    snprintf(nonce, sizeof(nonce), "%smock%ld", now, n);
    json_object_set_new(mock_bucket("paypal.tokens"), token,
                        json_pack("{s:s, s:I}", "issued", now, "n", (json_int_t)n));
    mock_json(rs, 200,
              json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "scope",
                        "https://uri.paypal.com/services/payments/payment "
                        "https://uri.paypal.com/services/payments/refund",
                        "access_token", token, "token_type", "Bearer", "app_id", "APP-MOCK",
                        "expires_in", 32400, "nonce", nonce));
    debug_id(rs, NULL, 0);
}

static void revoke_tokens(const struct mock_req *rq, struct mock_resp *rs)
{
    (void)rq;
    json_t *tokens = mock_bucket("paypal.tokens");
    size_t n = json_object_size(tokens);
    json_object_clear(tokens);
    mock_json(rs, 200, json_pack("{s:I}", "revoked", (json_int_t)n));
}

/* ------------------------------------------------------------------ */
/* PayPal-Request-Id: replay per path, 2xx answers only */

static const char *request_key(const struct mock_req *rq, char *key, size_t len)
{
    const char *rid = mock_req_header(rq, "paypal-request-id");
    if (rid == NULL || rid[0] == '\0') {
        return NULL;
    }
    int n = snprintf(key, len, "%s %s", rq->path, rid);
    return n < 0 || (size_t)n >= len ? NULL : key;
}

static bool replay(const char *key, struct mock_resp *rs)
{
    json_t *s = key ? mock_idem_get("paypal", key) : NULL;
    if (s == NULL) {
        return false;
    }
    rs->status = (int)json_integer_value(json_object_get(s, "status"));
    rs->body = strdup(json_string_value(json_object_get(s, "body")));
    rs->headers = json_deep_copy(json_object_get(s, "headers"));
    return true;
}

/* Store a fresh 2xx answer so the same id replays it as 200. */
static void remember(const char *key, const struct mock_req *rq, const struct mock_resp *rs)
{
    if (key == NULL || rs->status < 200 || rs->status > 299) {
        return;
    }
    struct mock_resp stored = *rs;
    stored.status = 200;
    mock_idem_put("paypal", key, rq->path, rq->body, &stored);
}

/* ------------------------------------------------------------------ */
/* Money: decimal strings as thousandths */

/* Decimals PayPal takes for a currency (uppercase code). */
static int decimals(const char *cur)
{
    static const char *const zero[] = {"JPY", "HUF", "TWD", "BIF", "CLP", "DJF", "GNF", "KMF",
                                       "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF",
                                       "XOF", "XPF"};
    static const char *const three[] = {"BHD", "JOD", "KWD", "OMR", "TND"};
    for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++) {
        if (strcmp(cur, zero[i]) == 0) {
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof(three) / sizeof(three[0]); i++) {
        if (strcmp(cur, three[i]) == 0) {
            return 3;
        }
    }
    return 2;
}

/* "12.34" → 12340 thousandths, with the number of decimals written; false
 * when it is not PayPal's decimal pattern (negative values included). */
static bool parse_value(const char *s, long long *out, int *ndec)
{
    long long whole = 0, frac = 0;
    int nw = 0, nf = 0;
    const char *p = s;
    if (s == NULL) {
        return false;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        if (++nw > PP_VALUE_MAX_DIGITS) {
            return false;
        }
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (++nf > 3) {
                return false;
            }
            frac = frac * 10 + (*p - '0');
        }
        if (nf == 0) {
            return false;
        }
    }
    if (*p != '\0' || (nw == 0 && nf == 0)) {
        return false;
    }
    for (int i = nf; i < 3; i++) {
        frac *= 10;
    }
    *out = whole * 1000 + frac;
    *ndec = nf;
    return true;
}

static json_t *money(long long thousandths, const char *cur)
{
    char v[48];
    int dec = decimals(cur);
    if (dec == 0) {
        snprintf(v, sizeof(v), "%lld", thousandths / 1000);
    } else if (dec == 2) {
        snprintf(v, sizeof(v), "%lld.%02lld", thousandths / 1000, (thousandths % 1000) / 10);
    } else {
        snprintf(v, sizeof(v), "%lld.%03lld", thousandths / 1000, thousandths % 1000);
    }
    return json_pack("{s:s, s:s}", "currency_code", cur, "value", v);
}

static bool currency_ok(const char *c)
{
    return c != NULL && strlen(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' &&
           c[1] <= 'Z' && c[2] >= 'A' && c[2] <= 'Z';
}

/* ------------------------------------------------------------------ */
/* Orders */

static void make_id(char *out, size_t len, const char *prefix, const char *counter)
{
    /* 17 uppercase letters and digits, like PayPal's. */
    snprintf(out, len, "%s%0*ld", prefix, (int)(17 - strlen(prefix)), mock_next_id(counter));
}

static void set_links(json_t *order, const char *base)
{
    const char *id = json_string_value(json_object_get(order, "id"));
    const char *status = json_string_value(json_object_get(order, "status"));
    char self[512], approve[512], capture[512];
    snprintf(self, sizeof(self), "%s/v2/checkout/orders/%s", base, id);
    snprintf(approve, sizeof(approve), "%s/checkoutnow?token=%s", base, id);
    snprintf(capture, sizeof(capture), "%s/v2/checkout/orders/%s/capture", base, id);
    json_t *links = json_array();
    json_array_append_new(links, link(self, "self", "GET"));
    if (strcmp(status, "CREATED") == 0) {
        json_array_append_new(links, link(approve, "approve", "GET"));
    } else if (strcmp(status, "PAYER_ACTION_REQUIRED") == 0) {
        json_array_append_new(links, link(approve, "payer-action", "GET"));
    }
    if (strcmp(status, "CREATED") == 0 || strcmp(status, "APPROVED") == 0) {
        json_array_append_new(links, link(self, "update", "PATCH"));
        json_array_append_new(links, link(capture, "capture", "POST"));
    }
    json_object_set_new(order, "links", links);
}

/* The answer for Prefer: return=minimal (the default) or representation. */
static json_t *order_view(const struct mock_req *rq, json_t *order, bool capture)
{
    const char *prefer = mock_req_header(rq, "prefer");
    if (prefer != NULL && strstr(prefer, "return=representation") != NULL) {
        return json_deep_copy(order);
    }
    json_t *v = json_pack("{s:O, s:O}", "id", json_object_get(order, "id"), "status",
                          json_object_get(order, "status"));
    if (capture) {
        /* A minimal capture answer still carries the captures. */
        json_t *units = json_array();
        size_t i;
        json_t *u;
        json_array_foreach(json_object_get(order, "purchase_units"), i, u) {
            json_array_append_new(units, json_pack("{s:O, s:O}", "reference_id",
                                                   json_object_get(u, "reference_id"),
                                                   "payments", json_object_get(u, "payments")));
        }
        json_object_set_new(v, "purchase_units", units);
    }
    json_object_set(v, "links", json_object_get(order, "links"));
    return v;
}

/* Checks one purchase unit of a create request; fills rs and returns false
 * when PayPal would refuse it. */
static bool unit_ok(json_t *u, size_t i, struct mock_resp *rs)
{
    char field[96];
    json_t *amount = json_object_get(u, "amount");
    const char *cur = json_string_value(json_object_get(amount, "currency_code"));
    const char *value = json_string_value(json_object_get(amount, "value"));
    long long t = 0;
    int nd = 0;

    if (!json_is_object(u) || !json_is_object(amount)) {
        snprintf(field, sizeof(field), "/purchase_units/%zu/amount", i);
        invalid_request(rs, field, "MISSING_REQUIRED_PARAMETER",
                        "A required field / parameter is missing.");
        return false;
    }
    if (!currency_ok(cur)) {
        snprintf(field, sizeof(field), "/purchase_units/%zu/amount/currency_code", i);
        invalid_request(rs, field, cur ? "INVALID_PARAMETER_VALUE" : "MISSING_REQUIRED_PARAMETER",
                        "Currency code is invalid or is not currently supported.");
        return false;
    }
    if (!parse_value(value, &t, &nd)) {
        snprintf(field, sizeof(field), "/purchase_units/%zu/amount/value", i);
        invalid_request(rs, field,
                        value ? "INVALID_PARAMETER_SYNTAX" : "MISSING_REQUIRED_PARAMETER",
                        "The value of a field does not conform to the expected format.");
        return false;
    }
    if (t <= 0) {
        unprocessable(rs, "CANNOT_BE_ZERO_OR_NEGATIVE",
                      "Must be greater than zero. If the currency supports decimals, only two "
                      "decimal place precision is supported.");
        return false;
    }
    if (nd > decimals(cur)) {
        unprocessable(rs, "DECIMAL_PRECISION",
                      "If the currency supports decimals, only two decimal place precision is "
                      "supported.");
        return false;
    }
    const char *desc = json_string_value(json_object_get(u, "description"));
    const char *custom = json_string_value(json_object_get(u, "custom_id"));
    if ((desc && strlen(desc) > 127) || (custom && strlen(custom) > 127)) {
        snprintf(field, sizeof(field), "/purchase_units/%zu/%s", i,
                 desc && strlen(desc) > 127 ? "description" : "custom_id");
        invalid_request(rs, field, "INVALID_STRING_LENGTH",
                        "The value of a field is either too short or too long.");
        return false;
    }
    return true;
}

static void create_order(const struct mock_req *rq, struct mock_resp *rs)
{
    char key[512];
    if (!authorized(rq, rs)) {
        return;
    }
    const char *rkey = request_key(rq, key, sizeof(key));
    if (replay(rkey, rs)) {
        return;
    }
    json_t *in = json_loadb(rq->body, rq->body_len, 0, NULL);
    json_t *units = json_object_get(in, "purchase_units");
    const char *intent = json_string_value(json_object_get(in, "intent"));
    json_t *source = json_object_get(in, "payment_source");

    if (!json_is_object(in)) {
        invalid_request(rs, "/", "MALFORMED_REQUEST_JSON",
                        "The request JSON is not well formed.");
        goto out;
    }
    if (intent == NULL || (strcmp(intent, "CAPTURE") != 0 && strcmp(intent, "AUTHORIZE") != 0)) {
        invalid_request(rs, "/intent", intent ? "INVALID_PARAMETER_VALUE"
                                              : "MISSING_REQUIRED_PARAMETER",
                        "A parameter value is not valid.");
        goto out;
    }
    if (!json_is_array(units) || json_array_size(units) == 0 || json_array_size(units) > 10) {
        invalid_request(rs, "/purchase_units", json_is_array(units) ? "INVALID_ARRAY_MIN_ITEMS"
                                                                    : "MISSING_REQUIRED_PARAMETER",
                        "A required field / parameter is missing.");
        goto out;
    }
    size_t i;
    json_t *u;
    json_array_foreach(units, i, u) {
        if (!unit_ok(u, i, rs)) {
            goto out;
        }
    }
    if (source != NULL && rkey == NULL) {
        pp_error(rs, 400, "INVALID_REQUEST",
                 "Request is not well-formed, syntactically incorrect, or violates schema.",
                 NULL, NULL, "header", "PAYPAL_REQUEST_ID_REQUIRED",
                 "A PayPal-Request-Id is required if you are trying to process payment for an "
                 "Order. Please specify a PayPal-Request-Id or Create the Order without a "
                 "'payment_source' specified.");
        goto out;
    }

    char id[24], now[32], base[300];
    make_id(id, sizeof(id), "MOCK", "paypal.order");
    iso_now(now, sizeof(now));
    base_url(rq, base, sizeof(base));
    json_t *order = json_object();
    json_object_set_new(order, "id", json_string(id));
    json_object_set_new(order, "intent", json_string(intent));
    json_object_set_new(order, "status",
                        json_string(source ? "PAYER_ACTION_REQUIRED" : "CREATED"));
    if (source != NULL) {
        json_object_set_new(order, "payment_source", json_pack("{s:{}}", "paypal"));
    }
    json_t *out_units = json_array();
    json_array_foreach(units, i, u) {
        json_t *ou = json_object();
        json_t *ref = json_object_get(u, "reference_id");
        json_object_set_new(ou, "reference_id", ref ? json_deep_copy(ref) : json_string("default"));
        json_object_set(ou, "amount", json_object_get(u, "amount"));
        json_object_set_new(ou, "payee", json_pack("{s:s, s:s}", "email_address",
                                                   "merchant@example.com", "merchant_id",
                                                   "MOCKMERCHANT1"));
        static const char *const copied[] = {"description", "custom_id", "invoice_id"};
        for (size_t k = 0; k < sizeof(copied) / sizeof(copied[0]); k++) {
            json_t *v = json_object_get(u, copied[k]);
            if (v != NULL) {
                json_object_set(ou, copied[k], v);
            }
        }
        json_array_append_new(out_units, ou);
    }
    json_object_set_new(order, "purchase_units", out_units);
    json_object_set_new(order, "create_time", json_string(now));
    set_links(order, base);
    json_object_set_new(mock_bucket("paypal.orders"), id, order);
    mock_count_charge(rkey ? mock_req_header(rq, "paypal-request-id") : NULL);

    mock_json(rs, 201, order_view(rq, order, false));
    debug_id(rs, NULL, 0);
    remember(rkey, rq, rs);
out:
    json_decref(in);
}

/* Strip the mock's own bookkeeping from an order shown to a client. */
static json_t *public_order(json_t *order)
{
    json_t *o = json_deep_copy(order);
    json_object_del(o, "_mock_capture");
    return o;
}

static void get_order(const struct mock_req *rq, struct mock_resp *rs)
{
    if (!authorized(rq, rs)) {
        return;
    }
    json_t *order = json_object_get(mock_bucket("paypal.orders"), rq->params[0]);
    if (order == NULL) {
        not_found(rs, "order_id", rq->params[0]);
        return;
    }
    mock_json(rs, 200, public_order(order));
    debug_id(rs, NULL, 0);
}

/* Approve as the buyer would; `capture` is how the capture will go. Returns
 * the HTTP status of the control answer. */
static int approve(const struct mock_req *rq, const char *id, const char *capture,
                   struct mock_resp *rs)
{
    json_t *order = json_object_get(mock_bucket("paypal.orders"), id);
    if (order == NULL) {
        not_found(rs, "order_id", id);
        return 404;
    }
    const char *status = json_string_value(json_object_get(order, "status"));
    if (strcmp(status, "COMPLETED") == 0 || strcmp(status, "VOIDED") == 0) {
        unprocessable(rs, "ORDER_ALREADY_COMPLETED", "The order cannot be approved any more.");
        return 422;
    }
    char base[300];
    base_url(rq, base, sizeof(base));
    json_object_set_new(order, "status", json_string("APPROVED"));
    json_object_set_new(order, "payer",
                        json_pack("{s:{s:s, s:s}, s:s, s:s, s:{s:s}}", "name", "given_name",
                                  "Mock", "surname", "Buyer", "email_address",
                                  "buyer@example.com", "payer_id", "MOCKBUYER0001", "address",
                                  "country_code", "US"));
    json_object_set_new(order, "_mock_capture", json_string(capture ? capture : "COMPLETED"));
    set_links(order, base);
    return 200;
}

static void approve_control(const struct mock_req *rq, struct mock_resp *rs)
{
    json_t *in = rq->body_len ? json_loadb(rq->body, rq->body_len, 0, NULL) : json_object();
    const char *capture = json_string_value(json_object_get(in, "capture"));
    if (in == NULL || (capture != NULL && strcmp(capture, "COMPLETED") != 0 &&
                       strcmp(capture, "PENDING") != 0 && strcmp(capture, "DECLINED") != 0 &&
                       strcmp(capture, "INSTRUMENT_DECLINED") != 0)) {
        mock_json(rs, 400, json_pack("{s:s}", "error",
                                     "body: {\"capture\": \"COMPLETED\" | \"PENDING\" | "
                                     "\"DECLINED\" | \"INSTRUMENT_DECLINED\"}"));
        json_decref(in);
        return;
    }
    if (approve(rq, rq->params[0], capture, rs) == 200) {
        mock_json(rs, 200,
                  public_order(json_object_get(mock_bucket("paypal.orders"), rq->params[0])));
    }
    json_decref(in);
}

/* GET /checkoutnow?token=<id>: the approval link, followed by the buyer. */
static void checkoutnow(const struct mock_req *rq, struct mock_resp *rs)
{
    char id[64] = "";
    const char *t = strstr(rq->query, "token=");
    if (t != NULL && (t == rq->query || t[-1] == '&')) {
        size_t n = strcspn(t + 6, "&");
        if (n < sizeof(id)) {
            memcpy(id, t + 6, n);
            id[n] = '\0';
        }
    }
    if (approve(rq, id, NULL, rs) == 200) {
        free(rs->body);
        rs->status = 200;
        rs->body = strdup("approved\n");
        snprintf(rs->content_type, sizeof(rs->content_type), "text/plain");
    }
}

static void capture_order(const struct mock_req *rq, struct mock_resp *rs)
{
    char key[512];
    if (!authorized(rq, rs)) {
        return;
    }
    const char *rkey = request_key(rq, key, sizeof(key));
    if (replay(rkey, rs)) {
        return;
    }
    if (rq->body_len > 0) {
        json_t *in = json_loadb(rq->body, rq->body_len, 0, NULL);
        bool ok = json_is_object(in);
        json_decref(in);
        if (!ok) {
            invalid_request(rs, "/", "MALFORMED_REQUEST_JSON",
                            "The request JSON is not well formed.");
            return;
        }
    }
    json_t *order = json_object_get(mock_bucket("paypal.orders"), rq->params[0]);
    if (order == NULL) {
        not_found(rs, "order_id", rq->params[0]);
        return;
    }
    const char *status = json_string_value(json_object_get(order, "status"));
    if (strcmp(status, "COMPLETED") == 0) {
        unprocessable(rs, "ORDER_ALREADY_CAPTURED",
                      "Order already captured.If 'intent=CAPTURE' only one capture per order is "
                      "allowed.");
        return;
    }
    if (strcmp(status, "APPROVED") != 0) {
        unprocessable(rs, "ORDER_NOT_APPROVED",
                      "Payer has not yet approved the Order for payment. Please redirect the "
                      "payer to the 'rel':'approve' url returned as part of the HATEOAS links "
                      "within the Create Order call or provide a valid `payment_source` in the "
                      "request.");
        return;
    }
    char base[300];
    base_url(rq, base, sizeof(base));
    const char *how = json_string_value(json_object_get(order, "_mock_capture"));
    if (how != NULL && strcmp(how, "INSTRUMENT_DECLINED") == 0) {
        /* The buyer must go back and pick another funding source. */
        json_object_set_new(order, "status", json_string("PAYER_ACTION_REQUIRED"));
        set_links(order, base);
        unprocessable(rs, "INSTRUMENT_DECLINED",
                      "The instrument presented  was either declined by the processor or bank, "
                      "or it can't be used for this payment.");
        json_t *body = json_loads(rs->body, 0, NULL);
        char href[512];
        snprintf(href, sizeof(href), "%s/checkoutnow?token=%s", base, rq->params[0]);
        json_object_set_new(body, "links", json_pack("[o]", link(href, "payer-action", "GET")));
        mock_json(rs, 422, body);
        return;
    }

    char cid[24], now[32], self[512], refund[512], up[512];
    make_id(cid, sizeof(cid), "CAPMOCK", "paypal.capture");
    iso_now(now, sizeof(now));
    snprintf(self, sizeof(self), "%s/v2/payments/captures/%s", base, cid);
    snprintf(refund, sizeof(refund), "%s/v2/payments/captures/%s/refund", base, cid);
    snprintf(up, sizeof(up), "%s/v2/checkout/orders/%s", base, rq->params[0]);
    json_t *unit = json_array_get(json_object_get(order, "purchase_units"), 0);
    const char *cap_status = how ? how : "COMPLETED";
    json_t *cap = json_object();
    json_object_set_new(cap, "id", json_string(cid));
    json_object_set_new(cap, "status", json_string(cap_status));
    if (strcmp(cap_status, "PENDING") == 0) {
        json_object_set_new(cap, "status_details", json_pack("{s:s}", "reason", "PENDING_REVIEW"));
    } else if (strcmp(cap_status, "DECLINED") == 0) {
        json_object_set_new(cap, "status_details",
                            json_pack("{s:s}", "reason", "DECLINED_BY_RISK_FRAUD_FILTERS"));
    }
    json_object_set(cap, "amount", json_object_get(unit, "amount"));
    if (json_object_get(unit, "custom_id") != NULL) {
        json_object_set(cap, "custom_id", json_object_get(unit, "custom_id"));
    }
    json_object_set_new(cap, "final_capture", json_true());
    json_object_set_new(cap, "seller_protection", json_pack("{s:s}", "status", "ELIGIBLE"));
    json_object_set_new(cap, "links", json_pack("[o,o,o]", link(self, "self", "GET"),
                                                link(refund, "refund", "POST"),
                                                link(up, "up", "GET")));
    json_object_set_new(cap, "create_time", json_string(now));
    json_object_set_new(cap, "update_time", json_string(now));
    json_object_set_new(unit, "payments", json_pack("{s:[O]}", "captures", cap));
    json_object_set_new(order, "status", json_string("COMPLETED"));
    json_object_set_new(order, "update_time", json_string(now));
    set_links(order, base);

    /* The capture on its own, for refunds: where it belongs and what is left. */
    json_t *stored = json_deep_copy(cap);
    json_object_set(stored, "order_id", json_object_get(order, "id"));
    json_object_set_new(stored, "refunded_thousandths", json_integer(0));
    json_object_set_new(mock_bucket("paypal.captures"), cid, stored);
    json_decref(cap);

    json_t *pub = public_order(order);
    mock_json(rs, 201, order_view(rq, pub, true));
    json_decref(pub);
    debug_id(rs, NULL, 0);
    remember(rkey, rq, rs);
}

/* Keep the capture inside its order in step with the stored one. */
static void sync_order_capture(json_t *stored)
{
    json_t *order = json_object_get(mock_bucket("paypal.orders"),
                                    json_string_value(json_object_get(stored, "order_id")));
    json_t *cap = json_array_get(
        json_object_get(json_object_get(json_array_get(json_object_get(order, "purchase_units"),
                                                       0),
                                        "payments"),
                        "captures"),
        0);
    if (cap != NULL) {
        json_object_set(cap, "status", json_object_get(stored, "status"));
    }
}

static void refund_capture(const struct mock_req *rq, struct mock_resp *rs)
{
    char key[512];
    if (!authorized(rq, rs)) {
        return;
    }
    const char *rkey = request_key(rq, key, sizeof(key));
    if (replay(rkey, rs)) {
        return;
    }
    json_t *in = rq->body_len ? json_loadb(rq->body, rq->body_len, 0, NULL) : json_object();
    json_t *stored = json_object_get(mock_bucket("paypal.captures"), rq->params[0]);
    if (!json_is_object(in)) {
        invalid_request(rs, "/", "MALFORMED_REQUEST_JSON", "The request JSON is not well formed.");
        goto out;
    }
    if (stored == NULL) {
        not_found(rs, "capture_id", rq->params[0]);
        goto out;
    }
    const char *status = json_string_value(json_object_get(stored, "status"));
    if (strcmp(status, "REFUNDED") == 0) {
        unprocessable(rs, "CAPTURE_FULLY_REFUNDED", "The capture has already been fully "
                                                    "refunded.");
        goto out;
    }
    if (strcmp(status, "COMPLETED") != 0 && strcmp(status, "PARTIALLY_REFUNDED") != 0) {
        unprocessable(rs, "REFUND_NOT_ALLOWED", "Refund cannot be issued for this capture.");
        goto out;
    }
    const char *cur = json_string_value(json_object_get(json_object_get(stored, "amount"),
                                                        "currency_code"));
    long long total = 0, want = 0;
    int nd = 0;
    parse_value(json_string_value(json_object_get(json_object_get(stored, "amount"), "value")),
                &total, &nd);
    long long refunded = json_integer_value(json_object_get(stored, "refunded_thousandths"));
    long long left = total - refunded;
    json_t *amount = json_object_get(in, "amount");
    if (amount != NULL) {
        const char *rcur = json_string_value(json_object_get(amount, "currency_code"));
        if (!parse_value(json_string_value(json_object_get(amount, "value")), &want, &nd)) {
            invalid_request(rs, "/amount/value", "INVALID_PARAMETER_SYNTAX",
                            "The value of a field does not conform to the expected format.");
            goto out;
        }
        if (rcur == NULL || strcmp(rcur, cur) != 0) {
            unprocessable(rs, "REFUND_CAPTURE_CURRENCY_MISMATCH",
                          "Refund must be in the same currency as the capture.");
            goto out;
        }
        if (want <= 0 || nd > decimals(cur)) {
            unprocessable(rs, want <= 0 ? "CANNOT_BE_ZERO_OR_NEGATIVE" : "DECIMAL_PRECISION",
                          "The refund amount is not valid.");
            goto out;
        }
        if (want > left) {
            unprocessable(rs, "REFUND_AMOUNT_EXCEEDED",
                          "The refund amount must be less than or equal to the capture amount "
                          "that has not yet been refunded.");
            goto out;
        }
    } else {
        want = left;
    }
    refunded += want;
    json_object_set_new(stored, "refunded_thousandths", json_integer(refunded));
    json_object_set_new(stored, "status",
                        json_string(refunded >= total ? "REFUNDED" : "PARTIALLY_REFUNDED"));
    sync_order_capture(stored);

    char rid[24], now[32], base[300], self[512], up[512];
    make_id(rid, sizeof(rid), "REFMOCK", "paypal.refund");
    iso_now(now, sizeof(now));
    base_url(rq, base, sizeof(base));
    snprintf(self, sizeof(self), "%s/v2/payments/refunds/%s", base, rid);
    snprintf(up, sizeof(up), "%s/v2/payments/captures/%s", base, rq->params[0]);
    json_t *re = json_object();
    json_object_set_new(re, "id", json_string(rid));
    json_object_set_new(re, "status", json_string("COMPLETED"));
    json_object_set_new(re, "amount", money(want, cur));
    json_object_set_new(re, "create_time", json_string(now));
    json_object_set_new(re, "update_time", json_string(now));
    json_object_set_new(re, "links",
                        json_pack("[o,o]", link(self, "self", "GET"), link(up, "up", "GET")));
    json_t *kept = json_deep_copy(re);
    json_object_set_new(kept, "capture_id", json_string(rq->params[0]));
    json_object_set_new(mock_bucket("paypal.refunds"), rid, kept);
    mock_json(rs, 201, re);
    debug_id(rs, NULL, 0);
    remember(rkey, rq, rs);
out:
    json_decref(in);
}

/* ------------------------------------------------------------------ */
/* Webhooks: the signing certificate and the verify API (§10.4)         */

#define PP_WH_CERT_NAME "CERT-360caa42-fca2a594-a5cafa77"
#define PP_WH_ID "dfb3be50-fd74-11e4-8bf3-77339302725b"
#define PP_WH_TIME "2015-05-18T15:45:13Z"
#define PP_WH_WEBHOOK_ID "4JH86294D6297924G"
#define PP_WH_SIG                                                                          \
    "thy4/U002quzxFavHPwbfJGcc46E8rc5jzgyeafWm5mICTBdY/8rl7WJpn8JA0GKA+oDTPsSruqusw+XXg5R" \
    "LAP7ip53Euh9Xu3UbUhQFX7UgwzE2FeYoY6lyRMiiiQLzy9BvHfIzNIVhPad4KnC339dr6y2l+mN8ALgI4G" \
    "CdIh3/SoJO5wE64Bh/ueWtt8EVuvsvXfda2Le5a2TrOI9vLEzsm9GS79hAR/5oLexNz8UiZr045Mr5ObroH4" \
    "w4oNfmkTaDk9Rj0G19uvISs5QzgmBpauKr7Nw++JI0pr/v5mFctQkoWJSGfBGzPRXawrvIIVHQ9Wer48GR2g" \
    "9ZiApWg=="

/* tests/fixtures/paypal/cert.pem (PROVIDERS.md §10.4) */
static const char pp_wh_cert[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIHqDCCBpCgAwIBAgIQCSVMkxB1Kw9SPZtpAr3lTDANBgkqhkiG9w0BAQsFADB1\n"
    "MQswCQYDVQQGEwJVUzEVMBMGA1UEChMMRGlnaUNlcnQgSW5jMRkwFwYDVQQLExB3\n"
    "d3cuZGlnaWNlcnQuY29tMTQwMgYDVQQDEytEaWdpQ2VydCBTSEEyIEV4dGVuZGVk\n"
    "IFZhbGlkYXRpb24gU2VydmVyIENBMB4XDTE1MDMxODAwMDAwMFoXDTE3MDMyMjEy\n"
    "MDAwMFowggElMR0wGwYDVQQPDBRQcml2YXRlIE9yZ2FuaXphdGlvbjETMBEGCysG\n"
    "AQQBgjc8AgEDEwJVUzEZMBcGCysGAQQBgjc8AgECEwhEZWxhd2FyZTEQMA4GA1UE\n"
    "BRMHMzAxNDI2NzEWMBQGA1UECRMNMjIxMSBOIDFzdCBTdDEOMAwGA1UEERMFOTUx\n"
    "MzExCzAJBgNVBAYTAlVTMRMwEQYDVQQIEwpDYWxpZm9ybmlhMREwDwYDVQQHEwhT\n"
    "YW4gSm9zZTEVMBMGA1UEChMMUGF5UGFsLCBJbmMuMRgwFgYDVQQLEw9QYXJ0bmVy\n"
    "IFN1cHBvcnQxNDAyBgNVBAMTK21lc3NhZ2V2ZXJpZmljYXRpb25jZXJ0cy5zYW5k\n"
    "Ym94LnBheXBhbC5jb20wggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDI\n"
    "XgwJj1E+vPOLNA7e3nFsRpQq7G1CFcoCNeRgFIGRfd4itt2jBRPfHXf1eeXODQ6V\n"
    "wTMP6rVYrI3HBQu5SZRZKO3gALPiBWTcz5FhVovYDz/d/DtasA5L7l1xmRM+GGPE\n"
    "e/D3ETPeyym6GTAuIzR1ju1BuSQlVnIrcILDHrFZo0RyqFH1eNL3oYfgz+ZCv+WH\n"
    "65rhS60VowiLAb2lsARckJ2P8wKIps3YUxAqVG5SJ9H49ueBDI01wEzE/+59J8s9\n"
    "GThmbMTqP6x4MneAcGN1TPimGd9wZlbwwrCYDtCoqFDcxMVgvD83uPrIinFwTIOX\n"
    "w63QSv8/+ANuawBcNJDrAgMBAAGjggOAMIIDfDAfBgNVHSMEGDAWgBQ901Cl1qCt\n"
    "7vNKYApl0yHU+PjWDzAdBgNVHQ4EFgQUt5yLggZOjjfzULzZCgX2KZO3R/gwNgYD\n"
    "VR0RBC8wLYIrbWVzc2FnZXZlcmlmaWNhdGlvbmNlcnRzLnNhbmRib3gucGF5cGFs\n"
    "LmNvbTAOBgNVHQ8BAf8EBAMCBaAwHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUF\n"
    "BwMCMHUGA1UdHwRuMGwwNKAyoDCGLmh0dHA6Ly9jcmwzLmRpZ2ljZXJ0LmNvbS9z\n"
    "aGEyLWV2LXNlcnZlci1nMS5jcmwwNKAyoDCGLmh0dHA6Ly9jcmw0LmRpZ2ljZXJ0\n"
    "LmNvbS9zaGEyLWV2LXNlcnZlci1nMS5jcmwwQgYDVR0gBDswOTA3BglghkgBhv1s\n"
    "AgEwKjAoBggrBgEFBQcCARYcaHR0cHM6Ly93d3cuZGlnaWNlcnQuY29tL0NQUzCB\n"
    "iAYIKwYBBQUHAQEEfDB6MCQGCCsGAQUFBzABhhhodHRwOi8vb2NzcC5kaWdpY2Vy\n"
    "dC5jb20wUgYIKwYBBQUHMAKGRmh0dHA6Ly9jYWNlcnRzLmRpZ2ljZXJ0LmNvbS9E\n"
    "aWdpQ2VydFNIQTJFeHRlbmRlZFZhbGlkYXRpb25TZXJ2ZXJDQS5jcnQwDAYDVR0T\n"
    "AQH/BAIwADCCAX0GCisGAQQB1nkCBAIEggFtBIIBaQFnAHUApLkJkLQYWBSHuxOi\n"
    "zGdwCjw1mAT5G9+443fNDsgN3BAAAAFMLovtNgAABAMARjBEAiBTR7r3p76qUJzF\n"
    "23lsbD/cLsA0KlxoJRSIvIK0OIYWiQIgVQWja8tWBlpcoFP30Iym7IuczitSazpH\n"
    "fhKAVroTgXgAdgBo9pj4H2SCvjqM7rkoHUz8cVFdZ5PURNEKZ6y7T0/7xAAAAUwu\n"
    "i+z4AAAEAwBHMEUCIEP3VYyLQB7lOgFo4WstyOurmRe3xa0OVaeFL/bDohHOAiEA\n"
    "+xQrRVAfaeT4qBdBJzLyVLU4V9bh/qBMXJdjvYujhAcAdgBWFAaaL9fC7NP14b1E\n"
    "sj7HRna5vJkRXMDvlJhV1onQ3QAAAUwui+6EAAAEAwBHMEUCIQC/YUc5X6xyb3ho\n"
    "o4VMSJqSoNg9KKkvLh9nUQCdwHi3/QIgNwcBc9ZZCR/aWXQ7hKH6d39kpkDX2Z43\n"
    "XPy/Kl5sKI4wDQYJKoZIhvcNAQELBQADggEBAHixEZNpb0M1MsvsfNI6lLKxrs9s\n"
    "JkcBcmxrFyhTC8KP+Qp+Z1fnMRQwpTLIMr1+uAMqCPAnIShGHeFNJpUFSMyW4o0l\n"
    "+pZGz/L/YJBs7XP3ChSGC17ZKeGSQFfMqMQXfY/L6+n/1HkAwqmewqUMEuUmWN3F\n"
    "kXJqVngIYGZtxXRyiv2azLOhrNP8BgNZK6d2gVxntQfGr4hnd8Juq8SJy/S4xpPY\n"
    "YPD8vW7/wSOdAe1/kU38QwDVBQ5PJePS2WFwz8YA/eKcyg9lfsianfw35SjehJbn\n"
    "wGwzUbjtibyJnv3eAeYDGxaI6vbuoE99pSmYGIwSBLJwZamJHjci6HL6wLg=\n"
    "-----END CERTIFICATE-----\n";

/* tests/fixtures/paypal/webhook_body.json: 1288 bytes, no trailing newline */
static const char pp_wh_body[] =
    "{\"id\":\"WH-0G2756385H040842W-5Y612302CV158622M\",\"create_time\":\"2015-05-18T15:45:13Z"
    "\",\"resource_type\":\"sale\",\"event_type\":\"PAYMENT.SALE.COMPLETED\",\"summary\":\"Paym"
    "ent completed for $ 20.0 USD\",\"resource\":{\"id\":\"4EU7004268015634R\",\"create_time\":"
    "\"2015-05-18T15:44:02Z\",\"update_time\":\"2015-05-18T15:44:21Z\",\"amount\":{\"total\":\""
    "20.00\",\"currency\":\"USD\"},\"payment_mode\":\"INSTANT_TRANSFER\",\"state\":\"completed"
    "\",\"protection_eligibility\":\"ELIGIBLE\",\"protection_eligibility_type\":\"ITEM_NOT_RECE"
    "IVED_ELIGIBLE,UNAUTHORIZED_PAYMENT_ELIGIBLE\",\"parent_payment\":\"PAY-86C81811X5228590KKV"
    "NARQQ\",\"transaction_fee\":{\"value\":\"0.88\",\"currency\":\"USD\"},\"links\":[{\"href\""
    ":\"https://api.sandbox.paypal.com/v1/payments/sale/4EU7004268015634R\",\"rel\":\"self\",\""
    "method\":\"GET\"},{\"href\":\"https://api.sandbox.paypal.com/v1/payments/sale/4EU700426801"
    "5634R/refund\",\"rel\":\"refund\",\"method\":\"POST\"},{\"href\":\"https://api.sandbox.pay"
    "pal.com/v1/payments/payment/PAY-86C81811X5228590KKVNARQQ\",\"rel\":\"parent_payment\",\"me"
    "thod\":\"GET\"}]},\"links\":[{\"href\":\"https://api.sandbox.paypal.com/v1/notifications/w"
    "ebhooks-events/WH-0G2756385H040842W-5Y612302CV158622M\",\"rel\":\"self\",\"method\":\"GET"
    "\"},{\"href\":\"https://api.sandbox.paypal.com/v1/notifications/webhooks-events/WH-0G27563"
    "85H040842W-5Y612302CV158622M/resend\",\"rel\":\"resend\",\"method\":\"POST\"}]}";

static void webhook_cert(const struct mock_req *rq, struct mock_resp *rs)
{
    if (strcmp(rq->params[0], PP_WH_CERT_NAME) != 0) {
        mock_json(rs, 404, json_pack("{s:s, s:[], s:s}", "name", "INVALID_RESOURCE_ID",
                                     "details", "message", "Resource id is invalid"));
        debug_id(rs, NULL, 0);
        return;
    }
    free(rs->body);
    rs->status = 200;
    rs->body = strdup(pp_wh_cert);
    snprintf(rs->content_type, sizeof(rs->content_type), "application/x-pem-file");
}

static bool str_is(json_t *o, const char *key, const char *want)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v != NULL && strcmp(v, want) == 0;
}

static void verify_webhook(const struct mock_req *rq, struct mock_resp *rs)
{
    static const char *const required[] = {"auth_algo",         "cert_url",
                                           "transmission_id",   "transmission_sig",
                                           "transmission_time", "webhook_id"};
    if (!authorized(rq, rs)) {
        return;
    }
    json_t *in = json_loadb(rq->body, rq->body_len, 0, NULL);
    if (!json_is_object(in)) {
        invalid_request(rs, "/", "MALFORMED_REQUEST_JSON", "The request JSON is not well formed.");
        json_decref(in);
        return;
    }
    const char *missing = NULL;
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]) && !missing; i++) {
        const char *v = json_string_value(json_object_get(in, required[i]));
        if (v == NULL || v[0] == '\0') {
            missing = required[i];
        }
    }
    if (missing == NULL && !json_is_object(json_object_get(in, "webhook_event"))) {
        missing = "webhook_event";
    }
    if (missing != NULL) {
        char field[64];
        snprintf(field, sizeof(field), "/%s", missing);
        pp_error(rs, 400, "VALIDATION_ERROR", "Invalid request - see details", field, NULL,
                 "body", "MISSING_REQUIRED_PARAMETER", "A required field is missing.");
        json_decref(in);
        return;
    }
    bool all = json_is_true(json_object_get(mock_bucket("paypal.webhooks"), "verify_all"));
    /* The §10.4 delivery, with the event's bytes exactly as PayPal sent them. */
    size_t blen = sizeof(pp_wh_body) - 1;
    bool raw = rq->body_len >= blen && memmem(rq->body, rq->body_len, pp_wh_body, blen) != NULL;
    bool vector = raw && str_is(in, "transmission_sig", PP_WH_SIG) &&
                  str_is(in, "transmission_id", PP_WH_ID) &&
                  str_is(in, "transmission_time", PP_WH_TIME) &&
                  str_is(in, "webhook_id", PP_WH_WEBHOOK_ID) &&
                  str_is(in, "auth_algo", "SHA256withRSA");
    mock_json(rs, 200, json_pack("{s:s}", "verification_status",
                                 all || vector ? "SUCCESS" : "FAILURE"));
    debug_id(rs, NULL, 0);
    json_decref(in);
}

static void verify_all_control(const struct mock_req *rq, struct mock_resp *rs)
{
    json_t *in = json_loadb(rq->body, rq->body_len, 0, NULL);
    json_t *v = json_object_get(in, "verify_all");
    if (!json_is_boolean(v)) {
        mock_json(rs, 400, json_pack("{s:s}", "error", "body: {\"verify_all\": true | false}"));
        json_decref(in);
        return;
    }
    json_object_set(mock_bucket("paypal.webhooks"), "verify_all", v);
    mock_json(rs, 200, json_pack("{s:O}", "verify_all", v));
    json_decref(in);
}

static const struct mock_route routes[] = {
    {"POST", "/v1/oauth2/token", issue_token, NULL},
    /* PayPal-Request-Id is handled here, not by the generic replay: PayPal
     * answers a replay with 200 where the first answer was 201. */
    {"POST", "/v2/checkout/orders", create_order, NULL},
    {"GET", "/v2/checkout/orders/*", get_order, NULL},
    {"POST", "/v2/checkout/orders/*/capture", capture_order, NULL},
    {"POST", "/v2/payments/captures/*/refund", refund_capture, NULL},
    {"GET", "/checkoutnow", checkoutnow, NULL},
    {"GET", "/v1/notifications/certs/*", webhook_cert, NULL},
    {"POST", "/v1/notifications/verify-webhook-signature", verify_webhook, NULL},
    /* Test controls (never recorded, never faulted). */
    {"POST", "/_mock/paypal/approve/*", approve_control, NULL},
    {"POST", "/_mock/paypal/revoke_tokens", revoke_tokens, NULL},
    {"POST", "/_mock/paypal/verify_all", verify_all_control, NULL},
    {NULL, NULL, NULL, NULL},
};

const struct mock_provider mock_paypal = {"paypal", routes, NULL};
