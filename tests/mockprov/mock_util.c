/* mockprov helpers: clocks, interruptible sleep, JSON answers, forms, base64. */
#include "mock.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t sleep_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cv;
static pthread_once_t sleep_once = PTHREAD_ONCE_INIT;
static bool quitting;

static void sleep_init(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sleep_cv, &ca);
    pthread_condattr_destroy(&ca);
}

int64_t mock_now_s(void)
{
    return (int64_t)time(NULL);
}

int64_t mock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mock_sleep_ms(long ms)
{
    if (ms <= 0) {
        return;
    }
    pthread_once(&sleep_once, sleep_init);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&sleep_mu);
    while (!quitting) {
        if (pthread_cond_timedwait(&sleep_cv, &sleep_mu, &until) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&sleep_mu);
}

void mock_quit(void)
{
    pthread_once(&sleep_once, sleep_init);
    pthread_mutex_lock(&sleep_mu);
    quitting = true;
    pthread_cond_broadcast(&sleep_cv);
    pthread_mutex_unlock(&sleep_mu);
}

void mock_json(struct mock_resp *rs, int status, json_t *body)
{
    free(rs->body);
    rs->status = status;
    rs->content_type[0] = '\0';
    rs->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (rs->body == NULL) {
        rs->status = 500;
        rs->body = strdup("{\"error\":{\"message\":\"mockprov: cannot encode the answer\"}}");
    }
    json_decref(body);
}

void mock_header(struct mock_resp *rs, const char *name, const char *value)
{
    if (rs->headers == NULL) {
        rs->headers = json_object();
    }
    json_object_set_new(rs->headers, name, json_string(value));
}

const char *mock_req_header(const struct mock_req *rq, const char *lowercase_name)
{
    return json_string_value(json_object_get(rq->headers, lowercase_name));
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower(c);
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* Percent-decoding with '+' as space, into a new NUL-terminated string. */
static char *form_decode(const char *s, size_t len, size_t *out_len)
{
    char *out = malloc(len + 1);
    size_t n = 0;
    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[n++] = ' ';
        } else if (s[i] == '%' && i + 2 < len && hexval((unsigned char)s[i + 1]) >= 0 &&
                   hexval((unsigned char)s[i + 2]) >= 0) {
            out[n++] = (char)(hexval((unsigned char)s[i + 1]) * 16 +
                              hexval((unsigned char)s[i + 2]));
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    out[n] = '\0';
    *out_len = n;
    return out;
}

json_t *mock_form_parse(const char *s, size_t len)
{
    json_t *form = json_object();
    size_t i = 0;
    while (form != NULL && i < len) {
        const char *pair = s + i;
        const char *amp = memchr(pair, '&', len - i);
        size_t plen = amp ? (size_t)(amp - pair) : len - i;
        i += plen + 1;
        if (plen == 0) {
            continue;
        }
        const char *eq = memchr(pair, '=', plen);
        size_t klen = eq ? (size_t)(eq - pair) : plen;
        size_t kn = 0;
        size_t vn = 0;
        char *k = form_decode(pair, klen, &kn);
        char *v = eq ? form_decode(eq + 1, plen - klen - 1, &vn) : strdup("");
        if (k != NULL && v != NULL && kn == strlen(k)) {
            json_t *js = json_stringn(v, vn); /* NULL when not UTF-8: dropped */
            if (js != NULL) {
                json_object_set_new(form, k, js);
            }
        }
        free(k);
        free(v);
    }
    return form;
}

const char *mock_form_get(json_t *form, const char *key)
{
    return json_string_value(json_object_get(form, key));
}

json_t *mock_form_sub(json_t *form, const char *prefix)
{
    json_t *sub = json_object();
    size_t plen = strlen(prefix);
    const char *key;
    json_t *v;
    json_object_foreach(form, key, v) {
        size_t klen = strlen(key);
        if (klen > plen + 2 && strncmp(key, prefix, plen) == 0 && key[plen] == '[' &&
            key[klen - 1] == ']') {
            char inner[256];
            size_t ilen = klen - plen - 2;
            if (ilen >= sizeof(inner) || memchr(key + plen + 1, '[', ilen) != NULL) {
                continue;
            }
            memcpy(inner, key + plen + 1, ilen);
            inner[ilen] = '\0';
            json_object_set(sub, inner, v);
        }
    }
    return sub;
}

bool mock_parse_int(const char *s, long long *out)
{
    if (s == NULL || *s == '\0') {
        return false;
    }
    for (const char *p = (*s == '-') ? s + 1 : s; *p; p++) {
        if (!isdigit((unsigned char)*p)) {
            return false;
        }
    }
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *mock_b64_encode(const unsigned char *p, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    size_t n = 0;
    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= p[i + 2];
        }
        out[n++] = b64[(v >> 18) & 63];
        out[n++] = b64[(v >> 12) & 63];
        out[n++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        out[n++] = i + 2 < len ? b64[v & 63] : '=';
    }
    out[n] = '\0';
    return out;
}

char *mock_b64_decode(const char *s, size_t *len)
{
    size_t slen = strlen(s);
    char *out = malloc(slen / 4 * 3 + 4);
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < slen; i++) {
        if (s[i] == '=') {
            break;
        }
        const char *pos = strchr(b64, s[i]);
        if (pos == NULL || s[i] == '\0') {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)(pos - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[n] = '\0';
    *len = n;
    return out;
}
