/* jsonw — writing JSON text by hand into a struct agape_buf, for the hot
 * paths where building a jansson value only to dump it would cost more than
 * the rest of the work (log lines, stored answers, idempotency records).
 *
 * Strings are escaped as jansson escapes them (quote, backslash, control
 * characters; other UTF-8 as is), so the text reads back the same with
 * json_loads; a byte that is not part of valid UTF-8 becomes U+FFFD (jansson
 * would refuse the whole string). Errors are the buffer's (sticky). Any
 * thread. */
#ifndef AGAPE_JSONW_H
#define AGAPE_JSONW_H

#include "buf.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Length (2 to 4) of the valid UTF-8 sequence at p (left bytes readable),
 * or 0: no overlong forms, no surrogates, nothing above U+10FFFF — what
 * jansson accepts. */
size_t jsonw_utf8_len(const unsigned char *p, size_t left);
/* The escaped content of s[0..n), without quotes. */
void jsonw_escaped(struct agape_buf *b, const char *s, size_t n);
/* "s" (quoted and escaped); NULL appends null. */
void jsonw_str(struct agape_buf *b, const char *s);
void jsonw_strn(struct agape_buf *b, const char *s, size_t n);
/* A member `"key":` with a leading comma unless `first`. `key` is written as
 * is: pass only literal keys that need no escaping. */
void jsonw_key(struct agape_buf *b, const char *key, int first);
void jsonw_int(struct agape_buf *b, int64_t v);
/* Append v as compact JSON text, byte for byte what json_dumps(v,
 * JSON_COMPACT) writes (members in the object's order), without jansson's
 * per-token callbacks. Values nested deeper than 64 make the buffer's error
 * AGAPE_ERANGE. */
void jsonw_value(struct agape_buf *b, const json_t *v);
/* Make room for n more bytes at once (a size hint: appends still grow the
 * buffer as needed): one allocation instead of a doubling from 256 bytes.
 * Up to about 1000 bytes it stays in glibc's per-thread cache sizes. */
void jsonw_reserve(struct agape_buf *b, size_t n);
/* Append json_dumps(v, flags)'s text straight into b, without the copy
 * json_dumps returns (no faster otherwise: jansson's dump itself is the
 * cost). jsonw_value uses it for reals, to keep jansson's formatting. */
void jsonw_dump(struct agape_buf *b, const json_t *v, size_t flags);

#endif
