/* reconcile — see reconcile.h. The thread only scans and starts calls; the
 * calls run on the client thread and their outcome is committed with
 * store_commit_async, so nothing here waits on a provider or a commit. */
#include "reconcile.h"

#include "log.h"
#include "paylock.h"
#include "payments.h"
#include "store_keys.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RECON_SCAN_MS 250
#define RECON_BATCH 64
#define RECON_MAX_DELAY_MS (5 * 60 * 1000)

struct reconciler {
    struct app *app;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    int inflight;
    json_t *busy; /* payment ids with a check in flight */
};

struct recon_job {
    struct reconciler *rc;
    char payment_id[64];
    int tries;
    json_t *rec;
    struct dispatch_op *op;
};

static size_t recon_key(char *out, size_t cap, const char *payment_id)
{
    int n = snprintf(out, cap, "%s%s", STORE_META_RECON, payment_id);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

void reconcile_schedule(struct store_batch *b, const char *payment_id, int64_t delay_ms,
                        int tries)
{
    char key[128];
    size_t kl = recon_key(key, sizeof(key), payment_id);
    char val[96];
    int n = snprintf(val, sizeof(val), "{\"due\":%lld,\"tries\":%d}",
                     (long long)(client_wall_ms() + delay_ms), tries);
    if (kl && n > 0) {
        store_batch_put(b, STORE_META, key, kl, val, (size_t)n);
    }
}

void reconcile_clear(struct store_batch *b, const char *payment_id)
{
    char key[128];
    size_t kl = recon_key(key, sizeof(key), payment_id);
    if (kl) {
        store_batch_del(b, STORE_META, key, kl);
    }
}

static void job_free(struct recon_job *j)
{
    struct reconciler *rc = j->rc;
    paylock_release(j->payment_id); /* after the commit of what it learnt */
    pthread_mutex_lock(&rc->lock);
    json_object_del(rc->busy, j->payment_id);
    rc->inflight--;
    pthread_cond_broadcast(&rc->cond);
    pthread_mutex_unlock(&rc->lock);
    dispatch_free(j->op);
    json_decref(j->rec);
    free(j);
}

static void committed(int rcode, void *arg)
{
    struct recon_job *j = arg;
    if (rcode != AGAPE_OK) {
        log_msg(AGAPE_LOG_ERROR, NULL, "reconcile %s: the outcome could not be recorded (%d)",
                j->payment_id, rcode);
    }
    job_free(j);
}

static int64_t next_delay(int tries)
{
    int64_t d = 1000;
    for (int i = 0; i < tries && d < RECON_MAX_DELAY_MS; i++) {
        d *= 2;
    }
    return d < RECON_MAX_DELAY_MS ? d : RECON_MAX_DELAY_MS;
}

/* Client thread. */
static void checked(struct dispatch_op *op, void *arg)
{
    struct recon_job *j = arg;
    const struct dispatch_outcome *o = dispatch_result(op);
    struct store_batch *b = store_batch_new();
    bool known = o->outcome == AGAPE_OUTCOME_OK || o->outcome == AGAPE_OUTCOME_DECLINED ||
                 o->outcome == AGAPE_OUTCOME_INVALID;
    if (known) {
        payments_apply(j->rec, o, true);
        payments_put(b, j->rec);
        const char *st = json_string_value(json_object_get(j->rec, "status"));
        known = st == NULL || strcmp(st, "processing") != 0;
    }
    if (known) {
        reconcile_clear(b, j->payment_id);
        log_msg(AGAPE_LOG_INFO, o->provider ? o->provider->name : NULL,
                "reconciled %s: %s", j->payment_id,
                json_string_value(json_object_get(j->rec, "status")));
    } else {
        int64_t delay = next_delay(j->tries);
        reconcile_schedule(b, j->payment_id, delay, j->tries + 1);
        log_msg(AGAPE_LOG_WARN, o->provider ? o->provider->name : NULL,
                "reconcile %s: still unknown (%s); next check in %lld ms", j->payment_id,
                dispatch_outcome_name(o->outcome), (long long)delay);
    }
    store_commit_async(j->rc->app->store, b, committed, j); /* j is the callee's now */
}

/* Start the check of one due payment. Reconciler thread. */
static void start_check(struct reconciler *rc, const char *pid, int tries)
{
    struct app *app = rc->app;
    if (!paylock_try(pid)) {
        return; /* another operation on it is under way: the next scan */
    }
    char *val = NULL;
    size_t vlen = 0;
    json_t *rec = NULL;
    if (store_get(app->store, STORE_PAYMENTS, pid, strlen(pid), &val, &vlen) == AGAPE_OK) {
        rec = json_loadb(val, vlen, 0, NULL);
    }
    free(val);
    const char *st = json_string_value(json_object_get(rec, "status"));
    const char *pname = json_string_value(json_object_get(rec, "provider"));
    struct provider *p = pname ? registry_find(app->reg, pname) : NULL;
    if (rec == NULL || st == NULL || strcmp(st, "processing") != 0) {
        /* Gone, or its outcome arrived another way (a webhook). */
        struct store_batch *b = store_batch_new();
        reconcile_clear(b, pid);
        store_commit(app->store, b);
        json_decref(rec);
        paylock_release(pid);
        return;
    }
    if (p == NULL || !p->usable) {
        struct store_batch *b = store_batch_new();
        reconcile_schedule(b, pid, next_delay(tries), tries + 1);
        store_commit(app->store, b);
        log_msg(AGAPE_LOG_WARN, pname, "reconcile %s: provider not available; later", pid);
        json_decref(rec);
        paylock_release(pid);
        return;
    }
    struct recon_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        json_decref(rec);
        paylock_release(pid);
        return;
    }
    j->rc = rc;
    snprintf(j->payment_id, sizeof(j->payment_id), "%s", pid);
    j->tries = tries;
    j->rec = rec;
    const char *ref = json_string_value(json_object_get(rec, "provider_ref"));
    const char *base = json_string_value(json_object_get(rec, "idem_base"));
    json_t *input;
    const char *op;
    if (ref && dispatch_find_op(p, "get")) {
        op = "get";
        input = json_pack("{s:s, s:s}", "payment_id", pid, "provider_ref", ref);
    } else {
        /* No reference: replay the charge with the same provider key; the
         * provider answers with what the first request did. */
        op = "charge";
        input = payments_charge_input(rec);
    }
    pthread_mutex_lock(&rc->lock);
    json_object_set_new(rc->busy, pid, json_true());
    rc->inflight++;
    pthread_mutex_unlock(&rc->lock);
    struct provider *chain[1] = {p};
    j->op = dispatch_start(app->client, &app->payment_policy, op, input, chain, 1,
                           base ? base : pid, true, checked, j);
    json_decref(input);
    if (j->op == NULL) {
        job_free(j);
    }
}

struct due {
    char id[64];
    int tries;
};

struct scan_ctx {
    struct reconciler *rc;
    int64_t now;
    struct due items[RECON_BATCH];
    size_t n;
};

static int scan_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct scan_ctx *sc = arg;
    size_t pl = strlen(STORE_META_RECON);
    if (klen <= pl || klen - pl >= sizeof(sc->items[0].id)) {
        return 0;
    }
    json_t *v = json_loadb(val, vlen, 0, NULL);
    int64_t due = (int64_t)json_integer_value(json_object_get(v, "due"));
    int tries = (int)json_integer_value(json_object_get(v, "tries"));
    json_decref(v);
    if (due > sc->now) {
        return 0;
    }
    struct due *d = &sc->items[sc->n];
    memcpy(d->id, (const char *)key + pl, klen - pl);
    d->id[klen - pl] = '\0';
    d->tries = tries;
    sc->n++;
    return sc->n >= RECON_BATCH ? 1 : 0;
}

static void *run(void *arg)
{
    struct reconciler *rc = arg;
    pthread_mutex_lock(&rc->lock);
    while (!rc->stop) {
        pthread_mutex_unlock(&rc->lock);
        struct scan_ctx sc = {.rc = rc, .now = client_wall_ms()};
        store_scan(rc->app->store, STORE_META, STORE_META_RECON, strlen(STORE_META_RECON), NULL,
                   0, 0, scan_one, &sc);
        for (size_t i = 0; i < sc.n; i++) {
            pthread_mutex_lock(&rc->lock);
            bool skip = rc->stop || json_object_get(rc->busy, sc.items[i].id) != NULL;
            pthread_mutex_unlock(&rc->lock);
            if (!skip) {
                start_check(rc, sc.items[i].id, sc.items[i].tries);
            }
        }
        pthread_mutex_lock(&rc->lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += RECON_SCAN_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!rc->stop) {
            pthread_cond_timedwait(&rc->cond, &rc->lock, &ts);
        }
    }
    pthread_mutex_unlock(&rc->lock);
    return NULL;
}

int reconcile_start(struct app *app, struct reconciler **out)
{
    struct reconciler *rc = calloc(1, sizeof(*rc));
    if (rc == NULL) {
        return AGAPE_ENOMEM;
    }
    rc->app = app;
    rc->busy = json_object();
    pthread_mutex_init(&rc->lock, NULL);
    pthread_cond_init(&rc->cond, NULL);
    if (rc->busy == NULL || pthread_create(&rc->thread, NULL, run, rc) != 0) {
        json_decref(rc->busy);
        free(rc);
        return AGAPE_ENOMEM;
    }
    *out = rc;
    return AGAPE_OK;
}

void reconcile_stop(struct reconciler *rc)
{
    if (rc == NULL) {
        return;
    }
    pthread_mutex_lock(&rc->lock);
    rc->stop = true;
    pthread_cond_broadcast(&rc->cond);
    pthread_mutex_unlock(&rc->lock);
    pthread_join(rc->thread, NULL);
    pthread_mutex_lock(&rc->lock);
    while (rc->inflight > 0) {
        pthread_cond_wait(&rc->cond, &rc->lock);
    }
    pthread_mutex_unlock(&rc->lock);
    json_decref(rc->busy);
    pthread_mutex_destroy(&rc->lock);
    pthread_cond_destroy(&rc->cond);
    free(rc);
}
