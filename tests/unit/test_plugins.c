/* plugins: the loader's refusals (one message each, naming the file), the
 * registry (required options, option types and unknown keys, init failures,
 * secrets, kinds) and one call driven through a real plugin with a hand-made
 * answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "buf.h"
#include "client.h"
#include "conf.h"
#include "host.h"
#include "log.h"
#include "plugins.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TP AGAPE_TEST_PLUGIN_DIR

static char tmpdir[256];

static void contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
    }
}

/* Load and expect a refusal; returns the message. */
static void refused(const char *path, char *err, size_t errlen)
{
    struct plugin *p = (struct plugin *)1;
    err[0] = '\0';
    assert_int_not_equal(plugin_load(path, &p, err, errlen), AGAPE_OK);
    assert_null(p);
    contains(err, path); /* every refusal names the file */
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    FILE *out = fopen(to, "wb");
    assert_non_null(out);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0) {
        assert_int_equal(fwrite(chunk, 1, n, out), n);
    }
    fclose(in);
    fclose(out);
    assert_int_equal(chmod(to, mode), 0);
}

static void test_missing_file(void **state)
{
    (void)state;
    char err[512];
    refused(TP "/nonexistent.so", err, sizeof(err));
    assert_string_equal(err, TP "/nonexistent.so: no such plugin file");
}

static void test_not_elf(void **state)
{
    (void)state;
    char path[512];
    char err[1024];
    snprintf(path, sizeof(path), "%s/garbage.so", tmpdir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("this is not an ELF shared object\n", f);
    fclose(f);
    chmod(path, 0644);
    refused(path, err, sizeof(err));
    contains(err, "not loadable");
    unlink(path);
}

static void test_no_entry(void **state)
{
    (void)state;
    char err[512];
    refused(TP "/no_entry.so", err, sizeof(err));
    contains(err, "no agape_plugin_entry symbol; not an Agape plugin");
}

static void test_abi_mismatch(void **state)
{
    (void)state;
    char err[512];
    char want[128];
    refused(TP "/abi_mismatch.so", err, sizeof(err));
    snprintf(want, sizeof(want), "plugin ABI version %d, this agape provides ABI version %d",
             AGAPE_PLUGIN_ABI_VERSION + 1, AGAPE_PLUGIN_ABI_VERSION);
    contains(err, want);
    contains(err, "rebuild the plugin against include/agape/plugin.h");
}

static void test_kinds_mismatch(void **state)
{
    (void)state;
    char err[512];
    refused(TP "/kinds_mismatch.so", err, sizeof(err));
    contains(err, "declares kind payment but has no payment operations table");
}

static void test_name_differs_from_file(void **state)
{
    (void)state;
    char path[512];
    char err[512];
    snprintf(path, sizeof(path), "%s/renamed.so", tmpdir);
    copy_file(TP "/good_test.so", path, 0755);
    refused(path, err, sizeof(err));
    contains(err, "named \"good_test\"");
    contains(err, "renamed.so");
    unlink(path);
}

static void test_writable_refused(void **state)
{
    (void)state;
    char path[512];
    char err[512];
    snprintf(path, sizeof(path), "%s/good_test.so", tmpdir);
    copy_file(TP "/good_test.so", path, 0666);
    refused(path, err, sizeof(err));
    contains(err, "is writable by group or others; refusing to load");
    chmod(path, 0620); /* group-writable alone is enough */
    refused(path, err, sizeof(err));
    contains(err, "writable by group or others");

    /* the same file, made private, loads */
    chmod(path, 0755);
    struct plugin *p = NULL;
    assert_int_equal(plugin_load(path, &p, err, sizeof(err)), AGAPE_OK);
    plugin_unload(p);
    unlink(path);
}

static void test_good_plugin(void **state)
{
    (void)state;
    char err[512] = "";
    struct plugin *p = NULL;
    assert_int_equal(plugin_load(TP "/good_test.so", &p, err, sizeof(err)), AGAPE_OK);
    assert_non_null(p);
    assert_string_equal(p->name, "good_test");
    assert_string_equal(p->file, TP "/good_test.so");
    assert_string_equal(p->desc->version, "1.0.0");
    assert_int_equal(p->desc->kinds, AGAPE_KIND_PAYMENT);
    assert_non_null(p->desc->payment->charge);
    plugin_unload(p);

    /* init_fails loads fine: its failure shows only when a provider uses it */
    assert_int_equal(plugin_load(TP "/init_fails.so", &p, err, sizeof(err)), AGAPE_OK);
    plugin_unload(p);
}

static void test_bad_option_declaration(void **state)
{
    (void)state;
    char err[512];
    refused(TP "/bad_option.so", err, sizeof(err));
    contains(err, "plugin bad_option: option timeout_s: default \"5m\" is not valid: expected "
                  "an integer from 1 to 60");
}

static void test_kinds_str(void **state)
{
    (void)state;
    char s[128];
    plugins_kinds_str(AGAPE_KIND_PAYMENT | AGAPE_KIND_WEBHOOK, s, sizeof(s));
    assert_string_equal(s, "payment,webhook");
    plugins_kinds_str(0, s, sizeof(s));
    assert_string_equal(s, "");
    plugins_kinds_str(AGAPE_KIND_AUTH | AGAPE_KIND_MESSAGING, s, 8); /* truncated, terminated */
    assert_true(strlen(s) < 8);
}

/* The registry over a hand-built configuration. */
struct fixture {
    char dir[sizeof(TP)];
    struct conf conf;
    struct problems probs;
    struct registry *reg;
    int rc;
};

static const char *problem_with(const struct problems *p, const char *needle)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strstr(p->items[i], needle)) {
            return p->items[i];
        }
    }
    return NULL;
}

static int reg_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    memcpy(f->dir, TP, sizeof(TP));
    f->conf.plugin_dir = f->dir;
    f->conf.providers = json_pack(
        "{s:{s:s}, s:{s:s, s:s, s:s}, s:{s:s, s:s}, s:{s:s}, s:{s:s, s:s}}",
        "alpha", "plugin", "good_test",                                        /* no api_key */
        "beta", "plugin", "good_test", "api_key", "test_secret_beta_1234", "base_url",
        "http://127.0.0.1:9",                                                 /* good */
        "gamma", "plugin", "init_fails", "api_key", "wrong_key_5678",         /* init fails */
        "delta", "plugin", "missing_plugin",                                  /* no file */
        "epsilon", "plugin", "good_test", "api_key", "");                     /* empty */
    assert_non_null(f->conf.providers);
    f->rc = registry_create(&f->conf, &f->reg, &f->probs);
    *state = f;
    return 0;
}

static int reg_teardown(void **state)
{
    struct fixture *f = *state;
    registry_destroy(f->reg);
    problems_free(&f->probs);
    json_decref(f->conf.providers);
    free(f);
    return 0;
}

static void test_registry_problems(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->rc, AGAPE_EINVAL);
    assert_non_null(f->reg);
    for (size_t i = 0; i < f->probs.n; i++) {
        print_message("problem: %s\n", f->probs.items[i]);
    }
    const char *p = problem_with(&f->probs, "provider alpha:");
    assert_non_null(p);
    contains(p, "provider alpha: missing api_key (set GOOD_TEST_KEY)");
    assert_non_null(problem_with(&f->probs, "provider epsilon: missing api_key"));
    p = problem_with(&f->probs, "provider gamma");
    assert_non_null(p);
    contains(p, "provider gamma (plugin init_fails): init failed: api_key must start with test_");
    p = problem_with(&f->probs, "provider delta");
    assert_non_null(p);
    contains(p, "missing_plugin.so: no such plugin file");
    assert_int_equal(f->probs.n, 4);
}

static void test_registry_providers(void **state)
{
    struct fixture *f = *state;
    /* loaded once each, whatever the number of providers using them */
    assert_int_equal(f->reg->n_plugins, 2);
    assert_int_equal(f->reg->n_providers, 4); /* delta has no plugin: no provider */
    assert_null(registry_find(f->reg, "delta"));

    struct provider *alpha = registry_find(f->reg, "alpha");
    assert_non_null(alpha);
    assert_false(alpha->usable);
    contains(alpha->why, "GOOD_TEST_KEY");
    assert_null(alpha->ctx);
    struct provider *gamma = registry_find(f->reg, "gamma");
    assert_false(gamma->usable);
    contains(gamma->why, "api_key must start with test_");
    struct provider *beta = registry_find(f->reg, "beta");
    assert_true(beta->usable);
    assert_non_null(beta->ctx);
    assert_ptr_equal(beta->plugin, alpha->plugin);

    struct provider *list[8];
    assert_int_equal(registry_by_kind(f->reg, AGAPE_KIND_PAYMENT, list, 8), 1);
    assert_ptr_equal(list[0], beta);
    assert_int_equal(registry_by_kind(f->reg, AGAPE_KIND_MESSAGING, list, 8), 0);
    assert_int_equal(registry_by_kind(f->reg, AGAPE_KIND_PAYMENT, list, 0), 0);

    /* providers are kept in name order */
    for (size_t i = 1; i < f->reg->n_providers; i++) {
        assert_true(strcmp(f->reg->providers[i - 1]->name, f->reg->providers[i]->name) < 0);
    }
}

static void test_registry_secrets_redacted(void **state)
{
    (void)state;
    struct agape_buf b;
    buf_init(&b, 0);
    buf_adds(&b, "Authorization: Basic test_secret_beta_1234 and wrong_key_5678");
    log_redact(&b);
    assert_null(strstr(buf_cstr(&b), "test_secret_beta_1234"));
    /* gamma's secret too, though its init failed */
    assert_null(strstr(buf_cstr(&b), "wrong_key_5678"));
    assert_string_equal(buf_cstr(&b), "Authorization: Basic [redacted] and [redacted]");
    buf_fini(&b);
}

static void test_registry_charge(void **state)
{
    struct fixture *f = *state;
    struct provider *beta = registry_find(f->reg, "beta");
    const struct agape_payment_ops *pay = beta->plugin->desc->payment;
    struct client_xfer x;
    struct host_call hc;
    client_xfer_init(&x);
    json_t *input = json_pack("{s:s, s:i, s:s, s:s}", "payment_id", "pay_1", "amount", 2000,
                              "currency", "usd", "idempotency_key", "idem-1");
    host_call_init(&hc, beta, "charge", input, &x);
    json_decref(input);

    assert_int_equal(host_call_step(&hc, pay->charge), AGAPE_STEP_SEND);
    assert_string_equal(x.method, "POST");
    assert_string_equal(x.url, "http://127.0.0.1:9/charge");
    assert_int_equal(x.body_len, strlen(x.body));
    assert_string_equal(x.body, "amount=2000&currency=usd&metadata[payment_id]=pay_1");
    assert_string_equal(x.userpwd, "test_secret_beta_1234:");
    assert_int_equal(x.n_req_headers, 2);

    /* the answer, as the client would leave it */
    x.result = CLIENT_DONE;
    x.status = 200;
    buf_adds(&x.resp_body, "{\"id\":\"ch_42\",\"object\":\"charge\"}");
    host_call_answer(&hc);
    assert_int_equal(host_call_step(&hc, pay->charge), AGAPE_STEP_DONE);
    assert_int_equal(hc.pub.outcome, AGAPE_OUTCOME_OK);
    assert_string_equal(json_string_value(json_object_get(hc.result, "provider_ref")), "ch_42");
    assert_string_equal(json_string_value(json_object_get(hc.result, "status")), "succeeded");
    host_call_fini(&hc);

    /* a 402 is a decline */
    input = json_pack("{s:i, s:s}", "amount", 5, "currency", "eur");
    host_call_init(&hc, beta, "charge", input, &x);
    json_decref(input);
    assert_int_equal(host_call_step(&hc, pay->charge), AGAPE_STEP_SEND);
    x.status = 402;
    buf_reset(&x.resp_body);
    buf_adds(&x.resp_body, "{\"error\":{\"code\":\"card_declined\"}}");
    host_call_answer(&hc);
    assert_int_equal(host_call_step(&hc, pay->charge), AGAPE_STEP_DONE);
    assert_int_equal(hc.pub.outcome, AGAPE_OUTCOME_DECLINED);
    host_call_fini(&hc);

    /* a 2xx the plugin cannot read: unknown, not a failure of ours */
    input = json_pack("{s:i, s:s}", "amount", 5, "currency", "eur");
    host_call_init(&hc, beta, "charge", input, &x);
    json_decref(input);
    assert_int_equal(host_call_step(&hc, pay->charge), AGAPE_STEP_SEND);
    x.status = 200;
    buf_reset(&x.resp_body);
    buf_adds(&x.resp_body, "not json");
    host_call_answer(&hc);
    assert_int_equal(host_call_step(&hc, pay->charge), AGAPE_STEP_DONE);
    assert_int_equal(hc.pub.outcome, AGAPE_OUTCOME_UNKNOWN);
    assert_string_equal(hc.pub.err, "response has no id");
    host_call_fini(&hc);

    /* bad input is the plugin's FAIL: invalid, with its reason */
    input = json_pack("{s:s}", "currency", "usd");
    host_call_init(&hc, beta, "charge", input, &x);
    json_decref(input);
    assert_int_equal(host_call_step(&hc, pay->charge), AGAPE_STEP_FAIL);
    assert_int_equal(hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_string_equal(hc.pub.err, "amount and currency are required");
    host_call_fini(&hc);

    client_xfer_reset(&x);
    buf_fini(&x.resp_body);
}

/* The option schema at work, through the registry and a real plugin: what
 * init receives is normalized, a wrong type makes the provider unusable
 * without calling init, an unknown key is only reported. */
static void test_registry_options(void **state)
{
    (void)state;
    char dir[] = AGAPE_PLUGIN_DIR;
    struct conf c;
    struct registry *r = NULL;
    struct problems probs = {0};

    memset(&c, 0, sizeof(c));
    c.plugin_dir = dir;
    c.providers = json_pack(
        "{s:{s:s, s:s, s:s, s:s, s:s, s:i, s:{s:i}}, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:i}}",
        "stripe", "plugin", "stripe", "secret_key", "sk_test_opts_1234", "base_url",
        "http://127.0.0.1:9/", "webhook_tolerance_s", "600", "secrt_key", "sk_typo",
        "max_inflight", 4, "breaker", "failure_run", 3,                         /* usable */
        "stripe_bad", "plugin", "stripe", "secret_key", "sk_test_opts_5678",
        "webhook_tolerance_s", "5m",                                            /* type error */
        "stripe_int", "plugin", "stripe", "secret_key", "sk_test_opts_9012", "base_url", 5);
    assert_non_null(c.providers);
    assert_int_equal(registry_create(&c, &r, &probs), AGAPE_EINVAL);
    for (size_t i = 0; i < probs.n; i++) {
        print_message("problem: %s\n", probs.items[i]);
    }
    assert_int_equal(probs.n, 3);
    const char *p = problem_with(&probs, "provider stripe:");
    assert_non_null(p);
    assert_string_equal(p, "provider stripe: unknown option 'secrt_key' (did you mean "
                           "'secret_key'? known: secret_key, public_key, webhook_secret, "
                           "base_url, webhook_tolerance_s, api_version)");
    assert_non_null(problem_with(&probs, "provider stripe_bad: webhook_tolerance_s: expected an "
                                         "integer from 0 to 31536000"));
    assert_non_null(problem_with(&probs, "provider stripe_int: base_url: expected an http:// or "
                                         "https:// URL with a host, without spaces, query or "
                                         "fragment (STRIPE_API_BASE)"));

    /* the unknown key is a warning: the provider works, with normalized options */
    struct provider *pv = registry_find(r, "stripe");
    assert_true(pv->usable);
    assert_non_null(pv->ctx);
    assert_string_equal(json_string_value(json_object_get(pv->conf, "base_url")),
                        "http://127.0.0.1:9");
    assert_int_equal(json_integer_value(json_object_get(pv->conf, "webhook_tolerance_s")), 600);
    assert_int_equal(json_integer_value(json_object_get(pv->conf, "max_inflight")), 4);
    assert_non_null(json_object_get(pv->conf, "breaker"));
    assert_string_equal(json_string_value(json_object_get(pv->conf, "secrt_key")), "sk_typo");

    /* a type error: unusable, init never called, the reason names the option */
    pv = registry_find(r, "stripe_bad");
    assert_false(pv->usable);
    assert_null(pv->ctx);
    assert_string_equal(pv->why, "webhook_tolerance_s: expected an integer from 0 to 31536000");
    pv = registry_find(r, "stripe_int");
    assert_false(pv->usable);
    contains(pv->why, "base_url: expected an http:// or https:// URL");

    /* defaults filled in for init */
    pv = registry_find(r, "stripe_bad");
    assert_string_equal(json_string_value(json_object_get(pv->conf, "base_url")),
                        "https://api.stripe.com");

    struct provider *list[8];
    assert_int_equal(registry_by_kind(r, AGAPE_KIND_PAYMENT, list, 8), 1);
    registry_destroy(r);
    problems_free(&probs);
    json_decref(c.providers);
}

static void test_registry_empty(void **state)
{
    (void)state;
    struct conf c;
    struct registry *r = NULL;
    struct problems probs = {0};
    memset(&c, 0, sizeof(c));
    assert_int_equal(registry_create(&c, &r, &probs), AGAPE_OK);
    assert_non_null(r);
    assert_int_equal(r->n_providers, 0);
    assert_int_equal(probs.n, 0);
    registry_destroy(r);

    /* a provider naming a path instead of a plugin */
    char dir[] = TP;
    c.plugin_dir = dir;
    c.providers = json_pack("{s:{s:s}}", "evil", "plugin", "../plugins/good_test");
    assert_int_equal(registry_create(&c, &r, NULL), AGAPE_EINVAL);
    assert_int_equal(r->n_providers, 0);
    registry_destroy(r);
    json_decref(c.providers);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/agape-test-plugins-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        return -1;
    }
    log_set_level(AGAPE_LOG_ERROR);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_not_elf),
        cmocka_unit_test(test_no_entry),
        cmocka_unit_test(test_abi_mismatch),
        cmocka_unit_test(test_kinds_mismatch),
        cmocka_unit_test(test_name_differs_from_file),
        cmocka_unit_test(test_writable_refused),
        cmocka_unit_test(test_good_plugin),
        cmocka_unit_test(test_bad_option_declaration),
        cmocka_unit_test(test_kinds_str),
        cmocka_unit_test_setup_teardown(test_registry_problems, reg_setup, reg_teardown),
        cmocka_unit_test_setup_teardown(test_registry_providers, reg_setup, reg_teardown),
        cmocka_unit_test_setup_teardown(test_registry_secrets_redacted, reg_setup,
                                        reg_teardown),
        cmocka_unit_test_setup_teardown(test_registry_charge, reg_setup, reg_teardown),
        cmocka_unit_test(test_registry_options),
        cmocka_unit_test(test_registry_empty),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
