/* host — the host table lent to plugins, and the core side of a call.
 *
 * `struct host_call` wraps the public struct agape_call with what the host
 * functions need: the transfer the next request is built into, the answer of
 * the previous step, the webhook's headers, and the provider (for its cache).
 * Step functions run on whatever thread drives the call. */
#ifndef AGAPE_HOST_H
#define AGAPE_HOST_H

#include "client.h"
#include "plugins.h"

#include <agape/plugin.h>
#include <jansson.h>

/* jansson values travel as struct agape_json across the ABI. */
#define HOST_J(x) ((json_t *)(x))
#define HOST_AJ(x) ((struct agape_json *)(x))

const struct agape_host *host_table(void);

struct host_call {
    struct agape_call pub;        /* first: a struct agape_call * is a struct host_call * */
    struct provider *prov;
    const char *op;               /* "charge", "get", … for logs */
    json_t *input;                /* owned */
    json_t *state;                /* owned */
    json_t *result;               /* owned */
    struct client_xfer *xfer;     /* borrowed: the next request is built into it and the
                                     previous answer read from it */
    struct agape_response resp;   /* view of xfer's answer for pub.resp */
    bool request_built;           /* req_start was called during this step */
    const struct client_header *wh_headers; /* webhook request headers (borrowed) */
    int n_wh_headers;
    json_t *cache_view;           /* owned: copies of the strings cache_get returned during
                                     the current step (so they outlive a concurrent
                                     replacement); emptied when the next step starts */
};

/* Prepare a call of operation `op` on provider `p` with `input` (a new
 * reference is taken). The transfer is borrowed for the life of the call. */
void host_call_init(struct host_call *hc, struct provider *p, const char *op, json_t *input,
                    struct client_xfer *xfer);
void host_call_fini(struct host_call *hc);

/* Run one step: resets the transfer's request part, calls fn. On SEND checks
 * that a request was built (else FAIL). On FAIL sets outcome INVALID. When
 * called after an answer, the caller has set pub.resp via host_call_answer. */
enum agape_step host_call_step(struct host_call *hc, agape_step_fn fn);
/* After the transfer completed with CLIENT_DONE: expose its answer to the
 * next step (pub.resp, resp_header) and advance pub.step. */
void host_call_answer(struct host_call *hc);

#endif
