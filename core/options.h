/* options — a provider's table read against its plugin's option schema.
 *
 * Every plugin declares its options (struct agape_option in
 * include/agape/plugin.h: name, flags, env, type, default, range). The core
 * reads them here, once for all plugins, so that a plugin's init receives
 * plain values: a non-empty string or nothing, a JSON integer in range, a
 * JSON boolean, a checked URL without its trailing slash, an array of
 * strings. The rules per type are in plugin.h (enum agape_opt_type).
 *
 * Problems are phrased for the operator who edits agape.conf and name the
 * provider, the option and its environment variable:
 *   provider stripe: webhook_tolerance_s: expected an integer from 0 to 31536000
 *   provider stripe: missing secret_key (set STRIPE_SECRET_KEY)
 *   provider twilio: unknown option 'from_number' (known: account_sid, …)
 * They never quote a value (it may be a secret pasted in the wrong place).
 *
 * Pure functions of their arguments: any thread, no global state. */
#ifndef AGAPE_OPTIONS_H
#define AGAPE_OPTIONS_H

#include "conf.h"

#include <agape/plugin.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define OPTIONS_URL_MAX 1024  /* bytes of a URL option */
#define OPTIONS_LIST_MAX 256  /* items of a LIST option, whatever its own max */

/* What options_normalize found. The caller zeroes it and may set `probs`. */
struct options_report {
    struct problems *probs;   /* in: each problem is added as one line "provider p: …";
                                 may be NULL */
    size_t type_errors;       /* out: values of the wrong type or out of range; the
                                 provider is unusable */
    size_t missing;           /* out: REQUIRED options not set; unusable as well */
    size_t unknown;           /* out: keys the schema does not know: a warning only */
    char why[AGAPE_ERR_SIZE]; /* out: the first type error, else the first missing
                                 option, without the "provider p: " prefix ("" if
                                 neither), for struct provider's `why` */
};

/* Is `key` one the core itself reads from every provider's table ("plugin",
 * and dispatch.c's "breaker" and "max_inflight")? A plugin may not declare
 * such an option, and it is never reported as unknown. */
bool options_core_key(const char *key);

/* Check one declaration for the loader: a known type, flags it knows, min <=
 * max, no default on a REQUIRED option, a default that is valid for its type,
 * a name that is not a core key. false with the reason in err ("option
 * webhook_tolerance_s: default \"5m\" is not valid: expected an integer …"). */
bool options_decl_ok(const struct agape_option *o, char *err, size_t errlen);

/* Read `tab` (the provider's table; NULL is an empty one) against `opts`
 * (ends with a NULL name; may be NULL) for provider `provider`: *out becomes a
 * new object (the caller owns it) holding every key of `tab`, with each
 * declared option replaced by its normalized value, its default, or removed
 * when not set. Keys the schema does not declare are kept as they are and
 * reported (unless options_core_key); a value of the wrong type is reported
 * and removed. Returns AGAPE_OK when there is no type error and no missing
 * REQUIRED option (unknown keys allowed), AGAPE_EINVAL otherwise (*out still
 * made), AGAPE_ENOMEM with *out NULL. */
int options_normalize(const char *provider, const struct agape_option *opts, const json_t *tab,
                      json_t **out, struct options_report *rep);

/* The table a plugin's init receives, for code that calls init without a
 * registry (the plugin unit tests): options_normalize, then NULL with
 * "provider p: option: expected …" in err on a type error (or "out of
 * memory"). Missing REQUIRED options and unknown keys are not refused here:
 * the registry refuses a missing one before init, and a test calling init
 * directly checks the plugin's own handling. Returns a new reference. */
json_t *options_for_init(const char *provider, const struct agape_option *opts,
                         const json_t *tab, char *err, size_t errlen);

#endif
