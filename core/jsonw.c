/* jsonw — see jsonw.h. The escaper copies runs of plain bytes in one append
 * and checks UTF-8 sequences as it goes. */
#include "jsonw.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* buf_add, inline when the bytes fit (the common case: the callers reserve),
 * which saves a call and its checks per token. Same result and limits. */
static inline void put(struct agape_buf *b, const char *s, size_t n)
{
    if (b->error == AGAPE_OK && b->data != NULL && n < b->cap - b->len &&
        n <= b->max - b->len) {
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
        return;
    }
    buf_add(b, s, n);
}

size_t jsonw_utf8_len(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    size_t seq = 0;
    if (c >= 0xc2 && c <= 0xdf) {
        seq = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        seq = 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
        seq = 4;
    }
    if (seq == 0 || seq > left) {
        return 0;
    }
    for (size_t k = 1; k < seq; k++) {
        if ((p[k] & 0xc0) != 0x80) {
            return 0;
        }
    }
    /* No overlong forms, no surrogates, nothing above U+10FFFF. */
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0) ||
        (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)) {
        return 0;
    }
    return seq;
}

void jsonw_escaped(struct agape_buf *b, const char *s, size_t n)
{
    static const char hexd[] = "0123456789ABCDEF"; /* jansson writes \u001F */
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0; /* first byte not yet copied */
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t seq = jsonw_utf8_len(p + i, n - i);
            if (seq) {
                i += seq;
                continue;
            }
        }
        if (i > run) {
            put(b, s + run, i - run);
        }
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            if (c < 0x20) {
                memcpy(esc + 1, "u00", 3);
                esc[4] = hexd[c >> 4];
                esc[5] = hexd[c & 15];
            } else {
                memcpy(esc + 1, "ufffd", 5); /* not UTF-8 */
            }
            el = 6;
            break;
        }
        put(b, esc, el);
        i++;
        run = i;
    }
    if (n > run) {
        put(b, s + run, n - run);
    }
}

void jsonw_strn(struct agape_buf *b, const char *s, size_t n)
{
    if (s == NULL) {
        put(b, "null", 4);
        return;
    }
    put(b, "\"", 1);
    jsonw_escaped(b, s, n);
    put(b, "\"", 1);
}

void jsonw_str(struct agape_buf *b, const char *s)
{
    jsonw_strn(b, s, s ? strlen(s) : 0);
}

void jsonw_key(struct agape_buf *b, const char *key, int first)
{
    if (!first) {
        put(b, ",", 1);
    }
    put(b, "\"", 1);
    put(b, key, strlen(key));
    put(b, "\":", 2);
}

void jsonw_int(struct agape_buf *b, int64_t v)
{
    /* Digits from the end; no printf (this runs for every number dumped). */
    char tmp[24];
    size_t i = sizeof(tmp);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        tmp[--i] = '-';
    }
    put(b, tmp + i, sizeof(tmp) - i);
}

#define JSONW_MAX_DEPTH 64

static void value_rec(struct agape_buf *b, const json_t *v, int depth)
{
    if (depth > JSONW_MAX_DEPTH) {
        b->error = b->error ? b->error : AGAPE_ERANGE;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        put(b, "{", 1);
        const char *k;
        size_t klen;
        json_t *m;
        bool first = true;
        json_object_keylen_foreach((json_t *)v, k, klen, m)
        {
            if (!first) {
                put(b, ",", 1);
            }
            first = false;
            jsonw_strn(b, k, klen);
            put(b, ":", 1);
            value_rec(b, m, depth + 1);
        }
        put(b, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        put(b, "[", 1);
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if (i > 0) {
                put(b, ",", 1);
            }
            value_rec(b, json_array_get(v, i), depth + 1);
        }
        put(b, "]", 1);
        break;
    }
    case JSON_STRING:
        jsonw_strn(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        jsonw_int(b, (int64_t)json_integer_value(v));
        break;
    case JSON_REAL:
        /* Rare here; jansson's own formatting (%.17g and its rules). */
        jsonw_dump(b, v, JSON_COMPACT | JSON_ENCODE_ANY);
        break;
    case JSON_TRUE:
        put(b, "true", 4);
        break;
    case JSON_FALSE:
        put(b, "false", 5);
        break;
    case JSON_NULL:
        put(b, "null", 4);
        break;
    }
}

void jsonw_value(struct agape_buf *b, const json_t *v)
{
    if (v == NULL) {
        b->error = b->error ? b->error : AGAPE_EINVAL;
        return;
    }
    value_rec(b, v, 0);
}

void jsonw_reserve(struct agape_buf *b, size_t n)
{
    if (b->error != AGAPE_OK || n > b->max || b->len > b->max - n) {
        return; /* the appends will report it */
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap) {
        return;
    }
    char *p = realloc(b->data, need);
    if (p == NULL) {
        b->error = AGAPE_ENOMEM;
        return;
    }
    if (b->data == NULL) {
        p[0] = '\0';
    }
    b->data = p;
    b->cap = need;
}

static int dump_cb(const char *chunk, size_t size, void *data)
{
    struct agape_buf *b = data;
    return buf_add(b, chunk, size) == AGAPE_OK ? 0 : -1;
}

void jsonw_dump(struct agape_buf *b, const struct json_t *v, size_t flags)
{
    if (v == NULL) {
        b->error = b->error ? b->error : AGAPE_EINVAL;
        return;
    }
    if (json_dump_callback(v, dump_cb, b, flags) != 0 && b->error == AGAPE_OK) {
        b->error = AGAPE_ENOMEM;
    }
}
