/* script_rules — agape.* functions for webhook rules and the rule run that
 * buffers their effects (see script_rules.h).
 *
 * Why buffer: a rule's effects (kv writes, queued messages) must commit in
 * the same LMDB batch as the event's "done" mark, or a crash between the two
 * would apply them twice (or mark done an event whose effects were lost).
 * Reads therefore look in the run first, then in the store. */
#include "script_rules.h"

#include "crypto.h"
#include "log.h"
#include "store_keys.h"
#include "webhook.h"

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static __thread struct script_rules_run *current;

/* ---- helpers usable from C ------------------------------------------ */

/* Sequence numbers: a random high half per process (so processes sharing a
 * store never collide) and a counter (so items due in the same millisecond
 * keep their order). */
static pthread_once_t seq_once = PTHREAD_ONCE_INIT;
static uint64_t seq_high;
static bool seq_ok;
static _Atomic uint32_t seq_next;

static void seq_init(void)
{
    uint8_t rnd[4];
    seq_ok = crypto_random(rnd, sizeof(rnd)) == AGAPE_OK;
    seq_high = (uint64_t)rnd[0] << 56 | (uint64_t)rnd[1] << 48 | (uint64_t)rnd[2] << 40 |
               (uint64_t)rnd[3] << 32;
}

int script_rules_outbox_key(uint8_t out[16], int64_t due_ms)
{
    pthread_once(&seq_once, seq_init);
    if (!seq_ok) {
        return AGAPE_ERROR;
    }
    uint64_t seq = seq_high | atomic_fetch_add(&seq_next, 1);
    store_key_outbox(out, (uint64_t)(due_ms > 0 ? due_ms : 0), seq);
    return AGAPE_OK;
}

json_t *script_rules_kv_read(struct store *s, const char *ns, const char *key)
{
    uint8_t k[STORE_KEY_MAX];
    size_t kl = 0;
    char *val = NULL;
    size_t vlen = 0;
    if (store_key_pair(k, sizeof(k), ns, key, &kl) != AGAPE_OK ||
        store_get(s, STORE_KV, k, kl, &val, &vlen) != AGAPE_OK) {
        return NULL;
    }
    json_t *v = json_loadb(val, vlen, JSON_DECODE_ANY, NULL);
    free(val);
    return v;
}

int script_rules_begin(struct script_rules_run *run, const char *source, int64_t now_ms)
{
    memset(run, 0, sizeof(*run));
    run->kv = json_array();
    run->items = json_array();
    run->payments = json_object();
    run->source = source;
    run->now_ms = now_ms;
    if (run->kv == NULL || run->items == NULL || run->payments == NULL) {
        script_rules_end(run);
        return AGAPE_ENOMEM;
    }
    current = run;
    return AGAPE_OK;
}

void script_rules_end(struct script_rules_run *run)
{
    if (current == run) {
        current = NULL;
    }
    json_decref(run->kv);
    json_decref(run->items);
    json_decref(run->payments);
    run->kv = run->items = run->payments = NULL;
}

/* The run's entry for (ns, key), or NULL. */
static json_t *run_find(struct script_rules_run *run, const char *ns, const char *key)
{
    size_t i;
    json_t *e;
    json_array_foreach(run->kv, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "ns")), ns) == 0 &&
            strcmp(json_string_value(json_object_get(e, "key")), key) == 0) {
            return e;
        }
    }
    return NULL;
}

int script_rules_kv_put(struct script_rules_run *run, const char *ns, const char *key,
                        json_t *value, bool core)
{
    json_t *e = run_find(run, ns, key);
    json_t *v = value ? json_deep_copy(value) : json_null();
    if (v == NULL) {
        return AGAPE_ENOMEM;
    }
    if (e != NULL && (core || !json_is_true(json_object_get(e, "core")))) {
        json_object_set_new(e, "value", v);
        return AGAPE_OK;
    }
    /* A rule's write over a core write is a new entry: the core's stays
     * (and is what commits when the rule fails); the later one wins in the
     * batch and in reads (searched last to first). */
    if (json_array_size(run->kv) >= SCRIPT_RULES_MAX_WRITES) {
        json_decref(v);
        return AGAPE_ERANGE;
    }
    e = json_pack("{s:s, s:s, s:o, s:b}", "ns", ns, "key", key, "value", v, "core", core);
    if (e == NULL || json_array_append_new(run->kv, e) != 0) {
        return AGAPE_ENOMEM;
    }
    return AGAPE_OK;
}

/* Latest entry for (ns, key), searching from the end (a rule's entry after
 * the core's). */
static json_t *run_latest(struct script_rules_run *run, const char *ns, const char *key)
{
    for (size_t i = json_array_size(run->kv); i > 0; i--) {
        json_t *e = json_array_get(run->kv, i - 1);
        if (strcmp(json_string_value(json_object_get(e, "ns")), ns) == 0 &&
            strcmp(json_string_value(json_object_get(e, "key")), key) == 0) {
            return e;
        }
    }
    return NULL;
}

static void put_kv(struct store_batch *b, json_t *e)
{
    uint8_t k[STORE_KEY_MAX];
    size_t kl = 0;
    const char *ns = json_string_value(json_object_get(e, "ns"));
    const char *key = json_string_value(json_object_get(e, "key"));
    json_t *v = json_object_get(e, "value");
    if (store_key_pair(k, sizeof(k), ns, key, &kl) != AGAPE_OK) {
        return;
    }
    if (v == NULL || json_is_null(v)) {
        store_batch_del(b, STORE_KV, k, kl);
        return;
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (text != NULL) {
        store_batch_put(b, STORE_KV, k, kl, text, strlen(text));
    }
    free(text);
}

int script_rules_to_batch(struct script_rules_run *run, struct store_batch *b, bool rule_ok)
{
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(run->kv, i, e) {
        if (rule_ok || json_is_true(json_object_get(e, "core"))) {
            put_kv(b, e);
        }
    }
    if (!rule_ok) {
        return 0;
    }
    json_array_foreach(run->items, i, e) {
        uint8_t k[16];
        char *text = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (text == NULL || script_rules_outbox_key(k, run->now_ms) != AGAPE_OK) {
            free(text);
            return AGAPE_ENOMEM;
        }
        store_batch_put(b, STORE_OUTBOX, k, sizeof(k), text, strlen(text));
        free(text);
        n++;
    }
    return n;
}

/* ---- Lua side --------------------------------------------------------- */

static struct store *lib_store(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static struct script_rules_run *need_run(lua_State *L, const char *fn)
{
    if (current == NULL) {
        luaL_error(L, "agape.%s works only inside a webhook rule", fn);
    }
    return current;
}

static const char *check_name(lua_State *L, int arg, size_t max, const char *what)
{
    size_t len = 0;
    const char *s = luaL_checklstring(L, arg, &len);
    if (len == 0 || len > max || strlen(s) != len) {
        luaL_error(L, "%s must be a non-empty string of at most %d bytes without NUL", what,
                   (int)max);
    }
    return s;
}

/* Push v (stolen; NULL → nil). Raises past the conversion limits. */
static int push_owned(lua_State *L, json_t *v)
{
    if (v == NULL) {
        lua_pushnil(L);
        return 1;
    }
    /* Convert in a protected-enough way: script_push_json raises a Lua error
     * past its limits, which would leak v; those limits (depth 32, a million
     * values) are above what the store holds for one record. */
    script_push_json(L, v);
    json_decref(v);
    return 1;
}

static int l_kv_get(lua_State *L)
{
    const char *ns = check_name(L, 1, SCRIPT_RULES_NS_MAX, "namespace");
    const char *key = check_name(L, 2, SCRIPT_RULES_KEY_MAX, "key");
    if (current != NULL) {
        json_t *e = run_latest(current, ns, key);
        if (e != NULL) {
            json_t *v = json_object_get(e, "value");
            return push_owned(L, v && !json_is_null(v) ? json_incref(v) : NULL);
        }
    }
    return push_owned(L, script_rules_kv_read(lib_store(L), ns, key));
}

static int l_kv_put(lua_State *L)
{
    struct script_rules_run *run = need_run(L, "kv_put");
    const char *ns = check_name(L, 1, SCRIPT_RULES_NS_MAX, "namespace");
    const char *key = check_name(L, 2, SCRIPT_RULES_KEY_MAX, "key");
    char err[256];
    json_t *v = NULL;
    if (!lua_isnoneornil(L, 3)) {
        v = script_to_json(L, 3, "value", err, sizeof(err));
        if (v == NULL) {
            return luaL_error(L, "agape.kv_put: %s", err);
        }
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        size_t len = text ? strlen(text) : 0;
        free(text);
        if (len > SCRIPT_RULES_VALUE_MAX) {
            json_decref(v);
            return luaL_error(L, "agape.kv_put: the value is over %d bytes as JSON",
                              SCRIPT_RULES_VALUE_MAX);
        }
    }
    int rc = script_rules_kv_put(run, ns, key, v, false);
    json_decref(v);
    if (rc == AGAPE_ERANGE) {
        return luaL_error(L, "agape.kv_put: more than %d keys written in one rule run",
                          SCRIPT_RULES_MAX_WRITES);
    }
    if (rc != AGAPE_OK) {
        return luaL_error(L, "agape.kv_put: out of memory");
    }
    return 0;
}

/* A payment record as clients see it (internal members left out). */
static json_t *payment_public(json_t *rec)
{
    json_t *o = json_deep_copy(rec);
    json_object_del(o, "idem_base");
    json_object_del(o, "api_key_id");
    json_object_del(o, "boot");
    return o;
}

static json_t *payment_load(struct store *s, const char *id)
{
    if (current != NULL) {
        json_t *p = json_object_get(current->payments, id);
        if (p != NULL) {
            return payment_public(p);
        }
    }
    char *val = NULL;
    size_t vlen = 0;
    if (store_get(s, STORE_PAYMENTS, id, strlen(id), &val, &vlen) != AGAPE_OK) {
        return NULL;
    }
    json_t *rec = json_loadb(val, vlen, 0, NULL);
    free(val);
    json_t *pub = rec ? payment_public(rec) : NULL;
    json_decref(rec);
    return pub;
}

static int l_payment(lua_State *L)
{
    const char *id = check_name(L, 1, 128, "payment id");
    return push_owned(L, payment_load(lib_store(L), id));
}

static int l_payment_by_ref(lua_State *L)
{
    const char *prov = check_name(L, 1, WEBHOOK_PROVIDER_MAX, "provider");
    const char *ref = check_name(L, 2, 255, "provider reference");
    char scope[80];
    uint8_t k[STORE_KEY_MAX];
    size_t kl = 0;
    char *pid = NULL;
    size_t plen = 0;
    snprintf(scope, sizeof(scope), "pref:%s", prov);
    if (store_key_pair(k, sizeof(k), scope, ref, &kl) != AGAPE_OK ||
        store_get(lib_store(L), STORE_META, k, kl, &pid, &plen) != AGAPE_OK) {
        lua_pushnil(L);
        return 1;
    }
    json_t *rec = payment_load(lib_store(L), pid);
    free(pid);
    return push_owned(L, rec);
}

static int l_subscription(lua_State *L)
{
    const char *id = check_name(L, 1, SCRIPT_RULES_KEY_MAX, "subscription id");
    if (current != NULL) {
        json_t *e = run_latest(current, WEBHOOK_KV_SUBSCRIPTIONS, id);
        if (e != NULL) {
            json_t *v = json_object_get(e, "value");
            return push_owned(L, v && !json_is_null(v) ? json_incref(v) : NULL);
        }
    }
    return push_owned(L, script_rules_kv_read(lib_store(L), WEBHOOK_KV_SUBSCRIPTIONS, id));
}

/* The table argument as a JSON object with only `allowed` members. */
static json_t *table_arg(lua_State *L, const char *fn, const char *const *allowed)
{
    char err[256];
    luaL_checktype(L, 1, LUA_TTABLE);
    json_t *o = script_to_json(L, 1, fn, err, sizeof(err));
    if (o == NULL) {
        luaL_error(L, "agape.%s: %s", fn, err);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        luaL_error(L, "agape.%s: expected a table with named fields", fn);
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        bool ok = false;
        for (int i = 0; allowed[i]; i++) {
            ok = ok || strcmp(allowed[i], k) == 0;
        }
        if (!ok) {
            char key[48];
            snprintf(key, sizeof(key), "%s", k);
            json_decref(o);
            luaL_error(L, "agape.%s: unknown field '%s'", fn, key);
            return NULL;
        }
    }
    return o;
}

/* Raise with o freed first. */
static int fail_with(lua_State *L, json_t *o, const char *msg)
{
    json_decref(o);
    return luaL_error(L, "%s", msg);
}

static bool str_field(json_t *o, const char *k, size_t max, bool required)
{
    json_t *v = json_object_get(o, k);
    if (v == NULL) {
        return !required;
    }
    return json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= max;
}

static int l_enqueue_message(lua_State *L)
{
    static const char *const allowed[] = {"channel", "to",   "template", "data", "subject",
                                          "text",    "html", "body",     "from", NULL};
    struct script_rules_run *run = need_run(L, "enqueue_message");
    json_t *m = table_arg(L, "enqueue_message", allowed);
    const char *channel = json_string_value(json_object_get(m, "channel"));
    bool email = channel && strcmp(channel, "email") == 0;
    bool sms = channel && strcmp(channel, "sms") == 0;
    if (!email && !sms) {
        return fail_with(L, m, "agape.enqueue_message: channel must be \"email\" or \"sms\"");
    }
    if (!str_field(m, "to", 320, true)) {
        return fail_with(L, m, "agape.enqueue_message: to is required (a string of at most "
                               "320 bytes)");
    }
    if (!str_field(m, "template", 64, false) || !str_field(m, "subject", 1000, false) ||
        !str_field(m, "from", 320, false) || !str_field(m, "body", 1600, false) ||
        !str_field(m, "text", 100000, false) || !str_field(m, "html", 100000, false)) {
        return fail_with(L, m, "agape.enqueue_message: template, subject, from, body, text "
                               "and html must be non-empty strings when given");
    }
    json_t *data = json_object_get(m, "data");
    if (data != NULL && !json_is_object(data)) {
        return fail_with(L, m, "agape.enqueue_message: data must be a table of named fields");
    }
    bool has_content = json_object_get(m, "template") != NULL ||
                       (email ? (json_object_get(m, "text") || json_object_get(m, "html"))
                              : json_object_get(m, "body") != NULL);
    if (!has_content) {
        return fail_with(L, m, email ? "agape.enqueue_message: an email needs template, "
                                       "text or html"
                                     : "agape.enqueue_message: an sms needs template or body");
    }
    if (json_array_size(run->items) >= SCRIPT_RULES_MAX_ITEMS) {
        return fail_with(L, m, "agape.enqueue_message: too many messages and events queued "
                               "by one rule run");
    }
    char id[48];
    char now[32];
    if (crypto_random_id("msg_", 12, id, sizeof(id)) != AGAPE_OK) {
        return fail_with(L, m, "agape.enqueue_message: no randomness for an id");
    }
    webhook_iso(run->now_ms, now);
    json_object_set_new(m, "kind", json_string("message"));
    json_object_set_new(m, "id", json_string(id));
    json_object_set_new(m, "status", json_string("queued"));
    json_object_set_new(m, "created_at", json_string(now));
    if (run->source) {
        json_object_set_new(m, "source", json_string(run->source));
    }
    json_array_append_new(run->items, m);
    lua_pushstring(L, id);
    return 1;
}

static int l_track(lua_State *L)
{
    static const char *const allowed[] = {"name", "user_id", "params", NULL};
    struct script_rules_run *run = need_run(L, "track");
    json_t *ev = table_arg(L, "track", allowed);
    if (!str_field(ev, "name", 40, true)) {
        return fail_with(L, ev, "agape.track: name is required (a string of at most 40 bytes)");
    }
    json_t *uid = json_object_get(ev, "user_id");
    if (uid != NULL && !json_is_string(uid) && !json_is_integer(uid)) {
        return fail_with(L, ev, "agape.track: user_id must be a string or an integer");
    }
    json_t *params = json_object_get(ev, "params");
    if (params != NULL && !json_is_object(params)) {
        return fail_with(L, ev, "agape.track: params must be a table of named fields");
    }
    if (json_array_size(run->items) >= SCRIPT_RULES_MAX_ITEMS) {
        return fail_with(L, ev, "agape.track: too many messages and events queued by one "
                                "rule run");
    }
    char now[32];
    webhook_iso(run->now_ms, now);
    json_object_set_new(ev, "kind", json_string("event"));
    json_object_set_new(ev, "created_at", json_string(now));
    if (run->source) {
        json_object_set_new(ev, "source", json_string(run->source));
    }
    json_array_append_new(run->items, ev);
    return 0;
}

static const luaL_Reg rules_lib[] = {
    {"kv_get", l_kv_get},
    {"kv_put", l_kv_put},
    {"payment", l_payment},
    {"payment_by_ref", l_payment_by_ref},
    {"subscription", l_subscription},
    {"enqueue_message", l_enqueue_message},
    {"track", l_track},
    {NULL, NULL},
};

int script_rules_register(struct script_engine *e, struct store *store)
{
    return script_register_lib(e, "agape", rules_lib, store);
}
