/* host — the table of functions lent to plugins, and the core side of a call.
 *
 * Everything here runs on whatever thread drives a call, concurrently with
 * other calls of the same provider: functions touch only the call they are
 * given, except the provider cache, which has its own lock. Nothing a plugin
 * passes in is trusted: NULL pointers, wrong JSON types and header injection
 * are refused with a return code rather than a crash. */
#include "host.h"

#include "buf.h"
#include "client.h"
#include "crypto.h"
#include "jsonr.h"
#include "log.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <strings.h>
#include <time.h>

#define HOST_REQ_BODY_MAX ((size_t)8 << 20) /* a request body a plugin may build */
#define HOST_CACHE_MAX_ENTRIES 1024         /* per provider */
#define HOST_CACHE_VALUE_MAX ((size_t)1 << 20)
#define HOST_CACHE_TTL_MAX ((int64_t)30 * 24 * 3600 * 1000)

/* The public call is the first member of struct host_call. */
static struct host_call *hcall(struct agape_call *call)
{
    return (struct host_call *)call;
}

static const struct host_call *hcall_c(const struct agape_call *call)
{
    return (const struct host_call *)call;
}

/* ---------------------------------------------------------------- */
/* Logging and clocks                                               */

static void host_log(const char *provider, enum agape_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void host_log(const char *provider, enum agape_log_level level, const char *fmt, ...)
{
    /* The level comes from a plugin: never index the logger's table with junk. */
    if ((int)level < (int)AGAPE_LOG_DEBUG || (int)level > (int)AGAPE_LOG_ERROR) {
        level = AGAPE_LOG_ERROR;
    }
    if (fmt == NULL) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, provider, fmt, ap);
    va_end(ap);
}

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t host_now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

static int64_t host_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

/* ---------------------------------------------------------------- */
/* JSON reading                                                     */

static enum agape_json_type host_json_type(const struct agape_json *v)
{
    switch (v ? json_typeof(HOST_J(v)) : (json_type)-1) {
    case JSON_OBJECT:
        return AGAPE_JSON_OBJECT;
    case JSON_ARRAY:
        return AGAPE_JSON_ARRAY;
    case JSON_STRING:
        return AGAPE_JSON_STRING;
    case JSON_INTEGER:
        return AGAPE_JSON_INT;
    case JSON_REAL:
        return AGAPE_JSON_REAL;
    case JSON_TRUE:
    case JSON_FALSE:
        return AGAPE_JSON_BOOL;
    case JSON_NULL:
        return AGAPE_JSON_NULL;
    }
    return AGAPE_JSON_ABSENT;
}

/* An array index segment: decimal digits only, no sign, bounded. */
static bool parse_index(const char *s, size_t len, size_t *out)
{
    if (len == 0 || len > 9) {
        return false;
    }
    size_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (size_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Walk a dotted path: object members by name, array elements by a numeric
 * segment. A NULL or empty path is the value itself. */
static const json_t *path_get(const json_t *v, const char *path)
{
    if (path == NULL || *path == '\0') {
        return v;
    }
    const char *p = path;
    while (v != NULL) {
        const char *dot = strchr(p, '.');
        size_t seg = dot ? (size_t)(dot - p) : strlen(p);
        if (json_is_object(v)) {
            v = json_object_getn(v, p, seg);
        } else if (json_is_array(v)) {
            size_t i;
            v = parse_index(p, seg, &i) ? json_array_get(v, i) : NULL;
        } else {
            v = NULL;
        }
        if (dot == NULL) {
            break;
        }
        p = dot + 1;
    }
    return v;
}

static const struct agape_json *host_json_get(const struct agape_json *obj, const char *path)
{
    if (obj == NULL) {
        return NULL;
    }
    return (const struct agape_json *)path_get(HOST_J(obj), path);
}

static const char *host_json_str(const struct agape_json *obj, const char *path)
{
    const json_t *v = obj ? path_get(HOST_J(obj), path) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int64_t host_json_int(const struct agape_json *obj, const char *path, int64_t dflt)
{
    const json_t *v = obj ? path_get(HOST_J(obj), path) : NULL;
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static bool host_json_bool(const struct agape_json *obj, const char *path, bool dflt)
{
    const json_t *v = obj ? path_get(HOST_J(obj), path) : NULL;
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static size_t host_json_size(const struct agape_json *v)
{
    if (json_is_array(HOST_J(v))) {
        return json_array_size(HOST_J(v));
    }
    if (json_is_object(HOST_J(v))) {
        return json_object_size(HOST_J(v));
    }
    return 0;
}

static const struct agape_json *host_json_at(const struct agape_json *arr, size_t i)
{
    if (!json_is_array(HOST_J(arr))) {
        return NULL;
    }
    return (const struct agape_json *)json_array_get(HOST_J(arr), i);
}

/* jansson iterates objects in insertion order (since 2.8). Linear per call:
 * plugin objects are small. */
static const char *host_json_key_at(const struct agape_json *obj, size_t i,
                                    const struct agape_json **value)
{
    if (value) {
        *value = NULL;
    }
    if (!json_is_object(HOST_J(obj))) {
        return NULL;
    }
    json_t *o = HOST_J(obj);
    void *it = json_object_iter(o);
    for (size_t k = 0; it != NULL && k < i; k++) {
        it = json_object_iter_next(o, it);
    }
    if (it == NULL) {
        return NULL;
    }
    if (value) {
        *value = (const struct agape_json *)json_object_iter_value(it);
    }
    return json_object_iter_key(it);
}

static struct agape_json *host_json_parse(const char *buf, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    if (buf == NULL) {
        if (err && errlen) {
            snprintf(err, errlen, "no JSON text");
        }
        return NULL;
    }
    json_t *v = jsonr_loadb(buf, len, JSON_DECODE_ANY, &je);
    if (v == NULL && err && errlen) {
        snprintf(err, errlen, "invalid JSON at line %d column %d: %s", je.line, je.column,
                 je.text);
    }
    return HOST_AJ(v);
}

static void host_json_free(struct agape_json *v)
{
    json_decref(HOST_J(v));
}

static int host_json_dump(const struct agape_json *v, struct agape_buf *out)
{
    if (v == NULL || out == NULL) {
        return AGAPE_EINVAL;
    }
    char *s = json_dumps(HOST_J(v), JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (s == NULL) {
        return AGAPE_ENOMEM;
    }
    int rc = buf_adds(out, s);
    free(s);
    return rc;
}

/* ---------------------------------------------------------------- */
/* JSON building                                                    */

/* Takes the reference to `val` in every case. */
static int set_new(struct agape_json *obj, const char *key, json_t *val)
{
    if (!json_is_object(HOST_J(obj)) || key == NULL || val == NULL) {
        json_decref(val);
        return AGAPE_EINVAL;
    }
    return json_object_set_new(HOST_J(obj), key, val) == 0 ? AGAPE_OK : AGAPE_EINVAL;
}

/* A NULL string becomes JSON null; invalid UTF-8 is refused (json_string
 * returns NULL for it). */
static int host_json_set_str(struct agape_json *obj, const char *key, const char *val)
{
    return set_new(obj, key, val ? json_string(val) : json_null());
}

static int host_json_set_strn(struct agape_json *obj, const char *key, const char *val,
                              size_t len)
{
    return set_new(obj, key, val ? json_stringn(val, len) : json_null());
}

static int host_json_set_int(struct agape_json *obj, const char *key, int64_t val)
{
    return set_new(obj, key, json_integer((json_int_t)val));
}

static int host_json_set_bool(struct agape_json *obj, const char *key, bool val)
{
    return set_new(obj, key, json_boolean(val));
}

static int host_json_set_null(struct agape_json *obj, const char *key)
{
    return set_new(obj, key, json_null());
}

static int host_json_set_copy(struct agape_json *obj, const char *key,
                              const struct agape_json *val)
{
    return set_new(obj, key, val ? json_deep_copy(HOST_J(val)) : json_null());
}

static struct agape_json *add_container(struct agape_json *obj, const char *key, json_t *child)
{
    json_t *parent = HOST_J(obj);
    int rc = -1;
    if (child == NULL) {
        return NULL;
    }
    if (json_is_array(parent) && key == NULL) {
        rc = json_array_append_new(parent, child);
    } else if (json_is_object(parent) && key != NULL) {
        rc = json_object_set_new(parent, key, child);
    } else {
        json_decref(child);
    }
    /* On success the parent holds the only reference: borrowed from it. */
    return rc == 0 ? HOST_AJ(child) : NULL;
}

static struct agape_json *host_json_add_object(struct agape_json *obj, const char *key)
{
    return add_container(obj, key, json_object());
}

static struct agape_json *host_json_add_array(struct agape_json *obj, const char *key)
{
    return add_container(obj, key, json_array());
}

static int append_new(struct agape_json *arr, json_t *val)
{
    if (!json_is_array(HOST_J(arr)) || val == NULL) {
        json_decref(val);
        return AGAPE_EINVAL;
    }
    return json_array_append_new(HOST_J(arr), val) == 0 ? AGAPE_OK : AGAPE_ENOMEM;
}

static int host_json_append_str(struct agape_json *arr, const char *val)
{
    return append_new(arr, val ? json_string(val) : json_null());
}

static int host_json_append_int(struct agape_json *arr, int64_t val)
{
    return append_new(arr, json_integer((json_int_t)val));
}

static struct agape_json *host_json_new_object(void)
{
    return HOST_AJ(json_object());
}

/* ---------------------------------------------------------------- */
/* Buffers and encoders                                             */

static const char *host_buf_data(const struct agape_buf *b)
{
    return b ? buf_cstr(b) : "";
}

static size_t host_buf_len(const struct agape_buf *b)
{
    return b ? b->len : 0;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* Percent-encode everything but the RFC 3986 unreserved set (and brackets
 * when asked: Stripe's nested keys). Runs of literal bytes go in one append. */
static int pct_encode(struct agape_buf *out, const char *s, size_t len, bool brackets)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (brackets && (c == '[' || c == ']'))) {
            continue;
        }
        if (i > run) {
            buf_add(out, s + run, i - run);
        }
        char esc[3] = {'%', hexd[c >> 4], hexd[c & 15]};
        buf_add(out, esc, 3);
        run = i + 1;
    }
    if (len > run) {
        buf_add(out, s + run, len - run);
    }
    return out->error;
}

static int host_form_add(struct agape_buf *out, const char *key, const char *val)
{
    if (out == NULL || key == NULL) {
        return AGAPE_EINVAL;
    }
    if (val == NULL) {
        return out->error; /* NULL means "leave the field out" (Stripe's rule) */
    }
    if (out->len > 0) {
        buf_add(out, "&", 1);
    }
    pct_encode(out, key, strlen(key), true);
    buf_add(out, "=", 1);
    return pct_encode(out, val, strlen(val), false);
}

static int host_url_escape(struct agape_buf *out, const char *s, size_t len)
{
    if (out == NULL || (s == NULL && len > 0)) {
        return AGAPE_EINVAL;
    }
    return pct_encode(out, s ? s : "", len, false);
}

static int host_base64(struct agape_buf *out, const void *data, size_t len)
{
    if (out == NULL || (data == NULL && len > 0)) {
        return AGAPE_EINVAL;
    }
    return crypto_base64(out, data, len);
}

static int host_base64url(struct agape_buf *out, const void *data, size_t len)
{
    if (out == NULL || (data == NULL && len > 0)) {
        return AGAPE_EINVAL;
    }
    return crypto_base64url(out, data, len);
}

static int host_hex(struct agape_buf *out, const void *data, size_t len)
{
    if (out == NULL || (data == NULL && len > 0)) {
        return AGAPE_EINVAL;
    }
    const unsigned char *p = data;
    char chunk[2 * 64 + 1];
    while (len > 0) {
        size_t n = len > 64 ? 64 : len;
        crypto_hex(p, n, chunk);
        buf_add(out, chunk, 2 * n);
        p += n;
        len -= n;
    }
    return out->error;
}

static int host_sha256(const void *msg, size_t mlen, unsigned char out[32])
{
    if (msg == NULL && mlen > 0) {
        return AGAPE_EINVAL;
    }
    crypto_sha256(msg, mlen, out);
    return AGAPE_OK;
}

/* ---------------------------------------------------------------- */
/* The request of the next step                                     */

static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Free what the request part of a transfer owns. The answer part is left
 * alone: the step being run may still be reading it. Header values and the
 * credentials may hold secrets, so they are wiped first. */
static void request_clear(struct client_xfer *x)
{
    free(x->url);
    x->url = NULL;
    for (int i = 0; i < x->n_req_headers; i++) {
        free(x->req_headers[i].name);
        free_secret(x->req_headers[i].value);
        x->req_headers[i].name = NULL;
        x->req_headers[i].value = NULL;
    }
    x->n_req_headers = 0;
    free(x->body);
    x->body = NULL;
    x->body_len = 0;
    free_secret(x->userpwd);
    x->userpwd = NULL;
    free(x->mail_from);
    x->mail_from = NULL;
    for (int i = 0; i < x->n_mail_rcpt; i++) {
        free(x->mail_rcpt[i]);
        x->mail_rcpt[i] = NULL;
    }
    x->n_mail_rcpt = 0;
    x->mail_require_tls = false;
    x->method[0] = '\0';
}

static bool has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static bool header_name_ok(const char *name)
{
    if (name == NULL || *name == '\0') {
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p <= ' ' || *p >= 0x7f || *p == ':') {
            return false; /* covers CR, LF, spaces and the separator */
        }
    }
    return true;
}

static int host_req_start(struct agape_call *call, const char *method, const char *url)
{
    if (call == NULL || hcall(call)->xfer == NULL || method == NULL || url == NULL) {
        return AGAPE_EINVAL;
    }
    struct host_call *hc = hcall(call);
    size_t mlen = strlen(method);
    if (mlen == 0 || mlen >= sizeof(hc->xfer->method) || has_crlf(method) || has_crlf(url) ||
        *url == '\0') {
        return AGAPE_EINVAL;
    }
    char *u = strdup(url);
    if (u == NULL) {
        return AGAPE_ENOMEM;
    }
    request_clear(hc->xfer);
    memcpy(hc->xfer->method, method, mlen + 1);
    hc->xfer->url = u;
    hc->request_built = true;
    return AGAPE_OK;
}

static int add_header(struct client_xfer *x, const char *name, const char *value)
{
    if (x->n_req_headers >= CLIENT_MAX_HEADERS) {
        return AGAPE_ERANGE;
    }
    char *n = strdup(name);
    char *v = strdup(value);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return AGAPE_ENOMEM;
    }
    x->req_headers[x->n_req_headers].name = n;
    x->req_headers[x->n_req_headers].value = v;
    x->n_req_headers++;
    return AGAPE_OK;
}

static int host_req_header(struct agape_call *call, const char *name, const char *value)
{
    if (call == NULL || !hcall(call)->request_built || !header_name_ok(name) ||
        value == NULL || has_crlf(value)) {
        return AGAPE_EINVAL;
    }
    return add_header(hcall(call)->xfer, name, value);
}

static int host_req_body(struct agape_call *call, const char *content_type, const void *data,
                         size_t len)
{
    if (call == NULL || !hcall(call)->request_built || (data == NULL && len > 0) ||
        (content_type != NULL && (has_crlf(content_type) || *content_type == '\0'))) {
        return AGAPE_EINVAL;
    }
    if (len > HOST_REQ_BODY_MAX) {
        return AGAPE_ERANGE;
    }
    struct client_xfer *x = hcall(call)->xfer;
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return AGAPE_ENOMEM;
    }
    if (len) {
        memcpy(copy, data, len);
    }
    copy[len] = '\0';
    if (content_type != NULL) {
        /* A second body replaces the first, Content-Type included. */
        for (int i = 0; i < x->n_req_headers; i++) {
            if (strcasecmp(x->req_headers[i].name, "Content-Type") == 0) {
                char *v = strdup(content_type);
                if (v == NULL) {
                    free(copy);
                    return AGAPE_ENOMEM;
                }
                free(x->req_headers[i].value);
                x->req_headers[i].value = v;
                content_type = NULL;
                break;
            }
        }
        if (content_type != NULL) {
            int rc = add_header(x, "Content-Type", content_type);
            if (rc != AGAPE_OK) {
                free(copy);
                return rc;
            }
        }
    }
    free(x->body);
    x->body = copy;
    x->body_len = len;
    return AGAPE_OK;
}

static int host_req_basic_auth(struct agape_call *call, const char *user, const char *password)
{
    if (call == NULL || !hcall(call)->request_built || user == NULL || strchr(user, ':')) {
        return AGAPE_EINVAL;
    }
    if (password == NULL) {
        password = "";
    }
    size_t n = strlen(user) + 1 + strlen(password) + 1;
    char *up = malloc(n);
    if (up == NULL) {
        return AGAPE_ENOMEM;
    }
    int w = snprintf(up, n, "%s:%s", user, password);
    if (w < 0 || (size_t)w >= n) {
        free_secret(up);
        return AGAPE_ERROR;
    }
    struct client_xfer *x = hcall(call)->xfer;
    free_secret(x->userpwd);
    x->userpwd = up;
    return AGAPE_OK;
}

static const char *host_resp_header(const struct agape_call *call, const char *name)
{
    if (call == NULL || name == NULL || call->resp == NULL || hcall_c(call)->xfer == NULL) {
        return NULL;
    }
    return client_xfer_resp_header(hcall_c(call)->xfer, name);
}

static const char *host_webhook_header(const struct agape_call *call, const char *name)
{
    if (call == NULL || name == NULL) {
        return NULL;
    }
    const struct host_call *hc = hcall_c(call);
    for (int i = 0; hc->wh_headers != NULL && i < hc->n_wh_headers; i++) {
        if (hc->wh_headers[i].name && strcasecmp(hc->wh_headers[i].name, name) == 0) {
            return hc->wh_headers[i].value;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- */
/* Provider cache                                                   */

static bool expired(json_t *entry, int64_t now)
{
    json_t *exp = json_object_get(entry, "exp");
    return !json_is_integer(exp) || json_integer_value(exp) <= now;
}

static const char *host_cache_get(struct agape_call *call, const char *key)
{
    if (call == NULL || key == NULL || hcall(call)->prov == NULL) {
        return NULL;
    }
    struct host_call *hc = hcall(call);
    struct provider *p = hc->prov;
    const char *ret = NULL;
    int64_t now = host_mono_ms();

    if (hc->cache_view == NULL) {
        hc->cache_view = json_array();
        if (hc->cache_view == NULL) {
            return NULL;
        }
    }
    pthread_mutex_lock(&p->cache_lock);
    json_t *entry = p->cache ? json_object_get(p->cache, key) : NULL;
    if (entry != NULL && expired(entry, now)) {
        json_object_del(p->cache, key);
        entry = NULL;
    }
    if (entry != NULL) {
        /* Copy out under the lock: another thread may replace the entry the
         * moment we let go, and the plugin holds our pointer until it returns. */
        json_t *copy = json_deep_copy(json_object_get(entry, "v"));
        if (json_is_string(copy) && json_array_append_new(hc->cache_view, copy) == 0) {
            ret = json_string_value(copy);
        } else {
            json_decref(copy);
        }
    }
    pthread_mutex_unlock(&p->cache_lock);
    return ret;
}

static void purge_expired(json_t *cache, int64_t now)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(cache, tmp, k, v)
    {
        if (expired(v, now)) {
            json_object_del(cache, k);
        }
    }
}

static int host_cache_put(struct agape_call *call, const char *key, const char *value,
                          int64_t ttl_ms)
{
    if (call == NULL || key == NULL || hcall(call)->prov == NULL) {
        return AGAPE_EINVAL;
    }
    struct provider *p = hcall(call)->prov;
    int rc = AGAPE_OK;
    json_t *entry = NULL;
    int64_t now = host_mono_ms();

    if (value != NULL && ttl_ms > 0) {
        if (strlen(value) > HOST_CACHE_VALUE_MAX) {
            return AGAPE_ERANGE;
        }
        if (ttl_ms > HOST_CACHE_TTL_MAX) {
            ttl_ms = HOST_CACHE_TTL_MAX;
        }
        entry = json_pack("{s:s, s:I}", "v", value, "exp", (json_int_t)(now + ttl_ms));
        if (entry == NULL) {
            return AGAPE_EINVAL; /* not UTF-8, or no memory */
        }
    }
    pthread_mutex_lock(&p->cache_lock);
    if (p->cache == NULL) {
        p->cache = json_object();
        if (p->cache == NULL) {
            rc = AGAPE_ENOMEM;
            goto out;
        }
    }
    if (entry == NULL) {
        json_object_del(p->cache, key); /* ttl <= 0: remove; absent is fine */
        goto out;
    }
    if (json_object_get(p->cache, key) == NULL &&
        json_object_size(p->cache) >= HOST_CACHE_MAX_ENTRIES) {
        purge_expired(p->cache, now);
        if (json_object_size(p->cache) >= HOST_CACHE_MAX_ENTRIES) {
            rc = AGAPE_ERANGE;
            goto out;
        }
    }
    rc = json_object_set_new(p->cache, key, entry) == 0 ? AGAPE_OK : AGAPE_EINVAL;
    entry = NULL;
out:
    pthread_mutex_unlock(&p->cache_lock);
    json_decref(entry);
    return rc;
}

/* An address for the SMTP envelope: printable, no spaces or angle brackets
 * (libcurl adds the brackets), at most 320 bytes. */
static bool mail_addr_ok(const char *a)
{
    size_t n = a ? strlen(a) : 0;
    if (n == 0 || n > 320) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>') {
            return false;
        }
    }
    return true;
}

static int host_req_mail(struct agape_call *call, const char *from, const char *const *rcpts,
                         size_t n_rcpts, bool require_tls)
{
    if (call == NULL || hcall(call)->xfer == NULL || !hcall(call)->request_built) {
        return AGAPE_EINVAL;
    }
    struct client_xfer *x = hcall(call)->xfer;
    if (!mail_addr_ok(from) || n_rcpts == 0 || n_rcpts > CLIENT_MAX_RCPT) {
        return AGAPE_EINVAL;
    }
    for (size_t i = 0; i < n_rcpts; i++) {
        if (!mail_addr_ok(rcpts[i])) {
            return AGAPE_EINVAL;
        }
    }
    free(x->mail_from);
    x->mail_from = strdup(from);
    for (int i = 0; i < x->n_mail_rcpt; i++) {
        free(x->mail_rcpt[i]);
    }
    x->n_mail_rcpt = 0;
    if (x->mail_from == NULL) {
        return AGAPE_ENOMEM;
    }
    for (size_t i = 0; i < n_rcpts; i++) {
        x->mail_rcpt[i] = strdup(rcpts[i]);
        if (x->mail_rcpt[i] == NULL) {
            return AGAPE_ENOMEM;
        }
        x->n_mail_rcpt++;
    }
    x->mail_require_tls = require_tls;
    return AGAPE_OK;
}

static int host_gzip(struct agape_buf *out, const void *data, size_t len)
{
    if (out == NULL || (data == NULL && len > 0)) {
        return AGAPE_EINVAL;
    }
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    /* windowBits 15 + 16: a gzip header and trailer rather than zlib's */
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        return AGAPE_ENOMEM;
    }
    uLong bound = deflateBound(&zs, (uLong)len);
    size_t start = out->len;
    int rc = buf_add(out, NULL, 0);
    if (rc == AGAPE_OK && bound > out->max - out->len) {
        rc = AGAPE_ERANGE;
    }
    if (rc == AGAPE_OK) {
        /* grow once to the bound, then deflate straight into the buffer */
        char *tmp = malloc(bound);
        if (tmp == NULL) {
            rc = AGAPE_ENOMEM;
        } else {
            zs.next_in = (Bytef *)(uintptr_t)data;
            zs.avail_in = (uInt)len;
            zs.next_out = (Bytef *)tmp;
            zs.avail_out = (uInt)bound;
            if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
                rc = AGAPE_ERROR;
            } else {
                rc = buf_add(out, tmp, bound - zs.avail_out);
            }
            free(tmp);
        }
    }
    deflateEnd(&zs);
    if (rc != AGAPE_OK && out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

/* ---------------------------------------------------------------- */
/* The table                                                        */

static const struct agape_host table = {
    .size = sizeof(struct agape_host),
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .log = host_log,
    .now_ms = host_now_ms,
    .mono_ms = host_mono_ms,
    .json_type = host_json_type,
    .json_get = host_json_get,
    .json_str = host_json_str,
    .json_int = host_json_int,
    .json_bool = host_json_bool,
    .json_size = host_json_size,
    .json_at = host_json_at,
    .json_key_at = host_json_key_at,
    .json_parse = host_json_parse,
    .json_free = host_json_free,
    .json_dump = host_json_dump,
    .json_set_str = host_json_set_str,
    .json_set_strn = host_json_set_strn,
    .json_set_int = host_json_set_int,
    .json_set_bool = host_json_set_bool,
    .json_set_null = host_json_set_null,
    .json_set_copy = host_json_set_copy,
    .json_add_object = host_json_add_object,
    .json_add_array = host_json_add_array,
    .json_append_str = host_json_append_str,
    .json_append_int = host_json_append_int,
    .json_new_object = host_json_new_object,
    .buf_new = buf_new,
    .buf_free = buf_free,
    .buf_add = buf_add,
    .buf_printf = buf_printf,
    .buf_data = host_buf_data,
    .buf_len = host_buf_len,
    .form_add = host_form_add,
    .url_escape = host_url_escape,
    .base64 = host_base64,
    .base64url = host_base64url,
    .hex = host_hex,
    .base64_decode = crypto_base64_decode,
    .base64url_decode = crypto_base64url_decode,
    .hmac_sha256 = crypto_hmac_sha256,
    .hmac_sha1 = crypto_hmac_sha1,
    .sha256 = host_sha256,
    .ct_equal = crypto_ct_equal,
    .random_bytes = crypto_random,
    .verify_rsa_sha256_pem = crypto_verify_rsa_sha256_pem,
    .verify_ecdsa_sha256_der = crypto_verify_ecdsa_sha256_der,
    .verify_rsa_sha256_jwk = crypto_verify_rsa_sha256_jwk,
    .crc32 = crypto_crc32,
    .req_start = host_req_start,
    .req_header = host_req_header,
    .req_body = host_req_body,
    .req_basic_auth = host_req_basic_auth,
    .resp_header = host_resp_header,
    .webhook_header = host_webhook_header,
    .cache_get = host_cache_get,
    .cache_put = host_cache_put,
    .req_mail = host_req_mail,
    .gzip = host_gzip,
    .x509_check = crypto_x509_check,
};

const struct agape_host *host_table(void)
{
    return &table;
}

/* ---------------------------------------------------------------- */
/* The core side of a call                                          */

void host_call_init(struct host_call *hc, struct provider *p, const char *op, json_t *input,
                    struct client_xfer *xfer)
{
    memset(hc, 0, sizeof(*hc));
    hc->prov = p;
    hc->op = op;
    hc->xfer = xfer;
    hc->input = input ? json_incref(input) : json_object();
    hc->state = json_object();
    hc->result = json_object();

    hc->pub.size = sizeof(struct agape_call);
    hc->pub.host = host_table();
    hc->pub.ctx = p ? p->ctx : NULL;
    hc->pub.provider = p ? p->name : NULL;
    hc->pub.step = 0;
    hc->pub.input = HOST_AJ(hc->input);
    hc->pub.resp = NULL;
    hc->pub.webhook = NULL;
    hc->pub.state = HOST_AJ(hc->state);
    hc->pub.result = HOST_AJ(hc->result);
    hc->pub.outcome = AGAPE_OUTCOME_OK;
    hc->pub.retry_after_ms = -1;
    hc->pub.delay_ms = 0;
    hc->pub.err[0] = '\0';
}

void host_call_fini(struct host_call *hc)
{
    if (hc == NULL) {
        return;
    }
    json_decref(hc->input);
    json_decref(hc->state);
    json_decref(hc->result);
    json_decref(hc->cache_view);
    hc->input = hc->state = hc->result = hc->cache_view = NULL;
    hc->pub.input = NULL;
    hc->pub.state = hc->pub.result = NULL;
    hc->pub.resp = NULL;
}

static enum agape_step step_fail(struct host_call *hc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum agape_step step_fail(struct host_call *hc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hc->pub.err, sizeof(hc->pub.err), fmt, ap);
    va_end(ap);
    return AGAPE_STEP_FAIL;
}

/* The plugin's reason travels to logs, stored records and API answers
 * (attempts[].error): every configured secret is taken out of it here, once,
 * whatever the plugin did. */
static void redact_err(char *err, size_t cap)
{
    if (err[0] == '\0') {
        return;
    }
    struct agape_buf b;
    buf_init(&b, 4 * cap);
    buf_adds(&b, err);
    log_redact(&b);
    if (b.error == AGAPE_OK) {
        snprintf(err, cap, "%s", buf_cstr(&b));
    }
    buf_fini(&b);
}

enum agape_step host_call_step(struct host_call *hc, agape_step_fn fn)
{
    const char *who = hc->prov && hc->prov->plugin && hc->prov->plugin->name
                          ? hc->prov->plugin->name
                          : "?";
    const char *op = hc->op ? hc->op : "operation";
    enum agape_step r;

    hc->request_built = false;
    if (hc->xfer) {
        request_clear(hc->xfer);
    }
    if (hc->cache_view) {
        json_array_clear(hc->cache_view); /* the previous step has returned */
    }
    hc->pub.err[0] = '\0';

    if (fn == NULL) {
        r = step_fail(hc, "plugin %s does not implement %s", who, op);
    } else {
        r = fn(&hc->pub);
        hc->pub.err[sizeof(hc->pub.err) - 1] = '\0';
        redact_err(hc->pub.err, sizeof(hc->pub.err));
    }

    /* The plugin writes into state and result; it must not swap them out. */
    if (hc->pub.state != HOST_AJ(hc->state) || hc->pub.result != HOST_AJ(hc->result) ||
        hc->pub.input != HOST_AJ(hc->input)) {
        hc->pub.state = HOST_AJ(hc->state);
        hc->pub.result = HOST_AJ(hc->result);
        hc->pub.input = HOST_AJ(hc->input);
        r = step_fail(hc, "plugin %s replaced a call object in %s", who, op);
    }

    switch (r) {
    case AGAPE_STEP_SEND:
        if (!hc->request_built) {
            r = step_fail(hc, "plugin returned SEND without a request");
        }
        break;
    case AGAPE_STEP_DONE:
        if ((int)hc->pub.outcome < 0 || (int)hc->pub.outcome >= (int)AGAPE_OUTCOME_COUNT) {
            r = step_fail(hc, "plugin %s returned unknown outcome %d in %s", who,
                          (int)hc->pub.outcome, op);
        }
        break;
    case AGAPE_STEP_FAIL:
        break;
    default:
        r = step_fail(hc, "plugin %s returned unknown step value %d in %s", who, (int)r, op);
        break;
    }
    if (r == AGAPE_STEP_FAIL) {
        hc->pub.outcome = AGAPE_OUTCOME_INVALID;
        if (hc->pub.err[0] == '\0') {
            snprintf(hc->pub.err, sizeof(hc->pub.err), "plugin %s failed in %s (no reason given)",
                     who, op);
        }
    }
    return r;
}

void host_call_answer(struct host_call *hc)
{
    if (hc->xfer == NULL) {
        return;
    }
    hc->resp.status = hc->xfer->status;
    hc->resp.body = buf_cstr(&hc->xfer->resp_body);
    hc->resp.body_len = hc->xfer->resp_body.len;
    hc->pub.resp = &hc->resp;
    hc->pub.step++;
}
