/* paypal — plugin-private declarations shared by the plugin's files.
 *
 * The context is made by paypal_init() on the main thread and only read
 * afterwards, so every step function is reentrant: it may run on any core
 * thread at the same time as any other. The OAuth token, which changes at run
 * time, lives in the core's provider cache under PAYPAL_TOKEN_KEY, never in
 * the context and never in call->state. */
#ifndef PAYPAL_H
#define PAYPAL_H

#include <agape/plugin.h>

#define PAYPAL_LIVE_BASE "https://api-m.paypal.com"
#define PAYPAL_SANDBOX_BASE "https://api-m.sandbox.paypal.com"

#define PAYPAL_TOKEN_KEY "token"
/* A token is refreshed this long before PayPal says it expires, and cached
 * at least PAYPAL_TOKEN_MIN_TTL_S (PROVIDERS.md §2.1). */
#define PAYPAL_TOKEN_MARGIN_S 300
#define PAYPAL_TOKEN_MIN_TTL_S 60
#define PAYPAL_TOKEN_MAX 4096

/* PayPal-Request-Id is 1 to 108 characters (specs/paypal.json). */
#define PAYPAL_REQUEST_ID_MAX 108
/* Order ids: ^[A-Z0-9]+$, at most 36 (§2.2). */
#define PAYPAL_ORDER_ID_MAX 36
/* purchase_units[].custom_id and description: at most 127. */
#define PAYPAL_CUSTOM_ID_MAX 127
#define PAYPAL_DESCRIPTION_MAX 127
#define PAYPAL_BRAND_NAME_MAX 127

/* Webhooks (paypal_webhook.c, PROVIDERS.md §2.5). */
#define PAYPAL_CERT_PREFIXES_MAX 16
/* PROVIDERS.md §2.1: the API hosts, old and new, live and sandbox. */
#define PAYPAL_CERT_PREFIXES_DEFAULT                                                        \
    "https://api.paypal.com/,https://api.sandbox.paypal.com/,https://api-m.paypal.com/,"    \
    "https://api-m.sandbox.paypal.com/"
#define PAYPAL_WEBHOOK_TOLERANCE_S 300

/* The strings are borrowed from the normalized configuration init received,
 * which the core keeps until destroy. */
struct paypal_ctx {
    const char *client_id;     /* not secret, but never needed in err either */
    const char *client_secret; /* never logged, never in err or result */
    const char *base_url;      /* without a trailing slash */
    const char *webhook_id;    /* or NULL: every webhook is then refused */
    const char *brand_name;    /* or NULL */
    bool live;           /* mode = live */
    /* ---- webhooks (set by paypal_webhook_init) ---- */
    bool webhook_api;    /* webhook_verify = "api" (method A) rather than "offline" */
    bool check_cert_expiry;
    int64_t webhook_tolerance_s; /* 0: transmission time not checked */
    char *cert_prefixes[PAYPAL_CERT_PREFIXES_MAX]; /* allowed PAYPAL-CERT-URL prefixes */
    size_t n_cert_prefixes;
};

/* ---- paypal_webhook.c: webhook verification and normalization ---- */

/* Read the webhook options (webhook_verify, cert_url_prefixes,
 * webhook_check_cert_expiry, webhook_tolerance_s) into ctx; main thread, from
 * paypal_init. AGAPE_OK or a negative rc with err naming the option. */
int paypal_webhook_init(const struct agape_host *host, const struct agape_json *conf,
                        struct paypal_ctx *ctx, char *err, size_t errlen);
/* Free what paypal_webhook_init allocated (safe on a partly made ctx). */
void paypal_webhook_destroy(struct paypal_ctx *ctx);
enum agape_step paypal_webhook_verify(struct agape_call *call);
enum agape_step paypal_webhook_normalize(struct agape_call *call);

/* ---- paypal_payment.c: the operations ---- */
enum agape_step paypal_charge(struct agape_call *call);
enum agape_step paypal_get(struct agape_call *call);
enum agape_step paypal_capture(struct agape_call *call);
enum agape_step paypal_refund(struct agape_call *call);

/* ---- paypal_errors.c: answers → outcomes ---- */

/* What the failing request was, for the messages and the 422 rows. */
enum paypal_what {
    PAYPAL_WHAT_ORDER,   /* create order */
    PAYPAL_WHAT_GET,     /* get order */
    PAYPAL_WHAT_CAPTURE, /* capture order */
    PAYPAL_WHAT_REFUND   /* refund capture */
};

/* Classify a non-2xx answer of an API call (call->resp) into call->outcome,
 * call->err, call->retry_after_ms and, for declines, call->result (status
 * "failed", decline_code, message, approval_url?, provider_ref?). The
 * 401 refresh and 422 ORDER_ALREADY_CAPTURED are handled by the caller
 * before this. Returns AGAPE_STEP_DONE, or FAIL when out of memory. The table
 * is in README.md and at the top of paypal_errors.c. */
enum agape_step paypal_classify_error(struct agape_call *call, enum paypal_what what);

/* Classify a non-200 answer of the token call (nothing was charged). */
enum agape_step paypal_classify_token_error(struct agape_call *call);

/* The first details[].issue of an error body, or NULL (borrowed from body). */
const char *paypal_error_issue(const struct agape_host *h, const struct agape_json *body);

/* Retry-After delta-seconds → ms (capped at one hour), or -1. */
int64_t paypal_retry_after(const char *v);

/* Remove the client secret and the cached token from call->err, and an
 * incomplete UTF-8 tail. */
void paypal_scrub_err(struct agape_call *call);

/* Scrub `s` (NUL-terminated, at most cap bytes) of the same secrets. */
void paypal_scrub(struct agape_call *call, char *s, size_t cap);

/* Drop an incomplete UTF-8 sequence at the end of s. */
void paypal_utf8_trim(char *s);

/* ---- paypal_payment.c: the token-step driver ---- */

/* An operation: its input check-and-build, its API request, its answer. */
struct paypal_op {
    enum paypal_what what;
    /* Step 0: check the input (err filled, false when wrong). */
    bool (*check)(struct agape_call *call);
    /* The API request with this token (req_start…); AGAPE_OK or an rc. */
    int (*build)(struct agape_call *call, const char *token);
    /* Any answer to the API request but the 401 that triggers a refresh. */
    enum agape_step (*answer)(struct agape_call *call);
};

/* Run `op` with the OAuth token as a step of the same call (the cached token,
 * or a token request first; one refresh on a 401 to a cached token). Uses
 * call->state members phase, cached, refreshed, req. */
enum agape_step paypal_run(struct agape_call *call, const struct paypal_op *op);

#endif
