/* twilio — plugin-private declarations shared by the plugin's files.
 *
 * The context is made by twilio_init() on the main thread and only read
 * afterwards, so every step function below is reentrant. */
#ifndef TWILIO_H
#define TWILIO_H

#include <agape/plugin.h>

#define TWILIO_DEFAULT_BASE "https://api.twilio.com"
#define TWILIO_SID_LEN 34 /* two letters and 32 hex digits */

/* The strings are borrowed from the normalized configuration init received,
 * which the core keeps until destroy. */
struct twilio_ctx {
    const char *account_sid;           /* AC…, in the path and the Basic user */
    const char *auth_token;            /* never logged, never in err or result */
    const char *from;                  /* the default sender, or NULL */
    const char *messaging_service_sid; /* MG…, or NULL */
    const char *base_url;              /* without a trailing slash */
};

/* twilio_sms.c */
enum agape_step twilio_send_sms(struct agape_call *call);

/* twilio_webhook.c */
enum agape_step twilio_webhook_verify(struct agape_call *call);
enum agape_step twilio_webhook_normalize(struct agape_call *call);

/* twilio_errors.c */

/* Classify a non-2xx answer (call->resp) into call->outcome, call->err,
 * call->retry_after_ms and, for declines, call->result. Always returns
 * AGAPE_STEP_DONE. The table is in README.md and at the top of
 * twilio_errors.c. */
enum agape_step twilio_classify_error(struct agape_call *call);

/* Write a formatted reason into call->err, then remove any copy of the auth
 * token from it and an incomplete UTF-8 sequence left by truncation. */
void twilio_err(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The longest prefix of s, at most max bytes, that ends on a UTF-8
 * character boundary (for "%.*s"). */
int twilio_utf8_cut(const char *s, size_t max);

/* twilio_form.c — application/x-www-form-urlencoded decoding. */

#define TWILIO_FORM_MAX ((size_t)64 * 1024) /* a status callback is well under 2 KiB */
#define TWILIO_FORM_MAX_PARAMS 256

struct twilio_param {
    const char *name; /* decoded, NUL-terminated (may also hold NULs: use the lengths) */
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct twilio_form {
    char *store; /* owns the decoded bytes */
    struct twilio_param p[TWILIO_FORM_MAX_PARAMS];
    size_t n;
};

/* Decode `s` (len bytes): pairs split on '&', each on its first '=' (a pair
 * without '=' has an empty value), '+' is a space, %XX a byte (a malformed
 * escape stays literal, as Python's unquote leaves it); empty pairs are
 * skipped. Returns AGAPE_OK, AGAPE_ERANGE (over TWILIO_FORM_MAX bytes or
 * TWILIO_FORM_MAX_PARAMS pairs) or AGAPE_ENOMEM. Free with twilio_form_free
 * whatever it returns. */
int twilio_form_parse(const char *s, size_t len, struct twilio_form *f);
void twilio_form_free(struct twilio_form *f);
/* The first pair with this name, or NULL. */
const struct twilio_param *twilio_form_get(const struct twilio_form *f, const char *name);

#endif
