/* Unit tests of core/webhook.c (ids, keys, records, the payment status order,
 * subscriptions, backoff) and of the worker's commit rules (worker.c +
 * script_rules.c) on a real store and script engine, without HTTP. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "app.h"
#include "conf.h"
#include "script_rules.h"
#include "store.h"
#include "store_keys.h"
#include "webhook.h"
#include "worker.h"

#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- pure logic --------------------------------------------------------- */

static void test_status_order(void **state)
{
    (void)state;
    static const struct {
        const char *from, *to;
        bool ok;
    } cases[] = {
        {"requires_action", "processing", true},
        {"requires_action", "succeeded", true},
        {"processing", "succeeded", true},
        {"processing", "failed", true},
        {"processing", "canceled", true},
        {"processing", "refunded", true},
        {"succeeded", "refunded", true},
        {"failed", "succeeded", true},   /* the customer retried */
        {"failed", "canceled", true},
        {NULL, "succeeded", true},       /* no status yet */
        {"weird", "processing", true},
        {"succeeded", "processing", false}, /* a late processing changes nothing */
        {"succeeded", "requires_action", false},
        {"succeeded", "failed", false},
        {"succeeded", "canceled", false},
        {"succeeded", "succeeded", false},
        {"canceled", "succeeded", false},
        {"canceled", "failed", false},
        {"failed", "processing", false},
        {"failed", "refunded", false},   /* nothing was taken */
        {"canceled", "refunded", false},
        {"refunded", "succeeded", false},
        {"refunded", "failed", false},
        {"processing", "requires_action", false},
        {"processing", "bogus", false},
        {"processing", NULL, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = webhook_status_allowed(cases[i].from, cases[i].to);
        if (got != cases[i].ok) {
            fail_msg("%s -> %s: expected %d", cases[i].from ? cases[i].from : "(null)",
                     cases[i].to ? cases[i].to : "(null)", cases[i].ok);
        }
    }
    assert_int_equal(webhook_status_rank("refunded"), 3);
    assert_int_equal(webhook_status_rank("nope"), -1);
}

static void test_apply_payment(void **state)
{
    (void)state;
    json_t *p = json_pack("{s:s, s:s, s:i, s:i}", "id", "pay_1", "status", "requires_action",
                          "amount", 1999, "refunded_amount", 0);
    assert_int_equal(webhook_apply_payment(p, "e1", "t", "succeeded", 1000), WEBHOOK_APPLIED);
    assert_string_equal(json_string_value(json_object_get(p, "status")), "succeeded");
    assert_int_equal(webhook_apply_payment(p, "e2", "t", "processing", 1000), WEBHOOK_REFUSED);
    assert_int_equal(webhook_apply_payment(p, "e3", "t", "succeeded", 1000), WEBHOOK_UNCHANGED);
    assert_int_equal(webhook_apply_payment(p, "e4", "t", NULL, 1000), WEBHOOK_UNCHANGED);
    assert_int_equal(webhook_apply_payment(p, "e5", "t", "bogus", 1000), WEBHOOK_REFUSED);
    json_t *ev = json_object_get(p, "events");
    assert_int_equal(json_array_size(ev), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "event_id")),
                        "e1");
    assert_int_equal(webhook_apply_payment(p, "e6", "t", "refunded", 1000), WEBHOOK_APPLIED);
    assert_int_equal(json_integer_value(json_object_get(p, "refunded_amount")), 1999);
    assert_string_equal(json_string_value(json_object_get(p, "updated_at")),
                        "1970-01-01T00:00:01Z");
    json_decref(p);

    /* The list keeps the last WEBHOOK_PAYMENT_EVENTS_MAX entries. */
    p = json_pack("{s:s}", "status", "failed");
    for (int i = 0; i < WEBHOOK_PAYMENT_EVENTS_MAX + 10; i++) {
        char id[16];
        snprintf(id, sizeof(id), "e%d", i);
        json_object_set_new(p, "status", json_string("failed"));
        assert_int_equal(webhook_apply_payment(p, id, "t", "succeeded", 0), WEBHOOK_APPLIED);
    }
    ev = json_object_get(p, "events");
    assert_int_equal(json_array_size(ev), WEBHOOK_PAYMENT_EVENTS_MAX);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "event_id")),
                        "e10");
    json_decref(p);
}

static void test_ids_and_keys(void **state)
{
    (void)state;
    char id[WEBHOOK_ID_MAX];
    char prov[WEBHOOK_PROVIDER_MAX + 1];
    char ev[WEBHOOK_EVENT_ID_MAX + 1];
    assert_int_equal(webhook_public_id("stripe", "evt_1", id, sizeof(id)), AGAPE_OK);
    assert_string_equal(id, "stripe:evt_1");
    /* The first ':' splits: event ids may hold more. */
    assert_int_equal(webhook_parse_id("sandbox:a:b/c d", prov, sizeof(prov), ev, sizeof(ev)),
                     AGAPE_OK);
    assert_string_equal(prov, "sandbox");
    assert_string_equal(ev, "a:b/c d");
    assert_int_equal(webhook_parse_id("nocolon", prov, sizeof(prov), ev, sizeof(ev)),
                     AGAPE_EINVAL);
    assert_int_equal(webhook_parse_id(":x", prov, sizeof(prov), ev, sizeof(ev)), AGAPE_EINVAL);
    assert_int_equal(webhook_parse_id("stripe:", prov, sizeof(prov), ev, sizeof(ev)),
                     AGAPE_EINVAL);
    assert_int_equal(webhook_parse_id("Bad:x", prov, sizeof(prov), ev, sizeof(ev)),
                     AGAPE_EINVAL);
    assert_int_equal(webhook_parse_id("p:a\tb", prov, sizeof(prov), ev, sizeof(ev)),
                     AGAPE_EINVAL);

    char long_id[WEBHOOK_EVENT_ID_MAX + 2];
    memset(long_id, 'x', sizeof(long_id));
    assert_true(webhook_event_id_ok(long_id, WEBHOOK_EVENT_ID_MAX));
    assert_false(webhook_event_id_ok(long_id, WEBHOOK_EVENT_ID_MAX + 1));
    assert_false(webhook_event_id_ok("a\nb", 3));
    assert_false(webhook_event_id_ok("", 0));
    assert_true(webhook_provider_ok("stripe_2-eu"));
    assert_false(webhook_provider_ok("Stripe"));
    assert_false(webhook_provider_ok(""));

    uint8_t k[STORE_KEY_MAX];
    size_t kl = 0;
    assert_int_equal(webhook_inbox_key("stripe", "evt_1", k, sizeof(k), &kl), AGAPE_OK);
    assert_int_equal(kl, 12);
    assert_memory_equal(k, "stripe\0evt_1", 12);
    assert_int_equal(webhook_inbox_key("stripe", "a\x01", k, sizeof(k), &kl), AGAPE_EINVAL);

    uint8_t ok[16];
    uint8_t back[16];
    char hex[33];
    store_key_outbox(ok, 0x0102030405060708ULL, 0xfffefdfcfbfaf9f8ULL);
    webhook_outbox_hex(ok, hex);
    assert_string_equal(hex, "0102030405060708fffefdfcfbfaf9f8");
    assert_true(webhook_outbox_unhex(hex, back));
    assert_memory_equal(ok, back, 16);
    assert_false(webhook_outbox_unhex("0102", back));
    assert_false(webhook_outbox_unhex("zz02030405060708fffefdfcfbfaf9f8", back));
    assert_false(webhook_outbox_unhex(NULL, back));

    char *item = webhook_outbox_item("stripe", "evt_1");
    /* "kind" first: the worker recognises its items by this prefix. */
    assert_string_equal(item,
                        "{\"kind\":\"webhook\",\"provider\":\"stripe\",\"event_id\":\"evt_1\"}");
    free(item);
}

static void test_inbox_record(void **state)
{
    (void)state;
    json_t *norm = json_pack("{s:s, s:s, s:s}", "event_id", "evt_1", "type", "a.b",
                             "payment_ref", "pi_1");
    const char body[] = "{\"id\":\"evt_1\"}";
    json_t *rec = webhook_inbox_record("stripe", norm, body, sizeof(body) - 1, 1000, 3000,
                                       "00112233445566778899aabbccddeeff");
    assert_non_null(rec);
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "pending");
    assert_int_equal(json_integer_value(json_object_get(rec, "attempts")), 0);
    assert_string_equal(json_string_value(json_object_get(rec, "event_id")), "evt_1");
    assert_string_equal(json_string_value(json_object_get(rec, "type")), "a.b");
    assert_string_equal(json_string_value(json_object_get(rec, "received_at")),
                        "1970-01-01T00:00:01Z");
    assert_string_equal(json_string_value(json_object_get(rec, "next_at")),
                        "1970-01-01T00:00:03Z");
    assert_string_equal(json_string_value(json_object_get(rec, "body")), body);
    assert_true(json_is_null(json_object_get(rec, "last_error")));
    assert_true(json_equal(json_object_get(rec, "normalized"), norm));

    json_t *pub = webhook_inbox_public(rec, false);
    assert_string_equal(json_string_value(json_object_get(pub, "id")), "stripe:evt_1");
    assert_null(json_object_get(pub, "outbox_key"));
    assert_null(json_object_get(pub, "body"));
    assert_null(json_object_get(pub, "v"));
    json_decref(pub);
    pub = webhook_inbox_public(rec, true);
    assert_non_null(json_object_get(pub, "body"));
    json_decref(pub);
    json_decref(rec);

    /* Bytes that are not UTF-8 are kept exactly, in base64. */
    const char bin[] = {'\xff', '\xfe', 'a'};
    rec = webhook_inbox_record("stripe", norm, bin, sizeof(bin), 0, 0, "x");
    assert_null(json_object_get(rec, "body"));
    assert_string_equal(json_string_value(json_object_get(rec, "body_b64")), "//5h");
    json_decref(rec);
    json_decref(norm);
}

static void test_subscription_record(void **state)
{
    (void)state;
    /* What a plugin's normalize gives (Stripe's object is translated there). */
    json_t *sub = json_loads("{\"id\":\"sub_1\",\"customer\":\"cus_1\",\"status\":\"active\","
                             "\"cancel_at_period_end\":false,\"metadata\":{\"user_id\":\"42\"},"
                             "\"current_period_end\":1900000000,\"deleted\":false,"
                             "\"items\":[{\"id\":\"si_1\",\"price\":\"price_1\","
                             "\"product\":\"prod_1\",\"quantity\":2}]}",
                             0, NULL);
    assert_non_null(sub);
    json_t *s1 = webhook_subscription_record("stripe", "evt_2", 200, sub, NULL, 0);
    assert_non_null(s1);
    assert_string_equal(json_string_value(json_object_get(s1, "customer")), "cus_1");
    assert_string_equal(json_string_value(json_object_get(s1, "status")), "active");
    assert_string_equal(json_string_value(json_object_get(s1, "provider")), "stripe");
    assert_string_equal(json_string_value(json_object_get(s1, "event_id")), "evt_2");
    assert_int_equal(json_integer_value(json_object_get(s1, "event_created")), 200);
    assert_int_equal(json_integer_value(json_object_get(s1, "current_period_end")),
                     1900000000);
    json_t *item = json_array_get(json_object_get(s1, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "price")), "price_1");

    /* An older event does not overwrite; the same or a later one does. */
    assert_null(webhook_subscription_record("stripe", "evt_1", 100, sub, s1, 0));
    json_object_set_new(sub, "deleted", json_true());
    json_t *s2 = webhook_subscription_record("stripe", "evt_3", 300, sub, s1, 0);
    assert_non_null(s2);
    assert_true(json_is_true(json_object_get(s2, "deleted")));
    json_decref(s2);
    json_decref(s1);

    json_t *noid = json_object();
    assert_null(webhook_subscription_record("stripe", "e", 1, noid, NULL, 0));
    json_decref(noid);
    json_decref(sub);
}

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(webhook_backoff_ms(1, 1000, 300000), 1000);
    assert_int_equal(webhook_backoff_ms(2, 1000, 300000), 2000);
    assert_int_equal(webhook_backoff_ms(4, 1000, 300000), 8000);
    assert_int_equal(webhook_backoff_ms(9, 1000, 300000), 256000);
    assert_int_equal(webhook_backoff_ms(10, 1000, 300000), 300000);
    assert_int_equal(webhook_backoff_ms(1000, 1000, 300000), 300000);
}

/* ---- the worker on a real store and script engine ----------------------- */

struct wfix {
    char dir[64];
    char scripts[96];
    struct app app;
    struct worker_conf wc;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static const char RULES[] =
    "function on_webhook(ev)\n"
    "  local k = 'count:' .. ev.id\n"
    "  agape.kv_put('t', k, (agape.kv_get('t', k) or 0) + 1)\n"
    "  if ev.payment then agape.kv_put('t', 'status', ev.payment.status) end\n"
    "  agape.enqueue_message{channel = 'sms', to = '+14155550100', body = 'hi'}\n"
    "  if ev.type == 'fail' then error('failing on purpose') end\n"
    "end\n";

static int wsetup(void **state)
{
    struct wfix *f = calloc(1, sizeof(*f));
    char err[512];
    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/agape-wh-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->scripts, sizeof(f->scripts), "%s/scripts", f->dir);
    char path[160];
    snprintf(path, sizeof(path), "%s/rules.lua", f->scripts);
    char data[96];
    snprintf(data, sizeof(data), "%s/data", f->dir);
    FILE *fp = NULL;
    if (mkdir(f->scripts, 0700) != 0 || (fp = fopen(path, "w")) == NULL) {
        return -1;
    }
    fputs(RULES, fp);
    fclose(fp);
    if (store_open(data, &f->app.store, err, sizeof(err)) != AGAPE_OK ||
        script_engine_create(f->scripts, NULL, &f->app.scripts, err, sizeof(err)) != AGAPE_OK ||
        script_rules_register(f->app.scripts, f->app.store) != AGAPE_OK) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    worker_conf_load(NULL, &f->wc);
    f->wc.max_attempts = 2;
    f->wc.backoff_ms = 1;
    *state = f;
    return 0;
}

static int wteardown(void **state)
{
    struct wfix *f = *state;
    script_engine_destroy(f->app.scripts);
    store_close(f->app.store);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* What api_webhooks.c commits for a delivery: the inbox record and its
 * outbox item, due now. */
static void receive(struct wfix *f, const char *evid, const char *type, const char *ref,
                    const char *status, int want_rc)
{
    json_t *norm = json_pack("{s:s, s:s}", "event_id", evid, "type", type);
    if (ref) {
        json_object_set_new(norm, "payment_ref", json_string(ref));
        json_object_set_new(norm, "status", json_string(status));
    }
    uint8_t ok[16];
    char hex[33];
    uint8_t ik[STORE_KEY_MAX];
    size_t ikl = 0;
    int64_t now = client_wall_ms();
    assert_int_equal(script_rules_outbox_key(ok, now), AGAPE_OK);
    webhook_outbox_hex(ok, hex);
    assert_int_equal(webhook_inbox_key("sandbox", evid, ik, sizeof(ik), &ikl), AGAPE_OK);
    json_t *rec = webhook_inbox_record("sandbox", norm, "{}", 2, now, now, hex);
    char *text = json_dumps(rec, JSON_COMPACT);
    char *item = webhook_outbox_item("sandbox", evid);
    struct store_batch *b = store_batch_new();
    store_batch_insert(b, STORE_INBOX, ik, ikl, text, strlen(text));
    store_batch_put(b, STORE_OUTBOX, ok, sizeof(ok), item, strlen(item));
    assert_int_equal(store_commit(f->app.store, b), want_rc);
    free(text);
    free(item);
    json_decref(rec);
    json_decref(norm);
}

static json_t *inbox(struct wfix *f, const char *evid)
{
    uint8_t ik[STORE_KEY_MAX];
    size_t ikl = 0;
    char *val = NULL;
    size_t vlen = 0;
    assert_int_equal(webhook_inbox_key("sandbox", evid, ik, sizeof(ik), &ikl), AGAPE_OK);
    assert_int_equal(store_get(f->app.store, STORE_INBOX, ik, ikl, &val, &vlen), AGAPE_OK);
    json_t *rec = json_loadb(val, vlen, 0, NULL);
    free(val);
    return rec;
}

static int count_cb(const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    (*(int *)arg)++;
    return 0;
}

static int outbox_count(struct wfix *f)
{
    int n = 0;
    assert_int_equal(store_scan(f->app.store, STORE_OUTBOX, NULL, 0, NULL, 0, 0, count_cb, &n),
                     AGAPE_OK);
    return n;
}

static json_int_t kv_int(struct wfix *f, const char *key)
{
    json_t *v = script_rules_kv_read(f->app.store, "t", key);
    json_int_t n = v ? json_integer_value(v) : -1;
    json_decref(v);
    return n;
}

static void test_worker_runs_once(void **state)
{
    struct wfix *f = *state;
    /* A payment and its pref index, as api_payments.c writes them. */
    const char pay[] = "{\"id\":\"pay_1\",\"status\":\"processing\",\"amount\":5}";
    uint8_t k[STORE_KEY_MAX];
    size_t kl = 0;
    struct store_batch *b = store_batch_new();
    store_batch_put(b, STORE_PAYMENTS, "pay_1", 5, pay, strlen(pay));
    assert_int_equal(store_key_pair(k, sizeof(k), "pref:sandbox", "sbx_pay_1", &kl), AGAPE_OK);
    store_batch_put(b, STORE_META, k, kl, "pay_1", 5);
    assert_int_equal(store_commit(f->app.store, b), AGAPE_OK);

    receive(f, "ev_1", "ok", "sbx_pay_1", "succeeded", AGAPE_OK);
    receive(f, "ev_1", "ok", "sbx_pay_1", "succeeded", AGAPE_EEXIST); /* duplicate */
    assert_int_equal(outbox_count(f), 1);
    assert_int_equal(worker_run_due(&f->app, &f->wc), 1);
    assert_int_equal(worker_run_due(&f->app, &f->wc), 0); /* nothing left to run */
    json_t *rec = inbox(f, "ev_1");
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "done");
    assert_int_equal(json_integer_value(json_object_get(rec, "attempts")), 1);
    json_decref(rec);
    assert_int_equal(kv_int(f, "count:sandbox:ev_1"), 1);
    json_t *st = script_rules_kv_read(f->app.store, "t", "status");
    assert_string_equal(json_string_value(st), "succeeded"); /* the rule saw the update */
    json_decref(st);
    /* the webhook item went, the rule's message came */
    assert_int_equal(outbox_count(f), 1);
    char *val = NULL;
    size_t vlen = 0;
    assert_int_equal(store_get(f->app.store, STORE_PAYMENTS, "pay_1", 5, &val, &vlen), AGAPE_OK);
    assert_non_null(strstr(val, "\"status\":\"succeeded\""));
    free(val);
}

static void test_worker_failure_commits_no_effect(void **state)
{
    struct wfix *f = *state;
    receive(f, "ev_f", "fail", NULL, NULL, AGAPE_OK);
    assert_int_equal(worker_run_due(&f->app, &f->wc), 1);
    json_t *rec = inbox(f, "ev_f");
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "pending");
    assert_int_equal(json_integer_value(json_object_get(rec, "attempts")), 1);
    assert_non_null(strstr(json_string_value(json_object_get(rec, "last_error")),
                           "failing on purpose"));
    json_decref(rec);
    assert_int_equal(kv_int(f, "count:sandbox:ev_f"), -1); /* nothing the rule wrote */
    assert_int_equal(outbox_count(f), 1);                  /* the retry, no message */
    usleep(20000);
    assert_int_equal(worker_run_due(&f->app, &f->wc), 1);
    rec = inbox(f, "ev_f");
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "failed");
    assert_int_equal(json_integer_value(json_object_get(rec, "attempts")), 2);
    assert_true(json_is_null(json_object_get(rec, "outbox_key")));
    json_decref(rec);
    assert_int_equal(outbox_count(f), 0);

    /* replay: pending and due now; the stale item of an earlier schedule is dropped */
    json_t *ev = NULL;
    assert_int_equal(worker_replay(&f->app, "sandbox", "ev_f", &ev), AGAPE_OK);
    assert_string_equal(json_string_value(json_object_get(ev, "status")), "pending");
    assert_int_equal(json_integer_value(json_object_get(ev, "attempts")), 0);
    json_decref(ev);
    assert_int_equal(worker_replay(&f->app, "sandbox", "ev_f", &ev), AGAPE_OK);
    json_decref(ev);
    assert_int_equal(outbox_count(f), 1); /* the second replay replaced the first's item */
    assert_int_equal(worker_replay(&f->app, "sandbox", "nope", &ev), AGAPE_ENOENT);
    assert_null(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_order),
        cmocka_unit_test(test_apply_payment),
        cmocka_unit_test(test_ids_and_keys),
        cmocka_unit_test(test_inbox_record),
        cmocka_unit_test(test_subscription_record),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test_setup_teardown(test_worker_runs_once, wsetup, wteardown),
        cmocka_unit_test_setup_teardown(test_worker_failure_commits_no_effect, wsetup,
                                        wteardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
