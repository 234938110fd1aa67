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

struct paypal_ctx {
    char *client_id;     /* not secret, but never needed in err either */
    char *client_secret; /* never logged, never in err or result */
    char *base_url;      /* without a trailing slash */
    char *webhook_id;    /* or NULL; for the webhook task */
    char *brand_name;    /* or NULL */
    bool live;           /* mode = live */
};

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

#endif
