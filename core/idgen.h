/* idgen — random identifiers (request ids, payment ids) without a trip into
 * OpenSSL's DRBG for each: every thread keeps a small pool of bytes from
 * crypto_random and hands them out, refilling when it runs dry. The bytes
 * are as random as crypto_random's, but they sit in memory until used: use
 * this for identifiers, never for keys, tokens or secrets. Any thread. */
#ifndef AGAPE_IDGEN_H
#define AGAPE_IDGEN_H

#include <stddef.h>

/* n random bytes (n <= 64) into out. AGAPE_OK, or AGAPE_ERROR when the
 * system's generator failed (out is then untouched). */
int idgen_random(void *out, size_t n);
/* prefix + 2*nbytes lowercase hex digits, as crypto_random_id writes them.
 * AGAPE_ERANGE when it does not fit in outlen (with the NUL). */
int idgen_hex(const char *prefix, size_t nbytes, char *out, size_t outlen);

#endif
