/* sentry_event — report_error: one event in one envelope (PROVIDERS.md §7.4),
 * and Sentry's answer → an outcome (§7.5).
 *
 *   {"event_id":"…","sent_at":"…","dsn":"…"}\n
 *   {"type":"event","length":<bytes of the event JSON>,"content_type":"application/json"}\n
 *   <event JSON>\n
 *
 * The event keeps §10.7's key order (event_id, timestamp, platform, level,
 * message) so the minimal input gives exactly the documented 145 bytes.
 *
 * Answers (first matching row wins):
 *   2xx                → OK, result {"event_id"}
 *   429                → RATE_LIMITED; retry_after_ms = the larger of Retry-After and
 *                        the error/default/all-categories X-Sentry-Rate-Limits entries;
 *                        60 s when neither says (§7.5)
 *   401, 403           → AUTH
 *   400, 413, other 4xx→ INVALID (400: err from X-Sentry-Error, else the body's detail)
 *   5xx                → UNAVAILABLE
 *   anything else      → UNKNOWN
 * X-Sentry-Rate-Limits may come with any answer; retry_after_ms carries it
 * with OK too (Sentry asks for nothing more to be sent during that time). */
#include "sentry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTRY_429_DEFAULT_MS 60000
#define SENTRY_RL_HEADER_MAX 4096
#define SENTRY_ERR_TEXT_MAX 160

/* ------------------------------------------------------------------ */
/* X-Sentry-Rate-Limits                                                */

/* "<seconds>:<cat;cat>:<scope>[:<reason>…], …": does the category list
 * (p, n bytes) apply to an event item? Empty = every category. */
static bool categories_apply(const char *p, size_t n)
{
    if (n == 0) {
        return true;
    }
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && p[j] != ';') {
            j++;
        }
        size_t len = j - i;
        if ((len == 5 && memcmp(p + i, "error", 5) == 0) ||
            (len == 7 && memcmp(p + i, "default", 7) == 0)) {
            return true;
        }
        i = j + 1;
    }
    return false;
}

int64_t sentry_rate_limit_ms(const char *header)
{
    if (header == NULL) {
        return -1;
    }
    size_t total = strnlen(header, SENTRY_RL_HEADER_MAX + 1);
    if (total > SENTRY_RL_HEADER_MAX) {
        return -1;
    }
    int64_t best = -1;
    size_t i = 0;
    while (i < total) {
        size_t end = i;
        while (end < total && header[end] != ',') {
            end++;
        }
        const char *e = header + i;
        size_t n = end - i;
        while (n > 0 && (*e == ' ' || *e == '\t')) {
            e++;
            n--;
        }
        /* retry_after: digits, optionally ".digits" (Relay sends integers). */
        size_t k = 0;
        int64_t secs = 0;
        bool ok = n > 0 && e[0] >= '0' && e[0] <= '9';
        while (ok && k < n && e[k] >= '0' && e[k] <= '9') {
            if (secs < SENTRY_RETRY_MAX_S) {
                secs = secs * 10 + (e[k] - '0');
            }
            k++;
        }
        int64_t frac_ms = 0;
        if (ok && k < n && e[k] == '.') {
            int d = 0;
            k++;
            while (k < n && e[k] >= '0' && e[k] <= '9') {
                if (d < 3) {
                    frac_ms = frac_ms * 10 + (e[k] - '0');
                }
                d++;
                k++;
            }
            for (; d < 3; d++) {
                frac_ms *= 10;
            }
        }
        ok = ok && k < n && e[k] == ':';
        if (ok) {
            const char *cats = e + k + 1;
            size_t clen = 0;
            while (k + 1 + clen < n && cats[clen] != ':') {
                clen++;
            }
            if (categories_apply(cats, clen)) {
                if (secs > SENTRY_RETRY_MAX_S) {
                    secs = SENTRY_RETRY_MAX_S;
                }
                int64_t ms = secs * 1000 + frac_ms;
                if (ms > best) {
                    best = ms;
                }
            }
        }
        i = end + 1;
    }
    return best;
}

/* ------------------------------------------------------------------ */
/* The request                                                         */

static int add_user(const struct agape_host *h, const struct sentry_ctx *ctx,
                    const struct sentry_error *e, struct agape_json *event)
{
    static const char *const always[] = {"id", "username", NULL};
    static const char *const pii[] = {"email", "ip_address", NULL};
    struct agape_json *user = NULL;
    char tmp[32];
    int rc = AGAPE_OK;

    if (e->user == NULL) {
        return AGAPE_OK;
    }
    for (int pass = 0; pass < 2 && rc == AGAPE_OK; pass++) {
        const char *const *names = pass == 0 ? always : pii;
        if (pass == 1 && !ctx->send_default_pii) {
            break;
        }
        for (int i = 0; names[i] != NULL && rc == AGAPE_OK; i++) {
            const char *v = sentry_user_field(h, e, names[i], tmp);
            if (v == NULL) {
                continue;
            }
            if (user == NULL && (user = h->json_add_object(event, "user")) == NULL) {
                return AGAPE_ENOMEM;
            }
            rc = h->json_set_str(user, names[i], v);
        }
    }
    return rc;
}

static int add_tags(struct agape_call *call, const struct sentry_error *e,
                    struct agape_json *event)
{
    const struct agape_host *h = call->host;
    struct agape_json *tags = NULL;
    size_t skipped = 0;

    for (size_t i = 0; e->tags != NULL; i++) {
        const char *key;
        struct agape_buf *val;
        int r = sentry_error_tag(h, e, i, SENTRY_TAG_VALUE_MAX, &key, &val);
        if (r < 0 && key == NULL) {
            break;
        }
        if (r < 0) {
            return AGAPE_ENOMEM;
        }
        if (r > 0) {
            skipped++;
            continue;
        }
        if (tags == NULL) {
            tags = h->json_add_object(event, "tags");
        }
        int rc = tags ? h->json_set_str(tags, key, h->buf_data(val)) : AGAPE_ENOMEM;
        h->buf_free(val);
        if (rc != AGAPE_OK) {
            return rc;
        }
    }
    if (skipped > 0) {
        h->log(call->provider, AGAPE_LOG_WARN,
               "event %s: %zu tag(s) dropped: keys must be 1-32 of [A-Za-z0-9_.:-] and values "
               "strings, integers or booleans",
               e->event_id, skipped);
    }
    return AGAPE_OK;
}

/* The event JSON (compact, in §10.7's key order) appended to `out`. */
static int build_event(struct agape_call *call, const struct sentry_error *e,
                       struct agape_buf *out)
{
    const struct agape_host *h = call->host;
    const struct sentry_ctx *ctx = call->ctx;
    char now[32];
    struct agape_json *ev = h->json_new_object();
    if (ev == NULL) {
        return AGAPE_ENOMEM;
    }
    sentry_format_time(e->timestamp_ms, now);
    int rc = h->json_set_str(ev, "event_id", e->event_id);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(ev, "timestamp", e->timestamp ? e->timestamp : now);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(ev, "platform", e->platform);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(ev, "level", e->level);
    }
    if (rc == AGAPE_OK && e->message != NULL) {
        struct agape_json *m = h->json_add_object(ev, "message");
        rc = m ? h->json_set_str(m, "formatted", h->buf_data(e->message)) : AGAPE_ENOMEM;
    }
    if (rc == AGAPE_OK && e->exc_type != NULL) {
        struct agape_json *x = h->json_add_object(ev, "exception");
        struct agape_json *values = x ? h->json_add_array(x, "values") : NULL;
        struct agape_json *one = values ? h->json_add_object(values, NULL) : NULL;
        rc = one ? h->json_set_str(one, "type", e->exc_type) : AGAPE_ENOMEM;
        if (rc == AGAPE_OK && e->exc_value != NULL) {
            rc = h->json_set_str(one, "value", h->buf_data(e->exc_value));
        }
    }
    if (rc == AGAPE_OK && ctx->environment != NULL) {
        rc = h->json_set_str(ev, "environment", ctx->environment);
    }
    if (rc == AGAPE_OK && ctx->release != NULL) {
        rc = h->json_set_str(ev, "release", ctx->release);
    }
    if (rc == AGAPE_OK) {
        rc = add_tags(call, e, ev);
    }
    if (rc == AGAPE_OK) {
        rc = add_user(h, ctx, e, ev);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_dump(ev, out);
    }
    h->json_free(ev);
    return rc;
}

static int build_envelope(struct agape_call *call, const struct sentry_error *e,
                          struct agape_buf *env)
{
    const struct agape_host *h = call->host;
    const struct sentry_ctx *ctx = call->ctx;
    struct agape_buf *event = h->buf_new();
    struct agape_json *hdr = h->json_new_object();
    char sent_at[32];
    int rc = (event && hdr) ? AGAPE_OK : AGAPE_ENOMEM;

    if (rc == AGAPE_OK) {
        rc = build_event(call, e, event);
    }
    sentry_format_time(h->now_ms(), sent_at);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(hdr, "event_id", e->event_id);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(hdr, "sent_at", sent_at);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(hdr, "dsn", ctx->dsn);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_dump(hdr, env);
    }
    if (rc == AGAPE_OK) {
        /* length = the exact byte count of the payload line (§7.4, §11). */
        h->buf_printf(env, "\n{\"type\":\"event\",\"length\":%zu,"
                           "\"content_type\":\"application/json\"}\n",
                      h->buf_len(event));
        h->buf_add(env, h->buf_data(event), h->buf_len(event));
        rc = h->buf_add(env, "\n", 1);
    }
    h->json_free(hdr);
    h->buf_free(event);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The answer                                                          */

static void err_text(struct agape_call *call, const char *prefix, const char *text)
{
    char shown[SENTRY_ERR_TEXT_MAX + 1];
    size_t n = text ? strlen(text) : 0;
    n = sentry_utf8_cut(text ? text : "", n, SENTRY_ERR_TEXT_MAX);
    memcpy(shown, text ? text : "", n);
    shown[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)shown[i] < 0x20) {
            shown[i] = ' ';
        }
    }
    snprintf(call->err, sizeof(call->err), "%s%s", prefix, n ? shown : "(no reason given)");
}

static enum agape_step classify(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    int status = call->resp->status;
    int64_t limit = sentry_rate_limit_ms(h->resp_header(call, "X-Sentry-Rate-Limits"));
    char prefix[64];

    call->retry_after_ms = -1;
    if (status >= 200 && status < 300) {
        call->outcome = AGAPE_OUTCOME_OK;
        call->retry_after_ms = limit;
        if (h->json_set_str(call->result, "event_id",
                            h->json_str(call->state, "event_id")) != AGAPE_OK) {
            snprintf(call->err, sizeof(call->err), "out of memory");
            return AGAPE_STEP_FAIL;
        }
        return AGAPE_STEP_DONE;
    }
    if (status == 429) {
        int64_t ra = sentry_retry_after_ms(h->resp_header(call, "Retry-After"));
        call->outcome = AGAPE_OUTCOME_RATE_LIMITED;
        call->retry_after_ms = ra > limit ? ra : limit;
        if (call->retry_after_ms < 0) {
            call->retry_after_ms = SENTRY_429_DEFAULT_MS;
        }
        snprintf(call->err, sizeof(call->err), "Sentry rate limit (HTTP 429): retry after %lld s",
                 (long long)((call->retry_after_ms + 999) / 1000));
        return AGAPE_STEP_DONE;
    }
    if (status == 401 || status == 403) {
        call->outcome = AGAPE_OUTCOME_AUTH;
        snprintf(call->err, sizeof(call->err),
                 "Sentry refused the DSN's key (HTTP %d); check SENTRY_DSN", status);
        return AGAPE_STEP_DONE;
    }
    if (status == 413) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        snprintf(call->err, sizeof(call->err), "Sentry: event too large (HTTP 413)");
        return AGAPE_STEP_DONE;
    }
    if (status >= 400 && status < 500) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        snprintf(prefix, sizeof(prefix), "Sentry refused the event (HTTP %d): ", status);
        const char *why = h->resp_header(call, "X-Sentry-Error");
        struct agape_json *body = NULL;
        if (why == NULL) {
            body = h->json_parse(call->resp->body, call->resp->body_len, NULL, 0);
            why = h->json_str(body, "detail");
        }
        if (why == NULL && status == 404) {
            why = "no envelope endpoint at this DSN (Sentry before 20.6, or a wrong path)";
        }
        err_text(call, prefix, why);
        h->json_free(body);
        return AGAPE_STEP_DONE;
    }
    if (status >= 500 && status < 600) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        call->retry_after_ms = sentry_retry_after_ms(h->resp_header(call, "Retry-After"));
        snprintf(call->err, sizeof(call->err), "Sentry unavailable (HTTP %d)", status);
        return AGAPE_STEP_DONE;
    }
    call->outcome = AGAPE_OUTCOME_UNKNOWN;
    snprintf(call->err, sizeof(call->err), "Sentry answered HTTP %d", status);
    return AGAPE_STEP_DONE;
}

enum agape_step sentry_report_error(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct sentry_ctx *ctx = call->ctx;

    if (call->step > 0) {
        return classify(call);
    }

    struct sentry_error e;
    struct agape_buf *env = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (sentry_error_read(call, SENTRY_TEXT_MAX, &e) != 0) {
        goto out;
    }
    env = h->buf_new();
    if (env == NULL || build_envelope(call, &e, env) != AGAPE_OK ||
        h->json_set_str(call->state, "event_id", e.event_id) != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "cannot build the envelope (out of memory)");
        goto out;
    }
    if (h->req_start(call, "POST", ctx->envelope_url) != AGAPE_OK ||
        h->req_header(call, "X-Sentry-Auth", ctx->auth) != AGAPE_OK ||
        h->req_header(call, "User-Agent", SENTRY_CLIENT) != AGAPE_OK ||
        h->req_body(call, "application/x-sentry-envelope", h->buf_data(env), h->buf_len(env)) !=
            AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "cannot build the request");
        goto out;
    }
    st = AGAPE_STEP_SEND;
out:
    sentry_error_fini(h, &e);
    h->buf_free(env);
    return st;
}
