/* crypto: the provider test vectors of PROVIDERS.md §10, plus the encoders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "buf.h"
#include "crypto.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_fixture(const char *rel, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", AGAPE_FIXTURES, rel);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct agape_buf b;
    buf_init(&b, 0);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_add(&b, chunk, n);
    }
    fclose(f);
    assert_int_equal(b.error, AGAPE_OK);
    *len = b.len;
    return buf_take(&b);
}

static void hex_of(const void *p, size_t n, char *out)
{
    crypto_hex(p, n, out);
}

/* 10.1: Stripe signs "<t>.<payload>" with HMAC-SHA256, hex. */
static void test_stripe_hmac(void **state)
{
    (void)state;
    const char *secret = "whsec_test_secret";
    const char *compact = "1700000000."
                          "{\"id\":\"evt_1\",\"object\":\"event\",\"type\":\"payment_intent."
                          "succeeded\"}";
    unsigned char mac[32];
    char hex[65];
    assert_int_equal(crypto_hmac_sha256(secret, strlen(secret), compact, strlen(compact), mac),
                     AGAPE_OK);
    hex_of(mac, 32, hex);
    assert_string_equal(hex, "67da5088c63e080c71bd2bb0cb5c03d85a8fc6a21ce3aaf484df809654745b92");

    /* The SDK's DUMMY_WEBHOOK_PAYLOAD (125 bytes) at t=1700000000. */
    const char *payload = "{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\",\n"
                          "  \"data\": { \"object\": { \"id\": \"rdr_123\", \"object\": "
                          "\"terminal.reader\" } }\n}";
    assert_int_equal(strlen(payload), 125);
    char signed_payload[256];
    snprintf(signed_payload, sizeof(signed_payload), "1700000000.%s", payload);
    crypto_hmac_sha256(secret, strlen(secret), signed_payload, strlen(signed_payload), mac);
    hex_of(mac, 32, hex);
    assert_string_equal(hex, "3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd");

    /* A different secret gives a different MAC. */
    crypto_hmac_sha256("whsec_other", 11, compact, strlen(compact), mac);
    hex_of(mac, 32, hex);
    assert_string_not_equal(hex,
                            "67da5088c63e080c71bd2bb0cb5c03d85a8fc6a21ce3aaf484df809654745b92");
}

/* 10.2: Twilio signs URL + sorted key/value pairs with HMAC-SHA1, base64. */
static void test_twilio_hmac_sha1(void **state)
{
    (void)state;
    const char *msg = "https://mycompany.com/myapp.php?foo=1&bar=2"
                      "CallSidCA1234567890ABCDECaller+14158675309Digits1234"
                      "From+14158675309To+18005551212";
    unsigned char mac[20];
    assert_int_equal(crypto_hmac_sha1("12345", 5, msg, strlen(msg), mac), AGAPE_OK);
    struct agape_buf b;
    buf_init(&b, 0);
    assert_int_equal(crypto_base64(&b, mac, sizeof(mac)), AGAPE_OK);
    assert_string_equal(buf_cstr(&b), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    buf_fini(&b);

    /* The JSON body hash of the same section (SHA-256). */
    const char *json = "{\"property\": \"value\", \"boolean\": true}";
    unsigned char dig[32];
    char hex[65];
    crypto_sha256(json, strlen(json), dig);
    hex_of(dig, 32, hex);
    assert_string_equal(hex, "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620");
}

/* 10.3: SendGrid ECDSA P-256 over timestamp + payload. */
static const char *sg_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4Cwr"
                            "qDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
static const char *sg_other_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrI"
                                  "bsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
static const char *sg_sig = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6Bp"
                            "SzoQsbVRamr2nlxFDWYNH2j/0=";
static const char *sg_payload =
    "{\"category\":\"example_payload\",\"event\":\"test_event\",\"message_id\":\"message_id\"}";

static bool sg_verify(const char *key_b64, const char *sig_b64, const char *ts,
                      const char *payload)
{
    unsigned char key[256];
    unsigned char sig[128];
    long klen = crypto_base64_decode(key_b64, strlen(key_b64), key, sizeof(key));
    long slen = crypto_base64_decode(sig_b64, strlen(sig_b64), sig, sizeof(sig));
    assert_true(klen > 0);
    assert_true(slen > 0);
    char msg[512];
    snprintf(msg, sizeof(msg), "%s%s", ts, payload);
    return crypto_verify_ecdsa_sha256_der(key, (size_t)klen, msg, strlen(msg), sig,
                                          (size_t)slen);
}

static void test_sendgrid_ecdsa(void **state)
{
    (void)state;
    assert_true(sg_verify(sg_key, sg_sig, "1588788367", sg_payload));
    /* must fail: another key, another payload, a changed signature, another timestamp */
    assert_false(sg_verify(sg_other_key, sg_sig, "1588788367", sg_payload));
    assert_false(sg_verify(sg_key, sg_sig, "1588788367", "payload"));
    char bad[256];
    snprintf(bad, sizeof(bad), "%s", sg_sig);
    char *at = strstr(bad, "NH2j/0=");
    assert_non_null(at);
    at[2] = '3'; /* …NH3j/0= */
    assert_false(sg_verify(sg_key, bad, "1588788367", sg_payload));
    assert_false(sg_verify(sg_key, sg_sig, "timestamp", sg_payload));

    /* A truncated key is not a key. */
    unsigned char key[256];
    unsigned char sig[128];
    long klen = crypto_base64_decode(sg_key, strlen(sg_key), key, sizeof(key));
    long slen = crypto_base64_decode(sg_sig, strlen(sg_sig), sig, sizeof(sig));
    const char *msg = "1588788367{\"category\":\"example_payload\",\"event\":\"test_event\","
                      "\"message_id\":\"message_id\"}";
    assert_false(crypto_verify_ecdsa_sha256_der(key, (size_t)klen - 1, msg, strlen(msg), sig,
                                                (size_t)slen));
    assert_false(crypto_verify_ecdsa_sha256_der(key, (size_t)klen, msg, strlen(msg), sig, 0));
}

/* 10.4: PayPal offline verification with the recorded certificate. */
static const char *pp_sig =
    "thy4/U002quzxFavHPwbfJGcc46E8rc5jzgyeafWm5mICTBdY/8rl7WJpn8JA0GKA+oDTPsSruqusw+XXg5RLAP7ip53"
    "Euh9Xu3UbUhQFX7UgwzE2FeYoY6lyRMiiiQLzy9BvHfIzNIVhPad4KnC339dr6y2l+mN8ALgI4GCdIh3/SoJO5wE64B"
    "h/ueWtt8EVuvsvXfda2Le5a2TrOI9vLEzsm9GS79hAR/5oLexNz8UiZr045Mr5ObroH4w4oNfmkTaDk9Rj0G19uvISs"
    "5QzgmBpauKr7Nw++JI0pr/v5mFctQkoWJSGfBGzPRXawrvIIVHQ9Wer48GR2g9ZiApWg==";

static void test_paypal_rsa(void **state)
{
    (void)state;
    size_t blen;
    size_t clen;
    char *body = read_fixture("paypal/webhook_body.json", &blen);
    char *cert = read_fixture("paypal/cert.pem", &clen);
    assert_int_equal(blen, 1288);

    uint32_t crc = crypto_crc32(body, blen);
    assert_int_equal(crc, 2771810304u);

    char msg[256];
    snprintf(msg, sizeof(msg), "dfb3be50-fd74-11e4-8bf3-77339302725b|2015-05-18T15:45:13Z|"
                               "4JH86294D6297924G|%u",
             (unsigned)crc);
    unsigned char sig[512];
    long slen = crypto_base64_decode(pp_sig, strlen(pp_sig), sig, sizeof(sig));
    assert_int_equal(slen, 256);
    assert_true(crypto_verify_rsa_sha256_pem(cert, clen, msg, strlen(msg), sig, (size_t)slen));

    /* another webhook id, a changed body (so another CRC), a flipped bit: all refused */
    char other[256];
    snprintf(other, sizeof(other), "dfb3be50-fd74-11e4-8bf3-77339302725b|2015-05-18T15:45:13Z|"
                                   "4JH86294D6297924H|%u",
             (unsigned)crc);
    assert_false(crypto_verify_rsa_sha256_pem(cert, clen, other, strlen(other), sig,
                                              (size_t)slen));
    body[10] ^= 1;
    assert_int_not_equal(crypto_crc32(body, blen), 2771810304u);
    sig[100] ^= 1;
    assert_false(crypto_verify_rsa_sha256_pem(cert, clen, msg, strlen(msg), sig, (size_t)slen));
    sig[100] ^= 1;

    /* The same key as a PEM public key (not a certificate) verifies too. */
    BIO *in = BIO_new_mem_buf(cert, (int)clen);
    X509 *x = PEM_read_bio_X509(in, NULL, NULL, NULL);
    assert_non_null(x);
    EVP_PKEY *pk = X509_get_pubkey(x);
    BIO *out = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(out, pk), 1);
    char *pub;
    long publen = BIO_get_mem_data(out, &pub);
    assert_true(crypto_verify_rsa_sha256_pem(pub, (size_t)publen, msg, strlen(msg), sig,
                                             (size_t)slen));
    BIO_free(out);
    EVP_PKEY_free(pk);
    X509_free(x);
    BIO_free(in);

    /* Garbage is neither a certificate nor a key. */
    assert_false(crypto_verify_rsa_sha256_pem("-----BEGIN CERTIFICATE-----\nAAAA\n", 33, msg,
                                              strlen(msg), sig, (size_t)slen));
    free(body);
    free(cert);
}

static EVP_PKEY *rsa_key(unsigned bits)
{
    EVP_PKEY *k = EVP_RSA_gen(bits);
    assert_non_null(k);
    return k;
}

static size_t sign(EVP_PKEY *k, const char *msg, unsigned char *sig, size_t cap)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t len = cap;
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &len, (const unsigned char *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(md);
    return len;
}

static size_t bn_param(EVP_PKEY *k, const char *name, unsigned char *out, size_t cap)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
    assert_true((size_t)BN_num_bytes(bn) <= cap);
    size_t n = (size_t)BN_bn2bin(bn, out);
    BN_free(bn);
    return n;
}

/* RS256 with a JWK-style raw key: sign with a fresh key, verify from n/e. */
static void test_jwk_rsa(void **state)
{
    (void)state;
    EVP_PKEY *k = rsa_key(2048);
    const char *msg = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ";
    unsigned char sig[512];
    unsigned char n[512];
    unsigned char e[16];
    size_t slen = sign(k, msg, sig, sizeof(sig));
    size_t nlen = bn_param(k, OSSL_PKEY_PARAM_RSA_N, n, sizeof(n));
    size_t elen = bn_param(k, OSSL_PKEY_PARAM_RSA_E, e, sizeof(e));
    assert_int_equal(nlen, 256);

    assert_true(crypto_verify_rsa_sha256_jwk(n, nlen, e, elen, msg, strlen(msg), sig, slen));
    /* tampered message, tampered signature, another modulus */
    assert_false(crypto_verify_rsa_sha256_jwk(n, nlen, e, elen, "eyJhbGciOiJSUzI1NiJ9.x", 22,
                                              sig, slen));
    sig[0] ^= 0x80;
    assert_false(crypto_verify_rsa_sha256_jwk(n, nlen, e, elen, msg, strlen(msg), sig, slen));
    sig[0] ^= 0x80;
    n[nlen - 1] ^= 2; /* stays odd */
    assert_false(crypto_verify_rsa_sha256_jwk(n, nlen, e, elen, msg, strlen(msg), sig, slen));
    n[nlen - 1] ^= 2;
    assert_false(crypto_verify_rsa_sha256_jwk(n, nlen, e, elen, msg, strlen(msg), sig, slen - 1));
    EVP_PKEY_free(k);

    /* Keys under 2048 bits are refused even with a valid signature (RFC 7518 §3.3). */
    k = rsa_key(1024);
    slen = sign(k, msg, sig, sizeof(sig));
    nlen = bn_param(k, OSSL_PKEY_PARAM_RSA_N, n, sizeof(n));
    elen = bn_param(k, OSSL_PKEY_PARAM_RSA_E, e, sizeof(e));
    assert_false(crypto_verify_rsa_sha256_jwk(n, nlen, e, elen, msg, strlen(msg), sig, slen));
    EVP_PKEY_free(k);
}

static void b64_is(bool url, const char *in, const char *want)
{
    struct agape_buf b;
    buf_init(&b, 0);
    if (url) {
        assert_int_equal(crypto_base64url(&b, in, strlen(in)), AGAPE_OK);
    } else {
        assert_int_equal(crypto_base64(&b, in, strlen(in)), AGAPE_OK);
    }
    assert_string_equal(buf_cstr(&b), want);
    buf_fini(&b);
}

static void test_base64_vectors(void **state)
{
    (void)state;
    /* RFC 4648 §10 */
    b64_is(false, "", "");
    b64_is(false, "f", "Zg==");
    b64_is(false, "fo", "Zm8=");
    b64_is(false, "foo", "Zm9v");
    b64_is(false, "foob", "Zm9vYg==");
    b64_is(false, "fooba", "Zm9vYmE=");
    b64_is(false, "foobar", "Zm9vYmFy");
    b64_is(true, "f", "Zg");
    b64_is(true, "fo", "Zm8");
    b64_is(true, "foobar", "Zm9vYmFy");

    const unsigned char odd[] = {0xfb, 0xff, 0xbf};
    struct agape_buf b;
    buf_init(&b, 0);
    crypto_base64(&b, odd, 2);
    assert_string_equal(buf_cstr(&b), "+/8=");
    buf_reset(&b);
    crypto_base64url(&b, odd, 2);
    assert_string_equal(buf_cstr(&b), "-_8");
    buf_reset(&b);
    crypto_base64url(&b, odd, 3);
    assert_string_equal(buf_cstr(&b), "-_-_");
    buf_fini(&b);

    /* PKCE S256 (RFC 7636 appendix B): base64url(sha256(verifier)) */
    const char *verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    unsigned char dig[32];
    crypto_sha256(verifier, strlen(verifier), dig);
    buf_init(&b, 0);
    crypto_base64url(&b, dig, 32);
    assert_string_equal(buf_cstr(&b), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    buf_fini(&b);
}

static void test_base64_round_trip(void **state)
{
    (void)state;
    unsigned char in[64];
    unsigned char out[64];
    assert_int_equal(crypto_random(in, sizeof(in)), AGAPE_OK);
    for (size_t len = 0; len <= sizeof(in); len++) {
        for (int url = 0; url < 2; url++) {
            struct agape_buf b;
            buf_init(&b, 0);
            if (url) {
                crypto_base64url(&b, in, len);
            } else {
                crypto_base64(&b, in, len);
            }
            assert_null(memchr(buf_cstr(&b), '\n', b.len));
            memset(out, 0xaa, sizeof(out));
            long got = url ? crypto_base64url_decode(buf_cstr(&b), b.len, out, sizeof(out))
                           : crypto_base64_decode(buf_cstr(&b), b.len, out, sizeof(out));
            assert_int_equal(got, (long)len);
            assert_memory_equal(in, out, len);
            if (len > 0) {
                /* exactly enough room is fine, one byte less is not */
                got = url ? crypto_base64url_decode(buf_cstr(&b), b.len, out, len - 1)
                          : crypto_base64_decode(buf_cstr(&b), b.len, out, len - 1);
                assert_int_equal(got, -1);
            }
            buf_fini(&b);
        }
    }
}

static long dec(const char *s)
{
    unsigned char out[64];
    return crypto_base64_decode(s, strlen(s), out, sizeof(out));
}

static long decu(const char *s)
{
    unsigned char out[64];
    return crypto_base64url_decode(s, strlen(s), out, sizeof(out));
}

static void test_base64_malformed(void **state)
{
    (void)state;
    assert_int_equal(dec("Zg=="), 1);
    assert_int_equal(dec("Zm8="), 2);
    assert_int_equal(dec("Zg"), -1);       /* standard base64 needs its padding */
    assert_int_equal(dec("Zg="), -1);      /* half padded */
    assert_int_equal(dec("Z==="), -1);     /* too much padding */
    assert_int_equal(dec("===="), -1);
    assert_int_equal(dec("Zg==Zg=="), -1); /* padding in the middle */
    assert_int_equal(dec("Zm9v\n"), -1);   /* no whitespace */
    assert_int_equal(dec("Zm 9v"), -1);
    assert_int_equal(dec("Zm9v!A=="), -1); /* not in the alphabet */
    assert_int_equal(dec("-_8="), -1);     /* url alphabet in standard */
    assert_int_equal(dec("Zh=="), -1);     /* non-zero trailing bits */
    assert_int_equal(dec("Zm9="), -1);
    assert_int_equal(dec("Zm9vY"), -1);    /* one character cannot make a byte */

    assert_int_equal(decu("Zg"), 1);       /* padding optional */
    assert_int_equal(decu("Zg=="), 1);
    assert_int_equal(decu("Zm8"), 2);
    assert_int_equal(decu("Zm8="), 2);
    assert_int_equal(decu("-_8"), 2);
    assert_int_equal(decu("+/8="), -1);    /* standard alphabet in url */
    assert_int_equal(decu("Zm9vY"), -1);
    assert_int_equal(decu("Zg="), -1);
    assert_int_equal(decu("Zh"), -1);
    assert_int_equal(decu(""), 0);
    assert_int_equal(dec(""), 0);
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(crypto_ct_equal("abcdef", 6, "abcdef", 6));
    assert_false(crypto_ct_equal("abcdef", 6, "abcdeg", 6));
    assert_false(crypto_ct_equal("abcdef", 6, "abcde", 5)); /* a prefix is not equal */
    assert_false(crypto_ct_equal("abc", 3, "abcdef", 6));
    assert_false(crypto_ct_equal("", 0, "a", 1));
    assert_true(crypto_ct_equal("", 0, "", 0));
}

static void test_hex_random_id(void **state)
{
    (void)state;
    char hex[9];
    crypto_hex("\x00\x01\xab\xff", 4, hex);
    assert_string_equal(hex, "0001abff");

    char a[40];
    char b[40];
    assert_int_equal(crypto_random_id("pay_", 16, a, sizeof(a)), AGAPE_OK);
    assert_int_equal(crypto_random_id("pay_", 16, b, sizeof(b)), AGAPE_OK);
    assert_int_equal(strlen(a), 4 + 32);
    assert_memory_equal(a, "pay_", 4);
    assert_int_equal(strspn(a + 4, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
    /* 4 + 32 + NUL = 37 bytes needed */
    assert_int_equal(crypto_random_id("pay_", 16, a, 36), AGAPE_ERANGE);
    assert_int_equal(crypto_random_id("pay_", 16, a, 37), AGAPE_OK);

    unsigned char r1[32];
    unsigned char r2[32];
    assert_int_equal(crypto_random(r1, sizeof(r1)), AGAPE_OK);
    assert_int_equal(crypto_random(r2, sizeof(r2)), AGAPE_OK);
    assert_memory_not_equal(r1, r2, sizeof(r1));
}

static void test_crc32(void **state)
{
    (void)state;
    assert_int_equal(crypto_crc32("123456789", 9), 0xCBF43926u); /* the CRC-32 check value */
    assert_int_equal(crypto_crc32("", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stripe_hmac),       cmocka_unit_test(test_twilio_hmac_sha1),
        cmocka_unit_test(test_sendgrid_ecdsa),    cmocka_unit_test(test_paypal_rsa),
        cmocka_unit_test(test_jwk_rsa),           cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_round_trip), cmocka_unit_test(test_base64_malformed),
        cmocka_unit_test(test_ct_equal),          cmocka_unit_test(test_hex_random_id),
        cmocka_unit_test(test_crc32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
