/* Tests of the configuration loader and the .env reader. */
#include "conf.h"

#include <agape/plugin.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define FIX AGAPE_FIXTURES "/conf"
#define SHIPPED AGAPE_SOURCE_DIR "/etc/agape.conf"

static void assert_json_eq(json_t *got, const char *want_json)
{
    json_error_t jerr;
    json_t *want = json_loads(want_json, JSON_DECODE_ANY, &jerr);

    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("got %s, expected %s", g ? g : "(null)", want_json);
    }
    json_decref(want);
}

/* The problem that contains `needle`, or a failure listing them all. */
static const char *find_problem(const struct problems *p, const char *needle)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strstr(p->items[i], needle) != NULL) {
            return p->items[i];
        }
    }
    for (size_t i = 0; i < p->n; i++) {
        print_error("problem: %s\n", p->items[i]);
    }
    fail_msg("no problem mentions '%s'", needle);
    return NULL;
}

static struct conf *load_ok(const char *path)
{
    struct problems p = {0};
    struct conf *c = NULL;
    int rc = conf_load(path, &c, &p);

    if (rc != AGAPE_OK) {
        for (size_t i = 0; i < p.n; i++) {
            print_error("problem: %s\n", p.items[i]);
        }
        fail_msg("conf_load(%s) = %d", path, rc);
    }
    assert_int_equal(p.n, 0);
    assert_non_null(c);
    problems_free(&p);
    return c;
}

/* A throw-away config file with `text`; the path goes into out. */
static void write_tmp_conf(const char *text, char *out, size_t outlen)
{
    FILE *f;

    snprintf(out, outlen, "/tmp/agape-conf-XXXXXX");
    {
        int fd = mkstemp(out);
        assert_true(fd >= 0);
        f = fdopen(fd, "w");
    }
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void test_defaults(void **state)
{
    struct conf *c = load_ok(FIX "/empty.conf");

    (void)state;
    assert_string_equal(c->path, FIX "/empty.conf");
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8080);
    assert_string_equal(c->public_url, "http://127.0.0.1:8080");
    assert_string_equal(c->data_dir, "var/agape");
    assert_string_equal(c->plugin_dir, "build/plugins");
    assert_string_equal(c->scripts_dir, "scripts");
    assert_json_eq(c->providers, "{}");
    assert_json_eq(c->raw, "{}");
    assert_int_equal(c->body_max, 1048576);
    assert_int_equal(c->lua_instructions, 10000000);
    assert_int_equal(c->lua_memory, 67108864);
    assert_int_equal(c->http_threads, 2);
    assert_int_equal(c->payment_deadline_ms, 30000);
    assert_int_equal(c->connect_timeout_ms, 2000);
    assert_int_equal(c->attempt_timeout_ms, 10000);
    assert_int_equal(c->max_retries, 2);
    assert_int_equal(c->backoff_base_ms, 100);
    assert_int_equal(c->backoff_max_ms, 2000);
    conf_free(c);
}

static void test_env_with_default(void **state)
{
    struct conf *c;

    (void)state;
    unsetenv("AGAPE_TEST_LISTEN");
    unsetenv("AGAPE_TEST_PUBLIC_URL");
    unsetenv("AGAPE_TEST_DATA_DIR");
    unsetenv("AGAPE_TEST_UNSET_VARIABLE");
    c = load_ok(FIX "/env.conf");
    assert_string_equal(c->listen_host, "0.0.0.0");
    assert_int_equal(c->listen_port, 9090);
    assert_string_equal(c->public_url, "http://127.0.0.1:8080"); /* env() gave nil */
    assert_string_equal(c->data_dir, "/tmp/agape-data");
    assert_string_equal(c->plugin_dir, "plugins-fallback");
    assert_null(json_object_get(c->raw, "public_url"));
    conf_free(c);

    setenv("AGAPE_TEST_LISTEN", "[::1]:7070", 1);
    setenv("AGAPE_TEST_PUBLIC_URL", "https://pay.example.com", 1);
    setenv("AGAPE_TEST_DATA_DIR", "", 1); /* empty counts as unset: the default */
    c = load_ok(FIX "/env.conf");
    assert_string_equal(c->listen_host, "::1");
    assert_int_equal(c->listen_port, 7070);
    assert_string_equal(c->public_url, "https://pay.example.com");
    assert_string_equal(c->data_dir, "/tmp/agape-data");
    conf_free(c);
    unsetenv("AGAPE_TEST_LISTEN");
    unsetenv("AGAPE_TEST_PUBLIC_URL");
    unsetenv("AGAPE_TEST_DATA_DIR");
}

static void test_dotenv(void **state)
{
    struct problems p = {0};

    (void)state;
    setenv("AGAPE_TEST_PRESET", "from-environment", 1);
    unsetenv("AGAPE_TEST_PLAIN");
    unsetenv("AGAPE_TEST_EXPORTED");
    unsetenv("AGAPE_TEST_DOUBLE");
    unsetenv("AGAPE_TEST_SINGLE");
    unsetenv("AGAPE_TEST_SPACES");
    unsetenv("AGAPE_TEST_EMPTY");
    unsetenv("AGAPE_TEST_HASH");
    assert_int_equal(conf_load_dotenv(FIX "/dotenv", &p), AGAPE_OK);
    assert_int_equal(p.n, 0);
    assert_string_equal(getenv("AGAPE_TEST_PLAIN"), "plain value");
    assert_string_equal(getenv("AGAPE_TEST_EXPORTED"), "exported");
    assert_string_equal(getenv("AGAPE_TEST_DOUBLE"),
                        "double \"quoted\" # not a comment\nsecond line");
    assert_string_equal(getenv("AGAPE_TEST_SINGLE"), "single $NOT_EXPANDED \\n raw");
    assert_string_equal(getenv("AGAPE_TEST_SPACES"), "spaced");
    assert_non_null(getenv("AGAPE_TEST_EMPTY"));
    assert_string_equal(getenv("AGAPE_TEST_EMPTY"), "");
    assert_string_equal(getenv("AGAPE_TEST_HASH"), "a#b");
    /* a variable already set wins */
    assert_string_equal(getenv("AGAPE_TEST_PRESET"), "from-environment");
    /* a missing file is fine */
    assert_int_equal(conf_load_dotenv(FIX "/no-such-dotenv", &p), AGAPE_OK);
    assert_int_equal(p.n, 0);
    unsetenv("AGAPE_TEST_PRESET");
}

static void test_dotenv_malformed(void **state)
{
    struct problems p = {0};

    (void)state;
    unsetenv("AGAPE_TEST_BAD_OK");
    unsetenv("AGAPE_TEST_BAD_LAST");
    unsetenv("AGAPE_TEST_BAD_QUOTE");
    assert_int_equal(conf_load_dotenv(FIX "/dotenv_bad", &p), AGAPE_EINVAL);
    assert_int_equal(p.n, 4);
    find_problem(&p, FIX "/dotenv_bad:2: expected NAME=VALUE");
    find_problem(&p, FIX "/dotenv_bad:3: expected NAME=VALUE");
    find_problem(&p, FIX "/dotenv_bad:4: AGAPE_TEST_BAD_QUOTE: unterminated");
    find_problem(&p, FIX "/dotenv_bad:5: AGAPE_TEST_BAD_AFTER: unexpected text");
    /* no value is ever echoed */
    for (size_t i = 0; i < p.n; i++) {
        assert_null(strstr(p.items[i], "secret value"));
    }
    /* the good lines still count */
    assert_string_equal(getenv("AGAPE_TEST_BAD_OK"), "fine");
    assert_string_equal(getenv("AGAPE_TEST_BAD_LAST"), "also fine");
    assert_null(getenv("AGAPE_TEST_BAD_QUOTE"));
    problems_free(&p);
}

static void test_dotenv_long_line(void **state)
{
    char path[64];
    struct problems p = {0};
    FILE *f;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/agape-dotenv-XXXXXX");
    f = fdopen(mkstemp(path), "w");
    assert_non_null(f);
    fputs("AGAPE_TEST_LONG=", f);
    for (int i = 0; i < 9000; i++) {
        fputc('x', f);
    }
    fputs("\nAGAPE_TEST_AFTER_LONG=yes\n", f);
    fclose(f);
    unsetenv("AGAPE_TEST_LONG");
    unsetenv("AGAPE_TEST_AFTER_LONG");
    assert_int_equal(conf_load_dotenv(path, &p), AGAPE_EINVAL);
    assert_int_equal(p.n, 1);
    assert_non_null(strstr(p.items[0], ":1: line longer than 8192 bytes"));
    assert_null(getenv("AGAPE_TEST_LONG"));
    assert_string_equal(getenv("AGAPE_TEST_AFTER_LONG"), "yes");
    problems_free(&p);
    unlink(path);
}

/* conf_load reads .env from the working directory. */
static void test_conf_load_reads_dotenv(void **state)
{
    char dir[] = "/tmp/agape-conf-dir-XXXXXX";
    char cwd[PATH_MAX];
    struct problems p = {0};
    struct conf *c = NULL;
    FILE *f;

    (void)state;
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0);
    f = fopen(".env", "w");
    assert_non_null(f);
    fputs("AGAPE_TEST_DOTENV_DIR=/srv/from-dotenv\n", f);
    fclose(f);
    f = fopen("agape.conf", "w");
    assert_non_null(f);
    fputs("data_dir = env(\"AGAPE_TEST_DOTENV_DIR\", \"unset\")\n", f);
    fclose(f);
    unsetenv("AGAPE_TEST_DOTENV_DIR");
    assert_int_equal(conf_load("agape.conf", &c, &p), AGAPE_OK);
    assert_string_equal(c->data_dir, "/srv/from-dotenv");
    conf_free(c);

    /* a malformed .env makes the whole load fail, naming the line */
    f = fopen(".env", "w");
    assert_non_null(f);
    fputs("# comment\nnot valid\n", f);
    fclose(f);
    assert_int_equal(conf_load("agape.conf", &c, &p), AGAPE_EINVAL);
    assert_null(c);
    find_problem(&p, ".env:2: expected NAME=VALUE");
    problems_free(&p);

    unlink(".env");
    unlink("agape.conf");
    assert_int_equal(chdir(cwd), 0);
    rmdir(dir);
    unsetenv("AGAPE_TEST_DOTENV_DIR");
}

static void test_lua_errors_have_file_and_line(void **state)
{
    struct problems p = {0};
    struct conf *c = (struct conf *)0x1;

    (void)state;
    assert_int_equal(conf_load(FIX "/syntax.conf", &c, &p), AGAPE_EINVAL);
    assert_null(c);
    assert_int_equal(p.n, 1);
    assert_non_null(strstr(p.items[0], FIX "/syntax.conf:3:"));
    problems_free(&p);

    assert_int_equal(conf_load(FIX "/runtime.conf", &c, &p), AGAPE_EINVAL);
    assert_int_equal(p.n, 1);
    find_problem(&p, FIX "/runtime.conf:2: attempt to concatenate a nil value");
    problems_free(&p);

    /* an endless chunk stops, even behind pcall */
    assert_int_equal(conf_load(FIX "/budget.conf", &c, &p), AGAPE_EINVAL);
    assert_int_equal(p.n, 1);
    find_problem(&p, "budget of 10000000 instructions");
    find_problem(&p, FIX "/budget.conf:2:");
    problems_free(&p);

    /* a missing file */
    assert_int_equal(conf_load(FIX "/nonexistent.conf", &c, &p), AGAPE_EINVAL);
    find_problem(&p, FIX "/nonexistent.conf: cannot open");
    problems_free(&p);

    /* the sandbox: no io, no os.execute */
    {
        char path[64];
        write_tmp_conf("data_dir = io.open('/etc/passwd'):read('a')\n", path, sizeof(path));
        assert_int_equal(conf_load(path, &c, &p), AGAPE_EINVAL);
        find_problem(&p, ":1: attempt to index a nil value (global 'io')");
        problems_free(&p);
        unlink(path);
    }
    /* problems may go nowhere; the return code still says it failed */
    assert_int_equal(conf_load(FIX "/syntax.conf", &c, NULL), AGAPE_EINVAL);
    assert_null(c);
}

static void test_bad_listen(void **state)
{
    static const char *const bad[] = {
        "listen = 'localhost'",       "listen = '127.0.0.1:0'",  "listen = '127.0.0.1:70000'",
        "listen = '127.0.0.1:80ab'",  "listen = ':8080'",        "listen = '::1:8080'",
        "listen = 8080",              "listen = '127.0.0.1:'",   "listen = '127.0.0.1:-5'",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[64];
        struct problems p = {0};
        struct conf *c = NULL;
        write_tmp_conf(bad[i], path, sizeof(path));
        if (conf_load(path, &c, &p) != AGAPE_EINVAL) {
            fail_msg("accepted: %s", bad[i]);
        }
        assert_int_equal(p.n, 1);
        find_problem(&p, ": listen: expected");
        problems_free(&p);
        unlink(path);
    }
    {
        char path[64];
        struct conf *c;
        write_tmp_conf("listen = '0.0.0.0:65535'", path, sizeof(path));
        c = load_ok(path);
        assert_string_equal(c->listen_host, "0.0.0.0");
        assert_int_equal(c->listen_port, 65535);
        conf_free(c);
        unlink(path);
    }
}

static void test_providers_table(void **state)
{
    struct conf *c;
    const char *order[3];
    const char *key;
    json_t *v;
    size_t i = 0;

    (void)state;
    unsetenv("AGAPE_TEST_UNSET_VARIABLE");
    c = load_ok(FIX "/providers.conf");
    assert_json_eq(c->providers,
                   "{\"zeta\": {\"plugin\": \"sandbox\", \"secret_key\": \"zeta-secret-value\","
                   " \"retries\": 3, \"ratio\": 0.5, \"live\": false, \"tags\": [\"a\", \"b\"],"
                   " \"nested\": {\"deep\": {\"x\": 1}}},"
                   " \"alpha\": {\"plugin\": \"stripe\", \"base_url\": \"http://127.0.0.1:9\"},"
                   " \"beta\": {\"plugin\": \"paypal\"}}");
    /* in the order of the file */
    json_object_foreach(c->providers, key, v) {
        assert_true(i < 3);
        order[i++] = key;
    }
    assert_int_equal(i, 3);
    assert_string_equal(order[0], "zeta");
    assert_string_equal(order[1], "alpha");
    assert_string_equal(order[2], "beta");
    assert_true(json_equal(json_object_get(c->raw, "providers"), c->providers));
    conf_free(c);
}

static void test_limits(void **state)
{
    struct conf *c = load_ok(FIX "/limits.conf");

    (void)state;
    assert_int_equal(c->body_max, 2000000);
    assert_int_equal(c->lua_instructions, 5000000);
    assert_int_equal(c->lua_memory, 32 << 20);
    assert_int_equal(c->http_threads, 4);
    assert_int_equal(c->payment_deadline_ms, 45000);
    assert_int_equal(c->connect_timeout_ms, 1500);
    assert_int_equal(c->attempt_timeout_ms, 8000);
    assert_int_equal(c->max_retries, 0);
    assert_int_equal(c->backoff_base_ms, 50);
    assert_int_equal(c->backoff_max_ms, 500);
    /* unknown keys are no problem and stay available */
    assert_json_eq(json_object_get(c->raw, "routing"), "{\"prefer\": \"stripe\"}");
    conf_free(c);
}

static void test_wrong_types(void **state)
{
    struct problems p = {0};
    struct conf *c = NULL;

    (void)state;
    assert_int_equal(conf_load(FIX "/bad_types.conf", &c, &p), AGAPE_EINVAL);
    assert_null(c);
    assert_int_equal(p.n, 6);
    find_problem(&p, "max_body_bytes: expected an integer between 1024 and 1073741824, got a "
                     "string");
    find_problem(&p, "http_threads: expected an integer between 1 and 256, got a number");
    find_problem(&p, "max_retries: expected an integer between 0 and 20, got -1");
    find_problem(&p, "data_dir: expected a non-empty string, got a number");
    find_problem(&p, "providers.stripe: expected a table, got a string");
    find_problem(&p, "hook: cannot convert a function to JSON");
    /* never the value of a provider entry */
    for (size_t i = 0; i < p.n; i++) {
        assert_null(strstr(p.items[i], "sk_live"));
    }
    problems_free(&p);
}

static void test_providers_must_be_keyed(void **state)
{
    char path[64];
    struct problems p = {0};
    struct conf *c = NULL;

    (void)state;
    write_tmp_conf("providers = { 'stripe', 'paypal' }\n", path, sizeof(path));
    assert_int_equal(conf_load(path, &c, &p), AGAPE_EINVAL);
    find_problem(&p, "providers: expected a table of provider tables keyed by name, got a list");
    problems_free(&p);
    unlink(path);
    write_tmp_conf("providers = { ['Bad Name'] = {} }\n", path, sizeof(path));
    assert_int_equal(conf_load(path, &c, &p), AGAPE_EINVAL);
    find_problem(&p, "invalid provider name 'Bad Name'");
    problems_free(&p);
    unlink(path);
}

static const char *const provider_vars[] = {
    "STRIPE_SECRET_KEY", "STRIPE_PUBLIC_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE",
    "PAYPAL_CLIENT_ID", "PAYPAL_CLIENT_SECRET", "PAYPAL_MODE", "PAYPAL_WEBHOOK_ID",
    "PAYPAL_API_BASE", "SENDGRID_API_KEY", "TWILIO_ACCOUNT_SID", "SMTP_URL",
    "GOOGLE_OAUTH_CLIENT_ID", "GA_MEASUREMENT_ID", "GA_TRACKING_ID", "SENTRY_DSN",
    "NEW_RELIC_LICENSE_KEY", "SANDBOX_WEBHOOK_SECRET", "AGAPE_LISTEN", "AGAPE_PUBLIC_URL",
    "AGAPE_DATA_DIR", "AGAPE_PLUGIN_DIR", "AGAPE_SCRIPTS", NULL,
};

static void test_shipped_config(void **state)
{
    struct conf *c;
    const char *key;
    json_t *v;
    const char *order[4];
    size_t n = 0;

    (void)state;
    for (size_t i = 0; provider_vars[i] != NULL; i++) {
        unsetenv(provider_vars[i]);
    }
    c = load_ok(SHIPPED);
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8080);
    assert_string_equal(c->data_dir, "var/agape");
    assert_string_equal(c->plugin_dir, "build/plugins");
    assert_string_equal(c->scripts_dir, "scripts");
    assert_json_eq(c->providers, "{\"sandbox\": {\"plugin\": \"sandbox\","
                                 " \"webhook_secret\": \"whsec_sandbox_dev\"}}");
    conf_free(c);

    /* stripe and paypal switch on with their key variables, after sandbox */
    setenv("STRIPE_SECRET_KEY", "sk_test_conf_unit", 1);
    setenv("PAYPAL_CLIENT_ID", "paypal-client-id", 1);
    setenv("PAYPAL_CLIENT_SECRET", "paypal-client-secret", 1);
    c = load_ok(SHIPPED);
    assert_json_eq(json_object_get(c->providers, "stripe"),
                   "{\"plugin\": \"stripe\", \"secret_key\": \"sk_test_conf_unit\","
                   " \"base_url\": \"https://api.stripe.com\"}");
    assert_json_eq(json_object_get(c->providers, "paypal"),
                   "{\"plugin\": \"paypal\", \"client_id\": \"paypal-client-id\","
                   " \"client_secret\": \"paypal-client-secret\", \"mode\": \"sandbox\"}");
    json_object_foreach(c->providers, key, v) {
        assert_true(n < 4);
        order[n++] = key;
    }
    assert_int_equal(n, 3);
    assert_string_equal(order[0], "sandbox");
    assert_string_equal(order[1], "stripe");
    assert_string_equal(order[2], "paypal");
    conf_free(c);
    unsetenv("STRIPE_SECRET_KEY");
    unsetenv("PAYPAL_CLIENT_ID");
    unsetenv("PAYPAL_CLIENT_SECRET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_with_default),
        cmocka_unit_test(test_dotenv),
        cmocka_unit_test(test_dotenv_malformed),
        cmocka_unit_test(test_dotenv_long_line),
        cmocka_unit_test(test_conf_load_reads_dotenv),
        cmocka_unit_test(test_lua_errors_have_file_and_line),
        cmocka_unit_test(test_bad_listen),
        cmocka_unit_test(test_providers_table),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_providers_must_be_keyed),
        cmocka_unit_test(test_shipped_config),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
