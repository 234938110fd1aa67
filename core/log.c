#include "log.h"

#include "buf.h"

#include <jansson.h>
#include <pthread.h>
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

static void emit(enum agape_log_level level, const struct log_fields *f, const char *fmt,
                 va_list ap) __attribute__((format(printf, 3, 0)));

static void emit(enum agape_log_level level, const struct log_fields *f, const char *fmt,
                 va_list ap)
{
    if (level < min_level) {
        return;
    }
    struct agape_buf msg;
    buf_init(&msg, 64 * 1024);
    buf_vprintf(&msg, fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    json_t *o = json_object();
    json_object_set_new(o, "time", json_string(when));
    json_object_set_new(o, "level", json_string(level_names[level]));
    if (f) {
        if (f->request_id) {
            json_object_set_new(o, "request_id", json_string(f->request_id));
        }
        if (f->route) {
            json_object_set_new(o, "route", json_string(f->route));
        }
        if (f->provider) {
            json_object_set_new(o, "provider", json_string(f->provider));
        }
        if (f->operation) {
            json_object_set_new(o, "operation", json_string(f->operation));
        }
        if (f->outcome) {
            json_object_set_new(o, "outcome", json_string(f->outcome));
        }
        if (f->status > 0) {
            json_object_set_new(o, "status", json_integer(f->status));
        }
        if (f->latency_ms >= 0) {
            json_object_set_new(o, "latency_ms", json_real(f->latency_ms));
        }
    }
    json_object_set_new(o, "msg", json_stringn(buf_cstr(&msg), msg.len));
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    buf_fini(&msg);
    if (line == NULL) {
        return;
    }
    struct agape_buf out;
    buf_init(&out, 0);
    buf_adds(&out, line);
    free(line);
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
