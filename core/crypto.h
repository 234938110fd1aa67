/* crypto — the few primitives the core and the host table need (OpenSSL).
 * All functions are thread-safe. */
#ifndef AGAPE_CRYPTO_H
#define AGAPE_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agape_buf;

int crypto_random(void *out, size_t n); /* AGAPE_OK or AGAPE_ERROR */
void crypto_sha256(const void *msg, size_t len, unsigned char out[32]);
int crypto_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
                       unsigned char out[32]);
int crypto_hmac_sha1(const void *key, size_t klen, const void *msg, size_t mlen,
                     unsigned char out[20]);
/* Constant-time equality (CRYPTO_memcmp); false when the lengths differ. */
bool crypto_ct_equal(const void *a, size_t alen, const void *b, size_t blen);
/* Lowercase hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void crypto_hex(const void *in, size_t n, char *out);
/* A random identifier "<prefix><n random bytes as lowercase hex>" into out. */
int crypto_random_id(const char *prefix, size_t nbytes, char *out, size_t outlen);

/* Encoders append to a buffer; decoders return the decoded length or -1. */
int crypto_base64(struct agape_buf *out, const void *data, size_t len);
int crypto_base64url(struct agape_buf *out, const void *data, size_t len); /* no padding */
long crypto_base64_decode(const char *in, size_t len, unsigned char *out, size_t cap);
long crypto_base64url_decode(const char *in, size_t len, unsigned char *out, size_t cap);

bool crypto_verify_rsa_sha256_pem(const char *pem, size_t pemlen, const void *msg, size_t mlen,
                                  const void *sig, size_t siglen);
bool crypto_verify_ecdsa_sha256_der(const void *der_spki, size_t dlen, const void *msg,
                                    size_t mlen, const void *sig, size_t siglen);
bool crypto_verify_rsa_sha256_jwk(const void *n, size_t nlen, const void *e, size_t elen,
                                  const void *msg, size_t mlen, const void *sig, size_t siglen);
uint32_t crypto_crc32(const void *data, size_t len);

/* host->x509_check (include/agape/plugin.h): true when `pem` (len bytes) is a
 * PEM certificate whose subject's last CN ends with cn_suffix (ASCII case-
 * insensitive; NULL skips the check) and, when check_time, now_s (seconds)
 * lies within its notBefore..notAfter. On false, err (when non-NULL) says
 * why, naming the CN or the date. The chain is not checked. */
bool crypto_x509_check(const char *pem, size_t len, const char *cn_suffix, int64_t now_s,
                       bool check_time, char *err, size_t errlen);

#endif
