/* mockprov — a loopback emulator of the providers, for integration tests.
 *
 * mockprov.c holds the HTTP side (libmicrohttpd, thread per connection, so a
 * handler may sleep), the control API (/_mock/...) and the fault machinery;
 * mock_core.c holds the shared state (recorded requests, queued faults,
 * idempotent replays, charge counts, per-provider buckets); one prov_<name>.c
 * per provider holds only that provider's routes and wire formats.
 *
 * Adding a provider: write prov_<name>.c defining a `const struct
 * mock_provider mock_<name>`, declare it below and list it in mockprov.c's
 * provider table. Handlers run with the state lock held: they may use the
 * mock_state_* helpers freely, and must not sleep. */
#ifndef MOCK_H
#define MOCK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MOCK_BODY_MAX ((size_t)1 << 20)
#define MOCK_MAX_PARAMS 4

/* A request as a handler sees it; everything is borrowed. */
struct mock_req {
    const char *method;
    const char *path;        /* without the query string */
    const char *query;       /* after '?', or "" */
    json_t *headers;         /* lowercase names -> strings */
    const char *body;        /* NUL-terminated, body_len bytes */
    size_t body_len;
    const char *idem_key;    /* value of the route's idempotency header, or NULL */
    const char *params[MOCK_MAX_PARAMS]; /* what each '*' of the pattern matched */
};

/* The answer a handler fills. */
struct mock_resp {
    int status;
    char *body;               /* malloc'd */
    char content_type[64];    /* "" means application/json */
    json_t *headers;          /* extra headers name -> string; owned, may be NULL */
    bool no_replay;           /* not stored for idempotent replay (failed validation) */
};

typedef void (*mock_handler_fn)(const struct mock_req *rq, struct mock_resp *rs);

struct mock_route {
    const char *method;
    const char *pattern;      /* "/v1/payment_intents/ *" without the space: '*' = one segment */
    mock_handler_fn fn;
    const char *idem_header;  /* lowercase header holding an idempotency key, or NULL */
};

struct mock_provider {
    const char *name;
    const struct mock_route *routes; /* ends with an all-NULL entry */
    /* An idempotency key reused with another path or body: the provider's
     * error answer. NULL: replay the first answer regardless. */
    void (*idem_conflict)(const struct mock_req *rq, struct mock_resp *rs);
};

extern const struct mock_provider mock_stripe;
extern const struct mock_provider mock_ga4;      /* prov_ga4.c: GA4 Measurement Protocol */
extern const struct mock_provider mock_sentry;   /* prov_sentry.c: envelope endpoint */
extern const struct mock_provider mock_newrelic; /* prov_newrelic.c: Metric and Event APIs */
extern const struct mock_provider mock_paypal;
extern const struct mock_provider mock_oidc; /* prov_oidc.c: Google-shaped OpenID issuer */
extern const struct mock_provider mock_sendgrid; /* prov_sendgrid.c: v3 Mail Send */
extern const struct mock_provider mock_twilio;   /* prov_twilio.c: Create Message */

/* ---- shared state (mock_core.c); callers hold the lock unless noted ---- */

void mock_state_init(void);            /* main thread, before the daemon starts */
void mock_state_free(void);            /* main thread, after it stopped */
void mock_lock(void);
void mock_unlock(void);
void mock_state_reset(void);

/* A JSON object for a provider's own state, created on first use, emptied by
 * /_mock/reset. Borrowed. */
json_t *mock_bucket(const char *name);
/* 1, 2, 3, ... per counter name (reset by /_mock/reset). */
long mock_next_id(const char *counter);
/* One more charge created under this idempotency key (NULL counts under ""). */
void mock_count_charge(const char *idem_key);
json_t *mock_charges(void);            /* new reference (a copy) */

/* Recorded requests. */
void mock_record(const char *method, const char *uri, json_t *headers, const char *body,
                 size_t body_len, const char *fault);
/* A copy of the records, filtered by path (equal to or under it) and method; NULL = all. */
json_t *mock_requests(const char *path, const char *method);

/* Faults: validate and queue a /_mock/faults document; 0 or -1 with err set. */
int mock_faults_add(json_t *spec, char *err, size_t errlen);
/* The next fault for this request (a copy, owned by the caller), or NULL. */
json_t *mock_fault_take(const char *method, const char *path);

/* Idempotent replay, scoped per provider. */
json_t *mock_idem_get(const char *provider, const char *key); /* borrowed or NULL */
void mock_idem_put(const char *provider, const char *key, const char *path, const char *body,
                   const struct mock_resp *rs);

/* Settings from /_mock/config. */
long mock_delay_ms(void);
void mock_set_delay_ms(long ms);

/* ---- helpers (mock_util.c), no lock needed ---- */

int64_t mock_now_s(void);
int64_t mock_now_ms(void);
/* Sleeps ms, returning early once mock_quit() was called. */
void mock_sleep_ms(long ms);
void mock_quit(void);

/* Sets rs to status + the JSON text of body (stolen). */
void mock_json(struct mock_resp *rs, int status, json_t *body);
void mock_header(struct mock_resp *rs, const char *name, const char *value);
const char *mock_req_header(const struct mock_req *rq, const char *lowercase_name);

/* application/x-www-form-urlencoded -> {"key": "value", ...} (last wins;
 * "metadata[k]" stays a flat key). New reference. */
json_t *mock_form_parse(const char *s, size_t len);
const char *mock_form_get(json_t *form, const char *key);
/* {"k": v} from the "<prefix>[k]" keys of a parsed form. New reference. */
json_t *mock_form_sub(json_t *form, const char *prefix);
/* Strict decimal integer; false if s is not one. */
bool mock_parse_int(const char *s, long long *out);

/* Base64 (standard alphabet). decode returns malloc'd NUL-terminated bytes or NULL. */
char *mock_b64_encode(const unsigned char *p, size_t len);
char *mock_b64_decode(const char *s, size_t *len);

#endif
