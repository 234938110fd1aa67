/* jsonr — see jsonr.h. A recursive descent over the buffer; every function
 * returns NULL (or false) both for "not plain" and for "not JSON", and the
 * caller then hands the whole text to json_loadb: this reader never has to
 * get an error message right, only never to accept what jansson refuses and
 * never to build something else than jansson would. */
#include "jsonr.h"

#include "jsonw.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JSONR_MAX_DEPTH 64
#define JSONR_MAX_DIGITS 18 /* always fits an int64 */

struct rd {
    const char *p;
    const char *end;
    size_t flags;
};

static json_t *value(struct rd *r, int depth);

static void skip_ws(struct rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) {
        r->p++;
    }
}

/* The string whose opening quote r->p is at. (s, len) is the text: either a
 * view into the buffer (no escapes) or the decoded bytes in *owned (free it).
 * False when it is not plain. */
static bool string(struct rd *r, const char **s, size_t *len, char **owned)
{
    const unsigned char *p = (const unsigned char *)r->p + 1;
    const unsigned char *end = (const unsigned char *)r->end;
    const unsigned char *start = p;
    bool escapes = false;

    *owned = NULL;
    for (;;) {
        if (p >= end) {
            return false;
        }
        unsigned char c = *p;
        if (c == '"') {
            break;
        }
        if (c == '\\') {
            if (p + 1 >= end) {
                return false;
            }
            escapes = true;
            p += 2; /* checked when decoding */
            continue;
        }
        if (c < 0x20) {
            return false;
        }
        if (c >= 0x80) {
            size_t n = jsonw_utf8_len(p, (size_t)(end - p));
            if (n == 0) {
                return false;
            }
            p += n;
            continue;
        }
        p++;
    }
    r->p = (const char *)p + 1;
    if (!escapes) {
        *s = (const char *)start;
        *len = (size_t)(p - start);
        return true;
    }
    char *out = malloc((size_t)(p - start) + 1);
    if (out == NULL) {
        return false;
    }
    size_t n = 0;
    for (const unsigned char *q = start; q < p; q++) {
        if (*q != '\\') {
            out[n++] = (char)*q;
            continue;
        }
        q++;
        switch (*q) {
        case '"':
        case '\\':
        case '/':
            out[n++] = (char)*q;
            break;
        case 'b':
            out[n++] = '\b';
            break;
        case 'f':
            out[n++] = '\f';
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 't':
            out[n++] = '\t';
            break;
        default: /* \u (surrogates, NUL: jansson's rules) or not JSON */
            free(out);
            return false;
        }
    }
    out[n] = '\0';
    *owned = out;
    *s = out;
    *len = n;
    return true;
}

static json_t *number(struct rd *r)
{
    const char *p = r->p;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    const char *digits = p;
    int64_t v = 0;
    while (p < r->end && *p >= '0' && *p <= '9') {
        if (p - digits >= JSONR_MAX_DIGITS) {
            return NULL;
        }
        v = v * 10 + (*p - '0');
        p++;
    }
    size_t nd = (size_t)(p - digits);
    if (nd == 0 || (nd > 1 && digits[0] == '0')) {
        return NULL;
    }
    if (p < r->end && (*p == '.' || *p == 'e' || *p == 'E')) {
        return NULL; /* a real: jansson's conversion */
    }
    r->p = p;
    return json_integer((json_int_t)(neg ? -v : v));
}

static json_t *literal(struct rd *r, const char *word, size_t n, json_t *v)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) {
        return NULL;
    }
    r->p += n;
    return v;
}

static json_t *object(struct rd *r, int depth)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    r->p++; /* '{' */
    skip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return o;
    }
    for (;;) {
        const char *k;
        size_t klen;
        char *owned;
        if (r->p >= r->end || *r->p != '"' || !string(r, &k, &klen, &owned)) {
            goto fail;
        }
        if ((r->flags & JSON_REJECT_DUPLICATES) && json_object_getn(o, k, klen) != NULL) {
            free(owned);
            goto fail;
        }
        skip_ws(r);
        if (r->p >= r->end || *r->p != ':') {
            free(owned);
            goto fail;
        }
        r->p++;
        json_t *v = value(r, depth + 1);
        if (v == NULL) {
            free(owned);
            goto fail;
        }
        int rc = json_object_setn_new_nocheck(o, k, klen, v);
        free(owned);
        if (rc != 0) {
            goto fail;
        }
        skip_ws(r);
        if (r->p >= r->end) {
            goto fail;
        }
        if (*r->p == '}') {
            r->p++;
            return o;
        }
        if (*r->p != ',') {
            goto fail;
        }
        r->p++;
        skip_ws(r);
    }
fail:
    json_decref(o);
    return NULL;
}

static json_t *array(struct rd *r, int depth)
{
    json_t *a = json_array();
    if (a == NULL) {
        return NULL;
    }
    r->p++; /* '[' */
    skip_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return a;
    }
    for (;;) {
        json_t *v = value(r, depth + 1);
        if (v == NULL || json_array_append_new(a, v) != 0) {
            goto fail;
        }
        skip_ws(r);
        if (r->p >= r->end) {
            goto fail;
        }
        if (*r->p == ']') {
            r->p++;
            return a;
        }
        if (*r->p != ',') {
            goto fail;
        }
        r->p++;
    }
fail:
    json_decref(a);
    return NULL;
}

static json_t *value(struct rd *r, int depth)
{
    if (depth > JSONR_MAX_DEPTH) {
        return NULL;
    }
    skip_ws(r);
    if (r->p >= r->end) {
        return NULL;
    }
    switch (*r->p) {
    case '{':
        return object(r, depth);
    case '[':
        return array(r, depth);
    case '"': {
        const char *s;
        size_t len;
        char *owned;
        if (!string(r, &s, &len, &owned)) {
            return NULL;
        }
        json_t *v = json_stringn_nocheck(s, len); /* UTF-8 checked above */
        free(owned);
        return v;
    }
    case 't':
        return literal(r, "true", 4, json_true());
    case 'f':
        return literal(r, "false", 5, json_false());
    case 'n':
        return literal(r, "null", 4, json_null());
    default:
        if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9')) {
            return number(r);
        }
        return NULL;
    }
}

json_t *jsonr_loadb(const char *buf, size_t len, size_t flags, json_error_t *error)
{
    if (buf != NULL && (flags & ~(size_t)(JSON_DECODE_ANY | JSON_REJECT_DUPLICATES)) == 0) {
        struct rd r = {buf, buf + len, flags};
        json_t *v = value(&r, 1);
        if (v != NULL) {
            skip_ws(&r);
            if (r.p == r.end && ((flags & JSON_DECODE_ANY) || json_is_object(v) ||
                                 json_is_array(v))) {
                return v;
            }
            json_decref(v);
        }
    }
    return json_loadb(buf, len, flags, error);
}
