/* sendgrid — plugin-private declarations shared by the plugin's files.
 *
 * The context is made by sendgrid_init() on the main thread and only read
 * afterwards, so every step function below is reentrant: it may run on any
 * core thread at the same time as any other. */
#ifndef SENDGRID_H
#define SENDGRID_H

#include <agape/plugin.h>

#define SENDGRID_DEFAULT_BASE "https://api.sendgrid.com"
#define SENDGRID_DEFAULT_TOLERANCE_S 600

/* A P-256 SubjectPublicKeyInfo is 91 bytes; room for any sane key. */
#define SENDGRID_KEY_MAX 512

/* The strings are borrowed from the normalized configuration init received,
 * which the core keeps until destroy. */
struct sendgrid_ctx {
    const char *api_key;       /* never logged, never in err or result */
    const char *from_email;    /* the default sender, or NULL */
    const char *base_url;      /* without a trailing slash */
    unsigned char *webhook_key; /* DER SubjectPublicKeyInfo, or NULL */
    size_t webhook_key_len;
    int64_t tolerance_s;       /* webhook timestamp tolerance; 0 disables the check */
};

/* sendgrid_mail.c */
enum agape_step sendgrid_send_email(struct agape_call *call);

/* sendgrid_webhook.c */
enum agape_step sendgrid_webhook_verify(struct agape_call *call);
enum agape_step sendgrid_webhook_normalize(struct agape_call *call);

/* sendgrid_errors.c */

/* Classify a non-2xx answer to mail send (call->resp) into call->outcome,
 * call->err and call->retry_after_ms. Always returns AGAPE_STEP_DONE. The
 * table is in README.md and at the top of sendgrid_errors.c. */
enum agape_step sendgrid_classify_error(struct agape_call *call);

/* Write a formatted reason into call->err, then remove any copy of the API
 * key from it and an incomplete UTF-8 sequence left by truncation. */
void sendgrid_err(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* An e-mail address we are willing to put in a request: 3 to 320 bytes,
 * one '@' with text on both sides, no control characters, spaces, quotes,
 * angle brackets, commas or semicolons. */
bool sendgrid_addr_ok(const char *s);

#endif
