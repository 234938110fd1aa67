/* conf — etc/agape.conf and .env (see conf.h for the contract).
 *
 * The file is a Lua chunk run in the script sandbox (script_sandbox_state)
 * with its own environment table E: whatever the chunk assigns lands in E,
 * reads fall through to env() and then to the read-only libraries. After the
 * run every member of E is converted to JSON (conf->raw); the well-known keys
 * are then checked and copied into the struct from that JSON, so the checks
 * see exactly what later modules will see.
 *
 * Providers keep the order in which the file names them (routing falls back
 * to "every available provider, in configuration order"). A Lua table has no
 * order, so the order comes from the source text: the first place where each
 * name appears as a key (`name =`, `.name =` or `["name"] =`), outside
 * comments and strings. */
#include "conf.h"

#include "log.h"
#include "script.h"

#include <agape/plugin.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONF_MAX_BYTES (1L << 20)
#define CONF_MEMORY ((size_t)16 << 20)
#define CONF_INSTRUCTIONS 10000000
#define DOTENV_LINE_MAX 8192

/* ------------------------------------------------------------------ */
/* Problems                                                            */

void problems_add(struct problems *p, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;
    char **items;
    int n;

    if (p == NULL) {
        return;
    }
    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    items = realloc(p->items, (p->n + 1) * sizeof(*items));
    if (items == NULL) {
        free(msg);
        return;
    }
    p->items = items;
    p->items[p->n++] = msg;
}

void problems_free(struct problems *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i]);
    }
    free(p->items);
    p->items = NULL;
    p->n = 0;
}

/* Counts problems even when the caller passed no list. */
struct report {
    struct problems *probs;
    size_t n;
};

static void report(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(struct report *r, const char *fmt, ...)
{
    va_list ap;
    char msg[1024];

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->n++;
    problems_add(r->probs, "%s", msg);
}

/* ------------------------------------------------------------------ */
/* .env                                                                */

static bool is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static char *skip_blank(char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

/* Only blanks or a # comment may follow a closing quote. */
static bool rest_is_empty(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return *p == '\0' || *p == '#';
}

/* Parse the value at v in place; NULL with *why set when malformed. The
 * reason never quotes the value (it may be a secret). */
static char *parse_value(char *v, const char **why)
{
    char *w, *p;

    if (*v == '"') {
        for (p = v + 1, w = v; *p != '\0' && *p != '"'; p++) {
            if (*p == '\\' && p[1] != '\0') {
                p++;
                switch (*p) {
                case 'n':
                    *w++ = '\n';
                    break;
                case 'r':
                    *w++ = '\r';
                    break;
                case 't':
                    *w++ = '\t';
                    break;
                case '"':
                case '\\':
                case '$':
                    *w++ = *p;
                    break;
                default:
                    *w++ = '\\';
                    *w++ = *p;
                    break;
                }
            } else {
                *w++ = *p;
            }
        }
        if (*p != '"') {
            *why = "unterminated double-quoted value";
            return NULL;
        }
        if (!rest_is_empty(p + 1)) {
            *why = "unexpected text after the closing quote";
            return NULL;
        }
        *w = '\0';
        return v;
    }
    if (*v == '\'') {
        p = strchr(v + 1, '\'');
        if (p == NULL) {
            *why = "unterminated single-quoted value";
            return NULL;
        }
        if (!rest_is_empty(p + 1)) {
            *why = "unexpected text after the closing quote";
            return NULL;
        }
        *p = '\0';
        return v + 1;
    }
    /* unquoted: up to a comment that follows a blank, trailing blanks cut */
    for (p = v; *p != '\0'; p++) {
        if (*p == '#' && (p == v || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    }
    p = v + strlen(v);
    while (p > v && (p[-1] == ' ' || p[-1] == '\t')) {
        *--p = '\0';
    }
    return v;
}

int conf_load_dotenv(const char *path, struct problems *probs)
{
    struct report r = {probs, 0};
    char line[DOTENV_LINE_MAX + 2];
    FILE *f = fopen(path, "r");
    unsigned lineno = 0;
    unsigned set = 0;

    if (f == NULL) {
        if (errno == ENOENT) {
            return AGAPE_OK;
        }
        report(&r, "%s: cannot open: %s", path, strerror(errno));
        return AGAPE_EINVAL;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        char *p, *name, *value;
        const char *why = NULL;

        lineno++;
        if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
            int ch;
            report(&r, "%s:%u: line longer than %d bytes", path, lineno, DOTENV_LINE_MAX);
            while ((ch = fgetc(f)) != EOF && ch != '\n') {
            }
            continue;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
            line[--len] = '\0';
        }
        p = skip_blank(line);
        if (*p == '\0' || *p == '#') {
            continue;
        }
        if (strncmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
            p = skip_blank(p + 6);
        }
        name = p;
        if (!is_name_start(*p)) {
            report(&r, "%s:%u: expected NAME=VALUE with NAME made of A-Z, a-z, 0-9 and _",
                   path, lineno);
            continue;
        }
        while (is_name_char(*p)) {
            p++;
        }
        value = skip_blank(p);
        if (*value != '=') {
            report(&r, "%s:%u: expected NAME=VALUE with NAME made of A-Z, a-z, 0-9 and _",
                   path, lineno);
            continue;
        }
        *p = '\0';
        value = parse_value(skip_blank(value + 1), &why);
        if (value == NULL) {
            report(&r, "%s:%u: %s: %s", path, lineno, name, why);
            continue;
        }
        if (setenv(name, value, 0) != 0) {
            report(&r, "%s:%u: %s: cannot set: %s", path, lineno, name, strerror(errno));
            continue;
        }
        set++;
    }
    if (ferror(f)) {
        report(&r, "%s: read error: %s", path, strerror(errno));
    }
    fclose(f);
    explicit_bzero(line, sizeof(line));
    if (r.n == 0) {
        log_debug("%s: %u variable(s) read (variables already set win)", path, set);
    }
    return r.n == 0 ? AGAPE_OK : AGAPE_EINVAL;
}

/* ------------------------------------------------------------------ */
/* Provider order from the source text                                 */

/* At s[i] == '[': a long bracket opener [==[ ? Sets *level. */
static bool long_open(const char *s, size_t len, size_t i, size_t *level)
{
    size_t j = i + 1;

    while (j < len && s[j] == '=') {
        j++;
    }
    if (j < len && s[j] == '[') {
        *level = j - i - 1;
        return true;
    }
    return false;
}

/* From the opener at i, the index just past the matching closer. */
static size_t long_close(const char *s, size_t len, size_t i, size_t level)
{
    for (i += level + 2; i < len; i++) {
        if (s[i] == ']' && i + level + 1 < len) {
            size_t k = 0;
            while (k < level && s[i + 1 + k] == '=') {
                k++;
            }
            if (k == level && s[i + 1 + level] == ']') {
                return i + level + 2;
            }
        }
    }
    return len;
}

static size_t skip_space(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) {
        i++;
    }
    return i;
}

static bool assign_at(const char *s, size_t len, size_t i)
{
    return i < len && s[i] == '=' && (i + 1 >= len || s[i + 1] != '=');
}

static void key_seen(const char *k, size_t klen, size_t at, const char **names, size_t *pos,
                     size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (pos[i] == SIZE_MAX && strlen(names[i]) == klen && memcmp(names[i], k, klen) == 0) {
            pos[i] = at;
        }
    }
}

/* pos[i] = offset of the first `names[i] =` in the source, or SIZE_MAX. */
static void scan_key_positions(const char *s, size_t len, const char **names, size_t *pos,
                               size_t n)
{
    size_t i = 0, level;

    for (size_t k = 0; k < n; k++) {
        pos[k] = SIZE_MAX;
    }
    while (i < len) {
        char c = s[i];
        if (c == '-' && i + 1 < len && s[i + 1] == '-') {
            i += 2;
            if (i < len && s[i] == '[' && long_open(s, len, i, &level)) {
                i = long_close(s, len, i, level);
            } else {
                while (i < len && s[i] != '\n') {
                    i++;
                }
            }
        } else if (c == '"' || c == '\'') {
            size_t start = ++i;
            bool plain = true;
            while (i < len && s[i] != c && s[i] != '\n') {
                if (s[i] == '\\') {
                    plain = false;
                    i++;
                }
                i++;
            }
            if (i < len && s[i] == c) {
                size_t end = i++;
                size_t j = skip_space(s, len, i);
                if (plain && j < len && s[j] == ']' &&
                    assign_at(s, len, skip_space(s, len, j + 1))) {
                    key_seen(s + start, end - start, start, names, pos, n);
                }
            }
        } else if (c == '[' && long_open(s, len, i, &level)) {
            i = long_close(s, len, i, level);
        } else if (is_name_start(c)) {
            size_t start = i;
            while (i < len && is_name_char(s[i])) {
                i++;
            }
            if (assign_at(s, len, skip_space(s, len, i))) {
                key_seen(s + start, i - start, start, names, pos, n);
            }
        } else if (c >= '0' && c <= '9') {
            while (i < len && (is_name_char(s[i]) || s[i] == '.')) {
                i++;
            }
        } else {
            i++;
        }
    }
}

struct pname {
    const char *name;
    size_t pos;
};

static int cmp_pname(const void *a, const void *b)
{
    const struct pname *x = a, *y = b;

    if (x->pos != y->pos) {
        return x->pos < y->pos ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

/* A copy of the providers object with its members in source order. */
static json_t *order_providers(json_t *providers, const char *src, size_t len)
{
    size_t n = json_object_size(providers);
    struct pname *v = calloc(n ? n : 1, sizeof(*v));
    const char **names = calloc(n ? n : 1, sizeof(*names));
    size_t *pos = calloc(n ? n : 1, sizeof(*pos));
    json_t *out = NULL;
    const char *key;
    json_t *m;
    size_t i = 0;

    if (v == NULL || names == NULL || pos == NULL) {
        goto done;
    }
    json_object_foreach(providers, key, m) {
        names[i++] = key;
    }
    scan_key_positions(src, len, names, pos, n);
    for (i = 0; i < n; i++) {
        v[i].name = names[i];
        v[i].pos = pos[i];
    }
    qsort(v, n, sizeof(*v), cmp_pname);
    out = json_object();
    for (i = 0; out != NULL && i < n; i++) {
        if (json_object_set(out, v[i].name, json_object_get(providers, v[i].name)) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
done:
    free(v);
    free(names);
    free(pos);
    return out;
}

/* ------------------------------------------------------------------ */
/* Evaluating the file                                                 */

struct eval {
    const char *path;
    const char *text;
    size_t len;
    json_t *raw;
    struct report *r;
};

static int conf_env(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *v = getenv(name);

    if (v != NULL && v[0] != '\0') {
        lua_pushstring(L, v);
        return 1;
    }
    lua_settop(L, 2); /* the default, or nil */
    return 1;
}

static void conf_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, conf_hook, LUA_MASKCOUNT, 1); /* a pcall cannot swallow it */
    luaL_where(L, 0); /* the line running now */
    lua_pushfstring(L, "the configuration ran out of its budget of %d instructions",
                    CONF_INSTRUCTIONS);
    lua_concat(L, 2);
    lua_error(L);
}

static int conf_msgh(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING) {
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    return 1;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
    case JSON_ARRAY:
        return "a table";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "nil";
    }
}

static int eval_protected(lua_State *L)
{
    struct eval *ev = lua_touserdata(L, 1);
    char chunkname[1024];
    int E, status;

    lua_settop(L, 0);
    lua_pushcfunction(L, conf_msgh); /* 1 */
    /* B = {env = env} over the read-only libraries; E over B */
    lua_newtable(L);                  /* 2: B */
    lua_pushcfunction(L, conf_env);
    lua_setfield(L, 2, "env");
    lua_createtable(L, 0, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, 2);
    lua_newtable(L);                  /* 3: E */
    E = 3;
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, E);

    snprintf(chunkname, sizeof(chunkname), "@%s", ev->path);
    status = luaL_loadbufferx(L, ev->text, ev->len, chunkname, "t");
    if (status == LUA_OK) {
        lua_pushvalue(L, E);
        lua_setupvalue(L, -2, 1); /* its _ENV */
        lua_sethook(L, conf_hook, LUA_MASKCOUNT, CONF_INSTRUCTIONS);
        status = lua_pcall(L, 0, 0, 1);
        lua_sethook(L, NULL, 0, 0);
    }
    if (status == LUA_ERRMEM) {
        report(ev->r, "%s: the configuration needs more than %zu bytes of memory", ev->path,
               CONF_MEMORY);
        return 0;
    }
    if (status != LUA_OK) {
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                         : "configuration error";
        if (strncmp(msg, ev->path, strlen(ev->path)) == 0) {
            report(ev->r, "%s", msg); /* already "file:line: …" */
        } else {
            report(ev->r, "%s: %s", ev->path, msg);
        }
        return 0;
    }

    /* every global it set, as JSON (lua_next and script_to_json never raise) */
    lua_pushnil(L);
    while (lua_next(L, E) != 0) {
        char err[256];
        json_t *j;
        if (lua_type(L, -2) != LUA_TSTRING) {
            report(ev->r, "%s: a global with a %s key", ev->path, luaL_typename(L, -2));
            lua_pop(L, 1);
            continue;
        }
        j = script_to_json(L, -1, lua_tostring(L, -2), err, sizeof(err));
        if (j == NULL) {
            report(ev->r, "%s: %s", ev->path, err);
        } else if (json_object_set_new(ev->raw, lua_tostring(L, -2), j) != 0) {
            report(ev->r, "%s: %s: cannot keep this key", ev->path, lua_tostring(L, -2));
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The well-known keys                                                 */

enum lim_type { LIM_SIZE, LIM_U64, LIM_INT, LIM_I64 };

struct limit_def {
    const char *key;
    enum lim_type type;
    size_t off;
    long long min, max;
};

static const struct limit_def limits[] = {
    {"max_body_bytes", LIM_SIZE, offsetof(struct conf, body_max), 1024, 1LL << 30},
    {"lua_instructions", LIM_U64, offsetof(struct conf, lua_instructions), 1000, 1LL << 40},
    {"lua_memory", LIM_SIZE, offsetof(struct conf, lua_memory), 1LL << 20, 1LL << 34},
    {"http_threads", LIM_INT, offsetof(struct conf, http_threads), 1, 256},
    {"payment_deadline_ms", LIM_I64, offsetof(struct conf, payment_deadline_ms), 1, 3600000},
    {"connect_timeout_ms", LIM_I64, offsetof(struct conf, connect_timeout_ms), 1, 600000},
    {"attempt_timeout_ms", LIM_I64, offsetof(struct conf, attempt_timeout_ms), 1, 3600000},
    {"max_retries", LIM_INT, offsetof(struct conf, max_retries), 0, 20},
    {"backoff_base_ms", LIM_I64, offsetof(struct conf, backoff_base_ms), 0, 600000},
    {"backoff_max_ms", LIM_I64, offsetof(struct conf, backoff_max_ms), 0, 3600000},
};

static const char *const string_keys[] = {"listen", "public_url", "data_dir", "plugin_dir",
                                          "scripts", NULL};

static bool known_key(const char *k)
{
    for (size_t i = 0; string_keys[i] != NULL; i++) {
        if (strcmp(string_keys[i], k) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        if (strcmp(limits[i].key, k) == 0) {
            return true;
        }
    }
    return strcmp(k, "providers") == 0;
}

static void apply_limit(struct conf *c, const struct limit_def *d, json_t *v, struct report *r)
{
    long long x;
    char *field = (char *)c + d->off;

    if (json_is_integer(v)) {
        x = (long long)json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) >= -9e18 && json_real_value(v) <= 9e18 &&
               json_real_value(v) == (double)(long long)json_real_value(v)) {
        x = (long long)json_real_value(v); /* 1e6 is a float in Lua */
    } else {
        report(r, "%s: %s: expected an integer between %lld and %lld, got %s%s", c->path,
               d->key, d->min, d->max, json_kind(v),
               json_is_string(v) ? " (convert env() values with tonumber())" : "");
        return;
    }
    if (x < d->min || x > d->max) {
        report(r, "%s: %s: expected an integer between %lld and %lld, got %lld", c->path,
               d->key, d->min, d->max, x);
        return;
    }
    switch (d->type) {
    case LIM_SIZE:
        *(size_t *)(void *)field = (size_t)x;
        break;
    case LIM_U64:
        *(uint64_t *)(void *)field = (uint64_t)x;
        break;
    case LIM_INT:
        *(int *)(void *)field = (int)x;
        break;
    case LIM_I64:
        *(int64_t *)(void *)field = (int64_t)x;
        break;
    }
}

/* "host:port", "[v6]:port"; false when malformed. */
static bool parse_listen(const char *s, char **host, int *port)
{
    const char *colon = strrchr(s, ':');
    const char *h = s;
    size_t hl;
    char *end;
    long p;

    if (colon == NULL || colon == s || colon[1] == '\0') {
        return false;
    }
    hl = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hl < 3 || s[hl - 1] != ']') {
            return false;
        }
        h = s + 1;
        hl -= 2;
    } else if (memchr(s, ':', hl) != NULL) {
        return false; /* an IPv6 address needs brackets */
    }
    for (const char *q = colon + 1; *q; q++) {
        if (*q < '0' || *q > '9') {
            return false;
        }
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || p < 1 || p > 65535) {
        return false;
    }
    *host = strndup(h, hl);
    *port = (int)p;
    return *host != NULL;
}

static void set_string(struct conf *c, char **field, const char *key, struct report *r)
{
    json_t *v = json_object_get(c->raw, key);
    char *copy;

    if (v == NULL) {
        return;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        report(r, "%s: %s: expected a non-empty string, got %s", c->path, key,
               json_is_string(v) ? "an empty one" : json_kind(v));
        return;
    }
    copy = strdup(json_string_value(v));
    if (copy == NULL) {
        report(r, "%s: %s: out of memory", c->path, key);
        return;
    }
    free(*field);
    *field = copy;
}

static bool provider_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 64) {
        return false;
    }
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) {
            return false;
        }
    }
    return true;
}

/* Option names whose values are credentials: registered for log redaction. */
static bool secret_like(const char *key)
{
    static const char *const words[] = {"secret", "key", "token", "password", "dsn",
                                        "license", NULL};
    for (size_t i = 0; words[i] != NULL; i++) {
        if (strstr(key, words[i]) != NULL) {
            return true;
        }
    }
    return false;
}

static void apply_providers(struct conf *c, const char *src, size_t len, struct report *r)
{
    json_t *v = json_object_get(c->raw, "providers");
    json_t *ordered;
    const char *name;
    json_t *p;

    if (v == NULL) {
        return;
    }
    if (!json_is_object(v)) {
        report(r, "%s: providers: expected a table of provider tables keyed by name, got %s",
               c->path, json_is_array(v) ? "a list" : json_kind(v));
        return;
    }
    json_object_foreach(v, name, p) {
        const char *opt;
        json_t *ov;
        if (!provider_name_ok(name)) {
            report(r, "%s: providers: invalid provider name '%.64s' (use a-z, 0-9 and _)",
                   c->path, name);
        }
        if (!json_is_object(p)) {
            report(r, "%s: providers.%.64s: expected a table, got %s", c->path, name,
                   json_is_array(p) ? "a list" : json_kind(p));
            continue;
        }
        json_object_foreach(p, opt, ov) {
            if (json_is_string(ov) && secret_like(opt)) {
                log_secret_add(json_string_value(ov));
            }
        }
        ov = json_object_get(p, "plugin");
        if (ov != NULL && (!json_is_string(ov) || !provider_name_ok(json_string_value(ov)))) {
            report(r, "%s: providers.%.64s.plugin: expected a plugin name (a-z, 0-9, _)",
                   c->path, name);
        }
    }
    ordered = order_providers(v, src, len);
    if (ordered == NULL) {
        report(r, "%s: providers: out of memory", c->path);
        return;
    }
    json_decref(c->providers);
    c->providers = ordered;
    json_object_set(c->raw, "providers", ordered);
}

static void apply_known(struct conf *c, const char *src, size_t len, struct report *r)
{
    json_t *v;
    const char *key;

    v = json_object_get(c->raw, "listen");
    if (v != NULL) {
        char *host = NULL;
        int port = 0;
        if (!json_is_string(v)) {
            report(r, "%s: listen: expected \"host:port\", got %s", c->path, json_kind(v));
        } else if (!parse_listen(json_string_value(v), &host, &port)) {
            report(r, "%s: listen: expected \"host:port\" with a port from 1 to 65535, got "
                      "\"%.100s\"", c->path, json_string_value(v));
        } else {
            free(c->listen_host);
            c->listen_host = host;
            c->listen_port = port;
        }
    }
    set_string(c, &c->public_url, "public_url", r);
    if (strncmp(c->public_url, "http://", 7) != 0 && strncmp(c->public_url, "https://", 8) != 0) {
        report(r, "%s: public_url: expected an http:// or https:// URL", c->path);
    }
    set_string(c, &c->data_dir, "data_dir", r);
    set_string(c, &c->plugin_dir, "plugin_dir", r);
    set_string(c, &c->scripts_dir, "scripts", r);
    apply_providers(c, src, len, r);
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        v = json_object_get(c->raw, limits[i].key);
        if (v != NULL) {
            apply_limit(c, &limits[i], v, r);
        }
    }
    if (c->backoff_max_ms < c->backoff_base_ms) {
        report(r, "%s: backoff_max_ms (%lld) is smaller than backoff_base_ms (%lld)", c->path,
               (long long)c->backoff_max_ms, (long long)c->backoff_base_ms);
    }
    json_object_foreach(c->raw, key, v) {
        if (!known_key(key)) {
            log_debug("%s: key '%s' is not one the core reads (kept for other modules)",
                      c->path, key);
        }
    }
}

/* ------------------------------------------------------------------ */
/* conf_load                                                           */

static struct conf *conf_defaults(const char *path)
{
    struct conf *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->path = strdup(path);
    c->listen_host = strdup("127.0.0.1");
    c->listen_port = 8080;
    c->public_url = strdup("http://127.0.0.1:8080");
    c->data_dir = strdup("var/agape");
    c->plugin_dir = strdup("build/plugins");
    c->scripts_dir = strdup("scripts");
    c->providers = json_object();
    c->raw = json_object();
    c->body_max = 1048576;
    c->lua_instructions = 10000000;
    c->lua_memory = 67108864;
    c->http_threads = 2;
    c->payment_deadline_ms = 30000;
    c->connect_timeout_ms = 2000;
    c->attempt_timeout_ms = 10000;
    c->max_retries = 2;
    c->backoff_base_ms = 100;
    c->backoff_max_ms = 2000;
    if (c->path == NULL || c->listen_host == NULL || c->public_url == NULL ||
        c->data_dir == NULL || c->plugin_dir == NULL || c->scripts_dir == NULL ||
        c->providers == NULL || c->raw == NULL) {
        conf_free(c);
        return NULL;
    }
    return c;
}

static char *read_text(const char *path, size_t *len, struct report *r)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (f == NULL) {
        report(r, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(CONF_MAX_BYTES + 1);
    if (buf == NULL) {
        fclose(f);
        report(r, "%s: out of memory", path);
        return NULL;
    }
    n = fread(buf, 1, CONF_MAX_BYTES + 1, f);
    if (ferror(f) || n > CONF_MAX_BYTES) {
        report(r, ferror(f) ? "%s: cannot read the file" : "%s: larger than 1 MiB", path);
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

int conf_load(const char *path, struct conf **out, struct problems *probs)
{
    struct report r = {probs, 0};
    struct conf *c = NULL;
    struct eval ev;
    lua_State *L = NULL;
    char *text = NULL;
    size_t len = 0;

    *out = NULL;
    if (conf_load_dotenv(".env", probs) != AGAPE_OK) {
        r.n++;
    }
    c = conf_defaults(path);
    if (c == NULL) {
        report(&r, "%s: out of memory", path);
        goto out;
    }
    text = read_text(path, &len, &r);
    if (text == NULL) {
        goto out;
    }
    L = script_sandbox_state(CONF_MEMORY);
    if (L == NULL) {
        report(&r, "%s: cannot create the Lua sandbox", path);
        goto out;
    }
    ev.path = path;
    ev.text = text;
    ev.len = len;
    ev.raw = c->raw;
    ev.r = &r;
    lua_pushcfunction(L, eval_protected);
    lua_pushlightuserdata(L, &ev);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        report(&r, "%s: the configuration needs more than %zu bytes of memory", path,
               CONF_MEMORY);
        goto out;
    }
    apply_known(c, text, len, &r);

out:
    script_sandbox_close(L);
    free(text);
    if (r.n > 0) {
        conf_free(c);
        return AGAPE_EINVAL;
    }
    *out = c;
    return AGAPE_OK;
}

void conf_free(struct conf *c)
{
    if (c == NULL) {
        return;
    }
    free(c->path);
    free(c->listen_host);
    free(c->public_url);
    free(c->data_dir);
    free(c->plugin_dir);
    free(c->scripts_dir);
    json_decref(c->providers);
    json_decref(c->raw);
    free(c);
}
