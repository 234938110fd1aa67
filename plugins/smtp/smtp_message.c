/* smtp_message — the RFC 5322 / MIME text of one message.
 *
 * Choices, and why:
 * - Bodies are base64 (RFC 2045) in lines of 76: any UTF-8 text, any line
 *   length and any line starting with '.' or "From " goes through unchanged.
 *   Line ends in the text are made CRLF first (the canonical form of text types).
 *   libcurl still dot-stuffs what it uploads (lib/smtp.c escapes "\r\n."), so
 *   nothing here depends on the body alphabet for SMTP transparency.
 * - The multipart boundary is "=_agape_" + 32 hex digits of SHA-256 of the
 *   message id: stable for a message, and "=_" cannot occur in base64 text.
 * - Subject and display name go out as they are when they are printable
 *   ASCII (and hold no "=?", which a reader would take for an encoded word);
 *   otherwise as RFC 2047 encoded words (=?UTF-8?B?…?=), each holding whole
 *   UTF-8 characters, folded so that no line exceeds 76 characters.
 * - Message-ID is <message_id@agape>: the same for every attempt of a message,
 *   so a duplicate delivery after a lost answer is recognisable. */
#include "smtp.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define SMTP_B64_LINE 76
#define SMTP_HDR_LINE 76    /* lines holding encoded words (RFC 2047 §2) */
#define SMTP_PLAIN_MAX 900  /* a longer ASCII header text is encoded (and so folded) */

/* Appends with a sticky error: the first failure is kept. */
struct smtp_out {
    const struct agape_host *h;
    struct agape_buf *b;
    int rc;
    size_t line; /* characters on the current header line */
};

static void out_add(struct smtp_out *o, const char *s, size_t n)
{
    if (o->rc == AGAPE_OK) {
        o->rc = o->h->buf_add(o->b, s, n);
    }
    o->line += n;
}

static void out_str(struct smtp_out *o, const char *s)
{
    out_add(o, s, strlen(s));
}

static void out_crlf(struct smtp_out *o)
{
    out_add(o, "\r\n", 2);
    o->line = 0;
}

bool smtp_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > SMTP_ID_MAX || id[0] == '.' || id[n - 1] == '.') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool atext = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
        if (c == '.' && id[i + 1] == '.') {
            return false;
        }
        if (!atext && c != '.') {
            return false;
        }
    }
    return true;
}

bool smtp_addr_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    const char *at = s ? strchr(s, '@') : NULL;
    if (n < 3 || n > 320 || at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@')) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || strchr("\"<>,;()[]\\", c) != NULL) {
            return false;
        }
    }
    return true;
}

void smtp_date(int64_t ms, char out[64])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    /* Own names, not strftime: %a and %b follow the locale. */
    if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
        tm.tm_mon > 11) {
        snprintf(out, 64, "Thu, 01 Jan 1970 00:00:00 +0000");
        return;
    }
    snprintf(out, 64, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Printable ASCII, no "=?", not too long: fit to go out as it is. */
static bool smtp_plain(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c > 0x7e || (c == '=' && p[1] == '?')) {
            return false;
        }
    }
    return n <= SMTP_PLAIN_MAX;
}

/* RFC 2047 encoded words for `s`, after whatever is on the line: each word
 * holds whole UTF-8 characters and fits the line, folding ("\r\n ") when
 * the line is full. */
static void smtp_encoded_words(struct smtp_out *o, const char *s)
{
    size_t len = strlen(s);
    size_t i = 0;

    while (i < len && o->rc == AGAPE_OK) {
        /* " =?UTF-8?B?" + base64 + "?=" must fit in the line. */
        size_t room = o->line + 1 < SMTP_HDR_LINE ? SMTP_HDR_LINE - o->line - 1 : 0;
        if (room < 16) {
            out_crlf(o);
            out_add(o, " ", 1);
            room = SMTP_HDR_LINE - 1;
        } else {
            out_add(o, " ", 1);
        }
        size_t max = (room - 12) / 4 * 3;
        size_t n = len - i < max ? len - i : max;
        /* Back off to a character boundary (never split a UTF-8 sequence). */
        while (n > 0 && i + n < len && ((unsigned char)s[i + n] & 0xc0) == 0x80) {
            n--;
        }
        if (n == 0) {
            n = 1; /* cannot happen with valid UTF-8 and room ≥ 16 */
        }
        size_t before = o->h->buf_len(o->b);
        out_str(o, "=?UTF-8?B?");
        if (o->rc == AGAPE_OK) {
            o->rc = o->h->base64(o->b, s + i, n);
        }
        out_str(o, "?=");
        o->line += o->h->buf_len(o->b) - before - 12; /* the base64 just written */
        i += n;
    }
}

/* "Name: text" with text plain or encoded. */
static void smtp_header_text(struct smtp_out *o, const char *name, const char *text)
{
    out_str(o, name);
    out_str(o, ":");
    if (smtp_plain(text)) {
        out_str(o, " ");
        out_str(o, text);
    } else {
        smtp_encoded_words(o, text);
    }
    out_crlf(o);
}

/* From: addr, "Display Name" <addr>, or =?UTF-8?B?…?= <addr>. */
static void smtp_header_from(struct smtp_out *o, const char *name, const char *addr)
{
    out_str(o, "From:");
    if (name == NULL) {
        out_str(o, " ");
        out_str(o, addr);
        out_crlf(o);
        return;
    }
    if (smtp_plain(name)) {
        out_str(o, " \"");
        for (const char *p = name; *p; p++) {
            if (*p == '"' || *p == '\\') {
                out_add(o, "\\", 1);
            }
            out_add(o, p, 1);
        }
        out_str(o, "\"");
    } else {
        smtp_encoded_words(o, name);
    }
    if (o->line + 3 + strlen(addr) > SMTP_HDR_LINE) {
        out_crlf(o);
    }
    out_str(o, " <");
    out_str(o, addr);
    out_str(o, ">");
    out_crlf(o);
}

/* The text with every line end made CRLF, base64, in lines of 76. */
static void smtp_body_b64(struct smtp_out *o, const char *text)
{
    const struct agape_host *h = o->h;
    struct agape_buf *canon = h->buf_new();
    struct agape_buf *b64 = h->buf_new();
    int rc = (canon && b64) ? AGAPE_OK : AGAPE_ENOMEM;

    for (const char *p = text; *p && rc == AGAPE_OK;) {
        size_t run = strcspn(p, "\r\n");
        rc = h->buf_add(canon, p, run);
        p += run;
        if (*p == '\0' || rc != AGAPE_OK) {
            break;
        }
        /* CRLF, a lone CR or a lone LF: one line end. */
        p += (p[0] == '\r' && p[1] == '\n') ? 2 : 1;
        rc = h->buf_add(canon, "\r\n", 2);
    }
    if (rc == AGAPE_OK) {
        rc = h->base64(b64, h->buf_data(canon), h->buf_len(canon));
    }
    if (rc == AGAPE_OK) {
        const char *d = h->buf_data(b64);
        size_t n = h->buf_len(b64);
        for (size_t i = 0; i < n; i += SMTP_B64_LINE) {
            out_add(o, d + i, n - i < SMTP_B64_LINE ? n - i : SMTP_B64_LINE);
            out_crlf(o);
        }
    }
    if (rc != AGAPE_OK && o->rc == AGAPE_OK) {
        o->rc = rc;
    }
    h->buf_free(canon);
    h->buf_free(b64);
}

static void smtp_part_headers(struct smtp_out *o, const char *type)
{
    out_str(o, "Content-Type: ");
    out_str(o, type);
    out_str(o, "; charset=UTF-8");
    out_crlf(o);
    out_str(o, "Content-Transfer-Encoding: base64");
    out_crlf(o);
}

int smtp_message(const struct agape_host *h, const struct smtp_msg *m, struct agape_buf *out)
{
    struct smtp_out o = {.h = h, .b = out, .rc = AGAPE_OK, .line = 0};
    char date[64];
    char boundary[8 + 32 + 1];

    smtp_date(m->now_ms, date);
    out_str(&o, "Date: ");
    out_str(&o, date);
    out_crlf(&o);
    smtp_header_from(&o, m->from_name, m->from);
    out_str(&o, "To: ");
    out_str(&o, m->to);
    out_crlf(&o);
    smtp_header_text(&o, "Subject", m->subject);
    out_str(&o, "Message-ID: <");
    out_str(&o, m->message_id);
    out_str(&o, "@agape>");
    out_crlf(&o);
    out_str(&o, "MIME-Version: 1.0");
    out_crlf(&o);

    if (m->text == NULL || m->html == NULL) {
        smtp_part_headers(&o, m->text ? "text/plain" : "text/html");
        out_crlf(&o);
        smtp_body_b64(&o, m->text ? m->text : m->html);
        return o.rc;
    }

    unsigned char md[32];
    struct agape_buf *hex = h->buf_new();
    int rc = hex ? h->sha256(m->message_id, strlen(m->message_id), md) : AGAPE_ENOMEM;
    if (rc == AGAPE_OK) {
        rc = h->hex(hex, md, 16);
    }
    if (rc == AGAPE_OK) {
        snprintf(boundary, sizeof(boundary), "=_agape_%s", h->buf_data(hex));
    }
    h->buf_free(hex);
    if (rc != AGAPE_OK) {
        return rc;
    }
    /* Folded: the line would be 86 characters, over RFC 5322's 78. */
    out_str(&o, "Content-Type: multipart/alternative;");
    out_crlf(&o);
    out_str(&o, " boundary=\"");
    out_str(&o, boundary);
    out_str(&o, "\"");
    out_crlf(&o);
    out_crlf(&o);
    const char *types[2] = {"text/plain", "text/html"};
    const char *bodies[2] = {m->text, m->html};
    for (int i = 0; i < 2; i++) {
        out_str(&o, "--");
        out_str(&o, boundary);
        out_crlf(&o);
        smtp_part_headers(&o, types[i]);
        out_crlf(&o);
        smtp_body_b64(&o, bodies[i]);
    }
    out_str(&o, "--");
    out_str(&o, boundary);
    out_str(&o, "--");
    out_crlf(&o);
    return o.rc;
}
