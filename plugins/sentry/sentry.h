/* sentry — plugin-private declarations.
 *
 * The context is made by init on the main thread and only read afterwards;
 * report_error is reentrant. */
#ifndef SENTRY_H
#define SENTRY_H

#include "sentry_common.h"

#include <agape/plugin.h>

#define SENTRY_PLUGIN_VERSION "1.0.0"
#define SENTRY_CLIENT "agape/" SENTRY_PLUGIN_VERSION /* sentry_client and User-Agent */

/* dsn, environment and release are borrowed from the normalized configuration
 * init received, which the core keeps until destroy. */
struct sentry_ctx {
    const char *dsn;         /* as configured; sent in the envelope header (never logged) */
    char *envelope_url;      /* {scheme}://{host}[:{port}]{path}api/{project}/envelope/ */
    char *auth;              /* the X-Sentry-Auth value */
    const char *environment; /* or NULL */
    const char *release;     /* or NULL */
    bool send_default_pii;
};

/* sentry_dsn.c: the DSN → envelope URL, public key and secret key (each
 * malloc'd into the out pointers; *secret NULL when the DSN has none).
 * Returns AGAPE_OK, or AGAPE_EINVAL with sentry-python's wording in err
 * ("Unsupported scheme 'foo'", "Missing hostname", "Missing public key",
 * "Invalid project in DSN ('asdf')") — never a key. */
int sentry_dsn_parse(const char *dsn, char **envelope_url, char **public_key, char **secret,
                     char *err, size_t errlen);

/* sentry_event.c */
enum agape_step sentry_report_error(struct agape_call *call);

/* The longest applicable wait of an X-Sentry-Rate-Limits value for an event
 * (categories empty, "error" or "default"), in ms, or -1. */
int64_t sentry_rate_limit_ms(const char *header);

#endif
