/* sentry_common — shared by sentry.so and newrelic.so (see sentry_common.h).
 *
 * The scrubber marks spans in a byte map and then writes the text with each
 * marked run replaced by one "[Filtered]": detectors stay independent and a
 * span found by two of them (a key inside a bearer header) is masked once. */
#include "sentry_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char sentry_filtered[] = "[Filtered]";

/* ------------------------------------------------------------------ */
/* Strings                                                             */

bool sentry_token_ok(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Scrubbing                                                           */

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
    return is_alpha(c) || is_digit(c);
}

static void mark(unsigned char *map, size_t from, size_t to)
{
    memset(map + from, 1, to - from);
}

/* "Bearer <token>": the token is masked, the word stays. */
static void find_bearer(const char *s, size_t len, unsigned char *map)
{
    for (size_t i = 0; i + 6 < len; i++) {
        if (strncasecmp(s + i, "bearer", 6) != 0 || (i > 0 && is_alnum(s[i - 1]))) {
            continue;
        }
        size_t j = i + 6;
        size_t blanks = j;
        while (j < len && (s[j] == ' ' || s[j] == '\t')) {
            j++;
        }
        if (j == blanks) {
            continue;
        }
        size_t start = j;
        while (j < len && (is_alnum(s[j]) || strchr("-._~+/", s[j]) != NULL)) {
            j++;
        }
        if (j - start < 8) {
            continue;
        }
        while (j < len && s[j] == '=') {
            j++;
        }
        mark(map, start, j);
        i = j - 1;
    }
}

static void find_keys(const char *s, size_t len, unsigned char *map)
{
    static const char *const prefixes[] = {"sk_live_", "sk_test_", "rk_", "agk_", "ses_",
                                           "whsec_", NULL};
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && is_alnum(s[i - 1])) {
            continue;
        }
        for (int p = 0; prefixes[p] != NULL; p++) {
            size_t n = strlen(prefixes[p]);
            if (n >= len - i || memcmp(s + i, prefixes[p], n) != 0) {
                continue;
            }
            size_t j = i + n;
            while (j < len && (is_alnum(s[j]) || s[j] == '_' || s[j] == '-')) {
                j++;
            }
            if (j > i + n) {
                mark(map, i, j);
                i = j - 1;
                break;
            }
        }
    }
}

static bool email_local(char c)
{
    return is_alnum(c) || (c != '\0' && strchr("._%+-", c) != NULL);
}

static void find_emails(const char *s, size_t len, unsigned char *map)
{
    for (size_t at = 1; at + 1 < len; at++) {
        if (s[at] != '@') {
            continue;
        }
        size_t start = at;
        while (start > 0 && email_local(s[start - 1])) {
            start--;
        }
        if (start == at) {
            continue;
        }
        /* Labels: [A-Za-z0-9-]+ separated by single dots. */
        size_t j = at + 1;
        size_t end = 0; /* end of the last complete candidate domain */
        int labels = 0;
        for (;;) {
            size_t l = j;
            bool letters = true;
            while (j < len && (is_alnum(s[j]) || s[j] == '-')) {
                letters = letters && is_alpha(s[j]);
                j++;
            }
            if (j == l) {
                break;
            }
            labels++;
            if (labels >= 2 && letters && j - l >= 2) {
                end = j;
            }
            if (j + 1 < len && s[j] == '.' && (is_alnum(s[j + 1]) || s[j + 1] == '-')) {
                j++;
                continue;
            }
            break;
        }
        if (end > 0) {
            mark(map, start, end);
            at = end - 1;
        }
    }
}

/* Digit groups separated by one ' ' or '-': greedily take groups while the
 * digit total stays <= 19 and mask up to the last group that made it 13..19. */
static void find_cards(const char *s, size_t len, unsigned char *map)
{
    size_t i = 0;
    while (i < len) {
        if (!is_digit(s[i]) || (i > 0 && is_digit(s[i - 1]))) {
            i++;
            continue;
        }
        size_t j = i;
        size_t digits = 0;
        size_t mask_end = 0;
        size_t next = 0; /* where to resume */
        for (;;) {
            size_t g = j;
            while (j < len && is_digit(s[j])) {
                j++;
            }
            if (digits + (j - g) > 19) {
                next = g;
                break;
            }
            digits += j - g;
            if (digits >= 13) {
                mask_end = j;
            }
            if (j + 1 < len && (s[j] == ' ' || s[j] == '-') && is_digit(s[j + 1])) {
                j++;
                continue;
            }
            next = j;
            break;
        }
        if (mask_end > 0) {
            mark(map, i, mask_end);
            next = mask_end;
        }
        if (next <= i) {
            /* A single run of 20+ digits: skip it whole. */
            next = i;
            while (next < len && is_digit(s[next])) {
                next++;
            }
        }
        i = next;
    }
}

int sentry_scrub(const struct agape_host *h, struct agape_buf *out, const char *s, size_t len)
{
    if (len == 0) {
        return h->buf_add(out, "", 0);
    }
    unsigned char *map = calloc(len, 1);
    if (map == NULL) {
        return AGAPE_ENOMEM;
    }
    find_bearer(s, len, map);
    find_keys(s, len, map);
    find_emails(s, len, map);
    find_cards(s, len, map);

    int rc = AGAPE_OK;
    size_t i = 0;
    while (i < len && rc == AGAPE_OK) {
        size_t j = i;
        if (map[i]) {
            while (j < len && map[j]) {
                j++;
            }
            rc = h->buf_add(out, sentry_filtered, sizeof(sentry_filtered) - 1);
        } else {
            while (j < len && !map[j]) {
                j++;
            }
            rc = h->buf_add(out, s + i, j - i);
        }
        i = j;
    }
    free(map);
    return rc;
}

size_t sentry_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max) {
        return len;
    }
    size_t n = max;
    /* s[n] is the first byte left out: back up while it continues a sequence. */
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) {
        n--;
    }
    return n;
}

bool sentry_tag_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 32) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum(k[i]) && strchr("_.:-", k[i]) == NULL) {
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Time                                                                */

static bool digits_at(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(s[i])) {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

bool sentry_rfc3339_ms(const char *s, int64_t *ms)
{
    int y, mo, d, hh, mi, ss, oh = 0, om = 0;
    if (s == NULL || strlen(s) < 20 || !digits_at(s, 4, &y) || s[4] != '-' ||
        !digits_at(s + 5, 2, &mo) || s[7] != '-' || !digits_at(s + 8, 2, &d) ||
        (s[10] != 'T' && s[10] != 't') || !digits_at(s + 11, 2, &hh) || s[13] != ':' ||
        !digits_at(s + 14, 2, &mi) || s[16] != ':' || !digits_at(s + 17, 2, &ss)) {
        return false;
    }
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || hh > 23 ||
        mi > 59 || ss > 60) {
        return false;
    }
    const char *p = s + 19;
    int frac_ms = 0;
    if (*p == '.') {
        int n = 0;
        p++;
        while (is_digit(*p)) {
            if (n < 3) {
                frac_ms = frac_ms * 10 + (*p - '0');
            }
            n++;
            p++;
        }
        if (n == 0 || n > 9) {
            return false;
        }
        for (; n < 3; n++) {
            frac_ms *= 10;
        }
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && digits_at(p + 1, 2, &oh) && p[3] == ':' &&
               digits_at(p + 4, 2, &om) && oh <= 23 && om <= 59) {
        sign = *p == '+' ? 1 : -1;
        p += 6;
    } else {
        return false;
    }
    if (*p != '\0') {
        return false;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = hh;
    tm.tm_min = mi;
    tm.tm_sec = ss == 60 ? 59 : ss; /* a leap second counts as its minute's last */
    time_t t = timegm(&tm);
    if (t == (time_t)-1) {
        return false;
    }
    int64_t offset_s = (int64_t)sign * (oh * 3600 + om * 60);
    *ms = ((int64_t)t - offset_s) * 1000 + frac_ms;
    return true;
}

void sentry_format_time(int64_t ms, char out[32])
{
    if (ms < 0) {
        ms = 0;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = 70;
        tm.tm_mday = 1;
    }
    /* The fields are in range, but the compiler cannot know: format wide, copy. */
    char wide[96];
    snprintf(wide, sizeof(wide), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
             tm.tm_sec, (int)(ms % 1000));
    snprintf(out, 32, "%.31s", wide);
}

int64_t sentry_retry_after_ms(const char *v)
{
    if (v == NULL) {
        return -1;
    }
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    if (!is_digit(*v)) {
        return -1;
    }
    char *end = NULL;
    long long s = strtoll(v, &end, 10);
    while (*end == ' ' || *end == '\t') {
        end++;
    }
    if (*end != '\0' || s < 0) {
        return -1;
    }
    if (s > SENTRY_RETRY_MAX_S) {
        s = SENTRY_RETRY_MAX_S;
    }
    return (int64_t)s * 1000;
}

/* ------------------------------------------------------------------ */
/* The report_error input                                              */

static void call_err(struct agape_call *call, const char *msg)
{
    snprintf(call->err, sizeof(call->err), "%s", msg);
}

static int hex_val(char c)
{
    if (is_digit(c)) {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static int read_event_id(struct agape_call *call, struct sentry_error *e)
{
    const struct agape_host *h = call->host;
    const struct agape_json *v = h->json_get(call->input, "event_id");
    enum agape_json_type t = h->json_type(v);
    static const char hexd[] = "0123456789abcdef";

    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        unsigned char b[16];
        if (h->random_bytes(b, sizeof(b)) != AGAPE_OK) {
            call_err(call, "cannot make an event_id (no random bytes)");
            return -1;
        }
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* a UUID v4, as the SDKs make */
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        for (size_t i = 0; i < sizeof(b); i++) {
            e->event_id[2 * i] = hexd[b[i] >> 4];
            e->event_id[2 * i + 1] = hexd[b[i] & 0x0f];
        }
        e->event_id[32] = '\0';
        return 0;
    }
    const char *s = h->json_str(v, "");
    if (s == NULL || strlen(s) != 32) {
        call_err(call, "event_id must be 32 hexadecimal characters");
        return -1;
    }
    for (size_t i = 0; i < 32; i++) {
        int x = hex_val(s[i]);
        if (x < 0) {
            call_err(call, "event_id must be 32 hexadecimal characters");
            return -1;
        }
        e->event_id[i] = hexd[x];
    }
    e->event_id[32] = '\0';
    return 0;
}

/* A scrubbed, cut copy of the string at `path`, or NULL (absent). -1 when
 * present but not a string, or out of memory (err set). */
static int read_text(struct agape_call *call, const char *path, size_t max,
                     struct agape_buf **out)
{
    const struct agape_host *h = call->host;
    const struct agape_json *v = h->json_get(call->input, path);
    enum agape_json_type t = h->json_type(v);
    *out = NULL;
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return 0;
    }
    if (t != AGAPE_JSON_STRING) {
        snprintf(call->err, sizeof(call->err), "%s must be a string", path);
        return -1;
    }
    const char *s = h->json_str(v, "");
    struct agape_buf *b = h->buf_new();
    if (b == NULL || sentry_scrub(h, b, s, strlen(s)) != AGAPE_OK) {
        h->buf_free(b);
        call_err(call, "out of memory");
        return -1;
    }
    size_t n = sentry_utf8_cut(h->buf_data(b), h->buf_len(b), max);
    if (n < h->buf_len(b)) {
        /* No truncate in the host table: copy the head. */
        struct agape_buf *cut = h->buf_new();
        int rc = cut ? h->buf_add(cut, h->buf_data(b), n) : AGAPE_ENOMEM;
        h->buf_free(b);
        if (rc != AGAPE_OK) {
            h->buf_free(cut);
            call_err(call, "out of memory");
            return -1;
        }
        b = cut;
    }
    *out = b;
    return 0;
}

static const char *const sentry_levels[] = {"fatal", "error", "warning", "info", "debug", NULL};

/* Sentry's platform names (event payloads docs); anything else is refused
 * rather than silently changed. */
static const char *const sentry_platforms[] = {
    "as",   "c",      "cfml",   "cocoa",  "csharp", "elixir", "haskell", "go",     "groovy",
    "java", "javascript", "native", "node", "objc", "other",  "perl",    "php",    "python",
    "ruby", NULL};

static const char *pick(const char *const *list, const char *s)
{
    for (int i = 0; s != NULL && list[i] != NULL; i++) {
        if (strcmp(list[i], s) == 0) {
            return list[i];
        }
    }
    return NULL;
}

int sentry_error_read(struct agape_call *call, size_t text_max, struct sentry_error *e)
{
    const struct agape_host *h = call->host;
    const struct agape_json *in = call->input;
    memset(e, 0, sizeof(*e));

    if (h->json_type(in) != AGAPE_JSON_OBJECT) {
        call_err(call, "input must be an object");
        return -1;
    }
    if (read_event_id(call, e) != 0) {
        return -1;
    }

    enum agape_json_type lt = h->json_type(h->json_get(in, "level"));
    e->level = "error";
    if (lt != AGAPE_JSON_ABSENT && lt != AGAPE_JSON_NULL) {
        e->level = pick(sentry_levels, h->json_str(in, "level"));
        if (e->level == NULL) {
            call_err(call, "level must be one of fatal, error, warning, info, debug");
            return -1;
        }
    }
    enum agape_json_type pt = h->json_type(h->json_get(in, "platform"));
    e->platform = "c";
    if (pt != AGAPE_JSON_ABSENT && pt != AGAPE_JSON_NULL) {
        e->platform = pick(sentry_platforms, h->json_str(in, "platform"));
        if (e->platform == NULL) {
            call_err(call, "platform must be a Sentry platform name (c, python, node, java, "
                           "other, ...)");
            return -1;
        }
    }

    if (read_text(call, "message", text_max, &e->message) != 0) {
        return -1;
    }
    const struct agape_json *exc = h->json_get(in, "exception");
    enum agape_json_type et = h->json_type(exc);
    if (et != AGAPE_JSON_ABSENT && et != AGAPE_JSON_NULL) {
        if (et != AGAPE_JSON_OBJECT) {
            call_err(call, "exception must be an object {\"type\", \"value\"}");
            return -1;
        }
        e->exc_type = h->json_str(exc, "type");
        if (e->exc_type == NULL || e->exc_type[0] == '\0' || strlen(e->exc_type) > 256) {
            call_err(call, "exception.type must be a string of 1 to 256 bytes");
            return -1;
        }
        if (read_text(call, "exception.value", text_max, &e->exc_value) != 0) {
            return -1;
        }
    }
    if (e->message == NULL && e->exc_type == NULL) {
        call_err(call, "message or exception is required");
        return -1;
    }

    const struct agape_json *ts = h->json_get(in, "timestamp");
    enum agape_json_type tt = h->json_type(ts);
    e->timestamp_ms = h->now_ms();
    if (tt != AGAPE_JSON_ABSENT && tt != AGAPE_JSON_NULL) {
        e->timestamp = h->json_str(ts, "");
        if (e->timestamp == NULL || strlen(e->timestamp) > 40 ||
            !sentry_rfc3339_ms(e->timestamp, &e->timestamp_ms)) {
            e->timestamp = NULL;
            call_err(call, "timestamp must be an RFC 3339 date-time such as "
                           "2024-01-01T00:00:00Z");
            return -1;
        }
    }

    const struct agape_json *user = h->json_get(in, "user");
    enum agape_json_type ut = h->json_type(user);
    if (ut == AGAPE_JSON_OBJECT) {
        e->user = user;
    } else if (ut != AGAPE_JSON_ABSENT && ut != AGAPE_JSON_NULL) {
        call_err(call, "user must be an object {\"id\", ...}");
        return -1;
    }
    const struct agape_json *tags = h->json_get(in, "tags");
    enum agape_json_type gt = h->json_type(tags);
    if (gt == AGAPE_JSON_OBJECT) {
        if (h->json_size(tags) > SENTRY_TAGS_MAX) {
            snprintf(call->err, sizeof(call->err), "tags: at most %d", SENTRY_TAGS_MAX);
            return -1;
        }
        e->tags = tags;
    } else if (gt != AGAPE_JSON_ABSENT && gt != AGAPE_JSON_NULL) {
        call_err(call, "tags must be an object {\"key\": \"value\"}");
        return -1;
    }
    return 0;
}

void sentry_error_fini(const struct agape_host *h, struct sentry_error *e)
{
    h->buf_free(e->message);
    h->buf_free(e->exc_value);
    e->message = NULL;
    e->exc_value = NULL;
}

int sentry_error_tag(const struct agape_host *h, const struct sentry_error *e, size_t i,
                     size_t value_max, const char **key, struct agape_buf **val)
{
    const struct agape_json *v = NULL;
    char tmp[32];
    const char *text = NULL;

    *val = NULL;
    *key = h->json_key_at(e->tags, i, &v);
    if (*key == NULL) {
        return -1;
    }
    switch (h->json_type(v)) {
    case AGAPE_JSON_STRING:
        text = h->json_str(v, "");
        break;
    case AGAPE_JSON_INT:
        snprintf(tmp, sizeof(tmp), "%lld", (long long)h->json_int(v, "", 0));
        text = tmp;
        break;
    case AGAPE_JSON_BOOL:
        text = h->json_bool(v, "", false) ? "true" : "false";
        break;
    default:
        return 1;
    }
    if (!sentry_tag_key_ok(*key)) {
        return 1;
    }
    struct agape_buf *b = h->buf_new();
    if (b == NULL || sentry_scrub(h, b, text, strlen(text)) != AGAPE_OK) {
        h->buf_free(b);
        return -1;
    }
    size_t n = sentry_utf8_cut(h->buf_data(b), h->buf_len(b), value_max);
    if (n < h->buf_len(b)) {
        struct agape_buf *cut = h->buf_new();
        int rc = cut ? h->buf_add(cut, h->buf_data(b), n) : AGAPE_ENOMEM;
        h->buf_free(b);
        if (rc != AGAPE_OK) {
            h->buf_free(cut);
            return -1;
        }
        b = cut;
    }
    *val = b;
    return 0;
}

const char *sentry_user_field(const struct agape_host *h, const struct sentry_error *e,
                              const char *name, char tmp[32])
{
    const struct agape_json *v = h->json_get(e->user, name);
    switch (h->json_type(v)) {
    case AGAPE_JSON_STRING:
        return h->json_str(v, "");
    case AGAPE_JSON_INT:
        snprintf(tmp, 32, "%lld", (long long)h->json_int(v, "", 0));
        return tmp;
    default:
        return NULL;
    }
}
