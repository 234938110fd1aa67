/* Unit tests of core/ratelimit.c with a fake clock: burst then refusal with
 * the right Retry-After, refill, independent keys, unlimited, the bounded
 * table, concurrency and the configuration reader. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ratelimit.h"

#include <agape/plugin.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Take n tokens at `now`, all of which must be granted. */
static void take_ok(struct ratelimit *rl, const char *key, int n, int64_t now)
{
    for (int i = 0; i < n; i++) {
        int64_t ra = -1;
        if (!ratelimit_take(rl, key, now, &ra)) {
            fail_msg("take %d of %d for %s at %lld refused", i + 1, n, key, (long long)now);
        }
        assert_int_equal(ra, 0);
    }
}

static int64_t refused_for(struct ratelimit *rl, const char *key, int64_t now)
{
    int64_t ra = -1;
    assert_false(ratelimit_take(rl, key, now, &ra));
    return ra;
}

static void test_burst_then_refusal(void **state)
{
    (void)state;
    /* 10/s, burst 5: one token every 100 ms. */
    struct ratelimit *rl = ratelimit_create(10, 5);
    assert_non_null(rl);
    take_ok(rl, "key_a", 5, 1000);
    assert_int_equal(refused_for(rl, "key_a", 1000), 100);
    assert_int_equal(refused_for(rl, "key_a", 1030), 70);
    assert_int_equal(refused_for(rl, "key_a", 1099), 1);
    take_ok(rl, "key_a", 1, 1100); /* the Retry-After was right */
    assert_int_equal(refused_for(rl, "key_a", 1100), 100);

    struct ratelimit_stats st;
    ratelimit_stats(rl, &st);
    assert_int_equal(st.allowed, 6);
    assert_int_equal(st.refused, 4);
    assert_int_equal(st.evictions, 0);
    /* retry_after may be NULL */
    assert_false(ratelimit_take(rl, "key_a", 1100, NULL));
    ratelimit_destroy(rl);
}

static void test_refill_over_time(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_create(50, 100);
    assert_non_null(rl);
    take_ok(rl, "k", 100, 0);
    assert_int_equal(refused_for(rl, "k", 0), 20);
    /* 1 s later: 50 tokens back, not more. */
    take_ok(rl, "k", 50, 1000);
    assert_int_equal(refused_for(rl, "k", 1000), 20);
    /* A long pause refills to the burst, never beyond it. */
    take_ok(rl, "k", 100, 60000);
    assert_int_equal(refused_for(rl, "k", 60000), 20);
    /* A steady 50/s is sustained: one every 20 ms. */
    for (int64_t t = 60020; t < 61000; t += 20) {
        take_ok(rl, "k", 1, t);
        assert_int_equal(refused_for(rl, "k", t), 20);
    }
    /* A fractional rate: 3/s, burst 1 → the next token after 333.33… ms. */
    struct ratelimit *slow = ratelimit_create(3, 1);
    assert_non_null(slow);
    take_ok(slow, "k", 1, 0);
    assert_int_equal(refused_for(slow, "k", 0), 334);
    assert_int_equal(refused_for(slow, "k", 333), 1);
    take_ok(slow, "k", 1, 334);
    /* The clock going back neither refills nor breaks anything (the refill
     * at 334 was capped at the burst of 1, so the bucket is empty). */
    assert_int_equal(refused_for(slow, "k", 100), 334);
    assert_int_equal(refused_for(slow, "k", 334), 334);
    ratelimit_destroy(slow);
    ratelimit_destroy(rl);
}

static void test_independent_keys(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_create(1, 2);
    assert_non_null(rl);
    take_ok(rl, "key_0000000000000001", 2, 0);
    assert_int_equal(refused_for(rl, "key_0000000000000001", 0), 1000);
    take_ok(rl, "key_0000000000000002", 2, 0);
    assert_int_equal(refused_for(rl, "key_0000000000000002", 0), 1000);
    /* Many keys at once: each has its own full bucket. */
    char k[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof(k), "key_%016d", 100 + i);
        take_ok(rl, k, 2, 10);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof(k), "key_%016d", 100 + i);
        assert_int_equal(refused_for(rl, k, 10), 1000);
    }
    /* The first keys were not disturbed by the others. */
    assert_int_equal(refused_for(rl, "key_0000000000000001", 10), 990);
    struct ratelimit_stats st;
    ratelimit_stats(rl, &st);
    assert_int_equal(st.evictions, 0);
    ratelimit_destroy(rl);
}

static void test_unlimited(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_create(0, 0);
    assert_non_null(rl);
    take_ok(rl, "k", 100000, 0);
    ratelimit_destroy(rl);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    assert_null(ratelimit_create(-1, 10));
    assert_null(ratelimit_create(10, 0.5));
    assert_null(ratelimit_create(10, -1));
    assert_null(ratelimit_create(1.0 / 0.0, 10));
    assert_null(ratelimit_create(10, 0.0 / 0.0));
}

static void test_bounded_table(void **state)
{
    (void)state;
    /* Far more keys than entries: memory stays fixed; idle buckets are
     * reused silently, active ones are evicted and counted. */
    struct ratelimit *rl = ratelimit_create(1, 1);
    assert_non_null(rl);
    char k[32];
    for (int i = 0; i < 3 * RATELIMIT_BUCKETS; i++) {
        snprintf(k, sizeof(k), "key_%d", i);
        take_ok(rl, k, 1, 0);
    }
    struct ratelimit_stats st;
    ratelimit_stats(rl, &st);
    assert_int_equal(st.evictions, 2 * RATELIMIT_BUCKETS);
    assert_int_equal(st.allowed, 3 * RATELIMIT_BUCKETS);

    /* Once they are all full again (1 s later), reuse is no eviction. */
    for (int i = 0; i < RATELIMIT_BUCKETS / 4; i++) {
        snprintf(k, sizeof(k), "other_%d", i);
        take_ok(rl, k, 1, 5000);
    }
    struct ratelimit_stats st2;
    ratelimit_stats(rl, &st2);
    assert_int_equal(st2.evictions, st.evictions);
    ratelimit_destroy(rl);
}

#define THREADS 4
#define PER_THREAD 10000

struct worker {
    struct ratelimit *rl;
    int granted;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        if (ratelimit_take(w->rl, "shared", 0, NULL)) {
            w->granted++;
        }
    }
    return NULL;
}

static void test_concurrent_takes(void **state)
{
    (void)state;
    /* At a frozen clock, exactly `burst` tokens exist, whoever takes them. */
    struct ratelimit *rl = ratelimit_create(1, 1000);
    assert_non_null(rl);
    struct worker w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i].rl = rl;
        w[i].granted = 0;
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &w[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        total += w[i].granted;
    }
    assert_int_equal(total, 1000);
    ratelimit_destroy(rl);
}

static int conf_from(const char *text, double *rate, double *burst, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    assert_non_null(j);
    int rc = ratelimit_config_from_json(j, rate, burst, err, errlen);
    json_decref(j);
    return rc;
}

static void test_config(void **state)
{
    (void)state;
    double rate = -1;
    double burst = -1;
    char err[AGAPE_ERR_SIZE] = "";

    assert_int_equal(ratelimit_config_from_json(NULL, &rate, &burst, err, sizeof(err)),
                     AGAPE_OK);
    assert_true(rate == 0.0);
    assert_int_equal(conf_from("{\"requests_per_second\": 50, \"burst\": 100}", &rate, &burst,
                               err, sizeof(err)),
                     AGAPE_OK);
    assert_true(rate == 50.0 && burst == 100.0);
    assert_int_equal(conf_from("{\"requests_per_second\": 2.5}", &rate, &burst, err,
                               sizeof(err)),
                     AGAPE_OK);
    assert_true(rate == 2.5 && burst == 2.5);
    assert_int_equal(conf_from("{\"requests_per_second\": 0.2}", &rate, &burst, err,
                               sizeof(err)),
                     AGAPE_OK);
    assert_true(burst == 1.0);

    rate = 7;
    assert_int_equal(conf_from("{\"burst\": \"100\"}", &rate, &burst, err, sizeof(err)),
                     AGAPE_EINVAL);
    assert_string_equal(err, "rate_limit.burst: expected a number between 1 and 1e9, got a "
                             "string");
    assert_true(rate == 7); /* untouched */
    assert_int_equal(conf_from("{\"requests_per_second\": -5}", &rate, &burst, err, sizeof(err)),
                     AGAPE_EINVAL);
    assert_string_equal(err, "rate_limit.requests_per_second: expected a number between 0 and "
                             "1e9, got -5");
    assert_int_equal(conf_from("{\"burst\": 0.5}", &rate, &burst, err, sizeof(err)),
                     AGAPE_EINVAL);
    assert_string_equal(err, "rate_limit.burst: expected a number between 1 and 1e9, got 0.5");
    assert_int_equal(conf_from("{\"rps\": 5}", &rate, &burst, err, sizeof(err)), AGAPE_EINVAL);
    assert_string_equal(err, "rate_limit.rps: unknown key (known: requests_per_second, burst)");
    assert_int_equal(conf_from("50", &rate, &burst, err, sizeof(err)), AGAPE_EINVAL);
    assert_string_equal(err, "rate_limit: expected a table, got a number");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refusal),
        cmocka_unit_test(test_refill_over_time),
        cmocka_unit_test(test_independent_keys),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_bounded_table),
        cmocka_unit_test(test_concurrent_takes),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
