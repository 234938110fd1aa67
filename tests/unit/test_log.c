/* Unit tests of core/log.c (the JSON lines, written by hand) and
 * core/idgen.c (identifiers from a per-thread pool). The log goes to stderr,
 * so each test reads it back through a pipe put in place of fd 2. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "idgen.h"
#include "log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int saved_stderr = -1;
static int pipe_rd = -1;

static void capture_start(void)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
    close(fds[1]);
    pipe_rd = fds[0];
}

/* Everything logged since capture_start (malloc'd). */
static char *capture_end(void)
{
    dup2(saved_stderr, STDERR_FILENO); /* closes the pipe's last write end */
    close(saved_stderr);
    size_t cap = 1 << 20;
    size_t len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    ssize_t n;
    while ((n = read(pipe_rd, out + len, cap - 1 - len)) > 0) {
        len += (size_t)n;
    }
    out[len] = '\0';
    close(pipe_rd);
    return out;
}

static json_t *only_line(const char *text)
{
    const char *nl = strchr(text, '\n');
    assert_non_null(nl);
    assert_true(nl[1] == '\0'); /* exactly one line */
    json_error_t e;
    json_t *o = json_loadb(text, (size_t)(nl - text), 0, &e);
    if (o == NULL) {
        fail_msg("not JSON (%s): %s", e.text, text);
    }
    return o;
}

static void test_fields_in_order(void **state)
{
    (void)state;
    capture_start();
    log_event(AGAPE_LOG_WARN,
              &(struct log_fields){.request_id = "req_1", .route = "/v1/payments",
                                   .provider = "stripe", .operation = "charge",
                                   .outcome = "ok", .status = 201, .latency_ms = 1.5},
              "POST %s", "/v1/payments");
    char *text = capture_end();
    json_t *o = only_line(text);
    static const char *keys[] = {"time", "level", "request_id", "route", "provider",
                                 "operation", "outcome", "status", "latency_ms", "msg"};
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        assert_true(i < sizeof(keys) / sizeof(keys[0]));
        assert_string_equal(k, keys[i]);
        i++;
    }
    assert_int_equal(i, sizeof(keys) / sizeof(keys[0]));
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 201);
    assert_true(json_number_value(json_object_get(o, "latency_ms")) == 1.5);
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "POST /v1/payments");
    const char *t = json_string_value(json_object_get(o, "time"));
    assert_int_equal(strlen(t), 24); /* 2026-11-28T10:00:00.123Z */
    assert_true(t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
    json_decref(o);
    free(text);

    /* no fields: time, level, msg; absent members left out */
    capture_start();
    log_event(AGAPE_LOG_INFO, &(struct log_fields){.latency_ms = -1}, "plain");
    log_msg(AGAPE_LOG_DEBUG, NULL, "below the level: not written");
    text = capture_end();
    o = only_line(text);
    assert_int_equal(json_object_size(o), 3);
    json_decref(o);
    free(text);
}

static void test_message_escaped_and_redacted(void **state)
{
    (void)state;
    log_secret_add("sk_test_secretvalue");
    capture_start();
    log_msg(AGAPE_LOG_ERROR, "prov\"x", "quote \" backslash \\ nl \n tab \t ctl \x01 caf\xc3\xa9 "
            "arrow \xe2\x86\x92 bad \xff key sk_test_secretvalue end");
    char *text = capture_end();
    assert_null(strstr(text, "sk_test_secretvalue"));
    json_t *o = only_line(text);
    assert_string_equal(json_string_value(json_object_get(o, "provider")), "prov\"x");
    assert_string_equal(json_string_value(json_object_get(o, "msg")),
                        "quote \" backslash \\ nl \n tab \t ctl \x01 caf\xc3\xa9 arrow "
                        "\xe2\x86\x92 bad \xef\xbf\xbd key [redacted] end");
    json_decref(o);
    free(text);
}

static void test_long_message_whole(void **state)
{
    (void)state;
    size_t n = 5000;
    char *big = malloc(n + 1);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++) {
        big[i] = (char)('a' + i % 26);
    }
    big[n] = '\0';
    capture_start();
    log_msg(AGAPE_LOG_INFO, NULL, "%s", big);
    char *text = capture_end();
    json_t *o = only_line(text);
    assert_string_equal(json_string_value(json_object_get(o, "msg")), big);
    json_decref(o);
    free(text);
    free(big);
}

static void test_ids(void **state)
{
    (void)state;
    char a[48];
    char b[48];
    assert_int_equal(idgen_hex("req_", 12, a, sizeof(a)), AGAPE_OK);
    assert_int_equal(strlen(a), 4 + 24);
    assert_memory_equal(a, "req_", 4);
    for (size_t i = 4; a[i]; i++) {
        assert_non_null(strchr("0123456789abcdef", a[i]));
    }
    /* many in a row (the pool refills) are all different */
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(idgen_hex("x", 8, b, sizeof(b)), AGAPE_OK);
        assert_string_not_equal(a, b);
        if (i == 0) {
            memcpy(a, b, sizeof(a));
        }
    }
    assert_int_equal(idgen_hex("req_", 12, a, 20), AGAPE_ERANGE);
    unsigned char raw[65];
    assert_int_equal(idgen_random(raw, 65), AGAPE_ERANGE);
    assert_int_equal(idgen_random(raw, 64), AGAPE_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_in_order),
        cmocka_unit_test(test_message_escaped_and_redacted),
        cmocka_unit_test(test_long_message_whole),
        cmocka_unit_test(test_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
