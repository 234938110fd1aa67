/* wh_fetch — a webhook-only test plugin whose verification needs a request,
 * like PayPal's certificate: verify() first fetches the signing key from
 * key_url (AGAPE_STEP_SEND), caches it in the provider cache for a minute,
 * and checks header Fetch-Signature = lowercase hex HMAC-SHA256(key, body).
 * normalize() reads {"id", "type"} like the sandbox. Used by
 * tests/integration/test_webhooks.py to drive the asynchronous verify path. */
#include <agape/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct wh_fetch_ctx {
    char *key_url;
};

static void wh_fetch_destroy(void *ctx)
{
    struct wh_fetch_ctx *c = ctx;
    if (c != NULL) {
        free(c->key_url);
        free(c);
    }
}

static int wh_fetch_init(const struct agape_host *host, const struct agape_json *conf,
                         void **ctx, char *err, size_t errlen)
{
    const char *url = host->json_str(conf, "key_url");
    if (url == NULL || *url == '\0') {
        snprintf(err, errlen, "key_url is required");
        return AGAPE_EINVAL;
    }
    struct wh_fetch_ctx *c = calloc(1, sizeof(*c));
    size_t n = strlen(url) + 1;
    if (c == NULL || (c->key_url = malloc(n)) == NULL) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return AGAPE_ENOMEM;
    }
    memcpy(c->key_url, url, n);
    *ctx = c;
    return AGAPE_OK;
}

static enum agape_step wh_fetch_done(struct agape_call *call, enum agape_outcome o,
                                     const char *why)
{
    call->outcome = o;
    if (why != NULL) {
        snprintf(call->err, sizeof(call->err), "%s", why);
    }
    return AGAPE_STEP_DONE;
}

static enum agape_step wh_fetch_check(struct agape_call *call, const char *key, size_t klen,
                                      const char *sig)
{
    const struct agape_host *h = call->host;
    unsigned char mac[32];
    struct agape_buf *hex = h->buf_new();
    enum agape_step st;
    if (hex == NULL ||
        h->hmac_sha256(key, klen, call->webhook->body, call->webhook->body_len, mac) !=
            AGAPE_OK ||
        h->hex(hex, mac, sizeof(mac)) != AGAPE_OK) {
        h->buf_free(hex);
        snprintf(call->err, sizeof(call->err), "out of memory");
        return AGAPE_STEP_FAIL;
    }
    if (h->ct_equal(h->buf_data(hex), h->buf_len(hex), sig, strlen(sig))) {
        st = wh_fetch_done(call, AGAPE_OUTCOME_OK, NULL);
    } else {
        st = wh_fetch_done(call, AGAPE_OUTCOME_INVALID, "Fetch-Signature does not match");
    }
    h->buf_free(hex);
    return st;
}

static enum agape_step wh_fetch_verify(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct wh_fetch_ctx *c = call->ctx;
    const char *sig = h->webhook_header(call, "Fetch-Signature");
    if (sig == NULL) {
        return wh_fetch_done(call, AGAPE_OUTCOME_INVALID, "No Fetch-Signature header");
    }
    if (call->step == 0) {
        const char *key = h->cache_get(call, "key");
        if (key != NULL) {
            return wh_fetch_check(call, key, strlen(key), sig);
        }
        if (h->req_start(call, "GET", c->key_url) != AGAPE_OK) {
            snprintf(call->err, sizeof(call->err), "cannot build the key request");
            return AGAPE_STEP_FAIL;
        }
        return AGAPE_STEP_SEND;
    }
    if (call->resp == NULL || call->resp->status != 200 || call->resp->body_len == 0) {
        return wh_fetch_done(call, AGAPE_OUTCOME_INVALID, "the signing key could not be fetched");
    }
    h->cache_put(call, "key", call->resp->body, 60000);
    return wh_fetch_check(call, call->resp->body, call->resp->body_len, sig);
}

static enum agape_step wh_fetch_normalize(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    struct agape_json *ev = h->json_parse(call->webhook->body, call->webhook->body_len, NULL, 0);
    const char *id = h->json_str(ev, "id");
    const char *type = h->json_str(ev, "type");
    enum agape_step st = AGAPE_STEP_DONE;
    if (id == NULL || type == NULL) {
        st = wh_fetch_done(call, AGAPE_OUTCOME_INVALID, "id and type are required");
    } else if (h->json_set_str(call->result, "event_id", id) != AGAPE_OK ||
               h->json_set_str(call->result, "type", type) != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        st = AGAPE_STEP_FAIL;
    } else {
        call->outcome = AGAPE_OUTCOME_OK;
    }
    h->json_free(ev);
    return st;
}

static const struct agape_webhook_ops wh_fetch_webhook = {
    .size = sizeof(struct agape_webhook_ops),
    .verify = wh_fetch_verify,
    .normalize = wh_fetch_normalize,
};

static const struct agape_option wh_fetch_options[] = {
    {.name = "key_url",
     .flags = AGAPE_OPT_REQUIRED,
     .description = "where the signing key is fetched from"},
    {.name = NULL},};

static const struct agape_plugin wh_fetch_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "wh_fetch",
    .version = "1.0.0",
    .kinds = AGAPE_KIND_WEBHOOK,
    .options = wh_fetch_options,
    .init = wh_fetch_init,
    .destroy = wh_fetch_destroy,
    .webhook = &wh_fetch_webhook,
};

AGAPE_PLUGIN_DEFINE(wh_fetch_plugin)
