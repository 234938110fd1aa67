/* app — the running gateway: the modules one process owns, wired together.
 * Made by main.c for `agape run`; every request handler reaches the rest
 * through it. */
#ifndef AGAPE_APP_H
#define AGAPE_APP_H

#include "client.h"
#include "conf.h"
#include "dispatch.h"
#include "plugins.h"
#include "script.h"
#include "store.h"

#include <stdatomic.h>
#include <stdbool.h>

struct httpd;
struct ratelimit;

struct app {
    struct conf *conf;
    struct store *store;
    struct registry *reg;
    struct script_engine *scripts;
    struct client *client;
    struct httpd *httpd;
    struct dispatch_policy payment_policy;
    struct ratelimit *ratelimit; /* per API key; NULL: unlimited */
    char boot_id[40];        /* random per process start: tells this run's work from a
                                previous run's */
    atomic_bool ready;       /* store open, plugins loaded, scripts compiled */
    atomic_bool draining;    /* stopping: new API requests get 503 */
};

#endif
