/* apikeys — API keys: creation, lookup (with a small cache), list, revoke.
 *
 * Why it is built this way:
 * - Only sha256(key) is stored: a copy of the database (or a backup) gives
 *   no usable key. The key has 256 random bits, so a plain hash (no salt, no
 *   slow KDF) cannot be inverted, and lookup is one B-tree get by hash.
 * - Name uniqueness among live keys is enforced by the store, not by a
 *   scan-then-write: the record and a meta name index entry are inserted in
 *   one batch (store_batch_insert), so two concurrent creates of one name
 *   (two CLI processes) cannot both succeed. Revoke deletes the index entry.
 * - Lookup runs on every API request, so answers are cached per process for
 *   APIKEYS_CACHE_TTL_MS. A revoke in this process bumps a generation and
 *   drops the entry, so a lookup that read the record before the revoke
 *   cannot put a stale "live" answer back. Unknown keys are not cached (a
 *   random key cannot be guessed; caching misses would only help a flood).
 */
#include "apikeys.h"

#include "crypto.h"
#include "log.h"
#include "store.h"
#include "store_keys.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_PREFIX "agk_"
#define KEY_PREFIX_LEN 4
#define KEY_HEX_LEN 64
#define KEY_LEN (KEY_PREFIX_LEN + KEY_HEX_LEN)
#define ID_PREFIX "key_"
#define ID_HEX_LEN 16
#define RECORD_VERSION 1
#define CACHE_SLOTS 1024

static const struct {
    const char *name;
    uint32_t bit;
} scope_names[] = {
    {"payments", APIKEYS_SCOPE_PAYMENTS}, {"messages", APIKEYS_SCOPE_MESSAGES},
    {"events", APIKEYS_SCOPE_EVENTS},     {"errors", APIKEYS_SCOPE_ERRORS},
    {"admin", APIKEYS_SCOPE_ADMIN},
};
#define SCOPE_COUNT (sizeof(scope_names) / sizeof(scope_names[0]))
#define SCOPES_KNOWN "payments, messages, events, errors, admin or all"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n < 0) {
        err[0] = '\0';
    }
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* Scopes and names                                                    */

int apikeys_parse_scopes(const char *csv, uint32_t *out, char *err, size_t errlen)
{
    uint32_t acc = 0;

    if (out != NULL) {
        *out = 0;
    }
    if (csv == NULL || out == NULL) {
        set_err(err, errlen, "scopes: missing; use " SCOPES_KNOWN);
        return AGAPE_EINVAL;
    }
    const char *p = csv;
    for (;;) {
        const char *end = strchr(p, ',');
        const char *a = p;
        const char *b = end ? end : p + strlen(p);
        while (a < b && (*a == ' ' || *a == '\t')) {
            a++;
        }
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) {
            b--;
        }
        size_t n = (size_t)(b - a);
        if (n == 0) {
            set_err(err, errlen, "scopes: empty scope name in the list; use " SCOPES_KNOWN);
            return AGAPE_EINVAL;
        }
        bool found = false;
        if (n == 3 && memcmp(a, "all", 3) == 0) {
            acc |= APIKEYS_SCOPE_ALL;
            found = true;
        }
        for (size_t i = 0; i < SCOPE_COUNT && !found; i++) {
            if (strlen(scope_names[i].name) == n && memcmp(a, scope_names[i].name, n) == 0) {
                acc |= scope_names[i].bit;
                found = true;
            }
        }
        if (!found) {
            set_err(err, errlen, "scopes: unknown scope '%.*s'%s; use " SCOPES_KNOWN,
                    (int)(n > 32 ? 32 : n), a, n > 32 ? "..." : "");
            return AGAPE_EINVAL;
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    *out = acc;
    return AGAPE_OK;
}

void apikeys_scopes_str(uint32_t scopes, char *out, size_t outlen)
{
    char all[APIKEYS_SCOPES_STR_SIZE]; /* holds every name, commas included */
    size_t len = 0;

    if (out == NULL || outlen == 0) {
        return;
    }
    all[0] = '\0';
    for (size_t i = 0; i < SCOPE_COUNT; i++) {
        if (scopes & scope_names[i].bit) {
            size_t n = strlen(scope_names[i].name);
            if (len > 0) {
                all[len++] = ',';
            }
            memcpy(all + len, scope_names[i].name, n + 1);
            len += n;
        }
    }
    if (len >= outlen) {
        /* Too small: keep the whole names that fit. */
        len = 0;
        for (size_t i = 0; i < outlen; i++) {
            if (all[i] == ',') {
                len = i;
            }
        }
    }
    memcpy(out, all, len);
    out[len] = '\0';
}

static bool valid_name(const char *name)
{
    size_t n = 0;
    for (const char *p = name; *p != '\0'; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok || n >= APIKEYS_NAME_MAX) {
            return false;
        }
    }
    return n >= 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* "key_" + 16 lowercase hex → the 8 leading bytes of sha256(key). */
static bool parse_id(const char *s, unsigned char prefix[8])
{
    if (strncmp(s, ID_PREFIX, 4) != 0 || strlen(s) != 4 + ID_HEX_LEN) {
        return false;
    }
    for (int i = 0; i < 8; i++) {
        int hi = hexval(s[4 + 2 * i]);
        int lo = hexval(s[5 + 2 * i]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        prefix[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Records                                                             */

static char *record_dump(const struct apikey *k, int64_t revoked_ms)
{
    char scopes[APIKEYS_SCOPES_STR_SIZE];
    char *text = NULL;

    apikeys_scopes_str(k->scopes, scopes, sizeof(scopes));
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    int bad = 0;
    bad |= json_object_set_new(o, "v", json_integer(RECORD_VERSION));
    bad |= json_object_set_new(o, "id", json_string(k->id));
    bad |= json_object_set_new(o, "name", json_string(k->name));
    bad |= json_object_set_new(o, "scopes", json_string(scopes));
    bad |= json_object_set_new(o, "created_ms", json_integer(k->created_ms));
    bad |= json_object_set_new(o, "revoked", json_boolean(k->revoked));
    if (k->revoked) {
        bad |= json_object_set_new(o, "revoked_ms", json_integer(revoked_ms));
    }
    if (!bad) {
        text = json_dumps(o, JSON_COMPACT);
    }
    json_decref(o);
    return text;
}

static int record_parse(const void *val, size_t vlen, struct apikey *out)
{
    int rc = AGAPE_ESTORE;
    json_t *o = json_loadb(val, vlen, 0, NULL);

    memset(out, 0, sizeof(*out));
    if (!json_is_object(o)) {
        goto out;
    }
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *scopes = json_string_value(json_object_get(o, "scopes"));
    json_t *created = json_object_get(o, "created_ms");
    if (id == NULL || name == NULL || scopes == NULL || !json_is_integer(created) ||
        strlen(id) >= sizeof(out->id) || strlen(name) >= sizeof(out->name)) {
        goto out;
    }
    if (apikeys_parse_scopes(scopes, &out->scopes, NULL, 0) != AGAPE_OK) {
        goto out;
    }
    memcpy(out->id, id, strlen(id) + 1);
    memcpy(out->name, name, strlen(name) + 1);
    out->created_ms = json_integer_value(created);
    out->revoked = json_is_true(json_object_get(o, "revoked"));
    rc = AGAPE_OK;
out:
    json_decref(o);
    if (rc != AGAPE_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

static int name_index_key(const char *name, uint8_t *out, size_t cap, size_t *klen)
{
    return store_key_pair(out, cap, STORE_META_APIKEY_NAME, name, klen);
}

/* ------------------------------------------------------------------ */
/* The lookup cache: direct-mapped by hash, entries expire.            */

struct cache_entry {
    const struct store *s;
    unsigned char hash[32];
    struct apikey key;
    int64_t expires_ms;
    bool used;
};

static struct cache_entry cache[CACHE_SLOTS];
static uint64_t cache_gen; /* bumped by every in-process revoke */
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t cache_slot(const unsigned char hash[32])
{
    return ((size_t)hash[0] | (size_t)hash[1] << 8) % CACHE_SLOTS;
}

static bool cache_get(const struct store *s, const unsigned char hash[32], struct apikey *out)
{
    bool hit = false;
    pthread_mutex_lock(&cache_mu);
    struct cache_entry *e = &cache[cache_slot(hash)];
    if (e->used && e->s == s && crypto_ct_equal(e->hash, 32, hash, 32)) {
        if (mono_ms() < e->expires_ms) {
            *out = e->key;
            hit = true;
        } else {
            e->used = false;
        }
    }
    pthread_mutex_unlock(&cache_mu);
    return hit;
}

static uint64_t cache_generation(void)
{
    pthread_mutex_lock(&cache_mu);
    uint64_t g = cache_gen;
    pthread_mutex_unlock(&cache_mu);
    return g;
}

static void cache_put(const struct store *s, const unsigned char hash[32],
                      const struct apikey *k, uint64_t gen)
{
    pthread_mutex_lock(&cache_mu);
    if (gen == cache_gen) {
        struct cache_entry *e = &cache[cache_slot(hash)];
        e->s = s;
        memcpy(e->hash, hash, 32);
        e->key = *k;
        e->expires_ms = mono_ms() + APIKEYS_CACHE_TTL_MS;
        e->used = true;
    }
    pthread_mutex_unlock(&cache_mu);
}

static void cache_forget(const unsigned char hash[32])
{
    pthread_mutex_lock(&cache_mu);
    cache_gen++;
    struct cache_entry *e = &cache[cache_slot(hash)];
    if (e->used && memcmp(e->hash, hash, 32) == 0) {
        e->used = false;
    }
    pthread_mutex_unlock(&cache_mu);
}

void apikeys_cache_clear(void)
{
    pthread_mutex_lock(&cache_mu);
    cache_gen++;
    memset(cache, 0, sizeof(cache));
    pthread_mutex_unlock(&cache_mu);
}

/* ------------------------------------------------------------------ */
/* Create, lookup                                                      */

int apikeys_create(struct store *s, const char *name, uint32_t scopes, char *key_out,
                   size_t keylen, struct apikey *info_out, char *err, size_t errlen)
{
    unsigned char raw[32];
    unsigned char hash[32];
    char key[APIKEYS_KEY_SIZE];
    uint8_t ikey[STORE_KEY_MAX];
    size_t iklen = 0;
    struct apikey rec;
    char *text = NULL;
    int rc;

    memset(&rec, 0, sizeof(rec));
    if (key_out != NULL && keylen > 0) {
        key_out[0] = '\0';
    }
    if (s == NULL || key_out == NULL) {
        set_err(err, errlen, "apikeys: no store or key buffer");
        rc = AGAPE_EINVAL;
        goto out;
    }
    if (keylen < APIKEYS_KEY_SIZE) {
        set_err(err, errlen, "apikeys: key buffer too small (%zu < %d)", keylen,
                APIKEYS_KEY_SIZE);
        rc = AGAPE_ERANGE;
        goto out;
    }
    if (name == NULL || !valid_name(name)) {
        set_err(err, errlen, "name: must be 1..%d characters of A-Z a-z 0-9 _ . -",
                APIKEYS_NAME_MAX);
        rc = AGAPE_EINVAL;
        goto out;
    }
    if (scopes == 0 || (scopes & ~APIKEYS_SCOPE_ALL) != 0) {
        set_err(err, errlen, "scopes: at least one of " SCOPES_KNOWN);
        rc = AGAPE_EINVAL;
        goto out;
    }
    if (crypto_random(raw, sizeof(raw)) != AGAPE_OK) {
        set_err(err, errlen, "apikeys: no random bytes available");
        rc = AGAPE_ERROR;
        goto out;
    }
    memcpy(key, KEY_PREFIX, KEY_PREFIX_LEN);
    crypto_hex(raw, sizeof(raw), key + KEY_PREFIX_LEN);
    crypto_sha256(key, KEY_LEN, hash);

    memcpy(rec.id, ID_PREFIX, 4);
    crypto_hex(hash, ID_HEX_LEN / 2, rec.id + 4);
    memcpy(rec.name, name, strlen(name) + 1);
    rec.scopes = scopes;
    rec.created_ms = wall_ms();
    rec.revoked = false;

    text = record_dump(&rec, 0);
    rc = name_index_key(name, ikey, sizeof(ikey), &iklen);
    if (text == NULL || rc != AGAPE_OK) {
        set_err(err, errlen, "apikeys: out of memory");
        rc = AGAPE_ENOMEM;
        goto out;
    }
    struct store_batch *b = store_batch_new();
    if (b == NULL) {
        set_err(err, errlen, "apikeys: out of memory");
        rc = AGAPE_ENOMEM;
        goto out;
    }
    store_batch_insert(b, STORE_API_KEYS, hash, sizeof(hash), text, strlen(text));
    store_batch_insert(b, STORE_META, ikey, iklen, hash, sizeof(hash));
    rc = store_commit(s, b);
    if (rc == AGAPE_EEXIST) {
        set_err(err, errlen, "name: an active key named '%s' already exists", name);
        goto out;
    }
    if (rc != AGAPE_OK) {
        set_err(err, errlen, "apikeys: the store failed to save the key");
        goto out;
    }
    memcpy(key_out, key, KEY_LEN + 1);
    if (info_out != NULL) {
        *info_out = rec;
    }
out:
    explicit_bzero(raw, sizeof(raw));
    explicit_bzero(key, sizeof(key));
    free(text);
    return rc;
}

/* "agk_" + exactly 64 lowercase hex; anything else cannot be one of ours. */
static bool key_well_formed(const char *key)
{
    if (strncmp(key, KEY_PREFIX, KEY_PREFIX_LEN) != 0) {
        return false;
    }
    for (int i = 0; i < KEY_HEX_LEN; i++) {
        if (hexval(key[KEY_PREFIX_LEN + i]) < 0) {
            return false; /* also stops at the NUL of a short key */
        }
    }
    return key[KEY_LEN] == '\0';
}

int apikeys_lookup(struct store *s, const char *key, struct apikey *out)
{
    unsigned char hash[32];
    char *val = NULL;
    size_t vlen = 0;
    int rc;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (s == NULL || key == NULL || out == NULL) {
        return AGAPE_EINVAL;
    }
    if (!key_well_formed(key)) {
        return AGAPE_ENOENT;
    }
    crypto_sha256(key, KEY_LEN, hash);
    if (cache_get(s, hash, out)) {
        return AGAPE_OK;
    }
    uint64_t gen = cache_generation();
    rc = store_get(s, STORE_API_KEYS, hash, sizeof(hash), &val, &vlen);
    if (rc == AGAPE_ENOENT) {
        return rc;
    }
    if (rc != AGAPE_OK) {
        log_error("apikeys: lookup failed in the store (rc %d)", rc);
        return AGAPE_ESTORE;
    }
    rc = record_parse(val, vlen, out);
    free(val);
    if (rc != AGAPE_OK) {
        log_error("apikeys: an api_keys record is unreadable");
        return AGAPE_ESTORE;
    }
    cache_put(s, hash, out, gen);
    return AGAPE_OK;
}

/* ------------------------------------------------------------------ */
/* List                                                                */

struct list_ctx {
    struct apikey *items;
    size_t n;
    size_t cap;
    int rc;
};

static int list_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct list_ctx *c = arg;
    struct apikey k;
    (void)key;
    (void)klen;
    if (record_parse(val, vlen, &k) != AGAPE_OK) {
        log_error("apikeys: skipping an unreadable api_keys record");
        return 0;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct apikey *p = realloc(c->items, cap * sizeof(*p));
        if (p == NULL) {
            c->rc = AGAPE_ENOMEM;
            return 1;
        }
        c->items = p;
        c->cap = cap;
    }
    c->items[c->n++] = k;
    return 0;
}

static int by_created(const void *a, const void *b)
{
    const struct apikey *x = a;
    const struct apikey *y = b;
    if (x->created_ms != y->created_ms) {
        return x->created_ms < y->created_ms ? -1 : 1;
    }
    return strcmp(x->id, y->id);
}

static void iso8601(int64_t ms, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(out, outlen, "1970-01-01T00:00:00Z");
    }
}

int apikeys_list(struct store *s, json_t **out)
{
    struct list_ctx c = {0};
    json_t *arr = NULL;
    int rc;

    if (out != NULL) {
        *out = NULL;
    }
    if (s == NULL || out == NULL) {
        return AGAPE_EINVAL;
    }
    rc = store_scan(s, STORE_API_KEYS, NULL, 0, NULL, 0, 0, list_one, &c);
    if (rc == AGAPE_OK) {
        rc = c.rc;
    }
    if (rc != AGAPE_OK) {
        goto out;
    }
    if (c.n > 1) {
        qsort(c.items, c.n, sizeof(*c.items), by_created);
    }
    arr = json_array();
    if (arr == NULL) {
        rc = AGAPE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < c.n; i++) {
        char scopes[APIKEYS_SCOPES_STR_SIZE];
        char when[32];
        apikeys_scopes_str(c.items[i].scopes, scopes, sizeof(scopes));
        iso8601(c.items[i].created_ms, when, sizeof(when));
        json_t *o = json_object();
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            rc = AGAPE_ENOMEM;
            goto out;
        }
        int bad = 0;
        bad |= json_object_set_new(o, "id", json_string(c.items[i].id));
        bad |= json_object_set_new(o, "name", json_string(c.items[i].name));
        bad |= json_object_set_new(o, "scopes", json_string(scopes));
        bad |= json_object_set_new(o, "created_at", json_string(when));
        bad |= json_object_set_new(o, "revoked", json_boolean(c.items[i].revoked));
        if (bad) {
            rc = AGAPE_ENOMEM;
            goto out;
        }
    }
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    free(c.items);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Revoke                                                              */

struct find_id {
    const char *id;
    unsigned char hash[32];
    bool found;
};

static int find_live_id(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct find_id *f = arg;
    struct apikey k;
    if (klen != 32 || record_parse(val, vlen, &k) != AGAPE_OK) {
        return 0;
    }
    if (!k.revoked && strcmp(k.id, f->id) == 0) {
        memcpy(f->hash, key, 32);
        f->found = true;
        return 1;
    }
    return 0;
}

int apikeys_revoke(struct store *s, const char *name_or_id, char *err, size_t errlen)
{
    struct find_id f;
    unsigned char prefix[8];
    uint8_t ikey[STORE_KEY_MAX];
    size_t iklen = 0;
    char *val = NULL;
    size_t vlen = 0;
    char *text = NULL;
    struct apikey rec;
    int rc;

    memset(&f, 0, sizeof(f));
    if (s == NULL || name_or_id == NULL || name_or_id[0] == '\0') {
        set_err(err, errlen, "revoke: which key? (a name or an id)");
        return AGAPE_EINVAL;
    }
    f.id = name_or_id;
    if (parse_id(name_or_id, prefix)) {
        rc = store_scan(s, STORE_API_KEYS, prefix, sizeof(prefix), NULL, 0, 0, find_live_id, &f);
        if (rc != AGAPE_OK) {
            set_err(err, errlen, "revoke: the store failed");
            return rc;
        }
    }
    if (!f.found && valid_name(name_or_id)) {
        rc = name_index_key(name_or_id, ikey, sizeof(ikey), &iklen);
        if (rc == AGAPE_OK) {
            rc = store_get(s, STORE_META, ikey, iklen, &val, &vlen);
        }
        if (rc == AGAPE_OK && vlen == 32) {
            memcpy(f.hash, val, 32);
            f.found = true;
        } else if (rc != AGAPE_OK && rc != AGAPE_ENOENT) {
            free(val);
            set_err(err, errlen, "revoke: the store failed");
            return rc;
        }
        free(val);
        val = NULL;
    }
    if (!f.found) {
        set_err(err, errlen, "revoke: no active key with the id or name '%.64s'", name_or_id);
        return AGAPE_ENOENT;
    }

    rc = store_get(s, STORE_API_KEYS, f.hash, 32, &val, &vlen);
    if (rc == AGAPE_OK) {
        rc = record_parse(val, vlen, &rec);
    }
    if (rc == AGAPE_ENOENT || (rc == AGAPE_OK && rec.revoked)) {
        set_err(err, errlen, "revoke: no active key with the id or name '%.64s'", name_or_id);
        rc = AGAPE_ENOENT;
        goto out;
    }
    if (rc != AGAPE_OK) {
        set_err(err, errlen, "revoke: the key's record is unreadable");
        goto out;
    }
    rec.revoked = true;
    text = record_dump(&rec, wall_ms());
    if (text == NULL || name_index_key(rec.name, ikey, sizeof(ikey), &iklen) != AGAPE_OK) {
        set_err(err, errlen, "revoke: out of memory");
        rc = AGAPE_ENOMEM;
        goto out;
    }
    struct store_batch *b = store_batch_new();
    if (b == NULL) {
        set_err(err, errlen, "revoke: out of memory");
        rc = AGAPE_ENOMEM;
        goto out;
    }
    store_batch_put(b, STORE_API_KEYS, f.hash, 32, text, strlen(text));
    /* The name index points at the live key of that name, which this is;
     * check anyway rather than drop another key's entry. */
    free(val);
    val = NULL;
    rc = store_get(s, STORE_META, ikey, iklen, &val, &vlen);
    if (rc != AGAPE_OK && rc != AGAPE_ENOENT) {
        store_batch_free(b);
        set_err(err, errlen, "revoke: the store failed");
        goto out;
    }
    if (rc == AGAPE_OK && vlen == 32 && memcmp(val, f.hash, 32) == 0) {
        store_batch_del(b, STORE_META, ikey, iklen);
    }
    rc = store_commit(s, b);
    if (rc != AGAPE_OK) {
        set_err(err, errlen, "revoke: the store failed to save the change");
        goto out;
    }
    cache_forget(f.hash);
out:
    free(val);
    free(text);
    return rc;
}
