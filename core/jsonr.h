/* jsonr — json_loadb with a fast path for plain JSON.
 *
 * Provider answers and request bodies are parsed on every payment, and
 * jansson's reader goes through a character stream and a token buffer. This
 * reader scans the text in place for the plain subset — objects, arrays,
 * strings with the short escapes (\" \\ \/ \b \f \n \r \t) and valid UTF-8,
 * integers of at most 18 digits, true, false, null — and builds the same
 * jansson values jansson would, with the same calls (members in text order,
 * a repeated key replacing the value in place). Anything outside the subset
 * (\u escapes, reals, longer integers, nesting deeper than 64, any error)
 * goes to json_loadb itself, so results and error messages are jansson's.
 * Any thread. */
#ifndef AGAPE_JSONR_H
#define AGAPE_JSONR_H

#include <jansson.h>
#include <stddef.h>

/* As json_loadb(buf, len, flags, error). Flags other than JSON_DECODE_ANY
 * and JSON_REJECT_DUPLICATES always take jansson's path. `error` may be
 * NULL; it is filled only when jansson's path ran. */
json_t *jsonr_loadb(const char *buf, size_t len, size_t flags, json_error_t *error);

#endif
