/* twilio_form — form decoding for status callbacks and URL queries.
 *
 * The decoded bytes of every name and value live in one allocation, each
 * followed by a NUL, so the pairs are cheap views. Decoding never grows the
 * text, so the store needs at most the input's length plus one NUL per name
 * and per value. */
#include "twilio.h"

#include <stdlib.h>
#include <string.h>

static int twilio_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decode s[0..len) to dst; returns the decoded length. */
static size_t twilio_decode(const char *s, size_t len, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            dst[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < len && twilio_hexval(s[i + 1]) >= 0 &&
                   twilio_hexval(s[i + 2]) >= 0) {
            dst[o++] = (char)(twilio_hexval(s[i + 1]) * 16 + twilio_hexval(s[i + 2]));
            i += 2;
        } else {
            dst[o++] = s[i];
        }
    }
    dst[o] = '\0';
    return o;
}

int twilio_form_parse(const char *s, size_t len, struct twilio_form *f)
{
    memset(f, 0, sizeof(*f));
    if (len > TWILIO_FORM_MAX) {
        return AGAPE_ERANGE;
    }
    /* Room for every byte and two NULs per possible pair. */
    f->store = malloc(len + 2 * (TWILIO_FORM_MAX_PARAMS + 1));
    if (f->store == NULL) {
        return AGAPE_ENOMEM;
    }
    char *out = f->store;
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(s + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - s) : len;
        size_t plen = end - i;
        if (plen > 0) {
            if (f->n >= TWILIO_FORM_MAX_PARAMS) {
                return AGAPE_ERANGE;
            }
            const char *pair = s + i;
            const char *eq = memchr(pair, '=', plen);
            size_t nlen = eq ? (size_t)(eq - pair) : plen;
            struct twilio_param *p = &f->p[f->n++];
            p->name = out;
            p->name_len = twilio_decode(pair, nlen, out);
            out += p->name_len + 1;
            p->value = out;
            p->value_len = eq ? twilio_decode(eq + 1, plen - nlen - 1, out) : 0;
            if (!eq) {
                out[0] = '\0';
            }
            out += p->value_len + 1;
        }
        i = end + 1;
    }
    return AGAPE_OK;
}

void twilio_form_free(struct twilio_form *f)
{
    free(f->store);
    f->store = NULL;
    f->n = 0;
}

const struct twilio_param *twilio_form_get(const struct twilio_form *f, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < f->n; i++) {
        if (f->p[i].name_len == n && memcmp(f->p[i].name, name, n) == 0) {
            return &f->p[i];
        }
    }
    return NULL;
}
