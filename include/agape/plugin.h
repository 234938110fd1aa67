/*
 * agape/plugin.h — the plugin ABI of Agape Gateway, version 1.
 *
 * The only header a provider plugin includes. A plugin translates: it turns a
 * normalized request into the provider's HTTP request, the provider's response
 * into a normalized result, and a provider's webhook into a verified,
 * normalized event. It does no I/O, keeps no threads and never decides to
 * retry; the core does all of that (see docs/plugins.md).
 *
 * Memory rules at the boundary: everything the core passes to a plugin is
 * borrowed for the duration of the call; everything a plugin produces goes
 * into core-owned objects through the host table; nothing allocated on one
 * side is freed on the other. A plugin's own memory is its context, made in
 * init() and released in destroy().
 *
 * Self-contained C11: needs only <stddef.h>, <stdint.h>, <stdbool.h>.
 */
#ifndef AGAPE_PLUGIN_H
#define AGAPE_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change; the loader refuses a plugin whose
 * number differs and names both numbers. docs/abi-changelog.md says why. */
#define AGAPE_PLUGIN_ABI_VERSION 1

/* The one symbol a plugin exports. */
#define AGAPE_PLUGIN_ENTRY_SYMBOL "agape_plugin_entry"

/* Room for a human-readable reason that names the field. */
#define AGAPE_ERR_SIZE 256

/* ------------------------------------------------------------------ */
/* Result codes of our own code (never a provider's answer).           */

enum agape_rc {
    AGAPE_OK = 0,
    AGAPE_ERROR = -1,     /* unspecified failure; the error buffer says why */
    AGAPE_ENOENT = -2,    /* not found */
    AGAPE_ENOMEM = -12,   /* out of memory */
    AGAPE_EEXIST = -17,   /* already exists */
    AGAPE_EINVAL = -22,   /* invalid argument or input */
    AGAPE_ERANGE = -34,   /* over a size or value limit */
    AGAPE_EBUSY = -16,    /* in progress elsewhere */
    AGAPE_ETIMEDOUT = -110,
    AGAPE_ESTORE = -1000, /* the store failed (disk full, map full, I/O) */
    AGAPE_ESCRIPT = -1001 /* a rule script failed (error, budget, memory) */
};

/* ------------------------------------------------------------------ */
/* The outcome taxonomy (DESIGN.md): every provider call ends in one.  */

enum agape_outcome {
    AGAPE_OUTCOME_OK = 0,       /* done */
    AGAPE_OUTCOME_DECLINED,     /* a business "no": never retried, never failed over */
    AGAPE_OUTCOME_INVALID,      /* our request is wrong: never retried, never failed over */
    AGAPE_OUTCOME_AUTH,         /* our credentials are wrong: not retried, failed over */
    AGAPE_OUTCOME_RATE_LIMITED, /* 429: retried after the wait, failed over */
    AGAPE_OUTCOME_UNAVAILABLE,  /* not processed (connect error, 5xx): retried, failed over */
    AGAPE_OUTCOME_UNKNOWN,      /* sent, no answer: same idempotency key only; never failed
                                   over for payments */
    AGAPE_OUTCOME_COUNT
};

/* ------------------------------------------------------------------ */
/* Kinds                                                               */

enum agape_kind {
    AGAPE_KIND_AUTH = 1u << 0,
    AGAPE_KIND_PAYMENT = 1u << 1,
    AGAPE_KIND_MESSAGING = 1u << 2,
    AGAPE_KIND_ANALYTICS = 1u << 3,
    AGAPE_KIND_MONITORING = 1u << 4,
    AGAPE_KIND_WEBHOOK = 1u << 5 /* receives and verifies provider webhooks */
};

/* What a step function answers. */
enum agape_step {
    AGAPE_STEP_SEND = 0, /* a request was built: the core sends it and calls again */
    AGAPE_STEP_DONE,     /* the result (outcome and fields) is set */
    AGAPE_STEP_FAIL      /* bad input or a plugin bug; outcome becomes INVALID and
                            call->err says why */
};

enum agape_log_level {
    AGAPE_LOG_DEBUG = 0,
    AGAPE_LOG_INFO,
    AGAPE_LOG_WARN,
    AGAPE_LOG_ERROR
};

/* JSON value types, as reported by host->json_type(). */
enum agape_json_type {
    AGAPE_JSON_NULL = 0,
    AGAPE_JSON_BOOL,
    AGAPE_JSON_INT,
    AGAPE_JSON_REAL,
    AGAPE_JSON_STRING,
    AGAPE_JSON_ARRAY,
    AGAPE_JSON_OBJECT,
    AGAPE_JSON_ABSENT /* the value does not exist (NULL pointer) */
};

/* ------------------------------------------------------------------ */
/* Opaque handles                                                      */

/* A JSON value owned by the core (a jansson value inside). Borrowed unless
 * a function says it returns a new one. */
struct agape_json;

/* A growable byte buffer the core owns, for building bodies. */
struct agape_buf;

struct agape_call;

/* ------------------------------------------------------------------ */
/* The HTTP response the core received for the previous step.          */

struct agape_response {
    int status;          /* HTTP status */
    const char *body;    /* raw bytes, NUL-terminated for convenience; borrowed */
    size_t body_len;
};

/* The raw webhook as received, for verify(). */
struct agape_webhook {
    const char *body;      /* raw bytes exactly as received; borrowed */
    size_t body_len;
    const char *url;       /* the full public URL the provider posted to (public_url + path
                              + query), for schemes that sign the URL (Twilio) */
    int64_t now_s;         /* wall clock, seconds: use it for timestamp tolerance */
};

/* ------------------------------------------------------------------ */
/* A call: one operation of one provider, driven in steps by the core.
 * The plugin reads `input` and `resp`, builds the next request or the
 * result through the host table, and returns an enum agape_step.
 * The struct is core-owned; the plugin writes only the fields marked (w). */

struct agape_call {
    uint32_t size;                  /* sizeof(struct agape_call) of the core */
    const struct agape_host *host;  /* the host table */
    void *ctx;                      /* the plugin instance context from init() */
    const char *provider;           /* the configured provider name, e.g. "stripe" */
    int step;                       /* 0 on the first call, +1 per answered request */
    const struct agape_json *input; /* the normalized operation input (object) */
    const struct agape_response *resp; /* the answer to the previous request; NULL at step 0 */
    const struct agape_webhook *webhook; /* webhook operations only, else NULL */
    struct agape_json *state;       /* (w) an object that survives between steps */
    struct agape_json *result;      /* (w) the normalized result object */
    enum agape_outcome outcome;     /* (w) the outcome class, with STEP_DONE */
    int64_t retry_after_ms;         /* (w) the provider's Retry-After, or -1 */
    int64_t delay_ms;               /* (w) with STEP_DONE: the core reports the result only
                                       after this long (for test doubles such as the
                                       sandbox that act like a slow provider); else 0 */
    char err[AGAPE_ERR_SIZE];       /* (w) why, naming the field; never a secret */
};

/* ------------------------------------------------------------------ */
/* The host table: what the core lends to plugins.                     */

struct agape_host {
    uint32_t size;        /* sizeof(struct agape_host) of the core */
    uint32_t abi_version; /* AGAPE_PLUGIN_ABI_VERSION of the core */

    /* Logging, as JSON lines on stderr. `provider` may be NULL. Secrets
     * registered with the core are redacted from the text. */
    void (*log)(const char *provider, enum agape_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* Clock: wall time in ms since the epoch, and a monotonic ms clock. */
    int64_t (*now_ms)(void);
    int64_t (*mono_ms)(void);

    /* ---- JSON reading. `v` may be NULL (then ABSENT / NULL / 0 / false). */
    enum agape_json_type (*json_type)(const struct agape_json *v);
    /* Member by dotted path ("customer.email"; array elements as "links.0.rel").
     * Borrowed; NULL if absent. */
    const struct agape_json *(*json_get)(const struct agape_json *obj, const char *path);
    /* String at path, or NULL if absent or not a string; borrowed. */
    const char *(*json_str)(const struct agape_json *obj, const char *path);
    /* Integer at path, or `dflt` if absent or not an integer. */
    int64_t (*json_int)(const struct agape_json *obj, const char *path, int64_t dflt);
    /* Boolean at path, or `dflt`. */
    bool (*json_bool)(const struct agape_json *obj, const char *path, bool dflt);
    size_t (*json_size)(const struct agape_json *v); /* array length or object size */
    const struct agape_json *(*json_at)(const struct agape_json *arr, size_t i);
    /* Object iteration: the i-th key and value (insertion order); NULL past the end. */
    const char *(*json_key_at)(const struct agape_json *obj, size_t i,
                               const struct agape_json **value);
    /* Parse bytes; returns a new value the plugin must release with json_free,
     * or NULL (err filled when non-NULL). */
    struct agape_json *(*json_parse)(const char *buf, size_t len, char *err, size_t errlen);
    void (*json_free)(struct agape_json *v);
    /* Compact serialization into a core buffer (appended). */
    int (*json_dump)(const struct agape_json *v, struct agape_buf *out);

    /* ---- JSON building. Setters replace an existing member. Objects are
     * created and owned by the parent they are attached to. */
    int (*json_set_str)(struct agape_json *obj, const char *key, const char *val);
    int (*json_set_strn)(struct agape_json *obj, const char *key, const char *val, size_t len);
    int (*json_set_int)(struct agape_json *obj, const char *key, int64_t val);
    int (*json_set_bool)(struct agape_json *obj, const char *key, bool val);
    int (*json_set_null)(struct agape_json *obj, const char *key);
    /* Deep copy of `val` set as obj[key]. */
    int (*json_set_copy)(struct agape_json *obj, const char *key, const struct agape_json *val);
    /* A new empty object or array set as obj[key] (or appended when obj is an
     * array and key is NULL); returns it, borrowed from its parent. */
    struct agape_json *(*json_add_object)(struct agape_json *obj, const char *key);
    struct agape_json *(*json_add_array)(struct agape_json *obj, const char *key);
    int (*json_append_str)(struct agape_json *arr, const char *val);
    int (*json_append_int)(struct agape_json *arr, int64_t val);
    /* A new detached object the plugin owns (release with json_free). */
    struct agape_json *(*json_new_object)(void);

    /* ---- Buffers */
    struct agape_buf *(*buf_new)(void);
    void (*buf_free)(struct agape_buf *b);
    int (*buf_add)(struct agape_buf *b, const void *data, size_t len);
    int (*buf_printf)(struct agape_buf *b, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
    const char *(*buf_data)(const struct agape_buf *b); /* NUL-terminated; borrowed */
    size_t (*buf_len)(const struct agape_buf *b);

    /* ---- Encoders. Append to `out`. */
    /* application/x-www-form-urlencoded pair "k=v", with '&' before it when
     * `out` is not empty. `[` and `]` in the key stay literal (Stripe). */
    int (*form_add)(struct agape_buf *out, const char *key, const char *val);
    int (*url_escape)(struct agape_buf *out, const char *s, size_t len);
    int (*base64)(struct agape_buf *out, const void *data, size_t len);
    int (*base64url)(struct agape_buf *out, const void *data, size_t len); /* no padding */
    int (*hex)(struct agape_buf *out, const void *data, size_t len);       /* lowercase */
    /* Decoders: return decoded length, or -1 on malformed input or overflow. */
    long (*base64_decode)(const char *in, size_t len, unsigned char *out, size_t cap);
    long (*base64url_decode)(const char *in, size_t len, unsigned char *out, size_t cap);

    /* ---- Crypto (OpenSSL inside). Return AGAPE_OK or a negative rc. */
    int (*hmac_sha256)(const void *key, size_t klen, const void *msg, size_t mlen,
                       unsigned char out[32]);
    int (*hmac_sha1)(const void *key, size_t klen, const void *msg, size_t mlen,
                     unsigned char out[20]);
    int (*sha256)(const void *msg, size_t mlen, unsigned char out[32]);
    /* Constant-time equality; false when lengths differ. Use for every
     * signature and token comparison. */
    bool (*ct_equal)(const void *a, size_t alen, const void *b, size_t blen);
    int (*random_bytes)(void *out, size_t len);
    /* Signature checks: true only if `sig` is a valid signature of `msg`.
     * `pem` is a PEM certificate or public key; `der_spki` a DER
     * SubjectPublicKeyInfo; (n, e) a raw RSA key (JWK). */
    bool (*verify_rsa_sha256_pem)(const char *pem, size_t pemlen, const void *msg, size_t mlen,
                                  const void *sig, size_t siglen);
    bool (*verify_ecdsa_sha256_der)(const void *der_spki, size_t dlen, const void *msg,
                                    size_t mlen, const void *sig, size_t siglen);
    bool (*verify_rsa_sha256_jwk)(const void *n, size_t nlen, const void *e, size_t elen,
                                  const void *msg, size_t mlen, const void *sig, size_t siglen);
    uint32_t (*crc32)(const void *data, size_t len);

    /* ---- The request of the next step (call with AGAPE_STEP_SEND).
     * `url` is absolute (the plugin prefixes its configured base URL).
     * Bodies are copied. Header values are never logged. */
    int (*req_start)(struct agape_call *call, const char *method, const char *url);
    int (*req_header)(struct agape_call *call, const char *name, const char *value);
    int (*req_body)(struct agape_call *call, const char *content_type, const void *data,
                    size_t len);
    /* HTTP Basic credentials (user:password), sent in the Authorization header. */
    int (*req_basic_auth)(struct agape_call *call, const char *user, const char *password);
    /* Response header of the previous step, case-insensitive; borrowed; NULL if absent. */
    const char *(*resp_header)(const struct agape_call *call, const char *name);
    /* Request header of the incoming webhook, case-insensitive; borrowed. */
    const char *(*webhook_header)(const struct agape_call *call, const char *name);

    /* ---- Provider cache, kept by the core per provider (tokens, key sets).
     * cache_get returns a borrowed string valid until the step returns, or
     * NULL when absent or expired. ttl_ms <= 0 removes the entry. */
    const char *(*cache_get)(struct agape_call *call, const char *key);
    int (*cache_put)(struct agape_call *call, const char *key, const char *value, int64_t ttl_ms);

    /* ---- Mail (smtp:// and smtps:// request URLs). The envelope of the
     * message whose RFC 5322 text (headers, blank line, body; CRLF line ends)
     * is the request body; req_basic_auth gives the SMTP AUTH credentials.
     * `require_tls` asks for STARTTLS on smtp:// (refused if the server
     * lacks it). At most 16 recipients. */
    int (*req_mail)(struct agape_call *call, const char *from, const char *const *rcpts,
                    size_t n_rcpts, bool require_tls);

    /* ---- Compression: gzip (RFC 1952) of `data`, appended to `out`. */
    int (*gzip)(struct agape_buf *out, const void *data, size_t len);

    /* ---- X.509 (appended; a plugin that may run on an older core checks
     * host->size >= offsetof(struct agape_host, x509_check) + sizeof(void *)
     * before calling it). True when `pem` (len bytes) is a PEM certificate
     * whose subject's last common name ends with `cn_suffix` (ASCII case-
     * insensitive; NULL skips that check) and, when `check_time`, `now_s`
     * (seconds since the epoch) lies within its validity period. On false,
     * `err` says why ("certificate expired on 2017-03-22T12:00:00Z").
     * The chain is NOT checked: fetch the certificate over TLS from a host
     * you allow-list. */
    bool (*x509_check)(const char *pem, size_t len, const char *cn_suffix, int64_t now_s,
                       bool check_time, char *err, size_t errlen);
};

/* ------------------------------------------------------------------ */
/* Operations per kind. Every operation is a step function:
 *     enum agape_step op(struct agape_call *call);
 * called first with call->step == 0 and call->resp == NULL; it returns
 * AGAPE_STEP_SEND after building a request, and is called again with the
 * response; it returns AGAPE_STEP_DONE with call->outcome and call->result
 * set. Transport failures never reach the plugin: the core classifies them
 * (nothing sent: UNAVAILABLE; sent, no answer: UNKNOWN). The plugin
 * classifies only what the provider said. Step functions must be reentrant:
 * they run concurrently on the core's threads with the same ctx. */

typedef enum agape_step (*agape_step_fn)(struct agape_call *call);

/*
 * Payment. Normalized inputs (objects):
 *   charge:  {"payment_id", "amount" (int, minor units), "currency" (lowercase ISO),
 *             "description"?, "customer"?: {"id"?, "email"?}, "metadata"?: {k: "v"},
 *             "return_url"?, "cancel_url"?, "idempotency_key"}
 *   get:     {"payment_id", "provider_ref", "idempotency_key"?}
 *   capture: {"payment_id", "provider_ref", "idempotency_key"}
 *   refund:  {"payment_id", "provider_ref", "capture_ref"?, "amount"? (int), "currency",
 *             "idempotency_key"}
 * Results:
 *   charge, get, capture: {"status": "requires_action" | "processing" | "succeeded" |
 *             "failed" | "canceled" | "refunded", "provider_ref", "client_secret"?,
 *             "approval_url"?, "capture_ref"?, "decline_code"?, "message"?}
 *   refund:  {"refund_ref", "status": "succeeded" | "processing" | "failed", "amount"?}
 * `idempotency_key` is derived by the core from the client's key: the same
 * client key gives the same provider key, so a retried call never charges twice.
 */
struct agape_payment_ops {
    uint32_t size;
    agape_step_fn charge;
    agape_step_fn get;
    agape_step_fn capture; /* NULL when the provider captures at once */
    agape_step_fn refund;
};

/*
 * Messaging. Normalized inputs (objects):
 *   send_email: {"message_id", "to", "from"? (else the provider's configured sender),
 *                "from_name"?, "subject" (optional with template_id), "text"?, "html"?
 *                (at least one unless template_id), "template_id"? (a provider-side
 *                dynamic template), "data"? (object, that template's data),
 *                "idempotency_key", "status_callback"? (URL)}
 *   send_sms:   {"message_id", "to" (E.164), "from"?, "body", "idempotency_key",
 *                "status_callback"? (URL the provider posts delivery reports to)}
 * Result: {"provider_ref", "status": "sent" | "queued"}; a DECLINED result also
 * carries {"status": "failed", "error_code"?, "message"?}. `message_id` is the
 * gateway's id: plugins pass it to the provider where it has a place for it
 * (SendGrid custom_args, the SMTP Message-ID) so that delivery webhooks name it.
 * Providers with no idempotency key for sends (Twilio, SendGrid, SMTP) may
 * deliver twice when a retried call follows a lost answer (outcome UNKNOWN).
 * Their webhooks normalize to {"event_id", "type", "message_ref"?, "status"?:
 * "delivered" | "failed", "provider_status"?, "events"?: [...]}; each plugin's
 * README gives the exact shape.
 */
struct agape_messaging_ops {
    uint32_t size;
    agape_step_fn send_email;
    agape_step_fn send_sms;
};

/* Auth (OpenID Connect). */
struct agape_auth_ops {
    uint32_t size;
    agape_step_fn authorize_url;
    agape_step_fn exchange_code;
    agape_step_fn verify_id_token;
};

/*
 * Analytics. One operation:
 *   track_batch: {"events": [event, ...]}, 1 to 25 events of ONE client: the core
 *                groups events by client_id, else by user_id, and batches at most 25
 *                (GA4's limit); a plugin refuses a larger or mixed batch as INVALID.
 *     event, either shape (API.md):
 *       GA4:  {"name", "params"?: {k: v}, "user_id"?, "client_id"?,
 *              "timestamp_micros"? (int, µs since the epoch: when it happened)}
 *       seed: {"category", "action", "label"?, "value"? (number), "user_id"?,
 *              "client_id"?, "timestamp_micros"?}
 *     The plugin maps the seed shape itself, so the core stays provider-agnostic
 *     (google_analytics: name = the action lower-cased with every other character
 *     "_", params {"event_category", "event_label"?, "value"?}). With no client_id,
 *     google_analytics derives a stable one from user_id ("agape." + the first 16
 *     hex digits of SHA-256(user_id)); an event with neither is INVALID.
 *   Result: {"accepted": n}, the events sent (GA4 answers 2xx without validating).
 *   An event the provider's rules refuse fails the whole batch with INVALID and an
 *   err naming it ("events[3].name ..."): the core drops or splits the batch, it
 *   never retries it as is.
 */
struct agape_analytics_ops {
    uint32_t size;
    agape_step_fn track_batch;
};

/*
 * Monitoring. Operations (NULL when the provider has no such API: sentry has no
 * send_metrics; the core skips the provider for that operation):
 *   report_error: {"event_id"? (32 hex; pass the id answered to the client so that a
 *                 retry keeps it and the provider de-duplicates; else the plugin makes
 *                 one), "message"? (string), "exception"?: {"type", "value"?},
 *                 "level"? ("fatal" | "error" | "warning" | "info" | "debug"; default
 *                 "error"), "tags"?: {k: string | int | bool} (at most 64), "user"?:
 *                 {"id"?, "username"?, "email"?, "ip_address"?}, "timestamp"? (RFC 3339;
 *                 default now), "platform"? (a Sentry platform name; default "c")};
 *                 "message" or "exception" is required.
 *     Result: {"event_id"} (+ "uuid" for newrelic).
 *     Plugins scrub before sending, whatever the provider: user.email and
 *     user.ip_address are dropped unless the provider's send_default_pii is true;
 *     in message, exception.value and tag values anything that looks like a bearer
 *     token, an API key (sk_live_, sk_test_, rk_, agk_, ses_, whsec_), an e-mail
 *     address or a card-like number (13-19 digits) becomes "[Filtered]". A tag
 *     whose key is not 1-32 of [A-Za-z0-9_.:-] is dropped (and logged), not fatal.
 *   send_metrics: {"metrics": [{"name", "type"? ("gauge" default | "count" |
 *                 "summary"), "value": number, or for a summary {"count", "sum",
 *                 "min", "max"}, "interval_ms"? (needed by count and summary, here or
 *                 at the top), "timestamp_ms"?, "attributes"?: {k: string | number |
 *                 bool}}], "timestamp_ms"? (default now), "interval_ms"? (the flush
 *                 interval), "attributes"?: {...} (common to all)}
 *     Result: {"requestId"?}.
 *   Outcomes: OK on 2xx (retry_after_ms may still be set: the provider asks for
 *   nothing more during that time, as Sentry's X-Sentry-Rate-Limits does);
 *   RATE_LIMITED on 429 with retry_after_ms; AUTH on 401/403; INVALID on other
 *   4xx; UNAVAILABLE on 5xx (and New Relic's 408). Telemetry has no idempotency
 *   key: a retry after UNKNOWN may duplicate a metric (an error is de-duplicated by
 *   its event_id at Sentry).
 */
struct agape_monitoring_ops {
    uint32_t size;
    agape_step_fn report_error;
    agape_step_fn send_metrics;
};

/*
 * Webhooks. verify() checks the signature over call->webhook's raw body and
 * headers and answers DONE with outcome OK (authentic) or INVALID (with the
 * reason in err), or SEND when the check needs a request (a certificate, a
 * verify API). normalize() turns an authentic body into
 *   {"event_id", "type", "payment_ref"?, "status"?, "object"?: {...}}
 * in call->result, plus "created"? (the event's time, seconds) and, for an
 * event about a subscription, "subscription": {"id", "customer", "status",
 * "current_period_end", "cancel_at_period_end", "items": [{"id", "price",
 * "product", "quantity"}], "metadata", "deleted"} (the core stores it; the
 * provider's own object shape stays in the plugin). An event that names the
 * gateway's own payment id rather
 * than the provider's reference may set "payment_id" instead of
 * "payment_ref"; it moves that payment only if the payment is this
 * provider's.
 */
struct agape_webhook_ops {
    uint32_t size;
    agape_step_fn verify;
    agape_step_fn normalize;
};

/* ------------------------------------------------------------------ */
/* Options: the configuration a plugin accepts from its provider entry.
 *
 * The core reads each option once, for every plugin, before init: it copies
 * the provider's table and normalizes each declared option by its type.
 * Absent, null and "" are "not set": the option takes its default (`dflt`,
 * read like a value from env()) or stays absent. A value of the wrong type or
 * out of range makes the provider unusable ("provider stripe:
 * webhook_tolerance_s: expected an integer from 0 to 31536000"), and init is
 * not called. Keys the schema does not declare are reported as a warning
 * (a typo in agape.conf), except `plugin` and the core's own per-provider
 * keys (`breaker`, `max_inflight`). So init reads plain values:
 * host->json_str (a non-empty string, or NULL), json_int, json_bool. */

enum agape_opt_flags {
    AGAPE_OPT_REQUIRED = 1u << 0, /* the provider is unusable without it */
    AGAPE_OPT_SECRET = 1u << 1    /* never logged, shown or returned */
};

/* What init finds in the normalized table for each type. */
enum agape_opt_type {
    AGAPE_OPT_STRING = 0, /* a non-empty string */
    AGAPE_OPT_INT,        /* an integer within [min, max]; also given as decimal text
                             ("300": env() gives strings) or an integral number */
    AGAPE_OPT_BOOL,       /* true or false; also given as 1/0 or the text "1", "0",
                             "true", "false", "yes", "no" (any case) */
    AGAPE_OPT_URL,        /* a base URL: http:// or https://, a host, printable ASCII
                             without spaces, no query or fragment, at most 1024 bytes;
                             trailing slashes removed ("https://api.x.com/" →
                             "https://api.x.com") so that paths append to it */
    AGAPE_OPT_LIST,       /* an array of non-empty strings; given as a Lua array of
                             strings or one comma-separated string (items trimmed of
                             blanks, empty items dropped); an empty table is [] */
    AGAPE_OPT_URL_EXACT,  /* as URL, but kept exactly as written (a trailing slash
                             kept, a query allowed): URLs the provider compares, such
                             as an OAuth redirect URI */
    AGAPE_OPT_SMTP_URL    /* as URL, with smtp:// or smtps:// instead of http(s) */
};

/* Members left out of an initializer are zero: a STRING without default.
 * Write entries with designated initializers ({.name = "api_key", .flags =
 * AGAPE_OPT_REQUIRED, .env = "ACME_API_KEY", .description = "…"}) or in
 * full, and end the array with {0}. */
struct agape_option {
    const char *name;        /* key in the provider's table, e.g. "secret_key" */
    uint32_t flags;          /* enum agape_opt_flags */
    const char *env;         /* the environment variable that usually holds it, for
                                messages ("set STRIPE_SECRET_KEY"); may be NULL */
    const char *description; /* one line */
    /* ---- appended within ABI 1 (docs/abi-changelog.md) */
    enum agape_opt_type type;
    const char *dflt;        /* the default as text, read like a value from env()
                                ("300", "true", "https://api.stripe.com", "a,b"), or
                                NULL: not set means absent. Not with REQUIRED. */
    int64_t min;             /* INT: the accepted range [min, max]; both 0 = any */
    int64_t max;             /* LIST: at most `max` items (0 = no limit of its own) */
};

/* ------------------------------------------------------------------ */
/* The descriptor.                                                     */

struct agape_plugin {
    uint32_t abi_version;       /* AGAPE_PLUGIN_ABI_VERSION the plugin was built with */
    uint32_t size;              /* sizeof(struct agape_plugin) the plugin was built with */
    const char *name;           /* [a-z0-9_]+, equal to the file name without .so */
    const char *version;        /* the plugin's own version, e.g. "1.0.0" */
    uint32_t kinds;             /* enum agape_kind bits */
    const struct agape_option *options; /* ends with {NULL}; may be NULL */

    /* Called once per configured provider on the main thread. `conf` is the
     * provider's table as a JSON object (borrowed, valid until destroy).
     * Return AGAPE_OK and set *ctx, or a negative rc with err filled
     * (naming the option). The context is read-only afterwards. */
    int (*init)(const struct agape_host *host, const struct agape_json *conf, void **ctx,
                char *err, size_t errlen);
    void (*destroy)(void *ctx);

    /* One table per kind in `kinds`, NULL otherwise. */
    const struct agape_auth_ops *auth;
    const struct agape_payment_ops *payment;
    const struct agape_messaging_ops *messaging;
    const struct agape_analytics_ops *analytics;
    const struct agape_monitoring_ops *monitoring;
    const struct agape_webhook_ops *webhook;
};

typedef const struct agape_plugin *(*agape_plugin_entry_fn)(void);

/* Every plugin ends with exactly one AGAPE_PLUGIN_DEFINE(descriptor_variable). */
#define AGAPE_PLUGIN_DEFINE(desc)                                                          \
    __attribute__((visibility("default"))) const struct agape_plugin *agape_plugin_entry( \
        void);                                                                             \
    const struct agape_plugin *agape_plugin_entry(void)                                    \
    {                                                                                      \
        return &(desc);                                                                    \
    }

#ifdef __cplusplus
}
#endif

#endif /* AGAPE_PLUGIN_H */
