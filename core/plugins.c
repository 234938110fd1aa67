/* plugins — the loader and the provider registry.
 *
 * The loader trusts nothing in a file until every check has passed, and each
 * refusal says which file and what to do, because the person reading it is
 * usually deploying at the time. The registry is built once on the main
 * thread and is read-only afterwards (only a provider's cache changes, under
 * its own lock), so workers read it without locking. */
#include "plugins.h"

#include "buf.h"
#include "host.h"
#include "log.h"
#include "options.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PLUGIN_NAME_MAX 64
#define PLUGIN_OPTIONS_MAX 128 /* an options array without its {NULL} end is caught here */
#define PLUGIN_DIR_DEFAULT "build/plugins"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool name_ok(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > PLUGIN_NAME_MAX) {
        return false;
    }
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) {
            return false;
        }
    }
    return true;
}

/* The file name without directory and without a trailing ".so". */
static void file_stem(const char *path, char *out, size_t outlen)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".so") == 0) {
        n -= 3;
    }
    if (n >= outlen) {
        n = outlen - 1;
    }
    memcpy(out, base, n);
    out[n] = '\0';
}

struct kind_info {
    uint32_t bit;
    const char *name;
};

static const struct kind_info kinds_table[] = {
    {AGAPE_KIND_AUTH, "auth"},           {AGAPE_KIND_PAYMENT, "payment"},
    {AGAPE_KIND_MESSAGING, "messaging"}, {AGAPE_KIND_ANALYTICS, "analytics"},
    {AGAPE_KIND_MONITORING, "monitoring"}, {AGAPE_KIND_WEBHOOK, "webhook"},
};

#define KINDS_ALL                                                                        \
    (AGAPE_KIND_AUTH | AGAPE_KIND_PAYMENT | AGAPE_KIND_MESSAGING | AGAPE_KIND_ANALYTICS | \
     AGAPE_KIND_MONITORING | AGAPE_KIND_WEBHOOK)

/* The operations table of a kind and the size this core needs of it. Every
 * table starts with `uint32_t size`, so it is read through that first member. */
static const uint32_t *kind_table(const struct agape_plugin *d, uint32_t bit, size_t *need)
{
    switch (bit) {
    case AGAPE_KIND_AUTH:
        *need = sizeof(struct agape_auth_ops);
        return d->auth ? &d->auth->size : NULL;
    case AGAPE_KIND_PAYMENT:
        *need = sizeof(struct agape_payment_ops);
        return d->payment ? &d->payment->size : NULL;
    case AGAPE_KIND_MESSAGING:
        *need = sizeof(struct agape_messaging_ops);
        return d->messaging ? &d->messaging->size : NULL;
    case AGAPE_KIND_ANALYTICS:
        *need = sizeof(struct agape_analytics_ops);
        return d->analytics ? &d->analytics->size : NULL;
    case AGAPE_KIND_MONITORING:
        *need = sizeof(struct agape_monitoring_ops);
        return d->monitoring ? &d->monitoring->size : NULL;
    case AGAPE_KIND_WEBHOOK:
        *need = sizeof(struct agape_webhook_ops);
        return d->webhook ? &d->webhook->size : NULL;
    default:
        *need = 0;
        return NULL;
    }
}

/* Everything about a descriptor, after the ABI number and the size are known good. */
static int check_descriptor(const char *path, const struct agape_plugin *d, char *err,
                            size_t errlen)
{
    char stem[PLUGIN_NAME_MAX + 8];
    file_stem(path, stem, sizeof(stem));

    if (!name_ok(d->name)) {
        set_err(err, errlen,
                "%s: plugin name is missing or not valid (want 1 to %d of [a-z0-9_])", path,
                PLUGIN_NAME_MAX);
        return AGAPE_EINVAL;
    }
    if (strcmp(d->name, stem) != 0) {
        set_err(err, errlen,
                "%s: plugin is named \"%s\" but the file is \"%s.so\"; the file name must be "
                "the plugin name",
                path, d->name, stem);
        return AGAPE_EINVAL;
    }
    if (d->version == NULL) {
        set_err(err, errlen, "%s: plugin %s has no version string", path, d->name);
        return AGAPE_EINVAL;
    }
    if (d->kinds == 0 || (d->kinds & ~(uint32_t)KINDS_ALL) != 0) {
        set_err(err, errlen, "%s: plugin %s declares %s kinds (0x%x)", path, d->name,
                d->kinds == 0 ? "no" : "unknown", d->kinds);
        return AGAPE_EINVAL;
    }
    for (size_t i = 0; i < sizeof(kinds_table) / sizeof(kinds_table[0]); i++) {
        size_t need;
        const uint32_t *size = kind_table(d, kinds_table[i].bit, &need);
        bool declared = (d->kinds & kinds_table[i].bit) != 0;
        if (declared && size == NULL) {
            set_err(err, errlen,
                    "%s: plugin %s declares kind %s but has no %s operations table", path,
                    d->name, kinds_table[i].name, kinds_table[i].name);
            return AGAPE_EINVAL;
        }
        if (!declared && size != NULL) {
            set_err(err, errlen,
                    "%s: plugin %s has a %s operations table but does not declare kind %s",
                    path, d->name, kinds_table[i].name, kinds_table[i].name);
            return AGAPE_EINVAL;
        }
        if (declared && *size < need) {
            set_err(err, errlen,
                    "%s: %s operations table is %u bytes, this agape needs at least %zu; "
                    "rebuild the plugin against include/agape/plugin.h",
                    path, kinds_table[i].name, *size, need);
            return AGAPE_EINVAL;
        }
    }
    for (size_t i = 0; d->options != NULL; i++) {
        if (i >= PLUGIN_OPTIONS_MAX) {
            set_err(err, errlen, "%s: plugin %s has over %d options (missing the {NULL} end?)",
                    path, d->name, PLUGIN_OPTIONS_MAX);
            return AGAPE_EINVAL;
        }
        const struct agape_option *o = &d->options[i];
        if (o->name == NULL) {
            break;
        }
        if (!name_ok(o->name) ||
            (o->flags & ~(uint32_t)(AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET)) != 0) {
            set_err(err, errlen, "%s: plugin %s: option %zu is malformed (name or flags)", path,
                    d->name, i);
            return AGAPE_EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(d->options[j].name, o->name) == 0) {
                set_err(err, errlen, "%s: plugin %s declares option %s twice", path, d->name,
                        o->name);
                return AGAPE_EINVAL;
            }
        }
        /* Type, range and default: a bad default would otherwise surface as
         * a configuration problem the operator cannot fix. */
        char why[AGAPE_ERR_SIZE];
        if (!options_decl_ok(o, why, sizeof(why))) {
            set_err(err, errlen, "%s: plugin %s: %s", path, d->name, why);
            return AGAPE_EINVAL;
        }
    }
    return AGAPE_OK;
}

int plugin_load(const char *path, struct plugin **out, char *err, size_t errlen)
{
    int rc = AGAPE_EINVAL;
    void *dl = NULL;
    struct plugin *p = NULL;
    char *dlpath = NULL;
    struct stat st;

    *out = NULL;
    if (path == NULL || *path == '\0') {
        set_err(err, errlen, "no plugin file given");
        return AGAPE_EINVAL;
    }

    /* 1. The file: present, regular, and not writable by anyone who could
     * swap code into a process that moves money. */
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            set_err(err, errlen, "%s: no such plugin file", path);
            rc = AGAPE_ENOENT;
        } else {
            set_err(err, errlen, "%s: cannot read plugin file: %s", path, strerror(errno));
        }
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        set_err(err, errlen, "%s: is writable by group or others; refusing to load", path);
        goto out;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        set_err(err, errlen,
                "%s: is owned by uid %u, neither root nor the user running agape; refusing "
                "to load",
                path, (unsigned)st.st_uid);
        goto out;
    }

    /* 2. dlopen now, so an unresolved symbol fails here and not on the first
     * payment. A name without '/' would be searched in the library path. */
    if (strchr(path, '/') == NULL) {
        size_t n = strlen(path) + 3;
        dlpath = malloc(n);
        if (dlpath == NULL) {
            rc = AGAPE_ENOMEM;
            set_err(err, errlen, "%s: out of memory", path);
            goto out;
        }
        snprintf(dlpath, n, "./%s", path);
    }
    dl = dlopen(dlpath ? dlpath : path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        const char *why = dlerror();
        set_err(err, errlen, "%s: not loadable as a plugin: %s", path, why ? why : "unknown");
        goto out;
    }
    dlerror();
    void *sym = dlsym(dl, AGAPE_PLUGIN_ENTRY_SYMBOL);
    if (sym == NULL) {
        set_err(err, errlen, "%s: no %s symbol; not an Agape plugin", path,
                AGAPE_PLUGIN_ENTRY_SYMBOL);
        goto out;
    }
    agape_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof(entry)); /* POSIX: object pointer to function pointer */

    /* 3. The descriptor: ABI number first (it is the first member in every
     * version), then the size, then the rest. */
    const struct agape_plugin *d = entry();
    if (d == NULL) {
        set_err(err, errlen, "%s: %s returned no descriptor", path, AGAPE_PLUGIN_ENTRY_SYMBOL);
        goto out;
    }
    if (d->abi_version != AGAPE_PLUGIN_ABI_VERSION) {
        set_err(err, errlen,
                "%s: plugin ABI version %u, this agape provides ABI version %d; rebuild the "
                "plugin against include/agape/plugin.h",
                path, d->abi_version, AGAPE_PLUGIN_ABI_VERSION);
        goto out;
    }
    if (d->size < sizeof(struct agape_plugin)) {
        set_err(err, errlen,
                "%s: plugin descriptor is %u bytes, this agape needs at least %zu; rebuild "
                "the plugin against include/agape/plugin.h",
                path, d->size, sizeof(struct agape_plugin));
        goto out;
    }
    rc = check_descriptor(path, d, err, errlen);
    if (rc != AGAPE_OK) {
        goto out;
    }

    p = calloc(1, sizeof(*p));
    if (p == NULL || (p->name = strdup(d->name)) == NULL || (p->file = strdup(path)) == NULL) {
        rc = AGAPE_ENOMEM;
        set_err(err, errlen, "%s: out of memory", path);
        goto out;
    }
    p->dl = dl;
    p->desc = d;
    dl = NULL;
    *out = p;
    p = NULL;
    rc = AGAPE_OK;
out:
    if (p) {
        free(p->name);
        free(p->file);
        free(p);
    }
    if (dl) {
        dlclose(dl);
    }
    free(dlpath);
    return rc;
}

void plugin_unload(struct plugin *p)
{
    if (p == NULL) {
        return;
    }
    if (p->dl) {
        dlclose(p->dl);
    }
    free(p->name);
    free(p->file);
    free(p);
}

/* ---------------------------------------------------------------- */
/* Registry                                                         */

static void report(struct problems *probs, size_t *nprob, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One problem for `agape validate` (probs may be NULL); always counted. */
static void report(struct problems *probs, size_t *nprob, const char *fmt, ...)
{
    char msg[AGAPE_ERR_SIZE + 4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (*nprob)++;
    if (probs != NULL) {
        problems_add(probs, "%s", msg);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void provider_free(struct provider *pv)
{
    if (pv == NULL) {
        return;
    }
    if (pv->ctx && pv->plugin && pv->plugin->desc->destroy) {
        pv->plugin->desc->destroy(pv->ctx);
    }
    json_decref(pv->conf);
    json_decref(pv->cache);
    pthread_mutex_destroy(&pv->cache_lock);
    free(pv->name);
    free(pv);
}

/* Keep an init error shown to operators free of any registered secret. */
static void redact_into(char *dst, size_t dstlen, const char *src)
{
    struct agape_buf b;
    buf_init(&b, 4096);
    buf_adds(&b, src);
    log_redact(&b);
    snprintf(dst, dstlen, "%s", b.error ? "(reason withheld)" : buf_cstr(&b));
    buf_fini(&b);
}

static struct plugin *registry_plugin(struct registry *r, const char *dir, const char *pname,
                                      char *err, size_t errlen)
{
    for (size_t i = 0; i < r->n_plugins; i++) {
        if (strcmp(r->plugins[i]->name, pname) == 0) {
            return r->plugins[i];
        }
    }
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/%s.so", dir, pname);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        set_err(err, errlen, "%s/%s.so: path too long", dir, pname);
        return NULL;
    }
    struct plugin **grown = realloc(r->plugins, (r->n_plugins + 1) * sizeof(*grown));
    if (grown == NULL) {
        set_err(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    r->plugins = grown;
    struct plugin *p = NULL;
    if (plugin_load(path, &p, err, errlen) != AGAPE_OK) {
        return NULL;
    }
    r->plugins[r->n_plugins++] = p;
    return p;
}

/* Set up one provider from its table; problems go to probs and *nprob. */
static struct provider *provider_create(const char *name, const json_t *tab, struct plugin *pl,
                                        struct problems *probs, size_t *nprob)
{
    struct provider *pv = calloc(1, sizeof(*pv));
    if (pv == NULL) {
        return NULL;
    }
    pthread_mutex_init(&pv->cache_lock, NULL);
    pv->name = strdup(name);
    pv->plugin = pl;
    pv->cache = json_object();
    if (pv->name == NULL || pv->cache == NULL) {
        provider_free(pv);
        return NULL;
    }
    const struct agape_plugin *d = pl->desc;

    /* Secrets first: whatever happens next (a failing init quoting its
     * configuration, say) must already be redacted. */
    for (size_t i = 0; d->options && d->options[i].name; i++) {
        const json_t *v = json_object_get(tab, d->options[i].name);
        if ((d->options[i].flags & AGAPE_OPT_SECRET) && json_is_string(v)) {
            log_secret_add(json_string_value(v));
        }
    }
    /* The plugin's init reads the table normalized per its option schema
     * (core/options.h); a value of the wrong type makes the provider
     * unusable, an unknown key is only reported (a typo to fix). */
    struct options_report rep;
    memset(&rep, 0, sizeof(rep));
    rep.probs = probs;
    if (options_normalize(name, d->options, tab, &pv->conf, &rep) == AGAPE_ENOMEM) {
        provider_free(pv);
        return NULL;
    }
    *nprob += rep.type_errors + rep.missing + rep.unknown;
    /* A normalized secret may differ from what was typed (a URL without its
     * trailing slash, the items of a list): those are redacted too. */
    for (size_t i = 0; d->options && d->options[i].name; i++) {
        const json_t *v = json_object_get(pv->conf, d->options[i].name);
        if (!(d->options[i].flags & AGAPE_OPT_SECRET)) {
            continue;
        }
        if (json_is_string(v)) {
            log_secret_add(json_string_value(v));
        }
        for (size_t j = 0; json_is_array(v) && j < json_array_size(v); j++) {
            log_secret_add(json_string_value(json_array_get(v, j)));
        }
    }
    pv->usable = rep.type_errors == 0 && rep.missing == 0;
    if (!pv->usable) {
        snprintf(pv->why, sizeof(pv->why), "%s", rep.why);
    }
    if (!pv->usable || d->init == NULL) {
        return pv;
    }
    char err[AGAPE_ERR_SIZE] = "";
    void *ctx = NULL;
    int rc = d->init(host_table(), HOST_AJ(pv->conf), &ctx, err, sizeof(err));
    err[sizeof(err) - 1] = '\0';
    if (rc != AGAPE_OK) {
        /* A failing init releases what it made (docs/plugins.md); ctx is ignored. */
        char reason[AGAPE_ERR_SIZE];
        if (err[0]) {
            redact_into(reason, sizeof(reason), err);
        } else {
            snprintf(reason, sizeof(reason), "rc %d", rc);
        }
        pv->usable = false;
        snprintf(pv->why, sizeof(pv->why), "init failed: %.240s", reason);
        report(probs, nprob, "provider %s (plugin %s): init failed: %s", name, pl->name, reason);
        return pv;
    }
    pv->ctx = ctx;
    return pv;
}

int registry_create(const struct conf *c, struct registry **out, struct problems *probs)
{
    size_t nprob = 0;
    const char **names = NULL;
    size_t n = 0;
    struct registry *r = calloc(1, sizeof(*r));

    *out = NULL;
    if (r == NULL) {
        report(probs, &nprob, "out of memory creating the provider registry");
        return AGAPE_ENOMEM;
    }
    const char *dir = c && c->plugin_dir ? c->plugin_dir : PLUGIN_DIR_DEFAULT;
    const json_t *provs = c ? c->providers : NULL;
    if (provs != NULL && !json_is_object(provs)) {
        report(probs, &nprob, "providers: must be a table of provider tables");
        provs = NULL;
    }

    /* The providers come from a Lua table, which has no order; sorting by
     * name makes "configuration order" (registry_by_kind) deterministic. */
    size_t total = provs ? json_object_size(provs) : 0;
    if (total > 0) {
        names = calloc(total, sizeof(*names));
        r->providers = calloc(total, sizeof(*r->providers));
        if (names == NULL || r->providers == NULL) {
            report(probs, &nprob, "out of memory creating the provider registry");
            goto out;
        }
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)provs, key, val)
        {
            names[n++] = key;
        }
        qsort(names, n, sizeof(*names), cmp_str);
    }

    for (size_t i = 0; i < n; i++) {
        const char *name = names[i];
        const json_t *tab = json_object_get(provs, name);
        if (!json_is_object(tab)) {
            report(probs, &nprob, "provider %s: its entry must be a table", name);
            continue;
        }
        const json_t *pj = json_object_get(tab, "plugin");
        if (pj != NULL && !json_is_string(pj)) {
            report(probs, &nprob, "provider %s: plugin must be a string", name);
            continue;
        }
        const char *pname = pj ? json_string_value(pj) : name;
        if (!name_ok(pname)) {
            /* Also keeps "../" and friends out of the path. */
            report(probs, &nprob, "provider %s: plugin name \"%.64s\" is not valid ([a-z0-9_]+)",
                         name, pname);
            continue;
        }
        char err[AGAPE_ERR_SIZE + 4096];
        struct plugin *pl = registry_plugin(r, dir, pname, err, sizeof(err));
        if (pl == NULL) {
            report(probs, &nprob, "provider %s: %s", name, err);
            continue;
        }
        struct provider *pv = provider_create(name, tab, pl, probs, &nprob);
        if (pv == NULL) {
            report(probs, &nprob, "provider %s: out of memory", name);
            continue;
        }
        r->providers[r->n_providers++] = pv;
    }
out:
    free(names);
    *out = r;
    return nprob == 0 ? AGAPE_OK : AGAPE_EINVAL;
}

void registry_destroy(struct registry *r)
{
    if (r == NULL) {
        return;
    }
    /* Every context first, while its code is still mapped; then the code. */
    for (size_t i = 0; i < r->n_providers; i++) {
        provider_free(r->providers[i]);
    }
    free(r->providers);
    for (size_t i = 0; i < r->n_plugins; i++) {
        plugin_unload(r->plugins[i]);
    }
    free(r->plugins);
    free(r);
}

struct provider *registry_find(const struct registry *r, const char *name)
{
    for (size_t i = 0; r && name && i < r->n_providers; i++) {
        if (strcmp(r->providers[i]->name, name) == 0) {
            return r->providers[i];
        }
    }
    return NULL;
}

size_t registry_by_kind(const struct registry *r, uint32_t kind, struct provider **out,
                        size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; r && i < r->n_providers && n < cap; i++) {
        struct provider *pv = r->providers[i];
        if (pv->usable && (pv->plugin->desc->kinds & kind) != 0) {
            out[n++] = pv;
        }
    }
    return n;
}

void plugins_kinds_str(uint32_t kinds, char *out, size_t outlen)
{
    size_t len = 0;
    if (outlen == 0) {
        return;
    }
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(kinds_table) / sizeof(kinds_table[0]); i++) {
        if (!(kinds & kinds_table[i].bit)) {
            continue;
        }
        int w = snprintf(out + len, outlen - len, "%s%s", len ? "," : "", kinds_table[i].name);
        if (w < 0 || (size_t)w >= outlen - len) {
            return; /* truncated, still NUL-terminated */
        }
        len += (size_t)w;
    }
}
