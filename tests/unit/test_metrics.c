/* Unit tests of core/metrics.c: the exposition text after known calls
 * (exact lines, cumulative buckets, escaping), exact totals under
 * concurrency, the series cap, and the visitor. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "buf.h"
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int setup(void **state)
{
    (void)state;
    metrics_init();
    return 0;
}

static char *render(void)
{
    struct agape_buf b;
    buf_init(&b, 0);
    assert_int_equal(metrics_render(&b), AGAPE_OK);
    assert_true(b.len > 0);
    assert_int_equal(b.data[b.len - 1], '\n');
    return buf_take(&b);
}

/* The whole line `line` is in `text`. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = strstr(text, line); p; p = strstr(p + 1, line)) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n') {
            return true;
        }
    }
    return false;
}

static void expect_line(const char *text, const char *line)
{
    if (!has_line(text, line)) {
        fail_msg("missing line: %s\n--- in ---\n%s", line, text);
    }
}

static int count_prefix(const char *text, const char *prefix)
{
    int n = 0;
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, prefix, pl) == 0) {
            n++;
        }
    }
    return n;
}

/* Every line is a comment (# HELP / # TYPE) or `name{labels} value` with a
 * metric name of [a-zA-Z_:][a-zA-Z0-9_:]* and balanced, quoted labels. */
static void check_format(const char *text)
{
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, '\n');
        assert_non_null(end);
        if (*p == '#') {
            assert_true(strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0);
        } else {
            const char *q = p;
            assert_true((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || *q == '_');
            while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                   (*q >= '0' && *q <= '9') || *q == '_' || *q == ':') {
                q++;
            }
            if (*q == '{') {
                bool in_str = false;
                for (q++; q < end && (in_str || *q != '}'); q++) {
                    if (in_str && *q == '\\') {
                        q++;
                        assert_true(*q == '\\' || *q == '"' || *q == 'n');
                    } else if (*q == '"') {
                        in_str = !in_str;
                    }
                }
                assert_true(*q == '}');
                q++;
            }
            assert_true(*q == ' ');
            q++;
            assert_true(q < end); /* a value */
            char *vend = NULL;
            strtod(q, &vend);
            assert_true(vend == end || strncmp(q, "+Inf", 4) == 0 || strncmp(q, "NaN", 3) == 0);
        }
        p = end + 1;
    }
}

static void test_render_exact(void **state)
{
    (void)state;
    metrics_http("/v1/payments", 200, 0.003);
    metrics_http("/v1/payments", 200, 0.003);
    metrics_http("/v1/payments", 402, 0.2);
    metrics_http("/healthz", 200, 0.0005);
    metrics_provider_call("stripe", "charge", "ok", 0.05);
    metrics_provider_call("stripe", "charge", "unavailable", 12.5);
    metrics_provider_call("paypal", "charge", "ok", 0.5);
    metrics_retry("stripe");
    metrics_retry("stripe");
    metrics_failover("stripe");
    metrics_short_circuit("paypal");

    char *t = render();
    check_format(t);

    expect_line(t, "# HELP agape_http_requests_total HTTP requests answered, by route template "
                   "and status.");
    expect_line(t, "# TYPE agape_http_requests_total counter");
    expect_line(t, "agape_http_requests_total{route=\"/v1/payments\",status=\"200\"} 2");
    expect_line(t, "agape_http_requests_total{route=\"/v1/payments\",status=\"402\"} 1");
    expect_line(t, "agape_http_requests_total{route=\"/healthz\",status=\"200\"} 1");

    expect_line(t, "# TYPE agape_http_request_duration_seconds histogram");
    static const char *const pay[] = {
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"0.001\"} 0",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"0.005\"} 2",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"0.01\"} 2",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"0.025\"} 2",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"0.05\"} 2",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"0.1\"} 2",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"0.25\"} 3",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"0.5\"} 3",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"1\"} 3",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"2.5\"} 3",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"5\"} 3",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"10\"} 3",
        "agape_http_request_duration_seconds_bucket{route=\"/v1/payments\",le=\"+Inf\"} 3",
        "agape_http_request_duration_seconds_sum{route=\"/v1/payments\"} 0.206",
        "agape_http_request_duration_seconds_count{route=\"/v1/payments\"} 3",
    };
    /* In this order, one after the other. */
    const char *at = strstr(t, pay[0]);
    assert_non_null(at);
    for (size_t i = 0; i < sizeof(pay) / sizeof(pay[0]); i++) {
        size_t n = strlen(pay[i]);
        if (strncmp(at, pay[i], n) != 0 || at[n] != '\n') {
            fail_msg("expected \"%s\" at \"%.120s\"", pay[i], at);
        }
        at += n + 1;
    }
    expect_line(t, "agape_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.001\"} 1");
    expect_line(t, "agape_http_request_duration_seconds_sum{route=\"/healthz\"} 0.0005");

    expect_line(t, "# TYPE agape_provider_calls_total counter");
    expect_line(t, "agape_provider_calls_total{provider=\"stripe\",operation=\"charge\","
                   "outcome=\"ok\"} 1");
    expect_line(t, "agape_provider_calls_total{provider=\"stripe\",operation=\"charge\","
                   "outcome=\"unavailable\"} 1");
    expect_line(t, "agape_provider_calls_total{provider=\"paypal\",operation=\"charge\","
                   "outcome=\"ok\"} 1");
    expect_line(t, "# TYPE agape_provider_call_duration_seconds histogram");
    expect_line(t, "agape_provider_call_duration_seconds_bucket{provider=\"stripe\","
                   "operation=\"charge\",le=\"0.05\"} 1");
    expect_line(t, "agape_provider_call_duration_seconds_bucket{provider=\"stripe\","
                   "operation=\"charge\",le=\"10\"} 1");
    expect_line(t, "agape_provider_call_duration_seconds_bucket{provider=\"stripe\","
                   "operation=\"charge\",le=\"+Inf\"} 2");
    expect_line(t, "agape_provider_call_duration_seconds_sum{provider=\"stripe\","
                   "operation=\"charge\"} 12.55");
    expect_line(t, "agape_provider_call_duration_seconds_count{provider=\"stripe\","
                   "operation=\"charge\"} 2");
    expect_line(t, "agape_provider_call_duration_seconds_count{provider=\"paypal\","
                   "operation=\"charge\"} 1");
    expect_line(t, "# TYPE agape_provider_retries_total counter");
    expect_line(t, "agape_provider_retries_total{provider=\"stripe\"} 2");
    expect_line(t, "# TYPE agape_provider_failovers_total counter");
    expect_line(t, "agape_provider_failovers_total{provider=\"stripe\"} 1");
    expect_line(t, "# TYPE agape_provider_short_circuits_total counter");
    expect_line(t, "agape_provider_short_circuits_total{provider=\"paypal\"} 1");
    expect_line(t, "agape_metrics_series_overflow_total 0");
    expect_line(t, "# TYPE agape_build_info gauge");
    expect_line(t, "agape_build_info{version=\"" AGAPE_VERSION "\"} 1");
    expect_line(t, "# TYPE process_start_time_seconds gauge");

    /* No failover series for paypal: series exist once observed. */
    assert_null(strstr(t, "agape_provider_failovers_total{provider=\"paypal\"}"));
    /* Each family's HELP and TYPE exactly once. */
    assert_int_equal(count_prefix(t, "# TYPE agape_http_requests_total "), 1);
    assert_int_equal(count_prefix(t, "# HELP agape_provider_call_duration_seconds "), 1);

    /* The start time is now (within a minute). */
    const char *st = strstr(t, "\nprocess_start_time_seconds ");
    assert_non_null(st);
    double start = strtod(st + strlen("\nprocess_start_time_seconds "), NULL);
    double now = (double)time(NULL);
    assert_true(start > now - 60 && start <= now + 1);
    free(t);
}

static void test_bucket_bounds_inclusive(void **state)
{
    (void)state;
    metrics_http("/b", 200, 0.005); /* exactly on a bound: counted in le="0.005" */
    metrics_http("/b", 200, 10.0);
    metrics_http("/b", 200, 11.0);  /* only +Inf */
    metrics_http("/b", 200, -1.0);  /* a clock going back counts as 0 */
    char *t = render();
    expect_line(t, "agape_http_request_duration_seconds_bucket{route=\"/b\",le=\"0.001\"} 1");
    expect_line(t, "agape_http_request_duration_seconds_bucket{route=\"/b\",le=\"0.005\"} 2");
    expect_line(t, "agape_http_request_duration_seconds_bucket{route=\"/b\",le=\"5\"} 2");
    expect_line(t, "agape_http_request_duration_seconds_bucket{route=\"/b\",le=\"10\"} 3");
    expect_line(t, "agape_http_request_duration_seconds_bucket{route=\"/b\",le=\"+Inf\"} 4");
    expect_line(t, "agape_http_request_duration_seconds_sum{route=\"/b\"} 21.005");
    expect_line(t, "agape_http_request_duration_seconds_count{route=\"/b\"} 4");
    free(t);
}

static void gauges(struct agape_buf *out, void *arg)
{
    const char *name = arg;
    metrics_gauge_header(out, "agape_circuit_state",
                         "Circuit state: 0 closed, 1 open, 2 half_open.");
    metrics_gauge_line(out, "agape_circuit_state", "provider", name, 2);
    metrics_gauge_line(out, "agape_circuit_state", "provider", "plain", 0);
    metrics_gauge_header(out, "agape_store_map_bytes", "Map size.\nSecond line \\ here.");
    metrics_gauge_line(out, "agape_store_map_bytes", NULL, NULL, 1048576);
    metrics_gauge_line(out, "agape_store_map_bytes_half", NULL, NULL, 0.5);
    metrics_header(out, "agape_store_commits_total", "counter", "Write transactions.");
    metrics_gauge_line(out, "agape_store_commits_total", NULL, NULL, 12);
}

static void test_escaping_and_gauges(void **state)
{
    (void)state;
    metrics_http("/we\\ird\"\nroute", 500, 0);
    metrics_retry(NULL);
    metrics_set_gauge_fn(gauges, (void *)"str\"ipe\\\n");

    char *t = render();
    check_format(t);
    expect_line(t, "agape_http_requests_total{route=\"/we\\\\ird\\\"\\nroute\",status=\"500\"} 1");
    expect_line(t, "agape_http_request_duration_seconds_count{route=\"/we\\\\ird\\\"\\nroute\"} 1");
    expect_line(t, "agape_provider_retries_total{provider=\"\"} 1");
    expect_line(t, "# HELP agape_circuit_state Circuit state: 0 closed, 1 open, 2 half_open.");
    expect_line(t, "# TYPE agape_circuit_state gauge");
    expect_line(t, "agape_circuit_state{provider=\"str\\\"ipe\\\\\\n\"} 2");
    expect_line(t, "agape_circuit_state{provider=\"plain\"} 0");
    expect_line(t, "# HELP agape_store_map_bytes Map size.\\nSecond line \\\\ here.");
    expect_line(t, "agape_store_map_bytes 1048576");
    expect_line(t, "agape_store_map_bytes_half 0.5");
    expect_line(t, "# TYPE agape_store_commits_total counter");
    expect_line(t, "agape_store_commits_total 12");
    /* The callback's lines come last. */
    const char *cb = strstr(t, "# HELP agape_circuit_state");
    assert_non_null(cb);
    assert_null(strstr(cb, "process_start_time_seconds"));
    free(t);

    metrics_set_gauge_fn(NULL, NULL);
    t = render();
    assert_null(strstr(t, "agape_circuit_state"));
    free(t);
}

/* ---------------------------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 10000
#define SHARED_PROVIDERS 50

static void *hammer(void *arg)
{
    int id = (int)(intptr_t)arg;
    char own[32];
    char shared[32];
    snprintf(own, sizeof(own), "/t%d", id);
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_http("/c", 200, 0.002);
        metrics_http(own, 201, 0.02);
        metrics_provider_call("sandbox", "charge", "ok", 0.002);
        /* every thread makes the same 50 series at the same time */
        snprintf(shared, sizeof(shared), "p%d", i % SHARED_PROVIDERS);
        metrics_retry(shared);
    }
    return NULL;
}

static void test_concurrency_exact_totals(void **state)
{
    (void)state;
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, hammer, (void *)(intptr_t)i), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    char *t = render();
    char line[160];
    expect_line(t, "agape_http_requests_total{route=\"/c\",status=\"200\"} 40000");
    expect_line(t, "agape_http_request_duration_seconds_bucket{route=\"/c\",le=\"0.001\"} 0");
    expect_line(t, "agape_http_request_duration_seconds_bucket{route=\"/c\",le=\"0.005\"} 40000");
    expect_line(t, "agape_http_request_duration_seconds_count{route=\"/c\"} 40000");
    expect_line(t, "agape_http_request_duration_seconds_sum{route=\"/c\"} 80");
    for (int i = 0; i < THREADS; i++) {
        snprintf(line, sizeof(line), "agape_http_requests_total{route=\"/t%d\",status=\"201\"} %d",
                 i, PER_THREAD);
        expect_line(t, line);
    }
    expect_line(t, "agape_provider_calls_total{provider=\"sandbox\",operation=\"charge\","
                   "outcome=\"ok\"} 40000");
    expect_line(t, "agape_provider_call_duration_seconds_sum{provider=\"sandbox\","
                   "operation=\"charge\"} 80");
    /* The 50 shared series exist once each, with every increment. */
    assert_int_equal(count_prefix(t, "agape_provider_retries_total{"), SHARED_PROVIDERS);
    for (int i = 0; i < SHARED_PROVIDERS; i++) {
        snprintf(line, sizeof(line), "agape_provider_retries_total{provider=\"p%d\"} %d", i,
                 THREADS * PER_THREAD / SHARED_PROVIDERS);
        expect_line(t, line);
    }
    expect_line(t, "agape_metrics_series_overflow_total 0");
    free(t);
}

static void test_series_cap(void **state)
{
    (void)state;
    char name[32];
    for (int i = 0; i < METRICS_MAX_SERIES; i++) {
        snprintf(name, sizeof(name), "prov%d", i);
        metrics_failover(name);
    }
    assert_int_equal(metrics_overflow(), 0);
    metrics_failover("one-too-many");
    metrics_http("/v1/payments", 200, 0.1); /* two more series: both dropped */
    assert_int_equal(metrics_overflow(), 3);
    metrics_failover("prov7"); /* existing series still count */
    metrics_failover("prov1023");

    char *t = render();
    check_format(t);
    expect_line(t, "agape_metrics_series_overflow_total 3");
    expect_line(t, "agape_provider_failovers_total{provider=\"prov7\"} 2");
    expect_line(t, "agape_provider_failovers_total{provider=\"prov1023\"} 2");
    expect_line(t, "agape_provider_failovers_total{provider=\"prov0\"} 1");
    assert_null(strstr(t, "one-too-many"));
    assert_null(strstr(t, "/v1/payments"));
    assert_int_equal(count_prefix(t, "agape_provider_failovers_total{"), METRICS_MAX_SERIES);
    free(t);

    /* metrics_init starts over. */
    metrics_init();
    metrics_failover("one-too-many");
    assert_int_equal(metrics_overflow(), 0);
    t = render();
    expect_line(t, "agape_provider_failovers_total{provider=\"one-too-many\"} 1");
    assert_int_equal(count_prefix(t, "agape_provider_failovers_total{"), 1);
    free(t);
}

static void test_long_label_cut(void **state)
{
    (void)state;
    char a[200];
    char b[200];
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[150] = 'y'; /* differs only past the kept bytes: the same series */
    metrics_retry(a);
    metrics_retry(b);
    char *t = render();
    char line[128];
    snprintf(line, sizeof(line), "agape_provider_retries_total{provider=\"%.*s\"} 2",
             METRICS_LABEL_MAX - 1, a);
    expect_line(t, line);
    free(t);
}

struct seen {
    int counters;
    int histograms;
    bool saw_payments_200;
    bool saw_provider_hist;
};

static void visit(const struct metrics_sample *s, void *arg)
{
    struct seen *seen = arg;
    if (s->type == METRICS_COUNTER) {
        seen->counters++;
        if (strcmp(s->name, "agape_http_requests_total") == 0 &&
            strcmp(s->label_values[1], "200") == 0) {
            assert_int_equal(s->n_labels, 2);
            assert_string_equal(s->label_names[0], "route");
            assert_string_equal(s->label_values[0], "/v1/payments");
            assert_string_equal(s->label_names[1], "status");
            assert_int_equal(s->value, 3);
            seen->saw_payments_200 = true;
        }
        return;
    }
    seen->histograms++;
    if (strcmp(s->name, "agape_provider_call_duration_seconds") == 0) {
        assert_int_equal(s->n_labels, 2);
        assert_string_equal(s->label_values[0], "stripe");
        assert_string_equal(s->label_values[1], "refund");
        assert_int_equal(s->value, 2);
        assert_true(s->sum > 0.2999 && s->sum < 0.3001);
        assert_true(s->bounds[6] == 0.25);
        assert_int_equal(s->buckets[5], 1);  /* le 0.1 */
        assert_int_equal(s->buckets[6], 2);  /* le 0.25 */
        assert_int_equal(s->buckets[11], 2); /* le 10 */
        seen->saw_provider_hist = true;
    }
}

static void test_foreach(void **state)
{
    (void)state;
    struct seen seen = {0};
    for (int i = 0; i < 3; i++) {
        metrics_http("/v1/payments", 200, 0.01);
    }
    metrics_http("/v1/payments", 502, 0.01);
    metrics_provider_call("stripe", "refund", "ok", 0.1);
    metrics_provider_call("stripe", "refund", "ok", 0.2);
    /* 2 http counters + 1 provider counter; 2 histograms */
    assert_int_equal(metrics_foreach(visit, &seen), 5);
    assert_int_equal(seen.counters, 3);
    assert_int_equal(seen.histograms, 2);
    assert_true(seen.saw_payments_200);
    assert_true(seen.saw_provider_hist);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_render_exact, setup),
        cmocka_unit_test_setup(test_bucket_bounds_inclusive, setup),
        cmocka_unit_test_setup(test_escaping_and_gauges, setup),
        cmocka_unit_test_setup(test_concurrency_exact_totals, setup),
        cmocka_unit_test_setup(test_series_cap, setup),
        cmocka_unit_test_setup(test_long_label_cut, setup),
        cmocka_unit_test_setup(test_foreach, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
