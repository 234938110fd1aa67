/* webhook — inbox keys and records, the payment status order, subscription
 * records (see webhook.h). Pure functions over jansson values. */
#include "webhook.h"

#include "buf.h"
#include "crypto.h"
#include "store_keys.h"

#include <agape/plugin.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void webhook_iso(int64_t wall_ms, char out[32])
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    if (strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        out[0] = '\0';
    }
}

bool webhook_event_id_ok(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > WEBHOOK_EVENT_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

bool webhook_provider_ok(const char *s)
{
    size_t n = 0;
    if (s == NULL) {
        return false;
    }
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return false;
        }
    }
    return n > 0 && n <= WEBHOOK_PROVIDER_MAX;
}

int webhook_inbox_key(const char *provider, const char *event_id, uint8_t *out, size_t cap,
                      size_t *klen)
{
    if (!webhook_provider_ok(provider) || event_id == NULL ||
        !webhook_event_id_ok(event_id, strlen(event_id))) {
        return AGAPE_EINVAL;
    }
    return store_key_pair(out, cap, provider, event_id, klen);
}

int webhook_public_id(const char *provider, const char *event_id, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s:%s", provider, event_id);
    if (n < 0 || (size_t)n >= outlen) {
        if (outlen > 0) {
            out[0] = '\0';
        }
        return AGAPE_ERANGE;
    }
    return AGAPE_OK;
}

int webhook_parse_id(const char *id, char *provider, size_t plen, char *event_id, size_t elen)
{
    const char *colon = id ? strchr(id, ':') : NULL;
    if (colon == NULL) {
        return AGAPE_EINVAL;
    }
    size_t pl = (size_t)(colon - id);
    size_t el = strlen(colon + 1);
    if (pl == 0 || pl >= plen || pl > WEBHOOK_PROVIDER_MAX || el >= elen ||
        !webhook_event_id_ok(colon + 1, el)) {
        return AGAPE_EINVAL;
    }
    memcpy(provider, id, pl);
    provider[pl] = '\0';
    if (!webhook_provider_ok(provider)) {
        provider[0] = '\0';
        return AGAPE_EINVAL;
    }
    memcpy(event_id, colon + 1, el + 1);
    return AGAPE_OK;
}

void webhook_outbox_hex(const uint8_t key[16], char out[33])
{
    crypto_hex(key, 16, out);
    out[32] = '\0';
}

char *webhook_outbox_item(const char *provider, const char *event_id)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "kind", "webhook", "provider", provider,
                          "event_id", event_id);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return text;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool webhook_outbox_unhex(const char *hex, uint8_t key[16])
{
    if (hex == NULL || strlen(hex) != 32) {
        return false;
    }
    for (int i = 0; i < 16; i++) {
        int hi = hexval(hex[2 * i]);
        int lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

json_t *webhook_inbox_record(const char *provider, const json_t *normalized, const char *body,
                             size_t body_len, int64_t received_ms, int64_t next_ms,
                             const char *outbox_hex)
{
    char recv[32];
    char next[32];
    webhook_iso(received_ms, recv);
    webhook_iso(next_ms, next);
    json_t *norm = json_deep_copy(normalized);
    json_t *rec = json_pack("{s:i, s:s, s:O, s:O, s:s, s:s, s:i, s:s, s:n, s:n, s:s, s:o}", "v",
                            1, "provider", provider, "event_id",
                            json_object_get(normalized, "event_id"), "type",
                            json_object_get(normalized, "type"), "received_at", recv, "status",
                            "pending", "attempts", 0, "next_at", next, "last_error",
                            "processed_at", "outbox_key", outbox_hex, "normalized", norm);
    if (rec == NULL) {
        return NULL;
    }
    json_t *text = json_stringn(body ? body : "", body_len);
    if (text != NULL) {
        json_object_set_new(rec, "body", text);
    } else {
        /* Not UTF-8: jansson refuses it as a string; keep the exact bytes. */
        struct agape_buf b;
        buf_init(&b, 0);
        if (crypto_base64(&b, body, body_len) == AGAPE_OK) {
            json_object_set_new(rec, "body_b64", json_string(buf_cstr(&b)));
        }
        buf_fini(&b);
    }
    return rec;
}

json_t *webhook_inbox_public(const json_t *rec, bool with_body)
{
    json_t *o = json_object();
    char id[WEBHOOK_ID_MAX];
    const char *p = json_string_value(json_object_get(rec, "provider"));
    const char *e = json_string_value(json_object_get(rec, "event_id"));
    if (o == NULL) {
        return NULL;
    }
    if (p && e && webhook_public_id(p, e, id, sizeof(id)) == AGAPE_OK) {
        json_object_set_new(o, "id", json_string(id));
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)rec, k, v) {
        if (strcmp(k, "v") == 0 || strcmp(k, "outbox_key") == 0 ||
            (!with_body && (strcmp(k, "body") == 0 || strcmp(k, "body_b64") == 0))) {
            continue;
        }
        json_object_set(o, k, v);
    }
    return o;
}

/* ---- payment statuses ------------------------------------------------ */

int webhook_status_rank(const char *status)
{
    static const struct {
        const char *name;
        int rank;
    } ranks[] = {
        {"requires_action", 0}, {"processing", 1}, {"succeeded", 2},
        {"failed", 2},          {"canceled", 2},   {"refunded", 3},
    };
    if (status == NULL) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(ranks) / sizeof(ranks[0]); i++) {
        if (strcmp(ranks[i].name, status) == 0) {
            return ranks[i].rank;
        }
    }
    return -1;
}

bool webhook_status_allowed(const char *from, const char *to)
{
    int rt = webhook_status_rank(to);
    int rf = webhook_status_rank(from);
    if (rt < 0) {
        return false;
    }
    if (rf < 0) {
        return true; /* no known status yet: anything known is progress */
    }
    if (strcmp(from, to) == 0) {
        return false;
    }
    if (rf == 2 && rt == 2) {
        /* A failed attempt may be followed by a successful retry, or the
         * intent may be canceled after failing; nothing else moves. */
        return strcmp(from, "failed") == 0;
    }
    if (rt == 3) {
        /* Only money that was taken can be given back. */
        return rf < 2 || strcmp(from, "succeeded") == 0;
    }
    return rt > rf;
}

enum webhook_apply webhook_apply_payment(json_t *payment, const char *event_id, const char *type,
                                         const char *status, int64_t now_ms)
{
    const char *cur = json_string_value(json_object_get(payment, "status"));
    if (status == NULL || (cur != NULL && strcmp(cur, status) == 0)) {
        return WEBHOOK_UNCHANGED;
    }
    if (!webhook_status_allowed(cur, status)) {
        return WEBHOOK_REFUSED;
    }
    char now[32];
    webhook_iso(now_ms, now);
    json_object_set_new(payment, "status", json_string(status));
    json_object_set_new(payment, "updated_at", json_string(now));
    if (strcmp(status, "refunded") == 0 && json_is_integer(json_object_get(payment, "amount"))) {
        json_object_set(payment, "refunded_amount", json_object_get(payment, "amount"));
    }
    json_t *events = json_object_get(payment, "events");
    if (!json_is_array(events)) {
        events = json_array();
        json_object_set_new(payment, "events", events);
    }
    json_array_append_new(events, json_pack("{s:s, s:s, s:s, s:s}", "event_id",
                                            event_id ? event_id : "", "type", type ? type : "",
                                            "status", status, "at", now));
    while (json_array_size(events) > WEBHOOK_PAYMENT_EVENTS_MAX) {
        json_array_remove(events, 0);
    }
    return WEBHOOK_APPLIED;
}

/* ---- subscriptions --------------------------------------------------- */

json_t *webhook_subscription_record(const char *provider, const char *event_id,
                                    int64_t created_s, const json_t *sub, const json_t *old,
                                    int64_t now_ms)
{
    const char *id = json_string_value(json_object_get(sub, "id"));
    if (id == NULL || id[0] == '\0') {
        return NULL;
    }
    json_t *oc = json_object_get(old, "event_created");
    if (json_is_integer(oc) && json_integer_value(oc) > created_s) {
        return NULL; /* a later event already wrote this subscription */
    }
    json_t *rec = json_deep_copy(sub);
    if (rec == NULL) {
        return NULL;
    }
    char now[32];
    webhook_iso(now_ms, now);
    json_object_set_new(rec, "provider", json_string(provider));
    json_object_set_new(rec, "updated_at", json_string(now));
    json_object_set_new(rec, "event_id", json_string(event_id ? event_id : ""));
    json_object_set_new(rec, "event_created", json_integer(created_s));
    return rec;
}

int64_t webhook_backoff_ms(int attempts, int64_t base_ms, int64_t cap_ms)
{
    int64_t d = base_ms > 0 ? base_ms : 1;
    for (int i = 1; i < attempts && d < cap_ms; i++) {
        d *= 2;
    }
    return d < cap_ms ? d : cap_ms;
}
