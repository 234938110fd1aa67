/* plugin_harness — shared scaffolding for the plugin unit tests (tests/unit/test_plugin_*.c).
 *
 * One owner for what every plugin test needs: load the real build/plugins/<name>.so with the
 * real loader, make a provider context from a JSON conf the way the registry does
 * (options_for_init, then the plugin's init), drive one operation through the real host table
 * (host_call_init / host_call_step / host_call_answer) with a hand-filled struct client_xfer,
 * read fixtures from AGAPE_FIXTURES, and run an operation end to end against build/mockprov.
 *
 * Every function runs on the test's thread and reports a broken harness step through cmocka
 * (fail_msg / assert_*), except harness_load and harness_provider_init, whose failure is
 * something the tests themselves check or report from a cmocka setup function. */
#ifndef AGAPE_TEST_PLUGIN_HARNESS_H
#define AGAPE_TEST_PLUGIN_HARNESS_H

#include "client.h"
#include "host.h"
#include "plugins.h"

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

/* One loaded plugin and the provider made from it (one per test, usually). */
struct harness {
    struct plugin *pl;
    struct provider prov;
};

/* Load AGAPE_PLUGIN_DIR/<plugin>.so into h->pl. Returns 0, or -1 after printing the loader's
 * reason on stderr (the cmocka setup convention). */
int harness_load(struct harness *h, const char *plugin);

/* Unload h->pl (NULL is fine) and clear it. */
void harness_unload(struct harness *h);

/* Make h->prov, named `name`, from `conf` (the reference is taken, even on failure): the conf is
 * normalized by options_for_init against the plugin's option table as the registry does, then
 * given to the plugin's init. Returns AGAPE_EINVAL if normalization refused the conf, else
 * init's rc; err receives the reason. h->prov.usable is set when init succeeded. */
int harness_provider_init(struct harness *h, const char *name, json_t *conf, char *err,
                          size_t errlen);

/* Destroy the provider context made by harness_provider_init and clear h->prov. */
void harness_provider_fini(struct harness *h);

/* One operation in flight: the transfer the plugin fills and the host call driving it. */
struct harness_op {
    struct client_xfer x;
    struct host_call hc;
    agape_step_fn fn;
};

/* Start operation `name` on prov with input `in` (the reference is taken) and run fn's first
 * step. Returns that step's result; the op must be ended with harness_op_end. */
enum agape_step harness_op_start_json(struct harness_op *o, struct provider *prov,
                                      const char *name, agape_step_fn fn, json_t *in);

/* Prepare operation `name` on prov with the input given as JSON text (a parse error fails the
 * test) without stepping yet: for a test that adjusts o->hc (e.g. its host table) first, then
 * calls host_call_step(&o->hc, o->fn). */
void harness_op_prepare(struct harness_op *o, struct provider *prov, const char *name,
                        agape_step_fn fn, const char *input_json);

/* harness_op_start_json with the input given as JSON text (a parse error fails the test). */
enum agape_step harness_op_start(struct harness_op *o, struct provider *prov, const char *name,
                                 agape_step_fn fn, const char *input_json);

/* Fill the answer part of x as a completed HTTP exchange: result CLIENT_DONE, status, the body
 * (len bytes, copied). Response headers already there are kept. */
void harness_set_answer(struct client_xfer *x, int status, const char *body, size_t len);

/* Append one response header (copied) to x. */
void harness_add_header(struct client_xfer *x, const char *name, const char *value);

/* Free and drop every response header of x. */
void harness_clear_headers(struct client_xfer *x);

/* Append the NULL-terminated name/value pairs of ap as response headers of x. */
void harness_add_headersv(struct client_xfer *x, va_list ap);

/* Hand the filled answer to the host (host_call_answer) and run o->fn's next step. */
enum agape_step harness_op_resume(struct harness_op *o);

/* Answer o's request with status, body (len bytes) and the NULL-terminated name/value header
 * pairs that follow, appended to the headers already there; then resume. Returns the step. */
enum agape_step harness_op_answer(struct harness_op *o, int status, const char *body, size_t len,
                                  ...);

/* harness_op_answer with a NUL-terminated body: headers appended to those already there. */
enum agape_step harness_op_answer_text(struct harness_op *o, int status, const char *body, ...);

/* Same, but the headers of a previous answer are dropped first (a fresh response). */
enum agape_step harness_op_reanswer_text(struct harness_op *o, int status, const char *body, ...);

/* End o: host_call_fini then client_xfer_reset. */
void harness_op_end(struct harness_op *o);

/* The value of request header `name` of x (case-insensitive), or NULL. */
const char *harness_req_header(const struct client_xfer *x, const char *name);

/* The string member `key` of o's result object, or NULL. */
const char *harness_res_str(const struct harness_op *o, const char *key);

/* The whole file AGAPE_FIXTURES/<dir>/<name> (malloc'd, NUL-terminated; free() it); *len, unless len
 * is NULL, gets its size. A missing file fails the test. */
char *harness_fixture(const char *dir, const char *name, size_t *len);

/* build/mockprov, started on a loopback port chosen by itself, and a real client to talk to
 * it. */
struct harness_mock {
    pid_t pid;
    int port;
    char dir[64];
    char url[64]; /* http://127.0.0.1:<port> */
    struct client *client;
};

/* Start the emulator (it dies with the test process) and wait for its port. */
void harness_mock_start(struct harness_mock *m);

/* Stop it; asserts it exited cleanly. */
void harness_mock_stop(struct harness_mock *m);

/* Send x with the real client and wait for the answer; no answer fails the test. */
void harness_mock_send(struct harness_mock *m, struct client_xfer *x);

/* Drive a started call (last step st) to its end over HTTP; returns the final step. */
enum agape_step harness_mock_run(struct harness_mock *m, struct host_call *hc, agape_step_fn fn,
                                 enum agape_step st);

/* GET /_mock/state/<what>: the emulator's record (a new reference). */
json_t *harness_mock_state(struct harness_mock *m, const char *what);

/* The cmocka fixtures every plugin test file needs, for a file-level
 * `static struct harness var`: load_plugin / unload_plugin (group setup and
 * teardown: load `plugin`.so once) and teardown_provider (after each test:
 * destroy the provider the test made). */
#define HARNESS_FIXTURES(var, plugin)                                                     \
    static int load_plugin(void **state)                                                  \
    {                                                                                     \
        (void)state;                                                                      \
        return harness_load(&(var), (plugin));                                            \
    }                                                                                     \
    static int unload_plugin(void **state)                                                \
    {                                                                                     \
        (void)state;                                                                      \
        harness_unload(&(var));                                                           \
        return 0;                                                                         \
    }                                                                                     \
    static int teardown_provider(void **state)                                            \
    {                                                                                     \
        (void)state;                                                                      \
        harness_provider_fini(&(var));                                                    \
        return 0;                                                                         \
    }

#endif
