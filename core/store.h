/* store — the one module that owns LMDB (nothing else calls mdb_*).
 *
 * Named tables, each with its key layout written in store_keys.h. Values are
 * opaque bytes to the store (the callers keep JSON text in them).
 *
 * Writes go through one writer thread that commits in groups: every batch
 * queued while the previous commit ran goes into the next write transaction,
 * which is synced to disk before any submitter is told. A batch is atomic on
 * its own: each runs in a nested transaction, so a batch whose condition fails
 * (store_batch_insert on an existing key) is rolled back alone and the rest of
 * the group commits. Reads are short read transactions on the calling thread
 * (MDB_NOTLS: any thread, including libmicrohttpd's). */
#ifndef AGAPE_STORE_H
#define AGAPE_STORE_H

#include <agape/plugin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_table {
    STORE_PAYMENTS = 0, /* payment records */
    STORE_IDEMPOTENCY,  /* client idempotency keys → request hash, state, stored answer */
    STORE_API_KEYS,     /* API keys by hash */
    STORE_KV,           /* script key-value namespace */
    STORE_OUTBOX,       /* due-time-ordered work queue */
    STORE_INBOX,        /* verified webhooks */
    STORE_USERS,
    STORE_SESSIONS,
    STORE_META,         /* small state: reconciliation queue, counters */
    STORE_TABLE_COUNT
};

struct store;
struct store_batch;

/* Open (creating) the LMDB environment in directory `dir` (created if
 * missing), open every table, clear stale reader slots, start the writer
 * thread. On failure returns a negative rc and fills err. Main thread. */
int store_open(const char *dir, struct store **out, char *err, size_t errlen);
/* Stop the writer after it commits everything queued; close. Main thread. */
void store_close(struct store *s);

/* Read one value: on AGAPE_OK *val is a malloc'd copy (NUL-terminated after
 * vlen bytes; free() it). AGAPE_ENOENT when absent. Any thread. */
int store_get(struct store *s, enum store_table t, const void *key, size_t klen, char **val,
              size_t *vlen);

/* Visit the entries whose key starts with `prefix` (plen 0: all), in key
 * order, starting at `start` when non-NULL (a full key, inclusive). The
 * callback sees views valid only during the call; it returns 0 to go on,
 * 1 to stop. At most `limit` entries (0: no limit). Any thread. The read
 * transaction is held for the whole scan: keep callbacks short. */
typedef int (*store_scan_fn)(const void *key, size_t klen, const void *val, size_t vlen,
                             void *arg);
int store_scan(struct store *s, enum store_table t, const void *prefix, size_t plen,
               const void *start, size_t slen, size_t limit, store_scan_fn fn, void *arg);

/* A batch of writes applied atomically. Building never fails visibly: an
 * allocation failure is remembered and store_commit reports it. */
struct store_batch *store_batch_new(void);
void store_batch_free(struct store_batch *b); /* only for a batch never committed */
void store_batch_put(struct store_batch *b, enum store_table t, const void *key, size_t klen,
                     const void *val, size_t vlen);
/* Put only if the key is absent; if present, the whole batch fails with
 * AGAPE_EEXIST and none of it is applied. */
void store_batch_insert(struct store_batch *b, enum store_table t, const void *key,
                        size_t klen, const void *val, size_t vlen);
void store_batch_del(struct store_batch *b, enum store_table t, const void *key, size_t klen);

/* Commit a batch and wait until it is durable (or failed). Takes ownership of
 * the batch. Returns AGAPE_OK, AGAPE_EEXIST (an insert found its key),
 * AGAPE_ESTORE (I/O, disk or map full after growing). Any thread. */
int store_commit(struct store *s, struct store_batch *b);

/* The same without waiting: done(rc, arg) runs on the writer thread once the
 * batch is durable or failed; it must not block or call store_commit. */
typedef void (*store_done_fn)(int rc, void *arg);
void store_commit_async(struct store *s, struct store_batch *b, store_done_fn done, void *arg);

/* Counters for /metrics. */
struct store_stats {
    uint64_t commits;       /* write transactions */
    uint64_t batches;       /* batches committed (>= commits) */
    uint64_t failed;        /* batches failed */
    uint64_t map_size;      /* bytes */
};
void store_get_stats(struct store *s, struct store_stats *out);

#endif
