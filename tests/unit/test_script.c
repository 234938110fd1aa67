/* Tests of the Lua rule engine: routing decisions of the shipped
 * scripts/routing.lua, the sandbox, budgets and memory caps, reload and
 * threads. */
#include "script.h"

#include <agape/plugin.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lua.h>

#define SANDBOX_DIR AGAPE_FIXTURES "/lua/sandbox"
#define BROKEN_DIR AGAPE_FIXTURES "/lua/broken"
#define ROUTING_DIR AGAPE_SOURCE_DIR "/scripts"

#define TEST_INSTRUCTIONS 5000000ULL
#define TEST_MEMORY ((size_t)8 << 20)

static struct script_engine *engine(const char *dir)
{
    struct script_limits lim = {TEST_INSTRUCTIONS, TEST_MEMORY};
    struct script_engine *e = NULL;
    char err[256] = "";
    int rc = script_engine_create(dir, &lim, &e, err, sizeof(err));

    if (rc != AGAPE_OK) {
        fail_msg("script_engine_create(%s): %d %s", dir, rc, err);
    }
    return e;
}

/* Call fn with a JSON argument given as text (NULL: no argument → null). */
static json_t *call(struct script_engine *e, const char *fn, const char *arg_json, int want_rc,
                    char *err, size_t errlen)
{
    json_t *arg = NULL;
    json_t *ret = NULL;
    int rc;

    if (arg_json != NULL) {
        json_error_t jerr;
        arg = json_loads(arg_json, JSON_DECODE_ANY, &jerr);
        assert_non_null(arg);
    }
    err[0] = '\0';
    rc = script_call(e, fn, arg, &ret, err, errlen);
    json_decref(arg);
    if (rc != want_rc) {
        fail_msg("%s: rc %d, expected %d (%s)", fn, rc, want_rc, err);
    }
    if (rc != AGAPE_OK) {
        assert_null(ret);
    }
    return ret;
}

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

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        fail_msg("'%s' does not contain '%s'", hay, needle);
    }
}

/* route_payment(req, ctx) through script_callv, as the router calls it. */
static json_t *route(struct script_engine *e, const char *req, const char *available)
{
    json_error_t jerr;
    json_t *args[2];
    json_t *ret = NULL;
    char err[256] = "";
    char ctx[512];
    int rc;

    snprintf(ctx, sizeof(ctx), "{\"available\": %s}", available);
    args[0] = json_loads(req, 0, &jerr);
    args[1] = json_loads(ctx, 0, &jerr);
    assert_non_null(args[0]);
    assert_non_null(args[1]);
    rc = script_callv(e, "route_payment", args, 2, &ret, err, sizeof(err));
    json_decref(args[0]);
    json_decref(args[1]);
    if (rc != AGAPE_OK) {
        fail_msg("route_payment: %d %s", rc, err);
    }
    return ret;
}

static void check_route(struct script_engine *e, const char *req, const char *available,
                        const char *want)
{
    json_t *r = route(e, req, available);

    assert_json_eq(r, want);
    json_decref(r);
}

/* ------------------------------------------------------------------ */
/* Routing                                                             */

static void test_routing_explicit_provider(void **state)
{
    struct script_engine *e = engine(ROUTING_DIR);

    (void)state;
    assert_true(script_has(e, "route_payment"));
    check_route(e, "{\"amount\": 1999, \"currency\": \"usd\", \"provider\": \"paypal\"}",
                "[\"stripe\", \"paypal\"]", "[\"paypal\"]");
    /* the client's choice wins even over the currency rules */
    check_route(e, "{\"amount\": 500, \"currency\": \"jpy\", \"provider\": \"paypal\"}",
                "[\"stripe\", \"paypal\"]", "[\"paypal\"]");
    script_engine_destroy(e);
}

static void test_routing_by_currency_and_amount(void **state)
{
    struct script_engine *e = engine(ROUTING_DIR);
    const char *both = "[\"stripe\", \"paypal\", \"sandbox\"]";

    (void)state;
    check_route(e, "{\"amount\": 1999, \"currency\": \"usd\"}", both,
                "[\"stripe\", \"paypal\"]");
    check_route(e, "{\"amount\": 1999, \"currency\": \"EUR\"}", both,
                "[\"stripe\", \"paypal\"]");
    check_route(e, "{\"amount\": 100000, \"currency\": \"gbp\"}", both,
                "[\"paypal\", \"stripe\"]");
    check_route(e, "{\"amount\": 99999, \"currency\": \"usd\"}", both,
                "[\"stripe\", \"paypal\"]");
    /* yen: stripe only, however large */
    check_route(e, "{\"amount\": 5000000, \"currency\": \"jpy\"}", both, "[\"stripe\"]");
    script_engine_destroy(e);
}

static void test_routing_filtered_by_availability(void **state)
{
    struct script_engine *e = engine(ROUTING_DIR);

    (void)state;
    check_route(e, "{\"amount\": 1999, \"currency\": \"usd\"}", "[\"paypal\", \"sandbox\"]",
                "[\"paypal\"]");
    /* nothing preferred is available: every available one, in order */
    check_route(e, "{\"amount\": 1999, \"currency\": \"usd\"}", "[\"sandbox\"]",
                "[\"sandbox\"]");
    check_route(e, "{\"amount\": 700, \"currency\": \"jpy\"}", "[\"sandbox\", \"paypal\"]",
                "[\"sandbox\", \"paypal\"]");
    script_engine_destroy(e);
}

/* ------------------------------------------------------------------ */
/* Sandbox                                                             */

static int sandbox_setup(void **state)
{
    *state = engine(SANDBOX_DIR);
    return 0;
}

static int sandbox_teardown(void **state)
{
    script_engine_destroy(*state);
    return 0;
}

static void test_dangerous_globals_absent(void **state)
{
    struct script_engine *e = *state;
    char err[256];
    json_t *r = call(e, "probe_globals", NULL, AGAPE_OK, err, sizeof(err));

    assert_json_eq(r, "{\"io\": \"nil\", \"debug\": \"nil\", \"package\": \"nil\","
                      " \"dofile\": \"nil\", \"loadfile\": \"nil\", \"collectgarbage\": \"nil\","
                      " \"loadstring\": \"nil\", \"coroutine\": \"nil\", \"dump\": \"nil\","
                      " \"execute\": \"nil\", \"getenv\": \"nil\", \"exit\": \"nil\","
                      " \"remove\": \"nil\", \"time\": \"function\", \"date\": \"function\","
                      " \"clock\": \"function\", \"require\": \"function\","
                      " \"load\": \"function\", \"string_meta\": \"boolean\","
                      " \"agape_log\": \"function\"}");
    json_decref(r);
}

static void test_escapes_fail_cleanly(void **state)
{
    struct script_engine *e = *state;
    char err[256];
    json_t *r;

    call(e, "use_io", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "10-probes.lua:");
    assert_contains(err, "global 'io'");
    call(e, "use_execute", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "field 'execute'");
    call(e, "use_debug", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "global 'debug'");
    call(e, "dump_string", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "field 'dump'");
    r = call(e, "method_dump", NULL, AGAPE_OK, err, sizeof(err));
    assert_true(json_is_true(r));
    json_decref(r);
    call(e, "gc_metamethod", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "__gc");
    call(e, "set_string_meta", NULL, AGAPE_ESCRIPT, err, sizeof(err));
}

static void test_require_only_scripts_dir(void **state)
{
    struct script_engine *e = *state;
    char err[256];
    json_t *r;

    call(e, "require_outside", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "invalid module name");
    call(e, "require_dotted", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "invalid module name");
    call(e, "require_missing", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "module 'nope' not found");
    /* the module of the scripts directory loads, once, and is cached */
    r = call(e, "require_util", NULL, AGAPE_OK, err, sizeof(err));
    assert_json_eq(r, "{\"answer\": 42, \"same\": true, \"runs\": 1}");
    json_decref(r);
}

static void test_load_text_only(void **state)
{
    struct script_engine *e = *state;
    char err[256];
    json_t *r;

    r = call(e, "load_binary", NULL, AGAPE_OK, err, sizeof(err));
    assert_true(json_is_true(json_object_get(r, "f")));
    assert_contains(json_string_value(json_object_get(r, "msg")), "binary chunk");
    json_decref(r);
    r = call(e, "load_text", NULL, AGAPE_OK, err, sizeof(err));
    assert_int_equal(json_integer_value(r), 2);
    json_decref(r);
    r = call(e, "load_sees_sandbox", NULL, AGAPE_OK, err, sizeof(err));
    assert_string_equal(json_string_value(r), "nil");
    json_decref(r);
    call(e, "load_env", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "custom environment");
}

static void test_string_lib_changes_do_not_leak(void **state)
{
    struct script_engine *e = *state;
    char err[256];
    json_t *r;

    call(e, "break_string", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "read-only");
    call(e, "replace_string", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "built-in global 'string'");
    call(e, "rawset_lib", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "read-only");
    call(e, "rawset_env", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "built-in global 'string'");
    /* the other script's use of string.rep and of string methods still works */
    r = call(e, "rep3", "\"ab\"", AGAPE_OK, err, sizeof(err));
    assert_string_equal(json_string_value(r), "ababab");
    json_decref(r);
    r = call(e, "method_rep3", "\"xy\"", AGAPE_OK, err, sizeof(err));
    assert_string_equal(json_string_value(r), "xyxyxy");
    json_decref(r);
}

/* ------------------------------------------------------------------ */
/* Budget and memory                                                   */

static void assert_next_call_works(struct script_engine *e)
{
    char err[256];
    json_t *r = call(e, "rep3", "\"ok\"", AGAPE_OK, err, sizeof(err));

    assert_string_equal(json_string_value(r), "okokok");
    json_decref(r);
}

static void test_budget_exhausted(void **state)
{
    struct script_engine *e = *state;
    char err[256];
    struct timespec t0, t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    call(e, "spin", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_string_equal(err, "script budget exhausted (5000000 instructions) in spin");
    assert_true(t1.tv_sec - t0.tv_sec < 10);
    assert_next_call_works(e);
    /* a long but finite loop within the budget runs to its end, every call */
    for (int i = 0; i < 3; i++) {
        json_t *r = call(e, "count_to", "300000", AGAPE_OK, err, sizeof(err));
        assert_int_equal(json_integer_value(r), 300000LL * 300001 / 2);
        json_decref(r);
    }
}

static void test_pcall_cannot_swallow_budget(void **state)
{
    struct script_engine *e = *state;
    char err[256];

    call(e, "spin_pcall", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_string_equal(err, "script budget exhausted (5000000 instructions) in spin_pcall");
    assert_next_call_works(e);
    call(e, "spin_xpcall", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_string_equal(err, "script budget exhausted (5000000 instructions) in spin_xpcall");
    assert_next_call_works(e);
}

static void test_memory_limit(void **state)
{
    struct script_engine *e = *state;
    char err[256];

    call(e, "hog_table", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_string_equal(err, "script memory limit (8388608 bytes) exceeded in hog_table");
    assert_next_call_works(e);
    call(e, "hog_string", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_string_equal(err, "script memory limit (8388608 bytes) exceeded in hog_string");
    assert_next_call_works(e);
    /* pcall cannot swallow it either */
    call(e, "hog_pcall", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_string_equal(err, "script memory limit (8388608 bytes) exceeded in hog_pcall");
    assert_next_call_works(e);
}

/* ------------------------------------------------------------------ */
/* Calls and conversions                                               */

static void test_missing_function(void **state)
{
    struct script_engine *e = *state;
    char err[256];

    call(e, "no_such_function", NULL, AGAPE_ENOENT, err, sizeof(err));
    assert_contains(err, "no_such_function");
    /* a library function is not a script function */
    call(e, "print", NULL, AGAPE_ENOENT, err, sizeof(err));
    assert_true(script_has(e, "echo"));
    assert_false(script_has(e, "no_such_function"));
    assert_false(script_has(e, "print"));
    assert_int_equal(script_generation(e), 1);
}

static void test_json_round_trip(void **state)
{
    struct script_engine *e = *state;
    const char *doc = "{\"a\": [1, 2.5, \"x\", true, false, {\"b\": {}}], \"n\": -7,"
                      " \"s\": \"h\\u00e9\", \"o\": {\"k\": [[]]}}";
    char err[256];
    json_t *r;

    r = call(e, "echo", doc, AGAPE_OK, err, sizeof(err));
    /* empty array and object both become an empty table, which comes back
     * as an empty object; null members are dropped */
    assert_json_eq(r, "{\"a\": [1, 2.5, \"x\", true, false, {\"b\": {}}], \"n\": -7,"
                      " \"s\": \"h\\u00e9\", \"o\": {\"k\": [{}]}}");
    json_decref(r);
    r = call(e, "echo", "{\"x\": null}", AGAPE_OK, err, sizeof(err));
    assert_json_eq(r, "{}");
    json_decref(r);
    r = call(e, "echo", NULL, AGAPE_OK, err, sizeof(err));
    assert_true(json_is_null(r));
    json_decref(r);
    r = call(e, "numbers", NULL, AGAPE_OK, err, sizeof(err));
    assert_true(json_is_real(json_object_get(r, "a")));
    assert_true(json_is_real(json_object_get(r, "b"))); /* 2^3 is a float in Lua */
    assert_true(json_is_integer(json_object_get(r, "c")));
    assert_true(json_is_real(json_object_get(r, "d")));
    assert_int_equal(json_integer_value(json_object_get(r, "e")), -0x7fffffffffffffffLL);
    json_decref(r);
    r = call(e, "empty", NULL, AGAPE_OK, err, sizeof(err));
    assert_json_eq(r, "{}");
    json_decref(r);
    r = call(e, "count_args", "1", AGAPE_OK, err, sizeof(err));
    assert_int_equal(json_integer_value(r), 1);
    json_decref(r);
}

static void test_json_unconvertible(void **state)
{
    struct script_engine *e = *state;
    char err[256];
    json_t *r;

    call(e, "bad_return", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_string_equal(err, "bad_return.f[1]: cannot convert a function to JSON");
    call(e, "mixed", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "cannot convert");
    call(e, "sparse", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "cannot convert");
    call(e, "not_finite", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "non-finite");
    r = call(e, "deep", "31", AGAPE_OK, err, sizeof(err));
    json_decref(r);
    call(e, "deep", "40", AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "deeper than 32");
    /* a too deep argument is refused before the script runs */
    {
        char doc[81];
        memset(doc, '[', 40);
        memset(doc + 40, ']', 40);
        doc[80] = '\0';
        call(e, "echo", doc, AGAPE_ESCRIPT, err, sizeof(err));
        assert_contains(err, "deeper than 32");
    }
}

static void test_script_errors(void **state)
{
    struct script_engine *e = *state;
    char err[256];
    json_t *r;

    call(e, "err_plain", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_string_equal(err, SANDBOX_DIR "/40-misc.lua:20: boom");
    call(e, "err_runtime", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, SANDBOX_DIR "/40-misc.lua:22: attempt to index a nil value");
    call(e, "err_table", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_string_equal(err, "(error object is a table value)");
    /* scripts may define globals of their own */
    r = call(e, "define_global", NULL, AGAPE_OK, err, sizeof(err));
    assert_int_equal(json_integer_value(r), 1);
    json_decref(r);
}

static void test_agape_library(void **state)
{
    struct script_engine *e = *state;
    char err[256];
    struct timespec ts;
    json_t *r;
    json_t *args[2];
    long long now_ms;

    clock_gettime(CLOCK_REALTIME, &ts);
    now_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    r = call(e, "now", NULL, AGAPE_OK, err, sizeof(err));
    assert_true(json_is_integer(r));
    assert_true(json_integer_value(r) >= now_ms - 1000 &&
                json_integer_value(r) <= now_ms + 5000);
    json_decref(r);

    args[0] = json_string("info");
    args[1] = json_string("hello from a test script");
    assert_int_equal(script_callv(e, "log_it", args, 2, &r, err, sizeof(err)), AGAPE_OK);
    json_decref(r);
    json_decref(args[0]);
    args[0] = json_string("loud");
    assert_int_equal(script_callv(e, "log_it", args, 2, &r, err, sizeof(err)), AGAPE_ESCRIPT);
    assert_contains(err, "invalid option 'loud'");
    json_decref(args[0]);
    json_decref(args[1]);

    /* second(a, b) sees both arguments; a NULL argument is nil */
    args[0] = NULL;
    args[1] = json_integer(9);
    assert_int_equal(script_callv(e, "second", args, 2, &r, err, sizeof(err)), AGAPE_OK);
    assert_int_equal(json_integer_value(r), 9);
    json_decref(r);
    json_decref(args[1]);
}

static int twice(lua_State *L)
{
    int *calls = lua_touserdata(L, lua_upvalueindex(1));

    (*calls)++;
    lua_pushinteger(L, 2 * luaL_checkinteger(L, 1));
    return 1;
}

static const luaL_Reg test_fns[] = {{"twice", twice}, {NULL, NULL}};

/* A library function that calls back into the engine: refused, not nested. */
static int nested_call(lua_State *L)
{
    struct script_engine *e = lua_touserdata(L, lua_upvalueindex(1));
    json_t *r = NULL;
    char err[128];
    int rc = script_call(e, "use_own", NULL, &r, err, sizeof(err));

    json_decref(r);
    lua_pushinteger(L, rc);
    return 1;
}

static const luaL_Reg nest_fns[] = {{"call", nested_call}, {NULL, NULL}};

static void test_register_lib(void **state)
{
    char dir[] = "/tmp/agape-script-lib-XXXXXX";
    char path[256];
    struct script_engine *e;
    char err[256];
    json_t *r;
    int calls = 0;
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/lib.lua", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("function use_agape(n) return agape.twice(n) end\n"
          "function use_own(n) return extra.twice(n) end\n"
          "function modify_own() extra.twice = nil end\n"
          "function try_nest() return inner.call() end\n", f);
    fclose(f);
    e = engine(dir);
    assert_int_equal(script_register_lib(e, "agape", test_fns, &calls), AGAPE_OK);
    assert_int_equal(script_register_lib(e, "extra", test_fns, &calls), AGAPE_OK);
    assert_int_equal(script_register_lib(e, "string", test_fns, &calls), AGAPE_EINVAL);
    assert_int_equal(script_register_lib(e, "Bad-Name", test_fns, &calls), AGAPE_EINVAL);
    r = call(e, "use_agape", "21", AGAPE_OK, err, sizeof(err));
    assert_int_equal(json_integer_value(r), 42);
    json_decref(r);
    r = call(e, "use_own", "5", AGAPE_OK, err, sizeof(err));
    assert_int_equal(json_integer_value(r), 10);
    json_decref(r);
    assert_int_equal(calls, 2);
    call(e, "modify_own", NULL, AGAPE_ESCRIPT, err, sizeof(err));
    assert_contains(err, "read-only");
    assert_int_equal(script_register_lib(e, "inner", nest_fns, e), AGAPE_OK);
    r = call(e, "try_nest", NULL, AGAPE_OK, err, sizeof(err));
    assert_int_equal(json_integer_value(r), AGAPE_EBUSY);
    json_decref(r);
    /* and the engine still works afterwards */
    r = call(e, "use_own", "1", AGAPE_OK, err, sizeof(err));
    assert_int_equal(json_integer_value(r), 2);
    json_decref(r);
    script_engine_destroy(e);
    unlink(path);
    rmdir(dir);
}

static void test_bare_sandbox_state(void **state)
{
    lua_State *L = script_sandbox_state(4 << 20);

    (void)state;
    assert_non_null(L);
    assert_int_equal(luaL_loadstring(L, "return type(io), type(string.rep), type(os.exit)"),
                     LUA_OK);
    assert_int_equal(lua_pcall(L, 0, 3, 0), LUA_OK);
    assert_string_equal(lua_tostring(L, -3), "nil");
    assert_string_equal(lua_tostring(L, -2), "function");
    assert_string_equal(lua_tostring(L, -1), "nil");
    lua_settop(L, 0);
    /* its globals are read-only */
    assert_int_equal(luaL_loadstring(L, "x = 1"), LUA_OK);
    assert_int_not_equal(lua_pcall(L, 0, 0, 0), LUA_OK);
    assert_non_null(strstr(lua_tostring(L, -1), "read-only"));
    script_sandbox_close(L);
}

/* ------------------------------------------------------------------ */
/* Create and reload                                                   */

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void remove_file(const char *dir, const char *name)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
}

static void write_version(const char *dir, int v)
{
    char text[256];

    snprintf(text, sizeof(text),
             "A_VERSION = %d\nfunction version() return {A_VERSION, B_VERSION} end\n", v);
    write_file(dir, "a.lua", text);
    snprintf(text, sizeof(text), "B_VERSION = %d\n", v);
    write_file(dir, "b.lua", text);
}

static void test_create_with_syntax_error(void **state)
{
    struct script_engine *e = (struct script_engine *)0x1;
    char err[256] = "";

    (void)state;
    assert_int_equal(script_engine_create(BROKEN_DIR, NULL, &e, err, sizeof(err)),
                     AGAPE_ESCRIPT);
    assert_null(e);
    assert_contains(err, BROKEN_DIR "/20-syntax.lua:2:");
    assert_int_not_equal(script_engine_create("/nonexistent/agape/scripts", NULL, &e, err,
                                              sizeof(err)),
                         AGAPE_OK);
    assert_null(e);
    assert_contains(err, "/nonexistent/agape/scripts");
}

struct one_call {
    struct script_engine *e;
    long long version;
};

static void *call_once_thread(void *p)
{
    struct one_call *oc = p;
    json_t *r = NULL;
    char err[256];

    oc->version = -1;
    if (script_call(oc->e, "version", NULL, &r, err, sizeof(err)) == AGAPE_OK) {
        oc->version = json_integer_value(json_array_get(r, 0));
        if (json_integer_value(json_array_get(r, 1)) != oc->version) {
            oc->version = -2;
        }
    }
    json_decref(r);
    return NULL;
}

static long long version_from_thread(struct script_engine *e)
{
    struct one_call oc = {e, 0};
    pthread_t t;

    assert_int_equal(pthread_create(&t, NULL, call_once_thread, &oc), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    return oc.version;
}

static void test_reload(void **state)
{
    char dir[] = "/tmp/agape-script-reload-XXXXXX";
    struct script_engine *e;
    char err[256];
    char want[512];
    json_t *r;

    (void)state;
    assert_non_null(mkdtemp(dir));
    write_version(dir, 1);
    e = engine(dir);
    assert_int_equal(script_generation(e), 1);
    r = call(e, "version", NULL, AGAPE_OK, err, sizeof(err));
    assert_json_eq(r, "[1, 1]");
    json_decref(r);
    assert_int_equal(version_from_thread(e), 1);

    /* a syntax error: nothing changes */
    write_file(dir, "b.lua", "B_VERSION = = 2\n");
    assert_int_equal(script_engine_reload(e, err, sizeof(err)), AGAPE_ESCRIPT);
    snprintf(want, sizeof(want), "%s/b.lua:1:", dir);
    assert_contains(err, want);
    assert_int_equal(script_generation(e), 1);
    r = call(e, "version", NULL, AGAPE_OK, err, sizeof(err));
    assert_json_eq(r, "[1, 1]");
    json_decref(r);
    assert_int_equal(version_from_thread(e), 1);

    /* a runtime error at the top level, and an endless top level */
    write_file(dir, "b.lua", "B_VERSION = 2\n");
    write_file(dir, "c.lua", "local x = nil\nerror('c refuses')\n");
    assert_int_equal(script_engine_reload(e, err, sizeof(err)), AGAPE_ESCRIPT);
    snprintf(want, sizeof(want), "%s/c.lua:2: c refuses", dir);
    assert_string_equal(err, want);
    write_file(dir, "c.lua", "while true do end\n");
    assert_int_equal(script_engine_reload(e, err, sizeof(err)), AGAPE_ESCRIPT);
    snprintf(want, sizeof(want), "script budget exhausted (5000000 instructions) in %s/c.lua",
             dir);
    assert_string_equal(err, want);
    remove_file(dir, "c.lua");
    assert_int_equal(script_generation(e), 1);
    r = call(e, "version", NULL, AGAPE_OK, err, sizeof(err));
    assert_json_eq(r, "[1, 1]");
    json_decref(r);

    /* success: the generation moves, every thread sees the new scripts */
    write_version(dir, 2);
    assert_int_equal(script_engine_reload(e, err, sizeof(err)), AGAPE_OK);
    assert_int_equal(script_generation(e), 2);
    assert_int_equal(version_from_thread(e), 2);
    r = call(e, "version", NULL, AGAPE_OK, err, sizeof(err));
    assert_json_eq(r, "[2, 2]");
    json_decref(r);

    /* a function that disappeared */
    write_file(dir, "a.lua", "A_VERSION = 3\n");
    assert_int_equal(script_engine_reload(e, err, sizeof(err)), AGAPE_OK);
    assert_false(script_has(e, "version"));
    call(e, "version", NULL, AGAPE_ENOENT, err, sizeof(err));

    script_engine_destroy(e);
    remove_file(dir, "a.lua");
    remove_file(dir, "b.lua");
    rmdir(dir);
}

/* ------------------------------------------------------------------ */
/* Threads                                                             */

#define N_THREADS 4

struct worker {
    struct script_engine *e;
    atomic_int *stop;
    long long final_version;
    int calls;
    int failures;
    int mixed;
    int went_back;
    long long last;
};

static void *routing_worker(void *p)
{
    struct worker *w = p;
    static const char *const cur[] = {"usd", "eur", "jpy", "gbp"};
    static const char *const want[] = {"stripe", "stripe", "stripe", "paypal"};

    for (int i = 0; i < 300; i++) {
        int k = (i + w->calls) % 4;
        json_t *args[2];
        json_t *ret = NULL;
        char err[256];
        args[0] = json_pack("{s:s, s:i}", "currency", cur[k], "amount", k == 3 ? 250000 : 1999);
        args[1] = json_pack("{s:[s,s]}", "available", "paypal", "stripe");
        if (script_callv(w->e, "route_payment", args, 2, &ret, err, sizeof(err)) != AGAPE_OK ||
            !json_is_array(ret) ||
            strcmp(json_string_value(json_array_get(ret, 0)), want[k]) != 0) {
            w->failures++;
        }
        json_decref(ret);
        json_decref(args[0]);
        json_decref(args[1]);
    }
    w->calls += 300;
    return NULL;
}

static void test_concurrent_calls(void **state)
{
    struct script_engine *e = engine(ROUTING_DIR);
    pthread_t t[N_THREADS];
    struct worker w[N_THREADS];

    (void)state;
    memset(w, 0, sizeof(w));
    for (int i = 0; i < N_THREADS; i++) {
        w[i].e = e;
        w[i].calls = i;
        assert_int_equal(pthread_create(&t[i], NULL, routing_worker, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    script_engine_destroy(e);
}

static void *version_worker(void *p)
{
    struct worker *w = p;

    /* Call until told to stop, then until the final version shows. */
    for (int spins = 0; spins < 200000; spins++) {
        json_t *ret = NULL;
        char err[256];
        long long a, b;
        if (script_call(w->e, "version", NULL, &ret, err, sizeof(err)) != AGAPE_OK) {
            w->failures++;
            continue;
        }
        w->calls++;
        a = json_integer_value(json_array_get(ret, 0));
        b = json_integer_value(json_array_get(ret, 1));
        json_decref(ret);
        if (a != b) {
            w->mixed++;
        }
        if (a < w->last) {
            w->went_back++;
        }
        w->last = a;
        if (atomic_load(w->stop) && a == w->final_version) {
            break;
        }
    }
    return NULL;
}

static void test_reload_under_load(void **state)
{
    char dir[] = "/tmp/agape-script-threads-XXXXXX";
    struct script_engine *e;
    pthread_t t[N_THREADS];
    struct worker w[N_THREADS];
    atomic_int stop = 0;
    const int reloads = 15;
    char err[256];

    (void)state;
    assert_non_null(mkdtemp(dir));
    write_version(dir, 1);
    e = engine(dir);
    memset(w, 0, sizeof(w));
    for (int i = 0; i < N_THREADS; i++) {
        w[i].e = e;
        w[i].stop = &stop;
        w[i].final_version = reloads + 1;
        assert_int_equal(pthread_create(&t[i], NULL, version_worker, &w[i]), 0);
    }
    for (int v = 2; v <= reloads + 1; v++) {
        struct timespec ts = {0, 2000000};
        write_version(dir, v);
        assert_int_equal(script_engine_reload(e, err, sizeof(err)), AGAPE_OK);
        nanosleep(&ts, NULL);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
        assert_int_equal(w[i].mixed, 0);
        assert_int_equal(w[i].went_back, 0);
        assert_int_equal(w[i].last, reloads + 1);
        assert_true(w[i].calls > 0);
    }
    assert_int_equal(script_generation(e), (uint64_t)reloads + 1);
    script_engine_destroy(e);
    remove_file(dir, "a.lua");
    remove_file(dir, "b.lua");
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing_explicit_provider),
        cmocka_unit_test(test_routing_by_currency_and_amount),
        cmocka_unit_test(test_routing_filtered_by_availability),
        cmocka_unit_test_setup_teardown(test_dangerous_globals_absent, sandbox_setup,
                                        sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_escapes_fail_cleanly, sandbox_setup,
                                        sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_require_only_scripts_dir, sandbox_setup,
                                        sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_load_text_only, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_string_lib_changes_do_not_leak, sandbox_setup,
                                        sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_budget_exhausted, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_pcall_cannot_swallow_budget, sandbox_setup,
                                        sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_memory_limit, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_missing_function, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_json_round_trip, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_json_unconvertible, sandbox_setup,
                                        sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_script_errors, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_agape_library, sandbox_setup, sandbox_teardown),
        cmocka_unit_test(test_register_lib),
        cmocka_unit_test(test_bare_sandbox_state),
        cmocka_unit_test(test_create_with_syntax_error),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_concurrent_calls),
        cmocka_unit_test(test_reload_under_load),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
