/* script — the Lua 5.4 rule engine (see script.h for the contract).
 *
 * Layout of one sandboxed lua_State:
 *   R   the real library table: the allowlisted base functions, our wrappers
 *       (pcall, xpcall, load, require, setmetatable, rawset, print) and
 *       read-only proxies of string, table, math, utf8, os (time, clock,
 *       date only) and agape. Scripts never get R itself.
 *   P   a read-only proxy of R (empty table; __index = R, __newindex raises,
 *       __metatable hides R). The bare sandbox (script_sandbox_state) uses P
 *       as its globals.
 *   E   the scripts' environment, shared by every script of the state so that
 *       one script can call another's functions: __index = R, and a
 *       __newindex that refuses to shadow a built-in name. Script globals
 *       (their functions) live in E. E is the registry's globals table, so
 *       every chunk loaded in the state (scripts, require, load) gets it.
 *
 * Kill switch: the allocator counts bytes against a cap, a count hook counts
 * instructions against a budget. When either runs out the state is "killed":
 * the hook re-arms itself with a count of 1 and raises on every instruction,
 * and our pcall/xpcall wrappers re-raise instead of returning false, so a
 * script cannot swallow the error (Redis's trick). A killed state is closed
 * and rebuilt on the thread's next call. There is no coroutine library (a
 * coroutine boundary would turn a memory error into an ordinary one) and no
 * __gc metamethod from scripts (finalizers run without hooks, so an endless
 * finalizer could not be stopped).
 *
 * Threads: one state per (thread, engine), found through one process-wide
 * pthread key whose value lists the thread's states by engine id. Engine ids
 * are never reused, so a thread's entry for a destroyed engine is never
 * looked up again; the key's destructor closes the states of exiting threads
 * for engines that are still alive (the registry of live engines says which).
 *
 * Known limit: a single C library call runs without the hook, so a
 * pathological string pattern (string.find with many `.-` on a long subject)
 * can run long; memory-bound calls (string.rep, table.concat) are capped by
 * the allocator. */
#include "script.h"

#include "buf.h"
#include "log.h"

#include <agape/plugin.h>
#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SCRIPT_DEFAULT_INSTRUCTIONS 10000000ULL
#define SCRIPT_DEFAULT_MEMORY ((size_t)64 << 20)
#define SCRIPT_HOOK_STEP 1000          /* instructions between two hook checks */
#define SCRIPT_MAX_FILES 256
#define SCRIPT_MAX_FILE_BYTES (1L << 20)
#define SCRIPT_JSON_DEPTH 32
#define SCRIPT_JSON_MAX_VALUES 1000000
#define SCRIPT_MAX_LIBS 16
#define SCRIPT_MODNAME_MAX 64
#define SCRIPT_LOG_MAX 4096
#define SCRIPT_LOADED_KEY "agape.loaded" /* registry: require() cache */

enum sbx_kill { KILL_NONE = 0, KILL_BUDGET, KILL_MEMORY };

/* Per-state accounting; the allocator's ud and the pointer in the state's
 * extra space. Touched only by the thread that runs the state. */
struct sbx {
    size_t used;
    size_t cap;
    bool refused;        /* the allocator said no since the last arm */
    int killed;          /* enum sbx_kill */
    uint64_t budget;     /* 0: no budget armed */
    uint64_t executed;
    int step;
    const struct script_set *set; /* sources for require(); NULL in the bare sandbox */
};

struct script_source {
    char *name;      /* "routing.lua" */
    char *chunkname; /* "@scripts/routing.lua" */
    char *text;
    size_t len;
};

/* One generation of scripts: immutable once made, shared by reference. */
struct script_set {
    int refs; /* under the engine's lock */
    struct script_source *src;
    size_t n;
    char **fns; /* global functions the scripts define, sorted */
    size_t n_fns;
};

struct script_lib {
    char *name;
    const struct luaL_Reg *fns;
    void *ud;
};

struct script_thread {
    struct sbx sb; /* first: the allocator's ud lives as long as the state */
    lua_State *L;
    struct script_set *set;
    uint64_t gen;
    uint64_t epoch;
    bool busy; /* inside script_callv: a nested call from a C function is refused */
    struct script_thread *prev, *next;
};

struct script_engine {
    uint64_t id;
    char *dir;
    struct script_limits lim;
    pthread_mutex_t lock;        /* set, threads, libs */
    pthread_mutex_t reload_lock; /* one reload at a time */
    struct script_set *set;
    _Atomic uint64_t gen;
    _Atomic uint64_t epoch;      /* bumped by script_register_lib */
    struct script_lib libs[SCRIPT_MAX_LIBS];
    size_t n_libs;
    struct script_thread *threads;
    struct script_engine *reg_next;
};

/* ------------------------------------------------------------------ */
/* Live engines and per-thread states                                  */

struct tls_slot {
    uint64_t engine_id;
    struct script_thread *st;
};

struct tls_slots {
    size_t n, cap;
    struct tls_slot *v;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct script_engine *reg_head;
static _Atomic uint64_t next_engine_id = 1;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static pthread_key_t tls_key;
static bool tls_ok;

static void set_unref_locked(struct script_set *s);

static struct script_engine *registry_find_locked(uint64_t id)
{
    for (struct script_engine *e = reg_head; e != NULL; e = e->reg_next) {
        if (e->id == id) {
            return e;
        }
    }
    return NULL;
}

static void thread_state_close(struct script_thread *st)
{
    if (st->L != NULL) {
        lua_sethook(st->L, NULL, 0, 0);
        lua_close(st->L);
        st->L = NULL;
    }
}

/* Thread exit: close this thread's states of engines still alive. */
static void tls_destroy(void *p)
{
    struct tls_slots *s = p;

    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < s->n; i++) {
        struct script_engine *e = registry_find_locked(s->v[i].engine_id);
        struct script_thread *st = s->v[i].st;
        if (e == NULL) {
            continue; /* destroyed: the engine freed its states */
        }
        thread_state_close(st);
        pthread_mutex_lock(&e->lock);
        if (st->prev != NULL) {
            st->prev->next = st->next;
        } else {
            e->threads = st->next;
        }
        if (st->next != NULL) {
            st->next->prev = st->prev;
        }
        set_unref_locked(st->set);
        pthread_mutex_unlock(&e->lock);
        free(st);
    }
    pthread_mutex_unlock(&reg_lock);
    free(s->v);
    free(s);
}

static void tls_init(void)
{
    tls_ok = pthread_key_create(&tls_key, tls_destroy) == 0;
}

/* ------------------------------------------------------------------ */
/* Allocator and hook                                                  */

static struct sbx *sbx_get(lua_State *L)
{
    return *(struct sbx **)lua_getextraspace(L);
}

/* lua_Alloc with a cap. When ptr is NULL, osize is the type of the object
 * being made, not a size: the old size is then 0. */
static void *sbx_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct sbx *sb = ud;
    size_t old = ptr != NULL ? osize : 0;
    void *p;

    if (nsize == 0) {
        free(ptr);
        sb->used -= old;
        return NULL;
    }
    if (nsize > old) {
        size_t grow = nsize - old;
        if (grow > sb->cap || sb->used > sb->cap - grow) {
            sb->refused = true;
            return NULL;
        }
    }
    p = realloc(ptr, nsize);
    if (p == NULL) {
        sb->refused = true;
        return NULL;
    }
    sb->used = sb->used - old + nsize;
    return p;
}

static void sbx_hook(lua_State *L, lua_Debug *ar)
{
    struct sbx *sb = sbx_get(L);

    (void)ar;
    if (sb->killed == KILL_NONE) {
        if (sb->budget == 0) {
            return;
        }
        sb->executed += (uint64_t)sb->step;
        if (sb->executed < sb->budget) {
            return;
        }
        sb->killed = KILL_BUDGET;
    }
    /* Raise on every instruction from now on: a pcall in the script that
     * caught this would hit it again at once. */
    lua_sethook(L, sbx_hook, LUA_MASKCOUNT, 1);
    lua_pushstring(L, sb->killed == KILL_BUDGET ? "script budget exhausted"
                                                : "script memory limit exceeded");
    lua_error(L);
}

/* Start a budget of `instructions` (0: none) for the next run. */
static void sbx_arm(lua_State *L, uint64_t instructions)
{
    struct sbx *sb = sbx_get(L);

    sb->budget = instructions;
    sb->executed = 0;
    sb->killed = KILL_NONE;
    sb->refused = false;
    sb->step = instructions > 0 && instructions < SCRIPT_HOOK_STEP ? (int)instructions
                                                                   : SCRIPT_HOOK_STEP;
    lua_sethook(L, sbx_hook, LUA_MASKCOUNT, sb->step);
}

static bool is_memory_message(lua_State *L, int idx)
{
    size_t len;
    const char *s;

    if (lua_type(L, idx) != LUA_TSTRING) {
        return false;
    }
    s = lua_tolstring(L, idx, &len);
    return len == 17 && memcmp(s, "not enough memory", 17) == 0;
}

/* After a failed protected call inside the sandbox (error object on top):
 * true when the failure must not be caught (budget or memory). */
static bool sbx_check_kill(lua_State *L, int status)
{
    struct sbx *sb = sbx_get(L);

    if (sb->killed == KILL_NONE &&
        (status == LUA_ERRMEM ||
         (sb->refused && (status == LUA_ERRERR || is_memory_message(L, -1))))) {
        sb->killed = KILL_MEMORY;
    }
    if (sb->killed != KILL_NONE) {
        lua_sethook(L, sbx_hook, LUA_MASKCOUNT, 1);
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Wrapped and replaced base functions                                 */

static int finish_pcall(lua_State *L, int status, int extra)
{
    if (status != LUA_OK) {
        if (sbx_check_kill(L, status)) {
            return lua_error(L);
        }
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - extra;
}

static int sbx_pcall(lua_State *L)
{
    int status;

    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
    return finish_pcall(L, status, 0);
}

static int sbx_xpcall(lua_State *L)
{
    int status;
    int n = lua_gettop(L);

    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
    return finish_pcall(L, status, 2);
}

/* load(chunk [, chunkname]): text chunks only, always in the sandbox's
 * globals (the loader sets the registry's globals as the chunk's _ENV). */
static int sbx_load(lua_State *L)
{
    size_t len;
    const char *s;
    const char *chunkname;
    int status;

    if (lua_type(L, 1) != LUA_TSTRING) {
        return luaL_error(L, "load: only string chunks are allowed in the sandbox");
    }
    if (!lua_isnoneornil(L, 4)) {
        return luaL_error(L, "load: a custom environment is not allowed in the sandbox");
    }
    s = lua_tolstring(L, 1, &len);
    chunkname = luaL_optstring(L, 2, s);
    status = luaL_loadbufferx(L, s, len, chunkname, "t");
    if (status == LUA_OK) {
        return 1;
    }
    if (sbx_check_kill(L, status)) {
        return lua_error(L);
    }
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

static int sbx_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) {
        return luaL_error(L, "cannot change a protected metatable");
    }
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL) {
            return luaL_error(L, "__gc metamethods are not allowed in the sandbox");
        }
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* rawset, except on our read-only tables, and never shadowing a built-in
 * in the scripts' environment. Upvalue 1: R. */
static int sbx_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    lua_settop(L, 3);
    if (lua_getmetatable(L, 1)) {
        int ro = lua_getfield(L, -1, "__agape_ro") != LUA_TNIL;
        lua_pop(L, 2);
        if (ro) {
            return luaL_error(L, "attempt to modify a read-only table");
        }
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    if (lua_rawequal(L, 1, -1)) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) {
            return luaL_error(L, "cannot redefine built-in global '%s'",
                              lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_rawset(L, 1);
    return 1;
}

/* Join the arguments from `from` on with tabs (tostring on each), at most
 * SCRIPT_LOG_MAX bytes; the result is pushed and returned. */
static const char *join_args(lua_State *L, int from, luaL_Buffer *b)
{
    int n = lua_gettop(L);
    size_t total = 0;

    for (int i = from; i <= n; i++) {
        luaL_tolstring(L, i, NULL);
        lua_replace(L, i);
    }
    luaL_buffinit(L, b);
    for (int i = from; i <= n && total < SCRIPT_LOG_MAX; i++) {
        size_t len;
        const char *s = lua_tolstring(L, i, &len);
        if (i > from) {
            luaL_addchar(b, '\t');
            total++;
        }
        if (len > SCRIPT_LOG_MAX - total) {
            len = SCRIPT_LOG_MAX - total;
        }
        luaL_addlstring(b, s, len);
        total += len;
    }
    luaL_pushresult(b);
    return lua_tostring(L, -1);
}

/* print(...) → an info log line (a daemon has no stdout worth writing to). */
static int sbx_print(lua_State *L)
{
    luaL_Buffer b;
    const char *msg = join_args(L, 1, &b);

    log_msg(AGAPE_LOG_INFO, NULL, "script: %s", msg);
    return 0;
}

static bool module_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > SCRIPT_MODNAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_')) {
            return false;
        }
    }
    return true;
}

static const struct script_source *set_find(const struct script_set *set, const char *mod)
{
    size_t ml = strlen(mod);

    if (set == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < set->n; i++) {
        const char *n = set->src[i].name;
        if (strncmp(n, mod, ml) == 0 && strcmp(n + ml, ".lua") == 0) {
            return &set->src[i];
        }
    }
    return NULL;
}

static char loading_sentinel;

/* require(name): only <scripts dir>/<name>.lua of this state's generation,
 * name [A-Za-z0-9_]+, text mode, run once per state and cached. */
static int sbx_require(lua_State *L)
{
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    const struct script_source *src;
    int status;

    if (!module_name_ok(name, len)) {
        return luaL_error(L, "require: invalid module name (only [A-Za-z0-9_]+ naming a file "
                             "of the scripts directory)");
    }
    lua_settop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, SCRIPT_LOADED_KEY); /* 2 */
    lua_pushvalue(L, 1);
    if (lua_rawget(L, 2) != LUA_TNIL) {
        if (lua_touserdata(L, -1) == &loading_sentinel) {
            return luaL_error(L, "require: module '%s' requires itself (loop)", name);
        }
        return 1;
    }
    lua_pop(L, 1);
    src = set_find(sbx_get(L)->set, name);
    if (src == NULL) {
        return luaL_error(L, "require: module '%s' not found in the scripts directory", name);
    }
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, &loading_sentinel);
    lua_rawset(L, 2);
    status = luaL_loadbufferx(L, src->text, src->len, src->chunkname, "t");
    if (status == LUA_OK) {
        status = lua_pcall(L, 0, 1, 0);
    }
    if (status != LUA_OK) {
        bool killed = sbx_check_kill(L, status);
        lua_pushvalue(L, 1);
        lua_pushnil(L);
        lua_rawset(L, 2);
        (void)killed;
        return lua_error(L);
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, 2);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Read-only tables                                                    */

static int ro_newindex(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING) {
        return luaL_error(L, "attempt to modify a read-only table (key '%s')",
                          lua_tostring(L, 2));
    }
    return luaL_error(L, "attempt to modify a read-only table");
}

static int ro_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_next(L, 1)) {
        return 2;
    }
    lua_pushnil(L);
    return 1;
}

static int ro_pairs(lua_State *L)
{
    lua_pushcfunction(L, ro_next);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushnil(L);
    return 3;
}

static int ro_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(1)));
    return 1;
}

/* Replace the table on top by a read-only proxy of it. */
static void make_ro_proxy(lua_State *L)
{
    int real = lua_gettop(L);

    lua_newtable(L);
    lua_createtable(L, 0, 6);
    lua_pushvalue(L, real);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, real);
    lua_pushcclosure(L, ro_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    lua_pushvalue(L, real);
    lua_pushcclosure(L, ro_len, 1);
    lua_setfield(L, -2, "__len");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "__agape_ro");
    lua_setmetatable(L, -2);
    lua_replace(L, real);
}

/* The environment's __newindex: script globals may not shadow built-ins.
 * Upvalue 1: R. */
static int env_newindex(lua_State *L)
{
    lua_settop(L, 3);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) {
        return luaL_error(L, "cannot redefine built-in global '%s'",
                          lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
    }
    lua_pop(L, 1);
    lua_rawset(L, 1);
    return 0;
}

/* ------------------------------------------------------------------ */
/* The agape library                                                   */

static int agape_log(lua_State *L)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    luaL_Buffer b;
    const char *msg = join_args(L, 2, &b);

    log_msg((enum agape_log_level)level, NULL, "%s", msg);
    return 0;
}

static int agape_now(lua_State *L)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    return 1;
}

static const luaL_Reg agape_builtin[] = {
    {"log", agape_log},
    {"now", agape_now},
    {NULL, NULL},
};

/* ------------------------------------------------------------------ */
/* Building the sandbox                                                */

static const char *const base_allow[] = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "rawequal", "rawget",
    "rawlen", "select", "tonumber", "tostring", "type", "_VERSION", NULL,
};

/* Every name a registered library may not take. */
static const char *const builtin_names[] = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "rawequal", "rawget",
    "rawlen", "select", "tonumber", "tostring", "type", "_VERSION", "pcall", "xpcall", "load",
    "require", "setmetatable", "rawset", "print", "string", "table", "math", "utf8", "os",
    "_G", "_ENV", NULL,
};

static void add_lib(lua_State *L, int R, const char *name, lua_CFunction open)
{
    luaL_requiref(L, name, open, 0);
    make_ro_proxy(L);
    lua_setfield(L, R, name);
}

/* Push R (real library table) and P (its read-only proxy). The libraries of
 * `libs` (may be NULL) are added. Raises on memory errors: call protected. */
static void sandbox_push(lua_State *L, const struct script_lib *libs, size_t n_libs)
{
    int R;

    luaL_checkstack(L, 16, "sandbox");
    lua_createtable(L, 0, 32);
    R = lua_gettop(L);

    /* base: open it into the original globals, copy the allowlist */
    luaL_requiref(L, "_G", luaopen_base, 0);
    for (size_t i = 0; base_allow[i] != NULL; i++) {
        lua_getfield(L, -1, base_allow[i]);
        lua_setfield(L, R, base_allow[i]);
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, sbx_pcall);
    lua_setfield(L, R, "pcall");
    lua_pushcfunction(L, sbx_xpcall);
    lua_setfield(L, R, "xpcall");
    lua_pushcfunction(L, sbx_load);
    lua_setfield(L, R, "load");
    lua_pushcfunction(L, sbx_require);
    lua_setfield(L, R, "require");
    lua_pushcfunction(L, sbx_setmetatable);
    lua_setfield(L, R, "setmetatable");
    lua_pushvalue(L, R);
    lua_pushcclosure(L, sbx_rawset, 1);
    lua_setfield(L, R, "rawset");
    lua_pushcfunction(L, sbx_print);
    lua_setfield(L, R, "print");

    /* string, without dump (removed from the real table: a string's methods
     * reach it through the string metatable) */
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable"); /* getmetatable("") must not reveal it */
    lua_pop(L, 2);
    add_lib(L, R, LUA_STRLIBNAME, luaopen_string);
    add_lib(L, R, LUA_TABLIBNAME, luaopen_table);
    add_lib(L, R, LUA_MATHLIBNAME, luaopen_math);
    add_lib(L, R, LUA_UTF8LIBNAME, luaopen_utf8);

    /* os: time, clock, date */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 3);
    lua_getfield(L, -2, "time");
    lua_setfield(L, -2, "time");
    lua_getfield(L, -2, "clock");
    lua_setfield(L, -2, "clock");
    lua_getfield(L, -2, "date");
    lua_setfield(L, -2, "date");
    make_ro_proxy(L);
    lua_setfield(L, R, "os");
    lua_pop(L, 1);

    /* agape, then the registered libraries: "agape" extends it, another
     * name becomes its own read-only table (registrations of one name merge) */
    luaL_newlib(L, agape_builtin);
    for (size_t i = 0; i < n_libs; i++) {
        bool seen = false;
        for (size_t k = 0; builtin_names[k] != NULL; k++) {
            seen = seen || strcmp(builtin_names[k], libs[i].name) == 0;
        }
        for (size_t j = 0; j < i; j++) {
            seen = seen || strcmp(libs[j].name, libs[i].name) == 0;
        }
        if (seen) {
            continue; /* a built-in name, or merged below with the first of its name */
        }
        if (strcmp(libs[i].name, "agape") != 0) {
            lua_newtable(L);
        }
        for (size_t j = i; j < n_libs; j++) {
            if (strcmp(libs[j].name, libs[i].name) == 0) {
                lua_pushlightuserdata(L, libs[j].ud);
                luaL_setfuncs(L, libs[j].fns, 1);
            }
        }
        if (strcmp(libs[i].name, "agape") != 0) {
            make_ro_proxy(L);
            lua_setfield(L, R, libs[i].name);
        }
    }
    make_ro_proxy(L);
    lua_setfield(L, R, "agape");

    /* require() cache */
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, SCRIPT_LOADED_KEY);

    lua_settop(L, R);
    lua_pushvalue(L, R);
    make_ro_proxy(L);
}

static lua_State *sbx_newstate(struct sbx *sb)
{
    lua_State *L = lua_newstate(sbx_alloc, sb);

    if (L != NULL) {
        *(struct sbx **)lua_getextraspace(L) = sb;
    }
    return L;
}

static int bare_open(lua_State *L)
{
    sandbox_push(L, NULL, 0); /* R P */
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "_G");
    lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    return 0;
}

struct lua_State *script_sandbox_state(size_t memory_cap)
{
    struct sbx *sb = calloc(1, sizeof(*sb));
    lua_State *L;

    if (sb == NULL) {
        return NULL;
    }
    sb->cap = memory_cap > 0 ? memory_cap : SCRIPT_DEFAULT_MEMORY;
    L = sbx_newstate(sb);
    if (L == NULL) {
        free(sb);
        return NULL;
    }
    lua_pushcfunction(L, bare_open);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        lua_close(L);
        free(sb);
        return NULL;
    }
    return L;
}

void script_sandbox_close(struct lua_State *L)
{
    void *ud = NULL;

    if (L == NULL) {
        return;
    }
    lua_sethook(L, NULL, 0, 0);
    lua_getallocf(L, &ud);
    lua_close(L);
    free(ud);
}

/* ------------------------------------------------------------------ */
/* JSON <-> Lua                                                        */

static void push_json_rec(lua_State *L, json_t *v, int depth, size_t *count)
{
    if (++*count > SCRIPT_JSON_MAX_VALUES) {
        luaL_error(L, "JSON value too large for a script (more than %d values)",
                   SCRIPT_JSON_MAX_VALUES);
    }
    luaL_checkstack(L, 4, "JSON value");
    switch (v != NULL ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT: {
        const char *key;
        size_t klen;
        json_t *m;
        if (depth >= SCRIPT_JSON_DEPTH) {
            luaL_error(L, "JSON nested deeper than %d levels", SCRIPT_JSON_DEPTH);
        }
        lua_createtable(L, 0, (int)(json_object_size(v) < 1024 ? json_object_size(v) : 1024));
        json_object_keylen_foreach(v, key, klen, m) {
            if (json_is_null(m)) {
                continue;
            }
            lua_pushlstring(L, key, klen);
            push_json_rec(L, m, depth + 1, count);
            lua_rawset(L, -3);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (depth >= SCRIPT_JSON_DEPTH) {
            luaL_error(L, "JSON nested deeper than %d levels", SCRIPT_JSON_DEPTH);
        }
        lua_createtable(L, (int)(n < 1024 ? n : 1024), 0);
        for (size_t i = 0; i < n; i++) {
            push_json_rec(L, json_array_get(v, i), depth + 1, count);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        break;
    case JSON_REAL:
        lua_pushnumber(L, (lua_Number)json_real_value(v));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_NULL:
    default:
        lua_pushnil(L);
        break;
    }
}

int script_push_json(struct lua_State *L, json_t *v)
{
    size_t count = 0;

    push_json_rec(L, v, 0, &count);
    return AGAPE_OK;
}

struct tojson {
    lua_State *L;
    size_t count;
    char path[200];
    size_t plen;
    char reason[120];
};

static json_t *tojson_fail(struct tojson *c, const char *reason)
{
    if (c->reason[0] == '\0') {
        snprintf(c->reason, sizeof(c->reason), "%s", reason);
    }
    return NULL;
}

/* After an snprintf of n bytes at the end of the path (truncated at the end). */
static void path_advance(struct tojson *c, int n)
{
    size_t room = sizeof(c->path) - c->plen;

    if (n > 0) {
        c->plen += (size_t)n < room ? (size_t)n : room - 1;
    }
}

static void path_push_key(struct tojson *c, const char *k, size_t klen)
{
    int n;

    if (c->plen >= sizeof(c->path) - 1) {
        return;
    }
    n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, ".%.*s",
                 (int)(klen > 60 ? 60 : klen), k);
    path_advance(c, n);
}

static void path_push_index(struct tojson *c, lua_Integer i)
{
    /* "[i]" by hand: this runs for every array element converted, and the
     * path is only ever read when a conversion fails. i > 0 here. */
    char tmp[24];
    size_t k = sizeof(tmp);
    unsigned long long u = i > 0 ? (unsigned long long)i : 0;

    if (c->plen >= sizeof(c->path) - 1) {
        return;
    }
    tmp[--k] = ']';
    do {
        tmp[--k] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    tmp[--k] = '[';
    size_t n = sizeof(tmp) - k;
    size_t room = sizeof(c->path) - 1 - c->plen;
    if (n > room) {
        n = room;
    }
    memcpy(c->path + c->plen, tmp + k, n);
    c->plen += n;
    c->path[c->plen] = '\0';
}

/* Only Lua API calls that never raise: raw access, lua_next, type checks and
 * lua_tolstring on values that already are strings. On failure c->path is
 * left where it happened. */
static json_t *tojson_rec(struct tojson *c, int idx, int depth)
{
    lua_State *L = c->L;
    size_t n = 0;
    lua_Integer max = 0;
    bool all_int = true, all_str = true;
    size_t saved = c->plen;
    json_t *out;

    if (++c->count > SCRIPT_JSON_MAX_VALUES) {
        return tojson_fail(c, "too many values (more than 1000000)");
    }
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            return json_integer((json_int_t)lua_tointeger(L, idx));
        }
        if (!isfinite((double)lua_tonumber(L, idx))) {
            return tojson_fail(c, "cannot convert a non-finite number to JSON");
        }
        return json_real((double)lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        json_t *j = json_stringn(s, len);
        return j != NULL ? j : tojson_fail(c, "cannot convert a string that is not valid "
                                              "UTF-8 to JSON");
    }
    case LUA_TTABLE:
        break;
    default: {
        char reason[64];
        snprintf(reason, sizeof(reason), "cannot convert a %s to JSON",
                 lua_typename(L, lua_type(L, idx)));
        return tojson_fail(c, reason);
    }
    }

    if (depth >= SCRIPT_JSON_DEPTH) {
        return tojson_fail(c, "nested deeper than 32 levels");
    }
    if (!lua_checkstack(L, 4)) {
        return tojson_fail(c, "out of Lua stack");
    }
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        n++;
        if (lua_type(L, -2) == LUA_TNUMBER && lua_isinteger(L, -2) &&
            lua_tointeger(L, -2) > 0) {
            lua_Integer k = lua_tointeger(L, -2);
            max = k > max ? k : max;
            all_str = false;
        } else if (lua_type(L, -2) == LUA_TSTRING) {
            all_int = false;
        } else {
            all_int = false;
            all_str = false;
        }
        lua_pop(L, 1);
    }
    if (n == 0) {
        return json_object();
    }
    if (all_int && (size_t)max == n) {
        out = json_array();
        if (out == NULL) {
            return tojson_fail(c, "out of memory");
        }
        for (lua_Integer i = 1; i <= max; i++) {
            json_t *m;
            lua_rawgeti(L, idx, i);
            path_push_index(c, i);
            m = tojson_rec(c, -1, depth + 1);
            lua_pop(L, 1);
            if (m == NULL || json_array_append_new(out, m) != 0) {
                json_decref(out);
                return tojson_fail(c, "out of memory");
            }
            c->plen = saved;
            c->path[saved] = '\0';
        }
        return out;
    }
    if (!all_str) {
        return tojson_fail(c, "cannot convert a table with mixed or non-sequential keys "
                              "to JSON");
    }
    out = json_object();
    if (out == NULL) {
        return tojson_fail(c, "out of memory");
    }
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen);
        json_t *m;
        path_push_key(c, k, klen);
        m = tojson_rec(c, -1, depth + 1);
        lua_pop(L, 1);
        if (m == NULL) {
            lua_pop(L, 1);
            json_decref(out);
            return NULL;
        }
        if (json_object_setn_new(out, k, klen, m) != 0) {
            lua_pop(L, 1);
            json_decref(out);
            return tojson_fail(c, "cannot convert a key that is not valid UTF-8 to JSON");
        }
        c->plen = saved;
        c->path[saved] = '\0';
    }
    return out;
}

json_t *script_to_json(struct lua_State *L, int idx, const char *what, char *err,
                       size_t errlen)
{
    struct tojson c;
    json_t *j;
    int top = lua_gettop(L);

    memset(&c, 0, sizeof(c));
    c.L = L;
    j = tojson_rec(&c, lua_absindex(L, idx), 0);
    lua_settop(L, top);
    if (j == NULL && err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s%s: %s", what != NULL ? what : "value", c.path,
                 c.reason[0] ? c.reason : "out of memory");
    }
    return j;
}

/* ------------------------------------------------------------------ */
/* Sources                                                             */

static void set_free(struct script_set *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        free(s->src[i].name);
        free(s->src[i].chunkname);
        free(s->src[i].text);
    }
    for (size_t i = 0; i < s->n_fns; i++) {
        free(s->fns[i]);
    }
    free(s->src);
    free(s->fns);
    free(s);
}

static void set_unref_locked(struct script_set *s)
{
    if (s != NULL && --s->refs == 0) {
        set_free(s);
    }
}

static int cmp_source(const void *a, const void *b)
{
    return strcmp(((const struct script_source *)a)->name,
                  ((const struct script_source *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    int rc = AGAPE_ERROR;

    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return AGAPE_ERROR;
    }
    buf = malloc(SCRIPT_MAX_FILE_BYTES + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        rc = AGAPE_ENOMEM;
        goto out;
    }
    len = fread(buf, 1, SCRIPT_MAX_FILE_BYTES + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    if (len > SCRIPT_MAX_FILE_BYTES) {
        snprintf(err, errlen, "%s: larger than %ld bytes", path, SCRIPT_MAX_FILE_BYTES);
        rc = AGAPE_ERANGE;
        goto out;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    buf = NULL;
    rc = AGAPE_OK;
out:
    free(buf);
    fclose(f);
    return rc;
}

/* Every regular *.lua of dir (not hidden), sorted by name. */
static int read_sources(const char *dir, struct script_set **out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    struct script_set *s = NULL;
    struct dirent *de;
    int rc = AGAPE_OK;

    *out = NULL;
    if (d == NULL) {
        snprintf(err, errlen, "%s: cannot open the scripts directory: %s", dir,
                 strerror(errno));
        return AGAPE_ERROR;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    s->refs = 1;
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        struct script_source *src;
        struct stat stt;
        char path[4096];
        int n;

        if (de->d_name[0] == '.' || nl < 5 || strcmp(de->d_name + nl - 4, ".lua") != 0) {
            continue;
        }
        n = snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            snprintf(err, errlen, "%s/%s: path too long", dir, de->d_name);
            rc = AGAPE_ERANGE;
            goto out;
        }
        if (stat(path, &stt) != 0 || !S_ISREG(stt.st_mode)) {
            continue;
        }
        if (s->n == SCRIPT_MAX_FILES) {
            snprintf(err, errlen, "%s: more than %d scripts", dir, SCRIPT_MAX_FILES);
            rc = AGAPE_ERANGE;
            goto out;
        }
        if (s->n % 16 == 0) {
            struct script_source *v = realloc(s->src, (s->n + 16) * sizeof(*v));
            if (v == NULL) {
                rc = AGAPE_ENOMEM;
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            s->src = v;
        }
        src = &s->src[s->n];
        memset(src, 0, sizeof(*src));
        s->n++;
        src->name = strdup(de->d_name);
        src->chunkname = malloc((size_t)n + 2);
        if (src->name == NULL || src->chunkname == NULL) {
            rc = AGAPE_ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        src->chunkname[0] = '@';
        memcpy(src->chunkname + 1, path, (size_t)n + 1);
        rc = read_file(path, &src->text, &src->len, err, errlen);
        if (rc != AGAPE_OK) {
            goto out;
        }
    }
    if (s->n > 1) {
        qsort(s->src, s->n, sizeof(*s->src), cmp_source);
    }
    *out = s;
    s = NULL;
out:
    set_free(s);
    closedir(d);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Building a state of an engine                                       */

struct build_args {
    const struct script_engine *e;
    const struct script_set *set;
    const struct script_lib *libs;
    size_t n_libs;
    int rc;
    char *err;
    size_t errlen;
};

static void kill_message(char *err, size_t errlen, const struct sbx *sb,
                         const struct script_limits *lim, const char *where)
{
    if (sb->killed == KILL_BUDGET) {
        snprintf(err, errlen, "script budget exhausted (%llu instructions) in %s",
                 (unsigned long long)lim->instructions, where);
    } else {
        snprintf(err, errlen, "script memory limit (%zu bytes) exceeded in %s", lim->memory,
                 where);
    }
}

static int sbx_msgh(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING) {
        return 1;
    }
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
        return 1;
    }
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    return 1;
}

static void copy_message(lua_State *L, int idx, char *err, size_t errlen)
{
    const char *m = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;

    snprintf(err, errlen, "%s", m != NULL ? m : "script error (no message)");
}

/* Protected: the sandbox, the environment, then every script's top level. */
static int build_protected(lua_State *L)
{
    struct build_args *ba = lua_touserdata(L, 1);
    struct sbx *sb = sbx_get(L);
    int R, E, loaded, msgh;

    lua_settop(L, 0);
    sandbox_push(L, ba->libs, ba->n_libs); /* 1: R, 2: P */
    R = 1;
    lua_pop(L, 1);
    lua_newtable(L); /* 2: E */
    E = 2;
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, R);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, R);
    lua_pushcclosure(L, env_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, E);
    lua_pushvalue(L, E);
    lua_setfield(L, R, "_G");
    lua_pushvalue(L, E);
    lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_getfield(L, LUA_REGISTRYINDEX, SCRIPT_LOADED_KEY); /* 3 */
    loaded = 3;
    lua_pushcfunction(L, sbx_msgh);                         /* 4 */
    msgh = 4;

    for (size_t i = 0; ba->set != NULL && i < ba->set->n; i++) {
        const struct script_source *src = &ba->set->src[i];
        size_t ml = strlen(src->name) - 4;
        bool is_mod = module_name_ok(src->name, ml);
        int status;

        if (is_mod) {
            lua_pushlstring(L, src->name, ml);
            if (lua_rawget(L, loaded) != LUA_TNIL) {
                lua_pop(L, 1);
                continue; /* already run by a require() */
            }
            lua_pop(L, 1);
        }
        sbx_arm(L, ba->e->lim.instructions);
        status = luaL_loadbufferx(L, src->text, src->len, src->chunkname, "t");
        if (status == LUA_OK) {
            status = lua_pcall(L, 0, 1, msgh);
        }
        if (status != LUA_OK) {
            sbx_check_kill(L, status);
            if (sb->killed != KILL_NONE) {
                kill_message(ba->err, ba->errlen, sb, &ba->e->lim, src->chunkname + 1);
            } else {
                copy_message(L, -1, ba->err, ba->errlen);
            }
            ba->rc = AGAPE_ESCRIPT;
            return 0;
        }
        if (is_mod) {
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushboolean(L, 1);
            }
            lua_pushlstring(L, src->name, ml);
            lua_insert(L, -2);
            lua_rawset(L, loaded);
        } else {
            lua_pop(L, 1);
        }
    }
    lua_settop(L, 0);
    return 0;
}

/* Make a state for `set` into *Lout (sb must outlive it). */
static int state_build(const struct script_engine *e, const struct script_set *set,
                       const struct script_lib *libs, size_t n_libs, struct sbx *sb,
                       lua_State **Lout, char *err, size_t errlen)
{
    struct build_args ba = {e, set, libs, n_libs, AGAPE_OK, err, errlen};
    lua_State *L;
    int status;

    *Lout = NULL;
    memset(sb, 0, sizeof(*sb));
    sb->cap = e->lim.memory;
    sb->set = set;
    L = sbx_newstate(sb);
    if (L == NULL) {
        snprintf(err, errlen, "script memory limit (%zu bytes) too small for a Lua state",
                 e->lim.memory);
        return AGAPE_ESCRIPT;
    }
    lua_pushcfunction(L, build_protected);
    lua_pushlightuserdata(L, &ba);
    status = lua_pcall(L, 1, 0, 0);
    lua_sethook(L, NULL, 0, 0);
    sb->budget = 0;
    if (status != LUA_OK) {
        if (status == LUA_ERRMEM || sb->killed == KILL_MEMORY) {
            snprintf(err, errlen, "script memory limit (%zu bytes) exceeded while building "
                     "the sandbox", e->lim.memory);
        } else {
            copy_message(L, -1, err, errlen);
        }
        ba.rc = AGAPE_ESCRIPT;
    }
    if (ba.rc != AGAPE_OK) {
        lua_close(L);
        return ba.rc;
    }
    lua_settop(L, 0);
    *Lout = L;
    return AGAPE_OK;
}

/* Names of the global functions in the state's environment, sorted. */
static int collect_functions(lua_State *L, struct script_set *set)
{
    size_t cap = 0;
    int rc = AGAPE_OK;

    if (!lua_checkstack(L, 4)) {
        return AGAPE_ENOMEM;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TFUNCTION) {
            if (set->n_fns == cap) {
                size_t nc = cap ? cap * 2 : 16;
                char **v = realloc(set->fns, nc * sizeof(*v));
                if (v == NULL) {
                    rc = AGAPE_ENOMEM;
                    lua_pop(L, 2);
                    break;
                }
                set->fns = v;
                cap = nc;
            }
            set->fns[set->n_fns] = strdup(lua_tostring(L, -2));
            if (set->fns[set->n_fns] == NULL) {
                rc = AGAPE_ENOMEM;
                lua_pop(L, 2);
                break;
            }
            set->n_fns++;
        }
        lua_pop(L, 1);
    }
    lua_settop(L, 0);
    if (set->n_fns > 1) {
        qsort(set->fns, set->n_fns, sizeof(*set->fns), cmp_str);
    }
    return rc;
}

/* Read the directory and prove the scripts in a fresh state. */
static int set_load(struct script_engine *e, struct script_set **out, char *err,
                    size_t errlen)
{
    struct script_set *set = NULL;
    struct script_lib libs[SCRIPT_MAX_LIBS];
    size_t n_libs;
    struct sbx sb;
    lua_State *L = NULL;
    int rc;

    *out = NULL;
    rc = read_sources(e->dir, &set, err, errlen);
    if (rc != AGAPE_OK) {
        return rc;
    }
    pthread_mutex_lock(&e->lock);
    n_libs = e->n_libs;
    memcpy(libs, e->libs, n_libs * sizeof(libs[0]));
    pthread_mutex_unlock(&e->lock);
    rc = state_build(e, set, libs, n_libs, &sb, &L, err, errlen);
    if (rc == AGAPE_OK) {
        rc = collect_functions(L, set);
        if (rc != AGAPE_OK) {
            snprintf(err, errlen, "out of memory");
        }
        lua_close(L);
    }
    if (rc != AGAPE_OK) {
        set_free(set);
        return rc;
    }
    *out = set;
    return AGAPE_OK;
}

/* ------------------------------------------------------------------ */
/* Engine                                                              */

int script_engine_create(const char *dir, const struct script_limits *lim,
                         struct script_engine **out, char *err, size_t errlen)
{
    struct script_engine *e;
    struct script_set *set = NULL;
    size_t dl;
    int rc;

    *out = NULL;
    if (dir == NULL || dir[0] == '\0') {
        snprintf(err, errlen, "no scripts directory configured");
        return AGAPE_EINVAL;
    }
    pthread_once(&tls_once, tls_init);
    if (!tls_ok) {
        snprintf(err, errlen, "cannot create a thread-local key");
        return AGAPE_ERROR;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return AGAPE_ENOMEM;
    }
    e->dir = strdup(dir);
    if (e->dir == NULL) {
        free(e);
        snprintf(err, errlen, "out of memory");
        return AGAPE_ENOMEM;
    }
    dl = strlen(e->dir);
    while (dl > 1 && e->dir[dl - 1] == '/') {
        e->dir[--dl] = '\0';
    }
    e->lim.instructions = lim != NULL && lim->instructions > 0 ? lim->instructions
                                                               : SCRIPT_DEFAULT_INSTRUCTIONS;
    e->lim.memory = lim != NULL && lim->memory > 0 ? lim->memory : SCRIPT_DEFAULT_MEMORY;
    pthread_mutex_init(&e->lock, NULL);
    pthread_mutex_init(&e->reload_lock, NULL);

    rc = set_load(e, &set, err, errlen);
    if (rc != AGAPE_OK) {
        pthread_mutex_destroy(&e->lock);
        pthread_mutex_destroy(&e->reload_lock);
        free(e->dir);
        free(e);
        return rc;
    }
    e->set = set;
    atomic_store(&e->gen, 1);
    atomic_store(&e->epoch, 1);
    e->id = atomic_fetch_add(&next_engine_id, 1);

    pthread_mutex_lock(&reg_lock);
    e->reg_next = reg_head;
    reg_head = e;
    pthread_mutex_unlock(&reg_lock);
    *out = e;
    return AGAPE_OK;
}

static void tls_forget(uint64_t engine_id)
{
    struct tls_slots *s = pthread_getspecific(tls_key);

    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i].engine_id == engine_id) {
            s->v[i] = s->v[--s->n];
            break;
        }
    }
    if (s->n == 0) {
        pthread_setspecific(tls_key, NULL);
        free(s->v);
        free(s);
    }
}

void script_engine_destroy(struct script_engine *e)
{
    struct script_engine **pp;
    struct script_thread *st, *next;

    if (e == NULL) {
        return;
    }
    /* Once out of the registry no exiting thread touches our states. */
    pthread_mutex_lock(&reg_lock);
    for (pp = &reg_head; *pp != NULL; pp = &(*pp)->reg_next) {
        if (*pp == e) {
            *pp = e->reg_next;
            break;
        }
    }
    pthread_mutex_unlock(&reg_lock);

    pthread_mutex_lock(&e->lock);
    for (st = e->threads; st != NULL; st = next) {
        next = st->next;
        thread_state_close(st);
        set_unref_locked(st->set);
        free(st);
    }
    e->threads = NULL;
    set_unref_locked(e->set);
    e->set = NULL;
    for (size_t i = 0; i < e->n_libs; i++) {
        free(e->libs[i].name);
    }
    pthread_mutex_unlock(&e->lock);
    tls_forget(e->id);
    pthread_mutex_destroy(&e->lock);
    pthread_mutex_destroy(&e->reload_lock);
    free(e->dir);
    free(e);
}

int script_engine_reload(struct script_engine *e, char *err, size_t errlen)
{
    struct script_set *set = NULL, *old;
    int rc;

    pthread_mutex_lock(&e->reload_lock);
    rc = set_load(e, &set, err, errlen);
    if (rc == AGAPE_OK) {
        pthread_mutex_lock(&e->lock);
        old = e->set;
        e->set = set;
        atomic_fetch_add(&e->gen, 1);
        set_unref_locked(old);
        pthread_mutex_unlock(&e->lock);
        log_info("scripts reloaded from %s (generation %llu)", e->dir,
                 (unsigned long long)atomic_load(&e->gen));
    }
    pthread_mutex_unlock(&e->reload_lock);
    return rc;
}

uint64_t script_generation(struct script_engine *e)
{
    return atomic_load(&e->gen);
}

bool script_has(struct script_engine *e, const char *fn)
{
    bool found;

    pthread_mutex_lock(&e->lock);
    found = e->set != NULL && e->set->n_fns > 0 &&
            bsearch(&fn, e->set->fns, e->set->n_fns, sizeof(char *), cmp_str) != NULL;
    pthread_mutex_unlock(&e->lock);
    return found;
}

int script_register_lib(struct script_engine *e, const char *name, const struct luaL_Reg *fns,
                        void *ud)
{
    int rc = AGAPE_OK;

    if (name == NULL || fns == NULL || name[0] == '\0' || strlen(name) > 32 ||
        !((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_')) {
        return AGAPE_EINVAL;
    }
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            return AGAPE_EINVAL;
        }
    }
    for (size_t k = 0; builtin_names[k] != NULL; k++) {
        if (strcmp(builtin_names[k], name) == 0) {
            return AGAPE_EINVAL;
        }
    }
    pthread_mutex_lock(&e->lock);
    if (e->n_libs == SCRIPT_MAX_LIBS) {
        rc = AGAPE_ERANGE;
    } else {
        e->libs[e->n_libs].name = strdup(name);
        if (e->libs[e->n_libs].name == NULL) {
            rc = AGAPE_ENOMEM;
        } else {
            e->libs[e->n_libs].fns = fns;
            e->libs[e->n_libs].ud = ud;
            e->n_libs++;
            atomic_fetch_add(&e->epoch, 1);
        }
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

/* This thread's state for e, built or rebuilt when the generation or the
 * libraries changed. */
static struct script_thread *thread_state(struct script_engine *e, char *err, size_t errlen,
                                          int *rc)
{
    struct tls_slots *s = pthread_getspecific(tls_key);
    struct script_thread *st = NULL;
    struct script_lib libs[SCRIPT_MAX_LIBS];
    size_t n_libs;
    struct script_set *set;
    uint64_t gen, epoch;

    for (size_t i = 0; s != NULL && i < s->n; i++) {
        if (s->v[i].engine_id == e->id) {
            st = s->v[i].st;
            break;
        }
    }
    if (st != NULL && st->busy) {
        snprintf(err, errlen, "script calls do not nest (a call from inside a script call)");
        *rc = AGAPE_EBUSY;
        return NULL;
    }
    if (st != NULL && st->L != NULL && st->gen == atomic_load(&e->gen) &&
        st->epoch == atomic_load(&e->epoch)) {
        return st;
    }
    if (st == NULL) {
        st = calloc(1, sizeof(*st));
        if (st == NULL) {
            goto nomem;
        }
        if (s == NULL) {
            s = calloc(1, sizeof(*s));
            if (s == NULL || pthread_setspecific(tls_key, s) != 0) {
                free(s);
                free(st);
                goto nomem;
            }
        }
        if (s->n == s->cap) {
            size_t nc = s->cap ? s->cap * 2 : 4;
            struct tls_slot *v = realloc(s->v, nc * sizeof(*v));
            if (v == NULL) {
                free(st);
                goto nomem;
            }
            s->v = v;
            s->cap = nc;
        }
        s->v[s->n].engine_id = e->id;
        s->v[s->n].st = st;
        s->n++;
        pthread_mutex_lock(&e->lock);
        st->next = e->threads;
        if (e->threads != NULL) {
            e->threads->prev = st;
        }
        e->threads = st;
        pthread_mutex_unlock(&e->lock);
    }

    thread_state_close(st);
    pthread_mutex_lock(&e->lock);
    set_unref_locked(st->set);
    st->set = NULL;
    set = e->set;
    set->refs++;
    gen = atomic_load(&e->gen);
    epoch = atomic_load(&e->epoch);
    n_libs = e->n_libs;
    memcpy(libs, e->libs, n_libs * sizeof(libs[0]));
    pthread_mutex_unlock(&e->lock);

    *rc = state_build(e, set, libs, n_libs, &st->sb, &st->L, err, errlen);
    if (*rc != AGAPE_OK) {
        pthread_mutex_lock(&e->lock);
        set_unref_locked(set);
        pthread_mutex_unlock(&e->lock);
        return NULL;
    }
    st->set = set;
    st->gen = gen;
    st->epoch = epoch;
    return st;

nomem:
    snprintf(err, errlen, "out of memory");
    *rc = AGAPE_ENOMEM;
    return NULL;
}

struct call_args {
    const char *fn;
    json_t *const *args;
    size_t nargs;
    bool missing;
};

static int call_protected(lua_State *L)
{
    struct call_args *ca = lua_touserdata(L, 1);
    size_t count = 0;

    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_pushstring(L, ca->fn);
    if (lua_rawget(L, 1) != LUA_TFUNCTION) {
        ca->missing = true;
        return 0;
    }
    luaL_checkstack(L, (int)ca->nargs + 8, "script arguments");
    for (size_t i = 0; i < ca->nargs; i++) {
        push_json_rec(L, ca->args[i], 0, &count);
    }
    lua_call(L, (int)ca->nargs, 1);
    return 1;
}

int script_callv(struct script_engine *e, const char *fn, json_t *const *args, size_t nargs,
                 json_t **ret, char *err, size_t errlen)
{
    struct call_args ca = {fn, args, nargs, false};
    struct script_thread *st;
    lua_State *L;
    int rc = AGAPE_OK;
    int status;

    *ret = NULL;
    if (nargs > 16) {
        snprintf(err, errlen, "too many arguments for %s", fn);
        return AGAPE_EINVAL;
    }
    st = thread_state(e, err, errlen, &rc);
    if (st == NULL) {
        return rc;
    }
    L = st->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, sbx_msgh);
    lua_pushcfunction(L, call_protected);
    lua_pushlightuserdata(L, &ca);
    sbx_arm(L, e->lim.instructions);
    st->busy = true;
    status = lua_pcall(L, 1, 1, 1);
    st->busy = false;
    lua_sethook(L, NULL, 0, 0);
    if (status != LUA_OK && st->sb.killed == KILL_NONE &&
        (status == LUA_ERRMEM || (st->sb.refused && is_memory_message(L, -1)))) {
        st->sb.killed = KILL_MEMORY;
    }
    if (st->sb.killed != KILL_NONE) {
        kill_message(err, errlen, &st->sb, &e->lim, fn);
        thread_state_close(st); /* rebuilt on the next call */
        return AGAPE_ESCRIPT;
    }
    if (status != LUA_OK) {
        copy_message(L, -1, err, errlen);
        lua_settop(L, 0);
        return AGAPE_ESCRIPT;
    }
    if (ca.missing) {
        snprintf(err, errlen, "no script defines %s()", fn);
        lua_settop(L, 0);
        return AGAPE_ENOENT;
    }
    *ret = script_to_json(L, -1, fn, err, errlen);
    lua_settop(L, 0);
    if (*ret == NULL) {
        return AGAPE_ESCRIPT;
    }
    return AGAPE_OK;
}

int script_call(struct script_engine *e, const char *fn, json_t *arg, json_t **ret, char *err,
                size_t errlen)
{
    json_t *args[1] = {arg};

    return script_callv(e, fn, args, 1, ret, err, errlen);
}
