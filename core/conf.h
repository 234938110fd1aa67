/* conf — the configuration file (etc/agape.conf), a Lua chunk evaluated in
 * the sandbox with env(NAME [, default]) available. A `.env` file in the
 * working directory is loaded first (variables already set win).
 *
 * The result is plain data: every global the chunk sets becomes a member of
 * `conf->raw` (JSON), and the well-known ones are copied into fields with
 * defaults applied. */
#ifndef AGAPE_CONF_H
#define AGAPE_CONF_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A list of human-readable problems ("etc/agape.conf:12: …"), for validate. */
struct problems {
    char **items;
    size_t n;
};
void problems_add(struct problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void problems_free(struct problems *p);

struct conf {
    char *path;          /* the file read */
    char *listen_host;   /* from listen = "host:port"; default 127.0.0.1 */
    int listen_port;     /* default 8080 */
    char *public_url;    /* default http://127.0.0.1:8080 */
    char *data_dir;      /* default var/agape */
    char *plugin_dir;    /* default build/plugins */
    char *scripts_dir;   /* default scripts */
    json_t *providers;   /* object: provider name → its table as JSON (owned) */
    json_t *raw;         /* every global the chunk set (owned) */
    /* limits and policy (optional keys in the file; defaults shown) */
    size_t body_max;             /* max_body_bytes = 1048576 */
    uint64_t lua_instructions;   /* lua_instructions = 10000000 */
    size_t lua_memory;           /* lua_memory = 67108864 */
    int http_threads;            /* http_threads = 2 */
    int64_t payment_deadline_ms; /* payment_deadline_ms = 30000 */
    int64_t connect_timeout_ms;  /* connect_timeout_ms = 2000 */
    int64_t attempt_timeout_ms;  /* attempt_timeout_ms = 10000 */
    int max_retries;             /* max_retries = 2 (per provider, after the first try) */
    int64_t backoff_base_ms;     /* backoff_base_ms = 100 */
    int64_t backoff_max_ms;      /* backoff_max_ms = 2000 */
};

/* Load .env (if present in the working directory) and the file. Returns
 * AGAPE_OK and *out, or a negative rc with each problem added to `probs`
 * (Lua errors as file:line). `probs` may be NULL. Main thread. */
int conf_load(const char *path, struct conf **out, struct problems *probs);
void conf_free(struct conf *c);

/* Load NAME=VALUE lines from a .env file into the environment without
 * overriding set variables. Missing file: AGAPE_OK. */
int conf_load_dotenv(const char *path, struct problems *probs);

#endif
