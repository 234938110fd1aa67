/* log — JSON lines on stderr, one object per line:
 *   {"time":"2026-11-28T10:00:00.123Z","level":"info","msg":"…","provider":"stripe",…}
 * Every configured secret is registered with log_secret_add() and replaced by
 * "[redacted]" wherever it would appear in a line. Any thread. */
#ifndef AGAPE_LOG_H
#define AGAPE_LOG_H

#include <agape/plugin.h>
#include <stdarg.h>

struct agape_buf;

/* Optional structured fields; NULL/negative members are left out. */
struct log_fields {
    const char *request_id;
    const char *route;
    const char *provider;
    const char *operation;
    const char *outcome;
    int status;         /* HTTP status, or 0 */
    double latency_ms;  /* or < 0 */
};

void log_set_level(enum agape_log_level min);
/* Register a secret (copied) for redaction; strings shorter than 4 bytes are ignored. */
void log_secret_add(const char *secret);
/* Replace every registered secret in `b` by "[redacted]". */
void log_redact(struct agape_buf *b);
void log_msg(enum agape_log_level level, const char *provider, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(enum agape_log_level level, const char *provider, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void log_event(enum agape_log_level level, const struct log_fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...) log_msg(AGAPE_LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) log_msg(AGAPE_LOG_INFO, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(AGAPE_LOG_WARN, NULL, __VA_ARGS__)
#define log_error(...) log_msg(AGAPE_LOG_ERROR, NULL, __VA_ARGS__)

#endif
