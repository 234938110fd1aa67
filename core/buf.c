#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct agape_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max ? max : BUF_DEFAULT_MAX;
}

void buf_fini(struct agape_buf *b)
{
    if (b == NULL) {
        return;
    }
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void buf_reset(struct agape_buf *b)
{
    b->len = 0;
    b->error = AGAPE_OK;
    if (b->data) {
        b->data[0] = '\0';
    }
}

struct agape_buf *buf_new(void)
{
    struct agape_buf *b = malloc(sizeof(*b));
    if (b) {
        buf_init(b, 0);
    }
    return b;
}

void buf_free(struct agape_buf *b)
{
    if (b) {
        buf_fini(b);
        free(b);
    }
}

static int grow(struct agape_buf *b, size_t extra)
{
    if (b->error) {
        return b->error;
    }
    if (extra > b->max || b->len > b->max - extra) {
        b->error = AGAPE_ERANGE;
        return b->error;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return AGAPE_OK;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->error = AGAPE_ENOMEM;
        return b->error;
    }
    b->data = p;
    b->cap = cap;
    return AGAPE_OK;
}

int buf_add(struct agape_buf *b, const void *data, size_t len)
{
    int rc = grow(b, len);
    if (rc) {
        return rc;
    }
    if (len) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    b->data[b->len] = '\0';
    return AGAPE_OK;
}

int buf_adds(struct agape_buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

int buf_vprintf(struct agape_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        b->error = b->error ? b->error : AGAPE_EINVAL;
        return b->error;
    }
    int rc = grow(b, (size_t)n);
    if (rc) {
        return rc;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return AGAPE_OK;
}

int buf_printf(struct agape_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *buf_take(struct agape_buf *b)
{
    char *p = b->data;
    if (p == NULL) {
        p = calloc(1, 1);
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

const char *buf_cstr(const struct agape_buf *b)
{
    return b->data ? b->data : "";
}
