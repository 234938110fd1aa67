/* sendgrid_mail — send_email as one v3 Mail Send call.
 *
 * Step 0 checks the normalized input and builds the JSON body (PROVIDERS.md
 * §4.1, specs/sendgrid.json); step 1 reads the answer: 202 with X-Message-Id
 * is success, anything else goes to sendgrid_classify_error().
 *
 * The gateway's message id travels in personalizations[0].custom_args so that
 * every Event Webhook event names it (SendGrid echoes custom_args as
 * top-level event fields). It is put in the personalization and not at the
 * top level because the official spec types the top-level custom_args as a
 * string, while the personalization's is an object; SendGrid echoes either. */
#include "sendgrid.h"

#include <stdio.h>
#include <string.h>

#define SENDGRID_ID_MAX 255        /* message_id, in custom_args */
#define SENDGRID_TEMPLATE_MAX 128  /* template ids are "d-" + 32 hex */
#define SENDGRID_SUBJECT_MAX 998   /* one RFC 5322 line */
#define SENDGRID_NAME_MAX 256
#define SENDGRID_REF_MAX 128       /* X-Message-Id */

/* A string member of the input: NULL when absent or null; false (with err
 * naming the field) when present with another type. Empty strings count as
 * absent when `empty_is_absent`. */
static bool sendgrid_in_str(struct agape_call *call, const char *name, bool empty_is_absent,
                            const char **out)
{
    const struct agape_host *h = call->host;
    const struct agape_json *v = h->json_get(call->input, name);
    enum agape_json_type t = h->json_type(v);
    *out = NULL;
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return true;
    }
    if (t != AGAPE_JSON_STRING) {
        sendgrid_err(call, "%s must be a string", name);
        return false;
    }
    const char *s = h->json_str(call->input, name);
    *out = (empty_is_absent && s[0] == '\0') ? NULL : s;
    return true;
}

static bool sendgrid_has_crlf(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") != NULL;
}

static bool sendgrid_printable(const char *s, size_t max)
{
    size_t n = 0;
    for (; *s; s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || n >= max) {
            return false;
        }
    }
    return n > 0;
}

/* The JSON body, into `out`. Returns false with err set on bad input. */
static bool sendgrid_body(struct agape_call *call, struct agape_buf *out)
{
    const struct agape_host *h = call->host;
    const struct sendgrid_ctx *ctx = call->ctx;
    const char *id, *to, *from, *name, *subject, *text, *html, *tpl;
    struct agape_json *root = NULL;
    bool ok = false;

    if (!sendgrid_in_str(call, "message_id", true, &id) ||
        !sendgrid_in_str(call, "to", true, &to) || !sendgrid_in_str(call, "from", true, &from) ||
        !sendgrid_in_str(call, "from_name", true, &name) ||
        !sendgrid_in_str(call, "subject", true, &subject) ||
        !sendgrid_in_str(call, "text", true, &text) ||
        !sendgrid_in_str(call, "html", true, &html) ||
        !sendgrid_in_str(call, "template_id", true, &tpl)) {
        return false;
    }
    const struct agape_json *data = h->json_get(call->input, "data");
    enum agape_json_type dt = h->json_type(data);

    if (id == NULL || !sendgrid_printable(id, SENDGRID_ID_MAX)) {
        sendgrid_err(call, "message_id is required (printable ASCII, at most %d characters)",
                     SENDGRID_ID_MAX);
        return false;
    }
    if (sendgrid_has_crlf(to) || sendgrid_has_crlf(from) || sendgrid_has_crlf(subject) ||
        sendgrid_has_crlf(name)) {
        sendgrid_err(call, "%s must not contain CR or LF",
                     sendgrid_has_crlf(to)        ? "to"
                     : sendgrid_has_crlf(from)    ? "from"
                     : sendgrid_has_crlf(subject) ? "subject"
                                                  : "from_name");
        return false;
    }
    if (to == NULL || !sendgrid_addr_ok(to)) {
        sendgrid_err(call, "to must be one e-mail address");
        return false;
    }
    if (from == NULL) {
        from = ctx->from_email;
    }
    if (from == NULL) {
        sendgrid_err(call, "from is required: pass it or configure from_email "
                           "(DEFAULT_FROM_EMAIL)");
        return false;
    }
    if (!sendgrid_addr_ok(from)) {
        sendgrid_err(call, "from must be one e-mail address");
        return false;
    }
    if (name != NULL && strlen(name) > SENDGRID_NAME_MAX) {
        sendgrid_err(call, "from_name is longer than %d bytes", SENDGRID_NAME_MAX);
        return false;
    }
    if (subject != NULL && strlen(subject) > SENDGRID_SUBJECT_MAX) {
        sendgrid_err(call, "subject is longer than %d bytes", SENDGRID_SUBJECT_MAX);
        return false;
    }
    if (tpl != NULL && !sendgrid_printable(tpl, SENDGRID_TEMPLATE_MAX)) {
        sendgrid_err(call, "template_id must be a SendGrid template id such as d-0123…");
        return false;
    }
    if (dt != AGAPE_JSON_ABSENT && dt != AGAPE_JSON_NULL && dt != AGAPE_JSON_OBJECT) {
        sendgrid_err(call, "data must be an object");
        return false;
    }
    if (tpl == NULL) {
        if (subject == NULL) {
            sendgrid_err(call, "subject is required (or template_id)");
            return false;
        }
        if (text == NULL && html == NULL) {
            sendgrid_err(call, "text or html is required (or template_id)");
            return false;
        }
    }

    root = h->json_new_object();
    struct agape_json *pers = h->json_add_array(root, "personalizations");
    struct agape_json *p0 = h->json_add_object(pers, NULL);
    struct agape_json *tos = h->json_add_array(p0, "to");
    struct agape_json *to0 = h->json_add_object(tos, NULL);
    int rc = to0 ? h->json_set_str(to0, "email", to) : AGAPE_ENOMEM;
    /* Template data goes with the template only: the content of a message
     * the core rendered itself does not need it. */
    if (rc == AGAPE_OK && tpl != NULL && dt == AGAPE_JSON_OBJECT) {
        rc = h->json_set_copy(p0, "dynamic_template_data", data);
    }
    struct agape_json *args = rc == AGAPE_OK ? h->json_add_object(p0, "custom_args") : NULL;
    rc = args ? h->json_set_str(args, "agape_message_id", id) : AGAPE_ENOMEM;
    struct agape_json *fr = rc == AGAPE_OK ? h->json_add_object(root, "from") : NULL;
    rc = fr ? h->json_set_str(fr, "email", from) : AGAPE_ENOMEM;
    if (rc == AGAPE_OK && name != NULL) {
        rc = h->json_set_str(fr, "name", name);
    }
    if (rc == AGAPE_OK && subject != NULL) {
        rc = h->json_set_str(root, "subject", subject);
    }
    if (rc == AGAPE_OK && tpl == NULL) {
        /* text/plain first, then text/html (SendGrid requires that order). */
        struct agape_json *content = h->json_add_array(root, "content");
        rc = content ? AGAPE_OK : AGAPE_ENOMEM;
        const char *types[2] = {"text/plain", "text/html"};
        const char *values[2] = {text, html};
        for (int i = 0; i < 2 && rc == AGAPE_OK; i++) {
            if (values[i] == NULL) {
                continue;
            }
            struct agape_json *part = h->json_add_object(content, NULL);
            rc = part ? h->json_set_str(part, "type", types[i]) : AGAPE_ENOMEM;
            if (rc == AGAPE_OK) {
                rc = h->json_set_str(part, "value", values[i]);
            }
        }
    }
    if (rc == AGAPE_OK && tpl != NULL) {
        rc = h->json_set_str(root, "template_id", tpl);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_dump(root, out);
    }
    if (rc != AGAPE_OK) {
        sendgrid_err(call, "cannot build the request body (rc %d)", rc);
        goto out;
    }
    ok = true;
out:
    h->json_free(root);
    return ok;
}

static enum agape_step sendgrid_request(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct sendgrid_ctx *ctx = call->ctx;
    struct agape_buf *body = h->buf_new();
    struct agape_buf *url = h->buf_new();
    struct agape_buf *auth = h->buf_new();
    enum agape_step st = AGAPE_STEP_FAIL;

    if (body == NULL || url == NULL || auth == NULL) {
        sendgrid_err(call, "out of memory");
        goto out;
    }
    if (!sendgrid_body(call, body)) {
        goto out;
    }
    int rc = h->buf_printf(url, "%s/v3/mail/send", ctx->base_url);
    if (rc == AGAPE_OK) {
        rc = h->buf_printf(auth, "Bearer %s", ctx->api_key);
    }
    if (rc == AGAPE_OK) {
        rc = h->req_start(call, "POST", h->buf_data(url));
    }
    if (rc == AGAPE_OK) {
        rc = h->req_header(call, "Authorization", h->buf_data(auth));
    }
    if (rc == AGAPE_OK) {
        rc = h->req_body(call, "application/json", h->buf_data(body), h->buf_len(body));
    }
    if (rc != AGAPE_OK) {
        sendgrid_err(call, "cannot build the request (rc %d)", rc);
        goto out;
    }
    st = AGAPE_STEP_SEND;
out:
    h->buf_free(auth);
    h->buf_free(url);
    h->buf_free(body);
    return st;
}

/* 2xx: SendGrid took the message. X-Message-Id is the prefix of every later
 * event's sg_message_id; sandbox mode may answer 200 without it. */
static enum agape_step sendgrid_accepted(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const char *ref = h->resp_header(call, "X-Message-Id");
    int rc = AGAPE_OK;

    call->outcome = AGAPE_OUTCOME_OK;
    if (ref != NULL && sendgrid_printable(ref, SENDGRID_REF_MAX)) {
        rc = h->json_set_str(call->result, "provider_ref", ref);
    } else {
        h->log(call->provider, AGAPE_LOG_WARN,
               "SendGrid accepted a message (HTTP %d) without a usable X-Message-Id; its "
               "events can be matched by agape_message_id only",
               call->resp->status);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "status", "sent");
    }
    if (rc != AGAPE_OK) {
        sendgrid_err(call, "out of memory");
        return AGAPE_STEP_FAIL;
    }
    return AGAPE_STEP_DONE;
}

enum agape_step sendgrid_send_email(struct agape_call *call)
{
    if (call->step == 0) {
        return sendgrid_request(call);
    }
    if (call->step != 1 || call->resp == NULL) {
        sendgrid_err(call, "send_email has one request; called at step %d", call->step);
        return AGAPE_STEP_FAIL;
    }
    if (call->resp->status >= 200 && call->resp->status <= 299) {
        return sendgrid_accepted(call);
    }
    return sendgrid_classify_error(call);
}
