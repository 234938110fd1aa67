/* twilio_sms — send_sms as one Create Message call.
 *
 * Step 0 checks the input and builds the form (PROVIDERS.md §3.2,
 * specs/twilio.json); step 1 reads the Message resource from the 201.
 *
 * No idempotency header is sent: Twilio documents none for Messages (§3.5;
 * whether I-Twilio-Idempotency-Token works on REST requests is unconfirmed),
 * and inventing one would only suggest a protection that does not exist. A
 * retry after a lost answer may therefore send the SMS twice; the core
 * counts such retries as possible duplicates. input.idempotency_key is not
 * used. */
#include "twilio.h"

#include <stdio.h>
#include <string.h>

#define TWILIO_BODY_MAX_CHARS 1600
#define TWILIO_CALLBACK_MAX 2048
#define TWILIO_REF_MAX 64

/* A string member of the input: NULL when absent, null or ""; false (with
 * err naming the field) when present with another type. */
static bool twilio_in_str(struct agape_call *call, const char *name, const char **out)
{
    const struct agape_host *h = call->host;
    enum agape_json_type t = h->json_type(h->json_get(call->input, name));
    *out = NULL;
    if (t == AGAPE_JSON_ABSENT || t == AGAPE_JSON_NULL) {
        return true;
    }
    if (t != AGAPE_JSON_STRING) {
        twilio_err(call, "%s must be a string", name);
        return false;
    }
    const char *s = h->json_str(call->input, name);
    *out = s[0] == '\0' ? NULL : s;
    return true;
}

/* E.164: ^\+[1-9][0-9]{1,14}$ (PROVIDERS.md §3.2). */
static bool twilio_e164(const char *s)
{
    if (s == NULL || s[0] != '+' || s[1] < '1' || s[1] > '9') {
        return false;
    }
    size_t n = 0;
    for (const char *p = s + 1; *p; p++, n++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
    }
    return n >= 2 && n <= 15;
}

/* Characters as Twilio counts them for the 1600 limit (code points). */
static size_t twilio_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        if (((unsigned char)*s & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

static bool twilio_sender_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) {
        return false;
    }
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* An absolute http(s) URL without spaces or control characters. */
static bool twilio_url_ok(const char *s)
{
    if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0) {
        return false;
    }
    size_t n = 0;
    for (; *s; s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || n >= TWILIO_CALLBACK_MAX) {
            return false;
        }
    }
    return true;
}

struct twilio_fields {
    const char *to;
    const char *sender_key; /* "From" or "MessagingServiceSid" */
    const char *sender;
    const char *body;
    const char *callback;
};

static bool twilio_fields(struct agape_call *call, struct twilio_fields *f)
{
    const struct twilio_ctx *ctx = call->ctx;
    const char *id, *from;

    memset(f, 0, sizeof(*f));
    if (!twilio_in_str(call, "message_id", &id) || !twilio_in_str(call, "to", &f->to) ||
        !twilio_in_str(call, "from", &from) || !twilio_in_str(call, "body", &f->body) ||
        !twilio_in_str(call, "status_callback", &f->callback)) {
        return false;
    }
    if (id == NULL) {
        twilio_err(call, "message_id is required");
        return false;
    }
    if (!twilio_e164(f->to)) {
        twilio_err(call, "to must be a phone number in E.164 form (+ and 2 to 15 digits, "
                         "e.g. +14155550100)");
        return false;
    }
    if (f->body == NULL) {
        twilio_err(call, "body is required");
        return false;
    }
    if (twilio_chars(f->body) > TWILIO_BODY_MAX_CHARS) {
        twilio_err(call, "body is longer than %d characters (Twilio's limit)",
                   TWILIO_BODY_MAX_CHARS);
        return false;
    }
    /* The message's own sender, else the Messaging Service (which picks a
     * sender from its pool), else the configured number. */
    if (from != NULL) {
        if (!twilio_sender_ok(from)) {
            twilio_err(call, "from must be a phone number, short code or sender id "
                             "(at most 64 printable characters)");
            return false;
        }
        f->sender_key = "From";
        f->sender = from;
    } else if (ctx->messaging_service_sid != NULL) {
        f->sender_key = "MessagingServiceSid";
        f->sender = ctx->messaging_service_sid;
    } else if (ctx->from != NULL) {
        f->sender_key = "From";
        f->sender = ctx->from;
    } else {
        twilio_err(call, "from is required: pass it or configure from (TWILIO_PHONE_NUMBER) "
                         "or messaging_service_sid");
        return false;
    }
    if (f->callback != NULL && !twilio_url_ok(f->callback)) {
        twilio_err(call, "status_callback must be an absolute http(s) URL without spaces "
                         "(at most %d characters)",
                   TWILIO_CALLBACK_MAX);
        return false;
    }
    return true;
}

static enum agape_step twilio_request(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct twilio_ctx *ctx = call->ctx;
    struct twilio_fields f;
    struct agape_buf *form = NULL, *url = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (!twilio_fields(call, &f)) {
        return AGAPE_STEP_FAIL;
    }
    form = h->buf_new();
    url = h->buf_new();
    if (form == NULL || url == NULL) {
        twilio_err(call, "out of memory");
        goto out;
    }
    /* In this order: To, From or MessagingServiceSid, Body, StatusCallback. */
    int rc = h->form_add(form, "To", f.to);
    if (rc == AGAPE_OK) {
        rc = h->form_add(form, f.sender_key, f.sender);
    }
    if (rc == AGAPE_OK) {
        rc = h->form_add(form, "Body", f.body);
    }
    if (rc == AGAPE_OK && f.callback != NULL) {
        rc = h->form_add(form, "StatusCallback", f.callback);
    }
    if (rc == AGAPE_OK) {
        rc = h->buf_printf(url, "%s/2010-04-01/Accounts/%s/Messages.json", ctx->base_url,
                           ctx->account_sid);
    }
    if (rc == AGAPE_OK) {
        rc = h->req_start(call, "POST", h->buf_data(url));
    }
    if (rc == AGAPE_OK) {
        rc = h->req_basic_auth(call, ctx->account_sid, ctx->auth_token);
    }
    if (rc == AGAPE_OK) {
        rc = h->req_body(call, "application/x-www-form-urlencoded", h->buf_data(form),
                         h->buf_len(form));
    }
    if (rc != AGAPE_OK) {
        twilio_err(call, "cannot build the request (rc %d)", rc);
        goto out;
    }
    st = AGAPE_STEP_SEND;
out:
    h->buf_free(form);
    h->buf_free(url);
    return st;
}

/* Twilio's status at creation → ours. "queued" until Twilio has handed the
 * message on, "sent" after; NULL for a status that means it will not go. */
static const char *twilio_created_status(const char *s)
{
    static const struct {
        const char *twilio;
        const char *ours;
    } map[] = {
        {"queued", "queued"},    {"accepted", "queued"}, {"scheduled", "queued"},
        {"sending", "sent"},     {"sent", "sent"},       {"delivered", "sent"},
        {"read", "sent"},        {"partially_delivered", "sent"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i].twilio, s) == 0) {
            return map[i].ours;
        }
    }
    return NULL;
}

static bool twilio_ref_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 3 || n > TWILIO_REF_MAX) {
        return false;
    }
    for (; *s; s++) {
        char c = *s;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            return false;
        }
    }
    return true;
}

/* 2xx: the Message resource. */
static enum agape_step twilio_created(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    struct agape_json *msg = h->json_parse(call->resp->body, call->resp->body_len, NULL, 0);
    const char *sid = h->json_str(msg, "sid");
    const char *status = h->json_str(msg, "status");
    enum agape_step st = AGAPE_STEP_DONE;
    int rc = AGAPE_OK;

    if (!twilio_ref_ok(sid) || status == NULL) {
        /* Twilio did something and we cannot tell what: the SMS may be on its way. */
        call->outcome = AGAPE_OUTCOME_UNKNOWN;
        twilio_err(call, "Twilio answered HTTP %d without a readable Message (sid, status)",
                   call->resp->status);
        goto out;
    }
    rc = h->json_set_str(call->result, "provider_ref", sid);
    const char *ours = twilio_created_status(status);
    if (ours != NULL) {
        call->outcome = AGAPE_OUTCOME_OK;
        if (rc == AGAPE_OK) {
            rc = h->json_set_str(call->result, "status", ours);
        }
    } else if (strcmp(status, "failed") == 0 || strcmp(status, "undelivered") == 0 ||
               strcmp(status, "canceled") == 0) {
        /* Refused at creation (rare): it will not be sent. */
        int64_t code = h->json_int(msg, "error_code", 0);
        const char *em = h->json_str(msg, "error_message");
        call->outcome = AGAPE_OUTCOME_DECLINED;
        twilio_err(call, "Twilio created the message as %s (error_code %lld): %.*s", status,
                   (long long)code, em ? twilio_utf8_cut(em, 160) : 0, em ? em : "");
        if (rc == AGAPE_OK) {
            rc = h->json_set_str(call->result, "status", "failed");
        }
        if (rc == AGAPE_OK && code != 0) {
            rc = h->json_set_int(call->result, "error_code", code);
        }
    } else {
        /* A status this plugin does not know: Twilio has the message. */
        call->outcome = AGAPE_OUTCOME_OK;
        h->log(call->provider, AGAPE_LOG_WARN,
               "Twilio created %s with an unknown status; reported as queued", sid);
        if (rc == AGAPE_OK) {
            rc = h->json_set_str(call->result, "status", "queued");
        }
    }
    if (rc != AGAPE_OK) {
        twilio_err(call, "out of memory");
        st = AGAPE_STEP_FAIL;
    }
out:
    h->json_free(msg);
    return st;
}

enum agape_step twilio_send_sms(struct agape_call *call)
{
    if (call->step == 0) {
        return twilio_request(call);
    }
    if (call->step != 1 || call->resp == NULL) {
        twilio_err(call, "send_sms has one request; called at step %d", call->step);
        return AGAPE_STEP_FAIL;
    }
    if (call->resp->status >= 200 && call->resp->status <= 299) {
        return twilio_created(call);
    }
    return twilio_classify_error(call);
}
