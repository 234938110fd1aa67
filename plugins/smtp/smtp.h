/* smtp — plugin-private declarations shared by the plugin's files.
 *
 * The context is made by smtp_init() on the main thread and only read
 * afterwards, so the step function is reentrant. */
#ifndef SMTP_H
#define SMTP_H

#include <agape/plugin.h>

#define SMTP_ID_MAX 200 /* message_id, the left part of the Message-ID */

/* The strings are borrowed from the normalized configuration init received,
 * which the core keeps until destroy. */
struct smtp_ctx {
    const char *url;        /* smtp://host:port or smtps://host:port */
    const char *username;   /* SMTP AUTH user, or NULL (no AUTH) */
    const char *password;   /* never logged, never in err or result */
    const char *from_email; /* the default sender, or NULL */
    bool starttls;          /* require STARTTLS on smtp:// */
};

/* What goes into one message; every string is borrowed. */
struct smtp_msg {
    const char *message_id; /* checked by smtp_id_ok() */
    const char *from;       /* envelope and header sender */
    const char *from_name;  /* or NULL */
    const char *to;
    const char *subject;
    const char *text;       /* or NULL */
    const char *html;       /* or NULL; at least one of text and html */
    int64_t now_ms;         /* for the Date header */
};

/* smtp_message.c */

/* Append the RFC 5322 message (CRLF line ends; headers Date, From, To,
 * Subject, Message-ID, MIME-Version, then a text/plain or text/html body or
 * a multipart/alternative of both, base64 in lines of 76) to `out`. Returns
 * AGAPE_OK or the buffer's error. The caller has checked every field. */
int smtp_message(const struct agape_host *h, const struct smtp_msg *m, struct agape_buf *out);

/* message_id usable as the left part of a Message-ID: a dot-atom of at most
 * SMTP_ID_MAX characters. */
bool smtp_id_ok(const char *id);

/* An address for the envelope and the headers: 3 to 320 bytes, one '@' with
 * text on both sides, printable ASCII without spaces, quotes, angle
 * brackets, commas, semicolons or parentheses. */
bool smtp_addr_ok(const char *s);

/* RFC 5322 date of a unix time in ms, UTC ("Thu, 28 Nov 2026 10:00:00 +0000");
 * out must hold 64 bytes. */
void smtp_date(int64_t ms, char out[64]);

#endif
