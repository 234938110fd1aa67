/* smtp — e-mail through any SMTP server (the fallback behind SendGrid).
 *
 * send_email builds the RFC 5322 message (smtp_message.c) and hands it to the
 * core's client as an smtp:// or smtps:// transfer: the envelope through
 * host->req_mail, the AUTH credentials through req_basic_auth. The core
 * answers with status = the last SMTP reply code, which smtp_reply() maps
 * to an outcome (README.md has the table). */
#include "smtp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMTP_SUBJECT_MAX 998
#define SMTP_NAME_MAX 256

static const struct agape_option smtp_options[] = {
    {.name = "url",
     .flags = AGAPE_OPT_REQUIRED,
     .env = "SMTP_URL",
     .description = "smtp://host:port (STARTTLS optional or required) or smtps://host:port (TLS)",
     .type = AGAPE_OPT_SMTP_URL},
    {.name = "username",
     .env = "SMTP_USERNAME",
     .description = "SMTP AUTH user; without it no AUTH is attempted"},
    {.name = "password",
     .flags = AGAPE_OPT_SECRET,
     .env = "SMTP_PASSWORD",
     .description = "SMTP AUTH password"},
    {.name = "starttls",
     .env = "SMTP_STARTTLS",
     .description = "true to require STARTTLS on smtp:// (refuse plain text)",
     .type = AGAPE_OPT_BOOL,
     .dflt = "false"},
    {.name = "from_email",
     .env = "DEFAULT_FROM_EMAIL",
     .description = "default sender address; a message's own from wins"},
    {0},};

static void smtp_destroy(void *p)
{
    free(p);
}

/* The core has read the options by their declared types (plugin.h): url is
 * a checked smtp:// or smtps:// URL, starttls a boolean, the strings are
 * non-empty or absent. */
static int smtp_init(const struct agape_host *host, const struct agape_json *conf, void **out,
                     char *err, size_t errlen)
{
    struct smtp_ctx *ctx = NULL;
    const char *url = host->json_str(conf, "url");
    const char *user = host->json_str(conf, "username");
    const char *pass = host->json_str(conf, "password");
    const char *from = host->json_str(conf, "from_email");
    bool starttls = host->json_bool(conf, "starttls", false);
    int rc = AGAPE_EINVAL;

    *out = NULL;
    if (url == NULL) {
        snprintf(err, errlen, "url is required (set SMTP_URL)");
        goto out;
    }
    if (user != NULL &&
        (strchr(user, ':') != NULL || strpbrk(user, "\r\n") != NULL || strlen(user) > 256)) {
        snprintf(err, errlen, "username must be a string without ':' (SMTP_USERNAME)");
        goto out;
    }
    if (pass != NULL && (strpbrk(pass, "\r\n") != NULL || strlen(pass) > 256)) {
        snprintf(err, errlen, "password must be one line of text (SMTP_PASSWORD)");
        goto out;
    }
    if (pass != NULL && user == NULL) {
        snprintf(err, errlen, "password is set but username is not (SMTP_USERNAME)");
        goto out;
    }
    if (from != NULL && !smtp_addr_ok(from)) {
        snprintf(err, errlen, "from_email must be an e-mail address (DEFAULT_FROM_EMAIL)");
        goto out;
    }

    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ctx->url = url;
    ctx->username = user;
    ctx->password = pass;
    ctx->from_email = from;
    ctx->starttls = starttls;
    if (strncmp(url, "smtp://", 7) == 0 && !starttls) {
        host->log(NULL, AGAPE_LOG_INFO,
                  "smtp: STARTTLS is not required (SMTP_STARTTLS); credentials and mail may "
                  "cross the network in plain text");
    }
    *out = ctx;
    rc = AGAPE_OK;
out:
    return rc;
}

static enum agape_step smtp_fail(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum agape_step smtp_fail(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    return AGAPE_STEP_FAIL;
}

/* A string member of the input: NULL when absent, null or ""; false when
 * present with another type. */
static bool smtp_in_str(struct agape_call *call, const char *name, const char **out)
{
    const struct agape_host *h = call->host;
    enum agape_json_type t = h->json_type(h->json_get(call->input, name));
    *out = NULL;
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return true;
    }
    if (t != AGAPE_JSON_STRING) {
        snprintf(call->err, sizeof(call->err), "%s must be a string", name);
        return false;
    }
    const char *s = h->json_str(call->input, name);
    *out = s[0] == '\0' ? NULL : s;
    return true;
}

static bool smtp_crlf(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") != NULL;
}

/* The input → a message description; false with err set. */
static bool smtp_fields(struct agape_call *call, struct smtp_msg *m)
{
    const struct smtp_ctx *ctx = call->ctx;
    const char *tpl;

    memset(m, 0, sizeof(*m));
    if (!smtp_in_str(call, "message_id", &m->message_id) || !smtp_in_str(call, "to", &m->to) ||
        !smtp_in_str(call, "from", &m->from) || !smtp_in_str(call, "from_name", &m->from_name) ||
        !smtp_in_str(call, "subject", &m->subject) || !smtp_in_str(call, "text", &m->text) ||
        !smtp_in_str(call, "html", &m->html) || !smtp_in_str(call, "template_id", &tpl)) {
        return false;
    }
    /* Header injection: a CR or LF would end the header and start another. */
    const char *inj = smtp_crlf(m->to)          ? "to"
                      : smtp_crlf(m->from)      ? "from"
                      : smtp_crlf(m->subject)   ? "subject"
                      : smtp_crlf(m->from_name) ? "from_name"
                                                : NULL;
    if (inj != NULL) {
        snprintf(call->err, sizeof(call->err), "%s must not contain CR or LF", inj);
        return false;
    }
    if (!smtp_id_ok(m->message_id)) {
        snprintf(call->err, sizeof(call->err),
                 "message_id is required and must be usable in a Message-ID (letters, digits, "
                 "dots and !#$%%&'*+-/=?^_`{|}~, at most %d)",
                 SMTP_ID_MAX);
        return false;
    }
    if (!smtp_addr_ok(m->to)) {
        snprintf(call->err, sizeof(call->err), "to must be one e-mail address");
        return false;
    }
    if (m->from == NULL) {
        m->from = ctx->from_email;
    }
    if (m->from == NULL) {
        snprintf(call->err, sizeof(call->err),
                 "from is required: pass it or configure from_email (DEFAULT_FROM_EMAIL)");
        return false;
    }
    if (!smtp_addr_ok(m->from)) {
        snprintf(call->err, sizeof(call->err), "from must be one e-mail address");
        return false;
    }
    if (m->from_name != NULL && strlen(m->from_name) > SMTP_NAME_MAX) {
        snprintf(call->err, sizeof(call->err), "from_name is longer than %d bytes",
                 SMTP_NAME_MAX);
        return false;
    }
    if (tpl != NULL && m->text == NULL && m->html == NULL) {
        snprintf(call->err, sizeof(call->err),
                 "template_id needs a provider-side template, which SMTP has none of; "
                 "send text or html");
        return false;
    }
    if (m->subject == NULL) {
        snprintf(call->err, sizeof(call->err), "subject is required");
        return false;
    }
    if (strlen(m->subject) > SMTP_SUBJECT_MAX) {
        snprintf(call->err, sizeof(call->err), "subject is longer than %d bytes",
                 SMTP_SUBJECT_MAX);
        return false;
    }
    if (m->text == NULL && m->html == NULL) {
        snprintf(call->err, sizeof(call->err), "text or html is required");
        return false;
    }
    return true;
}

static enum agape_step smtp_request(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct smtp_ctx *ctx = call->ctx;
    struct smtp_msg m;
    struct agape_buf *msg = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (!smtp_fields(call, &m)) {
        return AGAPE_STEP_FAIL;
    }
    m.now_ms = h->now_ms();
    msg = h->buf_new();
    int rc = msg ? smtp_message(h, &m, msg) : AGAPE_ENOMEM;
    if (rc != AGAPE_OK) {
        st = smtp_fail(call, "cannot build the message (rc %d)", rc);
        goto out;
    }
    const char *rcpt[1] = {m.to};
    rc = h->req_start(call, "POST", ctx->url);
    if (rc == AGAPE_OK) {
        rc = h->req_body(call, "message/rfc822", h->buf_data(msg), h->buf_len(msg));
        if (rc == AGAPE_ERANGE) {
            st = smtp_fail(call, "the message is too large (%zu bytes)", h->buf_len(msg));
            goto out;
        }
    }
    if (rc == AGAPE_OK) {
        rc = h->req_mail(call, m.from, rcpt, 1, ctx->starttls);
    }
    if (rc == AGAPE_OK && ctx->username != NULL) {
        rc = h->req_basic_auth(call, ctx->username, ctx->password ? ctx->password : "");
    }
    if (rc != AGAPE_OK) {
        st = smtp_fail(call, "cannot build the SMTP transfer (rc %d)", rc);
        goto out;
    }
    st = AGAPE_STEP_SEND;
out:
    h->buf_free(msg);
    return st;
}

/* The last SMTP reply code → an outcome (README.md, "Replies"). */
static enum agape_step smtp_reply(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    int code = call->resp->status;
    const char *id = h->json_str(call->input, "message_id");
    char ref[SMTP_ID_MAX + 16];
    int rc = AGAPE_OK;

    if (code >= 200 && code <= 299) {
        call->outcome = AGAPE_OUTCOME_OK;
        snprintf(ref, sizeof(ref), "<%s@agape>", id ? id : "");
        rc = h->json_set_str(call->result, "provider_ref", ref);
        if (rc == AGAPE_OK) {
            rc = h->json_set_str(call->result, "status", "sent");
        }
    } else if (code == 530 || code == 534 || code == 535) {
        call->outcome = AGAPE_OUTCOME_AUTH;
        snprintf(call->err, sizeof(call->err),
                 "the SMTP server refused the credentials (reply %d; check SMTP_USERNAME, "
                 "SMTP_PASSWORD)",
                 code);
    } else if (code == 550 || code == 551 || code == 553) {
        call->outcome = AGAPE_OUTCOME_DECLINED;
        snprintf(call->err, sizeof(call->err),
                 "the SMTP server refused the recipient (reply %d: mailbox unavailable)", code);
        rc = h->json_set_str(call->result, "status", "failed");
        if (rc == AGAPE_OK) {
            rc = h->json_set_int(call->result, "error_code", code);
        }
    } else if (code >= 400 && code <= 499) {
        call->outcome = AGAPE_OUTCOME_UNAVAILABLE;
        snprintf(call->err, sizeof(call->err),
                 "the SMTP server answered %d (temporary failure)", code);
    } else if (code >= 500 && code <= 599) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        snprintf(call->err, sizeof(call->err), "the SMTP server refused the message (reply %d)",
                 code);
    } else {
        call->outcome = AGAPE_OUTCOME_UNKNOWN;
        snprintf(call->err, sizeof(call->err), "unexpected SMTP reply %d", code);
    }
    if (rc != AGAPE_OK) {
        return smtp_fail(call, "out of memory");
    }
    return AGAPE_STEP_DONE;
}

static enum agape_step smtp_send_email(struct agape_call *call)
{
    if (call->step == 0) {
        return smtp_request(call);
    }
    if (call->step != 1 || call->resp == NULL) {
        return smtp_fail(call, "send_email has one transfer; called at step %d", call->step);
    }
    return smtp_reply(call);
}

static const struct agape_messaging_ops smtp_messaging_ops = {
    .size = sizeof(struct agape_messaging_ops),
    .send_email = smtp_send_email,
    .send_sms = NULL,
};

static const struct agape_plugin smtp_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "smtp",
    .version = "1.0.0",
    .kinds = AGAPE_KIND_MESSAGING,
    .options = smtp_options,
    .init = smtp_init,
    .destroy = smtp_destroy,
    .messaging = &smtp_messaging_ops,
};

AGAPE_PLUGIN_DEFINE(smtp_plugin)
