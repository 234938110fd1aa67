/* messages — see messages.h for the life of a message.
 *
 * Who writes a message record, and why they never overwrite each other:
 *   - POST creates it (a new id: an insert);
 *   - the kind handler + the outcome commit, only for a record that is
 *     "queued" and whose outbox_key is the item being run; the message is in
 *     the in-flight set from hand-off until the outcome is durable;
 *   - the delivery-status hook (worker thread, inside a webhook's batch):
 *     only for a message NOT in flight — it asks the worker to run the event
 *     again later otherwise (AGAPE_EBUSY) — and it runs on the worker thread,
 *     the only thread that starts sends, so none starts before its batch is
 *     committed;
 *   - the admin retry: only a "failed" record that is not in flight.
 * The in-flight set also gives GET its "sending" status: it is never stored,
 * so a crash leaves the message "queued" and it is simply sent again.
 *
 * Why the outcome keeps the record read at hand-off instead of re-reading
 * it: nobody else changes a queued, in-flight record (above), and the client
 * thread must not wait on the store. */
#include "messages.h"

#include "crypto.h"
#include "log.h"
#include "script_rules.h"
#include "store_keys.h"
#include "templates.h"
#include "webhook.h"
#include "worker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MSG_STOP_WAIT_MS 10000
#define MSG_SCAN_MAX 100000
#define MSG_EVENTS_MAX 10000

struct msg_job {
    struct app *app;
    uint8_t key[16];
    char id[MESSAGES_ID_MAX];
    json_t *rec;                       /* the record as read at hand-off */
    char chain[DISPATCH_MAX_CHAIN][WEBHOOK_PROVIDER_MAX + 1];
    size_t n;
    struct dispatch_op *op;            /* set by the done callback */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started;
    struct app *app;
    json_t *inflight;                  /* id → public view ("sending") */
    int n_inflight;
    struct messages_conf conf;
    struct dispatch_policy pol;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

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

void messages_conf_load(const struct conf *c, struct messages_conf *out, bool warn)
{
    memset(out, 0, sizeof(*out));
    out->max_attempts = (int)conf_int(c, "message_max_attempts", 8, 1, 100, warn);
    out->backoff_ms = conf_int(c, "message_backoff_ms", 1000, 1, 3600000, warn);
    out->backoff_max_ms = conf_int(c, "message_backoff_max_ms", 300000, 1, 86400000, warn);
    out->first_delay_ms = conf_int(c, "message_first_delay_ms", 0, 0, 86400000, warn);
    out->max_inflight = (int)conf_int(c, "message_max_inflight", 256, 1, 100000, warn);
    out->deadline_ms = conf_int(c, "message_deadline_ms", 30000, 100, 600000, warn);
    if (out->backoff_max_ms < out->backoff_ms) {
        out->backoff_max_ms = out->backoff_ms;
    }
    const char *t = c ? json_string_value(json_object_get(c->raw, "templates")) : NULL;
    if (t != NULL && t[0] != '\0') {
        snprintf(out->templates_dir, sizeof(out->templates_dir), "%s", t);
        return;
    }
    /* "templates" beside the scripts directory ("scripts" → "templates"). */
    const char *s = c && c->scripts_dir ? c->scripts_dir : "scripts";
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/') {
        n--;
    }
    while (n > 0 && s[n - 1] != '/') {
        n--;
    }
    snprintf(out->templates_dir, sizeof(out->templates_dir), "%.*stemplates", (int)n, s);
}

const struct messages_conf *messages_config(void)
{
    pthread_mutex_lock(&M.mu);
    bool started = M.started;
    pthread_mutex_unlock(&M.mu);
    /* Written once by messages_start, before `started`; read-only after. */
    return started ? &M.conf : NULL;
}

/* ---- pure helpers ------------------------------------------------------ */

static bool atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

bool messages_email_ok(const char *s)
{
    if (s == NULL) {
        return false;
    }
    size_t n = strlen(s);
    const char *at = strchr(s, '@');
    if (n < 3 || n > MESSAGES_EMAIL_MAX || at == NULL || strchr(at + 1, '@') != NULL) {
        return false;
    }
    size_t local = (size_t)(at - s);
    if (local == 0 || local > MESSAGES_EMAIL_LOCAL_MAX || s[0] == '.' || s[local - 1] == '.') {
        return false;
    }
    for (size_t i = 0; i < local; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (s[i + 1] == '.') {
                return false;
            }
        } else if (!atext(c)) {
            return false;
        }
    }
    /* domain: labels of [A-Za-z0-9-], 1..63 bytes, not starting or ending
     * with '-', at least two of them */
    const char *d = at + 1;
    int labels = 0;
    size_t len = 0;
    for (const char *p = d;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.' || c == '\0') {
            if (len == 0 || len > 63 || p[-1] == '-' || p[-(long)len] == '-') {
                return false;
            }
            labels++;
            len = 0;
            if (c == '\0') {
                break;
            }
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-')) {
            return false;
        }
        len++;
    }
    return labels >= 2;
}

bool messages_e164_ok(const char *s)
{
    if (s == NULL || s[0] != '+' || s[1] < '1' || s[1] > '9') {
        return false;
    }
    size_t digits = 0;
    for (const char *p = s + 1; *p; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
        digits++;
    }
    return digits >= 7 && digits <= 15;
}

size_t messages_utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0u) != 0x80u) {
            n++;
        }
    }
    return n;
}

bool messages_id_ok(const char *id)
{
    if (id == NULL || strncmp(id, "msg_", 4) != 0) {
        return false;
    }
    size_t n = 0;
    for (const char *p = id + 4; *p; p++, n++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z'))) {
            return false;
        }
    }
    return n >= 8 && n <= 40;
}

void messages_new_id(char out[MESSAGES_ID_MAX])
{
    uint32_t rnd = 0;
    if (crypto_random(&rnd, sizeof(rnd)) != AGAPE_OK) {
        rnd = (uint32_t)client_mono_us();
    }
    snprintf(out, MESSAGES_ID_MAX, "msg_%013llx%08x",
             (unsigned long long)(client_wall_ms() * 1000 + client_mono_us() % 1000),
             (unsigned)rnd);
}

int64_t messages_backoff_ms(int rounds, int64_t base, int64_t cap)
{
    int64_t d = base;
    for (int i = 1; i < rounds && d < cap; i++) {
        d *= 2;
    }
    return d < cap ? d : cap;
}

size_t messages_key(char *out, size_t cap, const char *id)
{
    int n = snprintf(out, cap, "%s%s", MESSAGES_META_MSG, id);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t fail_key(char *out, size_t cap, const char *id)
{
    int n = snprintf(out, cap, "%s%s", MESSAGES_META_FAIL, id);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static bool ref_key(uint8_t *out, size_t cap, const char *provider, const char *ref,
                    size_t *klen)
{
    char scope[96];
    int n = snprintf(scope, sizeof(scope), "%s%s", MESSAGES_META_REF, provider);
    return n > 0 && (size_t)n < sizeof(scope) && ref != NULL && ref[0] != '\0' &&
           store_key_pair(out, cap, scope, ref, klen) == AGAPE_OK;
}

/* ---- validation --------------------------------------------------------- */

static bool has_ctl(const char *s, size_t len, bool allow_newlines)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && !(allow_newlines && (c == '\n' || c == '\r' || c == '\t'))) ||
            c == 0x7f) {
            return true;
        }
    }
    return false;
}

#define FAIL(p, ...)                                                                             \
    do {                                                                                         \
        snprintf(param, paramlen, "%s", (p));                                                    \
        snprintf(msg, msglen, __VA_ARGS__);                                                      \
        return AGAPE_EINVAL;                                                                     \
    } while (0)

/* A string member: absent is fine unless required; else a non-empty string
 * of at most max bytes. */
static int check_str(json_t *in, const char *name, size_t max, bool required, char *param,
                     size_t paramlen, char *msg, size_t msglen)
{
    json_t *v = json_object_get(in, name);
    if (v == NULL || json_is_null(v)) {
        if (required) {
            FAIL(name, "%s is required", name);
        }
        return AGAPE_OK;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        FAIL(name, "%s must be a non-empty string", name);
    }
    if (json_string_length(v) > max) {
        FAIL(name, "%s must be at most %zu bytes", name, max);
    }
    if (memchr(json_string_value(v), '\0', json_string_length(v)) != NULL) {
        FAIL(name, "%s must not contain NUL characters", name);
    }
    return AGAPE_OK;
}

static bool present(json_t *in, const char *name)
{
    json_t *v = json_object_get(in, name);
    return v != NULL && !json_is_null(v);
}

int messages_validate(json_t *in, bool from_api, char *param, size_t paramlen, char *msg,
                      size_t msglen)
{
    static const char *const api_fields[] = {"channel", "to",       "from", "from_name",
                                             "subject", "text",     "html", "body",
                                             "template", "data",    "template_id", NULL};
    static const char *const item_fields[] = {"kind", "id", "status", "created_at", "source",
                                              NULL};
    const char *k;
    json_t *v;
    int rc;

    param[0] = '\0';
    msg[0] = '\0';
    if (!json_is_object(in)) {
        FAIL("", "the request must be a JSON object");
    }
    json_object_foreach(in, k, v) {
        bool ok = false;
        for (int i = 0; api_fields[i] && !ok; i++) {
            ok = strcmp(k, api_fields[i]) == 0;
        }
        for (int i = 0; !from_api && item_fields[i] && !ok; i++) {
            ok = strcmp(k, item_fields[i]) == 0;
        }
        if (!ok) {
            FAIL(k, "unknown field '%.64s'", k);
        }
    }
    const char *channel = json_string_value(json_object_get(in, "channel"));
    bool email = channel && strcmp(channel, "email") == 0;
    bool sms = channel && strcmp(channel, "sms") == 0;
    if (!email && !sms) {
        FAIL("channel", "channel must be \"email\" or \"sms\"");
    }
    if ((rc = check_str(in, "to", 320, true, param, paramlen, msg, msglen)) != AGAPE_OK) {
        return rc;
    }
    const char *to = json_string_value(json_object_get(in, "to"));
    if (email && !messages_email_ok(to)) {
        FAIL("to", "to must be one well-formed e-mail address (local@domain.tld)");
    }
    if (sms && !messages_e164_ok(to)) {
        FAIL("to", "to must be a phone number in E.164 form, e.g. +14155550100");
    }
    if ((rc = check_str(in, "from", 320, false, param, paramlen, msg, msglen)) != AGAPE_OK) {
        return rc;
    }
    const char *from = json_string_value(json_object_get(in, "from"));
    if (from && email && !messages_email_ok(from)) {
        FAIL("from", "from must be one well-formed e-mail address");
    }
    if (from && sms && (strlen(from) > MESSAGES_SMS_FROM_MAX || has_ctl(from, strlen(from),
                                                                        false))) {
        FAIL("from", "from must be a phone number or sender id of at most %d printable "
                     "characters", MESSAGES_SMS_FROM_MAX);
    }
    if ((rc = check_str(in, "from_name", MESSAGES_FROM_NAME_MAX, false, param, paramlen, msg,
                        msglen)) != AGAPE_OK) {
        return rc;
    }
    if (present(in, "from_name")) {
        if (!email) {
            FAIL("from_name", "from_name is for e-mail only");
        }
        const char *fn = json_string_value(json_object_get(in, "from_name"));
        if (has_ctl(fn, strlen(fn), false)) {
            FAIL("from_name", "from_name must not contain control characters");
        }
    }
    bool tmpl = present(in, "template");
    bool tid = present(in, "template_id");
    if (tmpl) {
        if ((rc = check_str(in, "template", 64, false, param, paramlen, msg, msglen)) !=
            AGAPE_OK) {
            return rc;
        }
        if (!templates_name_ok(json_string_value(json_object_get(in, "template")))) {
            FAIL("template", "unknown template '%.64s'",
                 json_string_value(json_object_get(in, "template")));
        }
    }
    if (tid) {
        if (!email) {
            FAIL("template_id", "template_id (a provider-side template) is for e-mail only");
        }
        if (tmpl) {
            FAIL("template_id", "give template or template_id, not both");
        }
        if ((rc = check_str(in, "template_id", MESSAGES_TEMPLATE_ID_MAX, false, param, paramlen,
                            msg, msglen)) != AGAPE_OK) {
            return rc;
        }
        const char *t = json_string_value(json_object_get(in, "template_id"));
        for (const char *p = t; *p; p++) {
            if (*p <= 0x20 || *p >= 0x7f) {
                FAIL("template_id", "template_id must be printable ASCII without spaces");
            }
        }
    }
    json_t *data = json_object_get(in, "data");
    if (data != NULL && !json_is_null(data)) {
        if (!json_is_object(data)) {
            FAIL("data", "data must be an object of named values");
        }
        if (!tmpl && !tid) {
            FAIL("data", "data is only used with template (or template_id)");
        }
        char *text = json_dumps(data, JSON_COMPACT);
        size_t n = text ? strlen(text) : 0;
        free(text);
        if (n > MESSAGES_DATA_MAX) {
            FAIL("data", "data must be at most %d bytes as JSON", MESSAGES_DATA_MAX);
        }
    }
    /* explicit content */
    static const char *const email_only[] = {"subject", "text", "html", NULL};
    for (int i = 0; email_only[i]; i++) {
        if (sms && present(in, email_only[i])) {
            FAIL(email_only[i], "%s is for e-mail; an sms has a body", email_only[i]);
        }
        if (tmpl && present(in, email_only[i])) {
            FAIL(email_only[i], "give either a template (with data) or %s, not both",
                 email_only[i]);
        }
    }
    if (email && present(in, "body")) {
        FAIL("body", "body is for sms; an e-mail has subject, text and html");
    }
    if (sms && tmpl && present(in, "body")) {
        FAIL("body", "give either a template (with data) or a body, not both");
    }
    if (email) {
        if ((rc = check_str(in, "subject", MESSAGES_SUBJECT_MAX, !tmpl && !tid, param, paramlen,
                            msg, msglen)) != AGAPE_OK ||
            (rc = check_str(in, "text", MESSAGES_EMAIL_BODY_MAX, false, param, paramlen, msg,
                            msglen)) != AGAPE_OK ||
            (rc = check_str(in, "html", MESSAGES_EMAIL_BODY_MAX, false, param, paramlen, msg,
                            msglen)) != AGAPE_OK) {
            return rc;
        }
        const char *subj = json_string_value(json_object_get(in, "subject"));
        if (subj && has_ctl(subj, strlen(subj), false)) {
            FAIL("subject", "subject must be one line without control characters");
        }
        if (!tmpl && !tid && !present(in, "text") && !present(in, "html")) {
            FAIL("text", "an e-mail needs text or html (or a template)");
        }
    } else if (!tmpl) {
        if ((rc = check_str(in, "body", 4 * MESSAGES_SMS_BODY_MAX, true, param, paramlen, msg,
                            msglen)) != AGAPE_OK) {
            return rc;
        }
        json_t *b = json_object_get(in, "body");
        if (messages_utf8_chars(json_string_value(b), json_string_length(b)) >
            MESSAGES_SMS_BODY_MAX) {
            FAIL("body", "body must be at most %d characters", MESSAGES_SMS_BODY_MAX);
        }
    }
    return AGAPE_OK;
}

/* Limits on rendered content (a template can make anything). */
static int check_content(json_t *content, bool email, char *param, size_t paramlen, char *msg,
                         size_t msglen)
{
    if (email) {
        json_t *s = json_object_get(content, "subject");
        if (s && (json_string_length(s) > MESSAGES_SUBJECT_MAX ||
                  has_ctl(json_string_value(s), json_string_length(s), false))) {
            FAIL("template", "the template's subject must be one line of at most %d bytes",
                 MESSAGES_SUBJECT_MAX);
        }
        static const char *const parts[] = {"text", "html", NULL};
        for (int i = 0; parts[i]; i++) {
            json_t *v = json_object_get(content, parts[i]);
            if (v && json_string_length(v) > MESSAGES_EMAIL_BODY_MAX) {
                FAIL("template", "the template's %s is over %d bytes", parts[i],
                     MESSAGES_EMAIL_BODY_MAX);
            }
        }
        return AGAPE_OK;
    }
    json_t *b = json_object_get(content, "body");
    if (b && messages_utf8_chars(json_string_value(b), json_string_length(b)) >
                 MESSAGES_SMS_BODY_MAX) {
        FAIL("template", "the template's body is over %d characters", MESSAGES_SMS_BODY_MAX);
    }
    return AGAPE_OK;
}

#undef FAIL

static void set_iso(json_t *o, const char *k, int64_t ms)
{
    if (ms <= 0) {
        json_object_set_new(o, k, json_null());
        return;
    }
    char t[32];
    webhook_iso(ms, t);
    json_object_set_new(o, k, json_string(t));
}

int messages_record_new(const struct messages_conf *conf, json_t *in, const char *id,
                        int64_t now_ms, const char *api_key_id, json_t **out, char *param,
                        size_t paramlen, char *msg, size_t msglen)
{
    *out = NULL;
    int rc = messages_validate(in, false, param, paramlen, msg, msglen);
    if (rc != AGAPE_OK) {
        return rc;
    }
    const char *channel = json_string_value(json_object_get(in, "channel"));
    bool email = strcmp(channel, "email") == 0;
    const char *tmpl = json_string_value(json_object_get(in, "template"));
    json_t *content = NULL;
    if (tmpl != NULL) {
        rc = templates_render(conf->templates_dir, channel, tmpl, json_object_get(in, "data"),
                              &content, param, paramlen, msg, msglen);
        if (rc == AGAPE_OK) {
            rc = check_content(content, email, param, paramlen, msg, msglen);
        }
        if (rc != AGAPE_OK) {
            json_decref(content);
            return rc;
        }
    } else {
        content = json_object();
        static const char *const parts[] = {"subject", "text", "html", "body", NULL};
        for (int i = 0; parts[i] && content; i++) {
            json_t *v = json_object_get(in, parts[i]);
            if (json_is_string(v)) {
                json_object_set(content, parts[i], v);
            }
        }
    }
    json_t *rec = json_pack("{s:i, s:s, s:s, s:O}", "v", 1, "id", id, "channel", channel, "to",
                            json_object_get(in, "to"));
    if (rec == NULL || content == NULL) {
        json_decref(rec);
        json_decref(content);
        snprintf(param, paramlen, "%s", "");
        snprintf(msg, msglen, "out of memory");
        return AGAPE_ENOMEM;
    }
    static const char *const copy[] = {"from", "from_name", "template", "template_id", NULL};
    for (int i = 0; copy[i]; i++) {
        json_t *v = json_object_get(in, copy[i]);
        if (json_is_string(v)) {
            json_object_set(rec, copy[i], v);
        }
    }
    if (json_object_get(in, "template_id") && json_is_object(json_object_get(in, "data"))) {
        json_object_set(rec, "data", json_object_get(in, "data"));
    }
    json_object_set_new(rec, "content", content);
    json_object_set_new(rec, "status", json_string("queued"));
    json_object_set_new(rec, "provider", json_null());
    json_object_set_new(rec, "provider_ref", json_null());
    json_object_set_new(rec, "attempts", json_array());
    json_object_set_new(rec, "rounds", json_integer(0));
    json_object_set_new(rec, "possible_duplicates", json_integer(0));
    /* A rule's item carries its creation time; keep it. */
    json_t *created = json_object_get(in, "created_at");
    if (json_is_string(created)) {
        json_object_set(rec, "created_at", created);
    } else {
        set_iso(rec, "created_at", now_ms);
    }
    set_iso(rec, "updated_at", now_ms);
    json_object_set_new(rec, "next_at", json_null());
    json_object_set_new(rec, "outbox_key", json_null());
    if (api_key_id != NULL) {
        json_object_set_new(rec, "api_key_id", json_string(api_key_id));
    }
    if (json_is_string(json_object_get(in, "source"))) {
        json_object_set(rec, "source", json_object_get(in, "source"));
    }
    *out = rec;
    return AGAPE_OK;
}

json_t *messages_public(json_t *rec)
{
    static const char *const keep[] = {"id",       "channel",    "to",          "status",
                                       "provider", "provider_ref", "attempts", "created_at",
                                       "updated_at", NULL};
    static const char *const opt[] = {"template", "template_id", "error", "delivered_at",
                                      "source", NULL};
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    for (int i = 0; keep[i]; i++) {
        json_t *v = json_object_get(rec, keep[i]);
        json_object_set_new(o, keep[i], v ? json_deep_copy(v) : json_null());
    }
    for (int i = 0; opt[i]; i++) {
        json_t *v = json_object_get(rec, opt[i]);
        if (v != NULL && !json_is_null(v)) {
            json_object_set(o, opt[i], v);
        }
    }
    json_t *next = json_object_get(rec, "next_at");
    const char *st = json_string_value(json_object_get(rec, "status"));
    if (json_is_string(next) && st && strcmp(st, "queued") == 0) {
        json_object_set(o, "next_at", next);
    }
    json_int_t dup = json_integer_value(json_object_get(rec, "possible_duplicates"));
    if (dup > 0) {
        json_object_set_new(o, "possible_duplicates", json_integer(dup));
    }
    return o;
}

/* ---- store helpers ------------------------------------------------------ */

static void put_json(struct store_batch *b, enum store_table t, const void *key, size_t klen,
                     json_t *v, bool insert)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text != NULL) {
        if (insert) {
            store_batch_insert(b, t, key, klen, text, strlen(text));
        } else {
            store_batch_put(b, t, key, klen, text, strlen(text));
        }
    }
    free(text);
}

static void put_record(struct store_batch *b, json_t *rec, bool insert)
{
    char key[96];
    size_t kl = messages_key(key, sizeof(key), json_string_value(json_object_get(rec, "id")));
    if (kl) {
        put_json(b, STORE_META, key, kl, rec, insert);
    }
}

/* The stored record: new reference; NULL with *rc (ENOENT, ESTORE, EINVAL). */
static json_t *load_record(struct store *s, const char *id, int *rc)
{
    char key[96];
    char *val = NULL;
    size_t vlen = 0;
    size_t kl = messages_key(key, sizeof(key), id);
    if (kl == 0) {
        *rc = AGAPE_ENOENT;
        return NULL;
    }
    *rc = store_get(s, STORE_META, key, kl, &val, &vlen);
    if (*rc != AGAPE_OK) {
        return NULL;
    }
    json_t *rec = json_loadb(val, vlen, 0, NULL);
    free(val);
    if (rec == NULL) {
        *rc = AGAPE_EINVAL;
    }
    return rec;
}

/* Add an outbox item {"kind":"message","id"} due at due_ms; its key in hex. */
static int add_item(struct store_batch *b, const char *id, int64_t due_ms, char hex[33])
{
    uint8_t k[16];
    char item[96];
    int n = snprintf(item, sizeof(item), "{\"kind\":\"message\",\"id\":\"%s\"}", id);
    if (n < 0 || (size_t)n >= sizeof(item) || script_rules_outbox_key(k, due_ms) != AGAPE_OK) {
        return AGAPE_ENOMEM;
    }
    store_batch_put(b, STORE_OUTBOX, k, sizeof(k), item, (size_t)n);
    webhook_outbox_hex(k, hex);
    return AGAPE_OK;
}

int messages_enqueue(struct store_batch *b, json_t *rec, int64_t due_ms, bool insert)
{
    char hex[33];
    const char *id = json_string_value(json_object_get(rec, "id"));
    if (id == NULL || add_item(b, id, due_ms, hex) != AGAPE_OK) {
        return AGAPE_ENOMEM;
    }
    json_object_set_new(rec, "outbox_key", json_string(hex));
    json_object_set_new(rec, "next_at", json_null());
    put_record(b, rec, insert);
    return AGAPE_OK;
}

static void set_failed_index(struct store_batch *b, const char *id, bool failed)
{
    char key[96];
    size_t kl = fail_key(key, sizeof(key), id);
    if (kl == 0) {
        return;
    }
    if (failed) {
        store_batch_put(b, STORE_META, key, kl, "", 0);
    } else {
        store_batch_del(b, STORE_META, key, kl);
    }
}

/* Drop a stale outbox item: a synchronous commit on the worker thread. */
static int drop_item(struct app *app, const uint8_t key[16])
{
    struct store_batch *b = store_batch_new();
    store_batch_del(b, STORE_OUTBOX, key, 16);
    return store_commit(app->store, b) == AGAPE_OK ? WORKER_ITEM_DONE : AGAPE_ESTORE;
}

/* ---- the in-flight set -------------------------------------------------- */

static bool inflight_has(const char *id)
{
    pthread_mutex_lock(&M.mu);
    bool has = M.inflight != NULL && json_object_get(M.inflight, id) != NULL;
    pthread_mutex_unlock(&M.mu);
    return has;
}

static int inflight_add(const char *id, json_t *view)
{
    int rc = AGAPE_OK;
    pthread_mutex_lock(&M.mu);
    if (M.inflight == NULL) {
        M.inflight = json_object();
    }
    if (M.inflight == NULL || json_object_set_new(M.inflight, id, view) != 0) {
        rc = AGAPE_ENOMEM;
    } else {
        M.n_inflight++;
    }
    pthread_mutex_unlock(&M.mu);
    return rc;
}

static void inflight_del(const char *id)
{
    pthread_mutex_lock(&M.mu);
    if (M.inflight != NULL && json_object_get(M.inflight, id) != NULL) {
        json_object_del(M.inflight, id);
        M.n_inflight--;
    }
    pthread_cond_broadcast(&M.cv);
    pthread_mutex_unlock(&M.mu);
}

/* ---- routing ------------------------------------------------------------- */

static bool provider_sends(struct provider *p, const char *op)
{
    return p != NULL && p->usable && (p->plugin->desc->kinds & AGAPE_KIND_MESSAGING) &&
           dispatch_find_op(p, op) != NULL;
}

static size_t add_unique(struct provider **chain, size_t n, struct provider *p)
{
    for (size_t j = 0; j < n; j++) {
        if (chain[j] == p) {
            return n;
        }
    }
    if (n < DISPATCH_MAX_CHAIN) {
        chain[n++] = p;
    }
    return n;
}

/* The chain for a message: the one recorded after an `unknown` outcome,
 * else route_message(msg, ctx) of the routing scripts (every usable
 * provider of the channel when the scripts define none). 0 with err when
 * none. Worker thread. */
static size_t route(struct app *app, json_t *rec, struct provider **chain, char *err,
                    size_t errlen)
{
    const char *channel = json_string_value(json_object_get(rec, "channel"));
    const char *op = channel && strcmp(channel, "sms") == 0 ? "send_sms" : "send_email";
    size_t n = 0;
    size_t i;
    json_t *v;

    json_array_foreach(json_object_get(rec, "chain"), i, v) {
        struct provider *p = registry_find(app->reg, json_string_value(v) ? json_string_value(v)
                                                                          : "");
        if (provider_sends(p, op)) {
            n = add_unique(chain, n, p);
        }
    }
    if (n > 0) {
        return n;
    }
    struct provider *all[DISPATCH_MAX_CHAIN * 4];
    size_t na = registry_by_kind(app->reg, AGAPE_KIND_MESSAGING, all, DISPATCH_MAX_CHAIN * 4);
    json_t *names = json_array();
    struct provider *avail[DISPATCH_MAX_CHAIN * 4];
    size_t nav = 0;
    for (i = 0; i < na; i++) {
        if (provider_sends(all[i], op)) {
            avail[nav++] = all[i];
            json_array_append_new(names, json_string(all[i]->name));
        }
    }
    if (!script_has(app->scripts, "route_message")) {
        for (i = 0; i < nav; i++) {
            n = add_unique(chain, n, avail[i]);
        }
        json_decref(names);
        if (n == 0) {
            snprintf(err, errlen, "no usable %s provider", channel);
        }
        return n;
    }
    json_t *msg = json_pack("{s:O, s:O, s:O}", "id", json_object_get(rec, "id"), "channel",
                            json_object_get(rec, "channel"), "to", json_object_get(rec, "to"));
    if (msg != NULL && json_object_get(rec, "template")) {
        json_object_set(msg, "template", json_object_get(rec, "template"));
    }
    if (msg != NULL && json_object_get(rec, "source")) {
        json_object_set(msg, "source", json_object_get(rec, "source"));
    }
    json_t *ctx = json_pack("{s:o, s:i}", "available", names, "attempt",
                            (int)json_integer_value(json_object_get(rec, "rounds")) + 1);
    json_t *args[2] = {msg, ctx};
    json_t *ret = NULL;
    char serr[400];
    int rc = msg && ctx ? script_callv(app->scripts, "route_message", args, 2, &ret, serr,
                                       sizeof(serr))
                        : AGAPE_ENOMEM;
    json_decref(msg);
    json_decref(ctx);
    if (rc != AGAPE_OK) {
        snprintf(err, errlen, "the routing script failed: %s", rc == AGAPE_ENOMEM ? "no memory"
                                                                                  : serr);
        json_decref(ret);
        return 0;
    }
    json_array_foreach(ret, i, v) {
        struct provider *p = registry_find(app->reg, json_string_value(v) ? json_string_value(v)
                                                                          : "");
        if (provider_sends(p, op)) {
            n = add_unique(chain, n, p);
        } else {
            log_msg(AGAPE_LOG_WARN, json_string_value(v),
                    "route_message named a provider that cannot send %s now; skipped", channel);
        }
    }
    json_decref(ret);
    if (n == 0) {
        snprintf(err, errlen, "no usable %s provider in the route", channel);
    }
    return n;
}

/* The normalized input of send_email / send_sms (plugin.h). */
static json_t *send_input(struct app *app, json_t *rec, struct provider **chain, size_t n)
{
    const char *channel = json_string_value(json_object_get(rec, "channel"));
    bool sms = channel && strcmp(channel, "sms") == 0;
    json_t *content = json_object_get(rec, "content");
    json_t *in = json_pack("{s:O, s:O}", "message_id", json_object_get(rec, "id"), "to",
                           json_object_get(rec, "to"));
    if (in == NULL) {
        return NULL;
    }
    if (json_object_get(rec, "from")) {
        json_object_set(in, "from", json_object_get(rec, "from"));
    }
    if (sms) {
        json_object_set(in, "body", json_object_get(content, "body"));
        /* Delivery reports go to the first provider of the chain that takes
         * webhooks (e.g. "twilio": /v1/webhooks/twilio). */
        const char *base = app->conf ? app->conf->public_url : NULL;
        for (size_t i = 0; base && base[0] && i < n; i++) {
            if (chain[i]->plugin->desc->kinds & AGAPE_KIND_WEBHOOK) {
                size_t bl = strlen(base);
                while (bl > 0 && base[bl - 1] == '/') {
                    bl--;
                }
                char url[2048];
                int w = snprintf(url, sizeof(url), "%.*s/v1/webhooks/%s", (int)bl, base,
                                 chain[i]->name);
                if (w > 0 && (size_t)w < sizeof(url)) {
                    json_object_set_new(in, "status_callback", json_string(url));
                }
                break;
            }
        }
        return in;
    }
    static const char *const parts[] = {"subject", "text", "html", NULL};
    for (int i = 0; parts[i]; i++) {
        json_t *v = json_object_get(content, parts[i]);
        if (v != NULL) {
            json_object_set(in, parts[i], v);
        }
    }
    static const char *const extra[] = {"from_name", "template_id", "data", NULL};
    for (int i = 0; extra[i]; i++) {
        json_t *v = json_object_get(rec, extra[i]);
        if (v != NULL) {
            json_object_set(in, extra[i], v);
        }
    }
    return in;
}

/* ---- outcomes ------------------------------------------------------------ */

static void job_free(struct msg_job *j)
{
    dispatch_free(j->op);
    json_decref(j->rec);
    free(j);
}

/* Writer thread: the outcome is durable (or failed: the item then stays as
 * it was and runs again). */
static void committed(int rc, void *arg)
{
    struct msg_job *j = arg;
    if (rc != AGAPE_OK) {
        log_msg(AGAPE_LOG_ERROR, NULL, "message %s: the outcome could not be recorded (rc %d); "
                "it will be sent again", j->id, rc);
    }
    inflight_del(j->id);
    worker_item_release(j->key);
    job_free(j);
}

/* Append this round's attempts (with their time), keeping the last
 * MESSAGES_ATTEMPTS_KEPT; returns how many may have delivered (ok or
 * unknown). */
static int add_attempts(json_t *rec, json_t *attempts, int64_t now)
{
    json_t *all = json_object_get(rec, "attempts");
    if (!json_is_array(all)) {
        all = json_array();
        json_object_set_new(rec, "attempts", all);
    }
    char at[32];
    webhook_iso(now, at);
    int unknown = 0;
    size_t i;
    json_t *a;
    json_array_foreach(attempts, i, a) {
        json_t *c = json_copy(a);
        json_object_set_new(c, "at", json_string(at));
        const char *o = json_string_value(json_object_get(a, "outcome"));
        if (o && (strcmp(o, "unknown") == 0 || strcmp(o, "ok") == 0)) {
            unknown++;
        }
        json_array_append_new(all, c);
    }
    while (json_array_size(all) > MESSAGES_ATTEMPTS_KEPT) {
        json_array_remove(all, 0);
    }
    return unknown;
}

/* Record a round that did not deliver and is not final: queued again after
 * the backoff, or failed after max_attempts rounds. */
static void reschedule_or_fail(struct store_batch *b, json_t *rec, const uint8_t key[16],
                               int rounds, const char *why, int64_t now, int64_t retry_after_ms)
{
    const struct messages_conf *mc = &M.conf;
    const char *id = json_string_value(json_object_get(rec, "id"));
    store_batch_del(b, STORE_OUTBOX, key, 16);
    if (rounds >= mc->max_attempts) {
        char err[600];
        snprintf(err, sizeof(err), "gave up after %d attempts: %s", rounds, why);
        json_object_set_new(rec, "status", json_string("failed"));
        json_object_set_new(rec, "error", json_string(err));
        json_object_set_new(rec, "outbox_key", json_null());
        json_object_set_new(rec, "next_at", json_null());
        set_failed_index(b, id, true);
        log_msg(AGAPE_LOG_WARN, NULL, "message %s failed: %s", id, err);
        return;
    }
    int64_t wait = messages_backoff_ms(rounds, mc->backoff_ms, mc->backoff_max_ms);
    if (retry_after_ms > wait) {
        wait = retry_after_ms; /* the provider said when */
    }
    int64_t due = now + wait;
    char hex[33];
    if (add_item(b, id, due, hex) != AGAPE_OK) {
        /* No memory: keep the old item (the batch is dropped by the store's
         * own allocation failure anyway). */
        store_batch_put(b, STORE_OUTBOX, key, 16, "{}", 2);
        return;
    }
    json_object_set_new(rec, "status", json_string("queued"));
    json_object_set_new(rec, "error", json_string(why));
    json_object_set_new(rec, "outbox_key", json_string(hex));
    set_iso(rec, "next_at", due);
    log_msg(AGAPE_LOG_INFO, NULL, "message %s: attempt %d of %d did not deliver (%s); next in "
            "%lld ms", id, rounds, mc->max_attempts, why, (long long)(due - now));
}

/* Client thread: the chain has run. Never blocks: the batch is committed
 * asynchronously and the job ends in committed(). */
static void sent(struct dispatch_op *op, void *arg)
{
    struct msg_job *j = arg;
    j->op = op;
    const struct dispatch_outcome *o = dispatch_result(op);
    json_t *rec = j->rec;
    int64_t now = client_wall_ms();
    int rounds = (int)json_integer_value(json_object_get(rec, "rounds")) + 1;
    json_object_set_new(rec, "rounds", json_integer(rounds));
    /* Every attempt that ended ok or unknown may have delivered a copy; all
     * but one of those copies are possible duplicates (the providers have no
     * idempotency key for sends). */
    json_int_t maybe = json_integer_value(json_object_get(rec, "maybe_delivered")) +
                       add_attempts(rec, o->attempts, now);
    json_object_set_new(rec, "maybe_delivered", json_integer(maybe));
    json_object_set_new(rec, "possible_duplicates", json_integer(maybe > 1 ? maybe - 1 : 0));
    struct store_batch *b = store_batch_new();
    const char *pname = o->provider ? o->provider->name : NULL;
    char why[400];

    switch (o->outcome) {
    case AGAPE_OUTCOME_OK: {
        const char *ref = json_string_value(json_object_get(o->result, "provider_ref"));
        json_object_set_new(rec, "status", json_string("sent"));
        json_object_set_new(rec, "provider", pname ? json_string(pname) : json_null());
        json_object_set_new(rec, "provider_ref", ref ? json_string(ref) : json_null());
        json_object_del(rec, "error");
        json_object_del(rec, "chain");
        json_object_set_new(rec, "outbox_key", json_null());
        json_object_set_new(rec, "next_at", json_null());
        store_batch_del(b, STORE_OUTBOX, j->key, 16);
        uint8_t rk[STORE_KEY_MAX];
        size_t rkl = 0;
        if (pname && ref && ref_key(rk, sizeof(rk), pname, ref, &rkl)) {
            store_batch_put(b, STORE_META, rk, rkl, j->id, strlen(j->id));
        }
        log_msg(AGAPE_LOG_INFO, pname, "message %s sent via %s (ref %s, attempt %d)", j->id,
                pname ? pname : "?", ref ? ref : "none", rounds);
        break;
    }
    case AGAPE_OUTCOME_DECLINED:
    case AGAPE_OUTCOME_INVALID:
        snprintf(why, sizeof(why), "%s by %s: %s",
                 o->outcome == AGAPE_OUTCOME_DECLINED ? "declined" : "refused as invalid",
                 pname ? pname : "the provider", o->err[0] ? o->err : "no reason given");
        json_object_set_new(rec, "status", json_string("failed"));
        json_object_set_new(rec, "provider", pname ? json_string(pname) : json_null());
        json_object_set_new(rec, "error", json_string(why));
        json_object_set_new(rec, "outbox_key", json_null());
        json_object_set_new(rec, "next_at", json_null());
        json_object_del(rec, "chain");
        store_batch_del(b, STORE_OUTBOX, j->key, 16);
        set_failed_index(b, j->id, true);
        log_msg(AGAPE_LOG_WARN, pname, "message %s failed: %s", j->id, why);
        break;
    default:
        snprintf(why, sizeof(why), "%s%s%s", dispatch_outcome_name(o->outcome),
                 o->err[0] ? ": " : "", o->err);
        if (o->outcome == AGAPE_OUTCOME_UNKNOWN) {
            /* Sent, no answer: the next round goes to the same chain, and
             * counts this attempt as a possible duplicate when it runs. */
            json_t *names = json_array();
            for (size_t i = 0; i < j->n; i++) {
                json_array_append_new(names, json_string(j->chain[i]));
            }
            json_object_set_new(rec, "chain", names);
        } else {
            json_object_del(rec, "chain");
        }
        reschedule_or_fail(b, rec, j->key, rounds, why, now, o->retry_after_ms);
        break;
    }
    set_iso(rec, "updated_at", now);
    put_record(b, rec, false);
    store_commit_async(j->app->store, b, committed, j); /* j is committed()'s now */
}

/* ---- the kind handler (worker thread) ------------------------------------- */

/* A rule's item without a record yet: the record, or a failed one when the
 * item is unusable. New reference; NULL without memory. */
static json_t *record_from_item(json_t *item, const char *id, int64_t now)
{
    char param[96];
    char msg[512];
    json_t *rec = NULL;
    int rc = messages_record_new(&M.conf, item, id, now, NULL, &rec, param,
                                 sizeof(param), msg, sizeof(msg));
    if (rc == AGAPE_OK) {
        return rec;
    }
    if (rc == AGAPE_ENOMEM) {
        return NULL;
    }
    /* Keep what is known of it, marked failed with the reason. */
    rec = json_pack("{s:i, s:s, s:O, s:O, s:s, s:n, s:n, s:[], s:i, s:i}", "v", 1, "id", id,
                    "channel", json_object_get(item, "channel"), "to",
                    json_object_get(item, "to"), "status", "failed", "provider",
                    "provider_ref", "attempts", "rounds", 0, "possible_duplicates", 0);
    if (rec == NULL) {
        return NULL;
    }
    char err[700];
    snprintf(err, sizeof(err), "the message queued by a rule is not valid: %s%s%s", msg,
             param[0] ? " (" : "", param[0] ? param : "");
    if (param[0]) {
        size_t l = strlen(err);
        snprintf(err + l, sizeof(err) - l, ")");
    }
    json_object_set_new(rec, "error", json_string(err));
    if (json_is_string(json_object_get(item, "template"))) {
        json_object_set(rec, "template", json_object_get(item, "template"));
    }
    if (json_is_string(json_object_get(item, "source"))) {
        json_object_set(rec, "source", json_object_get(item, "source"));
    }
    set_iso(rec, "created_at", now);
    set_iso(rec, "updated_at", now);
    json_object_set_new(rec, "outbox_key", json_null());
    json_object_set_new(rec, "next_at", json_null());
    return rec;
}

static int message_kind(struct app *app, const uint8_t key[16], json_t *item, void *arg)
{
    (void)arg;
    const char *id = json_string_value(json_object_get(item, "id"));
    char hex[33];
    int rc;
    int64_t now = client_wall_ms();

    if (!messages_id_ok(id)) {
        log_warn("worker: a message item without a usable id was dropped");
        return drop_item(app, key);
    }
    webhook_outbox_hex(key, hex);
    if (inflight_has(id)) {
        /* Either a stale item, or the next item of a send whose outcome has
         * just been committed but not yet released: never drop it on that
         * ground (it would lose the message); look again next tick. */
        return WORKER_ITEM_LATER;
    }
    pthread_mutex_lock(&M.mu);
    bool full = M.n_inflight >= M.conf.max_inflight;
    pthread_mutex_unlock(&M.mu);
    if (full) {
        return WORKER_ITEM_BUSY;
    }
    json_t *rec = load_record(app->store, id, &rc);
    if (rec == NULL && rc == AGAPE_ENOENT && json_object_get(item, "channel") != NULL) {
        rec = record_from_item(item, id, now);
        if (rec == NULL) {
            return AGAPE_ENOMEM;
        }
        const char *st = json_string_value(json_object_get(rec, "status"));
        if (st && strcmp(st, "failed") == 0) {
            struct store_batch *b = store_batch_new();
            store_batch_del(b, STORE_OUTBOX, key, 16);
            put_record(b, rec, true);
            set_failed_index(b, id, true);
            log_msg(AGAPE_LOG_WARN, NULL, "message %s failed: %s", id,
                    json_string_value(json_object_get(rec, "error")));
            json_decref(rec);
            return store_commit(app->store, b) == AGAPE_OK ? WORKER_ITEM_DONE : AGAPE_ESTORE;
        }
        json_object_set_new(rec, "outbox_key", json_string(hex));
    } else if (rec == NULL) {
        if (rc == AGAPE_ENOENT || rc == AGAPE_EINVAL) {
            log_warn("worker: message item %s has no readable record; dropped", id);
            return drop_item(app, key);
        }
        return AGAPE_ESTORE;
    } else {
        const char *cur = json_string_value(json_object_get(rec, "outbox_key"));
        const char *st = json_string_value(json_object_get(rec, "status"));
        if (cur == NULL || strcmp(cur, hex) != 0 || st == NULL || strcmp(st, "queued") != 0) {
            json_decref(rec);
            return drop_item(app, key); /* stale: sent, failed, retried or delivered */
        }
    }

    struct provider *chain[DISPATCH_MAX_CHAIN];
    char err[512] = "";
    size_t n = route(app, rec, chain, err, sizeof(err));
    if (n == 0) {
        /* Nothing to send it with now: a round that did not deliver. */
        int rounds = (int)json_integer_value(json_object_get(rec, "rounds")) + 1;
        json_object_set_new(rec, "rounds", json_integer(rounds));
        struct store_batch *b = store_batch_new();
        reschedule_or_fail(b, rec, key, rounds, err, now, -1);
        set_iso(rec, "updated_at", now);
        put_record(b, rec, false);
        json_decref(rec);
        return store_commit(app->store, b) == AGAPE_OK ? WORKER_ITEM_DONE : AGAPE_ESTORE;
    }

    struct msg_job *j = calloc(1, sizeof(*j));
    json_t *input = send_input(app, rec, chain, n);
    json_t *view = messages_public(rec);
    if (j == NULL || input == NULL || view == NULL) {
        free(j);
        json_decref(input);
        json_decref(view);
        json_decref(rec);
        return AGAPE_ENOMEM;
    }
    json_object_set_new(view, "status", json_string("sending"));
    j->app = app;
    memcpy(j->key, key, 16);
    snprintf(j->id, sizeof(j->id), "%s", id);
    j->rec = rec;
    j->n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(j->chain[i], sizeof(j->chain[i]), "%s", chain[i]->name);
    }
    if (inflight_add(j->id, view) != AGAPE_OK) {
        json_decref(input);
        job_free(j);
        return AGAPE_ENOMEM;
    }
    const char *channel = json_string_value(json_object_get(rec, "channel"));
    const char *op = channel && strcmp(channel, "sms") == 0 ? "send_sms" : "send_email";
    /* From here on j belongs to the dispatch (sent → committed). */
    struct dispatch_op *d = dispatch_start(app->client, &M.pol, op, input, chain, n, j->id,
                                           false, sent, j);
    json_decref(input);
    if (d == NULL) {
        inflight_del(j->id);
        job_free(j);
        return AGAPE_ENOMEM;
    }
    return WORKER_ITEM_TAKEN;
}

/* ---- delivery status (worker thread, inside a webhook's batch) ----------- */

static char *id_by_ref(struct store *s, const char *provider, const char *ref)
{
    uint8_t k[STORE_KEY_MAX];
    size_t kl = 0;
    char *id = NULL;
    size_t len = 0;
    if (!ref_key(k, sizeof(k), provider, ref, &kl) ||
        store_get(s, STORE_META, k, kl, &id, &len) != AGAPE_OK) {
        return NULL;
    }
    return id;
}

static int status_hook(struct app *app, struct store_batch *b, const char *provider,
                       const char *event_id, json_t *norm)
{
    json_t *list = json_object_get(norm, "events");
    json_t *single = NULL;
    if (!json_is_array(list)) {
        single = json_array();
        json_array_append(single, norm);
        list = single;
    }
    json_t *touched = json_object();
    int rc = AGAPE_OK;
    int64_t now = client_wall_ms();
    size_t i;
    json_t *ev;
    json_array_foreach(list, i, ev) {
        if (i >= MSG_EVENTS_MAX || touched == NULL) {
            break;
        }
        const char *status = json_string_value(json_object_get(ev, "status"));
        if (status == NULL || (strcmp(status, "delivered") != 0 &&
                               strcmp(status, "failed") != 0)) {
            continue;
        }
        const char *ours = json_string_value(json_object_get(ev, "agape_message_id"));
        const char *ref = json_string_value(json_object_get(ev, "message_ref"));
        char *found = NULL;
        const char *id = NULL;
        if (messages_id_ok(ours)) {
            id = ours;
        } else if (ref != NULL) {
            found = id_by_ref(app->store, provider, ref);
            id = messages_id_ok(found) ? found : NULL;
        }
        if (id == NULL) {
            log_msg(AGAPE_LOG_DEBUG, provider, "webhook %s: no message for ref %s", event_id,
                    ref ? ref : "(none)");
            free(found);
            continue;
        }
        if (inflight_has(id)) {
            free(found);
            rc = AGAPE_EBUSY;
            break;
        }
        json_t *rec = json_object_get(touched, id);
        if (rec == NULL) {
            int lrc;
            rec = load_record(app->store, id, &lrc);
            if (rec == NULL) {
                free(found);
                continue;
            }
            json_object_set_new(touched, id, rec);
        }
        const char *cur = json_string_value(json_object_get(rec, "status"));
        bool to_delivered = strcmp(status, "delivered") == 0 && cur &&
                            (strcmp(cur, "sent") == 0 || strcmp(cur, "queued") == 0);
        bool to_failed = strcmp(status, "failed") == 0 && cur && strcmp(cur, "sent") == 0;
        bool was_queued = cur && strcmp(cur, "queued") == 0; /* cur dies with the update */
        if (to_delivered) {
            json_object_set_new(rec, "status", json_string("delivered"));
            set_iso(rec, "delivered_at", now);
            json_object_del(rec, "error");
            if (was_queued) {
                /* An attempt whose answer was lost did arrive: no more rounds
                 * (the pending item finds the status and goes). */
                json_object_set_new(rec, "provider", json_string(provider));
                if (ref) {
                    json_object_set_new(rec, "provider_ref", json_string(ref));
                }
            }
            log_msg(AGAPE_LOG_INFO, provider, "message %s delivered (event %s)", id, event_id);
        } else if (to_failed) {
            const char *ps = json_string_value(json_object_get(ev, "provider_status"));
            const char *evn = json_string_value(json_object_get(ev, "event"));
            json_t *code = json_object_get(ev, "error_code");
            char why[300];
            snprintf(why, sizeof(why), "%s reported the message as %s%s%s", provider,
                     ps ? ps : (evn ? evn : "failed"), json_is_integer(code) ? ", error " : "",
                     "");
            if (json_is_integer(code)) {
                size_t l = strlen(why);
                snprintf(why + l, sizeof(why) - l, "%lld", (long long)json_integer_value(code));
            }
            json_object_set_new(rec, "status", json_string("failed"));
            json_object_set_new(rec, "error", json_string(why));
            set_failed_index(b, id, true);
            log_msg(AGAPE_LOG_WARN, provider, "message %s: %s (event %s)", id, why, event_id);
        }
        if (to_delivered || to_failed) {
            set_iso(rec, "updated_at", now);
            json_object_set_new(rec, "changed", json_true());
        }
        free(found);
    }
    if (rc == AGAPE_OK && touched != NULL) {
        const char *k;
        json_t *rec;
        json_object_foreach(touched, k, rec) {
            if (json_object_get(rec, "changed")) {
                json_object_del(rec, "changed");
                put_record(b, rec, false);
            }
        }
    }
    json_decref(touched);
    json_decref(single);
    return rc;
}

/* ---- lookups and admin --------------------------------------------------- */

int messages_lookup(struct app *app, const char *id, json_t **out)
{
    *out = NULL;
    if (!messages_id_ok(id)) {
        return AGAPE_ENOENT;
    }
    pthread_mutex_lock(&M.mu);
    json_t *v = M.inflight ? json_object_get(M.inflight, id) : NULL;
    if (v != NULL) {
        *out = json_deep_copy(v);
    }
    pthread_mutex_unlock(&M.mu);
    if (*out != NULL) {
        return AGAPE_OK;
    }
    int rc;
    json_t *rec = load_record(app->store, id, &rc);
    if (rec == NULL) {
        return rc == AGAPE_ENOENT ? AGAPE_ENOENT : AGAPE_ESTORE;
    }
    *out = messages_public(rec);
    json_decref(rec);
    return *out ? AGAPE_OK : AGAPE_ENOMEM;
}

struct list_ctx {
    const char *status;
    size_t limit;
    size_t seen;
    json_t *out;     /* public views, or ids (by_index) */
    bool by_index;
};

static int list_cb(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct list_ctx *lc = arg;
    if (++lc->seen > MSG_SCAN_MAX) {
        return 1;
    }
    if (lc->by_index) {
        size_t pl = strlen(MESSAGES_META_FAIL);
        if (klen > pl && klen - pl < MESSAGES_ID_MAX) {
            json_array_append_new(lc->out, json_stringn((const char *)key + pl, klen - pl));
        }
    } else {
        json_t *rec = json_loadb(val, vlen, 0, NULL);
        const char *st = json_string_value(json_object_get(rec, "status"));
        if (rec != NULL && (lc->status == NULL || (st && strcmp(st, lc->status) == 0))) {
            json_array_append_new(lc->out, messages_public(rec));
        }
        json_decref(rec);
    }
    return json_array_size(lc->out) >= lc->limit ? 1 : 0;
}

int messages_list(struct app *app, const char *status, int limit, json_t **out)
{
    struct list_ctx lc = {.status = status, .limit = limit > 0 ? (size_t)limit : 1,
                          .out = json_array()};
    *out = NULL;
    if (lc.out == NULL) {
        return AGAPE_ENOMEM;
    }
    if (status != NULL && strcmp(status, "failed") == 0) {
        /* Through the failed index: the ids first, then each record (no read
         * inside the scan). */
        lc.by_index = true;
        int rc = store_scan(app->store, STORE_META, MESSAGES_META_FAIL,
                            strlen(MESSAGES_META_FAIL), NULL, 0, 0, list_cb, &lc);
        json_t *ids = lc.out;
        if (rc != AGAPE_OK || (lc.out = json_array()) == NULL) {
            json_decref(ids);
            return rc != AGAPE_OK ? AGAPE_ESTORE : AGAPE_ENOMEM;
        }
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v) {
            json_t *rec = load_record(app->store, json_string_value(v), &rc);
            const char *st = json_string_value(json_object_get(rec, "status"));
            if (st && strcmp(st, "failed") == 0) {
                json_array_append_new(lc.out, messages_public(rec));
            }
            json_decref(rec);
        }
        json_decref(ids);
        *out = lc.out;
        return AGAPE_OK;
    }
    int rc = store_scan(app->store, STORE_META, MESSAGES_META_MSG, strlen(MESSAGES_META_MSG),
                        NULL, 0, 0, list_cb, &lc);
    if (rc != AGAPE_OK) {
        json_decref(lc.out);
        return AGAPE_ESTORE;
    }
    *out = lc.out;
    return AGAPE_OK;
}

int messages_retry(struct app *app, const char *id, struct store_batch *b, json_t **rec_out,
                   char *err, size_t errlen)
{
    *rec_out = NULL;
    if (!messages_id_ok(id)) {
        return AGAPE_ENOENT;
    }
    if (inflight_has(id)) {
        snprintf(err, errlen, "message %s is being sent", id);
        return AGAPE_EBUSY;
    }
    int rc;
    json_t *rec = load_record(app->store, id, &rc);
    if (rec == NULL) {
        return rc == AGAPE_ENOENT ? AGAPE_ENOENT : AGAPE_ESTORE;
    }
    const char *st = json_string_value(json_object_get(rec, "status"));
    if (st == NULL || strcmp(st, "failed") != 0) {
        snprintf(err, errlen, "message %s is %s; only a failed message can be retried", id,
                 st ? st : "?");
        json_decref(rec);
        return AGAPE_EINVAL;
    }
    int64_t now = client_wall_ms();
    json_object_set_new(rec, "status", json_string("queued"));
    json_object_set_new(rec, "attempts", json_array());
    json_object_set_new(rec, "rounds", json_integer(0));
    json_object_set_new(rec, "provider", json_null());
    json_object_set_new(rec, "provider_ref", json_null());
    json_object_del(rec, "error");
    json_object_del(rec, "chain");
    json_object_set_new(rec, "retries",
                        json_integer(json_integer_value(json_object_get(rec, "retries")) + 1));
    set_iso(rec, "updated_at", now);
    if (messages_enqueue(b, rec, now, false) != AGAPE_OK) {
        json_decref(rec);
        return AGAPE_ENOMEM;
    }
    set_failed_index(b, id, false);
    log_msg(AGAPE_LOG_INFO, NULL, "message %s queued again by an admin retry", id);
    *rec_out = rec;
    return AGAPE_OK;
}

/* ---- start and stop ----------------------------------------------------- */

int messages_start(struct app *app)
{
    struct messages_conf mc;
    messages_conf_load(app->conf, &mc, true);
    pthread_mutex_lock(&M.mu);
    M.conf = mc;
    M.app = app;
    M.pol = app->payment_policy;
    M.pol.deadline_ms = mc.deadline_ms;
    if (M.inflight == NULL) {
        M.inflight = json_object();
    }
    M.started = true;
    pthread_mutex_unlock(&M.mu);
    int rc = worker_register_kind("message", message_kind, NULL);
    if (rc != AGAPE_OK) {
        log_error("messages: the worker kind could not be registered (rc %d)", rc);
        return rc;
    }
    worker_set_message_status_hook(status_hook);
    log_info("messages: max %d attempts, backoff %lld..%lld ms, templates in %s",
             mc.max_attempts, (long long)mc.backoff_ms, (long long)mc.backoff_max_ms,
             mc.templates_dir);
    return AGAPE_OK;
}

static void wait_idle(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&M.mu);
    while (M.n_inflight > 0) {
        if (pthread_cond_timedwait(&M.cv, &M.mu, &ts) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&M.mu);
}

void messages_drain(int64_t grace_ms)
{
    if (!M.started) {
        return;
    }
    wait_idle(grace_ms);
}

void messages_stop(void)
{
    if (!M.started) {
        return;
    }
    wait_idle(MSG_STOP_WAIT_MS);
    pthread_mutex_lock(&M.mu);
    if (M.n_inflight > 0) {
        log_warn("messages: %d outcome(s) not recorded at stop; they are sent again after "
                 "the restart", M.n_inflight);
    } else {
        json_decref(M.inflight);
        M.inflight = NULL;
    }
    M.started = false;
    M.app = NULL;
    pthread_mutex_unlock(&M.mu);
    worker_set_message_status_hook(NULL);
}
