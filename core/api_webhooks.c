/* api_webhooks — POST /v1/webhooks/{provider} and the admin endpoints of the
 * webhook inbox (see api.h; the record and id formats are in webhook.h).
 *
 * The life of a delivery:
 *   1. the provider must exist, be usable and receive webhooks (else 404);
 *   2. the plugin's verify step runs over the raw body, the request headers
 *      and the public URL; a step that needs a request (a certificate, a
 *      verify API: AGAPE_STEP_SEND) is sent through the client while the
 *      connection is suspended, and the step runs again with the answer;
 *      anything but "authentic" is a 400 invalid_signature and nothing is
 *      stored;
 *   3. normalize gives the event id and type (required);
 *   4. the inbox record and its outbox item are committed in one batch whose
 *      inbox write is an insert: a second delivery of the same event fails it
 *      with AGAPE_EEXIST and is answered `"duplicate": true` with nothing run;
 *   5. only after the commit is durable is the 200 sent (the connection is
 *      suspended meanwhile, so concurrent deliveries share group commits);
 *      the worker (worker.c) runs the event afterwards. */
#include "api.h"

#include "log.h"
#include "script_rules.h"
#include "store_keys.h"
#include "webhook.h"
#include "worker.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WH_MAX_HEADERS 64
#define WH_MAX_SEND_STEPS 4      /* requests one verification may need */
#define WH_LIST_DEFAULT 50
#define WH_LIST_MAX 500
#define WH_URL_MAX 8192

struct wh_work {
    struct provider *prov;
    const struct agape_webhook_ops *ops;
    struct host_call hc;
    bool hc_open;
    struct client_xfer xfer;
    struct client_header hdrs[WH_MAX_HEADERS];
    int n_hdrs;
    struct agape_webhook wh;
    struct agape_buf url;
    int sends;
    char event_id[WEBHOOK_EVENT_ID_MAX + 1];
    int commit_rc;
};

static void wh_free(void *p)
{
    struct wh_work *w = p;
    if (w == NULL) {
        return;
    }
    if (w->hc_open) {
        host_call_fini(&w->hc);
    }
    client_xfer_reset(&w->xfer);
    buf_fini(&w->url);
    free(w);
}

static void set_route(struct httpd_req *r, const char *route)
{
    snprintf(r->route, sizeof(r->route), "%s", route);
}

/* ---- the public URL ------------------------------------------------- */

struct query_ctx {
    struct agape_buf *b;
    bool first;
};

static int url_escape(struct agape_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = AGAPE_OK;
    for (const unsigned char *p = (const unsigned char *)s; *p && rc == AGAPE_OK; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            rc = buf_add(b, p, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = buf_add(b, e, 3);
        }
    }
    return rc;
}

static enum MHD_Result add_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct query_ctx *q = cls;
    (void)kind;
    buf_add(q->b, q->first ? "?" : "&", 1);
    q->first = false;
    url_escape(q->b, key);
    if (value != NULL) {
        buf_add(q->b, "=", 1);
        url_escape(q->b, value);
    }
    return MHD_YES;
}

/* public_url (without a trailing '/') + path + the query string. libmicrohttpd
 * hands the query over decoded, so it is encoded again (RFC 3986 unreserved
 * characters kept): schemes that sign the URL must be configured with URLs
 * in that form. */
static int build_url(struct httpd_req *r, struct agape_buf *b)
{
    const char *base = r->app->conf->public_url ? r->app->conf->public_url : "";
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') {
        bl--;
    }
    buf_add(b, base, bl);
    buf_adds(b, r->path);
    struct query_ctx q = {b, true};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_query_arg, &q);
    return b->error != AGAPE_OK ? AGAPE_ERANGE : AGAPE_OK;
}

/* ---- receive ---------------------------------------------------------- */

static void wh_committed(struct httpd_req *r)
{
    struct wh_work *w = r->work;
    if (w->commit_rc == AGAPE_OK || w->commit_rc == AGAPE_EEXIST) {
        httpd_reply_json(r, 200,
                         json_pack("{s:b, s:s, s:b}", "received", 1, "id", w->event_id,
                                   "duplicate", w->commit_rc == AGAPE_EEXIST));
        return;
    }
    log_event(AGAPE_LOG_ERROR,
              &(struct log_fields){.request_id = r->id, .provider = w->prov->name,
                                   .latency_ms = -1},
              "webhook %s could not be stored (rc %d)", w->event_id, w->commit_rc);
    httpd_reply_error(r, 503, "not_ready", NULL,
                      "the webhook could not be stored; deliver it again later");
}

static void commit_done(int rc, void *arg)
{
    struct httpd_req *r = arg;
    struct wh_work *w = r->work;
    w->commit_rc = rc;
    if (rc == AGAPE_OK) {
        worker_notify();
    }
    httpd_resume(r); /* writer thread → a server thread runs wh_committed */
}

/* Verified: normalize, then commit inbox + outbox (suspends). */
static void wh_verified(struct httpd_req *r)
{
    struct wh_work *w = r->work;
    host_call_fini(&w->hc);
    w->hc_open = false;
    json_t *in = json_object();
    host_call_init(&w->hc, w->prov, "normalize", in, &w->xfer);
    json_decref(in);
    w->hc_open = true;
    w->hc.pub.webhook = &w->wh;
    w->hc.wh_headers = w->hdrs;
    w->hc.n_wh_headers = w->n_hdrs;
    enum agape_step st = host_call_step(&w->hc, w->ops->normalize);
    json_t *res = w->hc.result;
    json_t *eid = json_object_get(res, "event_id");
    json_t *type = json_object_get(res, "type");
    if (st != AGAPE_STEP_DONE || w->hc.pub.outcome != AGAPE_OUTCOME_OK) {
        httpd_reply_error(r, 400, "invalid_request", NULL, "the %s event was not understood: %s",
                          w->prov->name,
                          w->hc.pub.err[0] ? w->hc.pub.err : "the plugin could not read it");
        return;
    }
    if (!json_is_string(eid) ||
        !webhook_event_id_ok(json_string_value(eid), json_string_length(eid)) ||
        !json_is_string(type) || json_string_length(type) == 0 ||
        json_string_length(type) > 200) {
        httpd_reply_error(r, 400, "invalid_request", NULL,
                          "the %s event has no usable event id and type", w->prov->name);
        return;
    }
    snprintf(w->event_id, sizeof(w->event_id), "%s", json_string_value(eid));

    struct worker_conf wc;
    worker_conf_load(r->app->conf, &wc);
    int64_t now = client_wall_ms();
    int64_t due = now + wc.first_delay_ms;
    uint8_t ok_key[16];
    char hex[33];
    uint8_t ik[STORE_KEY_MAX];
    size_t ikl = 0;
    if (script_rules_outbox_key(ok_key, due) != AGAPE_OK ||
        webhook_inbox_key(w->prov->name, w->event_id, ik, sizeof(ik), &ikl) != AGAPE_OK) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the webhook could not be stored");
        return;
    }
    webhook_outbox_hex(ok_key, hex);
    json_t *rec = webhook_inbox_record(w->prov->name, res, w->wh.body, w->wh.body_len, now, due,
                                       hex);
    char *text = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    char *item = webhook_outbox_item(w->prov->name, w->event_id);
    json_decref(rec);
    if (text == NULL || item == NULL) {
        free(text);
        free(item);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory storing the webhook");
        return;
    }
    struct store_batch *b = store_batch_new();
    store_batch_insert(b, STORE_INBOX, ik, ikl, text, strlen(text));
    store_batch_put(b, STORE_OUTBOX, ok_key, sizeof(ok_key), item, strlen(item));
    free(text);
    free(item);
    httpd_suspend(r, wh_committed);
    store_commit_async(r->app->store, b, commit_done, r);
}

static void verify_step(struct httpd_req *r);

static void xfer_done(struct client_xfer *x, void *arg)
{
    (void)x;
    httpd_resume(arg); /* client thread → a server thread runs verify_resumed */
}

static void verify_resumed(struct httpd_req *r)
{
    struct wh_work *w = r->work;
    if (w->xfer.result != CLIENT_DONE) {
        log_event(AGAPE_LOG_WARN,
                  &(struct log_fields){.request_id = r->id, .provider = w->prov->name,
                                       .latency_ms = -1},
                  "webhook verification request got no answer (%s)",
                  w->xfer.result == CLIENT_NOT_SENT ? "not sent" : "no answer");
        httpd_reply_error(r, 503, "provider_unavailable", NULL,
                          "the %s webhook could not be verified now (the verification request "
                          "failed); deliver it again later",
                          w->prov->name);
        return;
    }
    host_call_answer(&w->hc);
    verify_step(r);
}

static void verify_step(struct httpd_req *r)
{
    struct wh_work *w = r->work;
    enum agape_step st = host_call_step(&w->hc, w->ops->verify);
    if (st == AGAPE_STEP_SEND) {
        if (++w->sends > WH_MAX_SEND_STEPS) {
            httpd_reply_error(r, 400, "invalid_signature", NULL,
                              "the %s webhook could not be verified: too many verification "
                              "requests",
                              w->prov->name);
            return;
        }
        const struct conf *c = r->app->conf;
        w->xfer.connect_timeout_ms = c->connect_timeout_ms;
        w->xfer.timeout_ms = c->attempt_timeout_ms;
        w->xfer.done = xfer_done;
        w->xfer.arg = r;
        httpd_suspend(r, verify_resumed);
        client_submit(r->app->client, &w->xfer, 0);
        return;
    }
    if (st == AGAPE_STEP_DONE && w->hc.pub.outcome == AGAPE_OUTCOME_OK) {
        wh_verified(r);
        return;
    }
    enum agape_outcome o = w->hc.pub.outcome;
    if (st == AGAPE_STEP_DONE && (o == AGAPE_OUTCOME_UNAVAILABLE ||
                                  o == AGAPE_OUTCOME_RATE_LIMITED ||
                                  o == AGAPE_OUTCOME_UNKNOWN || o == AGAPE_OUTCOME_AUTH)) {
        /* The check itself could not be made (a certificate host or a verify
         * API is down, or our credentials for it are refused): not a forged
         * webhook. 503 asks the provider to deliver it again later. */
        httpd_reply_error(r, 503, "provider_unavailable", NULL,
                          "the %s webhook could not be verified now: %s; deliver it again later",
                          w->prov->name, w->hc.pub.err[0] ? w->hc.pub.err : "try later");
        return;
    }
    httpd_reply_error(r, 400, "invalid_signature", NULL, "%s",
                      w->hc.pub.err[0] ? w->hc.pub.err : "the signature could not be verified");
}

void api_webhooks_receive(struct httpd_req *r, const char *provider)
{
    struct provider *p = registry_find(r->app->reg, provider);
    if (p == NULL || !p->usable || !(p->plugin->desc->kinds & AGAPE_KIND_WEBHOOK) ||
        p->plugin->desc->webhook == NULL || p->plugin->desc->webhook->verify == NULL ||
        p->plugin->desc->webhook->normalize == NULL) {
        httpd_reply_error(r, 404, "not_found", "provider",
                          "no provider '%s' that receives webhooks", provider);
        return;
    }
    struct wh_work *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return;
    }
    r->work = w;
    r->free_work = wh_free;
    w->prov = p;
    w->ops = p->plugin->desc->webhook;
    client_xfer_init(&w->xfer);
    buf_init(&w->url, WH_URL_MAX);
    if (build_url(r, &w->url) != AGAPE_OK) {
        httpd_reply_error(r, 400, "invalid_request", NULL, "the URL is over %d bytes",
                          WH_URL_MAX);
        return;
    }
    w->n_hdrs = httpd_headers(r, w->hdrs, WH_MAX_HEADERS);
    w->wh.body = r->body.data ? r->body.data : "";
    w->wh.body_len = r->body.len;
    w->wh.url = buf_cstr(&w->url);
    w->wh.now_s = client_wall_ms() / 1000;
    json_t *in = json_object();
    host_call_init(&w->hc, p, "verify", in, &w->xfer);
    json_decref(in);
    w->hc_open = true;
    w->hc.pub.webhook = &w->wh;
    w->hc.wh_headers = w->hdrs;
    w->hc.n_wh_headers = w->n_hdrs;
    verify_step(r);
}

/* ---- admin ------------------------------------------------------------ */

struct list_ctx {
    const char *status;
    size_t limit;
    json_t *out;
    bool more;
};

static int list_cb(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct list_ctx *lc = arg;
    (void)key;
    (void)klen;
    json_t *rec = json_loadb(val, vlen, 0, NULL);
    if (rec == NULL) {
        return 0;
    }
    const char *st = json_string_value(json_object_get(rec, "status"));
    if (lc->status == NULL || (st && strcmp(st, lc->status) == 0)) {
        if (json_array_size(lc->out) == lc->limit) {
            lc->more = true;
            json_decref(rec);
            return 1;
        }
        json_array_append_new(lc->out, webhook_inbox_public(rec, false));
    }
    json_decref(rec);
    return 0;
}

static bool parse_limit(struct httpd_req *r, size_t *out)
{
    const char *s = httpd_query(r, "limit");
    *out = WH_LIST_DEFAULT;
    if (s == NULL || *s == '\0') {
        return true;
    }
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 1 || v > WH_LIST_MAX) {
        httpd_reply_error(r, 400, "invalid_request", "limit",
                          "limit must be an integer from 1 to %d", WH_LIST_MAX);
        return false;
    }
    *out = (size_t)v;
    return true;
}

void api_webhooks_list(struct httpd_req *r)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_ADMIN)) {
        return;
    }
    const char *prov = httpd_query(r, "provider");
    const char *status = httpd_query(r, "status");
    struct list_ctx lc = {0};
    if (prov && *prov == '\0') {
        prov = NULL;
    }
    if (status && *status == '\0') {
        status = NULL;
    }
    if (prov && !webhook_provider_ok(prov)) {
        httpd_reply_error(r, 400, "invalid_request", "provider", "provider is not a provider "
                                                                 "name");
        return;
    }
    if (status && strcmp(status, "pending") != 0 && strcmp(status, "done") != 0 &&
        strcmp(status, "failed") != 0) {
        httpd_reply_error(r, 400, "invalid_request", "status",
                          "status must be pending, done or failed");
        return;
    }
    if (!parse_limit(r, &lc.limit)) {
        return;
    }
    lc.status = status;
    lc.out = json_array();
    uint8_t prefix[STORE_KEY_MAX];
    size_t plen = 0;
    if (prov && store_key_pair(prefix, sizeof(prefix), prov, NULL, &plen) != AGAPE_OK) {
        plen = 0;
    }
    int rc = store_scan(r->app->store, STORE_INBOX, prefix, plen, NULL, 0, 0, list_cb, &lc);
    if (rc != AGAPE_OK) {
        json_decref(lc.out);
        httpd_reply_error(r, 503, "not_ready", NULL, "the webhook inbox is not available");
        return;
    }
    httpd_reply_json(r, 200, json_pack("{s:o, s:b}", "events", lc.out, "has_more", lc.more));
}

/* Load the event of public id `id`; answers 400/404/503 itself on failure. */
static json_t *event_load(struct httpd_req *r, const char *id, char *prov, size_t plen,
                          char *evid, size_t elen)
{
    uint8_t ik[STORE_KEY_MAX];
    size_t ikl = 0;
    char *val = NULL;
    size_t vlen = 0;
    if (webhook_parse_id(id, prov, plen, evid, elen) != AGAPE_OK ||
        webhook_inbox_key(prov, evid, ik, sizeof(ik), &ikl) != AGAPE_OK) {
        httpd_reply_error(r, 404, "not_found", "id",
                          "no webhook event '%.80s' (ids are \"<provider>:<event id>\")", id);
        return NULL;
    }
    int rc = store_get(r->app->store, STORE_INBOX, ik, ikl, &val, &vlen);
    if (rc == AGAPE_ENOENT) {
        httpd_reply_error(r, 404, "not_found", "id", "no webhook event '%.80s'", id);
        return NULL;
    }
    json_t *rec = rc == AGAPE_OK ? json_loadb(val, vlen, 0, NULL) : NULL;
    free(val);
    if (rec == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the webhook inbox is not available");
    }
    return rec;
}

void api_webhooks_get(struct httpd_req *r, const char *id)
{
    char prov[WEBHOOK_PROVIDER_MAX + 1];
    char evid[WEBHOOK_EVENT_ID_MAX + 1];
    if (!httpd_auth(r, APIKEYS_SCOPE_ADMIN)) {
        return;
    }
    json_t *rec = event_load(r, id, prov, sizeof(prov), evid, sizeof(evid));
    if (rec != NULL) {
        httpd_reply_json(r, 200, webhook_inbox_public(rec, true));
        json_decref(rec);
    }
}

void api_webhooks_replay(struct httpd_req *r, const char *id)
{
    char prov[WEBHOOK_PROVIDER_MAX + 1];
    char evid[WEBHOOK_EVENT_ID_MAX + 1];
    if (!httpd_auth(r, APIKEYS_SCOPE_ADMIN)) {
        return;
    }
    json_t *rec = event_load(r, id, prov, sizeof(prov), evid, sizeof(evid));
    if (rec == NULL) {
        return;
    }
    json_decref(rec);
    json_t *ev = NULL;
    int rc = worker_replay(r->app, prov, evid, &ev);
    if (rc == AGAPE_ENOENT) {
        httpd_reply_error(r, 404, "not_found", "id", "no webhook event '%.80s'", id);
        return;
    }
    if (rc != AGAPE_OK) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the replay could not be recorded");
        return;
    }
    httpd_reply_json(r, 200, webhook_inbox_public(ev, false));
    json_decref(ev);
}

/* GET /v1/admin/kv/{ns}/{key}: a script kv value, for operators and tests. */
void api_admin_kv_get(struct httpd_req *r, const char *ns, const char *key)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_ADMIN)) {
        return;
    }
    json_t *v = script_rules_kv_read(r->app->store, ns, key);
    if (v == NULL) {
        httpd_reply_error(r, 404, "not_found", "key", "no value %.64s/%.128s", ns, key);
        return;
    }
    httpd_reply_json(r, 200, json_pack("{s:s, s:s, s:o}", "namespace", ns, "key", key, "value",
                                       v));
}

/* GET /v1/admin/outbox?kind=&limit=: queued work items, due first. */
struct outbox_ctx {
    const char *kind;
    size_t limit;
    json_t *out;
    bool more;
};

static int outbox_cb(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct outbox_ctx *oc = arg;
    json_t *item = json_loadb(val, vlen, 0, NULL);
    const char *kind = json_string_value(json_object_get(item, "kind"));
    if (item != NULL && klen == 16 && (oc->kind == NULL || (kind && strcmp(kind, oc->kind) == 0))) {
        if (json_array_size(oc->out) == oc->limit) {
            oc->more = true;
            json_decref(item);
            return 1;
        }
        char due[32];
        webhook_iso((int64_t)store_key_read_be64(key), due);
        json_array_append_new(oc->out, json_pack("{s:s, s:O}", "due_at", due, "item", item));
    }
    json_decref(item);
    return 0;
}

void api_admin_outbox(struct httpd_req *r)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_ADMIN)) {
        return;
    }
    struct outbox_ctx oc = {0};
    oc.kind = httpd_query(r, "kind");
    if (oc.kind && *oc.kind == '\0') {
        oc.kind = NULL;
    }
    if (!parse_limit(r, &oc.limit)) {
        return;
    }
    oc.out = json_array();
    if (store_scan(r->app->store, STORE_OUTBOX, NULL, 0, NULL, 0, 0, outbox_cb, &oc) !=
        AGAPE_OK) {
        json_decref(oc.out);
        httpd_reply_error(r, 503, "not_ready", NULL, "the outbox is not available");
        return;
    }
    httpd_reply_json(r, 200, json_pack("{s:o, s:b}", "items", oc.out, "has_more", oc.more));
}

/* ---- routes ------------------------------------------------------------ */

bool api_webhooks_route(struct httpd_req *r)
{
    const char *p = r->path;
    bool get = strcmp(r->method, "GET") == 0;
    bool post = strcmp(r->method, "POST") == 0;
    static const char events[] = "/v1/webhooks/events";
    static const char kvp[] = "/v1/admin/kv/";
    size_t el = sizeof(events) - 1;

    if (strcmp(p, events) == 0 && get) {
        set_route(r, "/v1/webhooks/events");
        api_webhooks_list(r);
        return true;
    }
    if (strncmp(p, events, el) == 0 && p[el] == '/' && p[el + 1] != '\0') {
        const char *id = p + el + 1;
        size_t n = strlen(id);
        static const char rs[] = "/replay";
        size_t rl = sizeof(rs) - 1;
        char buf[WEBHOOK_ID_MAX + 16];
        if (post && n > rl && strcmp(id + n - rl, rs) == 0 && n - rl < sizeof(buf)) {
            memcpy(buf, id, n - rl);
            buf[n - rl] = '\0';
            set_route(r, "/v1/webhooks/events/{id}/replay");
            api_webhooks_replay(r, buf);
            return true;
        }
        if (get) {
            set_route(r, "/v1/webhooks/events/{id}");
            api_webhooks_get(r, id);
            return true;
        }
        return false;
    }
    if (strncmp(p, "/v1/webhooks/", 13) == 0 && post && strchr(p + 13, '/') == NULL) {
        set_route(r, "/v1/webhooks/{provider}");
        const char *prov = p + 13;
        if (!webhook_provider_ok(prov)) {
            httpd_reply_error(r, 404, "not_found", "provider",
                              "no provider '%.64s' that receives webhooks", prov);
            return true;
        }
        api_webhooks_receive(r, prov);
        return true;
    }
    if (strncmp(p, kvp, sizeof(kvp) - 1) == 0 && get) {
        const char *ns = p + sizeof(kvp) - 1;
        const char *slash = strchr(ns, '/');
        char nsb[SCRIPT_RULES_NS_MAX + 1];
        if (slash == NULL || slash == ns || (size_t)(slash - ns) > SCRIPT_RULES_NS_MAX ||
            slash[1] == '\0' || strlen(slash + 1) > SCRIPT_RULES_KEY_MAX) {
            return false;
        }
        memcpy(nsb, ns, (size_t)(slash - ns));
        nsb[slash - ns] = '\0';
        set_route(r, "/v1/admin/kv/{ns}/{key}");
        api_admin_kv_get(r, nsb, slash + 1);
        return true;
    }
    if (strcmp(p, "/v1/admin/outbox") == 0 && get) {
        set_route(r, "/v1/admin/outbox");
        api_admin_outbox(r);
        return true;
    }
    return false;
}
