/* stripe — plugin-private declarations shared by the plugin's files.
 *
 * The context is made by stripe_init() on the main thread and only read
 * afterwards, so every step function below is reentrant: it may run on any
 * core thread at the same time as any other. */
#ifndef STRIPE_H
#define STRIPE_H

#include <agape/plugin.h>

#define STRIPE_DEFAULT_BASE "https://api.stripe.com"
#define STRIPE_DEFAULT_TOLERANCE_S 300

/* Stripe's metadata limits (PROVIDERS.md §1.2). The key count includes the
 * metadata[agape_payment_id] the plugin adds itself. */
#define STRIPE_META_MAX_KEYS 50
#define STRIPE_META_KEY_MAX 40
#define STRIPE_META_VALUE_MAX 500

/* The Idempotency-Key header is at most 255 characters (§1.5). */
#define STRIPE_IDEM_KEY_MAX 255

/* The strings are borrowed from the normalized configuration init received,
 * which the core keeps until destroy. */
struct stripe_ctx {
    const char *secret_key;     /* sk_… or rk_…; never logged, never in err or result */
    const char *public_key;     /* pk_… or NULL; unused by the operations */
    const char *webhook_secret; /* whsec_… or NULL */
    const char *base_url;       /* without a trailing slash */
    const char *api_version;    /* Stripe-Version value, or NULL (the account's default) */
    int64_t tolerance_s;        /* webhook timestamp tolerance; 0 disables the check */
};

/* stripe_payment.c */
enum agape_step stripe_charge(struct agape_call *call);
enum agape_step stripe_get(struct agape_call *call);
enum agape_step stripe_refund(struct agape_call *call);

/* stripe_webhook.c */
enum agape_step stripe_webhook_verify(struct agape_call *call);
enum agape_step stripe_webhook_normalize(struct agape_call *call);

/* stripe_errors.c */

/* Classify a non-2xx answer (call->resp) into call->outcome, call->err,
 * call->retry_after_ms and, for declines, call->result. `refund` selects the
 * refund result shape. Always returns AGAPE_STEP_DONE. The table is in
 * README.md and at the top of stripe_errors.c. */
enum agape_step stripe_classify_error(struct agape_call *call, bool refund);

/* Replace every occurrence of the configured secrets in call->err by
 * "[redacted]" (a provider's message must never carry a key back out). */
void stripe_scrub_err(struct agape_call *call);

/* PaymentIntent status → the normalized payment status, or NULL when the
 * status is not one Stripe documents. */
const char *stripe_pi_status(const char *status);

#endif
