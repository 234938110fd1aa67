/* Unit tests of core/breaker.c: the state machine under a fake clock, the
 * transition log lines and the configuration reader. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "breaker.h"

#include <agape/plugin.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct breaker *make(int failure_run, int window, double ratio, int min_calls,
                            int64_t open_ms, int probes)
{
    struct breaker_config c = breaker_config_defaults();
    c.failure_run = failure_run;
    c.window = window;
    c.failure_ratio = ratio;
    c.min_calls = min_calls;
    c.open_ms = open_ms;
    c.half_open_probes = probes;
    c.probe_successes = probes;
    struct breaker *b = breaker_create("testprov", &c);
    assert_non_null(b);
    return b;
}

static void record_n(struct breaker *b, int n, bool failure, int64_t now)
{
    for (int i = 0; i < n; i++) {
        assert_true(breaker_allow(b, now));
        breaker_record(b, failure, now);
    }
}

/* Opens the default breaker (5 consecutive failures) at `now`. */
static struct breaker *opened_at(int64_t now, int probes)
{
    struct breaker *b = make(5, 100, 0.5, 100, 5000, probes);
    record_n(b, 5, true, now);
    assert_int_equal(breaker_state(b, now), BREAKER_OPEN);
    return b;
}

static void test_defaults(void **state)
{
    (void)state;
    struct breaker_config c = breaker_config_defaults();
    assert_int_equal(c.failure_run, 5);
    assert_int_equal(c.window, 20);
    assert_true(c.failure_ratio == 0.5);
    assert_int_equal(c.min_calls, 10);
    assert_int_equal(c.open_ms, 5000);
    assert_int_equal(c.half_open_probes, 2);
    assert_int_equal(c.probe_successes, 2);
    assert_string_equal(breaker_state_name(BREAKER_CLOSED), "closed");
    assert_string_equal(breaker_state_name(BREAKER_OPEN), "open");
    assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");

    struct breaker *b = breaker_create("p", NULL);
    assert_non_null(b);
    assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
    breaker_destroy(b);

    c.window = 0;
    assert_null(breaker_create("p", &c));
    c = breaker_config_defaults();
    c.min_calls = 21; /* above the window */
    assert_null(breaker_create("p", &c));
}

static void test_run_of_failures_opens(void **state)
{
    (void)state;
    /* The ratio rule is out of reach (min_calls 100): only the run counts. */
    struct breaker *b = make(5, 100, 0.5, 100, 5000, 2);
    struct breaker_snapshot s;

    record_n(b, 4, true, 1000);
    record_n(b, 1, false, 1000);
    record_n(b, 4, true, 1000);
    breaker_snapshot(b, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.consecutive_failures, 4); /* the success broke the first run */

    assert_true(breaker_allow(b, 1001));
    breaker_record(b, true, 1001);
    breaker_snapshot(b, &s);
    assert_int_equal(s.state, BREAKER_OPEN);
    assert_int_equal(s.consecutive_failures, 5);
    assert_int_equal(s.opened_at_ms, 1001);
    assert_int_equal(s.open_until_ms, 6001);
    assert_int_equal(s.transitions, 1);
    assert_false(breaker_allow(b, 1001));
    breaker_destroy(b);
}

static void test_ratio_over_window_opens(void **state)
{
    (void)state;
    /* No run rule; window 10, at least 10 calls, half of them failed. */
    struct breaker *b = make(0, 10, 0.5, 10, 5000, 2);
    struct breaker_snapshot s;

    /* Below min_calls nothing opens, even at 100 % failures... */
    record_n(b, 9, true, 0);
    assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
    breaker_destroy(b);

    /* ...and the window slides: 20 successes, then 4 failures: 4 of 10. */
    b = make(0, 10, 0.5, 10, 5000, 2);
    record_n(b, 20, false, 0);
    record_n(b, 4, true, 0);
    breaker_snapshot(b, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.window_calls, 10);
    assert_int_equal(s.window_failures, 4);
    /* The fifth failure: 5 of the last 10 (only 5 of 25 overall) opens it. */
    record_n(b, 1, true, 7);
    breaker_snapshot(b, &s);
    assert_int_equal(s.state, BREAKER_OPEN);
    assert_int_equal(s.window_failures, 5);
    assert_int_equal(s.opened_at_ms, 7);
    breaker_destroy(b);

    /* Interleaved failures never make a run, but the share opens it. */
    b = make(5, 20, 0.5, 10, 5000, 2);
    for (int i = 0; i < 9; i++) {
        record_n(b, 1, i % 2 == 0, 0); /* F S F S F S F S F: 5 of 9, under min_calls */
    }
    assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
    record_n(b, 1, false, 0); /* the 10th call: 5 of 10 */
    assert_int_equal(breaker_state(b, 0), BREAKER_OPEN);
    breaker_destroy(b);

    /* Failures slide out of the window too: 4 failures, 10 successes
     * (window clean), 4 failures again: 4 of 10, closed. */
    b = make(0, 10, 0.5, 10, 5000, 2);
    record_n(b, 4, true, 0);
    record_n(b, 10, false, 0);
    breaker_snapshot(b, &s);
    assert_int_equal(s.window_failures, 0);
    record_n(b, 4, true, 0);
    breaker_snapshot(b, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.window_failures, 4);
    breaker_destroy(b);

    /* 4 of 10 stays closed. */
    b = make(0, 10, 0.5, 10, 5000, 2);
    record_n(b, 6, false, 0);
    record_n(b, 4, true, 0);
    assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
    breaker_destroy(b);
}

static void test_open_refuses_until_open_ms(void **state)
{
    (void)state;
    struct breaker *b = opened_at(1000, 2);

    assert_false(breaker_allow(b, 1000));
    assert_false(breaker_allow(b, 3000));
    assert_false(breaker_allow(b, 5999));
    assert_int_equal(breaker_state(b, 5999), BREAKER_OPEN);
    /* A late answer of a call admitted before it opened changes nothing. */
    breaker_record(b, false, 5999);
    breaker_record(b, true, 5999);
    assert_int_equal(breaker_state(b, 5999), BREAKER_OPEN);
    assert_int_equal(breaker_state(b, 6000), BREAKER_HALF_OPEN);
    assert_true(breaker_allow(b, 6000));
    breaker_destroy(b);
}

static void test_half_open_lets_exactly_n_probes(void **state)
{
    (void)state;
    struct breaker *b = opened_at(0, 3);
    struct breaker_snapshot s;

    assert_true(breaker_allow(b, 5000));
    assert_true(breaker_allow(b, 5001));
    assert_true(breaker_allow(b, 5002));
    assert_false(breaker_allow(b, 5003));
    assert_false(breaker_allow(b, 5004));
    breaker_snapshot(b, &s);
    assert_int_equal(s.state, BREAKER_HALF_OPEN);
    assert_int_equal(s.probes_inflight, 3);

    /* One resolves: one more may go. */
    breaker_record(b, false, 5010);
    assert_true(breaker_allow(b, 5011));
    assert_false(breaker_allow(b, 5012));

    /* An admission given back without a result frees its place too. */
    breaker_cancel(b, 5013);
    assert_true(breaker_allow(b, 5014));
    assert_false(breaker_allow(b, 5015));
    breaker_snapshot(b, &s);
    assert_int_equal(s.state, BREAKER_HALF_OPEN);
    assert_int_equal(s.probe_successes, 1);
    breaker_destroy(b);
}

static void test_success_closes(void **state)
{
    (void)state;
    struct breaker *b = opened_at(0, 2);
    struct breaker_snapshot s;

    assert_true(breaker_allow(b, 5000));
    assert_true(breaker_allow(b, 5000));
    breaker_record(b, false, 5100);
    assert_int_equal(breaker_state(b, 5100), BREAKER_HALF_OPEN);
    breaker_record(b, false, 5200);
    breaker_snapshot(b, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.window_calls, 0);
    assert_int_equal(s.window_failures, 0);
    assert_int_equal(s.consecutive_failures, 0);
    assert_int_equal(s.transitions, 3); /* → open → half_open → closed */
    for (int i = 0; i < 10; i++) {
        assert_true(breaker_allow(b, 5300));
    }
    /* Closed again with a fresh run: four failures do not reopen it. */
    for (int i = 0; i < 4; i++) {
        breaker_record(b, true, 5300);
    }
    assert_int_equal(breaker_state(b, 5300), BREAKER_CLOSED);
    breaker_destroy(b);
}

static void test_failure_in_half_open_reopens(void **state)
{
    (void)state;
    struct breaker *b = opened_at(0, 2);
    struct breaker_snapshot s;

    assert_true(breaker_allow(b, 5000));
    assert_true(breaker_allow(b, 5000));
    breaker_record(b, false, 5050); /* one success is not enough */
    breaker_record(b, true, 5100);  /* a failure reopens at once */
    breaker_snapshot(b, &s);
    assert_int_equal(s.state, BREAKER_OPEN);
    assert_int_equal(s.opened_at_ms, 5100);
    assert_int_equal(s.transitions, 3);
    assert_false(breaker_allow(b, 5100));
    assert_false(breaker_allow(b, 10099)); /* a whole new open period */
    assert_true(breaker_allow(b, 10100));
    assert_int_equal(breaker_state(b, 10100), BREAKER_HALF_OPEN);
    breaker_destroy(b);
}

static void test_lost_probe_is_forgotten(void **state)
{
    (void)state;
    struct breaker_config c = breaker_config_defaults();
    c.half_open_probes = 1;
    c.probe_successes = 1;
    c.probe_lease_ms = 30000;
    struct breaker *b = breaker_create("p", &c);
    assert_non_null(b);
    record_n(b, 5, true, 0);
    assert_true(breaker_allow(b, 5000)); /* never recorded */
    assert_false(breaker_allow(b, 34999));
    assert_true(breaker_allow(b, 35000));
    breaker_record(b, false, 35001);
    assert_int_equal(breaker_state(b, 35001), BREAKER_CLOSED);
    breaker_destroy(b);
}

struct hammer_arg {
    struct breaker *b;
    bool failure;
    atomic_int bad; /* inconsistent snapshots (cmocka asserts only on the main thread) */
};

static void *hammer(void *arg)
{
    struct hammer_arg *h = arg;
    for (int i = 0; i < 10000; i++) {
        if (breaker_allow(h->b, 100)) {
            breaker_record(h->b, h->failure, 100);
        }
        if (i % 100 == 0) {
            struct breaker_snapshot s;
            breaker_snapshot(h->b, &s);
            if (s.window_calls > 1000 || s.window_failures > s.window_calls) {
                atomic_fetch_add(&h->bad, 1);
            }
        }
    }
    return NULL;
}

static void hammer_4(struct breaker *b, bool failure)
{
    pthread_t th[4];
    struct hammer_arg h = {b, failure, 0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &h), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    assert_int_equal(atomic_load(&h.bad), 0);
}

static void test_threads(void **state)
{
    (void)state;
    /* Only a window entirely of failures opens it: exact counts tell that no
     * update was lost. */
    struct breaker *b = make(0, 1000, 1.0, 1000, 5000, 2);
    struct breaker_snapshot s;

    hammer_4(b, false);
    breaker_snapshot(b, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.window_calls, 1000);
    assert_int_equal(s.window_failures, 0);

    hammer_4(b, true);
    breaker_snapshot(b, &s);
    assert_int_equal(s.state, BREAKER_OPEN);
    assert_int_equal(s.window_failures, 1000);
    assert_int_equal(s.consecutive_failures, 1000);
    assert_int_equal(s.transitions, 1);
    breaker_destroy(b);
}

/* Run fn with stderr (where log lines go) captured into a string. */
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/agape-breaker-log-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(STDERR_FILENO);
    assert_true(fd >= 0 && saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    fn();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);

    off_t len = lseek(fd, 0, SEEK_END);
    assert_true(len >= 0);
    char *text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)len, 0), len);
    close(fd);
    unlink(path);
    return text;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

static void life_cycle(void)
{
    struct breaker *b = make(5, 100, 0.5, 100, 5000, 2);
    record_n(b, 5, true, 0);
    for (int i = 0; i < 5; i++) {
        (void)breaker_allow(b, 100);
        (void)breaker_state(b, 200);
    }
    assert_int_equal(breaker_state(b, 5000), BREAKER_HALF_OPEN);
    assert_true(breaker_allow(b, 5000));
    assert_true(breaker_allow(b, 5000));
    breaker_record(b, true, 5001);
    assert_true(breaker_allow(b, 10001));
    assert_true(breaker_allow(b, 10001));
    breaker_record(b, false, 10002);
    breaker_record(b, false, 10003);
    assert_int_equal(breaker_state(b, 10003), BREAKER_CLOSED);
    breaker_destroy(b);
}

static void test_transitions_logged_once(void **state)
{
    (void)state;
    char *log = capture_stderr(life_cycle);

    assert_int_equal(count_of(log, "\n"), 5);
    assert_int_equal(count_of(log, "\"provider\":\"testprov\""), 5);
    assert_int_equal(count_of(log, "circuit closed \u2192 open (5 consecutive failures)"), 1);
    assert_int_equal(count_of(log, "circuit open \u2192 half_open"), 2);
    assert_int_equal(count_of(log, "circuit half_open \u2192 open (a probe failed)"), 1);
    assert_int_equal(count_of(log, "circuit half_open \u2192 closed (2 probes succeeded)"), 1);
    assert_int_equal(count_of(log, "\"level\":\"warn\""), 2);
    free(log);
}

/* ---------------------------------------------------------------------- */
/* Configuration                                                          */

static int conf_from(const char *text, struct breaker_config *c, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    assert_non_null(j);
    int rc = breaker_config_from_json(c, j, err, errlen);
    json_decref(j);
    return rc;
}

static void test_config_from_json(void **state)
{
    (void)state;
    struct breaker_config c;
    char err[AGAPE_ERR_SIZE] = "";

    /* No table, or no provider table at all: the defaults. */
    memset(&c, 0xff, sizeof(c));
    assert_int_equal(conf_from("{\"plugin\": \"stripe\"}", &c, err, sizeof(err)), AGAPE_OK);
    assert_int_equal(c.window, 20);
    assert_int_equal(c.open_ms, 5000);
    memset(&c, 0xff, sizeof(c));
    assert_int_equal(breaker_config_from_json(&c, NULL, err, sizeof(err)), AGAPE_OK);
    assert_int_equal(c.failure_run, 5);

    assert_int_equal(conf_from("{\"breaker\": {\"failure_run\": 3, \"window\": 50, "
                               "\"failure_ratio\": 0.25, \"min_calls\": 20, "
                               "\"open_seconds\": 1.5, \"half_open_probes\": 4, "
                               "\"probe_successes\": 6}}",
                               &c, err, sizeof(err)),
                     AGAPE_OK);
    assert_int_equal(c.failure_run, 3);
    assert_int_equal(c.window, 50);
    assert_true(c.failure_ratio == 0.25);
    assert_int_equal(c.min_calls, 20);
    assert_int_equal(c.open_ms, 1500);
    assert_int_equal(c.half_open_probes, 4);
    assert_int_equal(c.probe_successes, 6);

    /* probe_successes follows half_open_probes; min_calls shrinks with a small
     * window; integral floats (what Lua makes of 1e1) are integers. */
    assert_int_equal(conf_from("{\"breaker\": {\"half_open_probes\": 3, \"window\": 4.0, "
                               "\"failure_run\": 1e1}}",
                               &c, err, sizeof(err)),
                     AGAPE_OK);
    assert_int_equal(c.probe_successes, 3);
    assert_int_equal(c.window, 4);
    assert_int_equal(c.min_calls, 4);
    assert_int_equal(c.failure_run, 10);
    /* An empty Lua table is an empty object. */
    assert_int_equal(conf_from("{\"breaker\": {}}", &c, err, sizeof(err)), AGAPE_OK);
    assert_int_equal(c.half_open_probes, 2);
}

static void expect_refused(const char *text, const char *msg)
{
    struct breaker_config c = breaker_config_defaults();
    struct breaker_config before = c;
    char err[AGAPE_ERR_SIZE] = "";
    c.window = 77;
    before.window = 77;
    assert_int_equal(conf_from(text, &c, err, sizeof(err)), AGAPE_EINVAL);
    if (strcmp(err, msg) != 0) {
        fail_msg("for %s: got \"%s\", expected \"%s\"", text, err, msg);
    }
    assert_memory_equal(&c, &before, sizeof(c)); /* untouched */
}

static void test_config_refused(void **state)
{
    (void)state;
    expect_refused("{\"breaker\": true}", "breaker: expected a table, got a boolean");
    expect_refused("{\"breaker\": [1, 2]}", "breaker: expected a table, got a list");
    expect_refused("{\"breaker\": {\"window\": 0}}",
                   "breaker.window: expected an integer between 1 and 1000, got 0");
    expect_refused("{\"breaker\": {\"window\": \"20\"}}",
                   "breaker.window: expected an integer between 1 and 1000, got a string");
    expect_refused("{\"breaker\": {\"failure_run\": 2.5}}",
                   "breaker.failure_run: expected an integer between 0 and 100000, got a number");
    expect_refused("{\"breaker\": {\"failure_run\": -1}}",
                   "breaker.failure_run: expected an integer between 0 and 100000, got -1");
    expect_refused("{\"breaker\": {\"failure_ratio\": 1.5}}",
                   "breaker.failure_ratio: expected a number above 0 and at most 1, got 1.5");
    expect_refused("{\"breaker\": {\"failure_ratio\": 0}}",
                   "breaker.failure_ratio: expected a number above 0 and at most 1, got 0");
    expect_refused("{\"breaker\": {\"failure_ratio\": \"half\"}}",
                   "breaker.failure_ratio: expected a number above 0 and at most 1, "
                   "got a string");
    expect_refused("{\"breaker\": {\"min_calls\": 30}}",
                   "breaker.min_calls: expected an integer between 1 and 20, got 30");
    expect_refused("{\"breaker\": {\"window\": 5, \"min_calls\": 6}}",
                   "breaker.min_calls: expected an integer between 1 and 5, got 6");
    expect_refused("{\"breaker\": {\"open_seconds\": 0}}",
                   "breaker.open_seconds: expected a number between 0.001 and 86400, got 0");
    expect_refused("{\"breaker\": {\"open_seconds\": null}}",
                   "breaker.open_seconds: expected a number between 0.001 and 86400, got nil");
    expect_refused("{\"breaker\": {\"half_open_probes\": 0}}",
                   "breaker.half_open_probes: expected an integer between 1 and 1000, got 0");
    expect_refused("{\"breaker\": {\"probe_successes\": false}}",
                   "breaker.probe_successes: expected an integer between 1 and 1000, "
                   "got a boolean");
    expect_refused("{\"breaker\": {\"windw\": 10}}",
                   "breaker.windw: unknown key (known: failure_run, window, failure_ratio, "
                   "min_calls, open_seconds, half_open_probes, probe_successes)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_run_of_failures_opens),
        cmocka_unit_test(test_ratio_over_window_opens),
        cmocka_unit_test(test_open_refuses_until_open_ms),
        cmocka_unit_test(test_half_open_lets_exactly_n_probes),
        cmocka_unit_test(test_success_closes),
        cmocka_unit_test(test_failure_in_half_open_reopens),
        cmocka_unit_test(test_lost_probe_is_forgotten),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_transitions_logged_once),
        cmocka_unit_test(test_config_from_json),
        cmocka_unit_test(test_config_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
