/* buf — a growable byte buffer with a hard maximum size.
 *
 * `struct agape_buf` is the opaque buffer of the plugin ABI; the core sees its
 * fields. Errors are sticky: after the first failed append (no memory, over
 * the maximum) every append is a no-op and buf->error holds the rc, so call
 * sites append in a straight line and check once. */
#ifndef AGAPE_BUF_H
#define AGAPE_BUF_H

#include <agape/plugin.h>
#include <stdarg.h>

#define BUF_DEFAULT_MAX ((size_t)64 << 20) /* 64 MiB unless set otherwise */

struct agape_buf {
    char *data;  /* NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    size_t max;  /* appends that would exceed it fail with AGAPE_ERANGE */
    int error;   /* first failure, sticky; AGAPE_OK otherwise */
};

/* Caller-provided storage; max 0 means BUF_DEFAULT_MAX. */
void buf_init(struct agape_buf *b, size_t max);
void buf_fini(struct agape_buf *b);
void buf_reset(struct agape_buf *b); /* len 0, error cleared, memory kept */
struct agape_buf *buf_new(void);
void buf_free(struct agape_buf *b);
int buf_add(struct agape_buf *b, const void *data, size_t len);
int buf_adds(struct agape_buf *b, const char *s);
int buf_printf(struct agape_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct agape_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Hand the bytes to the caller (free() them); the buffer is left empty. */
char *buf_take(struct agape_buf *b);
const char *buf_cstr(const struct agape_buf *b); /* "" when empty; borrowed */

#endif
