/* api — the route table, and the operations endpoints (health, readiness,
 * providers, reload). */
#include "api.h"
#include "auth.h"

#include "breaker.h"
#include "events.h" /* observability engineer: /v1/events, /v1/errors */
#include "log.h"
#include "messages.h" /* messages engineer */
#include "metrics.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void api_time_iso(int64_t wall_ms, char out[32])
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void healthz(struct httpd_req *r)
{
    httpd_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static void readyz(struct httpd_req *r)
{
    if (!atomic_load(&r->app->ready) || atomic_load(&r->app->draining)) {
        httpd_reply_error(r, 503, "not_ready", NULL,
                          atomic_load(&r->app->draining) ? "draining" : "starting");
        return;
    }
    httpd_reply_json(r, 200, json_pack("{s:s}", "status", "ready"));
}

static void providers_list(struct httpd_req *r)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_ADMIN)) {
        return;
    }
    json_t *arr = json_array();
    struct registry *reg = r->app->reg;
    for (size_t i = 0; i < reg->n_providers; i++) {
        struct provider *p = reg->providers[i];
        char kinds[128];
        plugins_kinds_str(p->plugin->desc->kinds, kinds, sizeof(kinds));
        struct dispatch_stats st;
        struct breaker_snapshot snap;
        memset(&snap, 0, sizeof(snap));
        dispatch_provider_stats(p, &st);
        json_t *outcomes = json_object();
        for (int o = 0; o < AGAPE_OUTCOME_COUNT; o++) {
            json_object_set_new(outcomes, dispatch_outcome_name((enum agape_outcome)o),
                                json_integer((json_int_t)st.calls[o]));
        }
        json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:b, s:s, s:o, s:I, s:I}", "name", p->name,
                              "plugin", p->plugin->name, "version", p->plugin->desc->version,
                              "kinds", kinds, "usable", p->usable, "circuit",
                              dispatch_circuit(p, &snap),
                              "outcomes", outcomes, "retries", (json_int_t)st.retries,
                              "failovers", (json_int_t)st.failovers);
        json_object_set_new(e, "inflight", json_integer(st.inflight));
        json_object_set_new(e, "short_circuits", json_integer((json_int_t)st.short_circuits));
        json_object_set_new(e, "window",
                            json_pack("{s:i, s:i, s:i}", "calls", snap.window_calls, "failures",
                                      snap.window_failures, "consecutive_failures",
                                      snap.consecutive_failures));
        json_object_set_new(e, "max_inflight", json_integer(st.max_inflight));
        if (!p->usable) {
            json_object_set_new(e, "reason", json_string(p->why));
        }
        json_array_append_new(arr, e);
    }
    httpd_reply_json(r, 200, json_pack("{s:o}", "providers", arr));
}

static void metrics_page(struct httpd_req *r)
{
    struct agape_buf b;
    buf_init(&b, 8 << 20);
    if (metrics_render(&b) != AGAPE_OK) {
        httpd_reply_error(r, 500, "internal", NULL, "metrics could not be rendered");
    } else {
        httpd_reply_raw(r, 200, buf_cstr(&b), b.len);
    }
    buf_fini(&b);
}

static void admin_reload(struct httpd_req *r)
{
    if (!httpd_auth(r, APIKEYS_SCOPE_ADMIN)) {
        return;
    }
    char err[512];
    if (script_engine_reload(r->app->scripts, err, sizeof(err)) != AGAPE_OK) {
        log_warn("script reload refused: %s", err);
        httpd_reply_error(r, 400, "invalid_request", "scripts",
                          "scripts not reloaded (the running ones stay): %s", err);
        return;
    }
    log_info("scripts reloaded (generation %llu)",
             (unsigned long long)script_generation(r->app->scripts));
    httpd_reply_json(r, 200,
                     json_pack("{s:b, s:I}", "reloaded", 1, "generation",
                               (json_int_t)script_generation(r->app->scripts)));
}

/* Match "/v1/payments/{id}<suffix>": copies the id (1..63 safe chars). */
static bool match_id(const char *path, const char *prefix, const char *suffix, char *id,
                     size_t idlen)
{
    size_t pl = strlen(prefix);
    if (strncmp(path, prefix, pl) != 0) {
        return false;
    }
    const char *s = path + pl;
    size_t n = 0;
    while (s[n] && s[n] != '/') {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            return false;
        }
        n++;
    }
    if (n == 0 || n >= idlen || strcmp(s + n, suffix) != 0) {
        return false;
    }
    memcpy(id, s, n);
    id[n] = '\0';
    return true;
}

static void set_route(struct httpd_req *r, const char *route)
{
    snprintf(r->route, sizeof(r->route), "%s", route);
}

void api_route(struct httpd_req *r)
{
    const char *p = r->path;
    const char *m = r->method;
    bool get = strcmp(m, "GET") == 0;
    bool post = strcmp(m, "POST") == 0;
    char id[64];

    if (strcmp(p, "/healthz") == 0 && get) {
        set_route(r, "/healthz");
        healthz(r);
        return;
    }
    if (strcmp(p, "/readyz") == 0 && get) {
        set_route(r, "/readyz");
        readyz(r);
        return;
    }
    if (strcmp(p, "/metrics") == 0 && get) {
        set_route(r, "/metrics");
        metrics_page(r);
        return;
    }
    if (strncmp(p, "/v1/", 4) == 0 && atomic_load(&r->app->draining)) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the gateway is stopping");
        return;
    }
    if (strcmp(p, "/v1/payments") == 0 && post) {
        set_route(r, "/v1/payments");
        api_payments_create(r);
        return;
    }
    if (match_id(p, "/v1/payments/", "", id, sizeof(id)) && get) {
        set_route(r, "/v1/payments/{id}");
        api_payments_get(r, id);
        return;
    }
    if (match_id(p, "/v1/payments/", "/refunds", id, sizeof(id)) && post) {
        set_route(r, "/v1/payments/{id}/refunds");
        api_payments_refund(r, id);
        return;
    }
    if (match_id(p, "/v1/payments/", "/capture", id, sizeof(id)) && post) {
        set_route(r, "/v1/payments/{id}/capture");
        api_payments_capture(r, id);
        return;
    }
    if (strcmp(p, "/v1/providers") == 0 && get) {
        set_route(r, "/v1/providers");
        providers_list(r);
        return;
    }
    if (strcmp(p, "/v1/admin/reload") == 0 && post) {
        set_route(r, "/v1/admin/reload");
        admin_reload(r);
        return;
    }
    if (api_messages_route(r)) { /* messages engineer: /v1/messages (api_messages.c) */
        return;
    }
    if (api_webhooks_route(r)) { /* webhooks, their admin endpoints, admin kv/outbox */
        return;
    }
    if (api_auth_route(r)) { /* /v1/auth/...: end-user sign-in (api_auth.c) */
        return;
    }
    if (api_events_route(r)) { /* POST /v1/events, /v1/errors (api_events.c) */
        return;
    }
    httpd_reply_error(r, 404, "not_found", NULL, "no route for %s %s", m, p);
}

void api_request_done(struct httpd_req *r)
{
    (void)r;
}
