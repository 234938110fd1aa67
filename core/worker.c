/* worker — runs due outbox items, each through its kind's handler; the
 * "webhook" kind is built in (see worker.h).
 *
 * Why leases carry the scan number at which they were released: a handler
 * that takes an item commits its outcome asynchronously and then releases
 * it. A scan whose read snapshot began before that commit still sees the
 * item; if its lease were simply gone by the time the scan looked, the item
 * would be handed out twice. A released lease therefore stays (as a
 * tombstone) through the scan that was running when it was released, and is
 * purged when the next scan starts — whose snapshot begins after the release
 * and so after the commit.
 *
 * Why one lock around each event: the worker reads the inbox record, runs
 * the rule and writes the record back; an admin replay does the same read-
 * modify-write. Holding event_lock across both makes them take turns, so a
 * replay is never overwritten by a run that started before it.
 *
 * Why the outbox item's key is kept in the inbox record ("outbox_key"): a
 * replay or a retry schedules a new item; an older item still in the table
 * (e.g. left by a replay that raced a retry) is recognised as stale and
 * dropped, so an event never runs twice for one scheduling. */
#include "worker.h"

#include "client.h"
#include "log.h"
#include "monitor.h"
#include "paylock.h"
#include "script_rules.h"
#include "store_keys.h"
#include "webhook.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WORKER_SCAN_MAX 100000   /* outbox entries looked at per scan */
#define LEASE_BUCKETS 1024
#define WORKER_STORE_RETRY_MS 1000

struct worker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running;
    bool stop;
    bool kick;
    pthread_t th;
    struct app *app;
    struct worker_conf wc;
};

static struct worker the_worker = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
};

static pthread_mutex_t event_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- kinds and leases ------------------------------------------------- */

struct kind_entry {
    char name[WORKER_KIND_NAME_MAX + 1];
    worker_kind_fn fn;
    void *arg;
};

static int webhook_kind(struct app *app, const uint8_t key[16], json_t *item, void *arg);

/* Written on the main thread before the worker thread starts (or by the
 * test thread that also runs the ticks); read-only afterwards. */
static struct kind_entry kinds[WORKER_KIND_MAX] = {{"webhook", webhook_kind, NULL}};
static int n_kinds = 1;

static worker_message_status_fn message_status_hook;

struct lease {
    uint8_t key[16];
    uint64_t released_scan; /* 0: held; else the scan running when released */
    struct lease *next;
};

static struct {
    pthread_mutex_t mu;
    struct lease *buckets[LEASE_BUCKETS];
    uint64_t scan;       /* number of the scan in progress or last started */
    unsigned long long held;
    struct worker_stats st;
} leases = {.mu = PTHREAD_MUTEX_INITIALIZER, .scan = 1};

static size_t lease_bucket(const uint8_t key[16])
{
    /* The sequence half of the key is random (script_rules_outbox_key). */
    uint64_t h = store_key_read_be64(key + 8) ^ store_key_read_be64(key);
    return (size_t)(h % LEASE_BUCKETS);
}

/* Caller holds leases.mu. */
static struct lease **lease_find(const uint8_t key[16])
{
    struct lease **pp = &leases.buckets[lease_bucket(key)];
    while (*pp != NULL && memcmp((*pp)->key, key, 16) != 0) {
        pp = &(*pp)->next;
    }
    return pp;
}

/* True when the item must not be handed out by the scan in progress. */
static bool lease_blocks(const uint8_t key[16])
{
    pthread_mutex_lock(&leases.mu);
    struct lease *l = *lease_find(key);
    bool blocked = l != NULL && (l->released_scan == 0 || l->released_scan >= leases.scan);
    pthread_mutex_unlock(&leases.mu);
    return blocked;
}

static int lease_take(const uint8_t key[16])
{
    int rc = AGAPE_OK;
    pthread_mutex_lock(&leases.mu);
    struct lease **pp = lease_find(key);
    if (*pp != NULL) {
        if ((*pp)->released_scan == 0) {
            rc = AGAPE_EBUSY;
        } else {
            (*pp)->released_scan = 0; /* a tombstone comes back to life */
            leases.held++;
        }
    } else {
        struct lease *l = calloc(1, sizeof(*l));
        if (l == NULL) {
            rc = AGAPE_ENOMEM;
        } else {
            memcpy(l->key, key, 16);
            *pp = l;
            leases.held++;
        }
    }
    pthread_mutex_unlock(&leases.mu);
    return rc;
}

/* Remove a lease at once (the handler finished synchronously: its commit
 * is already visible to any later snapshot). */
static void lease_drop(const uint8_t key[16])
{
    pthread_mutex_lock(&leases.mu);
    struct lease **pp = lease_find(key);
    struct lease *l = *pp;
    if (l != NULL) {
        *pp = l->next;
        if (l->released_scan == 0) {
            leases.held--;
        }
        free(l);
    }
    pthread_mutex_unlock(&leases.mu);
}

void worker_item_release(const uint8_t key[16])
{
    bool found = false;
    pthread_mutex_lock(&leases.mu);
    struct lease *l = *lease_find(key);
    if (l != NULL && l->released_scan == 0) {
        l->released_scan = leases.scan;
        leases.held--;
        found = true;
    }
    pthread_mutex_unlock(&leases.mu);
    if (found) {
        worker_notify();
    }
}

/* A new scan starts: number it and purge the tombstones older than it. */
static void lease_scan_begin(void)
{
    pthread_mutex_lock(&leases.mu);
    leases.scan++;
    for (size_t i = 0; i < LEASE_BUCKETS; i++) {
        struct lease **pp = &leases.buckets[i];
        while (*pp != NULL) {
            struct lease *l = *pp;
            if (l->released_scan != 0 && l->released_scan < leases.scan) {
                *pp = l->next;
                free(l);
            } else {
                pp = &l->next;
            }
        }
    }
    pthread_mutex_unlock(&leases.mu);
}

static void leases_clear(void)
{
    pthread_mutex_lock(&leases.mu);
    for (size_t i = 0; i < LEASE_BUCKETS; i++) {
        while (leases.buckets[i] != NULL) {
            struct lease *l = leases.buckets[i];
            leases.buckets[i] = l->next;
            free(l);
        }
    }
    leases.held = 0;
    pthread_mutex_unlock(&leases.mu);
}

static bool kind_name_ok(const char *k)
{
    size_t n = k ? strlen(k) : 0;
    if (n == 0 || n > WORKER_KIND_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.')) {
            return false;
        }
    }
    return true;
}

int worker_register_kind(const char *kind, worker_kind_fn fn, void *arg)
{
    if (!kind_name_ok(kind) || fn == NULL || strcmp(kind, "webhook") == 0) {
        return AGAPE_EINVAL;
    }
    for (int i = 0; i < n_kinds; i++) {
        if (strcmp(kinds[i].name, kind) == 0) {
            kinds[i].fn = fn;
            kinds[i].arg = arg;
            return AGAPE_OK;
        }
    }
    if (n_kinds >= WORKER_KIND_MAX) {
        return AGAPE_ERANGE;
    }
    snprintf(kinds[n_kinds].name, sizeof(kinds[n_kinds].name), "%s", kind);
    kinds[n_kinds].fn = fn;
    kinds[n_kinds].arg = arg;
    n_kinds++;
    return AGAPE_OK;
}

void worker_kinds_reset(void)
{
    for (int i = 1; i < n_kinds; i++) {
        memset(&kinds[i], 0, sizeof(kinds[i]));
    }
    n_kinds = 1;
    message_status_hook = NULL;
    leases_clear();
}

void worker_set_message_status_hook(worker_message_status_fn fn)
{
    message_status_hook = fn;
}

void worker_get_stats(struct worker_stats *out)
{
    pthread_mutex_lock(&leases.mu);
    *out = leases.st;
    out->leased = leases.held;
    pthread_mutex_unlock(&leases.mu);
}

/* ---- configuration ---------------------------------------------------- */

static int64_t conf_int(const struct conf *c, const char *key, int64_t dflt, int64_t min,
                        int64_t max, bool warn)
{
    json_t *v = c ? json_object_get(c->raw, key) : NULL;
    int64_t n = dflt;
    if (json_is_integer(v)) {
        n = (int64_t)json_integer_value(v);
    } else if (json_is_real(v)) {
        n = (int64_t)json_real_value(v);
    } else if (v != NULL && warn) {
        log_warn("%s must be a number; using %lld", key, (long long)dflt);
    }
    if (n < min || n > max) {
        if (warn) {
            log_warn("%s = %lld is outside %lld..%lld; using %lld", key, (long long)n,
                     (long long)min, (long long)max, (long long)(n < min ? min : max));
        }
        n = n < min ? min : max;
    }
    return n;
}

static void conf_values(const struct conf *c, struct worker_conf *out, bool warn)
{
    out->max_attempts = (int)conf_int(c, "webhook_max_attempts", 5, 1, 100, warn);
    out->backoff_ms = conf_int(c, "webhook_backoff_ms", 1000, 1, 3600000, warn);
    out->backoff_max_ms = conf_int(c, "webhook_backoff_max_ms", 300000, 1, 86400000, warn);
    out->first_delay_ms = conf_int(c, "webhook_first_delay_ms", 0, 0, 86400000, warn);
    out->poll_ms = conf_int(c, "webhook_poll_ms", 50, 5, 10000, warn);
    if (out->backoff_max_ms < out->backoff_ms) {
        out->backoff_max_ms = out->backoff_ms;
    }
}

void worker_conf_load(const struct conf *c, struct worker_conf *out)
{
    conf_values(c, out, false);
}

/* ---- store helpers ---------------------------------------------------- */

/* The JSON at (t, key): new reference; NULL with *rc set (ENOENT, ESTORE…). */
static json_t *load_json(struct store *s, enum store_table t, const void *key, size_t klen,
                         int *rc)
{
    char *val = NULL;
    size_t vlen = 0;
    *rc = store_get(s, t, key, klen, &val, &vlen);
    if (*rc != AGAPE_OK) {
        return NULL;
    }
    json_t *v = json_loadb(val, vlen, 0, NULL);
    free(val);
    if (v == NULL) {
        *rc = AGAPE_EINVAL;
    }
    return v;
}

static void put_json(struct store_batch *b, enum store_table t, const void *key, size_t klen,
                     json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text != NULL) {
        store_batch_put(b, t, key, klen, text, strlen(text));
    }
    /* A NULL text makes a batch without the record; json_dumps fails only
     * without memory, and then the batch's own allocations fail too. */
    free(text);
}

/* The payment id the pref:<provider> index gives for ref, or NULL. */
static char *payment_id_by_ref(struct store *s, const char *provider, const char *ref)
{
    char scope[96];
    uint8_t k[STORE_KEY_MAX];
    size_t kl = 0;
    char *pid = NULL;
    size_t plen = 0;
    int n = snprintf(scope, sizeof(scope), "pref:%s", provider);
    if (n < 0 || (size_t)n >= sizeof(scope) ||
        store_key_pair(k, sizeof(k), scope, ref, &kl) != AGAPE_OK ||
        store_get(s, STORE_META, k, kl, &pid, &plen) != AGAPE_OK) {
        return NULL;
    }
    return pid;
}

static void set_iso_or_null(json_t *o, const char *k, int64_t ms)
{
    if (ms <= 0) {
        json_object_set_new(o, k, json_null());
        return;
    }
    char t[32];
    webhook_iso(ms, t);
    json_object_set_new(o, k, json_string(t));
}

/* ---- one event -------------------------------------------------------- */

/* The table given to on_webhook(ev). */
static json_t *rule_event(json_t *rec, const char *pubid, int attempt, json_t *payment,
                          json_t *subscription)
{
    json_t *norm = json_object_get(rec, "normalized");
    json_t *ev = json_pack("{s:s, s:O, s:O, s:O, s:i, s:O}", "id", pubid, "provider",
                           json_object_get(rec, "provider"), "event_id",
                           json_object_get(rec, "event_id"), "type",
                           json_object_get(rec, "type"), "attempt", attempt, "received_at",
                           json_object_get(rec, "received_at"));
    if (ev == NULL) {
        return NULL;
    }
    static const char *pass[] = {"payment_ref", "message_ref", "status", "object", NULL};
    for (int i = 0; pass[i]; i++) {
        json_t *v = json_object_get(norm, pass[i]);
        if (v != NULL) {
            json_object_set(ev, pass[i], v);
        }
    }
    if (payment != NULL) {
        json_t *p = json_deep_copy(payment);
        json_object_del(p, "idem_base");
        json_object_del(p, "api_key_id");
        json_object_del(p, "boot");
        json_object_set_new(ev, "payment", p);
    }
    if (subscription != NULL) {
        json_object_set(ev, "subscription", subscription);
    }
    return ev;
}

/* Apply the event to its payment: the record (changed or not) or NULL. */
/* `*locked` receives the id of the payment whose lock was taken (release it
 * after the commit); `*busy` is set when the payment is locked by someone
 * else (another operation on it is under way): then nothing is applied and
 * the event is to be tried again shortly. */
static json_t *apply_payment(struct app *app, struct store_batch *b, struct script_rules_run *run,
                             const char *prov, const char *evid, json_t *norm, int64_t now,
                             char **locked, bool *busy)
{
    const char *ref = json_string_value(json_object_get(norm, "payment_ref"));
    char *pid = NULL;
    /* >>> payment_id lookup (PayPal webhooks task). An event may name our own
     * payment id ("payment_id", e.g. PayPal's custom_id) instead of the
     * provider's reference; it moves the payment only if that payment is
     * this provider's. */
    bool by_id = false;
    if (ref == NULL || ref[0] == '\0') {
        const char *id = json_string_value(json_object_get(norm, "payment_id"));
        if (id == NULL || id[0] == '\0' || strlen(id) > 128) {
            return NULL;
        }
        pid = strdup(id);
        if (pid == NULL) {
            return NULL;
        }
        by_id = true;
    } else {
        /* <<< payment_id lookup */
        pid = payment_id_by_ref(app->store, prov, ref);
        if (pid == NULL) {
            log_msg(AGAPE_LOG_DEBUG, prov, "webhook %s: no payment has provider_ref %s", evid,
                    ref);
            return NULL;
        }
    }
    if (!paylock_try(pid)) {
        *busy = true;
        free(pid);
        return NULL;
    }
    *locked = pid;
    int rc;
    json_t *pay = load_json(app->store, STORE_PAYMENTS, pid, strlen(pid), &rc);
    /* >>> payment_id lookup: a payment of another provider is left alone. */
    const char *owner = json_string_value(json_object_get(pay, "provider"));
    if (pay != NULL && by_id && (owner == NULL || strcmp(owner, prov) != 0)) {
        log_msg(AGAPE_LOG_INFO, prov,
                "webhook %s: payment %s is not a %s payment; the event does not move it", evid,
                pid, prov);
        json_decref(pay);
        pay = NULL;
    }
    /* <<< payment_id lookup */
    if (pay != NULL) {
        const char *type = json_string_value(json_object_get(norm, "type"));
        const char *status = json_string_value(json_object_get(norm, "status"));
        const char *from = json_string_value(json_object_get(pay, "status"));
        char before[32];
        snprintf(before, sizeof(before), "%s", from ? from : "?");
        switch (webhook_apply_payment(pay, evid, type, status, now)) {
        case WEBHOOK_APPLIED:
            put_json(b, STORE_PAYMENTS, pid, strlen(pid), pay);
            json_object_set(run->payments, pid, pay);
            log_msg(AGAPE_LOG_INFO, prov, "webhook %s: payment %s %s -> %s", evid, pid, before,
                    status);
            break;
        case WEBHOOK_REFUSED:
            log_msg(AGAPE_LOG_INFO, prov,
                    "webhook %s: payment %s stays %s (a late or stale '%s' never moves it "
                    "back)",
                    evid, pid, before, status);
            break;
        default:
            break;
        }
    }
    return pay; /* pid is the caller's now, as *locked */
}

/* The subscription record the event makes (also written into the run as a
 * core write), or NULL. */
static json_t *apply_subscription(struct app *app, struct script_rules_run *run, json_t *rec,
                                  const char *prov, const char *evid, int64_t now)
{
    json_t *norm = json_object_get(rec, "normalized");
    json_t *nsub = json_object_get(norm, "subscription"); /* the plugin's translation */
    const char *sid = json_string_value(json_object_get(nsub, "id"));
    if (!json_is_object(nsub) || sid == NULL || sid[0] == '\0' ||
        strlen(sid) > SCRIPT_RULES_KEY_MAX) {
        return NULL;
    }
    json_t *old = script_rules_kv_read(app->store, WEBHOOK_KV_SUBSCRIPTIONS, sid);
    json_t *sub = webhook_subscription_record(
        prov, evid, (int64_t)json_integer_value(json_object_get(norm, "created")), nsub, old, now);
    json_decref(old);
    if (sub == NULL) {
        log_msg(AGAPE_LOG_INFO, prov, "webhook %s: subscription %s already has a later state",
                evid, sid);
        return NULL;
    }
    if (script_rules_kv_put(run, WEBHOOK_KV_SUBSCRIPTIONS, sid, sub, true) != AGAPE_OK) {
        json_decref(sub);
        return NULL;
    }
    return sub;
}

enum item_result { ITEM_DONE = 0, ITEM_LATER = 1, ITEM_STORE_FAILED = -1 };

/* Drop an outbox item that has nothing (more) to run. */
static int drop_item(struct app *app, const uint8_t key[16])
{
    struct store_batch *b = store_batch_new();
    store_batch_del(b, STORE_OUTBOX, key, 16);
    return store_commit(app->store, b) == AGAPE_OK ? ITEM_DONE : ITEM_STORE_FAILED;
}

static int process_item(struct app *app, const struct worker_conf *wc, const uint8_t key[16],
                        const char *prov, const char *evid)
{
    uint8_t ik[STORE_KEY_MAX];
    size_t ikl = 0;
    char hex[33];
    char pubid[WEBHOOK_ID_MAX];
    int rc;
    int ret = ITEM_DONE;
    json_t *rec = NULL;
    json_t *pay = NULL;
    json_t *sub = NULL;
    json_t *ev = NULL;
    struct script_rules_run run;
    bool run_open = false;
    char *locked = NULL; /* the payment whose lock this run holds */

    pthread_mutex_lock(&event_lock);
    if (webhook_inbox_key(prov, evid, ik, sizeof(ik), &ikl) != AGAPE_OK ||
        webhook_public_id(prov, evid, pubid, sizeof(pubid)) != AGAPE_OK) {
        ret = drop_item(app, key);
        goto out;
    }
    rec = load_json(app->store, STORE_INBOX, ik, ikl, &rc);
    if (rec == NULL && rc != AGAPE_ENOENT && rc != AGAPE_EINVAL) {
        ret = ITEM_STORE_FAILED;
        goto out;
    }
    webhook_outbox_hex(key, hex);
    const char *cur = json_string_value(json_object_get(rec, "outbox_key"));
    const char *status = json_string_value(json_object_get(rec, "status"));
    if (rec == NULL || cur == NULL || strcmp(cur, hex) != 0 || status == NULL ||
        strcmp(status, "pending") != 0) {
        ret = drop_item(app, key); /* stale: replayed, finished or gone */
        goto out;
    }

    int64_t now = client_wall_ms();
    int attempt = (int)json_integer_value(json_object_get(rec, "attempts")) + 1;
    json_t *norm = json_object_get(rec, "normalized");
    if (script_rules_begin(&run, pubid, now) != AGAPE_OK) {
        ret = ITEM_STORE_FAILED;
        goto out;
    }
    run_open = true;
    struct store_batch *b = store_batch_new();
    bool busy = false;
    pay = apply_payment(app, b, &run, prov, evid, norm, now, &locked, &busy);
    if (busy) {
        /* Another operation on the payment is under way: this event waits
         * for its commit, so it applies on top of it. */
        store_batch_free(b);
        ret = ITEM_LATER;
        goto out;
    }
    sub = apply_subscription(app, &run, rec, prov, evid, now);

    /* The rule. */
    bool ok = true;
    char err[512] = "";
    if (message_status_hook != NULL && json_is_object(norm) &&
        (json_object_get(norm, "message_ref") || json_object_get(norm, "agape_message_id") ||
         json_object_get(norm, "events"))) {
        rc = message_status_hook(app, b, prov, evid, norm);
        if (rc == AGAPE_EBUSY) {
            /* The message's send is still being recorded: run the event
             * again after the backoff, when it has been. */
            ok = false;
            snprintf(err, sizeof(err), "the message is still being sent; retried");
        } else if (rc != AGAPE_OK) {
            log_msg(AGAPE_LOG_WARN, prov, "webhook %s: delivery status not applied (rc %d)",
                    evid, rc);
        }
    }
    ev = rule_event(rec, pubid, attempt, pay, sub);
    if (ev == NULL) {
        ok = false;
        snprintf(err, sizeof(err), "out of memory building the event table");
    } else if (ok && script_has(app->scripts, "on_webhook")) {
        json_t *ret_v = NULL;
        rc = script_callv(app->scripts, "on_webhook", &ev, 1, &ret_v, err, sizeof(err));
        json_decref(ret_v);
        ok = rc == AGAPE_OK || rc == AGAPE_ENOENT; /* ENOENT: removed by a reload */
    }

    store_batch_del(b, STORE_OUTBOX, key, 16);
    int queued = script_rules_to_batch(&run, b, ok);
    if (queued < 0) {
        store_batch_free(b);
        ret = ITEM_STORE_FAILED;
        goto out;
    }
    json_object_set_new(rec, "attempts", json_integer(attempt));
    if (ok) {
        json_object_set_new(rec, "status", json_string("done"));
        json_object_set_new(rec, "last_error", json_null());
        set_iso_or_null(rec, "processed_at", now);
        json_object_set_new(rec, "next_at", json_null());
        json_object_set_new(rec, "outbox_key", json_null());
    } else {
        json_object_set_new(rec, "last_error", json_string(err));
        if (attempt >= wc->max_attempts) {
            json_object_set_new(rec, "status", json_string("failed"));
            set_iso_or_null(rec, "processed_at", now);
            json_object_set_new(rec, "next_at", json_null());
            json_object_set_new(rec, "outbox_key", json_null());
        } else {
            uint8_t nk[16];
            char nhex[33];
            int64_t due = now + webhook_backoff_ms(attempt, wc->backoff_ms, wc->backoff_max_ms);
            char *item = webhook_outbox_item(prov, evid);
            if (item == NULL || script_rules_outbox_key(nk, due) != AGAPE_OK) {
                free(item);
                store_batch_free(b);
                ret = ITEM_STORE_FAILED;
                goto out;
            }
            store_batch_put(b, STORE_OUTBOX, nk, sizeof(nk), item, strlen(item));
            free(item);
            webhook_outbox_hex(nk, nhex);
            set_iso_or_null(rec, "next_at", due);
            json_object_set_new(rec, "outbox_key", json_string(nhex));
        }
    }
    put_json(b, STORE_INBOX, ik, ikl, rec);
    rc = store_commit(app->store, b);
    if (rc != AGAPE_OK) {
        log_msg(AGAPE_LOG_ERROR, prov, "webhook %s: the outcome could not be recorded (rc %d); "
                "it runs again", evid, rc);
        ret = ITEM_STORE_FAILED;
        goto out;
    }
    if (ok) {
        log_msg(AGAPE_LOG_INFO, prov, "webhook %s (%s) handled on attempt %d; %d item(s) queued",
                evid, json_string_value(json_object_get(rec, "type")), attempt, queued);
    } else {
        log_msg(AGAPE_LOG_WARN, prov, "webhook %s: rule failed on attempt %d of %d%s: %s", evid,
                attempt, wc->max_attempts,
                attempt >= wc->max_attempts ? " (the event is now failed)" : "", err);
        /* The gateway reports its own failures to the monitoring providers. */
        json_t *tags = json_pack("{s:s, s:s, s:s}", "source", "webhook_rule", "provider", prov,
                                 "event_id", evid);
        monitor_report(attempt >= wc->max_attempts ? AGAPE_LOG_ERROR : AGAPE_LOG_WARN, tags,
                       "webhook %s: the on_webhook rule failed on attempt %d of %d: %s", evid,
                       attempt, wc->max_attempts, err);
        json_decref(tags);
    }
out:
    if (run_open) {
        script_rules_end(&run);
    }
    if (locked) {
        paylock_release(locked); /* after the commit: the next writer sees ours */
        free(locked);
    }
    json_decref(ev);
    json_decref(sub);
    json_decref(pay);
    json_decref(rec);
    pthread_mutex_unlock(&event_lock);
    return ret;
}

/* The built-in kind: {"kind":"webhook","provider","event_id"}. */
static int webhook_kind(struct app *app, const uint8_t key[16], json_t *item, void *arg)
{
    const struct worker_conf *wc = arg;
    const char *p = json_string_value(json_object_get(item, "provider"));
    const char *e = json_string_value(json_object_get(item, "event_id"));
    if (p == NULL || e == NULL || strlen(p) > WEBHOOK_PROVIDER_MAX ||
        strlen(e) > WEBHOOK_EVENT_ID_MAX) {
        log_warn("worker: a malformed webhook item was dropped");
        return drop_item(app, key) == ITEM_DONE ? WORKER_ITEM_DONE : AGAPE_ESTORE;
    }
    switch (process_item(app, wc, key, p, e)) {
    case ITEM_DONE:
        return WORKER_ITEM_DONE;
    case ITEM_LATER:
        return WORKER_ITEM_LATER;
    default:
        return AGAPE_ESTORE;
    }
}

/* ---- scanning ---------------------------------------------------------- */

struct due_item {
    uint8_t key[16];
    json_t *item;
};

struct scan_ctx {
    uint64_t now;
    size_t seen;
    struct due_item *items[WORKER_KIND_MAX]; /* per kind, WORKER_KIND_QUOTA each */
    size_t n[WORKER_KIND_MAX];
    int full;                                 /* kinds whose quota is reached */
    unsigned long long unknown;
};

static int kind_index(const char *kind)
{
    for (int i = 0; kind != NULL && i < n_kinds; i++) {
        if (strcmp(kinds[i].name, kind) == 0) {
            return i;
        }
    }
    return -1;
}

static int scan_cb(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct scan_ctx *sc = arg;
    if (klen != 16) {
        return 0;
    }
    if (store_key_read_be64(key) > sc->now || ++sc->seen > WORKER_SCAN_MAX) {
        return 1; /* time-ordered: everything after is later */
    }
    if (lease_blocks(key)) {
        return 0;
    }
    json_t *v = json_loadb(val, vlen, 0, NULL);
    int k = kind_index(json_string_value(json_object_get(v, "kind")));
    if (k < 0) {
        sc->unknown++;
        json_decref(v);
        return 0;
    }
    if (sc->n[k] >= WORKER_KIND_QUOTA) {
        json_decref(v);
        return 0;
    }
    struct due_item *it = &sc->items[k][sc->n[k]++];
    memcpy(it->key, key, 16);
    it->item = v;
    if (sc->n[k] == WORKER_KIND_QUOTA && ++sc->full == n_kinds) {
        return 1;
    }
    return 0;
}

/* One tick; *more is set when some kind may have more due items. */
static int run_tick(struct app *app, const struct worker_conf *wc, bool *more)
{
    struct scan_ctx sc = {.now = (uint64_t)client_wall_ms()};
    void *args[WORKER_KIND_MAX];
    bool stopped[WORKER_KIND_MAX] = {false};
    int done = 0;
    bool failed = false;
    *more = false;
    for (int k = 0; k < n_kinds; k++) {
        sc.items[k] = calloc(WORKER_KIND_QUOTA, sizeof(struct due_item));
        if (sc.items[k] == NULL) {
            failed = true;
        }
        /* The webhook kind's argument is the configuration of this tick. */
        args[k] = k == 0 ? (void *)(uintptr_t)wc : kinds[k].arg;
    }
    lease_scan_begin();
    if (failed || store_scan(app->store, STORE_OUTBOX, NULL, 0, NULL, 0, 0, scan_cb, &sc) !=
                      AGAPE_OK) {
        done = -1;
        goto out;
    }
    /* Round-robin across kinds, oldest first within a kind. */
    for (size_t i = 0; i < WORKER_KIND_QUOTA; i++) {
        bool any = false;
        for (int k = 0; k < n_kinds; k++) {
            if (stopped[k] || i >= sc.n[k]) {
                continue;
            }
            any = true;
            struct due_item *it = &sc.items[k][i];
            if (lease_take(it->key) != AGAPE_OK) {
                continue;
            }
            int rc = kinds[k].fn(app, it->key, it->item, args[k]);
            if (rc != WORKER_ITEM_TAKEN) {
                lease_drop(it->key);
            }
            pthread_mutex_lock(&leases.mu);
            if (rc == WORKER_ITEM_DONE || rc == WORKER_ITEM_TAKEN) {
                leases.st.handed++;
                done++;
            } else if (rc == WORKER_ITEM_BUSY) {
                leases.st.busy++;
            } else if (rc == WORKER_ITEM_LATER) {
                /* left for a later tick; nothing to count */
            } else {
                leases.st.failed++;
            }
            pthread_mutex_unlock(&leases.mu);
            if (rc == WORKER_ITEM_BUSY) {
                stopped[k] = true;
            } else if (rc < 0 || rc > WORKER_ITEM_LATER) {
                stopped[k] = true;
                failed = true;
            }
        }
        if (!any) {
            break;
        }
    }
    for (int k = 0; k < n_kinds; k++) {
        if (!stopped[k] && sc.n[k] == WORKER_KIND_QUOTA) {
            *more = true;
        }
    }
    if (failed) {
        done = -1;
    }
out:
    pthread_mutex_lock(&leases.mu);
    leases.st.ticks++;
    leases.st.unknown = sc.unknown;
    pthread_mutex_unlock(&leases.mu);
    for (int k = 0; k < n_kinds; k++) {
        for (size_t i = 0; sc.items[k] != NULL && i < sc.n[k]; i++) {
            json_decref(sc.items[k][i].item);
        }
        free(sc.items[k]);
    }
    return done;
}

int worker_run_due(struct app *app, const struct worker_conf *wc)
{
    bool more;
    return run_tick(app, wc, &more);
}

/* ---- the thread -------------------------------------------------------- */

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (;;) {
        bool more = false;
        int n = run_tick(w->app, &w->wc, &more);
        pthread_mutex_lock(&w->mu);
        if (!w->stop && !w->kick && !more) {
            struct timespec ts;
            deadline_in(&ts, n < 0 ? WORKER_STORE_RETRY_MS : w->wc.poll_ms);
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        }
        w->kick = false;
        bool stop = w->stop;
        pthread_mutex_unlock(&w->mu);
        if (stop) {
            break;
        }
    }
    return NULL;
}

int worker_start(struct app *app)
{
    struct worker *w = &the_worker;
    pthread_condattr_t ca;
    int rc = script_rules_register(app->scripts, app->store);
    if (rc != AGAPE_OK) {
        log_error("worker: the rule functions could not be registered (rc %d)", rc);
        return rc;
    }
    pthread_mutex_lock(&w->mu);
    if (w->running) {
        pthread_mutex_unlock(&w->mu);
        return AGAPE_EBUSY;
    }
    /* The condition variable waits on the monotonic clock (deadline_in). */
    pthread_cond_destroy(&w->cv);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    w->app = app;
    conf_values(app->conf, &w->wc, true); /* warns once about bad values */
    w->stop = false;
    w->kick = true;
    if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
        pthread_mutex_unlock(&w->mu);
        log_error("worker: cannot start the thread");
        return AGAPE_ERROR;
    }
    w->running = true;
    pthread_mutex_unlock(&w->mu);
    log_info("worker started (webhook_max_attempts %d, webhook_backoff_ms %lld)",
             w->wc.max_attempts, (long long)w->wc.backoff_ms);
    return AGAPE_OK;
}

void worker_stop(void)
{
    struct worker *w = &the_worker;
    pthread_mutex_lock(&w->mu);
    if (!w->running) {
        pthread_mutex_unlock(&w->mu);
        return;
    }
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    pthread_mutex_lock(&w->mu);
    w->running = false;
    w->app = NULL;
    pthread_mutex_unlock(&w->mu);
    /* Handlers still holding items release them into an empty set (a no-op);
     * their items run again after the restart. */
    leases_clear();
}

void worker_notify(void)
{
    struct worker *w = &the_worker;
    pthread_mutex_lock(&w->mu);
    if (w->running) {
        w->kick = true;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
}

/* ---- replay ------------------------------------------------------------ */

int worker_replay(struct app *app, const char *provider, const char *event_id,
                  json_t **event_out)
{
    uint8_t ik[STORE_KEY_MAX];
    size_t ikl = 0;
    int rc;
    *event_out = NULL;
    if (webhook_inbox_key(provider, event_id, ik, sizeof(ik), &ikl) != AGAPE_OK) {
        return AGAPE_ENOENT;
    }
    pthread_mutex_lock(&event_lock);
    json_t *rec = load_json(app->store, STORE_INBOX, ik, ikl, &rc);
    if (rec == NULL) {
        pthread_mutex_unlock(&event_lock);
        return rc == AGAPE_ENOENT ? AGAPE_ENOENT : AGAPE_ESTORE;
    }
    struct store_batch *b = store_batch_new();
    uint8_t old[16];
    if (webhook_outbox_unhex(json_string_value(json_object_get(rec, "outbox_key")), old)) {
        store_batch_del(b, STORE_OUTBOX, old, sizeof(old));
    }
    int64_t now = client_wall_ms();
    uint8_t nk[16];
    char nhex[33];
    char *item = webhook_outbox_item(provider, event_id);
    if (item == NULL || script_rules_outbox_key(nk, now) != AGAPE_OK) {
        free(item);
        store_batch_free(b);
        json_decref(rec);
        pthread_mutex_unlock(&event_lock);
        return AGAPE_ENOMEM;
    }
    store_batch_put(b, STORE_OUTBOX, nk, sizeof(nk), item, strlen(item));
    free(item);
    webhook_outbox_hex(nk, nhex);
    json_object_set_new(rec, "status", json_string("pending"));
    json_object_set_new(rec, "attempts", json_integer(0));
    json_object_set_new(rec, "last_error", json_null());
    json_object_set_new(rec, "processed_at", json_null());
    set_iso_or_null(rec, "next_at", now);
    json_object_set_new(rec, "outbox_key", json_string(nhex));
    put_json(b, STORE_INBOX, ik, ikl, rec);
    rc = store_commit(app->store, b);
    pthread_mutex_unlock(&event_lock);
    if (rc != AGAPE_OK) {
        json_decref(rec);
        return AGAPE_ESTORE;
    }
    log_msg(AGAPE_LOG_INFO, provider, "webhook %s replayed", event_id);
    worker_notify();
    *event_out = rec;
    return AGAPE_OK;
}
