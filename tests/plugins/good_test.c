/* good_test — the smallest valid payment plugin, for the loader and host
 * tests. charge: POST <base_url>/charge with a form body and Basic auth; on
 * the answer, a 2xx with {"id": …} is a success, other statuses map to the
 * outcome taxonomy. */
#include <agape/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOOD_TEST_DEFAULT_BASE "http://127.0.0.1:9"

struct good_test_ctx {
    char *base_url;
    char *api_key;
};

static char *good_test_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) {
        memcpy(d, s, n);
    }
    return d;
}

static void good_test_destroy(void *ctx)
{
    struct good_test_ctx *c = ctx;
    if (c == NULL) {
        return;
    }
    free(c->base_url);
    free(c->api_key);
    free(c);
}

static int good_test_init(const struct agape_host *host, const struct agape_json *conf,
                          void **ctx, char *err, size_t errlen)
{
    const char *key = host->json_str(conf, "api_key");
    const char *base = host->json_str(conf, "base_url");
    if (key == NULL || *key == '\0') {
        snprintf(err, errlen, "api_key is required");
        return AGAPE_EINVAL;
    }
    struct good_test_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return AGAPE_ENOMEM;
    }
    c->base_url = good_test_dup(base ? base : GOOD_TEST_DEFAULT_BASE);
    c->api_key = good_test_dup(key);
    if (c->base_url == NULL || c->api_key == NULL) {
        good_test_destroy(c);
        snprintf(err, errlen, "out of memory");
        return AGAPE_ENOMEM;
    }
    *ctx = c;
    return AGAPE_OK;
}

static enum agape_step good_test_charge_request(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct good_test_ctx *c = call->ctx;
    enum agape_step r = AGAPE_STEP_FAIL;
    struct agape_buf *url = h->buf_new();
    struct agape_buf *body = h->buf_new();
    char amount[32];

    const char *currency = h->json_str(call->input, "currency");
    int64_t amt = h->json_int(call->input, "amount", -1);
    if (currency == NULL || amt < 0) {
        snprintf(call->err, sizeof(call->err), "amount and currency are required");
        goto out;
    }
    if (url == NULL || body == NULL) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        goto out;
    }
    snprintf(amount, sizeof(amount), "%lld", (long long)amt);
    h->buf_printf(url, "%s/charge", c->base_url);
    h->form_add(body, "amount", amount);
    h->form_add(body, "currency", currency);
    if (h->form_add(body, "metadata[payment_id]", h->json_str(call->input, "payment_id")) !=
            AGAPE_OK ||
        h->req_start(call, "POST", h->buf_data(url)) != AGAPE_OK ||
        h->req_basic_auth(call, c->api_key, "") != AGAPE_OK ||
        h->req_body(call, "application/x-www-form-urlencoded", h->buf_data(body),
                    h->buf_len(body)) != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "could not build the request");
        goto out;
    }
    const char *idem = h->json_str(call->input, "idempotency_key");
    if (idem != NULL && h->req_header(call, "Idempotency-Key", idem) != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "idempotency_key is not a valid header value");
        goto out;
    }
    r = AGAPE_STEP_SEND;
out:
    h->buf_free(url);
    h->buf_free(body);
    return r;
}

static enum agape_step good_test_charge_answer(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    int status = call->resp->status;
    if (status == 401 || status == 403) {
        call->outcome = AGAPE_OUTCOME_AUTH;
        return AGAPE_STEP_DONE;
    }
    if (status == 402) {
        call->outcome = AGAPE_OUTCOME_DECLINED;
        h->json_set_str(call->result, "status", "failed");
        return AGAPE_STEP_DONE;
    }
    if (status == 429) {
        call->outcome = AGAPE_OUTCOME_RATE_LIMITED;
        return AGAPE_STEP_DONE;
    }
    if (status >= 500) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        return AGAPE_STEP_DONE;
    }
    if (status < 200 || status > 299) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        snprintf(call->err, sizeof(call->err), "provider answered %d", status);
        return AGAPE_STEP_DONE;
    }
    struct agape_json *doc = h->json_parse(call->resp->body, call->resp->body_len, NULL, 0);
    const char *id = h->json_str(doc, "id");
    if (id == NULL) {
        /* The provider did something we cannot read: for money, that is unknown. */
        snprintf(call->err, sizeof(call->err), "response has no id");
        call->outcome = AGAPE_OUTCOME_UNKNOWN;
    } else {
        h->json_set_str(call->result, "provider_ref", id);
        h->json_set_str(call->result, "status", "succeeded");
        call->outcome = AGAPE_OUTCOME_OK;
    }
    h->json_free(doc);
    return AGAPE_STEP_DONE;
}

static enum agape_step good_test_charge(struct agape_call *call)
{
    return call->resp == NULL ? good_test_charge_request(call) : good_test_charge_answer(call);
}

static const struct agape_payment_ops good_test_payment = {
    .size = sizeof(struct agape_payment_ops),
    .charge = good_test_charge,
};

static const struct agape_option good_test_options[] = {
    {.name = "api_key",
     .flags = AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET,
     .env = "GOOD_TEST_KEY",
     .description = "the test API key"},
    {.name = "base_url", .description = "where the fake provider listens"},
    {.name = NULL},};

static const struct agape_plugin good_test_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "good_test",
    .version = "1.0.0",
    .kinds = AGAPE_KIND_PAYMENT,
    .options = good_test_options,
    .init = good_test_init,
    .destroy = good_test_destroy,
    .payment = &good_test_payment,
};

AGAPE_PLUGIN_DEFINE(good_test_plugin)
