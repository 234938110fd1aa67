/* events — validation and outbox items of analytics events and error
 * reports (see events.h). The rules follow GA4's Measurement Protocol limits
 * so that a request the gateway accepts is one the provider takes: GA answers
 * 2xx to anything and silently drops what it does not like (PROVIDERS.md
 * §6.1), so the only place a client can learn of a mistake is here. */
#include "events.h"

#include "crypto.h"

#include <agape/plugin.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define EVENTS_CATEGORY_MAX 150
#define EVENTS_ARRAY_MAX 200
#define EVENTS_ITEM_MEMBERS_MAX 30
#define EVENTS_TAGS_MAX 64
#define EVENTS_TAG_KEY_MAX 32
#define EVENTS_TAG_VALUE_MAX 200
#define EVENTS_EXC_TYPE_MAX 256
#define EVENTS_USER_TEXT_MAX 256

/* Names GA reserves for its own events (Firebase's list; ad_impression is
 * left out: GA recommends sending it through the Measurement Protocol). */
static const char *const reserved_names[] = {
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

/* Members the core adds to an item; never sent to a plugin. */
static const char *const internal_members[] = {
    "kind", "received_ms", "attempts", "providers", "last_error", "created_at", "source", NULL,
};

static bool fail(struct events_problem *p, const char *prefix, const char *field,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Fill *p: param = prefix + "." + field (either may be empty). */
static bool fail(struct events_problem *p, const char *prefix, const char *field,
                 const char *fmt, ...)
{
    const char *dot = prefix[0] != '\0' && field[0] != '\0' ? "." : "";
    snprintf(p->param, sizeof(p->param), "%s%s%.60s", prefix, dot, field);
    va_list ap;
    va_start(ap, fmt);
    char msg[200];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(p->message, sizeof(p->message), "%s %.150s",
             p->param[0] ? p->param : "the event", msg);
    return false;
}

/* UTF-8 characters in s (jansson guarantees valid UTF-8). */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* NULL when `s` is a valid GA4 event (event=true) or parameter name. */
static const char *name_problem(const char *s, bool event)
{
    size_t n = strlen(s);
    if (n == 0 || n > EVENTS_NAME_MAX) {
        return "must be 1 to 40 characters";
    }
    if (!is_alpha(s[0])) {
        return "must start with a letter";
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_alpha(s[i]) && !(s[i] >= '0' && s[i] <= '9') && s[i] != '_') {
            return "may hold only letters, digits and underscores";
        }
    }
    if (strncasecmp(s, "google_", 7) == 0 || strncasecmp(s, "ga_", 3) == 0 ||
        strncasecmp(s, "firebase_", 9) == 0) {
        return "must not start with google_, ga_ or firebase_ (reserved)";
    }
    for (int i = 0; event && reserved_names[i] != NULL; i++) {
        if (strcmp(s, reserved_names[i]) == 0) {
            return "is reserved by Google Analytics";
        }
    }
    return NULL;
}

static bool scalar_ok(const json_t *v, const char *prefix, const char *field,
                      struct events_problem *p)
{
    if (json_is_string(v)) {
        if (utf8_chars(json_string_value(v), json_string_length(v)) > EVENTS_TEXT_MAX) {
            return fail(p, prefix, field, "must be at most %d characters", EVENTS_TEXT_MAX);
        }
        return true;
    }
    if (json_is_number(v) || json_is_boolean(v)) {
        return true;
    }
    return fail(p, prefix, field, "must be a string, a number or a boolean");
}

static bool params_ok(const json_t *params, const char *prefix, struct events_problem *p)
{
    if (!json_is_object(params)) {
        return fail(p, prefix, "params", "must be an object");
    }
    if (json_object_size(params) > EVENTS_PARAMS_MAX) {
        return fail(p, prefix, "params", "may hold at most %d parameters", EVENTS_PARAMS_MAX);
    }
    const char *k;
    json_t *v;
    char field[128];
    json_object_foreach((json_t *)params, k, v) {
        snprintf(field, sizeof(field), "params.%.60s", k);
        const char *why = name_problem(k, false);
        if (why != NULL) {
            return fail(p, prefix, field, "is not a valid parameter name: it %s", why);
        }
        if (!json_is_array(v)) {
            if (!scalar_ok(v, prefix, field, p)) {
                return false;
            }
            continue;
        }
        if (json_array_size(v) > EVENTS_ARRAY_MAX) {
            return fail(p, prefix, field, "may hold at most %d elements", EVENTS_ARRAY_MAX);
        }
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            char sub[160];
            snprintf(sub, sizeof(sub), "%s[%zu]", field, i);
            if (!json_is_object(e)) {
                if (!scalar_ok(e, prefix, sub, p)) {
                    return false;
                }
                continue;
            }
            if (json_object_size(e) > EVENTS_ITEM_MEMBERS_MAX) {
                return fail(p, prefix, sub, "may hold at most %d members",
                            EVENTS_ITEM_MEMBERS_MAX);
            }
            const char *ik;
            json_t *iv;
            json_object_foreach(e, ik, iv) {
                char leaf[224];
                snprintf(leaf, sizeof(leaf), "%s.%.40s", sub, ik);
                if (ik[0] == '\0' || strlen(ik) > EVENTS_NAME_MAX) {
                    return fail(p, prefix, leaf, "names must be 1 to 40 characters");
                }
                if (!scalar_ok(iv, prefix, leaf, p)) {
                    return false;
                }
            }
        }
    }
    return true;
}

static bool id_ok(const json_t *ev, const char *name, bool int_ok, const char *prefix,
                  struct events_problem *p)
{
    const json_t *v = json_object_get(ev, name);
    if (v == NULL) {
        return true;
    }
    if (int_ok && json_is_integer(v)) {
        return true;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > EVENTS_ID_MAX) {
        return fail(p, prefix, name, "must be a string of 1 to %d bytes%s", EVENTS_ID_MAX,
                    int_ok ? " (or an integer)" : "");
    }
    return true;
}

bool events_check(const json_t *ev, const char *prefix, struct events_problem *p)
{
    static const char *const known[] = {"name",   "category", "action",    "label",
                                        "value",  "user_id",  "client_id", "params",
                                        "timestamp_micros",   NULL};
    if (!json_is_object(ev)) {
        return fail(p, prefix, "", "must be an object");
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)ev, k, v) {
        bool ok = false;
        for (int i = 0; known[i] != NULL && !ok; i++) {
            ok = strcmp(k, known[i]) == 0;
        }
        if (!ok) {
            return fail(p, prefix, k, "is not a known field (GA4: name, user_id, client_id, "
                                      "params, timestamp_micros; seed: category, action, "
                                      "label, value)");
        }
    }
    const json_t *name = json_object_get(ev, "name");
    const json_t *category = json_object_get(ev, "category");
    const json_t *action = json_object_get(ev, "action");
    bool seed = category != NULL || action != NULL || json_object_get(ev, "label") != NULL ||
                json_object_get(ev, "value") != NULL;
    if (name != NULL && seed) {
        return fail(p, prefix, "name", "cannot be combined with category, action, label or "
                                       "value: send a GA4 event or a seed event");
    }
    if (name == NULL && !seed) {
        return fail(p, prefix, "name", "is required (or the seed shape: category and action)");
    }
    if (name != NULL) {
        if (!json_is_string(name)) {
            return fail(p, prefix, "name", "must be a string");
        }
        const char *why = name_problem(json_string_value(name), true);
        if (why != NULL) {
            return fail(p, prefix, "name", "%s", why);
        }
    } else {
        if (!json_is_string(category) || json_string_length(category) == 0 ||
            json_string_length(category) > EVENTS_CATEGORY_MAX) {
            return fail(p, prefix, "category", "is required: a string of 1 to %d bytes",
                        EVENTS_CATEGORY_MAX);
        }
        if (!json_is_string(action) || json_string_length(action) == 0) {
            return fail(p, prefix, "action", "is required: a non-empty string");
        }
        const char *a = json_string_value(action);
        if (utf8_chars(a, json_string_length(action)) > EVENTS_NAME_MAX || !is_alpha(a[0])) {
            return fail(p, prefix, "action", "must be at most 40 characters and start with a "
                                             "letter (it becomes the GA4 event name)");
        }
        const json_t *label = json_object_get(ev, "label");
        if (label != NULL && (!json_is_string(label) ||
                              utf8_chars(json_string_value(label), json_string_length(label)) >
                                  EVENTS_TEXT_MAX)) {
            return fail(p, prefix, "label", "must be a string of at most %d characters",
                        EVENTS_TEXT_MAX);
        }
        const json_t *value = json_object_get(ev, "value");
        if (value != NULL && !json_is_number(value)) {
            return fail(p, prefix, "value", "must be a number");
        }
    }
    if (!id_ok(ev, "user_id", true, prefix, p) || !id_ok(ev, "client_id", false, prefix, p)) {
        return false;
    }
    const char *uid = json_string_value(json_object_get(ev, "user_id"));
    if (uid != NULL && strchr(uid, '@') != NULL) {
        return fail(p, prefix, "user_id", "must not be an e-mail address (Google Analytics "
                                          "forbids personal data: send your own user id)");
    }
    const json_t *params = json_object_get(ev, "params");
    if (params != NULL && !params_ok(params, prefix, p)) {
        return false;
    }
    const json_t *ts = json_object_get(ev, "timestamp_micros");
    if (ts != NULL && (!json_is_integer(ts) || json_integer_value(ts) <= 0)) {
        return fail(p, prefix, "timestamp_micros",
                    "must be a positive integer (microseconds since the epoch)");
    }
    return true;
}

json_t *events_check_body(const json_t *body, struct events_problem *p)
{
    if (!json_is_object(body)) {
        fail(p, "", "", "must be a JSON object");
        return NULL;
    }
    const json_t *list = json_object_get(body, "events");
    if (list == NULL) {
        if (!events_check(body, "", p)) {
            return NULL;
        }
        json_t *arr = json_array();
        if (arr != NULL) {
            json_array_append(arr, (json_t *)body);
        }
        return arr;
    }
    if (json_object_size(body) != 1) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)body, k, v) {
            if (strcmp(k, "events") != 0) {
                fail(p, "", k, "is not allowed beside events");
                return NULL;
            }
        }
    }
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > EVENTS_MAX_PER_REQUEST) {
        fail(p, "", "events", "must be an array of 1 to %d events", EVENTS_MAX_PER_REQUEST);
        return NULL;
    }
    size_t i;
    json_t *ev;
    json_array_foreach(list, i, ev) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "events[%zu]", i);
        if (!events_check(ev, prefix, p)) {
            return NULL;
        }
    }
    return json_incref((json_t *)list);
}

json_t *events_item(const json_t *ev, int64_t now_ms)
{
    json_t *item = json_object();
    if (item == NULL || json_object_set_new(item, "kind", json_string("event")) != 0) {
        json_decref(item);
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)ev, k, v) {
        json_object_set(item, k, v);
    }
    if (json_object_get(item, "timestamp_micros") == NULL) {
        json_object_set_new(item, "timestamp_micros", json_integer((json_int_t)now_ms * 1000));
    }
    json_object_set_new(item, "received_ms", json_integer((json_int_t)now_ms));
    return item;
}

json_t *events_plugin_event(const json_t *item)
{
    if (!json_is_object(item)) {
        return NULL;
    }
    json_t *ev = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)item, k, v) {
        bool internal = false;
        for (int i = 0; internal_members[i] != NULL && !internal; i++) {
            internal = strcmp(k, internal_members[i]) == 0;
        }
        if (!internal) {
            json_object_set(ev, k, v);
        }
    }
    return ev;
}

static void id_text(const json_t *v, char *out, size_t outlen)
{
    if (json_is_string(v)) {
        snprintf(out, outlen, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(out, outlen, "%lld", (long long)json_integer_value(v));
    } else {
        out[0] = '\0';
    }
}

void events_client_key(const json_t *item, char *out, size_t outlen)
{
    char c[EVENTS_ID_MAX + 1];
    char u[EVENTS_ID_MAX + 1];
    id_text(json_object_get(item, "client_id"), c, sizeof(c));
    id_text(json_object_get(item, "user_id"), u, sizeof(u));
    snprintf(out, outlen, "%s\x1f%s", c, u);
}

/* ---- errors ------------------------------------------------------------ */

static bool text_ok(const json_t *obj, const char *name, const char *prefix, size_t min,
                    size_t max, struct events_problem *p)
{
    const json_t *v = json_object_get(obj, name);
    if (v == NULL) {
        return true;
    }
    if (!json_is_string(v) || json_string_length(v) < min || json_string_length(v) > max) {
        return fail(p, prefix, name, "must be a string of %zu to %zu bytes", min, max);
    }
    return true;
}

static bool tag_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > EVENTS_TAG_KEY_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!is_alpha(c) && !(c >= '0' && c <= '9') && c != '_' && c != '.' && c != ':' &&
            c != '-') {
            return false;
        }
    }
    return true;
}

bool events_check_error(const json_t *in, struct events_problem *p)
{
    static const char *const known[] = {"message", "level", "exception", "tags", "user", NULL};
    static const char *const levels[] = {"fatal", "error", "warning", "info", "debug", NULL};
    if (!json_is_object(in)) {
        return fail(p, "", "", "must be a JSON object");
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)in, k, v) {
        bool ok = false;
        for (int i = 0; known[i] != NULL && !ok; i++) {
            ok = strcmp(k, known[i]) == 0;
        }
        if (!ok) {
            return fail(p, "", k, "is not a known field (message, level, exception, tags, "
                                  "user)");
        }
    }
    if (!text_ok(in, "message", "", 1, EVENTS_ERROR_TEXT_MAX, p)) {
        return false;
    }
    const json_t *level = json_object_get(in, "level");
    if (level != NULL) {
        bool ok = false;
        for (int i = 0; json_is_string(level) && levels[i] != NULL && !ok; i++) {
            ok = strcmp(json_string_value(level), levels[i]) == 0;
        }
        if (!ok) {
            return fail(p, "", "level", "must be one of fatal, error, warning, info, debug");
        }
    }
    const json_t *exc = json_object_get(in, "exception");
    if (exc != NULL) {
        if (!json_is_object(exc)) {
            return fail(p, "", "exception", "must be an object {\"type\", \"value\"}");
        }
        json_object_foreach((json_t *)exc, k, v) {
            if (strcmp(k, "type") != 0 && strcmp(k, "value") != 0) {
                return fail(p, "exception", k, "is not a known field (type, value)");
            }
        }
        if (json_object_get(exc, "type") == NULL) {
            return fail(p, "exception", "type", "is required");
        }
        if (!text_ok(exc, "type", "exception", 1, EVENTS_EXC_TYPE_MAX, p) ||
            !text_ok(exc, "value", "exception", 0, EVENTS_ERROR_TEXT_MAX, p)) {
            return false;
        }
    }
    if (json_object_get(in, "message") == NULL && exc == NULL) {
        return fail(p, "", "message", "is required (or an exception)");
    }
    const json_t *tags = json_object_get(in, "tags");
    if (tags != NULL) {
        if (!json_is_object(tags) || json_object_size(tags) > EVENTS_TAGS_MAX) {
            return fail(p, "", "tags", "must be an object of at most %d tags", EVENTS_TAGS_MAX);
        }
        json_object_foreach((json_t *)tags, k, v) {
            char field[64];
            snprintf(field, sizeof(field), "tags.%.40s", k);
            if (!tag_key_ok(k)) {
                return fail(p, "", field, "is not a valid tag name (1 to 32 of A-Z a-z 0-9 _ . "
                                          ": -)");
            }
            if (!(json_is_string(v) && json_string_length(v) <= EVENTS_TAG_VALUE_MAX) &&
                !json_is_integer(v) && !json_is_boolean(v)) {
                return fail(p, "", field, "must be a string of at most %d bytes, an integer or "
                                          "a boolean",
                            EVENTS_TAG_VALUE_MAX);
            }
        }
    }
    const json_t *user = json_object_get(in, "user");
    if (user != NULL) {
        static const char *const fields[] = {"username", "email", "ip_address", "name", NULL};
        if (!json_is_object(user)) {
            return fail(p, "", "user", "must be an object {\"id\", …}");
        }
        json_object_foreach((json_t *)user, k, v) {
            bool ok = strcmp(k, "id") == 0;
            for (int i = 0; fields[i] != NULL && !ok; i++) {
                ok = strcmp(k, fields[i]) == 0;
            }
            if (!ok) {
                return fail(p, "user", k, "is not a known field (id, username, email, "
                                          "ip_address, name)");
            }
        }
        if (!id_ok(user, "id", true, "user", p)) {
            return false;
        }
        for (int i = 0; fields[i] != NULL; i++) {
            if (!text_ok(user, fields[i], "user", 0, EVENTS_USER_TEXT_MAX, p)) {
                return false;
            }
        }
    }
    return true;
}

void events_rfc3339(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n == 0 || n > 20) {
        snprintf(out, 32, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(out + n, 32 - n, ".%03dZ", (int)((ms % 1000 + 1000) % 1000));
}

json_t *events_error_input(const json_t *in, const char *id, int64_t now_ms)
{
    char when[32];
    events_rfc3339(now_ms, when);
    json_t *o = json_pack("{s:s, s:s, s:s}", "event_id", id, "level",
                          json_is_string(json_object_get(in, "level"))
                              ? json_string_value(json_object_get(in, "level"))
                              : "error",
                          "timestamp", when);
    static const char *const pass[] = {"message", "exception", "tags", "user", NULL};
    for (int i = 0; o != NULL && pass[i] != NULL; i++) {
        json_t *v = json_object_get(in, pass[i]);
        if (v != NULL) {
            json_object_set(o, pass[i], v);
        }
    }
    return o;
}

json_t *events_error_item(const json_t *input, const char *id, int64_t now_ms, bool self)
{
    json_t *item = json_pack("{s:s, s:s, s:O, s:I}", "kind", "error", "id", id, "error", input,
                             "received_ms", (json_int_t)now_ms);
    if (item != NULL && self) {
        json_object_set_new(item, "self", json_true());
    }
    return item;
}

json_t *events_retry_item(const json_t *item, int attempts, const json_t *retry, bool reroute,
                          const char *err)
{
    json_t *copy = json_copy((json_t *)item);
    if (copy == NULL) {
        return NULL;
    }
    json_object_set_new(copy, "attempts", json_integer(attempts));
    json_object_set_new(copy, "last_error", json_string(err && err[0] ? err : "?"));
    if (reroute) {
        json_object_del(copy, "providers");
    } else {
        json_object_set(copy, "providers", (json_t *)retry);
    }
    return copy;
}

int events_new_error_id(char out[33])
{
    unsigned char b[16];
    if (crypto_random(b, sizeof(b)) != AGAPE_OK) {
        return AGAPE_ERROR;
    }
    crypto_hex(b, sizeof(b), out);
    return AGAPE_OK;
}

int64_t events_backoff_ms(int attempts, int64_t base, int64_t max)
{
    int64_t d = base > 0 ? base : 1;
    for (int i = 1; i < attempts && d < max; i++) {
        d *= 2;
    }
    return d < max ? d : max;
}
