/* store — LMDB behind the store.h contract; the only file that calls mdb_*.
 *
 * Why it is built this way (numbers in /work/shared/NOTES.md):
 * - One writer thread commits groups: a synced commit costs ~170 µs, so
 *   every batch queued while the previous commit ran shares the next one.
 *   The writer never lingers to fill a group (a linger ruins low load); it
 *   takes what is queued, capped by bytes (small caps cost throughput).
 *   Submitters are served FIFO, which LMDB's own writer mutex is not.
 * - Each batch runs in a nested transaction, so one batch whose insert finds
 *   its key is rolled back alone while its siblings commit.
 * - MDB_NOTLS: reader slots belong to transaction objects, not threads, so
 *   libmicrohttpd's pool threads never pin slots. Reset read transactions are
 *   kept in a small pool and renewed, which skips the reader-table mutex.
 * - The map is large and only grows: on MDB_MAP_FULL the group is aborted,
 *   every transaction of this process is excluded (LMDB 0.9.24 does not check
 *   for live readers when remapping), the map doubles, and the group is redone.
 *   The same exclusion adopts a map another process (the CLI) grew
 *   (MDB_MAP_RESIZED).
 *
 * Live-transaction accounting: every transaction (reads on any thread, the
 * writer's write transaction) is bracketed by live_enter/live_leave, a
 * counter plus a "resizing" flag (sequentially consistent atomics: either the
 * entering thread sees the flag, or the resizer sees the count). A thread
 * already inside a transaction of the same store (a store_get from a
 * store_scan callback) re-enters without waiting, or it would deadlock
 * against a waiting resizer; it follows that a scan callback must never wait
 * for the writer (no store_commit from inside store_scan).
 */
#include "store.h"

#include "buf.h"
#include "log.h"
#include "store_keys.h"

#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define STORE_MAP_INITIAL ((size_t)1 << 30)    /* 1 GiB; the file grows only with use */
#define STORE_MAX_READERS 2048
#define STORE_GROUP_BYTES ((size_t)4 << 20)    /* payload per write transaction */
#define STORE_BATCH_MAX ((size_t)1 << 30)      /* payload per batch */
#define STORE_GROW_MAX 8                       /* map doublings tried per group */
#define STORE_RTXN_POOL 64                     /* reset read transactions kept */

static const char *const table_names[STORE_TABLE_COUNT] = {
    [STORE_PAYMENTS] = "payments", [STORE_IDEMPOTENCY] = "idempotency",
    [STORE_API_KEYS] = "api_keys", [STORE_KV] = "kv",
    [STORE_OUTBOX] = "outbox",     [STORE_INBOX] = "inbox",
    [STORE_USERS] = "users",       [STORE_SESSIONS] = "sessions",
    [STORE_META] = "meta",
};

enum op_kind {
    OP_PUT = 0,
    OP_INSERT,
    OP_DEL
};

/* One write; key and value live in the batch's data buffer (offsets, since
 * the buffer moves when it grows). */
struct store_op {
    uint8_t kind;
    uint8_t table;
    size_t koff;
    size_t klen;
    size_t voff;
    size_t vlen;
};

/* A synchronous submitter waits on its own condition variable (on its stack)
 * with the store's mutex, so the writer wakes exactly the threads it served. */
struct store_waiter {
    pthread_cond_t cond;
    bool done;
    int rc;
};

struct store_batch {
    struct store_op *ops;
    size_t nops;
    size_t cap;
    struct agape_buf data;
    int error;                   /* sticky build error, reported by commit */
    int rc;                      /* the outcome, set by the writer */
    struct store_batch *next;    /* queue link */
    struct store_waiter *waiter; /* store_commit */
    store_done_fn done;          /* store_commit_async */
    void *arg;
};

struct store {
    MDB_env *env;
    MDB_dbi dbi[STORE_TABLE_COUNT];

    pthread_mutex_t mu;          /* the queue, stopping, the waiters */
    pthread_cond_t wcond;        /* wakes the writer */
    struct store_batch *head;
    struct store_batch *tail;
    bool stopping;
    bool writer_started;
    pthread_t writer;

    atomic_uint live;            /* transactions of this process now open */
    atomic_bool resizing;
    atomic_bool broken;          /* a remap failed: the map is gone */
    pthread_mutex_t rs_mu;
    pthread_cond_t rs_cond;

    pthread_mutex_t pool_mu;
    MDB_txn *pool[STORE_RTXN_POOL];
    size_t npool;

    _Atomic uint64_t commits;
    _Atomic uint64_t batches;
    _Atomic uint64_t failed;
    _Atomic uint64_t map_size;

    bool mu_init;
    bool rs_init;
    bool pool_init;
};

/* Tests only (not part of store.h): the initial map size, so a unit test can
 * make the map grow without writing a gigabyte. 0 restores the default. */
void store_test_map_initial(size_t bytes);
static size_t map_initial = STORE_MAP_INITIAL;

void store_test_map_initial(size_t bytes)
{
    map_initial = bytes ? bytes : STORE_MAP_INITIAL;
}

/* The store whose transaction this thread holds, and how deep. */
static _Thread_local const struct store *tls_store;
static _Thread_local unsigned tls_depth;

/* ------------------------------------------------------------------ */
/* Error mapping: the one place MDB_* codes become agape_rc.           */

static int store_rc(int mrc)
{
    switch (mrc) {
    case MDB_SUCCESS:
        return AGAPE_OK;
    case MDB_NOTFOUND:
        return AGAPE_ENOENT;
    case MDB_KEYEXIST:
        return AGAPE_EEXIST;
    case ENOMEM:
        return AGAPE_ENOMEM;
    case MDB_BAD_VALSIZE:
    case EINVAL:
        return AGAPE_EINVAL;
    default:
        /* MDB_MAP_FULL, MDB_TXN_FULL, MDB_READERS_FULL, MDB_PANIC,
         * MDB_CORRUPTED, EIO, ENOSPC, ... */
        return AGAPE_ESTORE;
    }
}

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
    /* n >= errlen: truncated, still NUL-terminated; a reason cut short is
     * better than none. */
}

/* ------------------------------------------------------------------ */
/* Live transactions and map resizing                                  */

static bool nested(const struct store *s)
{
    return tls_depth > 0 && tls_store == s;
}

static void live_drop(struct store *s)
{
    if (atomic_fetch_sub(&s->live, 1) == 1 && atomic_load(&s->resizing)) {
        pthread_mutex_lock(&s->rs_mu);
        pthread_cond_broadcast(&s->rs_cond);
        pthread_mutex_unlock(&s->rs_mu);
    }
}

static void live_enter(struct store *s)
{
    if (!nested(s)) {
        for (;;) {
            atomic_fetch_add(&s->live, 1);
            if (!atomic_load(&s->resizing)) {
                break;
            }
            live_drop(s);
            pthread_mutex_lock(&s->rs_mu);
            while (atomic_load(&s->resizing)) {
                pthread_cond_wait(&s->rs_cond, &s->rs_mu);
            }
            pthread_mutex_unlock(&s->rs_mu);
        }
    } else {
        atomic_fetch_add(&s->live, 1);
    }
    if (tls_depth == 0) {
        tls_store = s;
    }
    if (tls_store == s) {
        tls_depth++;
    }
}

static void live_leave(struct store *s)
{
    if (tls_store == s && tls_depth > 0) {
        tls_depth--;
    }
    live_drop(s);
}

/* Remap to `size` bytes (0: adopt the size recorded in the file) with no
 * transaction of this process open. If another thread is already resizing,
 * wait for it and return; the caller retries either way. */
static int map_resize(struct store *s, size_t size)
{
    int rc = MDB_SUCCESS;
    MDB_envinfo info;

    if (nested(s)) {
        return MDB_BAD_TXN; /* we hold a transaction ourselves: cannot exclude */
    }
    pthread_mutex_lock(&s->rs_mu);
    if (atomic_load(&s->resizing)) {
        while (atomic_load(&s->resizing)) {
            pthread_cond_wait(&s->rs_cond, &s->rs_mu);
        }
        goto out;
    }
    atomic_store(&s->resizing, true);
    while (atomic_load(&s->live) != 0) {
        pthread_cond_wait(&s->rs_cond, &s->rs_mu);
    }
    mdb_env_info(s->env, &info);
    size_t before = info.me_mapsize;
    rc = mdb_env_set_mapsize(s->env, size);
    if (rc != MDB_SUCCESS) {
        log_error("store: remap to %zu bytes failed: %s", size, mdb_strerror(rc));
        /* A failed mmap leaves no map at all: put the old size back. */
        int rc2 = mdb_env_set_mapsize(s->env, before);
        if (rc2 != MDB_SUCCESS) {
            log_error("store: restoring the map failed: %s; the store is unusable",
                      mdb_strerror(rc2));
            atomic_store(&s->broken, true);
        }
    }
    mdb_env_info(s->env, &info);
    atomic_store(&s->map_size, (uint64_t)info.me_mapsize);
    if (rc == MDB_SUCCESS) {
        log_info("store: map size %zu -> %zu bytes", before, (size_t)info.me_mapsize);
    }
    atomic_store(&s->resizing, false);
    pthread_cond_broadcast(&s->rs_cond);
out:
    pthread_mutex_unlock(&s->rs_mu);
    return rc;
}

static int map_grow(struct store *s)
{
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    size_t cur = info.me_mapsize;
    if (cur > SIZE_MAX / 2) {
        return MDB_MAP_FULL;
    }
    return map_resize(s, cur * 2);
}

/* ------------------------------------------------------------------ */
/* Read transactions                                                   */

static int read_begin(struct store *s, MDB_txn **out)
{
    int rc = MDB_SUCCESS;

    if (atomic_load(&s->broken)) {
        return AGAPE_ESTORE;
    }
    for (int attempt = 0; attempt < 4; attempt++) {
        MDB_txn *txn = NULL;
        live_enter(s);
        pthread_mutex_lock(&s->pool_mu);
        if (s->npool > 0) {
            txn = s->pool[--s->npool];
        }
        pthread_mutex_unlock(&s->pool_mu);
        if (txn != NULL) {
            rc = mdb_txn_renew(txn);
            if (rc != MDB_SUCCESS) {
                mdb_txn_abort(txn);
                txn = NULL;
            }
        }
        if (txn == NULL) {
            rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
        }
        if (rc == MDB_SUCCESS) {
            *out = txn;
            return AGAPE_OK;
        }
        live_leave(s);
        if (rc == MDB_READERS_FULL) {
            int dead = 0;
            mdb_reader_check(s->env, &dead);
            if (dead == 0) {
                break;
            }
        } else if (rc == MDB_MAP_RESIZED) {
            if (map_resize(s, 0) != MDB_SUCCESS) {
                break;
            }
        } else {
            break;
        }
    }
    log_error("store: read transaction: %s", mdb_strerror(rc));
    return store_rc(rc);
}

static void read_end(struct store *s, MDB_txn *txn)
{
    mdb_txn_reset(txn);
    pthread_mutex_lock(&s->pool_mu);
    if (s->npool < STORE_RTXN_POOL) {
        s->pool[s->npool++] = txn;
        txn = NULL;
    }
    pthread_mutex_unlock(&s->pool_mu);
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    live_leave(s);
}

static bool table_ok(enum store_table t)
{
    return (unsigned)t < STORE_TABLE_COUNT;
}

int store_get(struct store *s, enum store_table t, const void *key, size_t klen, char **val,
              size_t *vlen)
{
    MDB_txn *txn = NULL;
    int rc;

    if (val != NULL) {
        *val = NULL;
    }
    if (vlen != NULL) {
        *vlen = 0;
    }
    if (s == NULL || !table_ok(t) || key == NULL || klen == 0 || klen > STORE_KEY_MAX ||
        val == NULL) {
        return AGAPE_EINVAL;
    }
    rc = read_begin(s, &txn);
    if (rc != AGAPE_OK) {
        return rc;
    }
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val v;
    int mrc = mdb_get(txn, s->dbi[t], &k, &v);
    if (mrc == MDB_SUCCESS) {
        /* Copy before the transaction ends: views never leave store_. */
        char *copy = malloc(v.mv_size + 1);
        if (copy == NULL) {
            rc = AGAPE_ENOMEM;
        } else {
            if (v.mv_size) {
                memcpy(copy, v.mv_data, v.mv_size);
            }
            copy[v.mv_size] = '\0';
            *val = copy;
            if (vlen != NULL) {
                *vlen = v.mv_size;
            }
        }
    } else {
        if (mrc != MDB_NOTFOUND) {
            log_error("store: get from %s: %s", table_names[t], mdb_strerror(mrc));
        }
        rc = store_rc(mrc);
    }
    read_end(s, txn);
    return rc;
}

/* LMDB's default order: bytes, then length. */
static int keycmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

int store_scan(struct store *s, enum store_table t, const void *prefix, size_t plen,
               const void *start, size_t slen, size_t limit, store_scan_fn fn, void *arg)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc;

    if (s == NULL || !table_ok(t) || fn == NULL || (plen && prefix == NULL) ||
        (slen && start == NULL) || plen > STORE_KEY_MAX || slen > STORE_KEY_MAX) {
        return AGAPE_EINVAL;
    }
    if (start == NULL) {
        slen = 0;
    }
    rc = read_begin(s, &txn);
    if (rc != AGAPE_OK) {
        return rc;
    }
    int mrc = mdb_cursor_open(txn, s->dbi[t], &cur);
    if (mrc != MDB_SUCCESS) {
        goto out;
    }

    /* Start at the later of `start` and `prefix`: nothing before the
     * prefix can match it. */
    MDB_val k = {0, NULL};
    MDB_val v;
    MDB_cursor_op op = MDB_FIRST;
    if (slen > 0) {
        k.mv_data = (void *)start;
        k.mv_size = slen;
        if (plen > 0 && keycmp(start, slen, prefix, plen) < 0) {
            k.mv_data = (void *)prefix;
            k.mv_size = plen;
        }
        op = MDB_SET_RANGE;
    } else if (plen > 0) {
        k.mv_data = (void *)prefix;
        k.mv_size = plen;
        op = MDB_SET_RANGE;
    }

    size_t n = 0;
    for (;;) {
        mrc = mdb_cursor_get(cur, &k, &v, op);
        op = MDB_NEXT;
        if (mrc != MDB_SUCCESS) {
            break;
        }
        /* Keys are sorted: the first one past the prefix ends the range. */
        if (plen > 0 && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)) {
            break;
        }
        n++;
        if (fn(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg) != 0) {
            break;
        }
        if (limit > 0 && n >= limit) {
            break;
        }
    }
    if (mrc == MDB_NOTFOUND) {
        mrc = MDB_SUCCESS;
    }
out:
    if (mrc != MDB_SUCCESS) {
        log_error("store: scan of %s: %s", table_names[t], mdb_strerror(mrc));
        rc = store_rc(mrc);
    }
    if (cur != NULL) {
        mdb_cursor_close(cur); /* read-only cursors are not freed with the txn */
    }
    read_end(s, txn);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Batches                                                             */

struct store_batch *store_batch_new(void)
{
    struct store_batch *b = calloc(1, sizeof(*b));
    if (b != NULL) {
        buf_init(&b->data, STORE_BATCH_MAX);
    }
    return b;
}

void store_batch_free(struct store_batch *b)
{
    if (b == NULL) {
        return;
    }
    free(b->ops);
    buf_fini(&b->data);
    free(b);
}

static void batch_add(struct store_batch *b, enum op_kind kind, enum store_table t,
                      const void *key, size_t klen, const void *val, size_t vlen)
{
    if (b == NULL || b->error != AGAPE_OK) {
        return;
    }
    if (!table_ok(t) || key == NULL || klen == 0 || klen > STORE_KEY_MAX ||
        (vlen > 0 && val == NULL)) {
        b->error = AGAPE_EINVAL;
        return;
    }
    if (b->nops == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4;
        struct store_op *ops = realloc(b->ops, cap * sizeof(*ops));
        if (ops == NULL) {
            b->error = AGAPE_ENOMEM;
            return;
        }
        b->ops = ops;
        b->cap = cap;
    }
    struct store_op *op = &b->ops[b->nops];
    op->kind = (uint8_t)kind;
    op->table = (uint8_t)t;
    op->koff = b->data.len;
    op->klen = klen;
    buf_add(&b->data, key, klen);
    op->voff = b->data.len;
    op->vlen = vlen;
    if (vlen > 0) {
        buf_add(&b->data, val, vlen);
    }
    if (b->data.error != AGAPE_OK) {
        b->error = b->data.error;
        return;
    }
    b->nops++;
}

void store_batch_put(struct store_batch *b, enum store_table t, const void *key, size_t klen,
                     const void *val, size_t vlen)
{
    batch_add(b, OP_PUT, t, key, klen, val, vlen);
}

void store_batch_insert(struct store_batch *b, enum store_table t, const void *key,
                        size_t klen, const void *val, size_t vlen)
{
    batch_add(b, OP_INSERT, t, key, klen, val, vlen);
}

void store_batch_del(struct store_batch *b, enum store_table t, const void *key, size_t klen)
{
    batch_add(b, OP_DEL, t, key, klen, NULL, 0);
}

static size_t batch_bytes(const struct store_batch *b)
{
    return b->data.len + b->nops * sizeof(struct store_op);
}

/* ------------------------------------------------------------------ */
/* The writer                                                          */

static int apply_batch(struct store *s, MDB_txn *txn, const struct store_batch *b)
{
    for (size_t i = 0; i < b->nops; i++) {
        const struct store_op *op = &b->ops[i];
        MDB_val k = {.mv_size = op->klen, .mv_data = b->data.data + op->koff};
        MDB_val v = {.mv_size = op->vlen, .mv_data = b->data.data + op->voff};
        int rc;
        switch (op->kind) {
        case OP_PUT:
            rc = mdb_put(txn, s->dbi[op->table], &k, &v, 0);
            break;
        case OP_INSERT:
            rc = mdb_put(txn, s->dbi[op->table], &k, &v, MDB_NOOVERWRITE);
            break;
        default:
            rc = mdb_del(txn, s->dbi[op->table], &k, NULL);
            if (rc == MDB_NOTFOUND) {
                rc = MDB_SUCCESS; /* deleting an absent key is done */
            }
            break;
        }
        if (rc != MDB_SUCCESS) {
            return rc;
        }
    }
    return MDB_SUCCESS;
}

/* One attempt at the group: sets every batch's rc and returns MDB_SUCCESS
 * when the write transaction committed, or the MDB code that failed the
 * whole group (MDB_MAP_FULL and MDB_MAP_RESIZED are retried by the caller). */
static int try_group(struct store *s, struct store_batch *group)
{
    MDB_txn *txn = NULL;
    int rc;

    live_enter(s);
    rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS) {
        txn = NULL;
        goto out;
    }
    for (struct store_batch *b = group; b != NULL; b = b->next) {
        if (b->error != AGAPE_OK) {
            b->rc = b->error;
            continue;
        }
        if (b->nops == 0) {
            b->rc = AGAPE_OK;
            continue;
        }
        MDB_txn *child = NULL;
        rc = mdb_txn_begin(s->env, txn, 0, &child);
        if (rc != MDB_SUCCESS) {
            goto out;
        }
        int brc = apply_batch(s, child, b);
        if (brc != MDB_SUCCESS) {
            mdb_txn_abort(child); /* the parent is untouched */
            if (brc == MDB_MAP_FULL) {
                rc = brc;
                goto out;
            }
            if (brc != MDB_KEYEXIST && brc != MDB_BAD_VALSIZE) {
                log_error("store: batch failed: %s", mdb_strerror(brc));
            }
            b->rc = store_rc(brc);
            continue;
        }
        /* A failed nested commit may have half-merged into the parent:
         * fail the group rather than trust it. */
        rc = mdb_txn_commit(child);
        if (rc != MDB_SUCCESS) {
            goto out;
        }
        b->rc = AGAPE_OK;
    }
    rc = mdb_txn_commit(txn); /* default flags: synced before it returns */
    txn = NULL;
    if (rc == MDB_SUCCESS) {
        atomic_fetch_add(&s->commits, 1);
    }
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    live_leave(s);
    return rc;
}

static void apply_group(struct store *s, struct store_batch *group)
{
    int rc = MDB_PANIC;
    int tries = 0;

    while (!atomic_load(&s->broken)) {
        rc = try_group(s, group);
        if (rc == MDB_SUCCESS) {
            return;
        }
        if (tries++ >= STORE_GROW_MAX) {
            break;
        }
        if (rc == MDB_MAP_FULL) {
            if (map_grow(s) != MDB_SUCCESS) {
                break;
            }
        } else if (rc == MDB_MAP_RESIZED) {
            if (map_resize(s, 0) != MDB_SUCCESS) {
                break;
            }
        } else {
            break;
        }
    }
    size_t n = 0;
    for (struct store_batch *b = group; b != NULL; b = b->next) {
        b->rc = AGAPE_ESTORE;
        n++;
    }
    log_error("store: write transaction of %zu batches failed: %s", n, mdb_strerror(rc));
}

/* Tell every submitter of the group, in order. Synchronous waiters are
 * woken first (one lock for all of them); then async callbacks run here,
 * without the lock, and the batches are freed. */
static void report_group(struct store *s, struct store_batch *group)
{
    pthread_mutex_lock(&s->mu);
    for (struct store_batch *b = group; b != NULL; b = b->next) {
        if (b->rc == AGAPE_OK) {
            atomic_fetch_add(&s->batches, 1);
        } else {
            atomic_fetch_add(&s->failed, 1);
        }
        if (b->waiter != NULL) {
            b->waiter->rc = b->rc;
            b->waiter->done = true;
            pthread_cond_signal(&b->waiter->cond);
            b->waiter = NULL; /* it lives on a stack that is about to unwind */
        }
    }
    pthread_mutex_unlock(&s->mu);
    struct store_batch *next;
    for (struct store_batch *b = group; b != NULL; b = next) {
        next = b->next;
        if (b->done != NULL) {
            b->done(b->rc, b->arg);
        }
        store_batch_free(b);
    }
}

static void *writer_main(void *arg)
{
    struct store *s = arg;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->head == NULL && !s->stopping) {
            pthread_cond_wait(&s->wcond, &s->mu);
        }
        if (s->head == NULL) {
            break; /* stopping, and everything submitted is committed */
        }
        /* Take everything queued, up to the byte cap (at least one). */
        struct store_batch *group = s->head;
        struct store_batch *last = group;
        size_t bytes = batch_bytes(group);
        while (last->next != NULL && bytes + batch_bytes(last->next) <= STORE_GROUP_BYTES) {
            last = last->next;
            bytes += batch_bytes(last);
        }
        s->head = last->next;
        if (s->head == NULL) {
            s->tail = NULL;
        }
        last->next = NULL;
        pthread_mutex_unlock(&s->mu);

        apply_group(s, group);
        report_group(s, group);

        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Queue under s->mu. False when the store is stopping. */
static bool enqueue_locked(struct store *s, struct store_batch *b)
{
    if (s->stopping) {
        return false;
    }
    b->next = NULL;
    if (s->tail != NULL) {
        s->tail->next = b;
    } else {
        s->head = b;
    }
    s->tail = b;
    pthread_cond_signal(&s->wcond);
    return true;
}

int store_commit(struct store *s, struct store_batch *b)
{
    struct store_waiter w;

    if (b == NULL) {
        return AGAPE_EINVAL;
    }
    if (s == NULL) {
        store_batch_free(b);
        return AGAPE_EINVAL;
    }
    w.done = false;
    w.rc = AGAPE_ESTORE;
    if (pthread_cond_init(&w.cond, NULL) != 0) {
        store_batch_free(b);
        return AGAPE_ENOMEM;
    }
    b->waiter = &w;
    b->done = NULL;
    pthread_mutex_lock(&s->mu);
    if (!enqueue_locked(s, b)) {
        pthread_mutex_unlock(&s->mu);
        store_batch_free(b);
        pthread_cond_destroy(&w.cond);
        return AGAPE_ESTORE;
    }
    while (!w.done) {
        pthread_cond_wait(&w.cond, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&w.cond);
    return w.rc;
}

void store_commit_async(struct store *s, struct store_batch *b, store_done_fn done, void *arg)
{
    if (b == NULL || s == NULL) {
        store_batch_free(b);
        if (done != NULL) {
            done(AGAPE_EINVAL, arg);
        }
        return;
    }
    b->waiter = NULL;
    b->done = done;
    b->arg = arg;
    pthread_mutex_lock(&s->mu);
    bool queued = enqueue_locked(s, b);
    pthread_mutex_unlock(&s->mu);
    if (!queued) {
        /* Closing: no writer will run it; tell the caller here. */
        store_batch_free(b);
        if (done != NULL) {
            done(AGAPE_ESTORE, arg);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Open and close                                                      */

/* mkdir -p with 0700: the data holds payments and key hashes. */
static int mkdir_p(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    struct stat st;

    if (len >= sizeof(path)) {
        set_err(err, errlen, "data_dir: path too long (%zu bytes)", len);
        return AGAPE_ERANGE;
    }
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0') {
            continue;
        }
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            set_err(err, errlen, "data_dir '%s': cannot create '%s': %s", dir, path,
                    strerror(errno));
            return AGAPE_ESTORE;
        }
        path[i] = c;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        set_err(err, errlen, "data_dir '%s': not a directory", dir);
        return AGAPE_ESTORE;
    }
    return AGAPE_OK;
}

static void store_destroy(struct store *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->npool; i++) {
        mdb_txn_abort(s->pool[i]);
    }
    s->npool = 0;
    if (s->env != NULL) {
        mdb_env_close(s->env);
    }
    if (s->mu_init) {
        pthread_cond_destroy(&s->wcond);
        pthread_mutex_destroy(&s->mu);
    }
    if (s->rs_init) {
        pthread_cond_destroy(&s->rs_cond);
        pthread_mutex_destroy(&s->rs_mu);
    }
    if (s->pool_init) {
        pthread_mutex_destroy(&s->pool_mu);
    }
    free(s);
}

int store_open(const char *dir, struct store **out, char *err, size_t errlen)
{
    struct store *s = NULL;
    MDB_txn *txn = NULL;
    int rc = AGAPE_OK;
    int mrc = MDB_SUCCESS;
    const char *what = NULL;

    if (out != NULL) {
        *out = NULL;
    }
    if (dir == NULL || dir[0] == '\0' || out == NULL) {
        set_err(err, errlen, "data_dir: empty");
        return AGAPE_EINVAL;
    }
    rc = mkdir_p(dir, err, errlen);
    if (rc != AGAPE_OK) {
        goto out;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        set_err(err, errlen, "store: out of memory");
        rc = AGAPE_ENOMEM;
        goto out;
    }
    atomic_init(&s->live, 0);
    atomic_init(&s->resizing, false);
    atomic_init(&s->broken, false);
    atomic_init(&s->commits, 0);
    atomic_init(&s->batches, 0);
    atomic_init(&s->failed, 0);
    atomic_init(&s->map_size, 0);
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        goto nomem;
    }
    if (pthread_cond_init(&s->wcond, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        goto nomem;
    }
    s->mu_init = true;
    if (pthread_mutex_init(&s->rs_mu, NULL) != 0) {
        goto nomem;
    }
    if (pthread_cond_init(&s->rs_cond, NULL) != 0) {
        pthread_mutex_destroy(&s->rs_mu);
        goto nomem;
    }
    s->rs_init = true;
    if (pthread_mutex_init(&s->pool_mu, NULL) != 0) {
        goto nomem;
    }
    s->pool_init = true;

    what = "create";
    mrc = mdb_env_create(&s->env);
    if (mrc != MDB_SUCCESS) {
        s->env = NULL;
        goto mdb_fail;
    }
    what = "set maxdbs";
    mrc = mdb_env_set_maxdbs(s->env, STORE_TABLE_COUNT + 2);
    if (mrc != MDB_SUCCESS) {
        goto mdb_fail;
    }
    what = "set maxreaders";
    mrc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS);
    if (mrc != MDB_SUCCESS) {
        goto mdb_fail;
    }
    what = "open";
    mrc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600);
    if (mrc != MDB_SUCCESS) {
        goto mdb_fail;
    }
    /* Only raise the map: a file that was grown before keeps its size. */
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    if (info.me_mapsize < map_initial) {
        what = "set mapsize";
        mrc = mdb_env_set_mapsize(s->env, map_initial);
        if (mrc != MDB_SUCCESS) {
            goto mdb_fail;
        }
        mdb_env_info(s->env, &info);
    }
    atomic_store(&s->map_size, (uint64_t)info.me_mapsize);
    /* Slots left by killed processes pin old pages and grow the file. */
    int dead = 0;
    what = "reader check";
    mrc = mdb_reader_check(s->env, &dead);
    if (mrc != MDB_SUCCESS) {
        goto mdb_fail;
    }
    if (dead > 0) {
        log_info("store: cleared %d stale reader slots", dead);
    }
    /* Every table is opened once, in one transaction, before any other. */
    what = "open tables";
    mrc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (mrc != MDB_SUCCESS) {
        txn = NULL;
        goto mdb_fail;
    }
    for (int i = 0; i < STORE_TABLE_COUNT; i++) {
        mrc = mdb_dbi_open(txn, table_names[i], MDB_CREATE, &s->dbi[i]);
        if (mrc != MDB_SUCCESS) {
            what = table_names[i];
            goto mdb_fail;
        }
    }
    mrc = mdb_txn_commit(txn);
    txn = NULL;
    if (mrc != MDB_SUCCESS) {
        goto mdb_fail;
    }
    int perr = pthread_create(&s->writer, NULL, writer_main, s);
    if (perr != 0) {
        set_err(err, errlen, "store: cannot start the writer thread: %s", strerror(perr));
        rc = AGAPE_ERROR;
        goto out;
    }
    s->writer_started = true;
    *out = s;
    s = NULL;
    rc = AGAPE_OK;
    goto out;

nomem:
    set_err(err, errlen, "store: cannot initialize locks");
    rc = AGAPE_ENOMEM;
    goto out;
mdb_fail:
    set_err(err, errlen, "data_dir '%s': LMDB %s: %s", dir, what, mdb_strerror(mrc));
    log_error("store: %s failed: %s", what, mdb_strerror(mrc));
    rc = store_rc(mrc) == AGAPE_ENOMEM ? AGAPE_ENOMEM : AGAPE_ESTORE;
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    store_destroy(s);
    return rc;
}

void store_close(struct store *s)
{
    if (s == NULL) {
        return;
    }
    if (s->writer_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->wcond);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->writer, NULL); /* it drains the queue first */
    }
    store_destroy(s);
}

void store_get_stats(struct store *s, struct store_stats *out)
{
    if (out == NULL) {
        return;
    }
    memset(out, 0, sizeof(*out));
    if (s == NULL) {
        return;
    }
    out->commits = atomic_load(&s->commits);
    out->batches = atomic_load(&s->batches);
    out->failed = atomic_load(&s->failed);
    out->map_size = atomic_load(&s->map_size);
}
