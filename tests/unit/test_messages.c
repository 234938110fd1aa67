/* Unit tests of the messages module's pure parts (validation, ids, backoff,
 * records), of templates.c (rendering in the sandbox: escaping, missing
 * variables, budgets, edits picked up) and of the worker's kind seam
 * (worker.c: hand-off per kind, leases, back-pressure, fairness) on a real
 * store. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "app.h"
#include "messages.h"
#include "script_rules.h"
#include "store.h"
#include "store_keys.h"
#include "templates.h"
#include "worker.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEMPLATES AGAPE_SOURCE_DIR "/templates"

/* ---- addresses and numbers -------------------------------------------- */

static void test_email(void **state)
{
    (void)state;
    static const char *const good[] = {
        "ana@example.com", "a.b+tag@mail.example.co.uk", "x@a-b.io", "o'neil@example.org",
        "ana+declined@example.com", "1@2.io", NULL,
    };
    static const char *const bad[] = {
        "", "ana", "ana@", "@example.com", "ana@example", "ana@@example.com",
        "ana@b@example.com", "ana @example.com", "ana@exa mple.com", "\"ana\"@example.com",
        "<ana@example.com>", "ana@example.com, bob@example.com", "ana@example.com;",
        ".ana@example.com", "ana.@example.com", "a..na@example.com", "ana@-example.com",
        "ana@example-.com", "ana@example..com", "ana@.example.com", "ana@example.com.",
        "ana\r\n@example.com", "ana@example.com\nBcc: x@y.z", "an\x01@example.com",
        "ana@exämple.com", "ana@ex_ample.com", NULL,
    };
    for (int i = 0; good[i]; i++) {
        if (!messages_email_ok(good[i])) {
            fail_msg("refused a good address: %s", good[i]);
        }
    }
    for (int i = 0; bad[i]; i++) {
        if (messages_email_ok(bad[i])) {
            fail_msg("accepted a bad address: %s", bad[i]);
        }
    }
    assert_false(messages_email_ok(NULL));
    /* lengths: local part 64, whole address 254 */
    char a[300];
    memset(a, 'a', 64);
    snprintf(a + 64, sizeof(a) - 64, "@example.com");
    assert_true(messages_email_ok(a));
    memset(a, 'a', 65);
    snprintf(a + 65, sizeof(a) - 65, "@example.com");
    assert_false(messages_email_ok(a));
    /* 254 bytes: "a@" + labels of 63 */
    char d[300];
    memset(a, 'a', 64);
    snprintf(d, sizeof(d), "a@%.63s.%.63s.%.63s.%.60s", a, a, a, a);
    assert_int_equal(strlen(d), 254);
    assert_true(messages_email_ok(d));
    snprintf(d, sizeof(d), "a@%.63s.%.63s.%.63s.%.61s", a, a, a, a);
    assert_false(messages_email_ok(d)); /* 255 */
    snprintf(d, sizeof(d), "a@%.64s.com", a);
    assert_false(messages_email_ok(d)); /* a 64-byte label */
}

static void test_e164(void **state)
{
    (void)state;
    assert_true(messages_e164_ok("+14155550100"));
    assert_true(messages_e164_ok("+4930123"));           /* 7 digits */
    assert_true(messages_e164_ok("+123456789012345"));   /* 15 digits */
    assert_false(messages_e164_ok("+1234567890123456")); /* 16 */
    assert_false(messages_e164_ok("+123456"));           /* 6 */
    assert_false(messages_e164_ok("14155550100"));
    assert_false(messages_e164_ok("+04155550100"));
    assert_false(messages_e164_ok("+1 415 555 0100"));
    assert_false(messages_e164_ok("+1415555010a"));
    assert_false(messages_e164_ok("+"));
    assert_false(messages_e164_ok(""));
    assert_false(messages_e164_ok(NULL));
}

static void test_ids_and_backoff(void **state)
{
    (void)state;
    char a[MESSAGES_ID_MAX];
    char b[MESSAGES_ID_MAX];
    messages_new_id(a);
    usleep(2000);
    messages_new_id(b);
    assert_true(messages_id_ok(a));
    assert_true(strcmp(a, b) < 0); /* time-ordered */
    assert_true(messages_id_ok("msg_0123456789abcdef01234567")); /* a rule's id */
    assert_false(messages_id_ok("msg_short"));
    assert_false(messages_id_ok("pay_0123456789abcdef"));
    assert_false(messages_id_ok("msg_0123456789ABCDEF"));
    assert_false(messages_id_ok("msg_0123456789/../x"));
    assert_false(messages_id_ok(NULL));

    assert_int_equal(messages_backoff_ms(1, 1000, 300000), 1000);
    assert_int_equal(messages_backoff_ms(2, 1000, 300000), 2000);
    assert_int_equal(messages_backoff_ms(4, 1000, 300000), 8000);
    assert_int_equal(messages_backoff_ms(9, 1000, 300000), 256000);
    assert_int_equal(messages_backoff_ms(10, 1000, 300000), 300000);
    assert_int_equal(messages_backoff_ms(60, 1000, 300000), 300000);

    assert_int_equal(messages_utf8_chars("héllo", strlen("héllo")), 5);
    assert_int_equal(messages_utf8_chars("€€", 6), 2);
}

/* ---- request validation ------------------------------------------------- */

static void expect_bad(const char *json, const char *want_param)
{
    char param[96];
    char msg[512];
    json_t *in = json_loads(json, 0, NULL);
    assert_non_null(in);
    int rc = messages_validate(in, true, param, sizeof(param), msg, sizeof(msg));
    if (rc != AGAPE_EINVAL || strcmp(param, want_param) != 0) {
        fail_msg("%s: rc %d param '%s' (want '%s'): %s", json, rc, param, want_param, msg);
    }
    json_decref(in);
}

static void expect_good(const char *json)
{
    char param[96];
    char msg[512];
    json_t *in = json_loads(json, 0, NULL);
    assert_non_null(in);
    if (messages_validate(in, true, param, sizeof(param), msg, sizeof(msg)) != AGAPE_OK) {
        fail_msg("%s refused: %s (%s)", json, msg, param);
    }
    json_decref(in);
}

static void test_validate(void **state)
{
    (void)state;
    expect_good("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"subject\":\"Hi\","
                "\"html\":\"<p>Hi</p>\",\"text\":\"Hi\"}");
    expect_good("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"template\":\"welcome\","
                "\"data\":{\"name\":\"Ana\"}}");
    expect_good("{\"channel\":\"sms\",\"to\":\"+14155550100\",\"body\":\"code 1\"}");
    expect_good("{\"channel\":\"sms\",\"to\":\"+14155550100\",\"template\":\"verification_code\","
                "\"data\":{\"code\":\"1\"}}");
    expect_good("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"template_id\":\"d-123\","
                "\"data\":{\"x\":1}}");

    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"subject\":\"s\","
               "\"text\":\"t\",\"cc\":\"bob@example.com\"}", "cc");
    expect_bad("{\"channel\":\"fax\",\"to\":\"x\"}", "channel");
    expect_bad("{\"to\":\"ana@example.com\"}", "channel");
    expect_bad("{\"channel\":\"email\",\"subject\":\"s\",\"text\":\"t\"}", "to");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@\",\"subject\":\"s\",\"text\":\"t\"}", "to");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\\r\\nBcc: x@y.z\","
               "\"subject\":\"s\",\"text\":\"t\"}", "to");
    expect_bad("{\"channel\":\"sms\",\"to\":\"4155550100\",\"body\":\"b\"}", "to");
    expect_bad("{\"channel\":\"sms\",\"to\":12345678,\"body\":\"b\"}", "to");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"text\":\"t\"}", "subject");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"subject\":\"s\"}", "text");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"subject\":\"a\\r\\nBcc: x\","
               "\"text\":\"t\"}", "subject");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"body\":\"b\"}", "body");
    expect_bad("{\"channel\":\"sms\",\"to\":\"+14155550100\",\"subject\":\"s\",\"body\":\"b\"}",
               "subject");
    expect_bad("{\"channel\":\"sms\",\"to\":\"+14155550100\"}", "body");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"template\":\"welcome\","
               "\"subject\":\"s\"}", "subject");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"template\":\"../x\"}",
               "template");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"template\":\"welcome\","
               "\"data\":[1]}", "data");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"subject\":\"s\","
               "\"text\":\"t\",\"data\":{}}", "data");
    expect_bad("{\"channel\":\"sms\",\"to\":\"+14155550100\",\"template_id\":\"d-1\"}",
               "template_id");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"subject\":\"s\","
               "\"text\":\"t\",\"from\":\"not an address\"}", "from");
    expect_bad("{\"channel\":\"email\",\"to\":\"ana@example.com\",\"subject\":\"\","
               "\"text\":\"t\"}", "subject");
    expect_bad("[1]", "");

    /* sizes: subject 998 bytes, sms body 1600 characters (not bytes) */
    char *big = malloc(MESSAGES_EMAIL_BODY_MAX + 100);
    assert_non_null(big);
    memset(big, 'x', 999);
    big[999] = '\0';
    json_t *in = json_pack("{s:s, s:s, s:s, s:s}", "channel", "email", "to", "ana@example.com",
                           "subject", big, "text", "t");
    char param[96];
    char msg[512];
    assert_int_equal(messages_validate(in, true, param, sizeof(param), msg, sizeof(msg)),
                     AGAPE_EINVAL);
    assert_string_equal(param, "subject");
    big[998] = '\0';
    json_object_set_new(in, "subject", json_string(big));
    assert_int_equal(messages_validate(in, true, param, sizeof(param), msg, sizeof(msg)),
                     AGAPE_OK);
    memset(big, 'x', MESSAGES_EMAIL_BODY_MAX + 1);
    big[MESSAGES_EMAIL_BODY_MAX + 1] = '\0';
    json_object_set_new(in, "html", json_string(big));
    assert_int_equal(messages_validate(in, true, param, sizeof(param), msg, sizeof(msg)),
                     AGAPE_EINVAL);
    assert_string_equal(param, "html");
    json_decref(in);
    /* 1600 "é" (3200 bytes) pass, 1601 do not */
    big[0] = '\0';
    for (int i = 0; i < 1600; i++) {
        memcpy(big + 2 * i, "é", 2);
    }
    big[3200] = '\0';
    in = json_pack("{s:s, s:s, s:s}", "channel", "sms", "to", "+14155550100", "body", big);
    assert_int_equal(messages_validate(in, true, param, sizeof(param), msg, sizeof(msg)),
                     AGAPE_OK);
    memcpy(big + 3200, "é", 3);
    json_object_set_new(in, "body", json_string(big));
    assert_int_equal(messages_validate(in, true, param, sizeof(param), msg, sizeof(msg)),
                     AGAPE_EINVAL);
    assert_string_equal(param, "body");
    json_decref(in);
    free(big);

    /* a rule's item has bookkeeping members the API refuses */
    in = json_loads("{\"channel\":\"sms\",\"to\":\"+14155550100\",\"body\":\"b\","
                    "\"kind\":\"message\",\"id\":\"msg_0123456789ab\",\"status\":\"queued\"}",
                    0, NULL);
    assert_int_equal(messages_validate(in, false, param, sizeof(param), msg, sizeof(msg)),
                     AGAPE_OK);
    assert_int_equal(messages_validate(in, true, param, sizeof(param), msg, sizeof(msg)),
                     AGAPE_EINVAL);
    json_decref(in);
}

/* ---- templates ----------------------------------------------------------- */

static int render(const char *dir, const char *channel, const char *name, const char *data,
                  json_t **out, char *param, char *err)
{
    json_t *d = data ? json_loads(data, 0, NULL) : NULL;
    int rc = templates_render(dir, channel, name, d, out, param, 96, err, 512);
    json_decref(d);
    return rc;
}

static void test_shipped_templates(void **state)
{
    (void)state;
    json_t *out = NULL;
    char param[96];
    char err[512];
    assert_int_equal(render(TEMPLATES, "email", "welcome",
                            "{\"name\":\"<Ana & \\\"Bo\\\" O'Neil>\"}", &out, param, err),
                     AGAPE_OK);
    assert_string_equal(json_string_value(json_object_get(out, "subject")),
                        "Welcome to Agape, <Ana & \"Bo\" O'Neil>");
    assert_non_null(strstr(json_string_value(json_object_get(out, "html")),
                           "Hi &lt;Ana &amp; &quot;Bo&quot; O&#39;Neil&gt;,"));
    assert_non_null(strstr(json_string_value(json_object_get(out, "text")),
                           "Hi <Ana & \"Bo\" O'Neil>,"));
    json_decref(out);

    assert_int_equal(render(TEMPLATES, "email", "welcome", "{}", &out, param, err),
                     AGAPE_EINVAL);
    assert_null(out);
    assert_string_equal(param, "data.name");
    assert_string_equal(err, "missing variable name");
    assert_int_equal(render(TEMPLATES, "email", "welcome", NULL, &out, param, err),
                     AGAPE_EINVAL);
    assert_string_equal(param, "data.name");

    assert_int_equal(render(TEMPLATES, "email", "nope", "{}", &out, param, err), AGAPE_ENOENT);
    assert_string_equal(param, "template");
    assert_int_equal(render(TEMPLATES, "sms", "welcome", "{}", &out, param, err), AGAPE_ENOENT);
    assert_int_equal(render(TEMPLATES, "email", "../sms/verification_code", "{}", &out, param,
                            err),
                     AGAPE_ENOENT);

    /* every shipped template renders with its variables */
    static const struct {
        const char *channel, *name, *data, *needle;
    } all[] = {
        {"email", "password_reset", "{\"name\":\"A\",\"reset_url\":\"https://x/r?a=1&b=2\"}",
         "href=\"https://x/r?a=1&amp;b=2\""},
        {"email", "subscription_confirmation",
         "{\"name\":\"A\",\"plan\":\"Pro\",\"amount\":\"19.99 USD\"}", "Pro"},
        /* as the shipped webhook rule sends it: minor units and a currency */
        {"email", "subscription_confirmation",
         "{\"amount\":1999,\"currency\":\"usd\",\"payment_id\":\"pay_1\"}", "19.99 USD"},
        {"email", "subscription_confirmation", "{\"amount\":500,\"currency\":\"jpy\"}",
         "500 JPY"},
        {"email", "withdrawal_approved", "{\"name\":\"A\",\"amount\":\"50 EUR\"}", "50 EUR"},
        {"email", "withdrawal_rejected", "{\"name\":\"A\",\"amount\":\"50 EUR\",\"reason\":\"x\"}",
         "Reason: x"},
        {"sms", "verification_code", "{\"code\":123456}", "123456"},
        {"sms", "subscription_notification", "{\"plan\":\"Pro\",\"status\":\"active\"}",
         "Pro subscription is now active"},
        {"sms", "withdrawal_notification", "{\"amount\":\"5 EUR\",\"status\":\"approved\"}",
         "was approved"},
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        int rc = render(TEMPLATES, all[i].channel, all[i].name, all[i].data, &out, param, err);
        if (rc != AGAPE_OK) {
            fail_msg("%s/%s: %s (%s)", all[i].channel, all[i].name, err, param);
        }
        bool found = false;
        const char *k;
        json_t *v;
        json_object_foreach(out, k, v) {
            found = found || strstr(json_string_value(v), all[i].needle) != NULL;
        }
        if (!found) {
            char *text = json_dumps(out, 0);
            fail_msg("%s/%s: '%s' not in %s", all[i].channel, all[i].name, all[i].needle, text);
            free(text);
        }
        json_decref(out);
    }
    templates_thread_cleanup();
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_template_sandbox(void **state)
{
    (void)state;
    char dir[64] = "/tmp/agape-tpl-XXXXXX";
    char path[160];
    char sub[128];
    json_t *out = NULL;
    char param[96];
    char err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/sms", dir);
    assert_int_equal(mkdir(sub, 0700), 0);

    /* an endless loop is stopped by the budget, pcall or not */
    snprintf(path, sizeof(path), "%s/loop.lua", sub);
    write_file(path, "return { body = function(d, h) while true do pcall(function() "
                     "while true do end end) end end }\n");
    assert_int_equal(render(dir, "sms", "loop", "{}", &out, param, err), AGAPE_EINVAL);
    assert_string_equal(param, "template");
    assert_non_null(strstr(err, "instruction budget"));

    /* no io, no os.execute, read-only globals */
    snprintf(path, sizeof(path), "%s/io.lua", sub);
    write_file(path, "return { body = function() return io.open('/etc/passwd'):read('a') end }\n");
    assert_int_equal(render(dir, "sms", "io", "{}", &out, param, err), AGAPE_EINVAL);
    snprintf(path, sizeof(path), "%s/glob.lua", sub);
    write_file(path, "x = 1\nreturn { body = 'b' }\n");
    assert_int_equal(render(dir, "sms", "glob", "{}", &out, param, err), AGAPE_EINVAL);

    /* syntax errors name the file and line */
    snprintf(path, sizeof(path), "%s/syntax.lua", sub);
    write_file(path, "return {\n body = \n");
    assert_int_equal(render(dir, "sms", "syntax", "{}", &out, param, err), AGAPE_EINVAL);
    assert_non_null(strstr(err, "sms/syntax.lua:"));

    /* a body is required; a plain string works */
    snprintf(path, sizeof(path), "%s/empty.lua", sub);
    write_file(path, "return { }\n");
    assert_int_equal(render(dir, "sms", "empty", "{}", &out, param, err), AGAPE_EINVAL);
    snprintf(path, sizeof(path), "%s/edit.lua", sub);
    write_file(path, "return { body = 'first' }\n");
    assert_int_equal(render(dir, "sms", "edit", "{}", &out, param, err), AGAPE_OK);
    assert_string_equal(json_string_value(json_object_get(out, "body")), "first");
    json_decref(out);
    /* an edit is picked up without a reload (size differs, so the stamp does) */
    write_file(path, "return { body = 'second!' }\n");
    assert_int_equal(render(dir, "sms", "edit", "{}", &out, param, err), AGAPE_OK);
    assert_string_equal(json_string_value(json_object_get(out, "body")), "second!");
    json_decref(out);
    /* the state survives a killed render: the next one works */
    assert_int_equal(render(dir, "sms", "loop", "{}", &out, param, err), AGAPE_EINVAL);
    assert_int_equal(render(dir, "sms", "edit", "{}", &out, param, err), AGAPE_OK);
    json_decref(out);
    templates_thread_cleanup();
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void test_record_new_and_public(void **state)
{
    (void)state;
    struct messages_conf mc;
    messages_conf_load(NULL, &mc, false);
    assert_int_equal(mc.max_attempts, 8);
    assert_string_equal(mc.templates_dir, "templates");
    snprintf(mc.templates_dir, sizeof(mc.templates_dir), "%s", TEMPLATES);
    json_t *in = json_loads("{\"channel\":\"email\",\"to\":\"ana@example.com\","
                            "\"template\":\"welcome\",\"data\":{\"name\":\"Ana\"}}",
                            0, NULL);
    json_t *rec = NULL;
    char param[96];
    char msg[512];
    assert_int_equal(messages_record_new(&mc, in, "msg_0123456789ab", 1796032800000LL, "key_1",
                                         &rec, param, sizeof(param), msg, sizeof(msg)),
                     AGAPE_OK);
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "queued");
    assert_string_equal(json_string_value(json_object_get(json_object_get(rec, "content"),
                                                          "subject")),
                        "Welcome to Agape, Ana");
    assert_null(json_object_get(rec, "data")); /* not kept for local templates */
    struct store_batch *b = store_batch_new();
    assert_int_equal(messages_enqueue(b, rec, 0, true), AGAPE_OK);
    store_batch_free(b);
    assert_int_equal(strlen(json_string_value(json_object_get(rec, "outbox_key"))), 32);
    json_t *pub = messages_public(rec);
    assert_null(json_object_get(pub, "content"));
    assert_null(json_object_get(pub, "outbox_key"));
    assert_null(json_object_get(pub, "api_key_id"));
    assert_string_equal(json_string_value(json_object_get(pub, "template")), "welcome");
    assert_true(json_is_null(json_object_get(pub, "provider")));
    assert_true(json_is_array(json_object_get(pub, "attempts")));
    json_decref(pub);
    json_decref(rec);
    json_decref(in);
    templates_thread_cleanup();
}

/* ---- the worker's kind seam --------------------------------------------- */

struct wfix {
    char dir[64];
    struct app app;
    struct worker_conf wc;
};

static int wsetup(void **state)
{
    struct wfix *f = calloc(1, sizeof(*f));
    char err[256];
    char data[96];
    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/agape-msgw-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(data, sizeof(data), "%s/data", f->dir);
    if (store_open(data, &f->app.store, err, sizeof(err)) != AGAPE_OK) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    worker_conf_load(NULL, &f->wc);
    worker_kinds_reset();
    *state = f;
    return 0;
}

static int wteardown(void **state)
{
    struct wfix *f = *state;
    worker_kinds_reset();
    store_close(f->app.store);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void put_item(struct wfix *f, const char *kind, int n, int64_t due)
{
    struct store_batch *b = store_batch_new();
    for (int i = 0; i < n; i++) {
        uint8_t k[16];
        char item[96];
        int len = snprintf(item, sizeof(item), "{\"kind\":\"%s\",\"n\":%d}", kind, i);
        assert_int_equal(script_rules_outbox_key(k, due + i), AGAPE_OK);
        store_batch_put(b, STORE_OUTBOX, k, sizeof(k), item, (size_t)len);
    }
    assert_int_equal(store_commit(f->app.store, b), AGAPE_OK);
}

struct rec_kind {
    int calls;
    int answer;            /* what the handler returns */
    bool delete_item;      /* commit the deletion before answering */
    uint8_t taken[128][16];
    int n_taken;
    int order[256];        /* the "n" of each call */
};

static int rec_handler(struct app *app, const uint8_t key[16], json_t *item, void *arg)
{
    struct rec_kind *rk = arg;
    if (rk->calls < 256) {
        rk->order[rk->calls] = (int)json_integer_value(json_object_get(item, "n"));
    }
    rk->calls++;
    if (rk->delete_item) {
        struct store_batch *b = store_batch_new();
        store_batch_del(b, STORE_OUTBOX, key, 16);
        assert_int_equal(store_commit(app->store, b), AGAPE_OK);
    }
    if (rk->answer == WORKER_ITEM_TAKEN && rk->n_taken < 128) {
        memcpy(rk->taken[rk->n_taken++], key, 16);
    }
    return rk->answer;
}

static void test_kind_seam(void **state)
{
    struct wfix *f = *state;
    struct rec_kind a = {.answer = WORKER_ITEM_TAKEN};
    struct rec_kind ev = {.answer = WORKER_ITEM_DONE, .delete_item = true};
    assert_int_equal(worker_register_kind("webhook", rec_handler, &a), AGAPE_EINVAL);
    assert_int_equal(worker_register_kind("Bad Name", rec_handler, &a), AGAPE_EINVAL);
    assert_int_equal(worker_register_kind("message", rec_handler, &a), AGAPE_OK);
    assert_int_equal(worker_register_kind("event", rec_handler, &ev), AGAPE_OK);
    int64_t now = client_wall_ms();

    /* a backlog of 100 "message" items due first, then 3 "event" items and
     * 2 of a kind nobody handles: the events are not starved */
    put_item(f, "message", 100, now - 10000);
    put_item(f, "event", 3, now - 5000);
    put_item(f, "mystery", 2, now - 4000);
    put_item(f, "message", 1, now + 60000); /* not due */
    int n = worker_run_due(&f->app, &f->wc);
    assert_int_equal(n, WORKER_KIND_QUOTA + 3);
    assert_int_equal(a.calls, WORKER_KIND_QUOTA);
    assert_int_equal(ev.calls, 3);
    for (int i = 0; i < WORKER_KIND_QUOTA; i++) {
        assert_int_equal(a.order[i], i); /* oldest first */
    }
    struct worker_stats st;
    worker_get_stats(&st);
    assert_int_equal(st.unknown, 2);
    assert_int_equal(st.leased, WORKER_KIND_QUOTA);

    /* taken items are never handed out again while leased */
    n = worker_run_due(&f->app, &f->wc);
    assert_int_equal(n, 100 - WORKER_KIND_QUOTA);
    assert_int_equal(a.calls, 100);
    assert_int_equal(ev.calls, 3);
    n = worker_run_due(&f->app, &f->wc);
    assert_int_equal(n, 0);
    assert_int_equal(a.calls, 100);

    /* release one without deleting it: handed out again (a crash-like
     * "try again"); release one after deleting it: gone for good */
    worker_item_release(a.taken[0]);
    struct store_batch *b = store_batch_new();
    store_batch_del(b, STORE_OUTBOX, a.taken[1], 16);
    assert_int_equal(store_commit(f->app.store, b), AGAPE_OK);
    worker_item_release(a.taken[1]);
    a.answer = WORKER_ITEM_DONE;
    a.delete_item = true;
    n = worker_run_due(&f->app, &f->wc);
    assert_int_equal(n, 1);
    assert_int_equal(a.calls, 101);
    assert_int_equal(a.order[100], 0);
    worker_get_stats(&st);
    assert_int_equal(st.leased, 98);

    /* LATER leaves one item and goes on with the others */
    for (int i = 2; i < 100; i++) {
        worker_item_release(a.taken[i]);
    }
    a.answer = WORKER_ITEM_LATER;
    a.delete_item = false;
    a.calls = 0;
    assert_int_equal(worker_run_due(&f->app, &f->wc), 0);
    assert_int_equal(a.calls, WORKER_KIND_QUOTA);
    worker_get_stats(&st);
    assert_int_equal(st.leased, 0);
    /* back-pressure: BUSY stops the kind for this tick, the item stays */
    a.answer = WORKER_ITEM_BUSY;
    a.delete_item = false;
    a.calls = 0;
    n = worker_run_due(&f->app, &f->wc);
    assert_int_equal(n, 0);
    assert_int_equal(a.calls, 1);
    a.answer = WORKER_ITEM_DONE;
    a.delete_item = true;
    n = worker_run_due(&f->app, &f->wc);
    assert_int_equal(n, WORKER_KIND_QUOTA);
    n = worker_run_due(&f->app, &f->wc);
    assert_int_equal(n, 98 - WORKER_KIND_QUOTA);
    assert_int_equal(worker_run_due(&f->app, &f->wc), 0);
    worker_get_stats(&st);
    assert_int_equal(st.leased, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_e164),
        cmocka_unit_test(test_ids_and_backoff),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_shipped_templates),
        cmocka_unit_test(test_template_sandbox),
        cmocka_unit_test(test_record_new_and_public),
        cmocka_unit_test_setup_teardown(test_kind_seam, wsetup, wteardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
