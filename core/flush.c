/* flush — metrics to the monitoring providers (see flush.h).
 *
 * Why deltas are kept per provider: New Relic's "count" is the increase over
 * an interval. Each provider keeps the snapshot it last took successfully;
 * a provider that was down gets, on its next success, the increase over the
 * whole time it missed, with that interval — nothing is counted twice and
 * nothing is lost, without storing anything.
 *
 * Why the rendered exposition is read too: the gauges (circuit state, calls
 * in flight, …) live in callbacks of other modules that only render text;
 * reading that text keeps "the same figures as /metrics" true as families
 * are added there. */
#include "flush.h"

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "monitor.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_RENDER_MAX ((size_t)8 << 20)
#define FLUSH_GRAVE_MS 1000

struct fl_call {
    struct provider *p;
    json_t *snap;            /* what this flush sent */
    int64_t now_ms;          /* wall: the end of its interval */
    struct dispatch_op *op;  /* set in the done callback */
    int64_t started_ms;
    int64_t dead_ms;
    struct fl_call *next;
};

static struct {
    pthread_mutex_t mu;
    struct app *app;
    bool running;
    bool stopping;
    int64_t period_ms;       /* 0: off */
    int64_t next_ms;         /* monotonic */
    int64_t started_wall;    /* process start of the first interval */
    json_t *state;           /* provider → {"base": snapshot, "from": wall ms, "busy": bool,
                                "ok": n, "failed": n} */
    struct fl_call *grave;
    struct dispatch_policy pol;
} fl = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- snapshots ------------------------------------------------------------ */

static void series_id(struct agape_buf *b, const char *name, int n, const char *const *ln,
                      const char *const *lv)
{
    buf_adds(b, name);
    buf_adds(b, "{");
    for (int i = 0; i < n; i++) {
        buf_printf(b, "%s%s=\"", i ? "," : "", ln[i]);
        metrics_escape(b, lv[i] ? lv[i] : "");
        buf_adds(b, "\"");
    }
    buf_adds(b, "}");
}

struct snap_ctx {
    json_t *out;
    json_t *families; /* names visited by metrics_foreach */
};

static void visit(const struct metrics_sample *s, void *arg)
{
    struct snap_ctx *sc = arg;
    struct agape_buf id;
    buf_init(&id, 4096);
    series_id(&id, s->name, s->n_labels, s->label_names, s->label_values);
    json_t *labels = json_object();
    for (int i = 0; i < s->n_labels; i++) {
        json_object_set_new(labels, s->label_names[i],
                            json_string(s->label_values[i] ? s->label_values[i] : ""));
    }
    json_t *e = json_pack("{s:s, s:s, s:o, s:I}", "name", s->name, "type",
                          s->type == METRICS_HISTOGRAM ? "histogram" : "counter", "labels",
                          labels, "value", (json_int_t)s->value);
    if (e != NULL && s->type == METRICS_HISTOGRAM) {
        json_object_set_new(e, "sum", json_real(s->sum));
        json_t *bk = json_array();
        json_t *bd = json_array();
        for (int i = 0; i < METRICS_BUCKETS; i++) {
            json_array_append_new(bk, json_integer((json_int_t)s->buckets[i]));
            json_array_append_new(bd, json_real(s->bounds ? s->bounds[i] : 0.0));
        }
        json_object_set_new(e, "buckets", bk);
        json_object_set_new(e, "bounds", bd);
    }
    if (e != NULL && id.error == AGAPE_OK) {
        json_object_set_new(sc->out, buf_cstr(&id), e);
    } else {
        json_decref(e);
    }
    json_object_set_new(sc->families, s->name, json_true());
    buf_fini(&id);
}

/* One sample line "name{a="x",b="y"} value" of the exposition: the name
 * (into name), the labels (object) and the value; false if unreadable. */
static bool parse_line(const char *line, size_t len, char *name, size_t namecap, json_t *labels,
                       double *value)
{
    size_t i = 0;
    while (i < len && line[i] != '{' && line[i] != ' ') {
        i++;
    }
    if (i == 0 || i >= namecap) {
        return false;
    }
    memcpy(name, line, i);
    name[i] = '\0';
    if (i < len && line[i] == '{') {
        i++;
        while (i < len && line[i] != '}') {
            size_t k0 = i;
            while (i < len && line[i] != '=') {
                i++;
            }
            if (i + 1 >= len || line[i + 1] != '"' || i - k0 == 0 || i - k0 > 100) {
                return false;
            }
            char key[101];
            memcpy(key, line + k0, i - k0);
            key[i - k0] = '\0';
            i += 2;
            struct agape_buf v;
            buf_init(&v, 4096);
            while (i < len && line[i] != '"') {
                char c = line[i];
                if (c == '\\' && i + 1 < len) {
                    i++;
                    c = line[i] == 'n' ? '\n' : line[i];
                }
                buf_add(&v, &c, 1);
                i++;
            }
            if (i >= len || v.error != AGAPE_OK) {
                buf_fini(&v);
                return false;
            }
            json_object_set_new(labels, key, json_string(buf_cstr(&v)));
            buf_fini(&v);
            i++; /* the closing quote */
            if (i < len && line[i] == ',') {
                i++;
            }
        }
        if (i >= len) {
            return false;
        }
        i++; /* '}' */
    }
    while (i < len && line[i] == ' ') {
        i++;
    }
    char num[64];
    size_t nl = 0;
    while (i < len && line[i] != ' ' && nl < sizeof(num) - 1) {
        num[nl++] = line[i++];
    }
    num[nl] = '\0';
    char *end = NULL;
    *value = strtod(num, &end);
    return nl > 0 && end != NULL && *end == '\0';
}

/* The gauge (and unknown counter) families of the rendered exposition. */
static void add_rendered(json_t *out, const json_t *families)
{
    struct agape_buf text;
    buf_init(&text, FLUSH_RENDER_MAX);
    if (metrics_render(&text) != AGAPE_OK) {
        buf_fini(&text);
        return;
    }
    const char *p = buf_cstr(&text);
    const char *end = p + text.len;
    char family[METRICS_LABEL_MAX * 2] = "";
    const char *type = "";
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (len > 7 && strncmp(p, "# TYPE ", 7) == 0) {
            const char *sp = memchr(p + 7, ' ', len - 7);
            size_t fl_len = sp ? (size_t)(sp - (p + 7)) : 0;
            if (fl_len > 0 && fl_len < sizeof(family)) {
                memcpy(family, p + 7, fl_len);
                family[fl_len] = '\0';
                size_t tl = len - 7 - fl_len - 1;
                type = tl == 5 && strncmp(sp + 1, "gauge", 5) == 0     ? "gauge"
                       : tl == 7 && strncmp(sp + 1, "counter", 7) == 0 ? "counter"
                                                                       : "";
            } else {
                family[0] = '\0';
                type = "";
            }
        } else if (len > 0 && p[0] != '#' && type[0] != '\0' &&
                   json_object_get(families, family) == NULL) {
            char name[256];
            double v = 0;
            json_t *labels = json_object();
            if (parse_line(p, len, name, sizeof(name), labels, &v) &&
                strcmp(name, family) == 0) {
                char id[1024];
                int n = snprintf(id, sizeof(id), "%.*s", (int)(len < 900 ? len : 900), p);
                /* the id: the line without its value */
                char *last = n > 0 ? strrchr(id, ' ') : NULL;
                if (last) {
                    *last = '\0';
                }
                json_t *e = json_pack("{s:s, s:s, s:O}", "name", name, "type", type, "labels",
                                      labels);
                if (e != NULL) {
                    json_object_set_new(e, "value", json_real(v));
                    json_object_set_new(out, id, e);
                }
            }
            json_decref(labels);
        }
        p = nl ? nl + 1 : end;
    }
    buf_fini(&text);
}

json_t *flush_snapshot(void)
{
    struct snap_ctx sc = {.out = json_object(), .families = json_object()};
    metrics_foreach(visit, &sc);
    add_rendered(sc.out, sc.families);
    json_decref(sc.families);
    return sc.out;
}

/* ---- the input ------------------------------------------------------------- */

static double num(const json_t *v)
{
    return json_is_integer(v) ? (double)json_integer_value(v) : json_real_value(v);
}

/* {"count", "sum", "min", "max"} of a histogram's interval, or NULL when
 * nothing was observed. Only buckets are known, so min and max are bounds:
 * min = the lower bound of the lowest bucket that gained an observation,
 * max = the upper bound of the highest one (the sum when it is +Inf), both
 * kept on their side of the mean; with one observation they are exact (the
 * sum). */
static json_t *summary(const json_t *e, const json_t *old)
{
    json_int_t c = json_integer_value(json_object_get(e, "value")) -
                   json_integer_value(json_object_get(old, "value"));
    double sum = num(json_object_get(e, "sum")) - num(json_object_get(old, "sum"));
    if (c <= 0) {
        return NULL;
    }
    if (sum < 0) {
        sum = 0;
    }
    double mean = sum / (double)c;
    double min = 0;
    double max = sum;
    const json_t *bk = json_object_get(e, "buckets");
    const json_t *ob = json_object_get(old, "buckets");
    const json_t *bd = json_object_get(e, "bounds");
    bool have_min = false;
    bool have_max = false;
    for (size_t i = 0; i < json_array_size(bk) && !have_max; i++) {
        json_int_t d = json_integer_value(json_array_get(bk, i)) -
                       json_integer_value(json_array_get(ob, i));
        if (!have_min && d > 0) {
            min = i == 0 ? 0.0 : num(json_array_get(bd, i - 1));
            have_min = true;
        }
        if (d >= c) {
            max = num(json_array_get(bd, i));
            have_max = true;
        }
    }
    if (c == 1) {
        min = max = sum;
    }
    if (min > mean) {
        min = mean;
    }
    if (max < mean) {
        max = mean;
    }
    if (max > sum) {
        max = sum;
    }
    return json_pack("{s:I, s:f, s:f, s:f}", "count", c, "sum", sum, "min", min, "max", max);
}

json_t *flush_input(const json_t *now, const json_t *base, int64_t from_ms, int64_t now_ms)
{
    json_t *metrics = json_array();
    const char *id;
    json_t *e;
    json_object_foreach((json_t *)now, id, e) {
        const char *type = json_string_value(json_object_get(e, "type"));
        const json_t *old = base ? json_object_get(base, id) : NULL;
        json_t *m = json_pack("{s:O}", "name", json_object_get(e, "name"));
        if (m == NULL || type == NULL) {
            json_decref(m);
            continue;
        }
        if (strcmp(type, "gauge") == 0) {
            json_object_set_new(m, "type", json_string("gauge"));
            json_object_set_new(m, "value", json_real(num(json_object_get(e, "value"))));
            json_object_set_new(m, "timestamp_ms", json_integer((json_int_t)now_ms));
        } else if (strcmp(type, "histogram") == 0) {
            json_t *v = summary(e, old);
            if (v == NULL) {
                json_decref(m);
                continue; /* nothing observed in the interval */
            }
            json_object_set_new(m, "type", json_string("summary"));
            json_object_set_new(m, "value", v);
        } else {
            double d = num(json_object_get(e, "value")) - num(json_object_get(old, "value"));
            json_object_set_new(m, "type", json_string("count"));
            if (json_is_integer(json_object_get(e, "value"))) {
                json_object_set_new(m, "value", json_integer(d < 0 ? 0 : (json_int_t)d));
            } else {
                json_object_set_new(m, "value", json_real(d < 0 ? 0.0 : d));
            }
        }
        json_t *labels = json_object_get(e, "labels");
        if (json_object_size(labels) > 0) {
            json_object_set(m, "attributes", labels);
        }
        json_array_append_new(metrics, m);
    }
    int64_t interval = now_ms - from_ms;
    return json_pack("{s:I, s:I, s:o}", "timestamp_ms", (json_int_t)from_ms, "interval_ms",
                     (json_int_t)(interval > 0 ? interval : 1), "metrics", metrics);
}

/* ---- calls ----------------------------------------------------------------- */

static void flushed(struct dispatch_op *op, void *arg)
{
    struct fl_call *c = arg;
    const struct dispatch_outcome *o = dispatch_result(op);
    bool ok = o->outcome == AGAPE_OUTCOME_OK;
    double ms = (double)(client_mono_ms() - c->started_ms);
    log_event(ok ? AGAPE_LOG_INFO : AGAPE_LOG_WARN,
              &(struct log_fields){.provider = c->p->name, .operation = "send_metrics",
                                   .outcome = dispatch_outcome_name(o->outcome),
                                   .latency_ms = ms},
              "metrics flush%s%s", ok ? "" : " failed; the next period sends this one's too: ",
              ok ? "" : (o->err[0] ? o->err : dispatch_outcome_name(o->outcome)));
    pthread_mutex_lock(&fl.mu);
    json_t *st = json_object_get(fl.state, c->p->name);
    json_object_set_new(st, "busy", json_false());
    if (ok) {
        json_object_set(st, "base", c->snap);
        json_object_set_new(st, "from", json_integer((json_int_t)c->now_ms));
    }
    const char *k = ok ? "ok" : "failed";
    json_object_set_new(st, k, json_integer(json_integer_value(json_object_get(st, k)) + 1));
    c->op = op;
    c->dead_ms = client_mono_ms();
    c->next = fl.grave;
    fl.grave = c;
    pthread_mutex_unlock(&fl.mu);
}

static bool has_send_metrics(const struct provider *p)
{
    return (p->plugin->desc->kinds & AGAPE_KIND_MONITORING) &&
           dispatch_find_op(p, "send_metrics") != NULL;
}

static void flush_now(void)
{
    struct app *app = fl.app;
    struct provider *mon[DISPATCH_MAX_CHAIN * 4];
    size_t n = registry_by_kind(app->reg, AGAPE_KIND_MONITORING, mon, DISPATCH_MAX_CHAIN * 4);
    json_t *snap = NULL;
    int64_t now = client_wall_ms();
    for (size_t i = 0; i < n; i++) {
        struct provider *p = mon[i];
        if (!has_send_metrics(p)) {
            continue;
        }
        if (snap == NULL && (snap = flush_snapshot()) == NULL) {
            return;
        }
        pthread_mutex_lock(&fl.mu);
        json_t *st = json_object_get(fl.state, p->name);
        if (st == NULL) {
            st = json_pack("{s:n, s:I, s:b, s:i, s:i}", "base", "from",
                           (json_int_t)fl.started_wall, "busy", 0, "ok", 0, "failed", 0);
            json_object_set_new(fl.state, p->name, st);
        }
        bool busy = fl.stopping || json_is_true(json_object_get(st, "busy"));
        json_t *input = NULL;
        if (!busy) {
            input = flush_input(snap, json_object_get(st, "base"),
                                json_integer_value(json_object_get(st, "from")), now);
            json_object_set_new(st, "busy", json_true());
        }
        pthread_mutex_unlock(&fl.mu);
        if (busy) {
            continue;
        }
        struct fl_call *c = calloc(1, sizeof(*c));
        struct dispatch_op *op = NULL;
        if (c != NULL && input != NULL) {
            c->p = p;
            c->snap = json_incref(snap);
            c->now_ms = now;
            c->started_ms = client_mono_ms();
            char base[64];
            snprintf(base, sizeof(base), "metrics-%lld", (long long)now);
            op = dispatch_start(app->client, &fl.pol, "send_metrics", input, &c->p, 1, base,
                                false, flushed, c);
        }
        json_decref(input);
        if (op == NULL) {
            if (c != NULL) {
                json_decref(c->snap);
                free(c);
            }
            pthread_mutex_lock(&fl.mu);
            json_object_set_new(st, "busy", json_false());
            pthread_mutex_unlock(&fl.mu);
            log_msg(AGAPE_LOG_WARN, p->name, "metrics flush not started (out of memory)");
        }
    }
    json_decref(snap);
}

static void free_calls(struct fl_call *c)
{
    while (c != NULL) {
        struct fl_call *next = c->next;
        dispatch_free(c->op);
        json_decref(c->snap);
        free(c);
        c = next;
    }
}

void flush_tick(void)
{
    int64_t now = client_mono_ms();
    bool due = false;
    struct fl_call *dead = NULL;
    pthread_mutex_lock(&fl.mu);
    if (fl.running && !fl.stopping && fl.period_ms > 0 && now >= fl.next_ms) {
        due = true;
        fl.next_ms = now + fl.period_ms;
    }
    struct fl_call **pp = &fl.grave;
    while (*pp != NULL) {
        struct fl_call *c = *pp;
        if (now - c->dead_ms >= FLUSH_GRAVE_MS) {
            *pp = c->next;
            c->next = dead;
            dead = c;
        } else {
            pp = &c->next;
        }
    }
    pthread_mutex_unlock(&fl.mu);
    free_calls(dead);
    if (due) {
        flush_now();
    }
}

/* ---- lifecycle ------------------------------------------------------------- */

int flush_start(struct app *app)
{
    const struct conf *c = app->conf;
    int64_t secs = FLUSH_DEFAULT_SECONDS;
    const char *env = getenv("AGAPE_METRICS_FLUSH_SECONDS");
    if (c != NULL && json_object_get(c->raw, "metrics_flush_seconds") != NULL) {
        secs = monitor_conf_int(c, "metrics_flush_seconds", FLUSH_DEFAULT_SECONDS, 0, 86400,
                                true);
    } else if (env != NULL && env[0] != '\0') {
        char *end = NULL;
        long long v = strtoll(env, &end, 10);
        if (end == NULL || *end != '\0' || v < 0 || v > 86400) {
            log_warn("AGAPE_METRICS_FLUSH_SECONDS=%.20s is not a number of seconds (0..86400); "
                     "using %d",
                     env, FLUSH_DEFAULT_SECONDS);
        } else {
            secs = v;
        }
    }
    pthread_mutex_lock(&fl.mu);
    fl.app = app;
    fl.period_ms = secs * 1000;
    fl.next_ms = client_mono_ms() + fl.period_ms;
    fl.started_wall = client_wall_ms();
    json_decref(fl.state);
    fl.state = json_object();
    fl.pol = (struct dispatch_policy){
        .max_retries = 0, /* the next period is the retry */
        .backoff_base_ms = c->backoff_base_ms,
        .backoff_max_ms = c->backoff_max_ms,
        .connect_timeout_ms = c->connect_timeout_ms,
        .attempt_timeout_ms = c->attempt_timeout_ms,
        .deadline_ms = c->attempt_timeout_ms + 1000,
    };
    fl.stopping = false;
    fl.running = true;
    pthread_mutex_unlock(&fl.mu);
    if (secs > 0) {
        log_info("metrics go to the monitoring providers every %lld s", (long long)secs);
    }
    return AGAPE_OK;
}

void flush_stop(void)
{
    pthread_mutex_lock(&fl.mu);
    fl.stopping = true;
    pthread_mutex_unlock(&fl.mu);
}

void flush_free(void)
{
    pthread_mutex_lock(&fl.mu);
    struct fl_call *dead = fl.grave;
    fl.grave = NULL;
    json_decref(fl.state);
    fl.state = NULL;
    fl.running = false;
    fl.app = NULL;
    pthread_mutex_unlock(&fl.mu);
    free_calls(dead);
}

json_t *flush_counts(void)
{
    json_t *out = json_object();
    pthread_mutex_lock(&fl.mu);
    const char *k;
    json_t *st;
    json_object_foreach(fl.state, k, st) {
        json_object_set_new(out, k, json_pack("{s:O, s:O}", "ok", json_object_get(st, "ok"),
                                              "failed", json_object_get(st, "failed")));
    }
    pthread_mutex_unlock(&fl.mu);
    return out;
}
