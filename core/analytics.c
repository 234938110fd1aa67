/* analytics — batches "event" outbox items to the analytics providers (see
 * analytics.h).
 *
 * Why items stay leased in memory while they wait for their batch: the
 * outbox has no notion of a group, and a batch must wait for company (up to
 * analytics_flush_ms) without the worker handing the same items out again.
 * The lease ends only after the item's deletion or rescheduling is durable,
 * so a crash at any point leaves the item in the outbox: nothing acknowledged
 * is lost; at worst an event is sent twice.
 *
 * Why an item carries a count of pending provider batches: an event may go
 * to several providers, each batching on its own; the item's fate (delete,
 * reschedule for the providers left, drop) is decided once, when the last of
 * them has answered, in one commit.
 *
 * Why finished calls go to a graveyard instead of being freed in their done
 * callback: dispatch.h says the op is freed "then", after the callback; the
 * monitor thread frees them a while later. */
#include "analytics.h"

#include "crypto.h"
#include "events.h"
#include "log.h"
#include "monitor.h"
#include "route.h"
#include "script_rules.h"
#include "store_keys.h"
#include "worker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_BUCKETS 4096
#define GRAVE_MS 1000
#define CLIENT_KEY_MAX (2 * EVENTS_ID_MAX + 2)

struct an_item {
    uint8_t key[16];
    json_t *item;         /* the outbox item */
    json_t *event;        /* what the plugin gets */
    json_t *retry;        /* provider names to try again */
    int attempts;         /* made before this one */
    int pending;          /* provider batches not answered yet */
    int delivered;        /* providers that took it */
    bool reroute;         /* nothing was sent: route again next time */
    bool rate_limited;
    int64_t retry_after_ms; /* the longest Retry-After a provider gave, or -1 */
    char err[AGAPE_ERR_SIZE];
    struct an_item *next; /* in a list of finished items */
};

struct an_group {
    struct an_group *hnext;      /* hash chain */
    struct an_group *prev, *next;/* all groups, oldest first */
    struct provider *p;
    uint32_t hash;
    char client[CLIENT_KEY_MAX];
    struct an_item *items[ANALYTICS_BATCH_MAX];
    size_t n;
    int64_t first_ms;            /* monotonic: when its first item joined */
};

struct an_batch {
    struct provider *p;
    struct an_item *items[ANALYTICS_BATCH_MAX];
    size_t n;
    struct dispatch_op *op;      /* set in the done callback */
    int64_t started_ms;
    int64_t dead_ms;
    struct an_batch *next;       /* in the ready list or the graveyard */
};

static struct {
    pthread_mutex_t mu;
    struct app *app;
    bool running;
    bool stopping;
    struct dispatch_policy pol;
    int64_t flush_ms;
    int max_attempts;
    int64_t backoff_ms;
    int64_t backoff_max_ms;
    struct an_group *buckets[GROUP_BUCKETS];
    struct an_group *head;
    struct an_group *tail;
    struct an_batch *grave;
    struct analytics_stats st;
} an = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void send_batches(struct an_batch *list);

/* ---- items ------------------------------------------------------------- */

static void item_free(struct an_item *it)
{
    if (it == NULL) {
        return;
    }
    json_decref(it->item);
    json_decref(it->event);
    json_decref(it->retry);
    free(it);
}

static void retry_on(struct an_item *it, const char *provider)
{
    size_t i;
    json_t *v;
    json_array_foreach(it->retry, i, v) {
        if (strcmp(json_string_value(v), provider) == 0) {
            return;
        }
    }
    json_array_append_new(it->retry, json_string(provider));
}

enum fate { FATE_DELIVERED, FATE_RESCHEDULED, FATE_DROPPED };

/* Add the item's outcome to b: deleted, or rescheduled for the providers
 * left, or dropped after the last attempt. */
static enum fate finalize_into(struct store_batch *b, struct an_item *it, int64_t now)
{
    if (json_array_size(it->retry) == 0 && !it->reroute) {
        store_batch_del(b, STORE_OUTBOX, it->key, sizeof(it->key));
        return FATE_DELIVERED;
    }
    int attempts = it->attempts + 1;
    if (attempts >= an.max_attempts) {
        store_batch_del(b, STORE_OUTBOX, it->key, sizeof(it->key));
        log_msg(AGAPE_LOG_WARN, NULL,
                "analytics: an event (%s) is dropped after %d attempts; last error: %s",
                json_string_value(json_object_get(it->event, "name"))
                    ? json_string_value(json_object_get(it->event, "name"))
                    : "seed event",
                attempts, it->err[0] ? it->err : "?");
        return FATE_DROPPED;
    }
    int64_t wait = events_backoff_ms(attempts, an.backoff_ms, an.backoff_max_ms);
    if (it->retry_after_ms > wait) {
        wait = it->retry_after_ms; /* the provider said when */
    } else if (it->rate_limited && it->retry_after_ms < 0 &&
               wait < ANALYTICS_RATE_LIMITED_MIN_MS) {
        wait = ANALYTICS_RATE_LIMITED_MIN_MS; /* told to slow down, but not for how long */
    }
    json_t *copy = events_retry_item(it->item, attempts, it->retry, it->reroute, it->err);
    uint8_t nk[16];
    char *text = copy ? json_dumps(copy, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(copy);
    if (text == NULL || script_rules_outbox_key(nk, now + wait) != AGAPE_OK) {
        /* Without memory the item stays as it was: it runs again. */
        free(text);
        return FATE_RESCHEDULED;
    }
    store_batch_put(b, STORE_OUTBOX, nk, sizeof(nk), text, strlen(text));
    store_batch_del(b, STORE_OUTBOX, it->key, sizeof(it->key));
    free(text);
    return FATE_RESCHEDULED;
}

static void count_fate(enum fate f)
{
    switch (f) {
    case FATE_DELIVERED:
        an.st.delivered++;
        break;
    case FATE_RESCHEDULED:
        an.st.rescheduled++;
        break;
    case FATE_DROPPED:
        an.st.dropped++;
        break;
    }
}

/* Writer thread: the outcomes are durable (or failed: the items stay and
 * run again). */
static void committed(int rc, void *arg)
{
    struct an_item *it = arg;
    size_t n = 0;
    if (rc != AGAPE_OK) {
        log_msg(AGAPE_LOG_ERROR, NULL,
                "analytics: the outcome of some events could not be recorded (rc %d); they "
                "will be sent again",
                rc);
    }
    while (it != NULL) {
        struct an_item *next = it->next;
        worker_item_release(it->key);
        item_free(it);
        it = next;
        n++;
    }
    pthread_mutex_lock(&an.mu);
    an.st.held -= n;
    pthread_mutex_unlock(&an.mu);
}

/* Commit the outcomes of a list of finished items, then release them. */
static void finalize_commit(struct an_item *done)
{
    if (done == NULL) {
        return;
    }
    struct store_batch *b = store_batch_new();
    int64_t now = client_wall_ms();
    pthread_mutex_lock(&an.mu);
    for (struct an_item *it = done; it != NULL; it = it->next) {
        count_fate(finalize_into(b, it, now));
    }
    pthread_mutex_unlock(&an.mu);
    store_commit_async(an.app->store, b, committed, done);
}

/* ---- groups (callers hold an.mu) -------------------------------------- */

static uint32_t group_hash(const struct provider *p, const char *client)
{
    uint32_t h = 2166136261u;
    for (const char *s = p->name; *s; s++) {
        h = (h ^ (uint8_t)*s) * 16777619u;
    }
    h = (h ^ 0xffu) * 16777619u;
    for (const char *s = client; *s; s++) {
        h = (h ^ (uint8_t)*s) * 16777619u;
    }
    return h;
}

/* Take a group out of the table and make it a batch (NULL without memory:
 * its items then count as to be retried on that provider). */
static struct an_batch *group_detach(struct an_group *g, struct an_item **done)
{
    struct an_group **pp = &an.buckets[g->hash % GROUP_BUCKETS];
    while (*pp != g) {
        pp = &(*pp)->hnext;
    }
    *pp = g->hnext;
    if (g->prev) {
        g->prev->next = g->next;
    } else {
        an.head = g->next;
    }
    if (g->next) {
        g->next->prev = g->prev;
    } else {
        an.tail = g->prev;
    }
    struct an_batch *bt = calloc(1, sizeof(*bt));
    if (bt == NULL) {
        for (size_t i = 0; i < g->n; i++) {
            struct an_item *it = g->items[i];
            retry_on(it, g->p->name);
            snprintf(it->err, sizeof(it->err), "out of memory");
            if (--it->pending == 0) {
                it->next = *done;
                *done = it;
            }
        }
    } else {
        bt->p = g->p;
        bt->n = g->n;
        memcpy(bt->items, g->items, g->n * sizeof(g->items[0]));
    }
    free(g);
    return bt;
}

/* Put the item in the group of (p, its client); a full group becomes a
 * batch pushed on *ready. */
static void group_add(struct provider *p, struct an_item *it, const char *client,
                      struct an_batch **ready, struct an_item **done)
{
    uint32_t h = group_hash(p, client);
    struct an_group *g = an.buckets[h % GROUP_BUCKETS];
    while (g != NULL && !(g->p == p && g->hash == h && strcmp(g->client, client) == 0)) {
        g = g->hnext;
    }
    if (g == NULL) {
        g = calloc(1, sizeof(*g));
        if (g == NULL) {
            retry_on(it, p->name);
            snprintf(it->err, sizeof(it->err), "out of memory");
            if (--it->pending == 0) {
                it->next = *done;
                *done = it;
            }
            return;
        }
        g->p = p;
        g->hash = h;
        snprintf(g->client, sizeof(g->client), "%s", client);
        g->first_ms = client_mono_ms();
        g->hnext = an.buckets[h % GROUP_BUCKETS];
        an.buckets[h % GROUP_BUCKETS] = g;
        g->prev = an.tail;
        if (an.tail) {
            an.tail->next = g;
        } else {
            an.head = g;
        }
        an.tail = g;
    }
    g->items[g->n++] = it;
    if (g->n == ANALYTICS_BATCH_MAX) {
        struct an_batch *bt = group_detach(g, done);
        if (bt != NULL) {
            bt->next = *ready;
            *ready = bt;
        }
    }
}

/* ---- calls --------------------------------------------------------------- */

/* The answer of one batch (client thread), or its failure to start. */
static void batch_finish(struct an_batch *bt, struct dispatch_op *op, enum agape_outcome o,
                         const char *err)
{
    struct an_batch *solos = NULL;
    struct an_item *done = NULL;
    bool refused = o == AGAPE_OUTCOME_INVALID || o == AGAPE_OUTCOME_DECLINED;

    pthread_mutex_lock(&an.mu);
    bool split = refused && bt->n > 1 && !an.stopping;
    if (split) {
        /* One bad event must not take the others down: each goes alone. */
        for (size_t i = 0; i < bt->n; i++) {
            struct an_batch *s = calloc(1, sizeof(*s));
            struct an_item *it = bt->items[i];
            if (s == NULL) {
                retry_on(it, bt->p->name);
                snprintf(it->err, sizeof(it->err), "out of memory");
                if (--it->pending == 0) {
                    it->next = done;
                    done = it;
                }
                continue;
            }
            s->p = bt->p;
            s->n = 1;
            s->items[0] = it;
            s->next = solos;
            solos = s;
        }
    } else {
        for (size_t i = 0; i < bt->n; i++) {
            struct an_item *it = bt->items[i];
            if (o == AGAPE_OUTCOME_OK) {
                it->delivered++;
            } else if (refused) {
                an.st.refused++;
                log_msg(AGAPE_LOG_WARN, bt->p->name,
                        "analytics: the provider refused an event (%s); it is dropped for "
                        "this provider: %s",
                        dispatch_outcome_name(o), err && err[0] ? err : "no reason given");
            } else {
                retry_on(it, bt->p->name);
                snprintf(it->err, sizeof(it->err), "%.40s: %.200s", bt->p->name,
                         err && err[0] ? err : dispatch_outcome_name(o));
                it->rate_limited = it->rate_limited || o == AGAPE_OUTCOME_RATE_LIMITED;
                int64_t ra = op ? dispatch_result(op)->retry_after_ms : -1;
                if (ra > it->retry_after_ms) {
                    it->retry_after_ms = ra;
                }
            }
            if (--it->pending == 0) {
                it->next = done;
                done = it;
            }
        }
    }
    if (op != NULL) {
        bt->op = op;
        bt->dead_ms = client_mono_ms();
        bt->next = an.grave;
        an.grave = bt;
    }
    pthread_mutex_unlock(&an.mu);
    if (op == NULL) {
        free(bt);
    }
    send_batches(solos);
    finalize_commit(done);
}

static void batch_done(struct dispatch_op *op, void *arg)
{
    struct an_batch *bt = arg;
    const struct dispatch_outcome *o = dispatch_result(op);
    enum agape_outcome oc = o->outcome;
    char err[AGAPE_ERR_SIZE];
    snprintf(err, sizeof(err), "%s", o->err);
    double ms = (double)(client_mono_ms() - bt->started_ms);
    log_event(oc == AGAPE_OUTCOME_OK ? AGAPE_LOG_INFO : AGAPE_LOG_WARN,
              &(struct log_fields){.provider = bt->p->name, .operation = "track_batch",
                                   .outcome = dispatch_outcome_name(oc), .latency_ms = ms},
              "analytics batch of %zu event(s)%s%s", bt->n, err[0] ? ": " : "", err);
    batch_finish(bt, op, oc, err);
}

static void send_batches(struct an_batch *list)
{
    while (list != NULL) {
        struct an_batch *bt = list;
        list = bt->next;
        bt->next = NULL;
        json_t *events = json_array();
        for (size_t i = 0; i < bt->n; i++) {
            json_array_append(events, bt->items[i]->event);
        }
        json_t *input = json_pack("{s:o}", "events", events);
        char base[33];
        crypto_hex(bt->items[0]->key, sizeof(bt->items[0]->key), base);
        pthread_mutex_lock(&an.mu);
        an.st.batches++;
        pthread_mutex_unlock(&an.mu);
        bt->started_ms = client_mono_ms();
        struct dispatch_op *op =
            input ? dispatch_start(an.app->client, &an.pol, "track_batch", input, &bt->p, 1, base,
                                   false, batch_done, bt)
                  : NULL;
        json_decref(input);
        if (op == NULL) {
            batch_finish(bt, NULL, AGAPE_OUTCOME_UNAVAILABLE, "out of memory starting the call");
        }
    }
}

/* ---- the handler (worker thread) ---------------------------------------- */

static bool is_analytics(const struct provider *p)
{
    return (p->plugin->desc->kinds & AGAPE_KIND_ANALYTICS) &&
           dispatch_find_op(p, "track_batch") != NULL;
}

/* The providers to send the item to now (usable ones); unusable ones of a
 * stored list go to it->retry; a routing failure sets it->reroute. */
static size_t choose(struct app *app, struct an_item *it, struct provider **out, size_t cap)
{
    json_t *list = json_object_get(it->item, "providers");
    json_t *ret = NULL;
    bool stored = json_is_array(list);
    if (!stored) {
        bool failed = false;
        char err[AGAPE_ERR_SIZE];
        ret = route_names(app, AGAPE_KIND_ANALYTICS, is_analytics, "route_event", it->event,
                          &failed, err, sizeof(err));
        if (ret == NULL) {
            it->reroute = true;
            snprintf(it->err, sizeof(it->err), "%s",
                     failed ? err : "no usable analytics provider is configured");
            if (failed) {
                log_msg(AGAPE_LOG_ERROR, NULL, "analytics: %s; the event waits", it->err);
            }
            return 0;
        }
        list = ret;
    }
    size_t n = 0;
    size_t i;
    json_t *v;
    /* An empty table converts to {}: no provider. */
    json_array_foreach(list, i, v) {
        const char *name = json_string_value(v);
        struct provider *p = name ? registry_find(app->reg, name) : NULL;
        if (p == NULL || !is_analytics(p)) {
            log_msg(AGAPE_LOG_WARN, NULL,
                    "analytics: %s names '%s', which is not an analytics provider; skipped",
                    stored ? "the event" : "route_event", name ? name : "(not a string)");
            continue;
        }
        if (!p->usable) {
            if (stored) {
                retry_on(it, p->name);
                snprintf(it->err, sizeof(it->err), "provider %s is not usable: %.150s", p->name,
                         p->why);
            } else {
                log_msg(AGAPE_LOG_WARN, p->name,
                        "analytics: route_event chose an unusable provider; skipped");
            }
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < n; j++) {
            dup = dup || out[j] == p;
        }
        if (!dup && n < cap) {
            out[n++] = p;
        }
    }
    json_decref(ret);
    return n;
}

/* Delete or reschedule an item at once (nothing to send now). */
static int settle_now(struct app *app, struct an_item *it)
{
    struct store_batch *b = store_batch_new();
    enum fate f = finalize_into(b, it, client_wall_ms());
    int rc = store_commit(app->store, b);
    if (rc == AGAPE_OK) {
        pthread_mutex_lock(&an.mu);
        count_fate(f);
        pthread_mutex_unlock(&an.mu);
    }
    item_free(it);
    return rc == AGAPE_OK ? WORKER_ITEM_DONE : rc;
}

static int handle(struct app *app, const uint8_t key[16], json_t *item, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&an.mu);
    bool busy = an.stopping || an.st.held >= ANALYTICS_HELD_MAX;
    pthread_mutex_unlock(&an.mu);
    if (busy) {
        return WORKER_ITEM_BUSY;
    }
    struct an_item *it = calloc(1, sizeof(*it));
    if (it == NULL) {
        return WORKER_ITEM_BUSY;
    }
    memcpy(it->key, key, sizeof(it->key));
    it->retry_after_ms = -1;
    it->item = json_incref(item);
    it->event = events_plugin_event(item);
    it->retry = json_array();
    it->attempts = (int)json_integer_value(json_object_get(item, "attempts"));
    if (it->event == NULL || it->retry == NULL) {
        item_free(it);
        return WORKER_ITEM_BUSY;
    }
    struct provider *to[DISPATCH_MAX_CHAIN * 4];
    size_t n = choose(app, it, to, DISPATCH_MAX_CHAIN * 4);
    if (n == 0) {
        if (json_array_size(it->retry) == 0 && !it->reroute) {
            log_msg(AGAPE_LOG_DEBUG, NULL, "analytics: route_event sends an event nowhere");
        }
        return settle_now(app, it);
    }
    char client[CLIENT_KEY_MAX];
    events_client_key(item, client, sizeof(client));
    struct an_batch *ready = NULL;
    struct an_item *done = NULL;
    pthread_mutex_lock(&an.mu);
    it->pending = (int)n;
    an.st.held++;
    for (size_t i = 0; i < n; i++) {
        group_add(to[i], it, client, &ready, &done);
    }
    pthread_mutex_unlock(&an.mu);
    send_batches(ready);
    finalize_commit(done);
    return WORKER_ITEM_TAKEN;
}

/* ---- lifecycle ------------------------------------------------------------ */

int analytics_start(struct app *app)
{
    const struct conf *c = app->conf;
    pthread_mutex_lock(&an.mu);
    an.app = app;
    an.flush_ms = monitor_conf_int(c, "analytics_flush_ms", 1000, 0, 600000, true);
    an.max_attempts = (int)monitor_conf_int(c, "event_max_attempts", 10, 1, 1000, true);
    an.backoff_ms = monitor_conf_int(c, "event_backoff_ms", 1000, 1, 3600000, true);
    an.backoff_max_ms = monitor_conf_int(c, "event_backoff_max_ms", 300000, 1, 86400000, true);
    if (an.backoff_max_ms < an.backoff_ms) {
        an.backoff_max_ms = an.backoff_ms;
    }
    an.pol = (struct dispatch_policy){
        .max_retries = c->max_retries,
        .backoff_base_ms = c->backoff_base_ms,
        .backoff_max_ms = c->backoff_max_ms,
        .connect_timeout_ms = c->connect_timeout_ms,
        .attempt_timeout_ms = c->attempt_timeout_ms,
        .deadline_ms = c->payment_deadline_ms,
    };
    an.stopping = false;
    an.running = true;
    pthread_mutex_unlock(&an.mu);
    int rc = worker_register_kind("event", handle, NULL);
    if (rc != AGAPE_OK) {
        log_error("analytics: the \"event\" kind could not be registered (rc %d)", rc);
        return rc;
    }
    return AGAPE_OK;
}

void analytics_tick(void)
{
    struct an_batch *ready = NULL;
    struct an_item *done = NULL;
    struct an_batch *dead = NULL;
    int64_t now = client_mono_ms();
    pthread_mutex_lock(&an.mu);
    if (!an.running) {
        pthread_mutex_unlock(&an.mu);
        return;
    }
    while (!an.stopping && an.head != NULL && now - an.head->first_ms >= an.flush_ms) {
        struct an_batch *bt = group_detach(an.head, &done);
        if (bt != NULL) {
            bt->next = ready;
            ready = bt;
        }
    }
    struct an_batch **pp = &an.grave;
    while (*pp != NULL) {
        struct an_batch *bt = *pp;
        if (now - bt->dead_ms >= GRAVE_MS) {
            *pp = bt->next;
            bt->next = dead;
            dead = bt;
        } else {
            pp = &bt->next;
        }
    }
    pthread_mutex_unlock(&an.mu);
    send_batches(ready);
    finalize_commit(done);
    while (dead != NULL) {
        struct an_batch *bt = dead;
        dead = bt->next;
        dispatch_free(bt->op);
        free(bt);
    }
}

void analytics_stop(void)
{
    struct an_item *done = NULL;
    struct an_item *drop = NULL;
    pthread_mutex_lock(&an.mu);
    if (!an.running) {
        pthread_mutex_unlock(&an.mu);
        return;
    }
    an.stopping = true;
    while (an.head != NULL) {
        struct an_group *g = an.head;
        an.head = g->next;
        for (size_t i = 0; i < g->n; i++) {
            struct an_item *it = g->items[i];
            retry_on(it, g->p->name);
            snprintf(it->err, sizeof(it->err), "the gateway stopped before it was sent");
            if (--it->pending > 0) {
                continue; /* a call in flight decides */
            }
            /* Nothing delivered: the item stays in the outbox as it is. */
            if (it->delivered == 0) {
                it->next = drop;
                drop = it;
            } else {
                it->next = done;
                done = it;
            }
        }
        free(g);
    }
    an.tail = NULL;
    memset(an.buckets, 0, sizeof(an.buckets));
    size_t n = 0;
    while (drop != NULL) {
        struct an_item *it = drop;
        drop = it->next;
        item_free(it);
        n++;
    }
    an.st.held -= n;
    pthread_mutex_unlock(&an.mu);
    finalize_commit(done);
}

void analytics_free(void)
{
    pthread_mutex_lock(&an.mu);
    struct an_batch *dead = an.grave;
    an.grave = NULL;
    an.running = false;
    an.app = NULL;
    pthread_mutex_unlock(&an.mu);
    while (dead != NULL) {
        struct an_batch *bt = dead;
        dead = bt->next;
        dispatch_free(bt->op);
        free(bt);
    }
}

void analytics_get_stats(struct analytics_stats *out)
{
    pthread_mutex_lock(&an.mu);
    *out = an.st;
    pthread_mutex_unlock(&an.mu);
}
