/* Unit tests of core/jsonw.c and core/jsonr.c: the hand-written JSON must be
 * byte for byte what jansson writes, and the fast reader must accept exactly
 * what jansson accepts and build the same values (checked on fixed cases and
 * on a few thousand mutated texts). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "jsonr.h"
#include "jsonw.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dump_any(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void assert_writes_like_jansson(json_t *v)
{
    char *want = dump_any(v);
    assert_non_null(want);
    struct agape_buf b;
    buf_init(&b, 0);
    jsonw_value(&b, v);
    assert_int_equal(b.error, AGAPE_OK);
    assert_string_equal(buf_cstr(&b), want);
    buf_fini(&b);
    free(want);
}

static void test_strings_escape_like_jansson(void **state)
{
    (void)state;
    static const char *cases[] = {
        "",       "plain",         "quote \" and \\ backslash", "slash / stays",
        "\b\f\n\r\t", "\x01\x1f\x7f", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "\xe2\x80\xa8 line separator stays raw",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *s = json_string(cases[i]);
        assert_non_null(s);
        assert_writes_like_jansson(s);
        json_decref(s);
    }
    /* an embedded NUL (json_stringn) */
    json_t *nul = json_stringn("a\0b", 3);
    assert_writes_like_jansson(nul);
    json_decref(nul);
}

static void test_invalid_utf8_becomes_replacement(void **state)
{
    (void)state;
    struct agape_buf b;
    buf_init(&b, 0);
    /* a lone continuation byte, an overlong '/', a surrogate, a cut sequence */
    jsonw_strn(&b, "a\x80" "b\xc0\xaf" "c\xed\xa0\x80" "d\xe2\x82", 12);
    assert_int_equal(b.error, AGAPE_OK);
    json_t *back = json_loads(buf_cstr(&b), JSON_DECODE_ANY, NULL);
    assert_non_null(back); /* always valid JSON */
    assert_string_equal(json_string_value(back),
                        "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd"
                        "\xef\xbf\xbd" "d\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(back);
    buf_fini(&b);
    buf_init(&b, 0);
    jsonw_str(&b, NULL);
    assert_string_equal(buf_cstr(&b), "null");
    buf_fini(&b);
}

static void test_values_like_jansson(void **state)
{
    (void)state;
    static const char *texts[] = {
        "{}", "[]", "0", "-1", "9223372036854775807", "-9223372036854775808", "true", "false",
        "null", "1.5", "-0.25", "1e+300", "[1,[2,[3,{}]],{\"a\":[]}]",
        "{\"id\":\"pay_1\",\"amount\":1999,\"metadata\":{\"k\":\"v\\u00e9\"},\"attempts\":"
        "[{\"provider\":\"stripe\",\"http_status\":null,\"ok\":true}],\"r\":0.1}",
        "{\"z\":1,\"a\":2,\"m\":3}", /* insertion order, not sorted */
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        json_t *v = json_loads(texts[i], JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        assert_writes_like_jansson(v);
        json_decref(v);
    }
    struct agape_buf b;
    buf_init(&b, 0);
    jsonw_value(&b, NULL);
    assert_int_not_equal(b.error, AGAPE_OK);
    buf_fini(&b);
}

static void test_too_deep_is_an_error(void **state)
{
    (void)state;
    json_t *v = json_array();
    json_t *cur = v;
    for (int i = 0; i < 100; i++) {
        json_t *n = json_array();
        json_array_append_new(cur, n);
        cur = n;
    }
    struct agape_buf b;
    buf_init(&b, 0);
    jsonw_value(&b, v);
    assert_int_equal(b.error, AGAPE_ERANGE);
    buf_fini(&b);
    json_decref(v);
}

/* Both readers give no value, or the same value in the same order. */
static void assert_reads_like_jansson(const char *text, size_t len, size_t flags)
{
    json_error_t e1;
    json_error_t e2;
    json_t *want = json_loadb(text, len, flags, &e1);
    json_t *got = jsonr_loadb(text, len, flags, &e2);
    if (want == NULL) {
        if (got != NULL) {
            fail_msg("jsonr accepted what jansson refuses: '%.*s'", (int)len, text);
        }
        assert_string_equal(e1.text, e2.text); /* the message is jansson's */
        return;
    }
    if (got == NULL) {
        fail_msg("jsonr refused what jansson accepts: '%.*s'", (int)len, text);
    }
    char *a = dump_any(want);
    char *b = dump_any(got);
    assert_non_null(a);
    assert_non_null(b);
    if (strcmp(a, b) != 0 || !json_equal(want, got)) {
        fail_msg("different values for '%.*s': %s vs %s", (int)len, text, a, b);
    }
    free(a);
    free(b);
    json_decref(want);
    json_decref(got);
}

static const char *read_cases[] = {
    "{}", " { } ", "[]", "[ ]", "{\"a\":1}", "{\"a\":1,\"a\":2}", "{\"a\":1,\"b\":{\"a\":[]}}",
    "[1,2,3]", "[-0]", "[01]", "[1.0]", "[1e5]", "[-]", "[1-2]", "[123456789012345678]",
    "[1234567890123456789]", "[9223372036854775808]", "\"str\"", "12", "true", "null",
    "[true,false,null]", "[truex]", "[nul]", "{\"a\" : \"b\" }", "{\"a\"}", "{\"a\":}",
    "{,}", "[,]", "[1,]", "{\"a\":1,}", "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", "[\"\\u00e9\"]",
    "[\"\\u0000\"]", "[\"\\ud800\"]", "[\"\\x\"]", "[\"a\tb\"]", "[\"caf\xc3\xa9\"]",
    "[\"\xc3\"]", "[\"\xed\xa0\x80\"]", "[\"\xf4\x90\x80\x80\"]", "{\"\xc3\xa9\":1}",
    "[1] x", "[1] ", "", "   ", "[", "{\"a\":[1,{\"b\":null}]}", "\xef\xbb\xbf{}",
    "{\"amount\":1999,\"currency\":\"usd\",\"provider\":\"stripe\"}",
};

static void test_reads_like_jansson(void **state)
{
    (void)state;
    static const size_t flags[] = {0, JSON_DECODE_ANY, JSON_REJECT_DUPLICATES,
                                   JSON_DECODE_ANY | JSON_REJECT_DUPLICATES};
    for (size_t i = 0; i < sizeof(read_cases) / sizeof(read_cases[0]); i++) {
        for (size_t f = 0; f < 4; f++) {
            assert_reads_like_jansson(read_cases[i], strlen(read_cases[i]), flags[f]);
        }
    }
    /* an embedded NUL byte */
    assert_reads_like_jansson("[\"a\0b\"]", 7, 0);
    assert_reads_like_jansson("[1]\0", 4, 0);
    /* deeper than the fast path goes: jansson's path, same value */
    char deep[400];
    memset(deep, '[', 150);
    memset(deep + 150, ']', 150);
    assert_reads_like_jansson(deep, 300, 0);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    /* xorshift64: a fixed sequence, so a failure reproduces */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_mutations_read_like_jansson(void **state)
{
    (void)state;
    static const char alphabet[] = "{}[]:,\"\\ 0123456789-+.eEtruefalsn/u\t\n\xc3\xa9\x80\x01";
    static const char *seeds[] = {
        "{\"id\":\"pi_1\",\"object\":\"payment_intent\",\"amount\":1999,\"status\":"
        "\"succeeded\",\"metadata\":{},\"next_action\":null,\"livemode\":false}",
        "[1,-2,[true,false],{\"a\":\"b\\n\",\"c\":[null]}]",
        "{\"error\":{\"type\":\"card_error\",\"code\":\"card_declined\"}}",
    };
    char text[512];
    for (int round = 0; round < 6000; round++) {
        const char *seed = seeds[rng() % 3];
        size_t len = strlen(seed);
        memcpy(text, seed, len);
        int edits = 1 + (int)(rng() % 3);
        for (int e = 0; e < edits; e++) {
            size_t at = len ? (size_t)(rng() % len) : 0;
            char c = alphabet[rng() % (sizeof(alphabet) - 1)];
            switch (rng() % 3) {
            case 0: /* replace */
                if (len) {
                    text[at] = c;
                }
                break;
            case 1: /* insert */
                if (len + 1 < sizeof(text)) {
                    memmove(text + at + 1, text + at, len - at);
                    text[at] = c;
                    len++;
                }
                break;
            default: /* delete */
                if (len) {
                    memmove(text + at, text + at + 1, len - at - 1);
                    len--;
                }
                break;
            }
        }
        assert_reads_like_jansson(text, len, round % 2 ? JSON_DECODE_ANY : 0);
        assert_reads_like_jansson(text, len, JSON_REJECT_DUPLICATES);
    }
}

static void test_reserve_and_dump(void **state)
{
    (void)state;
    struct agape_buf b;
    buf_init(&b, 0);
    jsonw_reserve(&b, 100);
    assert_true(b.cap >= 101);
    assert_string_equal(buf_cstr(&b), "");
    json_t *v = json_pack("{s:i, s:[s, f]}", "a", 1, "b", "x", 0.5);
    jsonw_dump(&b, v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(buf_cstr(&b), "{\"a\":1,\"b\":[\"x\",0.5]}");
    json_decref(v);
    buf_fini(&b);
    buf_init(&b, 0);
    jsonw_key(&b, "k", 1);
    jsonw_int(&b, INT64_MIN);
    jsonw_key(&b, "m", 0);
    jsonw_int(&b, INT64_MAX);
    assert_string_equal(buf_cstr(&b), "\"k\":-9223372036854775808,\"m\":9223372036854775807");
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings_escape_like_jansson),
        cmocka_unit_test(test_invalid_utf8_becomes_replacement),
        cmocka_unit_test(test_values_like_jansson),
        cmocka_unit_test(test_too_deep_is_an_error),
        cmocka_unit_test(test_reads_like_jansson),
        cmocka_unit_test(test_mutations_read_like_jansson),
        cmocka_unit_test(test_reserve_and_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
