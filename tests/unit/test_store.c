/* Unit tests of core/store.c: what a caller of store.h relies on. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "store.h"
#include "store_keys.h"

#include <ftw.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Test-only knob in store.c (not part of store.h). */
void store_test_map_initial(size_t bytes);

struct fixture {
    char dir[64];
    struct store *s;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[AGAPE_ERR_SIZE] = "";
    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/agape-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    /* A directory below the temp dir: store_open creates it (mkdir -p). */
    char sub[96];
    snprintf(sub, sizeof(sub), "%s/a/b", f->dir);
    if (store_open(sub, &f->s, err, sizeof(err)) != AGAPE_OK) {
        fprintf(stderr, "store_open: %s\n", err);
        nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static char *subdir(struct fixture *f, char *buf, size_t len)
{
    snprintf(buf, len, "%s/a/b", f->dir);
    return buf;
}

static int put1(struct store *s, enum store_table t, const char *k, const char *v)
{
    struct store_batch *b = store_batch_new();
    store_batch_put(b, t, k, strlen(k), v, strlen(v));
    return store_commit(s, b);
}

static void assert_value(struct store *s, enum store_table t, const char *k, const char *want)
{
    char *v = NULL;
    size_t vlen = 0;
    assert_int_equal(store_get(s, t, k, strlen(k), &v, &vlen), AGAPE_OK);
    assert_int_equal(vlen, strlen(want));
    assert_string_equal(v, want); /* NUL-terminated copy */
    free(v);
}

static void assert_absent(struct store *s, enum store_table t, const char *k)
{
    char *v = (char *)1;
    size_t vlen = 7;
    assert_int_equal(store_get(s, t, k, strlen(k), &v, &vlen), AGAPE_ENOENT);
    assert_null(v);
    assert_int_equal(vlen, 0);
}

/* ------------------------------------------------------------------ */

static void test_put_get_del(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;

    assert_absent(s, STORE_PAYMENTS, "pay_1");
    assert_int_equal(put1(s, STORE_PAYMENTS, "pay_1", "{\"amount\":100}"), AGAPE_OK);
    assert_value(s, STORE_PAYMENTS, "pay_1", "{\"amount\":100}");
    /* Tables are separate namespaces. */
    assert_absent(s, STORE_KV, "pay_1");

    /* Overwrite. */
    assert_int_equal(put1(s, STORE_PAYMENTS, "pay_1", "{\"amount\":200}"), AGAPE_OK);
    assert_value(s, STORE_PAYMENTS, "pay_1", "{\"amount\":200}");

    /* Delete; deleting again (absent) is not an error. */
    struct store_batch *b = store_batch_new();
    store_batch_del(b, STORE_PAYMENTS, "pay_1", 5);
    assert_int_equal(store_commit(s, b), AGAPE_OK);
    assert_absent(s, STORE_PAYMENTS, "pay_1");
    b = store_batch_new();
    store_batch_del(b, STORE_PAYMENTS, "pay_1", 5);
    assert_int_equal(store_commit(s, b), AGAPE_OK);

    /* Several writes in one batch are applied together; empty value allowed. */
    b = store_batch_new();
    store_batch_put(b, STORE_PAYMENTS, "pay_2", 5, "two", 3);
    store_batch_put(b, STORE_OUTBOX, "o1", 2, "work", 4);
    store_batch_put(b, STORE_META, "empty", 5, NULL, 0);
    assert_int_equal(store_commit(s, b), AGAPE_OK);
    assert_value(s, STORE_PAYMENTS, "pay_2", "two");
    assert_value(s, STORE_OUTBOX, "o1", "work");
    assert_value(s, STORE_META, "empty", "");

    /* Empty batch commits. */
    assert_int_equal(store_commit(s, store_batch_new()), AGAPE_OK);

    struct store_stats st;
    store_get_stats(s, &st);
    assert_true(st.commits >= 1);
    assert_true(st.batches >= 5);
    assert_true(st.map_size >= ((uint64_t)1 << 30));
}

static void test_insert(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;

    struct store_batch *b = store_batch_new();
    store_batch_insert(b, STORE_IDEMPOTENCY, "k1", 2, "first", 5);
    assert_int_equal(store_commit(s, b), AGAPE_OK);

    /* A batch with a conflicting insert applies none of its writes. */
    b = store_batch_new();
    store_batch_put(b, STORE_PAYMENTS, "pay_x", 5, "x", 1);
    store_batch_insert(b, STORE_IDEMPOTENCY, "k1", 2, "second", 6);
    store_batch_put(b, STORE_PAYMENTS, "pay_y", 5, "y", 1);
    assert_int_equal(store_commit(s, b), AGAPE_EEXIST);
    assert_value(s, STORE_IDEMPOTENCY, "k1", "first");
    assert_absent(s, STORE_PAYMENTS, "pay_x");
    assert_absent(s, STORE_PAYMENTS, "pay_y");

    /* Two inserts of the same key in one batch: the second finds the first. */
    b = store_batch_new();
    store_batch_insert(b, STORE_IDEMPOTENCY, "k2", 2, "a", 1);
    store_batch_insert(b, STORE_IDEMPOTENCY, "k2", 2, "b", 1);
    assert_int_equal(store_commit(s, b), AGAPE_EEXIST);
    assert_absent(s, STORE_IDEMPOTENCY, "k2");

    /* After a delete the insert succeeds. */
    b = store_batch_new();
    store_batch_del(b, STORE_IDEMPOTENCY, "k1", 2);
    store_batch_insert(b, STORE_IDEMPOTENCY, "k1", 2, "third", 5);
    assert_int_equal(store_commit(s, b), AGAPE_OK);
    assert_value(s, STORE_IDEMPOTENCY, "k1", "third");
}

/* Async completion tracking. */
struct waitset {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int pending;
};

struct async_rec {
    struct waitset *ws;
    int rc;
    int ran;
    pthread_t thread;
    struct store *s;
    struct async_rec *chain; /* submitted from inside this callback */
    struct async_rec *chain2;
};

static void waitset_init(struct waitset *ws, int n)
{
    pthread_mutex_init(&ws->mu, NULL);
    pthread_cond_init(&ws->cond, NULL);
    ws->pending = n;
}

static void waitset_wait(struct waitset *ws)
{
    pthread_mutex_lock(&ws->mu);
    while (ws->pending > 0) {
        pthread_cond_wait(&ws->cond, &ws->mu);
    }
    pthread_mutex_unlock(&ws->mu);
    pthread_cond_destroy(&ws->cond);
    pthread_mutex_destroy(&ws->mu);
}

static void on_done(int rc, void *arg)
{
    struct async_rec *r = arg;
    r->rc = rc;
    r->ran++;
    r->thread = pthread_self();
    pthread_mutex_lock(&r->ws->mu);
    r->ws->pending--;
    pthread_cond_signal(&r->ws->cond);
    pthread_mutex_unlock(&r->ws->mu);
}

/* Runs on the writer thread between groups: both batches it submits are
 * queued before the writer looks at the queue again, so they share the
 * next write transaction. */
static void on_done_then_submit_pair(int rc, void *arg)
{
    struct async_rec *r = arg;
    struct store_batch *a = store_batch_new();
    store_batch_put(a, STORE_PAYMENTS, "pay_a", 5, "a", 1);
    store_batch_insert(a, STORE_IDEMPOTENCY, "dup", 3, "again", 5);
    store_commit_async(r->s, a, on_done, r->chain);
    struct store_batch *b = store_batch_new();
    store_batch_put(b, STORE_PAYMENTS, "pay_b", 5, "b", 1);
    store_batch_insert(b, STORE_IDEMPOTENCY, "fresh", 5, "new", 3);
    store_commit_async(r->s, b, on_done, r->chain2);
    on_done(rc, arg);
}

static void test_conflict_rolls_back_only_its_batch(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    struct waitset ws;
    struct async_rec ra = {0}, rb = {0}, r0 = {0};
    struct store_stats before, after;

    assert_int_equal(put1(s, STORE_IDEMPOTENCY, "dup", "orig"), AGAPE_OK);
    store_get_stats(s, &before);

    waitset_init(&ws, 3);
    ra.ws = rb.ws = r0.ws = &ws;
    r0.s = s;
    r0.chain = &ra;
    r0.chain2 = &rb;
    struct store_batch *b0 = store_batch_new();
    store_batch_put(b0, STORE_META, "m", 1, "0", 1);
    store_commit_async(s, b0, on_done_then_submit_pair, &r0);
    waitset_wait(&ws);

    assert_int_equal(r0.rc, AGAPE_OK);
    assert_int_equal(ra.rc, AGAPE_EEXIST);
    assert_int_equal(rb.rc, AGAPE_OK);
    store_get_stats(s, &after);
    /* Exactly two write transactions: b0, then a and b together. */
    assert_int_equal(after.commits - before.commits, 2);
    assert_int_equal(after.batches - before.batches, 2);
    assert_int_equal(after.failed - before.failed, 1);

    assert_absent(s, STORE_PAYMENTS, "pay_a");
    assert_value(s, STORE_IDEMPOTENCY, "dup", "orig");
    assert_value(s, STORE_PAYMENTS, "pay_b", "b");
    assert_value(s, STORE_IDEMPOTENCY, "fresh", "new");
}

static void test_async_callback(void **state)
{
    struct fixture *f = *state;
    struct waitset ws;
    struct async_rec r = {0};

    waitset_init(&ws, 1);
    r.ws = &ws;
    struct store_batch *b = store_batch_new();
    store_batch_put(b, STORE_KV, "ns\0k", 4, "v", 1);
    store_commit_async(f->s, b, on_done, &r);
    waitset_wait(&ws);
    assert_int_equal(r.ran, 1);
    assert_int_equal(r.rc, AGAPE_OK);
    assert_false(pthread_equal(r.thread, pthread_self())); /* the writer thread */
    char *v = NULL;
    size_t vlen = 0;
    assert_int_equal(store_get(f->s, STORE_KV, "ns\0k", 4, &v, &vlen), AGAPE_OK);
    assert_memory_equal(v, "v", 1);
    free(v);

    /* A conflicting async insert reports EEXIST through the callback. */
    waitset_init(&ws, 1);
    memset(&r, 0, sizeof(r));
    r.ws = &ws;
    b = store_batch_new();
    store_batch_insert(b, STORE_KV, "ns\0k", 4, "w", 1);
    store_commit_async(f->s, b, on_done, &r);
    waitset_wait(&ws);
    assert_int_equal(r.rc, AGAPE_EEXIST);
}

/* Scan */
struct seen {
    char keys[16][32];
    int n;
    int stop_after;
    struct store *s;
    int nested_ok;
};

static int collect(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct seen *sn = arg;
    (void)val;
    (void)vlen;
    if (sn->n < 16 && klen < 32) {
        memcpy(sn->keys[sn->n], key, klen);
        sn->keys[sn->n][klen] = '\0';
        /* show the separator as '|' */
        for (size_t i = 0; i < klen; i++) {
            if (sn->keys[sn->n][i] == '\0') {
                sn->keys[sn->n][i] = '|';
            }
        }
    }
    sn->n++;
    if (sn->s != NULL) {
        /* A read from inside a scan (same thread, nested transaction). */
        char *v = NULL;
        if (store_get(sn->s, STORE_META, "m", 1, &v, NULL) == AGAPE_OK) {
            sn->nested_ok++;
        }
        free(v);
    }
    return (sn->stop_after && sn->n >= sn->stop_after) ? 1 : 0;
}

static void test_scan(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->s;
    static const char *const keys[] = {"a\0x", "a\0y", "a\0z", "ab\0q", "b\0r"};
    uint8_t k[64];
    size_t klen;

    struct store_batch *b = store_batch_new();
    for (size_t i = 0; i < 5; i++) {
        size_t len = strlen(keys[i]) + 1 + 1; /* "a" NUL "x" */
        store_batch_put(b, STORE_KV, keys[i], len, "v", 1);
    }
    store_batch_put(b, STORE_META, "m", 1, "1", 1);
    assert_int_equal(store_commit(s, b), AGAPE_OK);

    struct seen sn = {0};
    assert_int_equal(store_scan(s, STORE_KV, NULL, 0, NULL, 0, 0, collect, &sn), AGAPE_OK);
    assert_int_equal(sn.n, 5);
    assert_string_equal(sn.keys[0], "a|x");
    assert_string_equal(sn.keys[3], "ab|q");
    assert_string_equal(sn.keys[4], "b|r");

    /* Prefix "a" | 0x00 does not match "ab" | 0x00 ... */
    assert_int_equal(store_key_pair(k, sizeof(k), "a", NULL, &klen), AGAPE_OK);
    assert_int_equal(klen, 2);
    memset(&sn, 0, sizeof(sn));
    assert_int_equal(store_scan(s, STORE_KV, k, klen, NULL, 0, 0, collect, &sn), AGAPE_OK);
    assert_int_equal(sn.n, 3);
    assert_string_equal(sn.keys[0], "a|x");
    assert_string_equal(sn.keys[2], "a|z");

    /* ... from a start key (inclusive) ... */
    uint8_t st[8];
    size_t stlen;
    assert_int_equal(store_key_pair(st, sizeof(st), "a", "y", &stlen), AGAPE_OK);
    memset(&sn, 0, sizeof(sn));
    assert_int_equal(store_scan(s, STORE_KV, k, klen, st, stlen, 0, collect, &sn), AGAPE_OK);
    assert_int_equal(sn.n, 2);
    assert_string_equal(sn.keys[0], "a|y");
    assert_string_equal(sn.keys[1], "a|z");

    /* ... with a limit ... */
    memset(&sn, 0, sizeof(sn));
    assert_int_equal(store_scan(s, STORE_KV, k, klen, NULL, 0, 2, collect, &sn), AGAPE_OK);
    assert_int_equal(sn.n, 2);
    assert_string_equal(sn.keys[1], "a|y");

    /* ... a start before the prefix starts at the prefix ... */
    memset(&sn, 0, sizeof(sn));
    assert_int_equal(store_scan(s, STORE_KV, k, klen, "A", 1, 0, collect, &sn), AGAPE_OK);
    assert_int_equal(sn.n, 3);

    /* ... a start after the range gives nothing ... */
    memset(&sn, 0, sizeof(sn));
    assert_int_equal(store_scan(s, STORE_KV, k, klen, "a\x01", 2, 0, collect, &sn), AGAPE_OK);
    assert_int_equal(sn.n, 0);

    /* ... a prefix with no match gives nothing ... */
    memset(&sn, 0, sizeof(sn));
    assert_int_equal(store_scan(s, STORE_KV, "c", 1, NULL, 0, 0, collect, &sn), AGAPE_OK);
    assert_int_equal(sn.n, 0);

    /* ... and the callback stops the scan by returning 1. */
    memset(&sn, 0, sizeof(sn));
    sn.stop_after = 1;
    assert_int_equal(store_scan(s, STORE_KV, NULL, 0, NULL, 0, 0, collect, &sn), AGAPE_OK);
    assert_int_equal(sn.n, 1);

    /* A store_get inside the callback works. */
    memset(&sn, 0, sizeof(sn));
    sn.s = s;
    assert_int_equal(store_scan(s, STORE_KV, NULL, 0, NULL, 0, 0, collect, &sn), AGAPE_OK);
    assert_int_equal(sn.nested_ok, 5);

    /* Empty table. */
    memset(&sn, 0, sizeof(sn));
    assert_int_equal(store_scan(s, STORE_SESSIONS, NULL, 0, NULL, 0, 0, collect, &sn),
                     AGAPE_OK);
    assert_int_equal(sn.n, 0);
}

/* Concurrency */
#define NTHREADS 8
#define NBATCHES 500

struct worker {
    struct store *s;
    int id;
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < NBATCHES; i++) {
        char key[32];
        char val[64];
        uint8_t ok[16];
        snprintf(key, sizeof(key), "pay_%02d_%04d", w->id, i);
        snprintf(val, sizeof(val), "{\"t\":%d,\"i\":%d}", w->id, i);
        store_key_outbox(ok, (uint64_t)i, (uint64_t)(w->id * NBATCHES + i));
        struct store_batch *b = store_batch_new();
        store_batch_put(b, STORE_PAYMENTS, key, strlen(key), val, strlen(val));
        store_batch_insert(b, STORE_OUTBOX, ok, sizeof(ok), key, strlen(key));
        if (store_commit(w->s, b) != AGAPE_OK) {
            w->failures++;
        }
    }
    return NULL;
}

static int count_entry(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    (void)key;
    (void)klen;
    (void)val;
    (void)vlen;
    (*(size_t *)arg)++;
    return 0;
}

static void test_concurrent_commits(void **state)
{
    struct fixture *f = *state;
    pthread_t th[NTHREADS];
    struct worker w[NTHREADS];
    struct store_stats before, after;

    store_get_stats(f->s, &before);
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){.s = f->s, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    store_get_stats(f->s, &after);
    assert_int_equal(after.batches - before.batches, NTHREADS * NBATCHES);
    assert_int_equal(after.failed, before.failed);
    /* Grouping happened: fewer transactions than batches. */
    assert_true(after.commits - before.commits < NTHREADS * NBATCHES);

    size_t n = 0;
    assert_int_equal(store_scan(f->s, STORE_PAYMENTS, "pay_", 4, NULL, 0, 0, count_entry, &n),
                     AGAPE_OK);
    assert_int_equal(n, NTHREADS * NBATCHES);
    n = 0;
    assert_int_equal(store_scan(f->s, STORE_OUTBOX, NULL, 0, NULL, 0, 0, count_entry, &n),
                     AGAPE_OK);
    assert_int_equal(n, NTHREADS * NBATCHES);
    for (int t = 0; t < NTHREADS; t++) {
        for (int i = 0; i < NBATCHES; i += 97) {
            char key[32];
            char val[64];
            snprintf(key, sizeof(key), "pay_%02d_%04d", t, i);
            snprintf(val, sizeof(val), "{\"t\":%d,\"i\":%d}", t, i);
            assert_value(f->s, STORE_PAYMENTS, key, val);
        }
    }
}

static void test_reopen_keeps_data(void **state)
{
    struct fixture *f = *state;
    char dir[96];
    char err[AGAPE_ERR_SIZE] = "";

    assert_int_equal(put1(f->s, STORE_META, "schema", "1"), AGAPE_OK);
    /* Queued async writes are committed by store_close before it returns. */
    struct waitset ws;
    struct async_rec r[50];
    memset(r, 0, sizeof(r));
    waitset_init(&ws, 50);
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof(key), "late%02d", i);
        r[i].ws = &ws;
        struct store_batch *b = store_batch_new();
        store_batch_put(b, STORE_META, key, strlen(key), "x", 1);
        store_commit_async(f->s, b, on_done, &r[i]);
    }
    store_close(f->s);
    f->s = NULL;
    waitset_wait(&ws);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(r[i].rc, AGAPE_OK);
    }

    assert_int_equal(store_open(subdir(f, dir, sizeof(dir)), &f->s, err, sizeof(err)),
                     AGAPE_OK);
    assert_value(f->s, STORE_META, "schema", "1");
    assert_value(f->s, STORE_META, "late00", "x");
    assert_value(f->s, STORE_META, "late49", "x");
}

static void test_large_value(void **state)
{
    struct fixture *f = *state;
    size_t len = 300 * 1024 + 17;
    char *big = malloc(len);
    assert_non_null(big);
    for (size_t i = 0; i < len; i++) {
        big[i] = (char)(i * 131 + (i >> 9));
    }
    struct store_batch *b = store_batch_new();
    store_batch_put(b, STORE_INBOX, "stripe\0evt_1", 12, big, len);
    assert_int_equal(store_commit(f->s, b), AGAPE_OK);
    char *v = NULL;
    size_t vlen = 0;
    assert_int_equal(store_get(f->s, STORE_INBOX, "stripe\0evt_1", 12, &v, &vlen), AGAPE_OK);
    assert_int_equal(vlen, len);
    assert_memory_equal(v, big, len);
    assert_int_equal(v[len], '\0');
    free(v);
    free(big);
}

static void test_bad_input(void **state)
{
    struct fixture *f = *state;
    char longkey[STORE_KEY_MAX + 2];
    char *v = NULL;

    memset(longkey, 'k', sizeof(longkey));
    struct store_batch *b = store_batch_new();
    store_batch_put(b, STORE_KV, "", 0, "v", 1);
    assert_int_equal(store_commit(f->s, b), AGAPE_EINVAL);

    b = store_batch_new();
    store_batch_put(b, STORE_KV, "ok", 2, "v", 1);
    store_batch_put(b, STORE_KV, longkey, STORE_KEY_MAX + 1, "v", 1);
    assert_int_equal(store_commit(f->s, b), AGAPE_EINVAL);
    assert_absent(f->s, STORE_KV, "ok"); /* nothing of the batch applied */

    b = store_batch_new();
    store_batch_put(b, STORE_TABLE_COUNT, "k", 1, "v", 1);
    assert_int_equal(store_commit(f->s, b), AGAPE_EINVAL);

    /* The longest key works. */
    b = store_batch_new();
    store_batch_put(b, STORE_KV, longkey, STORE_KEY_MAX, "v", 1);
    assert_int_equal(store_commit(f->s, b), AGAPE_OK);
    assert_int_equal(store_get(f->s, STORE_KV, longkey, STORE_KEY_MAX, &v, NULL), AGAPE_OK);
    free(v);

    assert_int_equal(store_get(f->s, STORE_KV, "k", 0, &v, NULL), AGAPE_EINVAL);
    assert_int_equal(store_get(f->s, STORE_KV, longkey, STORE_KEY_MAX + 1, &v, NULL),
                     AGAPE_EINVAL);
    assert_int_equal(store_commit(f->s, NULL), AGAPE_EINVAL);

    uint8_t kb[8];
    size_t kl;
    assert_int_equal(store_key_pair(kb, sizeof(kb), "abcd", "efgh", &kl), AGAPE_ERANGE);
    assert_int_equal(store_key_pair(kb, sizeof(kb), "", "x", &kl), AGAPE_EINVAL);
    uint8_t be[8];
    store_key_be64(be, 0x0102030405060708ull);
    assert_int_equal(be[0], 1);
    assert_int_equal(be[7], 8);
    assert_int_equal(store_key_read_be64(be), 0x0102030405060708ull);
}

/* Map growth: start with a tiny map and write far more than it holds while a
 * reader keeps transactions open. */
struct reader_arg {
    struct store *s;
    atomic_int stop;
    long reads;
    int errors;
};

static void *reader_main(void *arg)
{
    struct reader_arg *ra = arg;
    while (!ra->stop) {
        char *v = NULL;
        int rc = store_get(ra->s, STORE_META, "anchor", 6, &v, NULL);
        if (rc != AGAPE_OK) {
            ra->errors++;
        }
        free(v);
        size_t n = 0;
        if (store_scan(ra->s, STORE_INBOX, NULL, 0, NULL, 0, 8, count_entry, &n) != AGAPE_OK) {
            ra->errors++;
        }
        ra->reads++;
    }
    return NULL;
}

static void test_map_grows(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/agape-storegrow-XXXXXX";
    char err[AGAPE_ERR_SIZE] = "";
    struct store *s = NULL;
    struct store_stats st;

    assert_non_null(mkdtemp(tmpl));
    store_test_map_initial(256 * 1024);
    int rc = store_open(tmpl, &s, err, sizeof(err));
    store_test_map_initial(0);
    assert_int_equal(rc, AGAPE_OK);
    store_get_stats(s, &st);
    /* LMDB's own default for a new file (1 MiB) is above the knob. */
    assert_true(st.map_size <= 1024 * 1024);
    assert_int_equal(put1(s, STORE_META, "anchor", "a"), AGAPE_OK);

    struct reader_arg ra = {.s = s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader_main, &ra), 0);
    char *val = malloc(20000);
    assert_non_null(val);
    memset(val, 'v', 20000);
    for (int i = 0; i < 200; i++) { /* 4 MB in all */
        char key[8];
        char num[16];
        snprintf(num, sizeof(num), "%04d", i);
        memcpy(key, "p\0e", 3);
        memcpy(key + 3, num, 4);
        struct store_batch *b = store_batch_new();
        store_batch_put(b, STORE_INBOX, key, 7, val, 20000);
        assert_int_equal(store_commit(s, b), AGAPE_OK);
    }
    ra.stop = 1;
    pthread_join(th, NULL);
    assert_int_equal(ra.errors, 0);
    assert_true(ra.reads > 0);

    store_get_stats(s, &st);
    assert_true(st.map_size >= 4u * 1024 * 1024);
    assert_int_equal(st.failed, 0);
    size_t n = 0;
    assert_int_equal(store_scan(s, STORE_INBOX, NULL, 0, NULL, 0, 0, count_entry, &n),
                     AGAPE_OK);
    assert_int_equal(n, 200);
    char *v = NULL;
    size_t vlen = 0;
    assert_int_equal(store_get(s, STORE_INBOX, "p\0e0199", 7, &v, &vlen), AGAPE_OK);
    assert_int_equal(vlen, 20000);
    assert_memory_equal(v, val, 20000);
    free(v);
    free(val);
    store_close(s);
    nftw(tmpl, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void test_open_errors(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE] = "";
    struct store *s = (struct store *)1;

    assert_int_equal(store_open("", &s, err, sizeof(err)), AGAPE_EINVAL);
    assert_null(s);
    /* A path below a regular file cannot be created. */
    assert_int_not_equal(store_open("/etc/passwd/x", &s, err, sizeof(err)), AGAPE_OK);
    assert_null(s);
    assert_non_null(strstr(err, "/etc/passwd/x"));
    store_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_rolls_back_only_its_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_async_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test(test_map_grows),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
