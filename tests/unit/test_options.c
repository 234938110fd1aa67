/* options: a provider's table read against an option schema — each type's
 * accepted forms and its normalized value, defaults, the messages an
 * operator reads (provider, option, variable; never the value), unknown keys
 * with their "did you mean", and the loader's check of declarations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "conf.h"
#include "options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void contains(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL) {
        fail_msg("\"%s\" does not contain \"%s\"", hay ? hay : "(null)", needle);
    }
}

/* One option of a type, for the per-type tests. */
static struct agape_option one[2];

static void declare(enum agape_opt_type type, const char *dflt, int64_t min, int64_t max)
{
    memset(one, 0, sizeof(one));
    one[0].name = "opt";
    one[0].env = "OPT_ENV";
    one[0].description = "a test option";
    one[0].type = type;
    one[0].dflt = dflt;
    one[0].min = min;
    one[0].max = max;
}

/* Normalize {"opt": <value JSON text>} (NULL: an empty table); returns the
 * normalized value (a new reference; NULL when absent) or, on a type error,
 * NULL with the problem line in `msg`. */
static json_t *norm(const char *value, char *msg, size_t msglen)
{
    struct problems probs = {0};
    struct options_report rep;
    json_t *tab = json_object();
    json_t *out = NULL;
    json_t *v = NULL;

    memset(&rep, 0, sizeof(rep));
    rep.probs = &probs;
    if (value != NULL) {
        v = json_loads(value, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (v == NULL) {
            fail_msg("bad test JSON %s", value);
        }
        json_object_set_new(tab, "opt", v);
    }
    int rc = options_normalize("prov", one, tab, &out, &rep);
    msg[0] = '\0';
    if (rep.type_errors > 0) {
        assert_int_equal(rc, AGAPE_EINVAL);
        assert_int_equal(probs.n, 1);
        snprintf(msg, msglen, "%s", probs.items[0]);
        assert_null(json_object_get(out, "opt")); /* a wrong value is not passed on */
        v = NULL;
    } else {
        assert_int_equal(rc, AGAPE_OK);
        assert_int_equal(probs.n, 0);
        v = json_object_get(out, "opt");
        json_incref(v);
    }
    json_decref(out);
    json_decref(tab);
    problems_free(&probs);
    return v;
}

static void expect_text(const char *value, const char *want)
{
    char msg[1024];
    json_t *v = norm(value, msg, sizeof(msg));
    if (v == NULL || !json_is_string(v)) {
        fail_msg("%s: no string (%s)", value, msg);
    }
    assert_string_equal(json_string_value(v), want);
    json_decref(v);
}

static void expect_int(const char *value, json_int_t want)
{
    char msg[1024];
    json_t *v = norm(value, msg, sizeof(msg));
    if (!json_is_integer(v)) {
        fail_msg("%s: no integer (%s)", value, msg);
    }
    assert_int_equal(json_integer_value(v), want);
    json_decref(v);
}

static void expect_bool(const char *value, bool want)
{
    char msg[1024];
    json_t *v = norm(value, msg, sizeof(msg));
    if (!json_is_boolean(v)) {
        fail_msg("%s: no boolean (%s)", value, msg);
    }
    assert_int_equal(json_is_true(v), want);
    json_decref(v);
}

/* The normalized list, as compact JSON. */
static void expect_list(const char *value, const char *want)
{
    char msg[1024];
    json_t *v = norm(value, msg, sizeof(msg));
    if (!json_is_array(v)) {
        fail_msg("%s: no list (%s)", value, msg);
    }
    char *got = json_dumps(v, JSON_COMPACT);
    assert_string_equal(got, want);
    free(got);
    json_decref(v);
}

static void expect_absent(const char *value)
{
    char msg[1024];
    json_t *v = norm(value, msg, sizeof(msg));
    assert_null(v);
    assert_string_equal(msg, "");
}

static void expect_error(const char *value, const char *needle)
{
    char msg[1024];
    json_t *v = norm(value, msg, sizeof(msg));
    if (v != NULL) {
        char *got = json_dumps(v, JSON_ENCODE_ANY);
        fail_msg("%s was accepted as %s", value, got);
    }
    contains(msg, needle);
}

/* ---------------------------------------------------------------- */
/* Types                                                            */

static void test_string(void **state)
{
    (void)state;
    declare(AGAPE_OPT_STRING, NULL, 0, 0);
    expect_text("\"sk_test_1\"", "sk_test_1");
    expect_text("\" kept as typed \"", " kept as typed ");
    /* not set: an unset variable through env() gives nil or "" */
    expect_absent(NULL);
    expect_absent("null");
    expect_absent("\"\"");
    expect_error("5", "provider prov: opt: expected a string (OPT_ENV)");
    expect_error("true", "opt: expected a string");
    expect_error("[\"a\"]", "opt: expected a string");
    expect_error("\"a\\u0000b\"", "opt: expected a string"); /* C would see "a" */
    declare(AGAPE_OPT_STRING, "agape", 0, 0);
    expect_text(NULL, "agape");
    expect_text("\"\"", "agape");
    expect_text("\"mine\"", "mine");
}

static void test_int(void **state)
{
    (void)state;
    declare(AGAPE_OPT_INT, "300", 0, 31536000);
    expect_int("600", 600);
    expect_int("\"600\"", 600); /* env() gives strings */
    expect_int("\"0\"", 0);
    expect_int("\"007\"", 7);
    expect_int("600.0", 600); /* Lua arithmetic on a float */
    expect_int("31536000", 31536000);
    expect_int(NULL, 300);
    expect_int("null", 300);
    expect_int("\"\"", 300);
    const char *msg = "provider prov: opt: expected an integer from 0 to 31536000 (OPT_ENV)";
    expect_error("-1", msg);
    expect_error("31536001", msg);
    expect_error("\"5m\"", msg);
    expect_error("\"+5\"", msg);
    expect_error("\" 5\"", msg);
    expect_error("\"5 \"", msg);
    expect_error("\"-\"", msg);
    expect_error("\"99999999999999999999\"", msg); /* overflow */
    expect_error("1.5", msg);
    expect_error("1e300", msg);
    expect_error("true", msg);
    expect_error("{}", msg);

    declare(AGAPE_OPT_INT, NULL, 0, 0); /* any integer */
    expect_int("\"-42\"", -42);
    expect_int("-9223372036854775808", INT64_MIN);
    expect_absent(NULL);
    expect_error("\"x\"", "opt: expected an integer (OPT_ENV)");

    declare(AGAPE_OPT_INT, NULL, 1, INT64_MAX);
    expect_error("0", "opt: expected an integer of at least 1 (OPT_ENV)");
    expect_int("\"1234567\"", 1234567);
}

static void test_bool(void **state)
{
    (void)state;
    declare(AGAPE_OPT_BOOL, "true", 0, 0);
    const char *yes[] = {"true", "1", "\"1\"", "\"true\"", "\"TRUE\"", "\"yes\"", "\"Yes\""};
    const char *no[] = {"false", "0", "\"0\"", "\"false\"", "\"False\"", "\"no\"", "\"NO\""};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        expect_bool(yes[i], true);
        expect_bool(no[i], false);
    }
    expect_bool(NULL, true);
    expect_bool("\"\"", true);
    const char *msg = "provider prov: opt: expected true or false (or 1/0, yes/no) (OPT_ENV)";
    expect_error("2", msg);
    expect_error("-1", msg);
    expect_error("\"maybe\"", msg);
    expect_error("\"on\"", msg);
    expect_error("1.0", msg);
    expect_error("[]", msg);
    declare(AGAPE_OPT_BOOL, NULL, 0, 0);
    expect_absent("\"\"");
}

static void test_url(void **state)
{
    (void)state;
    declare(AGAPE_OPT_URL, "https://api.example.com", 0, 0);
    expect_text("\"https://api.stripe.com/\"", "https://api.stripe.com");
    expect_text("\"http://127.0.0.1:9/auth//\"", "http://127.0.0.1:9/auth");
    expect_text("\"https://api.eu.sendgrid.com\"", "https://api.eu.sendgrid.com");
    expect_text("\"http://[::1]:8080/\"", "http://[::1]:8080");
    expect_text("\"https://user@host.example/v1/\"", "https://user@host.example/v1");
    expect_text(NULL, "https://api.example.com");
    expect_text("\"\"", "https://api.example.com");
    const char *msg = "provider prov: opt: expected an http:// or https:// URL with a host, "
                      "without spaces, query or fragment (OPT_ENV)";
    const char *bad[] = {
        "\"ftp://x\"",           "\"api.stripe.com\"",  "\"https://\"",
        "\"https:///\"",         "\"https:///x\"",      "\"https://:443/\"",
        "\"https://x:0/\"",      "\"https://x:70000\"", "\"https://x:8a/\"",
        "\"https://[]/\"",       "\"https://[::1/\"",   "\"https://a b/\"",
        "\"https://x/\\ty\"",    "\"https://x/?a=1\"",  "\"https://x/#f\"",
        "\"HTTPS://x\"",         "\"https://user@/\"",  "\"https://x/\\u00e9\"",
        "5",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_error(bad[i], msg);
    }
    /* 1024 bytes at most */
    char longer[1100];
    int n = snprintf(longer, sizeof(longer), "\"https://x/%0*d\"", 1024 - 10 + 1, 0);
    assert_true(n > 0);
    expect_error(longer, msg);
    n = snprintf(longer, sizeof(longer), "\"https://x/%0*d\"", 1024 - 10, 0);
    assert_true(n > 0);
    char msg2[1024];
    json_t *v = norm(longer, msg2, sizeof(msg2));
    assert_non_null(v);
    assert_int_equal(json_string_length(v), 1024);
    json_decref(v);
}

static void test_url_exact_and_smtp(void **state)
{
    (void)state;
    declare(AGAPE_OPT_URL_EXACT, NULL, 0, 0);
    /* a redirect URI is compared as registered: trailing slash and query kept */
    expect_text("\"https://app.example.com/\"", "https://app.example.com/");
    expect_text("\"https://app.example.com/cb?x=1\"", "https://app.example.com/cb?x=1");
    expect_error("\"https://app.example.com/cb#f\"", "without spaces or fragment (OPT_ENV)");
    expect_error("\"app.example.com/cb\"", "opt: expected an http:// or https:// URL");

    declare(AGAPE_OPT_SMTP_URL, NULL, 0, 0);
    expect_text("\"smtp://mail.example.com:587/\"", "smtp://mail.example.com:587");
    expect_text("\"smtps://mail.example.com:465\"", "smtps://mail.example.com:465");
    const char *msg = "provider prov: opt: expected an smtp:// or smtps:// URL with a host, "
                      "without spaces (OPT_ENV)";
    expect_error("\"http://mail.example.com\"", msg);
    expect_error("\"smtp://\"", msg);
    expect_error("\"smtp://:25\"", msg);
}

static void test_list(void **state)
{
    (void)state;
    declare(AGAPE_OPT_LIST, "https://a/, https://b/", 0, 0);
    expect_list("[\"x\", \"y\"]", "[\"x\",\"y\"]");
    expect_list("\"x, y,,z \"", "[\"x\",\"y\",\"z\"]"); /* from env() */
    expect_list("\"x\"", "[\"x\"]");
    expect_list("[\" x \", \"\"]", "[\"x\"]");
    expect_list("{}", "[]"); /* an empty Lua table may arrive as an object */
    expect_list("[]", "[]");
    expect_list("\" , \"", "[]");
    expect_list(NULL, "[\"https://a/\",\"https://b/\"]");
    expect_list("\"\"", "[\"https://a/\",\"https://b/\"]");
    expect_error("[\"x\", 2]",
                 "provider prov: opt[2]: expected a string (the option is a list of strings or "
                 "one comma-separated string)");
    const char *msg = "provider prov: opt: expected a list of strings or one comma-separated "
                      "string (OPT_ENV)";
    expect_error("5", msg);
    expect_error("true", msg);
    expect_error("{\"k\": \"v\"}", msg);

    declare(AGAPE_OPT_LIST, NULL, 0, 2);
    expect_list("\"a,b\"", "[\"a\",\"b\"]");
    expect_error("\"a,b,c\"", "opt: expected a list of at most 2 strings or one "
                              "comma-separated string (OPT_ENV)");
    expect_absent(NULL);

    /* OPTIONS_LIST_MAX whatever the declaration */
    declare(AGAPE_OPT_LIST, NULL, 0, 0);
    char many[OPTIONS_LIST_MAX * 2 + 8];
    size_t len = 0;
    many[len++] = '"';
    for (int i = 0; i <= OPTIONS_LIST_MAX; i++) {
        many[len++] = 'a';
        many[len++] = ',';
    }
    many[len++] = '"';
    many[len] = '\0';
    expect_error(many, "opt: expected a list");
}

/* ---------------------------------------------------------------- */
/* A whole table                                                    */

static const struct agape_option twilio_like[] = {
    {.name = "account_sid",
     .flags = AGAPE_OPT_REQUIRED,
     .env = "TWILIO_ACCOUNT_SID",
     .description = "Account SID"},
    {.name = "auth_token",
     .flags = AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET,
     .env = "TWILIO_AUTH_TOKEN",
     .description = "token"},
    {.name = "from", .env = "TWILIO_PHONE_NUMBER", .description = "sender"},
    {.name = "base_url",
     .env = "TWILIO_API_BASE",
     .description = "API base",
     .type = AGAPE_OPT_URL,
     .dflt = "https://api.twilio.com"},
    {.name = "tolerance_s",
     .description = "skew",
     .type = AGAPE_OPT_INT,
     .dflt = "300",
     .max = 600},
    {0},};

static void test_table(void **state)
{
    (void)state;
    struct problems probs = {0};
    struct options_report rep;
    json_t *out = NULL;
    json_t *tab = json_pack("{s:s, s:s, s:s, s:s, s:{s:i}, s:i, s:s, s:s, s:n}", "plugin",
                            "twilio", "account_sid", "AC1", "auth_token", "tok3n_s3cret",
                            "from_number", "+15550001111", "breaker", "failure_run", 3,
                            "max_inflight", 8, "base_url", "https://api.twilio.com/",
                            "tolerance_s", "120", "from", NULL);
    memset(&rep, 0, sizeof(rep));
    rep.probs = &probs;
    assert_int_equal(options_normalize("twilio", twilio_like, tab, &out, &rep), AGAPE_OK);
    for (size_t i = 0; i < probs.n; i++) {
        print_message("problem: %s\n", probs.items[i]);
    }
    /* an unknown key is a warning: named, with what the plugin knows */
    assert_int_equal(rep.unknown, 1);
    assert_int_equal(rep.type_errors, 0);
    assert_int_equal(rep.missing, 0);
    assert_string_equal(rep.why, "");
    assert_int_equal(probs.n, 1);
    assert_string_equal(probs.items[0],
                        "provider twilio: unknown option 'from_number' (known: account_sid, "
                        "auth_token, from, base_url, tolerance_s)");
    /* normalized values; the core's own keys and the unknown one passed on as they are */
    assert_string_equal(json_string_value(json_object_get(out, "base_url")),
                        "https://api.twilio.com");
    assert_int_equal(json_integer_value(json_object_get(out, "tolerance_s")), 120);
    assert_null(json_object_get(out, "from")); /* null: not set, no default */
    assert_string_equal(json_string_value(json_object_get(out, "plugin")), "twilio");
    assert_int_equal(json_integer_value(json_object_get(out, "max_inflight")), 8);
    assert_true(json_is_object(json_object_get(out, "breaker")));
    assert_string_equal(json_string_value(json_object_get(out, "from_number")), "+15550001111");
    /* the input is not touched */
    assert_string_equal(json_string_value(json_object_get(tab, "tolerance_s")), "120");
    json_decref(out);
    json_decref(tab);
    problems_free(&probs);
}

static void test_table_errors(void **state)
{
    (void)state;
    struct problems probs = {0};
    struct options_report rep;
    json_t *out = NULL;
    /* a secret in the wrong place must never be echoed */
    json_t *tab = json_pack("{s:s, s:s, s:s, s:s, s:s}", "auth_token", "", "base_url",
                            "ftp://tok3n_s3cret@x", "tolerance_s", "5m", "acount_sid",
                            "AC1", "Bad Key\n'x'", "tok3n_s3cret");
    memset(&rep, 0, sizeof(rep));
    rep.probs = &probs;
    assert_int_equal(options_normalize("twilio", twilio_like, tab, &out, &rep), AGAPE_EINVAL);
    assert_non_null(out);
    for (size_t i = 0; i < probs.n; i++) {
        print_message("problem: %s\n", probs.items[i]);
        assert_null(strstr(probs.items[i], "tok3n_s3cret"));
    }
    assert_int_equal(rep.type_errors, 2);
    assert_int_equal(rep.missing, 2);
    assert_int_equal(rep.unknown, 2);
    assert_int_equal(probs.n, 6);
    /* schema order, then unknown keys in name order */
    assert_string_equal(probs.items[0], "provider twilio: missing account_sid (set "
                                        "TWILIO_ACCOUNT_SID)");
    assert_string_equal(probs.items[1], "provider twilio: missing auth_token (set "
                                        "TWILIO_AUTH_TOKEN)");
    assert_string_equal(probs.items[2],
                        "provider twilio: base_url: expected an http:// or https:// URL with a "
                        "host, without spaces, query or fragment (TWILIO_API_BASE)");
    assert_string_equal(probs.items[3],
                        "provider twilio: tolerance_s: expected an integer from 0 to 600");
    assert_string_equal(probs.items[4], "provider twilio: unknown option 'Bad Key??x?' (known: "
                                        "account_sid, auth_token, from, base_url, "
                                        "tolerance_s)");
    assert_string_equal(probs.items[5],
                        "provider twilio: unknown option 'acount_sid' (did you mean "
                        "'account_sid'? known: account_sid, auth_token, from, base_url, "
                        "tolerance_s)");
    /* the first type error is the reason, before a missing option */
    assert_string_equal(rep.why, "base_url: expected an http:// or https:// URL with a host, "
                                 "without spaces, query or fragment (TWILIO_API_BASE)");
    assert_null(json_object_get(out, "base_url"));
    assert_null(json_object_get(out, "tolerance_s"));
    assert_null(json_object_get(out, "auth_token"));
    json_decref(out);
    json_decref(tab);
    problems_free(&probs);

    /* only a missing option: that is the reason */
    tab = json_pack("{s:s}", "account_sid", "AC1");
    memset(&rep, 0, sizeof(rep));
    assert_int_equal(options_normalize("twilio", twilio_like, tab, &out, &rep), AGAPE_EINVAL);
    assert_string_equal(rep.why, "missing auth_token (set TWILIO_AUTH_TOKEN)");
    json_decref(out);
    json_decref(tab);
}

static void test_no_schema(void **state)
{
    (void)state;
    struct problems probs = {0};
    struct options_report rep;
    json_t *out = NULL;
    json_t *tab = json_pack("{s:s, s:i}", "plugin", "x", "key", 1);
    memset(&rep, 0, sizeof(rep));
    rep.probs = &probs;
    assert_int_equal(options_normalize("p", NULL, tab, &out, &rep), AGAPE_OK);
    assert_int_equal(probs.n, 1);
    assert_string_equal(probs.items[0],
                        "provider p: unknown option 'key' (the plugin has no options)");
    assert_true(json_equal(out, tab));
    json_decref(out);
    json_decref(tab);
    problems_free(&probs);

    /* no table at all: an empty one, defaults applied */
    memset(&rep, 0, sizeof(rep));
    assert_int_equal(options_normalize("p", twilio_like + 3, NULL, &out, &rep), AGAPE_OK);
    assert_int_equal(json_integer_value(json_object_get(out, "tolerance_s")), 300);
    json_decref(out);
}

static void test_for_init(void **state)
{
    (void)state;
    char err[AGAPE_ERR_SIZE];
    json_t *tab = json_pack("{s:s}", "tolerance_s", "601");
    assert_null(options_for_init("twilio", twilio_like, tab, err, sizeof(err)));
    assert_string_equal(err, "provider twilio: tolerance_s: expected an integer from 0 to 600");
    json_decref(tab);
    /* missing required options and unknown keys are the caller's business */
    tab = json_pack("{s:s, s:s}", "tolerance_s", "60", "typo", "x");
    json_t *conf = options_for_init("twilio", twilio_like, tab, err, sizeof(err));
    assert_non_null(conf);
    assert_int_equal(json_integer_value(json_object_get(conf, "tolerance_s")), 60);
    assert_string_equal(json_string_value(json_object_get(conf, "base_url")),
                        "https://api.twilio.com");
    json_decref(conf);
    json_decref(tab);
}

static void test_core_keys(void **state)
{
    (void)state;
    assert_true(options_core_key("plugin"));
    assert_true(options_core_key("breaker"));
    assert_true(options_core_key("max_inflight"));
    assert_false(options_core_key("base_url"));
    assert_false(options_core_key(NULL));
}

/* ---------------------------------------------------------------- */
/* Declarations                                                     */

static void expect_decl(const struct agape_option *o, const char *needle)
{
    char err[AGAPE_ERR_SIZE] = "";
    if (needle == NULL) {
        if (!options_decl_ok(o, err, sizeof(err))) {
            fail_msg("%s refused: %s", o->name, err);
        }
        return;
    }
    assert_false(options_decl_ok(o, err, sizeof(err)));
    contains(err, needle);
}

static void test_declarations(void **state)
{
    (void)state;
    for (size_t i = 0; twilio_like[i].name != NULL; i++) {
        expect_decl(&twilio_like[i], NULL);
    }
    /* four members: the rest zero, a STRING without default */
    const struct agape_option old_style = {.name = "api_key", .flags = AGAPE_OPT_SECRET, .env = "KEY", .description = "the key"};
    expect_decl(&old_style, NULL);

    struct agape_option o = {.name = "tolerance_s", .description = "skew", .type = AGAPE_OPT_INT, .dflt = "5m", .max = 600};
    expect_decl(&o, "option tolerance_s: default \"5m\" is not valid: expected an integer from "
                    "0 to 600");
    o.dflt = "601";
    expect_decl(&o, "default \"601\" is not valid");
    o.dflt = "600";
    expect_decl(&o, NULL);
    o.min = 10;
    o.max = 5;
    expect_decl(&o, "option tolerance_s: min 10 and max 5 make no range");

    struct agape_option r = {.name = "key", .flags = AGAPE_OPT_REQUIRED, .description = "k", .type = AGAPE_OPT_STRING, .dflt = "x"};
    expect_decl(&r, "option key: a required option has no default");
    struct agape_option u = {.name = "base_url", .description = "u", .type = AGAPE_OPT_URL, .dflt = "api.example.com"};
    expect_decl(&u, "option base_url: default \"api.example.com\" is not valid: expected an "
                    "http:// or https:// URL");
    struct agape_option s = {.name = "name", .description = "s", .type = AGAPE_OPT_STRING, .max = 5};
    expect_decl(&s, "make no range for its type");
    struct agape_option l = {.name = "items", .description = "l", .type = AGAPE_OPT_LIST, .dflt = "a,b,c", .min = 1, .max = 5};
    expect_decl(&l, "make no range for its type");
    l.min = 0;
    l.max = 2;
    expect_decl(&l, "default \"a,b,c\" is not valid");
    l.max = 3;
    expect_decl(&l, NULL);
    struct agape_option t = {.name = "odd", .description = "t", .type = (enum agape_opt_type)42};
    expect_decl(&t, "option odd: unknown type 42");
    struct agape_option k = {.name = "max_inflight", .description = "k", .type = AGAPE_OPT_INT};
    expect_decl(&k, "option max_inflight: the name is the core's own");
    struct agape_option b = {.name = "flag", .description = "b", .type = AGAPE_OPT_BOOL, .dflt = "maybe"};
    expect_decl(&b, "default \"maybe\" is not valid: expected true or false");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_url_exact_and_smtp),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_table_errors),
        cmocka_unit_test(test_no_schema),
        cmocka_unit_test(test_for_init),
        cmocka_unit_test(test_core_keys),
        cmocka_unit_test(test_declarations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
