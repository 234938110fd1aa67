/* test_plugin_smtp — the smtp plugin, byte for byte, without a network.
 *
 * The real build/plugins/smtp.so, its own init(), the real host table with
 * the wall clock pinned (a copy of the table whose now_ms is fixed), so the
 * whole message, Date included, can be compared byte for byte. The SMTP
 * reply codes are filled by hand, as the core's client reports them
 * (status = the last SMTP reply code). The expected messages were also
 * checked with Python's email package (headers decode to the input, parts
 * to the input text with CRLF line ends). */
#include "buf.h"
#include "client.h"
#include "crypto.h"
#include "host.h"
#include "options.h"
#include "plugins.h"
#include "plugin_harness.h"

#include <inttypes.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#define NOW_MS 1795860000000LL /* Sat, 28 Nov 2026 10:00:00 +0000 */

/* ---------------------------------------------------------------- */
/* Scaffolding                                                      */

static struct harness g;
static struct agape_host g_host; /* host_table() with now_ms pinned */

static int64_t pinned_now(void)
{
    return NOW_MS;
}

static int load_plugin(void **state)
{
    (void)state;
    if (harness_load(&g, "smtp") != 0) {
        return -1;
    }
    g_host = *host_table();
    g_host.now_ms = pinned_now;
    return 0;
}

static int unload_plugin(void **state)
{
    (void)state;
    harness_unload(&g);
    return 0;
}

static int init_ok(json_t *conf)
{
    char err[AGAPE_ERR_SIZE];
    if (harness_provider_init(&g, "smtp", conf, err, sizeof(err)) != AGAPE_OK) {
        fprintf(stderr, "init: %s\n", err);
        return -1;
    }
    return 0;
}

/* AUTH and STARTTLS, as a real submission server wants them. */
static int setup_default(void **state)
{
    (void)state;
    return init_ok(json_pack("{s:s, s:s, s:s, s:s, s:s}", "url", "smtp://mail.example.com:587",
                             "username", "agape", "password", "s3cret", "starttls", "1",
                             "from_email", "noreply@example.com"));
}

static int teardown_provider(void **state)
{
    (void)state;
    harness_provider_fini(&g);
    return 0;
}

#define SEND_EMAIL (g.pl->desc->messaging->send_email)

static enum agape_step op_start(struct harness_op *o, const char *input_json)
{
    harness_op_prepare(o, &g.prov, "send_email", SEND_EMAIL, input_json);
    o->hc.pub.host = &g_host;
    return host_call_step(&o->hc, o->fn);
}

/* The core's client reports an SMTP transfer with the last reply code. */
static enum agape_step op_reply(struct harness_op *o, int code)
{
    harness_set_answer(&o->x, code, "", 0);
    return harness_op_resume(o);
}

static void assert_message(const struct client_xfer *x, const char *expect)
{
    if (x->body_len != strlen(expect) || memcmp(x->body, expect, x->body_len) != 0) {
        FILE *f = fopen("/tmp/test_plugin_smtp.eml", "wb");
        if (f != NULL) {
            fwrite(x->body, 1, x->body_len, f);
            fclose(f);
        }
        fail_msg("message differs (written to /tmp/test_plugin_smtp.eml)\n  got:\n%.*s",
                 (int)x->body_len, x->body);
    }
}

/* ---------------------------------------------------------------- */
/* Descriptor and init                                              */

static void test_descriptor(void **state)
{
    (void)state;
    const struct agape_plugin *d = g.pl->desc;
    assert_string_equal(d->name, "smtp");
    assert_int_equal(d->kinds, AGAPE_KIND_MESSAGING);
    assert_non_null(d->messaging->send_email);
    assert_null(d->messaging->send_sms);
    assert_null(d->webhook);

    static const struct {
        const char *name;
        uint32_t flags;
        const char *env;
    } want[] = {
        {"url", AGAPE_OPT_REQUIRED, "SMTP_URL"},
        {"username", 0, "SMTP_USERNAME"},
        {"password", AGAPE_OPT_SECRET, "SMTP_PASSWORD"},
        {"starttls", 0, "SMTP_STARTTLS"},
        {"from_email", 0, "DEFAULT_FROM_EMAIL"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct agape_option *o = d->options;
        while (o->name && strcmp(o->name, want[i].name) != 0) {
            o++;
        }
        assert_non_null(o->name);
        assert_int_equal(o->flags, want[i].flags);
        assert_string_equal(o->env, want[i].env);
    }
}

static void expect_init_error(json_t *conf, const char *needle)
{
    char err[AGAPE_ERR_SIZE];
    assert_int_not_equal(harness_provider_init(&g, "smtp", conf, err, sizeof(err)), AGAPE_OK);
    assert_null(g.prov.ctx);
    if (strstr(err, needle) == NULL) {
        fail_msg("init error \"%s\" lacks \"%s\"", err, needle);
    }
    harness_provider_fini(&g);
}

static void test_init(void **state)
{
    (void)state;
    expect_init_error(json_object(), "url is required (set SMTP_URL)");
    expect_init_error(json_pack("{s:s}", "url", "http://mail.example.com"),
                      "url: expected an smtp:// or smtps:// URL");
    expect_init_error(json_pack("{s:s}", "url", "smtp://"),
                      "url: expected an smtp:// or smtps:// URL with a host");
    expect_init_error(json_pack("{s:s, s:s}", "url", "smtp://m:25", "password", "p"),
                      "password is set but username is not");
    expect_init_error(json_pack("{s:s, s:s}", "url", "smtp://m:25", "username", "a:b"),
                      "username must be");
    /* "yes" is a boolean to the core since it reads options (plugin.h) */
    expect_init_error(json_pack("{s:s, s:s}", "url", "smtp://m:25", "starttls", "maybe"),
                      "starttls: expected true or false (or 1/0, yes/no) (SMTP_STARTTLS)");
    expect_init_error(json_pack("{s:s, s:s}", "url", "smtp://m:25", "from_email", "x"),
                      "from_email must be an e-mail address");
    /* starttls from env() is a string; "0" and "" mean no. */
    assert_int_equal(init_ok(json_pack("{s:s, s:s}", "url", "smtps://m:465", "starttls", "0")),
                     0);
    harness_provider_fini(&g);
}

/* ---------------------------------------------------------------- */
/* The message                                                      */

static void test_text_message(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(op_start(&o, "{\"message_id\":\"msg_1\",\"to\":\"ana@example.com\","
                                  "\"subject\":\"Welcome\",\"text\":\"Hi Ana,\\nwelcome.\\n\","
                                  "\"idempotency_key\":\"k1\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.method, "POST");
    assert_string_equal(o.x.url, "smtp://mail.example.com:587");
    assert_string_equal(o.x.mail_from, "noreply@example.com");
    assert_int_equal(o.x.n_mail_rcpt, 1);
    assert_string_equal(o.x.mail_rcpt[0], "ana@example.com");
    assert_true(o.x.mail_require_tls);
    assert_string_equal(o.x.userpwd, "agape:s3cret");
    assert_string_equal(harness_req_header(&o.x, "Content-Type"), "message/rfc822");
    assert_message(&o.x, "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
                         "From: noreply@example.com\r\n"
                         "To: ana@example.com\r\n"
                         "Subject: Welcome\r\n"
                         "Message-ID: <msg_1@agape>\r\n"
                         "MIME-Version: 1.0\r\n"
                         "Content-Type: text/plain; charset=UTF-8\r\n"
                         "Content-Transfer-Encoding: base64\r\n"
                         "\r\n"
                         "SGkgQW5hLA0Kd2VsY29tZS4NCg==\r\n");
    harness_op_end(&o);
}

static void test_html_message_with_name(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(op_start(&o, "{\"message_id\":\"msg_2\",\"to\":\"ana@example.com\","
                                  "\"from\":\"billing@example.com\",\"from_name\":"
                                  "\"Agape \\\"Billing\\\"\",\"subject\":\"Your receipt\","
                                  "\"html\":\"<p>Paid</p>\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.mail_from, "billing@example.com");
    assert_message(&o.x, "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
                         "From: \"Agape \\\"Billing\\\"\" <billing@example.com>\r\n"
                         "To: ana@example.com\r\n"
                         "Subject: Your receipt\r\n"
                         "Message-ID: <msg_2@agape>\r\n"
                         "MIME-Version: 1.0\r\n"
                         "Content-Type: text/html; charset=UTF-8\r\n"
                         "Content-Transfer-Encoding: base64\r\n"
                         "\r\n"
                         "PHA+UGFpZDwvcD4=\r\n");
    harness_op_end(&o);
}

/* Non-ASCII subject and name as RFC 2047 encoded words, folded at 76, each
 * word holding whole characters ("está" is not split); a
 * multipart/alternative with both bodies, text line ends made CRLF, base64
 * lines cut at 76. */
#define BOUNDARY "fb7590d1a9fa16d1b7483e4802b03adc" /* hex of SHA-256("msg_3"), 16 bytes */

static void test_multipart_encoded(void **state)
{
    (void)state;
    struct harness_op o;
    assert_int_equal(
        op_start(&o, "{\"message_id\":\"msg_3\",\"to\":\"ana@example.com\","
                     "\"from_name\":\"Jos\\u00e9 da Agape\","
                     "\"subject\":\"Ol\\u00e1 Ana \\u2014 a sua conta Agape est\\u00e1 pronta "
                     "para usar, bem-vinda!\","
                     "\"text\":\"Ol\\u00e1 Ana,\\r\\n.a linha com ponto\\nfim\","
                     "\"html\":\"<p>Ol\\u00e1 Ana, esta \\u00e9 uma linha de HTML bastante "
                     "longa para passar dos setenta e seis caracteres.</p>\"}"),
        AGAPE_STEP_SEND);
    assert_message(
        &o.x,
        "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
        "From: =?UTF-8?B?Sm9zw6kgZGEgQWdhcGU=?= <noreply@example.com>\r\n"
        "To: ana@example.com\r\n"
        "Subject: =?UTF-8?B?T2zDoSBBbmEg4oCUIGEgc3VhIGNvbnRhIEFnYXBlIGVzdMOhIHBy?=\r\n"
        " =?UTF-8?B?b250YSBwYXJhIHVzYXIsIGJlbS12aW5kYSE=?=\r\n"
        "Message-ID: <msg_3@agape>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/alternative;\r\n"
        " boundary=\"=_agape_" BOUNDARY "\"\r\n"
        "\r\n"
        "--=_agape_" BOUNDARY "\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "T2zDoSBBbmEsDQouYSBsaW5oYSBjb20gcG9udG8NCmZpbQ==\r\n"
        "--=_agape_" BOUNDARY "\r\n"
        "Content-Type: text/html; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "PHA+T2zDoSBBbmEsIGVzdGEgw6kgdW1hIGxpbmhhIGRlIEhUTUwgYmFzdGFudGUgbG9uZ2EgcGFy\r\n"
        "YSBwYXNzYXIgZG9zIHNldGVudGEgZSBzZWlzIGNhcmFjdGVyZXMuPC9wPg==\r\n"
        "--=_agape_" BOUNDARY "--\r\n");
    harness_op_end(&o);
}

/* A subject of two-byte characters only: every encoded word must decode to
 * whole characters (an even number of bytes) and every line stay ≤ 76. */
static void test_subject_words_hold_whole_characters(void **state)
{
    (void)state;
    struct harness_op o;
    struct agape_buf in;
    buf_init(&in, 0);
    buf_adds(&in, "{\"message_id\":\"m\",\"to\":\"ana@example.com\",\"text\":\"t\","
                  "\"subject\":\"");
    for (int i = 0; i < 100; i++) {
        buf_adds(&in, "\xc3\xa9");
    }
    buf_adds(&in, "\"}");
    assert_int_equal(op_start(&o, in.data), AGAPE_STEP_SEND);
    buf_fini(&in);

    const char *p = strstr(o.x.body, "\r\nSubject:");
    assert_non_null(p);
    p += 2;
    size_t decoded = 0;
    int words = 0;
    for (;;) {
        const char *eol = strstr(p, "\r\n");
        assert_non_null(eol);
        assert_true(eol - p <= 76);
        const char *w = strstr(p, "=?UTF-8?B?");
        assert_true(w != NULL && w < eol);
        const char *end = strstr(w, "?=");
        assert_true(end != NULL && end < eol);
        unsigned char bytes[64];
        long n = crypto_base64_decode(w + 10, (size_t)(end - w - 10), bytes, sizeof(bytes));
        assert_true(n > 0 && n % 2 == 0);
        for (long i = 0; i < n; i += 2) {
            assert_int_equal(bytes[i], 0xc3);
            assert_int_equal(bytes[i + 1], 0xa9);
        }
        decoded += (size_t)n;
        words++;
        p = eol + 2;
        if (*p != ' ') {
            break; /* the next header */
        }
    }
    assert_int_equal(decoded, 200);
    assert_true(words >= 5);
    harness_op_end(&o);
}

static void expect_refused(const char *input, const char *needle)
{
    struct harness_op o;
    assert_int_equal(op_start(&o, input), AGAPE_STEP_FAIL);
    assert_int_equal(o.hc.pub.outcome, AGAPE_OUTCOME_INVALID);
    assert_null(o.x.url);
    assert_null(o.x.body);
    if (strstr(o.hc.pub.err, needle) == NULL) {
        fail_msg("err \"%s\" lacks \"%s\"", o.hc.pub.err, needle);
    }
    harness_op_end(&o);
}

static void test_header_injection(void **state)
{
    (void)state;
    expect_refused("{\"message_id\":\"m\",\"to\":\"ana@example.com\\r\\nBcc: all@example.com\","
                   "\"subject\":\"s\",\"text\":\"t\"}",
                   "to must not contain CR or LF");
    expect_refused("{\"message_id\":\"m\",\"to\":\"ana@example.com\","
                   "\"subject\":\"Hi\\nBcc: all@example.com\",\"text\":\"t\"}",
                   "subject must not contain CR or LF");
    expect_refused("{\"message_id\":\"m\",\"to\":\"ana@example.com\",\"subject\":\"s\","
                   "\"from\":\"me@example.com\\rX: y\",\"text\":\"t\"}",
                   "from must not contain CR or LF");
    expect_refused("{\"message_id\":\"m\",\"to\":\"ana@example.com\",\"subject\":\"s\","
                   "\"from_name\":\"A\\r\\nB\",\"text\":\"t\"}",
                   "from_name must not contain CR or LF");
    /* Other ways to smuggle a recipient or a header. */
    expect_refused("{\"message_id\":\"m\",\"to\":\"ana@example.com,all@example.com\","
                   "\"subject\":\"s\",\"text\":\"t\"}",
                   "to must be one e-mail address");
    expect_refused("{\"message_id\":\"m\",\"to\":\"<ana@example.com>\",\"subject\":\"s\","
                   "\"text\":\"t\"}",
                   "to must be one e-mail address");
    expect_refused("{\"message_id\":\"m>\\r\\nX: y\",\"to\":\"ana@example.com\","
                   "\"subject\":\"s\",\"text\":\"t\"}",
                   "message_id");
}

static void test_refused_inputs(void **state)
{
    (void)state;
    expect_refused("{\"to\":\"ana@example.com\",\"subject\":\"s\",\"text\":\"t\"}",
                   "message_id is required");
    expect_refused("{\"message_id\":\"a b\",\"to\":\"ana@example.com\",\"subject\":\"s\","
                   "\"text\":\"t\"}",
                   "message_id");
    expect_refused("{\"message_id\":\"m\",\"to\":\"ana@example.com\",\"text\":\"t\"}",
                   "subject is required");
    expect_refused("{\"message_id\":\"m\",\"to\":\"ana@example.com\",\"subject\":\"s\"}",
                   "text or html is required");
    expect_refused("{\"message_id\":\"m\",\"to\":\"ana@example.com\","
                   "\"template_id\":\"d-1\",\"data\":{}}",
                   "template_id needs a provider-side template");
}

static void test_plain_config(void **state)
{
    (void)state;
    struct harness_op o;
    /* No AUTH, no STARTTLS, implicit TLS, no default sender. */
    assert_int_equal(init_ok(json_pack("{s:s}", "url", "smtps://mail.example.com:465")), 0);
    expect_refused("{\"message_id\":\"m\",\"to\":\"ana@example.com\",\"subject\":\"s\","
                   "\"text\":\"t\"}",
                   "from is required");
    assert_int_equal(op_start(&o, "{\"message_id\":\"m\",\"to\":\"ana@example.com\","
                                  "\"from\":\"me@example.com\",\"subject\":\"s\",\"text\":\"t\"}"),
                     AGAPE_STEP_SEND);
    assert_string_equal(o.x.url, "smtps://mail.example.com:465");
    assert_null(o.x.userpwd);
    assert_false(o.x.mail_require_tls);
    harness_op_end(&o);
    harness_provider_fini(&g);
}

/* ---------------------------------------------------------------- */
/* Replies                                                          */

static void test_replies(void **state)
{
    (void)state;
    static const struct {
        int code;
        enum agape_outcome outcome;
    } rows[] = {
        {250, AGAPE_OUTCOME_OK},          {251, AGAPE_OUTCOME_OK},
        {535, AGAPE_OUTCOME_AUTH},        {530, AGAPE_OUTCOME_AUTH},
        {534, AGAPE_OUTCOME_AUTH},        {550, AGAPE_OUTCOME_DECLINED},
        {551, AGAPE_OUTCOME_DECLINED},    {553, AGAPE_OUTCOME_DECLINED},
        {421, AGAPE_OUTCOME_UNAVAILABLE}, {450, AGAPE_OUTCOME_UNAVAILABLE},
        {451, AGAPE_OUTCOME_UNAVAILABLE}, {452, AGAPE_OUTCOME_UNAVAILABLE},
        {454, AGAPE_OUTCOME_UNAVAILABLE}, {500, AGAPE_OUTCOME_INVALID},
        {552, AGAPE_OUTCOME_INVALID},     {554, AGAPE_OUTCOME_INVALID},
        {0, AGAPE_OUTCOME_UNKNOWN},       {354, AGAPE_OUTCOME_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct harness_op o;
        assert_int_equal(op_start(&o, "{\"message_id\":\"msg_1\",\"to\":\"ana@example.com\","
                                      "\"subject\":\"s\",\"text\":\"t\"}"),
                         AGAPE_STEP_SEND);
        assert_int_equal(op_reply(&o, rows[i].code), AGAPE_STEP_DONE);
        if (o.hc.pub.outcome != rows[i].outcome) {
            fail_msg("reply %d: outcome %d, wanted %d", rows[i].code, o.hc.pub.outcome,
                     rows[i].outcome);
        }
        if (rows[i].outcome == AGAPE_OUTCOME_OK) {
            assert_string_equal(harness_res_str(&o, "provider_ref"), "<msg_1@agape>");
            assert_string_equal(harness_res_str(&o, "status"), "sent");
            assert_string_equal(o.hc.pub.err, "");
        } else {
            assert_null(harness_res_str(&o, "provider_ref"));
            assert_true(strlen(o.hc.pub.err) > 0);
            assert_null(strstr(o.hc.pub.err, "s3cret"));
        }
        if (rows[i].outcome == AGAPE_OUTCOME_DECLINED) {
            assert_string_equal(harness_res_str(&o, "status"), "failed");
            assert_int_equal(json_integer_value(json_object_get(o.hc.result, "error_code")),
                             rows[i].code);
        }
        harness_op_end(&o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init),
        cmocka_unit_test_setup_teardown(test_text_message, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_html_message_with_name, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_multipart_encoded, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_subject_words_hold_whole_characters, setup_default,
                                        teardown_provider),
        cmocka_unit_test_setup_teardown(test_header_injection, setup_default, teardown_provider),
        cmocka_unit_test_setup_teardown(test_refused_inputs, setup_default, teardown_provider),
        cmocka_unit_test(test_plain_config),
        cmocka_unit_test_setup_teardown(test_replies, setup_default, teardown_provider),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
