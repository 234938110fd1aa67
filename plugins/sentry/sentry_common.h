/* sentry_common — what the two monitoring plugins share: the normalized
 * error input (report_error), the scrubber, RFC 3339 time, small string helpers.
 *
 * Compiled into sentry.so and newrelic.so (plugins/newrelic/CMakeLists.txt
 * names this file), so that an error is validated and scrubbed the same way
 * whichever monitoring provider receives it. Every function is reentrant and
 * touches no global state. */
#ifndef SENTRY_COMMON_H
#define SENTRY_COMMON_H

#include <agape/plugin.h>

/* Longest Retry-After or rate-limit wait we pass on (a Sentry quota can last
 * hours; more than a day is treated as a day). */
#define SENTRY_RETRY_MAX_S 86400

/* ---- strings ---- */

/* Printable ASCII without spaces (safe in a header value or a URL). */
bool sentry_token_ok(const char *s);

/* ---- text ---- */

/* Append `s` (len bytes, UTF-8) to `out` with every span that looks like a
 * secret or personal data replaced by "[Filtered]" (adjacent spans give one
 * marker):
 *   - a bearer token: "Bearer" (any case, at a word start), blanks, then 8 or
 *     more token characters [A-Za-z0-9-._~+/] and any '=' (the word Bearer stays);
 *   - an API key: sk_live_ sk_test_ rk_ agk_ ses_ whsec_ at a word start (the
 *     character before is not a letter or digit) and the [A-Za-z0-9_-] run after it;
 *   - an e-mail address: local part [A-Za-z0-9._%+-]+ @ two or more dot-separated
 *     labels [A-Za-z0-9-]+, the last of 2+ letters;
 *   - a card-like number: 13 to 19 digits, alone or in groups separated by one
 *     space or '-', not part of a longer digit run (a run of 20+ bare digits is
 *     not a card and stays).
 * Returns the buffer's status (AGAPE_OK or its sticky error). */
int sentry_scrub(const struct agape_host *h, struct agape_buf *out, const char *s, size_t len);

/* The largest n <= max such that s[0..n) does not end inside a UTF-8
 * sequence (s is len bytes). */
size_t sentry_utf8_cut(const char *s, size_t len, size_t max);

/* A tag key Sentry accepts: 1 to 32 of [A-Za-z0-9_.:-]. */
bool sentry_tag_key_ok(const char *k);

/* ---- time ---- */

/* RFC 3339 date-time ("2024-01-01T00:00:00Z", fraction and offset allowed)
 * → ms since the epoch. false if s is not one. */
bool sentry_rfc3339_ms(const char *s, int64_t *ms);
/* ms since the epoch → "2024-01-01T00:00:01.000Z" (UTC, always 24 chars). */
void sentry_format_time(int64_t ms, char out[32]);
/* Retry-After as delta-seconds → ms (capped at SENTRY_RETRY_MAX_S), or -1
 * for NULL, an HTTP-date or junk. */
int64_t sentry_retry_after_ms(const char *v);

/* ---- the normalized report_error input (plugin.h, monitoring) ---- */

#define SENTRY_TEXT_MAX 8192 /* message / exception.value bytes kept after scrubbing */
#define SENTRY_TAG_VALUE_MAX 200
#define SENTRY_TAGS_MAX 64

struct sentry_error {
    char event_id[33];          /* 32 lowercase hex */
    const char *level;          /* static string */
    const char *platform;       /* static string */
    struct agape_buf *message;  /* scrubbed and cut; NULL when absent */
    const char *exc_type;       /* borrowed from the input; NULL when no exception */
    struct agape_buf *exc_value;/* scrubbed and cut; NULL when absent */
    const char *timestamp;      /* the input's RFC 3339 text (borrowed), or NULL */
    int64_t timestamp_ms;       /* that time, or now */
    const struct agape_json *user; /* borrowed; an object or NULL */
    const struct agape_json *tags; /* borrowed; an object or NULL */
};

/* Read and check call->input (the rules are in plugin.h's monitoring comment),
 * scrub the free text, make an event_id when absent (host->random_bytes).
 * `text_max` bounds message and exception.value after scrubbing. Returns 0, or
 * -1 with call->err set (naming the field); release with sentry_error_fini in
 * both cases. */
int sentry_error_read(struct agape_call *call, size_t text_max, struct sentry_error *e);
void sentry_error_fini(const struct agape_host *h, struct sentry_error *e);

/* The i-th tag of e->tags: *key (borrowed) and *val, a new buffer (free it
 * with buf_free) holding the value as scrubbed text cut to `value_max` bytes.
 * Strings, integers and booleans are kept. Returns 0 = use it; 1 = skip it (a
 * key sentry_tag_key_ok refuses, or another value type: Sentry drops such
 * tags and keeps the event, and so do we); -1 = past the end or out of memory. */
int sentry_error_tag(const struct agape_host *h, const struct sentry_error *e, size_t i,
                     size_t value_max, const char **key, struct agape_buf **val);

/* The user field `name` as text: strings as they are, integers in decimal
 * (into `tmp`); NULL when absent or another type. */
const char *sentry_user_field(const struct agape_host *h, const struct sentry_error *e,
                              const char *name, char tmp[32]);

#endif
