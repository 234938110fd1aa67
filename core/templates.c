/* templates — rendering message templates in the script sandbox (see
 * templates.h).
 *
 * Why three protected calls per render instead of one: the file is read in
 * C, outside any Lua call, so that a Lua error (which longjmps) can never
 * leak the read buffer or a FILE. render_pc first looks the template up in
 * the thread's cache; on a miss it returns at once, C reads the file, and
 * compile_pc runs it and caches the table; then render_pc runs again.
 *
 * Why our own count hook and not the engine's budget: the bare sandbox
 * state has no budget of its own (it serves the configuration loader too).
 * Once the budget is spent the hook raises on every instruction (count 1),
 * so a template cannot swallow the error with pcall and go on. */
#include "templates.h"

#include "script.h"

#include <agape/plugin.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TPL_HOOK_STEP 1000
#define TPL_CACHE_KEY "agape.tpl.cache"
#define TPL_HELPERS_KEY "agape.tpl.h"
#define TPL_PATH_MAX 4096

struct tpl_tls {
    lua_State *L;
    uint64_t budget;
    uint64_t executed;
    bool killed;
};

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static bool tls_ok;

static const char HELPERS[] =
    "local h = {}\n"
    "local esc = { ['&'] = '&amp;', ['<'] = '&lt;', ['>'] = '&gt;', ['\"'] = '&quot;',\n"
    "              [\"'\"] = '&#39;' }\n"
    "function h.html(s)\n"
    "  if s == nil then return '' end\n"
    "  return (string.gsub(tostring(s), '[&<>\"\\']', esc))\n"
    "end\n"
    "function h.need(d, k)\n"
    "  local v = d and d[k]\n"
    "  if v == nil or v == '' or type(v) == 'table' then\n"
    "    error({ agape_missing = tostring(k) })\n"
    "  end\n"
    "  return tostring(v)\n"
    "end\n"
    "function h.get(d, k, default)\n"
    "  local v = d and d[k]\n"
    "  if v == nil or type(v) == 'table' then return default end\n"
    "  return tostring(v)\n"
    "end\n"
    "return h\n";

static void tls_destroy(void *p)
{
    struct tpl_tls *t = p;
    if (t != NULL) {
        script_sandbox_close(t->L);
        free(t);
    }
}

static void tls_init(void)
{
    tls_ok = pthread_key_create(&tls_key, tls_destroy) == 0;
}

static void tpl_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct tpl_tls *t = tls_ok ? pthread_getspecific(tls_key) : NULL;
    if (t == NULL) {
        return;
    }
    if (!t->killed) {
        t->executed += TPL_HOOK_STEP;
        if (t->executed < t->budget) {
            return;
        }
        t->killed = true;
    }
    lua_sethook(L, tpl_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "the template ran out of its instruction budget");
}

static int init_pc(lua_State *L)
{
    if (luaL_loadbufferx(L, HELPERS, sizeof(HELPERS) - 1, "=template helpers", "t") != LUA_OK) {
        return lua_error(L);
    }
    lua_call(L, 0, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, TPL_HELPERS_KEY);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, TPL_CACHE_KEY);
    return 0;
}

/* The calling thread's state, made on first use; NULL without memory. */
static struct tpl_tls *tls_get(void)
{
    pthread_once(&tls_once, tls_init);
    if (!tls_ok) {
        return NULL;
    }
    struct tpl_tls *t = pthread_getspecific(tls_key);
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL || pthread_setspecific(tls_key, t) != 0) {
            free(t);
            return NULL;
        }
    }
    if (t->L == NULL) {
        t->L = script_sandbox_state(TEMPLATES_MEMORY);
        if (t->L == NULL) {
            return NULL;
        }
        lua_pushcfunction(t->L, init_pc);
        if (lua_pcall(t->L, 0, 0, 0) != LUA_OK) {
            script_sandbox_close(t->L);
            t->L = NULL;
            return NULL;
        }
    }
    return t;
}

void templates_thread_cleanup(void)
{
    pthread_once(&tls_once, tls_init);
    if (!tls_ok) {
        return;
    }
    struct tpl_tls *t = pthread_getspecific(tls_key);
    if (t != NULL) {
        pthread_setspecific(tls_key, NULL);
        tls_destroy(t);
    }
}

bool templates_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > TEMPLATES_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

struct render_args {
    const char *path;
    char chunkname[96];
    char stamp[96];
    bool email;
    json_t *data;
    json_t *out;       /* owned by the caller: survives a Lua error */
    bool miss;
    const char *buf;   /* compile_pc: the file */
    size_t len;
};

static int compile_pc(lua_State *L)
{
    struct render_args *a = lua_touserdata(L, 1);
    if (luaL_loadbufferx(L, a->buf, a->len, a->chunkname, "t") != LUA_OK) {
        return lua_error(L);
    }
    lua_call(L, 0, 1);
    if (!lua_istable(L, -1)) {
        return luaL_error(L, "%s must return a table (subject/text/html or body)",
                          a->chunkname + 1);
    }
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "t");
    lua_pushstring(L, a->stamp);
    lua_setfield(L, -2, "stamp");
    lua_getfield(L, LUA_REGISTRYINDEX, TPL_CACHE_KEY);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, a->path);
    return 0;
}

static int render_pc(lua_State *L)
{
    static const char *const email_parts[] = {"subject", "text", "html", NULL};
    static const char *const sms_parts[] = {"body", NULL};
    struct render_args *a = lua_touserdata(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, TPL_CACHE_KEY);
    lua_getfield(L, -1, a->path);
    if (!lua_istable(L, -1)) {
        a->miss = true;
        return 0;
    }
    lua_getfield(L, -1, "stamp");
    const char *stamp = lua_tostring(L, -1);
    if (stamp == NULL || strcmp(stamp, a->stamp) != 0) {
        a->miss = true;
        return 0;
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "t");
    int T = lua_gettop(L);
    if (json_is_object(a->data)) {
        script_push_json(L, a->data);
    } else {
        lua_newtable(L);
    }
    int D = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, TPL_HELPERS_KEY);
    int H = lua_gettop(L);
    const char *const *parts = a->email ? email_parts : sms_parts;
    for (int i = 0; parts[i] != NULL; i++) {
        lua_getfield(L, T, parts[i]);
        if (lua_isfunction(L, -1)) {
            lua_pushvalue(L, D);
            lua_pushvalue(L, H);
            lua_call(L, 2, 1);
        }
        int ty = lua_type(L, -1);
        if (ty == LUA_TNIL) {
            lua_pop(L, 1);
            continue;
        }
        if (ty != LUA_TSTRING && ty != LUA_TNUMBER) {
            return luaL_error(L, "%s: %s must be a string, or a function returning one",
                              a->chunkname + 1, parts[i]);
        }
        size_t len = 0;
        const char *s = lua_tolstring(L, -1, &len);
        if (len > 0) {
            json_t *v = memchr(s, '\0', len) == NULL ? json_stringn(s, len) : NULL;
            if (v == NULL) {
                return luaL_error(L, "%s: %s is not valid UTF-8 text", a->chunkname + 1,
                                  parts[i]);
            }
            json_object_set_new(a->out, parts[i], v);
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Read the whole file (at most TEMPLATES_FILE_MAX bytes); malloc'd. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(TEMPLATES_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t n = fread(buf, 1, TEMPLATES_FILE_MAX + 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad || n > TEMPLATES_FILE_MAX) {
        snprintf(err, errlen, "%s: %s", path,
                 bad ? "read error" : "larger than the template limit (256 KiB)");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Run fn(a) protected, under the budget. On failure the error is
 * described in param/err and the state is dropped when it was killed. */
static int run_pc(struct tpl_tls *t, lua_CFunction fn, struct render_args *a, char *param,
                  size_t paramlen, char *err, size_t errlen)
{
    lua_State *L = t->L;
    t->budget = TEMPLATES_INSTRUCTIONS;
    t->executed = 0;
    t->killed = false;
    lua_sethook(L, tpl_hook, LUA_MASKCOUNT, TPL_HOOK_STEP);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, a);
    int st = lua_pcall(L, 1, 0, 0);
    lua_sethook(L, NULL, 0, 0);
    if (st == LUA_OK) {
        lua_settop(L, 0);
        return AGAPE_OK;
    }
    int rc = AGAPE_EINVAL;
    snprintf(param, paramlen, "template");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "agape_missing");
        const char *k = lua_tostring(L, -1);
        if (k != NULL) {
            snprintf(param, paramlen, "data.%.64s", k);
            snprintf(err, errlen, "missing variable %.64s", k);
        } else {
            snprintf(err, errlen, "%s: the template raised an error", a->chunkname + 1);
        }
    } else if (st == LUA_ERRMEM) {
        snprintf(err, errlen, "%s: the template ran out of memory", a->chunkname + 1);
    } else {
        const char *m = lua_tostring(L, -1);
        snprintf(err, errlen, "%s", m ? m : "the template failed");
    }
    lua_settop(L, 0);
    if (t->killed || st == LUA_ERRMEM) {
        script_sandbox_close(t->L);
        t->L = NULL;
    }
    return rc;
}

int templates_render(const char *dir, const char *channel, const char *name, json_t *data,
                     json_t **out, char *param, size_t paramlen, char *err, size_t errlen)
{
    char path[TPL_PATH_MAX];
    struct stat st;
    struct render_args a;
    char *buf = NULL;
    int rc;

    *out = NULL;
    param[0] = '\0';
    err[0] = '\0';
    memset(&a, 0, sizeof(a));
    bool email = channel != NULL && strcmp(channel, "email") == 0;
    bool sms = channel != NULL && strcmp(channel, "sms") == 0;
    if ((!email && !sms) || !templates_name_ok(name)) {
        snprintf(param, paramlen, "template");
        snprintf(err, errlen, "unknown template '%.64s'", name ? name : "");
        return AGAPE_ENOENT;
    }
    int n = snprintf(path, sizeof(path), "%s/%s/%s.lua", dir ? dir : "templates", channel,
                     name);
    if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(param, paramlen, "template");
        snprintf(err, errlen, "unknown %s template '%s'", channel, name);
        return AGAPE_ENOENT;
    }
    struct tpl_tls *t = tls_get();
    if (t == NULL) {
        snprintf(param, paramlen, "template");
        snprintf(err, errlen, "out of memory for the template engine");
        return AGAPE_ENOMEM;
    }
    a.path = path;
    a.email = email;
    a.data = data;
    snprintf(a.chunkname, sizeof(a.chunkname), "@%s/%s.lua", channel, name);
    snprintf(a.stamp, sizeof(a.stamp), "%llu:%lld:%lld.%09ld", (unsigned long long)st.st_ino,
             (long long)st.st_size, (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    a.out = json_object();
    if (a.out == NULL) {
        snprintf(param, paramlen, "template");
        snprintf(err, errlen, "out of memory");
        return AGAPE_ENOMEM;
    }
    rc = run_pc(t, render_pc, &a, param, paramlen, err, errlen);
    if (rc == AGAPE_OK && a.miss) {
        size_t len = 0;
        buf = read_file(path, &len, err, errlen);
        if (buf == NULL) {
            snprintf(param, paramlen, "template");
            rc = AGAPE_EINVAL;
            goto out;
        }
        a.buf = buf;
        a.len = len;
        rc = run_pc(t, compile_pc, &a, param, paramlen, err, errlen);
        if (rc == AGAPE_OK) {
            a.miss = false;
            rc = run_pc(t, render_pc, &a, param, paramlen, err, errlen);
        }
    }
    if (rc != AGAPE_OK) {
        goto out;
    }
    if (a.miss) {
        rc = AGAPE_EINVAL;
        snprintf(param, paramlen, "template");
        snprintf(err, errlen, "%s changed while it was read; try again", a.chunkname + 1);
        goto out;
    }
    if (email) {
        if (json_object_get(a.out, "subject") == NULL ||
            (json_object_get(a.out, "text") == NULL && json_object_get(a.out, "html") == NULL)) {
            rc = AGAPE_EINVAL;
            snprintf(param, paramlen, "template");
            snprintf(err, errlen, "%s must give a subject and a text or html body",
                     a.chunkname + 1);
            goto out;
        }
    } else if (json_object_get(a.out, "body") == NULL) {
        rc = AGAPE_EINVAL;
        snprintf(param, paramlen, "template");
        snprintf(err, errlen, "%s must give a body", a.chunkname + 1);
        goto out;
    }
    *out = a.out;
    a.out = NULL;
out:
    free(buf);
    json_decref(a.out);
    return rc;
}
