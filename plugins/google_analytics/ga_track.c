/* ga_track — track_batch: 1 to 25 events of one client → one GA4
 * Measurement Protocol request (PROVIDERS.md §6.1).
 *
 *   POST {base}/mp/collect?measurement_id=G-…&api_secret=…   (debug: /debug/mp/collect)
 *   Content-Type: application/json
 *   {"client_id":"…","user_id"?:"…","timestamp_micros"?:n,
 *    "events":[{"name":"…","params"?:{…},"timestamp_micros"?:n},…]}
 *
 * client_id is the events' client_id, or else derived from user_id as
 * "agape." + the first 16 hex digits of SHA-256(user_id): stable, so one user
 * is one GA client across batches and restarts, and the user id itself never
 * reaches GA as a client id. timestamp_micros goes on the request when every
 * event has the same one, else on each event that has one (GA uses the
 * event's, then the request's, then the arrival time).
 *
 * Seed-shaped events {category, action, label?, value?} are mapped here so
 * the core stays provider-agnostic: name = the action in lower case with
 * every character other than [a-z0-9] replaced by "_" (one "_" per
 * character, multi-byte ones included; "Sign Up" → "sign_up"), params =
 * {"event_category", "event_label"?, "value"?} then the event's own params.
 *
 * Answers: 2xx → OK {"accepted": n} (GA validates nothing on /mp/collect; in
 * debug mode a non-empty validationMessages is INVALID); 429 → RATE_LIMITED
 * (Retry-After); 401/403 → AUTH; other 4xx → INVALID; 5xx → UNAVAILABLE;
 * anything else → UNKNOWN. */
#include "google_analytics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GA_RETRY_MAX_S 86400

/* Reserved event names: Firebase's list (FirebaseAnalytics.Event), less
 * ad_impression, which GA4 recommends sending through the Measurement
 * Protocol. */
static const char *const ga_reserved_names[] = {
    "ad_activeview",
    "ad_click",
    "ad_exposure",
    "ad_query",
    "ad_reward",
    "adunit_exposure",
    "app_background",
    "app_clear_data",
    "app_exception",
    "app_remove",
    "app_store_refund",
    "app_store_subscription_cancel",
    "app_store_subscription_convert",
    "app_store_subscription_renew",
    "app_update",
    "app_upgrade",
    "dynamic_link_app_open",
    "dynamic_link_app_update",
    "dynamic_link_first_open",
    "error",
    "first_open",
    "first_visit",
    "in_app_purchase",
    "notification_dismiss",
    "notification_foreground",
    "notification_open",
    "notification_receive",
    "os_update",
    "session_start",
    "session_start_with_rollout",
    "user_engagement",
    NULL,
};

static void ga_err(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void ga_err(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
}

static bool ga_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool ga_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Why `name` is not a valid GA4 event or parameter name, or NULL. */
static const char *ga_name_problem(const char *name, bool event)
{
    size_t n = strlen(name);
    if (n == 0) {
        return "is empty";
    }
    if (n > GA_NAME_MAX) {
        return "is over 40 characters";
    }
    if (!ga_alpha(name[0])) {
        return "must start with a letter";
    }
    for (size_t i = 0; i < n; i++) {
        if (!ga_alpha(name[i]) && !ga_digit(name[i]) && name[i] != '_') {
            return "may hold only letters, digits and _";
        }
    }
    if (strncasecmp(name, "google_", 7) == 0 || strncasecmp(name, "ga_", 3) == 0 ||
        strncasecmp(name, "firebase_", 9) == 0) {
        return "uses a reserved prefix (google_, ga_, firebase_)";
    }
    for (int i = 0; event && ga_reserved_names[i] != NULL; i++) {
        if (strcmp(name, ga_reserved_names[i]) == 0) {
            return "is reserved by Google Analytics";
        }
    }
    return NULL;
}

/* A copy of s for an error message: at most 40 bytes, cut on a UTF-8
 * boundary and then marked "...", control characters as '?'. */
static void ga_shown(char out[48], const char *s)
{
    size_t n = strlen(s);
    bool cut = n > 40;
    if (cut) {
        n = 40;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) {
            n--;
        }
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    }
    if (cut) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* Seed action → event name (see the top of the file); false when the result
 * would be over 40 characters. */
static bool ga_map_action(const char *action, char out[GA_NAME_MAX + 1])
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)action; *p; p++) {
        char c;
        if (*p >= 0x80 && (*p & 0xc0) == 0x80) {
            continue; /* the rest of a multi-byte character */
        }
        if (*p >= 'A' && *p <= 'Z') {
            c = (char)(*p - 'A' + 'a');
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) {
            c = (char)*p;
        } else {
            c = '_';
        }
        if (o == GA_NAME_MAX) {
            return false;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return true;
}

/* One client per batch: the event's explicit client_id, else the derived one. */
static int ga_client_of(struct agape_call *call, size_t i, const struct agape_json *ev,
                        char client[GA_ID_MAX + 1], char user[GA_ID_MAX + 1], bool *has_user)
{
    const struct agape_host *h = call->host;
    const struct agape_json *u = h->json_get(ev, "user_id");
    enum agape_json_type ut = h->json_type(u);
    *has_user = false;
    user[0] = '\0';
    if (ut == AGAPE_JSON_STRING) {
        const char *s = h->json_str(u, "");
        if (s[0] == '\0' || strlen(s) > GA_ID_MAX) {
            ga_err(call, "events[%zu].user_id must be 1 to %d bytes", i, GA_ID_MAX);
            return -1;
        }
        /* Google's policy forbids personal data in GA; an e-mail address as
         * the user id is the usual slip. */
        const char *at = strchr(s, '@');
        if (at != NULL && at > s && strchr(at, '.') != NULL) {
            ga_err(call, "events[%zu].user_id looks like an e-mail address; GA forbids "
                         "personal data: send the gateway's user id", i);
            return -1;
        }
        memcpy(user, s, strlen(s) + 1);
        *has_user = true;
    } else if (ut == AGAPE_JSON_INT) {
        snprintf(user, GA_ID_MAX + 1, "%lld", (long long)h->json_int(u, "", 0));
        *has_user = true;
    } else if (ut != AGAPE_JSON_ABSENT && ut != AGAPE_JSON_NULL) {
        ga_err(call, "events[%zu].user_id must be a string", i);
        return -1;
    }

    const struct agape_json *c = h->json_get(ev, "client_id");
    enum agape_json_type ct = h->json_type(c);
    if (ct == AGAPE_JSON_STRING) {
        const char *s = h->json_str(c, "");
        if (s[0] == '\0' || strlen(s) > GA_ID_MAX) {
            ga_err(call, "events[%zu].client_id must be 1 to %d bytes", i, GA_ID_MAX);
            return -1;
        }
        memcpy(client, s, strlen(s) + 1);
        return 0;
    }
    if (ct != AGAPE_JSON_ABSENT && ct != AGAPE_JSON_NULL) {
        ga_err(call, "events[%zu].client_id must be a string", i);
        return -1;
    }
    if (!*has_user) {
        ga_err(call, "events[%zu] needs client_id or user_id (GA4 requires a client)", i);
        return -1;
    }
    unsigned char d[32];
    if (h->sha256(user, strlen(user), d) != AGAPE_OK) {
        ga_err(call, "cannot hash user_id");
        return -1;
    }
    static const char hexd[] = "0123456789abcdef";
    memcpy(client, "agape.", 6);
    for (int k = 0; k < 8; k++) {
        client[6 + 2 * k] = hexd[d[k] >> 4];
        client[7 + 2 * k] = hexd[d[k] & 0x0f];
    }
    client[22] = '\0';
    return 0;
}

/* Copy params (object) into `dst`, keys already in dst kept. */
static int ga_copy_params(struct agape_call *call, size_t i, const struct agape_json *params,
                          struct agape_json *dst)
{
    const struct agape_host *h = call->host;
    enum agape_json_type t = h->json_type(params);
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return 0;
    }
    if (t != AGAPE_JSON_OBJECT) {
        ga_err(call, "events[%zu].params must be an object", i);
        return -1;
    }
    for (size_t k = 0;; k++) {
        const struct agape_json *v = NULL;
        const char *key = h->json_key_at(params, k, &v);
        char shown[48];
        if (key == NULL) {
            break;
        }
        const char *why = ga_name_problem(key, false);
        if (why != NULL) {
            ga_shown(shown, key);
            ga_err(call, "events[%zu].params: parameter name \"%s\" %s", i, shown, why);
            return -1;
        }
        enum agape_json_type vt = h->json_type(v);
        if (vt == AGAPE_JSON_NULL || vt == AGAPE_JSON_OBJECT) {
            ga_err(call, "events[%zu].params.%s must be a string, number, boolean or array", i,
                   key);
            return -1;
        }
        bool present = false;
        for (size_t j = 0; !present; j++) {
            const char *dk = h->json_key_at(dst, j, NULL);
            if (dk == NULL) {
                break;
            }
            present = strcmp(dk, key) == 0;
        }
        if (!present && h->json_set_copy(dst, key, v) != AGAPE_OK) {
            ga_err(call, "out of memory");
            return -1;
        }
    }
    if (h->json_size(dst) > GA_PARAMS_MAX) {
        ga_err(call, "events[%zu] has %zu params; GA4 takes at most %d", i, h->json_size(dst),
               GA_PARAMS_MAX);
        return -1;
    }
    return 0;
}

/* One input event → out (an object in the events array). */
static int ga_event(struct agape_call *call, size_t i, const struct agape_json *ev,
                    struct agape_json *out)
{
    const struct agape_host *h = call->host;
    char name[GA_NAME_MAX + 1];
    char shown[48];
    const char *why;
    enum agape_json_type nt = h->json_type(h->json_get(ev, "name"));
    enum agape_json_type at = h->json_type(h->json_get(ev, "action"));
    bool seed = nt == AGAPE_JSON_ABSENT || nt == AGAPE_JSON_NULL;

    if (!seed && at != AGAPE_JSON_ABSENT && at != AGAPE_JSON_NULL) {
        ga_err(call, "events[%zu] has both name (GA4) and action (seed shape); send one", i);
        return -1;
    }
    if (!seed) {
        const char *n = h->json_str(ev, "name");
        if (n == NULL) {
            ga_err(call, "events[%zu].name must be a string", i);
            return -1;
        }
        why = ga_name_problem(n, true);
        if (why != NULL) {
            ga_shown(shown, n);
            ga_err(call, "events[%zu].name \"%s\" %s", i, shown, why);
            return -1;
        }
        memcpy(name, n, strlen(n) + 1);
    } else {
        const char *action = h->json_str(ev, "action");
        const char *category = h->json_str(ev, "category");
        if (action == NULL || category == NULL) {
            ga_err(call, "events[%zu] needs name (GA4), or category and action (strings)", i);
            return -1;
        }
        if (!ga_map_action(action, name)) {
            ga_err(call, "events[%zu].action maps to a name over 40 characters", i);
            return -1;
        }
        why = ga_name_problem(name, true);
        if (why != NULL) {
            ga_shown(shown, action);
            ga_err(call, "events[%zu].action \"%s\" maps to \"%s\", which %s", i, shown, name,
                   why);
            return -1;
        }
    }

    int rc = h->json_set_str(out, "name", name);
    struct agape_json *params = rc == AGAPE_OK ? h->json_new_object() : NULL;
    if (params == NULL) {
        ga_err(call, "out of memory");
        return -1;
    }
    if (seed) {
        const struct agape_json *label = h->json_get(ev, "label");
        const struct agape_json *value = h->json_get(ev, "value");
        enum agape_json_type lt = h->json_type(label), vt = h->json_type(value);
        rc = h->json_set_str(params, "event_category", h->json_str(ev, "category"));
        if (lt == AGAPE_JSON_STRING) {
            rc = rc ? rc : h->json_set_copy(params, "event_label", label);
        } else if (lt != AGAPE_JSON_ABSENT && lt != AGAPE_JSON_NULL) {
            ga_err(call, "events[%zu].label must be a string", i);
            goto fail;
        }
        if (vt == AGAPE_JSON_INT || vt == AGAPE_JSON_REAL) {
            rc = rc ? rc : h->json_set_copy(params, "value", value);
        } else if (vt != AGAPE_JSON_ABSENT && vt != AGAPE_JSON_NULL) {
            ga_err(call, "events[%zu].value must be a number", i);
            goto fail;
        }
        if (rc != AGAPE_OK) {
            ga_err(call, "out of memory");
            goto fail;
        }
    }
    if (ga_copy_params(call, i, h->json_get(ev, "params"), params) != 0) {
        goto fail;
    }
    if (h->json_size(params) > 0 && h->json_set_copy(out, "params", params) != AGAPE_OK) {
        ga_err(call, "out of memory");
        goto fail;
    }
    h->json_free(params);
    return 0;
fail:
    h->json_free(params);
    return -1;
}

/* timestamp_micros of event i: 0 when absent, -1 bad. */
static int64_t ga_ts(struct agape_call *call, size_t i, const struct agape_json *ev)
{
    const struct agape_host *h = call->host;
    const struct agape_json *v = h->json_get(ev, "timestamp_micros");
    enum agape_json_type t = h->json_type(v);
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return 0;
    }
    int64_t n = h->json_int(v, "", -1);
    if (t != AGAPE_JSON_INT || n <= 0) {
        ga_err(call, "events[%zu].timestamp_micros must be a positive integer "
                     "(microseconds since the epoch)", i);
        return -1;
    }
    return n;
}

static enum agape_step ga_build(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct ga_ctx *ctx = call->ctx;
    const struct agape_json *events = h->json_get(call->input, "events");
    size_t n = h->json_size(events);
    char client[GA_ID_MAX + 1], user[GA_ID_MAX + 1];
    char client0[GA_ID_MAX + 1], user0[GA_ID_MAX + 1];
    bool has_user = false, has_user0 = false;
    int64_t ts[GA_EVENTS_MAX];
    struct agape_json *body = NULL;
    struct agape_buf *text = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (h->json_type(events) != AGAPE_JSON_ARRAY || n == 0) {
        ga_err(call, "events must be an array of 1 to %d events", GA_EVENTS_MAX);
        return AGAPE_STEP_FAIL;
    }
    if (n > GA_EVENTS_MAX) {
        ga_err(call, "events: %zu in one batch; GA4 takes at most %d per request", n,
               GA_EVENTS_MAX);
        return AGAPE_STEP_FAIL;
    }
    bool same_ts = true;
    for (size_t i = 0; i < n; i++) {
        const struct agape_json *ev = h->json_at(events, i);
        if (h->json_type(ev) != AGAPE_JSON_OBJECT) {
            ga_err(call, "events[%zu] must be an object", i);
            return AGAPE_STEP_FAIL;
        }
        if (ga_client_of(call, i, ev, i == 0 ? client0 : client, i == 0 ? user0 : user,
                         i == 0 ? &has_user0 : &has_user) != 0) {
            return AGAPE_STEP_FAIL;
        }
        if (i > 0 && (strcmp(client, client0) != 0 || has_user != has_user0 ||
                      strcmp(user, user0) != 0)) {
            ga_err(call, "events[%zu] is for another client or user than events[0]; one batch "
                         "is one client", i);
            return AGAPE_STEP_FAIL;
        }
        if ((ts[i] = ga_ts(call, i, ev)) < 0) {
            return AGAPE_STEP_FAIL;
        }
        same_ts = same_ts && ts[i] == ts[0];
    }

    body = h->json_new_object();
    int rc = body ? h->json_set_str(body, "client_id", client0) : AGAPE_ENOMEM;
    if (rc == AGAPE_OK && has_user0) {
        rc = h->json_set_str(body, "user_id", user0);
    }
    if (rc == AGAPE_OK && same_ts && ts[0] > 0) {
        rc = h->json_set_int(body, "timestamp_micros", ts[0]);
    }
    struct agape_json *list = rc == AGAPE_OK ? h->json_add_array(body, "events") : NULL;
    if (list == NULL) {
        ga_err(call, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct agape_json *out = h->json_add_object(list, NULL);
        if (out == NULL) {
            ga_err(call, "out of memory");
            goto out;
        }
        if (ga_event(call, i, h->json_at(events, i), out) != 0) {
            goto out;
        }
        if (!same_ts && ts[i] > 0 && h->json_set_int(out, "timestamp_micros", ts[i]) != 0) {
            ga_err(call, "out of memory");
            goto out;
        }
    }
    text = h->buf_new();
    if (text == NULL || h->json_dump(body, text) != AGAPE_OK) {
        ga_err(call, "out of memory");
        goto out;
    }
    if (h->buf_len(text) > GA_BODY_MAX) {
        ga_err(call, "the batch is %zu bytes of JSON; GA4 takes at most 130 kB per request",
               h->buf_len(text));
        goto out;
    }
    if (h->json_set_int(call->state, "n", (int64_t)n) != AGAPE_OK ||
        h->req_start(call, "POST", ctx->collect_url) != AGAPE_OK ||
        h->req_body(call, "application/json", h->buf_data(text), h->buf_len(text)) !=
            AGAPE_OK) {
        ga_err(call, "cannot build the request");
        goto out;
    }
    st = AGAPE_STEP_SEND;
out:
    h->buf_free(text);
    h->json_free(body);
    return st;
}

static int64_t ga_retry_after(const char *v)
{
    char *end = NULL;
    if (v == NULL || !ga_digit(*v)) {
        return -1;
    }
    long long s = strtoll(v, &end, 10);
    if (*end != '\0' || s < 0) {
        return -1;
    }
    return (int64_t)(s > GA_RETRY_MAX_S ? GA_RETRY_MAX_S : s) * 1000;
}

/* Debug mode: {"validationMessages":[{"fieldPath","description","validationCode"}]}. */
static bool ga_debug_refused(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    struct agape_json *body = h->json_parse(call->resp->body, call->resp->body_len, NULL, 0);
    const struct agape_json *msgs = h->json_get(body, "validationMessages");
    bool refused = h->json_size(msgs) > 0;
    if (refused) {
        const char *desc = h->json_str(msgs, "0.description");
        const char *path = h->json_str(msgs, "0.fieldPath");
        char d[128] = "", p[48] = "";
        if (desc != NULL) {
            size_t n = strlen(desc);
            if (n >= sizeof(d)) {
                n = sizeof(d) - 1;
                while (n > 0 && ((unsigned char)desc[n] & 0xc0) == 0x80) {
                    n--;
                }
            }
            memcpy(d, desc, n);
            d[n] = '\0';
        }
        if (path != NULL) {
            ga_shown(p, path);
        }
        ga_err(call, "GA4 validation: %s%s%s%s (%zu message(s))", d[0] ? d : "refused",
               p[0] ? " (" : "", p, p[0] ? ")" : "", h->json_size(msgs));
    }
    h->json_free(body);
    return refused;
}

static enum agape_step ga_classify(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct ga_ctx *ctx = call->ctx;
    int status = call->resp->status;

    call->retry_after_ms = -1;
    if (status >= 200 && status < 300) {
        if (ctx->debug && ga_debug_refused(call)) {
            call->outcome = AGAPE_OUTCOME_INVALID;
            return AGAPE_STEP_DONE;
        }
        call->outcome = AGAPE_OUTCOME_OK;
        if (h->json_set_int(call->result, "accepted", h->json_int(call->state, "n", 0)) !=
            AGAPE_OK) {
            ga_err(call, "out of memory");
            return AGAPE_STEP_FAIL;
        }
        return AGAPE_STEP_DONE;
    }
    if (status == 429) {
        call->outcome = AGAPE_OUTCOME_RATE_LIMITED;
        call->retry_after_ms = ga_retry_after(h->resp_header(call, "Retry-After"));
        ga_err(call, "GA4 rate limit (HTTP 429)");
    } else if (status == 401 || status == 403) {
        call->outcome = AGAPE_OUTCOME_AUTH;
        ga_err(call, "GA4 refused the measurement id or API secret (HTTP %d)", status);
    } else if (status >= 400 && status < 500) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        ga_err(call, "GA4 refused the batch (HTTP %d)", status);
    } else if (status >= 500 && status < 600) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        call->retry_after_ms = ga_retry_after(h->resp_header(call, "Retry-After"));
        ga_err(call, "GA4 unavailable (HTTP %d)", status);
    } else {
        call->outcome = AGAPE_OUTCOME_UNKNOWN;
        ga_err(call, "GA4 answered HTTP %d", status);
    }
    return AGAPE_STEP_DONE;
}

enum agape_step ga_track_batch(struct agape_call *call)
{
    return call->step == 0 ? ga_build(call) : ga_classify(call);
}
