/* bench_store — store_commit throughput with N concurrent submitters.
 *
 * Not part of the CMake build. Build by hand from the source root:
 *   gcc -std=gnu11 -D_GNU_SOURCE -O2 -Iinclude -Icore core/buf.c core/log.c core/store.c \
 *       bench/bench_store.c $(pkg-config --cflags --libs lmdb) -lpthread -o /tmp/bench_store
 *   /tmp/bench_store [threads=64] [seconds=3] [mode=time|random] [dir]
 *
 * Each batch is one put of a 16-byte key and a 1 KiB value into payments (the
 * shape NOTES.md measured); "time" keys are time-ordered (big-endian
 * microseconds + thread + counter), "random" keys are random bytes. Add
 * "+idem" to the mode to also insert a random-keyed idempotency entry in the
 * same batch (the gateway's real write shape). Reports acks/s and latency
 * percentiles (submit -> durable). */
#include "store.h"
#include "store_keys.h"

#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct thr {
    struct store *s;
    int id;
    bool random;
    bool idem;
    uint64_t seed;
    double *lat_us;
    size_t nlat;
    size_t cap;
    size_t failed;
};

static atomic_int stop_flag;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void *run(void *arg)
{
    struct thr *t = arg;
    char val[1024];
    memset(val, 'x', sizeof(val));
    uint64_t n = 0;
    while (!atomic_load(&stop_flag)) {
        uint8_t key[16];
        if (t->random) {
            store_key_be64(key, xorshift(&t->seed));
            store_key_be64(key + 8, xorshift(&t->seed));
        } else {
            store_key_be64(key, (uint64_t)now_us());
            store_key_be64(key + 8, ((uint64_t)t->id << 40) | n);
        }
        n++;
        struct store_batch *b = store_batch_new();
        store_batch_put(b, STORE_PAYMENTS, key, sizeof(key), val, sizeof(val));
        if (t->idem) {
            uint8_t ik[24];
            store_key_be64(ik, xorshift(&t->seed));
            store_key_be64(ik + 8, xorshift(&t->seed));
            store_key_be64(ik + 16, n);
            store_batch_insert(b, STORE_IDEMPOTENCY, ik, sizeof(ik), "{}", 2);
        }
        double t0 = now_us();
        int rc = store_commit(t->s, b);
        double dt = now_us() - t0;
        if (rc != AGAPE_OK) {
            t->failed++;
            continue;
        }
        if (t->nlat == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 4096;
            double *p = realloc(t->lat_us, cap * sizeof(*p));
            if (p == NULL) {
                break;
            }
            t->lat_us = p;
            t->cap = cap;
        }
        t->lat_us[t->nlat++] = dt;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    int nthreads = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 64;
    int seconds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 3;
    const char *mode = argc > 3 ? argv[3] : "time";
    char tmpl[] = "/tmp/agape-bench-XXXXXX";
    const char *dir = argc > 4 ? argv[4] : NULL;
    char err[AGAPE_ERR_SIZE];
    struct store *s = NULL;

    if (nthreads < 1 || nthreads > 4096 || seconds < 1) {
        fprintf(stderr, "usage: %s [threads] [seconds] [time|random[+idem]] [dir]\n", argv[0]);
        return 2;
    }
    if (dir == NULL) {
        dir = mkdtemp(tmpl);
        if (dir == NULL) {
            perror("mkdtemp");
            return 1;
        }
    }
    if (store_open(dir, &s, err, sizeof(err)) != AGAPE_OK) {
        fprintf(stderr, "store_open: %s\n", err);
        return 1;
    }
    struct thr *t = calloc((size_t)nthreads, sizeof(*t));
    pthread_t *th = calloc((size_t)nthreads, sizeof(*th));
    if (t == NULL || th == NULL) {
        return 1;
    }
    double t0 = now_us();
    for (int i = 0; i < nthreads; i++) {
        t[i].s = s;
        t[i].id = i;
        t[i].random = strncmp(mode, "random", 6) == 0;
        t[i].idem = strstr(mode, "+idem") != NULL;
        t[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        pthread_create(&th[i], NULL, run, &t[i]);
    }
    sleep((unsigned)seconds);
    atomic_store(&stop_flag, 1);
    size_t total = 0;
    size_t failed = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        total += t[i].nlat;
        failed += t[i].failed;
    }
    double elapsed = (now_us() - t0) / 1e6;
    double *all = malloc((total ? total : 1) * sizeof(*all));
    size_t k = 0;
    for (int i = 0; i < nthreads; i++) {
        memcpy(all + k, t[i].lat_us, t[i].nlat * sizeof(*all));
        k += t[i].nlat;
        free(t[i].lat_us);
    }
    qsort(all, total, sizeof(*all), cmp_double);
    struct store_stats st;
    store_get_stats(s, &st);
    printf("threads=%d mode=%s: %zu acks in %.2f s = %.0f acks/s; failed %zu; "
           "%llu commits (%.1f batches/commit); latency ms p50 %.2f p99 %.2f max %.2f\n",
           nthreads, mode, total, elapsed, (double)total / elapsed, failed,
           (unsigned long long)st.commits,
           st.commits ? (double)st.batches / (double)st.commits : 0.0,
           total ? all[total / 2] / 1e3 : 0.0, total ? all[total * 99 / 100] / 1e3 : 0.0,
           total ? all[total - 1] / 1e3 : 0.0);
    store_close(s);
    free(all);
    free(t);
    free(th);
    if (argc <= 4) {
        nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    }
    return 0;
}
