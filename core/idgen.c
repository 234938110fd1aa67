/* idgen — see idgen.h. The pool is thread-local static storage (no heap, so
 * nothing to free when a thread we do not own ends). Taken bytes are wiped
 * from the pool. */
#include "idgen.h"

#include "crypto.h"

#include <agape/plugin.h>
#include <string.h>

#define IDGEN_POOL 512

static _Thread_local unsigned char pool[IDGEN_POOL];
static _Thread_local size_t pool_left; /* unused bytes at the end of pool */

int idgen_random(void *out, size_t n)
{
    if (n > 64) {
        return AGAPE_ERANGE;
    }
    if (pool_left < n) {
        if (crypto_random(pool, sizeof(pool)) != AGAPE_OK) {
            pool_left = 0;
            return AGAPE_ERROR;
        }
        pool_left = sizeof(pool);
    }
    unsigned char *p = pool + (sizeof(pool) - pool_left);
    memcpy(out, p, n);
    memset(p, 0, n);
    pool_left -= n;
    return AGAPE_OK;
}

int idgen_hex(const char *prefix, size_t nbytes, char *out, size_t outlen)
{
    unsigned char raw[64];
    size_t plen = prefix ? strlen(prefix) : 0;
    if (nbytes > sizeof(raw) || outlen == 0 || plen >= outlen || 2 * nbytes + 1 > outlen - plen) {
        return AGAPE_ERANGE;
    }
    if (idgen_random(raw, nbytes) != AGAPE_OK) {
        return AGAPE_ERROR;
    }
    if (plen) {
        memcpy(out, prefix, plen);
    }
    crypto_hex(raw, nbytes, out + plen);
    return AGAPE_OK;
}
