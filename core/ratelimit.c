/* ratelimit — see ratelimit.h.
 *
 * Why a set-associative table: a bounded table cannot grow with hostile
 * input (an unauthenticated flood never reaches here, but a bug upstream
 * must not become unbounded memory), and a small set keeps the search for a
 * free, idle or oldest entry to RATELIMIT_WAYS hash comparisons under one
 * lock. Why integer micro-tokens: refill and Retry-After are then exact
 * (no 69.999… ms), whatever the rate; the rate's resolution is 0.001/s. */
#include "ratelimit.h"

#include <agape/plugin.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_SETS (RATELIMIT_BUCKETS / RATELIMIT_WAYS)
#define N_STRIPES 64

#define MICRO 1000000LL /* micro-tokens per token */

struct bucket {
    char key[RATELIMIT_KEY_MAX]; /* "" = free */
    uint32_t hash;
    int64_t tokens;              /* micro-tokens */
    int64_t last_ms;             /* time `tokens` was computed for */
};

struct ratelimit {
    int64_t rate;  /* micro-tokens per ms (= tokens per second * 1000), >= 1 */
    int64_t burst; /* micro-tokens */
    bool unlimited;
    pthread_mutex_t stripes[N_STRIPES];
    struct bucket buckets[RATELIMIT_BUCKETS];
    atomic_ullong allowed;
    atomic_ullong refused;
    atomic_ullong evictions;
};

struct ratelimit *ratelimit_create(double rate_per_s, double burst)
{
    struct ratelimit *rl;

    if (!isfinite(rate_per_s) || rate_per_s < 0.0 || rate_per_s > 1e9) {
        return NULL;
    }
    if (rate_per_s > 0.0 && (!isfinite(burst) || burst < 1.0 || burst > 1e9)) {
        return NULL;
    }
    rl = calloc(1, sizeof(*rl));
    if (rl == NULL) {
        return NULL;
    }
    rl->unlimited = rate_per_s == 0.0;
    if (!rl->unlimited) {
        rl->rate = llround(rate_per_s * 1000.0);
        rl->rate = rl->rate < 1 ? 1 : rl->rate;
        rl->burst = llround(burst * (double)MICRO);
    }
    for (int i = 0; i < N_STRIPES; i++) {
        if (pthread_mutex_init(&rl->stripes[i], NULL) != 0) {
            while (i-- > 0) {
                pthread_mutex_destroy(&rl->stripes[i]);
            }
            free(rl);
            return NULL;
        }
    }
    return rl;
}

void ratelimit_destroy(struct ratelimit *rl)
{
    if (rl == NULL) {
        return;
    }
    for (int i = 0; i < N_STRIPES; i++) {
        pthread_mutex_destroy(&rl->stripes[i]);
    }
    free(rl);
}

/* FNV-1a over the bytes that are told apart. */
static uint32_t key_hash(const char *k)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < RATELIMIT_KEY_MAX - 1 && k[i] != '\0'; i++) {
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    }
    return h;
}

static bool key_equal(const char *stored, const char *k)
{
    return strncmp(stored, k, RATELIMIT_KEY_MAX - 1) == 0;
}

/* Micro-tokens in b at now, refilled and capped (time going back counts
 * as no time). */
static int64_t refilled(const struct ratelimit *rl, const struct bucket *b, int64_t now)
{
    if (now <= b->last_ms || b->tokens >= rl->burst) {
        return b->tokens < rl->burst ? b->tokens : rl->burst;
    }
    int64_t elapsed = now - b->last_ms;
    if (elapsed >= (rl->burst - b->tokens) / rl->rate + 1) { /* no overflow below */
        return rl->burst;
    }
    int64_t t = b->tokens + elapsed * rl->rate;
    return t < rl->burst ? t : rl->burst;
}

/* The entry for key in set `set` (lock held): its own, a free one, an idle
 * one, or the least recently used. */
static struct bucket *find(struct ratelimit *rl, uint32_t set, uint32_t hash, const char *key,
                           int64_t now)
{
    struct bucket *ways = &rl->buckets[set * RATELIMIT_WAYS];
    struct bucket *free_b = NULL;
    struct bucket *idle = NULL;
    struct bucket *oldest = NULL;

    for (int i = 0; i < RATELIMIT_WAYS; i++) {
        struct bucket *b = &ways[i];
        if (b->key[0] == '\0') {
            free_b = free_b ? free_b : b;
            continue;
        }
        if (b->hash == hash && key_equal(b->key, key)) {
            return b;
        }
        if (idle == NULL && refilled(rl, b, now) >= rl->burst) {
            idle = b;
        }
        if (oldest == NULL || b->last_ms < oldest->last_ms) {
            oldest = b;
        }
    }
    struct bucket *b = free_b ? free_b : idle ? idle : oldest;
    if (free_b == NULL && idle == NULL) {
        atomic_fetch_add_explicit(&rl->evictions, 1, memory_order_relaxed);
    }
    snprintf(b->key, sizeof(b->key), "%s", key);
    b->hash = hash;
    b->tokens = rl->burst;
    b->last_ms = now;
    return b;
}

bool ratelimit_take(struct ratelimit *rl, const char *key_id, int64_t now_ms,
                    int64_t *retry_after_ms)
{
    int64_t wait = 0;
    bool ok;

    if (rl->unlimited) {
        atomic_fetch_add_explicit(&rl->allowed, 1, memory_order_relaxed);
        if (retry_after_ms != NULL) {
            *retry_after_ms = 0;
        }
        return true;
    }
    if (key_id == NULL || key_id[0] == '\0') {
        key_id = "-"; /* one shared bucket rather than none */
    }
    uint32_t hash = key_hash(key_id);
    uint32_t set = hash % N_SETS;
    pthread_mutex_t *lock = &rl->stripes[set % N_STRIPES];

    pthread_mutex_lock(lock);
    struct bucket *b = find(rl, set, hash, key_id, now_ms);
    int64_t t = refilled(rl, b, now_ms);
    if (now_ms > b->last_ms) {
        b->last_ms = now_ms;
    }
    if (t >= MICRO) {
        b->tokens = t - MICRO;
        ok = true;
    } else {
        b->tokens = t;
        wait = (MICRO - t + rl->rate - 1) / rl->rate; /* >= 1: MICRO - t > 0 */
        ok = false;
    }
    pthread_mutex_unlock(lock);

    atomic_fetch_add_explicit(ok ? &rl->allowed : &rl->refused, 1, memory_order_relaxed);
    if (retry_after_ms != NULL) {
        *retry_after_ms = wait;
    }
    return ok;
}

void ratelimit_stats(struct ratelimit *rl, struct ratelimit_stats *out)
{
    out->allowed = atomic_load(&rl->allowed);
    out->refused = atomic_load(&rl->refused);
    out->evictions = atomic_load(&rl->evictions);
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "a table";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "nil";
    }
    return "a value";
}

static int read_number(const json_t *tab, const char *key, double min, double *out, bool *have,
                       char *err, size_t errlen)
{
    const json_t *v = json_object_get(tab, key);

    *have = false;
    if (v == NULL) {
        return AGAPE_OK;
    }
    if (!json_is_number(v)) {
        snprintf(err, errlen, "rate_limit.%s: expected a number between %g and 1e9, got %s", key,
                 min, json_kind(v));
        return AGAPE_EINVAL;
    }
    double x = json_number_value(v);
    if (!(x >= min && x <= 1e9)) {
        snprintf(err, errlen, "rate_limit.%s: expected a number between %g and 1e9, got %g", key,
                 min, x);
        return AGAPE_EINVAL;
    }
    *out = x;
    *have = true;
    return AGAPE_OK;
}

int ratelimit_config_from_json(const json_t *table, double *rate_per_s, double *burst,
                               char *err, size_t errlen)
{
    double rate = 0.0;
    double b = 1.0;
    bool have_rate = false;
    bool have_burst = false;
    const char *key;
    json_t *val;

    if (table == NULL) {
        *rate_per_s = 0.0;
        *burst = 1.0;
        return AGAPE_OK;
    }
    if (!json_is_object(table)) {
        snprintf(err, errlen, "rate_limit: expected a table, got %s", json_kind(table));
        return AGAPE_EINVAL;
    }
    json_object_foreach((json_t *)table, key, val) {
        if (strcmp(key, "requests_per_second") != 0 && strcmp(key, "burst") != 0) {
            snprintf(err, errlen,
                     "rate_limit.%.64s: unknown key (known: requests_per_second, burst)", key);
            return AGAPE_EINVAL;
        }
    }
    if (read_number(table, "requests_per_second", 0.0, &rate, &have_rate, err, errlen) !=
            AGAPE_OK ||
        read_number(table, "burst", 1.0, &b, &have_burst, err, errlen) != AGAPE_OK) {
        return AGAPE_EINVAL;
    }
    if (!have_burst) {
        b = rate > 1.0 ? rate : 1.0;
    }
    *rate_per_s = rate;
    *burst = b;
    return AGAPE_OK;
}
