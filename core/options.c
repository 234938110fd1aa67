/* options — a provider's table read against its plugin's option schema.
 *
 * Before this module every plugin carried its own copies of the same readers
 * (an optional string that may be null or "", an integer that arrives as a
 * string from env(), "1"/"true" booleans, a base URL that must be http(s) and
 * loses its trailing slash, a list given as a Lua array or a comma-separated
 * string), each with slightly different edges. Here they are written once,
 * and a plugin keeps only the rules that are really its own (a key prefix, an
 * id pattern, a DSN).
 *
 * One reader per type turns a JSON value into the normalized value or says
 * "wrong"; the same reader checks a declaration's default (text, as env()
 * would give it), so that a default can never be something a user could not
 * have typed. Messages never quote a value: it may be a secret pasted into the
 * wrong option. */
#include "options.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OPTIONS_MSG_MAX 2048 /* one problem line; the known-option list is cut to fit */
#define OPTIONS_KEY_SHOWN 64 /* bytes of an unknown key quoted in a message */

/* The keys the core reads from every provider table itself: the plugin
 * file, and the dispatcher's per-provider policy (dispatch.c, breaker.c). */
static const char *const core_keys[] = {"plugin", "breaker", "max_inflight", NULL};

bool options_core_key(const char *key)
{
    for (size_t i = 0; key != NULL && core_keys[i] != NULL; i++) {
        if (strcmp(core_keys[i], key) == 0) {
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- */
/* Readers, one per type                                            */

/* The value is "not set": absent, null, or "" (an unset variable through
 * env() gives nil or ""). */
static bool not_set(const json_t *v)
{
    return v == NULL || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
}

/* A JSON string a C reader can use whole: no NUL byte inside. */
static const char *text_of(const json_t *v)
{
    if (!json_is_string(v)) {
        return NULL;
    }
    const char *s = json_string_value(v);
    return strlen(s) == json_string_length(v) ? s : NULL;
}

static bool int_in_range(const struct agape_option *o, long long x)
{
    return (o->min == 0 && o->max == 0) || (x >= o->min && x <= o->max);
}

static int read_int(const struct agape_option *o, const json_t *v, json_t **out)
{
    long long x;
    if (json_is_integer(v)) {
        x = (long long)json_integer_value(v);
    } else if (json_is_real(v)) {
        /* Lua arithmetic can make a float of a whole number (5 * 60.0). */
        double d = json_real_value(v);
        if (!(d >= -9e18 && d <= 9e18) || d != (double)(long long)d) {
            return AGAPE_EINVAL;
        }
        x = (long long)d;
    } else {
        /* Decimal text, as env() gives it: an optional '-', then digits only. */
        const char *s = text_of(v);
        if (s == NULL) {
            return AGAPE_EINVAL;
        }
        const char *digits = s[0] == '-' ? s + 1 : s;
        if (*digits < '0' || *digits > '9') {
            return AGAPE_EINVAL;
        }
        char *end = NULL;
        errno = 0;
        x = strtoll(s, &end, 10);
        if (errno != 0 || end == NULL || *end != '\0') {
            return AGAPE_EINVAL;
        }
    }
    if (!int_in_range(o, x)) {
        return AGAPE_EINVAL;
    }
    *out = json_integer((json_int_t)x);
    return *out ? AGAPE_OK : AGAPE_ENOMEM;
}

static int read_bool(const json_t *v, json_t **out)
{
    static const char *const yes[] = {"1", "true", "yes", NULL};
    static const char *const no[] = {"0", "false", "no", NULL};
    int b = -1;

    if (json_is_boolean(v)) {
        b = json_is_true(v);
    } else if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        b = json_integer_value(v) == 1;
    } else if (text_of(v) != NULL) {
        const char *s = json_string_value(v);
        for (size_t i = 0; b < 0 && yes[i] != NULL; i++) {
            if (strcasecmp(s, yes[i]) == 0) {
                b = 1;
            } else if (strcasecmp(s, no[i]) == 0) {
                b = 0;
            }
        }
    }
    if (b < 0) {
        return AGAPE_EINVAL;
    }
    *out = json_boolean(b);
    return AGAPE_OK;
}

static bool is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return n > 0;
}

/* [userinfo@]host[:port], host a name or a bracketed IPv6 address, port 1 to
 * 65535. The authority is s[0..n). */
static bool authority_ok(const char *s, size_t n)
{
    const char *at = NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '@') {
            at = s + i;
        }
    }
    if (at != NULL) {
        n -= (size_t)(at + 1 - s);
        s = at + 1;
    }
    const char *port = NULL;
    size_t host_len;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL || close == s + 1) {
            return false;
        }
        host_len = (size_t)(close + 1 - s);
        if (host_len < n && s[host_len] != ':') {
            return false;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        host_len = colon ? (size_t)(colon - s) : n;
    }
    if (host_len == 0) {
        return false;
    }
    if (host_len < n) {
        port = s + host_len + 1;
        size_t plen = n - host_len - 1;
        if (plen > 5 || !is_digits(port, plen) || strtol(port, NULL, 10) < 1 ||
            strtol(port, NULL, 10) > 65535) {
            return false;
        }
    }
    return true;
}

/* The URL rules of plugin.h: scheme, host, printable ASCII, no fragment, a
 * query only for URL_EXACT, at most OPTIONS_URL_MAX bytes. */
static bool url_ok(const char *s, enum agape_opt_type type)
{
    size_t n = strlen(s);
    size_t scheme = 0;

    if (type == AGAPE_OPT_SMTP_URL) {
        scheme = strncmp(s, "smtp://", 7) == 0 ? 7 : strncmp(s, "smtps://", 8) == 0 ? 8 : 0;
    } else {
        scheme = strncmp(s, "http://", 7) == 0 ? 7 : strncmp(s, "https://", 8) == 0 ? 8 : 0;
    }
    if (scheme == 0 || n > OPTIONS_URL_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '#' || (c == '?' && type != AGAPE_OPT_URL_EXACT)) {
            return false;
        }
    }
    return authority_ok(s + scheme, strcspn(s + scheme, "/?#"));
}

static int read_url(const struct agape_option *o, const json_t *v, json_t **out)
{
    const char *s = text_of(v);
    if (s == NULL || !url_ok(s, o->type)) {
        return AGAPE_EINVAL;
    }
    size_t n = strlen(s);
    if (o->type != AGAPE_OPT_URL_EXACT) {
        /* "https://api.x.com/" and "https://api.x.com" are the same base; the
         * host is not empty, so this stops at it. */
        while (n > 0 && s[n - 1] == '/') {
            n--;
        }
    }
    *out = json_stringn(s, n);
    return *out ? AGAPE_OK : AGAPE_ENOMEM;
}

/* Append s[0..n) trimmed of blanks, unless that leaves nothing. */
static int list_add(json_t *arr, const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        n--;
    }
    if (n == 0) {
        return AGAPE_OK;
    }
    json_t *item = json_stringn(s, n);
    if (item == NULL || json_array_append_new(arr, item) != 0) {
        return AGAPE_ENOMEM;
    }
    return AGAPE_OK;
}

/* *bad_item is the 1-based index (as in Lua) of an item that is not a string. */
static int read_list(const struct agape_option *o, const json_t *v, json_t **out,
                     size_t *bad_item)
{
    int rc = AGAPE_OK;
    json_t *arr = json_array();
    if (arr == NULL) {
        return AGAPE_ENOMEM;
    }
    const char *s = text_of(v);
    if (s != NULL) {
        while (rc == AGAPE_OK && *s != '\0') {
            size_t n = strcspn(s, ",");
            rc = list_add(arr, s, n);
            s += n + (s[n] == ',');
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; rc == AGAPE_OK && i < json_array_size(v); i++) {
            const char *item = text_of(json_array_get(v, i));
            if (item == NULL) {
                *bad_item = i + 1;
                rc = AGAPE_EINVAL;
            } else {
                rc = list_add(arr, item, strlen(item));
            }
        }
    } else if (!json_is_object(v) || json_object_size(v) != 0) {
        rc = AGAPE_EINVAL; /* an empty Lua table may arrive as {}: the empty list */
    }
    size_t cap = o->max > 0 && o->max < OPTIONS_LIST_MAX ? (size_t)o->max : OPTIONS_LIST_MAX;
    if (rc == AGAPE_OK && json_array_size(arr) > cap) {
        rc = AGAPE_EINVAL;
    }
    if (rc != AGAPE_OK) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return AGAPE_OK;
}

/* A value that is set → its normalized form (a new reference in *out).
 * AGAPE_EINVAL when it is not valid for the type, AGAPE_ENOMEM. */
static int read_value(const struct agape_option *o, const json_t *v, json_t **out,
                      size_t *bad_item)
{
    *out = NULL;
    *bad_item = 0;
    switch (o->type) {
    case AGAPE_OPT_STRING:
        if (text_of(v) == NULL) {
            return AGAPE_EINVAL;
        }
        *out = json_deep_copy(v);
        return *out ? AGAPE_OK : AGAPE_ENOMEM;
    case AGAPE_OPT_INT:
        return read_int(o, v, out);
    case AGAPE_OPT_BOOL:
        return read_bool(v, out);
    case AGAPE_OPT_URL:
    case AGAPE_OPT_URL_EXACT:
    case AGAPE_OPT_SMTP_URL:
        return read_url(o, v, out);
    case AGAPE_OPT_LIST:
        return read_list(o, v, out, bad_item);
    }
    return AGAPE_EINVAL;
}

/* The default, read as if env() had given it. *out stays NULL for none. */
static int read_default(const struct agape_option *o, json_t **out)
{
    size_t bad_item;
    *out = NULL;
    if (o->dflt == NULL || o->dflt[0] == '\0') {
        return AGAPE_OK;
    }
    json_t *text = json_string_nocheck(o->dflt); /* the plugin's own constant */
    if (text == NULL) {
        return AGAPE_ENOMEM;
    }
    int rc = read_value(o, text, out, &bad_item);
    json_decref(text);
    return rc;
}

/* "expected …" for the option's type, with its environment variable. */
static void expectation(const struct agape_option *o, char *out, size_t outlen)
{
    char what[160];
    switch (o->type) {
    case AGAPE_OPT_INT:
        if (o->min == 0 && o->max == 0) {
            snprintf(what, sizeof(what), "expected an integer");
        } else if (o->max == INT64_MAX) {
            snprintf(what, sizeof(what), "expected an integer of at least %lld",
                     (long long)o->min);
        } else if (o->min == INT64_MIN) {
            snprintf(what, sizeof(what), "expected an integer of at most %lld",
                     (long long)o->max);
        } else {
            snprintf(what, sizeof(what), "expected an integer from %lld to %lld",
                     (long long)o->min, (long long)o->max);
        }
        break;
    case AGAPE_OPT_BOOL:
        snprintf(what, sizeof(what), "expected true or false (or 1/0, yes/no)");
        break;
    case AGAPE_OPT_URL:
        snprintf(what, sizeof(what), "expected an http:// or https:// URL with a host, without "
                                     "spaces, query or fragment");
        break;
    case AGAPE_OPT_URL_EXACT:
        snprintf(what, sizeof(what), "expected an http:// or https:// URL with a host, without "
                                     "spaces or fragment");
        break;
    case AGAPE_OPT_SMTP_URL:
        snprintf(what, sizeof(what), "expected an smtp:// or smtps:// URL with a host, without "
                                     "spaces");
        break;
    case AGAPE_OPT_LIST:
        if (o->max > 0 && o->max < OPTIONS_LIST_MAX) {
            snprintf(what, sizeof(what), "expected a list of at most %lld strings or one "
                                         "comma-separated string",
                     (long long)o->max);
        } else {
            snprintf(what, sizeof(what), "expected a list of strings or one comma-separated "
                                         "string");
        }
        break;
    case AGAPE_OPT_STRING:
    default:
        snprintf(what, sizeof(what), "expected a string");
        break;
    }
    if (o->env != NULL) {
        snprintf(out, outlen, "%s (%s)", what, o->env);
    } else {
        snprintf(out, outlen, "%s", what);
    }
}

/* ---------------------------------------------------------------- */
/* Declarations                                                     */

bool options_decl_ok(const struct agape_option *o, char *err, size_t errlen)
{
    if (options_core_key(o->name)) {
        snprintf(err, errlen, "option %s: the name is the core's own (plugin, breaker, "
                              "max_inflight)",
                 o->name);
        return false;
    }
    if ((unsigned)o->type > (unsigned)AGAPE_OPT_SMTP_URL) {
        snprintf(err, errlen, "option %s: unknown type %u", o->name, (unsigned)o->type);
        return false;
    }
    bool range_ok = o->type == AGAPE_OPT_INT    ? o->min <= o->max
                    : o->type == AGAPE_OPT_LIST ? o->min == 0 && o->max >= 0
                                                : o->min == 0 && o->max == 0;
    if (!range_ok) {
        snprintf(err, errlen, "option %s: min %lld and max %lld make no range for its type",
                 o->name, (long long)o->min, (long long)o->max);
        return false;
    }
    if (o->dflt != NULL && (o->flags & AGAPE_OPT_REQUIRED)) {
        snprintf(err, errlen, "option %s: a required option has no default", o->name);
        return false;
    }
    json_t *v = NULL;
    int rc = read_default(o, &v);
    json_decref(v);
    if (rc != AGAPE_OK) {
        char what[256];
        expectation(o, what, sizeof(what));
        snprintf(err, errlen, "option %s: default \"%.64s\" is not valid: %s", o->name, o->dflt,
                 what);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- */
/* Normalizing a table                                              */

static void add_problem(struct options_report *rep, const char *provider, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_problem(struct options_report *rep, const char *provider, const char *fmt, ...)
{
    char msg[OPTIONS_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (rep->probs != NULL) {
        problems_add(rep->probs, "provider %s: %s", provider, msg);
    }
}

/* A key as the user typed it, safe to print: at most OPTIONS_KEY_SHOWN
 * bytes, anything but printable ASCII (and the quote) as '?'. */
static void show_key(const char *k, char *out, size_t outlen)
{
    size_t n = 0;
    for (; k[n] != '\0' && n < OPTIONS_KEY_SHOWN && n + 4 < outlen; n++) {
        unsigned char c = (unsigned char)k[n];
        out[n] = (c < 0x20 || c >= 0x7f || c == '\'') ? '?' : (char)c;
    }
    out[n] = '\0';
    if (k[n] != '\0' && n + 4 <= outlen) {
        memcpy(out + n, "...", 4);
    }
}

/* Edit distance, case-insensitive, for "did you mean". Both at most 64 bytes. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[OPTIONS_KEY_SHOWN + 1], prev[OPTIONS_KEY_SHOWN + 1];
    if (la > OPTIONS_KEY_SHOWN || lb > OPTIONS_KEY_SHOWN) {
        return (size_t)-1;
    }
    for (size_t j = 0; j <= lb; j++) {
        prev[j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (strncasecmp(a + i - 1, b + j - 1, 1) != 0);
            size_t del = prev[j] + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, row, (lb + 1) * sizeof(row[0]));
    }
    return prev[lb];
}

static void report_unknown(struct options_report *rep, const char *provider,
                           const struct agape_option *opts, const char *key)
{
    char shown[OPTIONS_KEY_SHOWN + 8];
    char known[OPTIONS_MSG_MAX / 2] = "";
    size_t len = 0;
    const char *near = NULL;
    size_t best = 3;

    show_key(key, shown, sizeof(shown));
    for (size_t i = 0; opts != NULL && opts[i].name != NULL; i++) {
        size_t d = distance(key, opts[i].name);
        /* A typo is a letter or two; for short names, one. */
        if (d < best && d <= (strlen(opts[i].name) <= 4 ? 1 : 2)) {
            best = d;
            near = opts[i].name;
        }
        int w = snprintf(known + len, sizeof(known) - len, "%s%s", len ? ", " : "",
                         opts[i].name);
        if (w < 0 || (size_t)w >= sizeof(known) - len) {
            snprintf(known + (len < sizeof(known) - 8 ? len : sizeof(known) - 8), 8, ", ...");
            break;
        }
        len += (size_t)w;
    }
    rep->unknown++;
    if (len == 0) {
        add_problem(rep, provider, "unknown option '%s' (the plugin has no options)", shown);
    } else if (near != NULL) {
        add_problem(rep, provider, "unknown option '%s' (did you mean '%s'? known: %s)", shown,
                    near, known);
    } else {
        add_problem(rep, provider, "unknown option '%s' (known: %s)", shown, known);
    }
}

static bool declared(const struct agape_option *opts, const char *key)
{
    for (size_t i = 0; opts != NULL && opts[i].name != NULL; i++) {
        if (strcmp(opts[i].name, key) == 0) {
            return true;
        }
    }
    return false;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Unknown keys, in name order so that the report reads the same every run
 * (a Lua table has no order). */
static int check_unknown(struct options_report *rep, const char *provider,
                         const struct agape_option *opts, const json_t *tab)
{
    size_t n = 0;
    const char *key;
    json_t *val;
    const char **keys = calloc(json_object_size(tab) + 1, sizeof(*keys));
    if (keys == NULL) {
        return AGAPE_ENOMEM;
    }
    json_object_foreach((json_t *)tab, key, val)
    {
        if (!declared(opts, key) && !options_core_key(key)) {
            keys[n++] = key;
        }
    }
    qsort(keys, n, sizeof(*keys), cmp_key);
    for (size_t i = 0; i < n; i++) {
        report_unknown(rep, provider, opts, keys[i]);
    }
    free(keys);
    return AGAPE_OK;
}

int options_normalize(const char *provider, const struct agape_option *opts, const json_t *tab,
                      json_t **out, struct options_report *rep)
{
    char why_missing[AGAPE_ERR_SIZE] = "";
    int rc = AGAPE_ENOMEM;
    json_t *conf = json_is_object(tab) ? json_deep_copy(tab) : json_object();

    *out = NULL;
    rep->why[0] = '\0';
    provider = provider != NULL ? provider : "?";
    if (conf == NULL) {
        goto out;
    }
    for (size_t i = 0; opts != NULL && opts[i].name != NULL; i++) {
        const struct agape_option *o = &opts[i];
        const json_t *v = json_object_get(conf, o->name);
        json_t *nv = NULL;
        size_t bad_item = 0;
        int r = not_set(v) ? read_default(o, &nv) : read_value(o, v, &nv, &bad_item);
        if (r == AGAPE_ENOMEM) {
            goto out;
        }
        if (r != AGAPE_OK) {
            char what[256], msg[AGAPE_ERR_SIZE];
            expectation(o, what, sizeof(what));
            if (bad_item > 0) {
                snprintf(msg, sizeof(msg), "%.64s[%zu]: expected a string (the option is a "
                                           "list of strings or one comma-separated string)",
                         o->name, bad_item);
            } else {
                snprintf(msg, sizeof(msg), "%.64s: %.140s%s", o->name, what,
                         not_set(v) ? " (its default is not valid: a plugin bug)" : "");
            }
            add_problem(rep, provider, "%s", msg);
            if (rep->type_errors++ == 0) {
                snprintf(rep->why, sizeof(rep->why), "%s", msg);
            }
            json_object_del(conf, o->name);
            continue;
        }
        if (nv == NULL) {
            json_object_del(conf, o->name);
            if (o->flags & AGAPE_OPT_REQUIRED) {
                char msg[AGAPE_ERR_SIZE];
                if (o->env != NULL) {
                    snprintf(msg, sizeof(msg), "missing %s (set %s)", o->name, o->env);
                } else {
                    snprintf(msg, sizeof(msg), "missing %s", o->name);
                }
                add_problem(rep, provider, "%s", msg);
                if (rep->missing++ == 0) {
                    snprintf(why_missing, sizeof(why_missing), "%s", msg);
                }
            }
            continue;
        }
        if (json_object_set_new(conf, o->name, nv) != 0) {
            goto out;
        }
    }
    if (json_is_object(tab) && check_unknown(rep, provider, opts, tab) != AGAPE_OK) {
        goto out;
    }
    if (rep->why[0] == '\0') {
        snprintf(rep->why, sizeof(rep->why), "%s", why_missing);
    }
    *out = conf;
    conf = NULL;
    rc = rep->type_errors > 0 || rep->missing > 0 ? AGAPE_EINVAL : AGAPE_OK;
out:
    json_decref(conf);
    return rc;
}

json_t *options_for_init(const char *provider, const struct agape_option *opts,
                         const json_t *tab, char *err, size_t errlen)
{
    struct options_report rep;
    json_t *conf = NULL;

    memset(&rep, 0, sizeof(rep));
    if (options_normalize(provider, opts, tab, &conf, &rep) == AGAPE_ENOMEM) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (rep.type_errors > 0) {
        snprintf(err, errlen, "provider %s: %s", provider ? provider : "?", rep.why);
        json_decref(conf);
        return NULL;
    }
    return conf;
}
