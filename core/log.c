#include "log.h"

#include "buf.h"
#include "jsonw.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_MAX_SECRETS 256

static enum agape_log_level min_level = AGAPE_LOG_INFO;
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[LOG_MAX_SECRETS];
static size_t n_secrets;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum agape_log_level min)
{
    min_level = min;
}

void log_secret_add(const char *secret)
{
    if (secret == NULL || strlen(secret) < 4) {
        return;
    }
    pthread_mutex_lock(&secrets_lock);
    for (size_t i = 0; i < n_secrets; i++) {
        if (strcmp(secrets[i], secret) == 0) {
            pthread_mutex_unlock(&secrets_lock);
            return;
        }
    }
    if (n_secrets < LOG_MAX_SECRETS) {
        char *copy = strdup(secret);
        if (copy) {
            secrets[n_secrets++] = copy;
        }
    }
    pthread_mutex_unlock(&secrets_lock);
}

void log_redact(struct agape_buf *b)
{
    static const char mark[] = "[redacted]";
    pthread_mutex_lock(&secrets_lock);
    for (size_t i = 0; i < n_secrets && b->data; i++) {
        size_t sl = strlen(secrets[i]);
        char *p;
        size_t from = 0;
        while (from < b->len && (p = memmem(b->data + from, b->len - from, secrets[i], sl))) {
            size_t at = (size_t)(p - b->data);
            size_t tail = b->len - at - sl;
            if (sizeof(mark) - 1 <= sl) {
                memcpy(p, mark, sizeof(mark) - 1);
                memmove(p + sizeof(mark) - 1, p + sl, tail + 1);
                b->len -= sl - (sizeof(mark) - 1);
            } else {
                size_t grow = sizeof(mark) - 1 - sl;
                if (buf_add(b, mark, grow) != AGAPE_OK) { /* make room */
                    break;
                }
                p = b->data + at;
                memmove(p + sizeof(mark) - 1, p + sl, tail);
                memcpy(p, mark, sizeof(mark) - 1);
                b->data[b->len] = '\0';
            }
            from = at + sizeof(mark) - 1;
        }
    }
    pthread_mutex_unlock(&secrets_lock);
}

static void add_str_field(struct agape_buf *b, const char *name, const char *v)
{
    buf_add(b, ",\"", 2);
    buf_adds(b, name);
    buf_add(b, "\":\"", 3);
    jsonw_escaped(b, v, strlen(v));
    buf_add(b, "\"", 1);
}

/* "2026-11-28T10:00:00" of the current second, kept per thread: formatting
 * the date (gmtime_r takes glibc's time-zone lock) once a second at most. */
static size_t time_prefix(const struct timespec *ts, char out[32])
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[32];
    static _Thread_local size_t cached_len;
    if (ts->tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts->tv_sec, &tm);
        int n = snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec);
        cached_len = n > 0 && (size_t)n < sizeof(cached) ? (size_t)n : 0;
        cached_sec = ts->tv_sec;
    }
    memcpy(out, cached, cached_len + 1);
    return cached_len;
}

static void emit(enum agape_log_level level, const struct log_fields *f, const char *fmt,
                 va_list ap) __attribute__((format(printf, 3, 0)));

/* The line is written by hand rather than built as a jansson object and
 * dumped: this runs for every request (the access log), and the object, its
 * members and the dump cost more than the rest of the logging. The shape is
 * the same: {"time","level",fields…,"msg"}, keys in that order. */
static void emit(enum agape_log_level level, const struct log_fields *f, const char *fmt,
                 va_list ap)
{
    if (level < min_level) {
        return;
    }
    if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0])) {
        level = AGAPE_LOG_ERROR;
    }
    /* The message: on the stack when it fits (nearly always). */
    char small[1024];
    struct agape_buf big;
    const char *msg = small;
    size_t msg_len;
    buf_init(&big, 64 * 1024);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        small[0] = '\0';
        msg_len = 0;
    } else if ((size_t)n < sizeof(small)) {
        msg_len = (size_t)n;
    } else {
        /* Longer than the stack buffer: on the heap, up to 64 KiB (past that,
         * the first KiB of it). */
        buf_vprintf(&big, fmt, ap);
        if (big.error == AGAPE_OK) {
            msg = buf_cstr(&big);
            msg_len = big.len;
        } else {
            msg_len = sizeof(small) - 1;
        }
    }

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char when[48];
    size_t wl = time_prefix(&ts, when);
    snprintf(when + wl, sizeof(when) - wl, ".%03ldZ", ts.tv_nsec / 1000000);

    struct agape_buf out;
    buf_init(&out, 0);
    buf_add(&out, "{\"time\":\"", 9);
    buf_adds(&out, when);
    buf_add(&out, "\",\"level\":\"", 11);
    buf_adds(&out, level_names[level]);
    buf_add(&out, "\"", 1);
    if (f) {
        if (f->request_id) {
            add_str_field(&out, "request_id", f->request_id);
        }
        if (f->route) {
            add_str_field(&out, "route", f->route);
        }
        if (f->provider) {
            add_str_field(&out, "provider", f->provider);
        }
        if (f->operation) {
            add_str_field(&out, "operation", f->operation);
        }
        if (f->outcome) {
            add_str_field(&out, "outcome", f->outcome);
        }
        if (f->status > 0) {
            jsonw_key(&out, "status", 0);
            jsonw_int(&out, f->status);
        }
        if (f->latency_ms >= 0) {
            /* Milliseconds with µs precision (jansson wrote all 17 digits
             * of the double), without printf's floating-point path. */
            double us = f->latency_ms * 1000.0 + 0.5;
            int64_t whole = us < 9e15 ? (int64_t)us : (int64_t)9e15;
            char frac[4] = {(char)('0' + whole / 100 % 10), (char)('0' + whole / 10 % 10),
                            (char)('0' + whole % 10), 0};
            jsonw_key(&out, "latency_ms", 0);
            jsonw_int(&out, whole / 1000);
            buf_add(&out, ".", 1);
            buf_add(&out, frac, 3);
        }
    }
    buf_add(&out, ",\"msg\":\"", 8);
    jsonw_escaped(&out, msg, msg_len);
    buf_add(&out, "\"}", 2);
    buf_fini(&big);
    log_redact(&out);
    buf_add(&out, "\n", 1);
    if (out.error == AGAPE_OK) {
        /* one write per line keeps lines whole across threads */
        ssize_t w = write(STDERR_FILENO, out.data, out.len);
        (void)w;
    }
    buf_fini(&out);
}

void log_vmsg(enum agape_log_level level, const char *provider, const char *fmt, va_list ap)
{
    struct log_fields f = {.provider = provider, .latency_ms = -1};
    emit(level, &f, fmt, ap);
}

void log_msg(enum agape_log_level level, const char *provider, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, provider, fmt, ap);
    va_end(ap);
}

void log_event(enum agape_log_level level, const struct log_fields *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, f, fmt, ap);
    va_end(ap);
}
