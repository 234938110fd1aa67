/* agape — the command line: run, validate, plugins, keys, version (API.md). */
#include "apikeys.h"
#include "app.h"
#include "crypto.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "monitor.h" /* observability engineer */
#include "ratelimit.h"
#include "reconcile.h"
#include "messages.h" /* messages engineer */
#include "worker.h" /* webhooks engineer */

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <lmdb.h>
#include <lua.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CONF "etc/agape.conf"

static void usage(FILE *f)
{
    fprintf(f, "usage: agape <command> [-c FILE]\n"
               "  run                 start the gateway in the foreground\n"
               "  validate            check config, plugins and scripts; exit 0 if all is well\n"
               "  plugins             list the plugins the configuration loads\n"
               "  keys create --name N --scopes S[,S...]   create an API key (printed once)\n"
               "  keys list           list API keys (never the keys themselves)\n"
               "  keys revoke N       revoke the key named N (or with id N)\n"
               "  version             versions of agape, the plugin ABI and the libraries\n"
               "scopes: payments, messages, events, errors, admin, or all\n");
}

/* Pull "-c FILE" out of argv wherever it stands; returns the new argc. */
static int take_conf_opt(int argc, char **argv, const char **conf)
{
    int out = 0;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            *conf = argv[++i];
            continue;
        }
        argv[out++] = argv[i];
    }
    return out;
}

static void print_problems(const struct problems *p)
{
    for (size_t i = 0; i < p->n; i++) {
        fprintf(stderr, "%s\n", p->items[i]);
    }
}

static struct conf *load_conf_or_die(const char *path)
{
    struct problems probs = {0};
    struct conf *c = NULL;
    if (conf_load(path, &c, &probs) != AGAPE_OK) {
        print_problems(&probs);
        problems_free(&probs);
        conf_free(c);
        return NULL;
    }
    problems_free(&probs);
    return c;
}

static int cmd_version(void)
{
    printf("agape %s (plugin ABI %d)\n", AGAPE_VERSION, AGAPE_PLUGIN_ABI_VERSION);
    printf("%s, libmicrohttpd %s, libcurl %s, jansson %s, %s, %s\n", LUA_RELEASE,
           MHD_get_version(), curl_version_info(CURLVERSION_NOW)->version, JANSSON_VERSION,
           mdb_version(NULL, NULL, NULL), OpenSSL_version(OPENSSL_VERSION));
    return 0;
}

static int cmd_validate(const char *path)
{
    int bad = 0;
    struct problems probs = {0};
    struct conf *c = NULL;
    if (conf_load(path, &c, &probs) != AGAPE_OK || c == NULL) {
        print_problems(&probs);
        problems_free(&probs);
        conf_free(c);
        fprintf(stderr, "%s: not valid\n", path);
        return 1;
    }
    bad += (int)probs.n;
    print_problems(&probs);
    problems_free(&probs);

    struct problems rp = {0};
    struct registry *reg = NULL;
    registry_create(c, &reg, &rp);
    for (size_t i = 0; i < rp.n; i++) {
        fprintf(stderr, "%s: %s\n", path, rp.items[i]);
    }
    bad += (int)rp.n;
    problems_free(&rp);

    for (size_t i = 0; reg && i < reg->n_providers; i++) {
        char perr[AGAPE_ERR_SIZE];
        if (dispatch_check_conf(reg->providers[i], perr, sizeof(perr)) != AGAPE_OK) {
            fprintf(stderr, "%s: %s\n", path, perr);
            bad++;
        }
    }
    char err[1024];
    double rate = 0;
    double burst = 0;
    if (ratelimit_config_from_json(json_object_get(c->raw, "rate_limit"), &rate, &burst, err,
                                   sizeof(err)) != AGAPE_OK) {
        fprintf(stderr, "%s: rate_limit: %s\n", path, err);
        bad++;
    }
    struct script_engine *se = NULL;
    struct script_limits lim = {.instructions = c->lua_instructions, .memory = c->lua_memory};
    if (script_engine_create(c->scripts_dir, &lim, &se, err, sizeof(err)) != AGAPE_OK) {
        fprintf(stderr, "%s\n", err);
        bad++;
    } else if (!script_has(se, "route_payment")) {
        fprintf(stderr, "%s: no route_payment function is defined\n", c->scripts_dir);
        bad++;
    }
    script_engine_destroy(se);
    registry_destroy(reg);
    conf_free(c);
    if (bad) {
        fprintf(stderr, "%s: %d problem%s\n", path, bad, bad == 1 ? "" : "s");
        return 1;
    }
    printf("%s: ok\n", path);
    return 0;
}

static int cmd_plugins(const char *path)
{
    struct conf *c = load_conf_or_die(path);
    if (c == NULL) {
        return 1;
    }
    struct problems rp = {0};
    struct registry *reg = NULL;
    int rc = registry_create(c, &reg, &rp);
    printf("%-18s %-44s %-8s %-4s %s\n", "NAME", "KINDS", "VERSION", "ABI", "FILE");
    for (size_t i = 0; reg && i < reg->n_plugins; i++) {
        struct plugin *p = reg->plugins[i];
        char kinds[128];
        plugins_kinds_str(p->desc->kinds, kinds, sizeof(kinds));
        printf("%-18s %-44s %-8s %-4u %s\n", p->name, kinds, p->desc->version,
               (unsigned)p->desc->abi_version, p->file);
    }
    for (size_t i = 0; i < rp.n; i++) {
        fprintf(stderr, "%s\n", rp.items[i]);
    }
    problems_free(&rp);
    registry_destroy(reg);
    conf_free(c);
    return rc == AGAPE_OK ? 0 : 1;
}

static int cmd_keys(const char *path, int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return 2;
    }
    const char *name = NULL;
    const char *scopes = NULL;
    const char *sub = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (strcmp(argv[i], "--scopes") == 0 && i + 1 < argc) {
            scopes = argv[++i];
        } else if (strcmp(sub, "revoke") == 0 && name == NULL) {
            name = argv[i];
        } else {
            fprintf(stderr, "keys: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    struct conf *c = load_conf_or_die(path);
    if (c == NULL) {
        return 1;
    }
    struct store *s = NULL;
    char err[512];
    int ret = 1;
    if (store_open(c->data_dir, &s, err, sizeof(err)) != AGAPE_OK) {
        fprintf(stderr, "cannot open the store in %s: %s\n", c->data_dir, err);
        conf_free(c);
        return 1;
    }
    if (strcmp(sub, "create") == 0) {
        uint32_t sc = 0;
        char key[128];
        if (name == NULL || scopes == NULL) {
            fprintf(stderr, "keys create: --name and --scopes are required\n");
        } else if (apikeys_parse_scopes(scopes, &sc, err, sizeof(err)) != AGAPE_OK) {
            fprintf(stderr, "keys create: %s\n", err);
        } else if (apikeys_create(s, name, sc, key, sizeof(key), NULL, err, sizeof(err)) !=
                   AGAPE_OK) {
            fprintf(stderr, "keys create: %s\n", err);
        } else {
            printf("%s\n", key);
            ret = 0;
        }
    } else if (strcmp(sub, "list") == 0) {
        json_t *arr = NULL;
        if (apikeys_list(s, &arr) == AGAPE_OK) {
            printf("%-22s %-24s %-36s %-21s %s\n", "ID", "NAME", "SCOPES", "CREATED", "REVOKED");
            size_t i;
            json_t *k;
            json_array_foreach(arr, i, k) {
                printf("%-22s %-24s %-36s %-21s %s\n",
                       json_string_value(json_object_get(k, "id")),
                       json_string_value(json_object_get(k, "name")),
                       json_string_value(json_object_get(k, "scopes")),
                       json_string_value(json_object_get(k, "created_at")),
                       json_is_true(json_object_get(k, "revoked")) ? "yes" : "no");
            }
            json_decref(arr);
            ret = 0;
        }
    } else if (strcmp(sub, "revoke") == 0) {
        if (name == NULL) {
            fprintf(stderr, "keys revoke: which key? (name or id)\n");
        } else if (apikeys_revoke(s, name, err, sizeof(err)) != AGAPE_OK) {
            fprintf(stderr, "keys revoke: %s\n", err);
        } else {
            printf("revoked %s\n", name);
            ret = 0;
        }
    } else {
        usage(stderr);
        ret = 2;
    }
    store_close(s);
    conf_free(c);
    return ret;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait until no connection is suspended, at most `ms`. */
static bool wait_idle(struct httpd *h, int64_t ms)
{
    int64_t until = client_mono_ms() + ms;
    while (httpd_suspended(h) > 0) {
        if (client_mono_ms() > until) {
            return false;
        }
        sleep_ms(10);
    }
    return true;
}

/* /metrics gauges: circuit state and in-flight calls per provider. */
static void gauges(struct agape_buf *out, void *arg)
{
    struct app *app = arg;
    if (app->reg == NULL) {
        return;
    }
    metrics_gauge_header(out, "agape_circuit_state",
                         "Circuit breaker state per provider: 0 closed, 1 open, 2 half_open.");
    for (size_t i = 0; i < app->reg->n_providers; i++) {
        struct provider *p = app->reg->providers[i];
        const char *c = dispatch_circuit(p, NULL);
        double v = strcmp(c, "open") == 0 ? 1 : strcmp(c, "half_open") == 0 ? 2 : 0;
        metrics_gauge_line(out, "agape_circuit_state", "provider", p->name, v);
    }
    metrics_gauge_header(out, "agape_provider_inflight", "Provider calls in flight now.");
    for (size_t i = 0; i < app->reg->n_providers; i++) {
        struct dispatch_stats st;
        dispatch_provider_stats(app->reg->providers[i], &st);
        metrics_gauge_line(out, "agape_provider_inflight", "provider",
                           app->reg->providers[i]->name, st.inflight);
    }
    monitor_gauges(out); /* observability engineer: events, errors, flushes */
}

static int cmd_run(const char *path)
{
    /* Signals are taken by this thread alone, with sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct app app;
    memset(&app, 0, sizeof(app));
    struct reconciler *recon = NULL;
    int ret = 1;
    char err[1024];
    app.conf = load_conf_or_die(path);
    if (app.conf == NULL) {
        return 1;
    }
    struct conf *c = app.conf;
    crypto_random_id("boot_", 8, app.boot_id, sizeof(app.boot_id));
    metrics_init();
    metrics_set_gauge_fn(gauges, &app);
    double rate = 0;
    double burst = 0;
    if (ratelimit_config_from_json(json_object_get(c->raw, "rate_limit"), &rate, &burst, err,
                                   sizeof(err)) != AGAPE_OK) {
        log_error("%s: rate_limit: %s", path, err);
        goto out;
    }
    if (rate > 0 && (app.ratelimit = ratelimit_create(rate, burst)) == NULL) {
        log_error("out of memory");
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("libcurl could not be initialised");
        goto out;
    }
    if (store_open(c->data_dir, &app.store, err, sizeof(err)) != AGAPE_OK) {
        log_error("cannot open the store in %s: %s", c->data_dir, err);
        goto out;
    }
    struct problems rp = {0};
    registry_create(c, &app.reg, &rp);
    for (size_t i = 0; i < rp.n; i++) {
        log_warn("%s", rp.items[i]);
    }
    problems_free(&rp);
    if (app.reg == NULL || dispatch_attach(app.reg) != AGAPE_OK) {
        log_error("the provider registry could not be made");
        goto out;
    }
    struct script_limits lim = {.instructions = c->lua_instructions, .memory = c->lua_memory};
    if (script_engine_create(c->scripts_dir, &lim, &app.scripts, err, sizeof(err)) !=
        AGAPE_OK) {
        log_error("scripts: %s", err);
        goto out;
    }
    struct client_options co = {.max_connections = 8192, .max_host_connections = 0};
    if (client_create(&co, &app.client) != AGAPE_OK) {
        log_error("the HTTP client could not start");
        goto out;
    }
    app.payment_policy = (struct dispatch_policy){
        .max_retries = c->max_retries,
        .backoff_base_ms = c->backoff_base_ms,
        .backoff_max_ms = c->backoff_max_ms,
        .connect_timeout_ms = c->connect_timeout_ms,
        .attempt_timeout_ms = c->attempt_timeout_ms,
        .deadline_ms = c->payment_deadline_ms,
    };
    if (httpd_start(&app, &app.httpd, err, sizeof(err)) != AGAPE_OK) {
        log_error("%s", err);
        goto out;
    }
    if (reconcile_start(&app, &recon) != AGAPE_OK) {
        log_error("the reconciler could not start");
        goto out;
    }
    if (monitor_start(&app) != AGAPE_OK) { /* observability engineer: "event" and "error"
                                              kinds, metrics flush; before worker_start */
        goto out;
    }
    if (messages_start(&app) != AGAPE_OK) { /* messages engineer: kind "message" */
        goto out;
    }
    if (worker_start(&app) != AGAPE_OK) { /* webhooks engineer: outbox/inbox worker */
        goto out;
    }
    atomic_store(&app.ready, true);
    log_info("agape %s listening on %s:%d (data %s, %zu providers)", AGAPE_VERSION,
             c->listen_host, c->listen_port, c->data_dir, app.reg->n_providers);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            if (script_engine_reload(app.scripts, err, sizeof(err)) == AGAPE_OK) {
                log_info("SIGHUP: scripts reloaded (generation %llu)",
                         (unsigned long long)script_generation(app.scripts));
            } else {
                log_warn("SIGHUP: scripts not reloaded, the running ones stay: %s", err);
            }
            continue;
        }
        log_info("signal %d: draining", sig);
        break;
    }
    ret = 0;

out:
    atomic_store(&app.draining, true);
    if (app.httpd) {
        /* Let calls in flight finish within their deadline, then cancel
         * what is left (their requests answer), then stop serving. */
        if (!wait_idle(app.httpd, c->payment_deadline_ms + 1000)) {
            log_warn("calls still in flight after the grace period; cancelling them");
        }
    }
    worker_stop(); /* webhooks engineer: before the scripts and the store go */
    messages_drain(5000); /* messages engineer: let sends in flight record their outcome */
    monitor_stop(); /* observability engineer: after the worker, before the client */
    reconcile_stop(recon);
    client_destroy(app.client);
    messages_stop(); /* messages engineer: after the client ended the last calls */
    if (app.httpd) {
        wait_idle(app.httpd, 5000);
        httpd_stop(app.httpd);
    }
    script_engine_destroy(app.scripts);
    dispatch_detach(app.reg);
    registry_destroy(app.reg);
    store_close(app.store);
    monitor_free(); /* observability engineer: after the store's last commit */
    if (ret == 0) {
        log_info("stopped");
    }
    ratelimit_destroy(app.ratelimit);
    conf_free(app.conf);
    curl_global_cleanup();
    return ret;
}

int main(int argc, char **argv)
{
    const char *conf = DEFAULT_CONF;
    argc = take_conf_opt(argc, argv, &conf);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) {
        return cmd_run(conf);
    }
    if (strcmp(cmd, "validate") == 0) {
        return cmd_validate(conf);
    }
    if (strcmp(cmd, "plugins") == 0) {
        return cmd_plugins(conf);
    }
    if (strcmp(cmd, "keys") == 0) {
        return cmd_keys(conf, argc - 2, argv + 2);
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        return cmd_version();
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "agape: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
