/* plugins — the loader and the provider registry.
 *
 * A plugin is a shared object exporting agape_plugin_entry(); a provider is
 * one configured instance of a plugin (providers.<name> in agape.conf, whose
 * `plugin` key names the file plugin_dir/<plugin>.so; it defaults to the
 * provider's name). The loader refuses, each with its own message naming the
 * file: a missing file, a file dlopen cannot load, a missing entry symbol, a
 * different ABI version (both numbers named), a descriptor too small, a name
 * that differs from the file name, kinds without their operations table, an
 * option declaration options_decl_ok refuses. A provider's table is read
 * against its plugin's option schema (core/options.h) before init: a provider
 * whose init fails, whose required option is missing or whose option has the
 * wrong type is kept, but marked unusable with the reason (routing leaves it
 * out); a key the schema does not know is only reported. Plugins are never
 * unloaded while the process runs. */
#ifndef AGAPE_PLUGINS_H
#define AGAPE_PLUGINS_H

#include "conf.h"

#include <agape/plugin.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>

struct plugin {
    char *name;  /* descriptor name */
    char *file;  /* path it was loaded from */
    void *dl;
    const struct agape_plugin *desc;
};

struct provider {
    char *name;              /* configured name, e.g. "stripe" */
    struct plugin *plugin;
    json_t *conf;            /* its table from agape.conf, normalized per the plugin's
                                option schema (owned); what init received */
    void *ctx;               /* the plugin's context from init() */
    bool usable;             /* every option valid, every required one present, and
                                init succeeded */
    char why[AGAPE_ERR_SIZE];/* why not usable */
    /* The core-kept cache lent to the plugin (tokens, key sets). */
    pthread_mutex_t cache_lock;
    json_t *cache;           /* key → {"v": string, "exp": mono ms} */
    /* Policy state owned by the dispatcher (counters, breaker); opaque here. */
    void *policy;
};

struct registry {
    struct plugin **plugins;
    size_t n_plugins;
    struct provider **providers;
    size_t n_providers;
};

/* Load one plugin file with every check above. Main thread. */
int plugin_load(const char *path, struct plugin **out, char *err, size_t errlen);
void plugin_unload(struct plugin *p); /* only for plugins with no provider */

/* Load every plugin the configuration names and create its providers.
 * Every problem is added to `probs` (may be NULL); returns AGAPE_OK when
 * there were none, otherwise AGAPE_EINVAL with a registry still made of
 * what did load (so `agape plugins` can list it). */
int registry_create(const struct conf *c, struct registry **out, struct problems *probs);
void registry_destroy(struct registry *r);
struct provider *registry_find(const struct registry *r, const char *name);
/* The usable providers of a kind, in configuration order; returns the count. */
size_t registry_by_kind(const struct registry *r, uint32_t kind, struct provider **out,
                        size_t cap);
/* "auth,payment,…" for a kinds bitmask, into out. */
void plugins_kinds_str(uint32_t kinds, char *out, size_t outlen);

#endif
