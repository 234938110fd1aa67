/* crypto — OpenSSL 3 (EVP only) and zlib behind the small contract of crypto.h.
 *
 * Base64 is done by hand rather than with EVP_DecodeBlock: OpenSSL's decoder
 * skips whitespace, returns lengths that include padding and accepts
 * non-canonical trailing bits, while signatures and tokens want a decoder that
 * says exactly "these bytes, or malformed". */
#include "crypto.h"

#include "buf.h"

#include <agape/plugin.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

/* Smallest RSA modulus accepted from a JWK: RFC 7518 §3.3 requires 2048 bits
 * for RS256. */
#define CRYPTO_RSA_MIN_BITS 2048
/* Signatures and keys come from the network; anything bigger is not real. */
#define CRYPTO_INPUT_MAX ((size_t)1 << 20)

/* OpenSSL's one-shot functions treat a NULL pointer specially in places; an
 * empty input always travels as a pointer to this. */
static const unsigned char empty[1];

int crypto_random(void *out, size_t n)
{
    unsigned char *p = out;
    while (n > 0) {
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(p, chunk) != 1) {
            ERR_clear_error();
            return AGAPE_ERROR;
        }
        p += chunk;
        n -= (size_t)chunk;
    }
    return AGAPE_OK;
}

void crypto_sha256(const void *msg, size_t len, unsigned char out[32])
{
    if (EVP_Digest(len ? msg : empty, len, out, NULL, EVP_sha256(), NULL) != 1) {
        /* Only fails without memory; never hand out uninitialised bytes. */
        ERR_clear_error();
        memset(out, 0, 32);
    }
}

static int hmac(const EVP_MD *md, const void *key, size_t klen, const void *msg, size_t mlen,
                unsigned char *out, unsigned int outlen)
{
    unsigned int got = 0;
    if (klen > (size_t)INT_MAX) {
        return AGAPE_ERANGE;
    }
    if (HMAC(md, klen ? key : empty, (int)klen, mlen ? msg : empty, mlen, out, &got) == NULL ||
        got != outlen) {
        ERR_clear_error();
        memset(out, 0, outlen);
        return AGAPE_ERROR;
    }
    return AGAPE_OK;
}

int crypto_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
                       unsigned char out[32])
{
    return hmac(EVP_sha256(), key, klen, msg, mlen, out, 32);
}

int crypto_hmac_sha1(const void *key, size_t klen, const void *msg, size_t mlen,
                     unsigned char out[20])
{
    return hmac(EVP_sha1(), key, klen, msg, mlen, out, 20);
}

bool crypto_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen) {
        return false;
    }
    if (alen == 0) {
        return true;
    }
    if (a == NULL || b == NULL) {
        return false;
    }
    return CRYPTO_memcmp(a, b, alen) == 0;
}

void crypto_hex(const void *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

int crypto_random_id(const char *prefix, size_t nbytes, char *out, size_t outlen)
{
    unsigned char raw[64];
    size_t plen = prefix ? strlen(prefix) : 0;
    if (nbytes > sizeof(raw) || outlen == 0 || plen >= outlen ||
        2 * nbytes + 1 > outlen - plen) {
        return AGAPE_ERANGE;
    }
    if (crypto_random(raw, nbytes) != AGAPE_OK) {
        return AGAPE_ERROR;
    }
    if (plen) {
        memcpy(out, prefix, plen);
    }
    crypto_hex(raw, nbytes, out + plen);
    OPENSSL_cleanse(raw, sizeof(raw));
    return AGAPE_OK;
}

/* ---------------------------------------------------------------- */
/* Base64 (RFC 4648 §4) and base64url (§5).                          */

static const char b64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_encode(struct agape_buf *out, const void *data, size_t len, const char *alpha,
                      bool pad)
{
    const unsigned char *p = data;
    char quad[4];
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        quad[0] = alpha[(v >> 18) & 63];
        quad[1] = alpha[(v >> 12) & 63];
        quad[2] = alpha[(v >> 6) & 63];
        quad[3] = alpha[v & 63];
        buf_add(out, quad, 4);
    }
    size_t rest = len - i;
    if (rest > 0) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (rest == 2) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        quad[0] = alpha[(v >> 18) & 63];
        quad[1] = alpha[(v >> 12) & 63];
        quad[2] = rest == 2 ? alpha[(v >> 6) & 63] : '=';
        quad[3] = '=';
        size_t n = pad ? 4 : rest + 1;
        buf_add(out, quad, n);
    }
    /* An empty input appends nothing, but the buffer's sticky error still counts. */
    return out->error;
}

int crypto_base64(struct agape_buf *out, const void *data, size_t len)
{
    return b64_encode(out, data, len, b64_std, true);
}

int crypto_base64url(struct agape_buf *out, const void *data, size_t len)
{
    return b64_encode(out, data, len, b64_url, false);
}

static int b64_value(unsigned char c, bool url)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == (url ? '-' : '+')) {
        return 62;
    }
    if (c == (url ? '_' : '/')) {
        return 63;
    }
    return -1;
}

/* Strict decoding: only the alphabet, padding only at the end and only as
 * much as the length needs, and zero bits in the unused part of the last
 * character (so every byte string has exactly one accepted encoding). */
static long b64_decode(const char *in, size_t len, unsigned char *out, size_t cap, bool url)
{
    if (len == 0) {
        return 0;
    }
    if (in == NULL || len > (size_t)LONG_MAX / 3 * 4) {
        return -1;
    }
    size_t pad = 0;
    while (pad < 2 && pad < len && in[len - 1 - pad] == '=') {
        pad++;
    }
    if (pad > 0 && len % 4 != 0) {
        return -1; /* padding present: the total must be whole quads */
    }
    if (!url && len % 4 != 0) {
        return -1; /* standard base64 is always padded */
    }
    size_t data = len - pad;
    if (data % 4 == 1) {
        return -1; /* one character cannot hold a byte */
    }
    size_t outlen = data / 4 * 3 + (data % 4 ? data % 4 - 1 : 0);
    if (outlen > cap) {
        return -1;
    }
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < data; i++) {
        int v = b64_value((unsigned char)in[i], url);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) {
        return -1; /* non-canonical: leftover bits must be zero */
    }
    return (long)o;
}

long crypto_base64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    return b64_decode(in, len, out, cap, false);
}

long crypto_base64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    return b64_decode(in, len, out, cap, true);
}

/* ---------------------------------------------------------------- */
/* Signature checks                                                  */

static bool verify_with(EVP_PKEY *pkey, const void *msg, size_t mlen, const void *sig,
                        size_t siglen)
{
    bool ok = false;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL) {
        goto out;
    }
    if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1) {
        goto out;
    }
    ok = EVP_DigestVerify(md, sig, siglen, mlen ? msg : empty, mlen) == 1;
out:
    EVP_MD_CTX_free(md);
    /* A failed check leaves reasons on this thread's queue; they are not ours
     * to report and would confuse the next caller. */
    ERR_clear_error();
    return ok;
}

static bool inputs_ok(const void *key, size_t klen, const void *sig, size_t siglen)
{
    return key != NULL && klen > 0 && klen <= CRYPTO_INPUT_MAX && sig != NULL && siglen > 0 &&
           siglen <= CRYPTO_INPUT_MAX;
}

bool crypto_verify_rsa_sha256_pem(const char *pem, size_t pemlen, const void *msg, size_t mlen,
                                  const void *sig, size_t siglen)
{
    bool ok = false;
    BIO *bio = NULL;
    X509 *cert = NULL;
    EVP_PKEY *pkey = NULL;
    if (!inputs_ok(pem, pemlen, sig, siglen)) {
        goto out;
    }
    bio = BIO_new_mem_buf(pem, (int)pemlen);
    if (bio == NULL) {
        goto out;
    }
    cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (cert != NULL) {
        pkey = X509_get_pubkey(cert);
    } else {
        /* Not a certificate: try a bare public key from the start. */
        BIO_free(bio);
        bio = BIO_new_mem_buf(pem, (int)pemlen);
        if (bio == NULL) {
            goto out;
        }
        pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    }
    /* Only RSA: an EC key in the certificate must not pass an RSA check. */
    if (pkey == NULL || !EVP_PKEY_is_a(pkey, "RSA")) {
        goto out;
    }
    ok = verify_with(pkey, msg, mlen, sig, siglen);
out:
    EVP_PKEY_free(pkey);
    X509_free(cert);
    BIO_free(bio);
    ERR_clear_error();
    return ok;
}

bool crypto_verify_ecdsa_sha256_der(const void *der_spki, size_t dlen, const void *msg,
                                    size_t mlen, const void *sig, size_t siglen)
{
    bool ok = false;
    EVP_PKEY *pkey = NULL;
    char group[64];
    size_t glen = 0;
    if (!inputs_ok(der_spki, dlen, sig, siglen)) {
        goto out;
    }
    const unsigned char *p = der_spki;
    pkey = d2i_PUBKEY(NULL, &p, (long)dlen);
    if (pkey == NULL || p != (const unsigned char *)der_spki + dlen) {
        goto out; /* not a key, or trailing bytes after it */
    }
    if (!EVP_PKEY_is_a(pkey, "EC") ||
        EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &glen) != 1 ||
        strcmp(group, "prime256v1") != 0) {
        goto out;
    }
    ok = verify_with(pkey, msg, mlen, sig, siglen);
out:
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return ok;
}

bool crypto_verify_rsa_sha256_jwk(const void *n, size_t nlen, const void *e, size_t elen,
                                  const void *msg, size_t mlen, const void *sig, size_t siglen)
{
    bool ok = false;
    BIGNUM *bn_n = NULL;
    BIGNUM *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    if (!inputs_ok(n, nlen, sig, siglen) || e == NULL || elen == 0 || elen > 16) {
        goto out;
    }
    bn_n = BN_bin2bn(n, (int)nlen, NULL);
    bn_e = BN_bin2bn(e, (int)elen, NULL);
    if (bn_n == NULL || bn_e == NULL || BN_num_bits(bn_n) < CRYPTO_RSA_MIN_BITS ||
        !BN_is_odd(bn_e) || BN_is_one(bn_e)) {
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1) {
        goto out;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (params == NULL || pctx == NULL || EVP_PKEY_fromdata_init(pctx) != 1 ||
        EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        goto out;
    }
    ok = verify_with(pkey, msg, mlen, sig, siglen);
out:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_e);
    BN_free(bn_n);
    ERR_clear_error();
    return ok;
}

uint32_t crypto_crc32(const void *data, size_t len)
{
    if (len == 0) {
        return 0;
    }
    return (uint32_t)crc32_z(0L, data, len);
}

/* ---------------------------------------------------------------- */
/* X.509 inspection (host->x509_check)                              */

/* `what` followed by `arg` (may be NULL) into err, when there is one. */
static void x509_err(char *err, size_t errlen, const char *what, const char *arg)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s%s", what, arg ? arg : "");
    }
}

/* An ASN.1 time as "YYYY-MM-DDTHH:MM:SSZ" for messages ("?" if unreadable). */
static void x509_time_iso(const ASN1_TIME *t, char *out, size_t len)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
        strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(out, len, "?");
    }
}

/* Why in one place: a plugin cannot link OpenSSL (plugins use only libc and
 * the host table), and a hand-written DER walker in a plugin would be a new
 * parser of untrusted input. The chain is not checked here: callers fetch
 * the certificate over TLS from an allow-listed host. */
bool crypto_x509_check(const char *pem, size_t len, const char *cn_suffix, int64_t now_s,
                       bool check_time, char *err, size_t errlen)
{
    bool ok = false;
    BIO *bio = NULL;
    X509 *cert = NULL;
    unsigned char *cn = NULL;
    char when[32];

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (pem == NULL || len == 0 || len > CRYPTO_INPUT_MAX) {
        x509_err(err, errlen, "no certificate (empty or over 1 MiB)", NULL);
        goto out;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    if (cert == NULL) {
        x509_err(err, errlen, "not a PEM certificate", NULL);
        goto out;
    }
    if (cn_suffix != NULL) {
        /* The last CN is the most specific one (what hostname checks use). */
        const X509_NAME *subj = X509_get_subject_name(cert);
        int idx = -1, last = -1;
        while ((idx = X509_NAME_get_index_by_NID(subj, NID_commonName, idx)) >= 0) {
            last = idx;
        }
        X509_NAME_ENTRY *e = last >= 0 ? X509_NAME_get_entry(subj, last) : NULL;
        int n = e ? ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(e)) : -1;
        if (n <= 0) {
            x509_err(err, errlen, "the certificate subject has no common name (CN)", NULL);
            goto out;
        }
        size_t sl = strlen(cn_suffix);
        /* An embedded NUL would make the CN look shorter than it is. */
        if ((size_t)n != strlen((const char *)cn) || (size_t)n < sl ||
            strcasecmp((const char *)cn + n - sl, cn_suffix) != 0) {
            char shown[80];
            snprintf(shown, sizeof(shown), "%.64s", (const char *)cn);
            for (char *p = shown; *p; p++) {
                if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
                    *p = '?';
                }
            }
            if (err != NULL && errlen > 0) {
                snprintf(err, errlen, "certificate subject CN %s does not end with %s", shown,
                         cn_suffix);
            }
            goto out;
        }
    }
    if (check_time) {
        time_t t = (time_t)now_s;
        const ASN1_TIME *nb = X509_get0_notBefore(cert);
        const ASN1_TIME *na = X509_get0_notAfter(cert);
        /* X509_cmp_time: -1 when the ASN.1 time is at or before t, 1 after, 0 error. */
        int b = nb ? X509_cmp_time(nb, &t) : 0;
        int a = na ? X509_cmp_time(na, &t) : 0;
        if (b == 0 || a == 0) {
            x509_err(err, errlen, "the certificate validity dates cannot be read", NULL);
            goto out;
        }
        if (b > 0) {
            x509_time_iso(nb, when, sizeof(when));
            x509_err(err, errlen, "certificate not valid before ", when);
            goto out;
        }
        if (a < 0) {
            x509_time_iso(na, when, sizeof(when));
            x509_err(err, errlen, "certificate expired on ", when);
            goto out;
        }
    }
    ok = true;
out:
    OPENSSL_free(cn);
    X509_free(cert);
    BIO_free(bio);
    ERR_clear_error();
    return ok;
}
