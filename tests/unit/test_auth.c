/* test_auth — the core's sign-in helpers: where return_to may point (no open
 * redirect), the random state/nonce/verifier format, and PKCE S256. */
#include "auth.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void expect(const json_t *allowed, const char *url, bool ok)
{
    char why[160] = "";
    if (auth_return_to_allowed(allowed, url, why, sizeof(why)) != ok) {
        fail_msg("return_to %s: expected %s (%s)", url, ok ? "allowed" : "refused", why);
    }
    if (!ok) {
        assert_true(why[0] != '\0');
    }
}

static void test_origins(void **state)
{
    (void)state;
    json_t *a = json_pack("[s, s]", "https://app.example.com", "http://localhost:3000/");

    expect(a, "https://app.example.com", true);
    expect(a, "https://app.example.com/", true);
    expect(a, "https://app.example.com/after/login?x=1#frag", true);
    expect(a, "HTTPS://App.Example.com/x", true);
    expect(a, "http://localhost:3000/cb", true);
    expect(a, "http://localhost:3000", true);

    /* The lookalikes an open redirect is made of. */
    expect(a, "https://app.example.com.evil.com", false);
    expect(a, "https://app.example.com.evil.com/x", false);
    expect(a, "https://app.example.com@evil.com/", false);
    expect(a, "https://app.example.com:8443/", false);
    expect(a, "https://app.example.comevil.com", false);
    expect(a, "http://app.example.com/", false);
    expect(a, "https://evil.com/https://app.example.com/", false);
    expect(a, "//evil.com", false);
    expect(a, "/relative", false);
    expect(a, "http://localhost:30001/", false);
    expect(a, "https://app.example.com\\@evil.com", false);
    expect(a, "https://app.example.com/\r\nSet-Cookie:x", false);
    expect(a, "https://app.example.com/ x", false);
    expect(a, "https://app.example.com/\xc3\xa9", false);

    /* One origin as a string; nothing configured refuses everything. */
    json_t *one = json_string("https://app.example.com/");
    expect(one, "https://app.example.com/x", true);
    expect(one, "https://app.example.comx", false);
    expect(NULL, "https://app.example.com/", false);
    json_t *empty = json_array();
    expect(empty, "https://app.example.com/", false);
    /* A configured origin with a path or without a host matches nothing. */
    json_t *odd = json_pack("[s, s, s]", "https://app.example.com/path", "https://", "");
    expect(odd, "https://app.example.com/path/x", false);
    expect(odd, "https://x", false);

    char long_url[AUTH_RETURN_TO_MAX + 64];
    memset(long_url, 'a', sizeof(long_url) - 1);
    memcpy(long_url, "https://app.example.com/", 24);
    long_url[sizeof(long_url) - 1] = '\0';
    expect(a, long_url, false);

    json_decref(a);
    json_decref(one);
    json_decref(empty);
    json_decref(odd);
}

static void test_random(void **state)
{
    (void)state;
    char a[64], b[64];
    assert_int_equal(auth_random_b64url(32, a, sizeof(a)), AGAPE_OK);
    assert_int_equal(auth_random_b64url(32, b, sizeof(b)), AGAPE_OK);
    assert_int_equal(strlen(a), 43);
    assert_string_not_equal(a, b);
    assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     43);
    assert_int_equal(auth_random_b64url(32, a, 43), AGAPE_ERANGE);
}

static void test_pkce(void **state)
{
    (void)state;
    char out[44];
    /* RFC 7636 Appendix B (PROVIDERS.md §10.6). */
    assert_int_equal(auth_pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", out,
                                    sizeof(out)),
                     AGAPE_OK);
    assert_string_equal(out, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    char v128[129];
    memset(v128, '~', 128);
    v128[128] = '\0';
    assert_int_equal(auth_pkce_s256(v128, out, sizeof(out)), AGAPE_OK);
    v128[127] = '\0';
    memset(v128, 'a', 127);
    assert_int_equal(auth_pkce_s256(v128, out, sizeof(out)), AGAPE_OK);
    char v129[130];
    memset(v129, 'a', 129);
    v129[129] = '\0';
    assert_int_equal(auth_pkce_s256(v129, out, sizeof(out)), AGAPE_EINVAL);
    assert_int_equal(auth_pkce_s256(NULL, out, sizeof(out)), AGAPE_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_pkce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
