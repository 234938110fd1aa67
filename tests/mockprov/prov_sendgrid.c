/* SendGrid v3 Mail Send, as PROVIDERS.md §4 and specs/sendgrid.json describe
 * it: Bearer API key, a JSON body, 202 with an empty body and X-Message-Id.
 *
 * The body is checked the way SendGrid checks it (the fields the gateway
 * sends): personalizations 1..1000 with to ≥ 1, from.email, a subject unless
 * a template is used, content items with type and non-empty value (text/plain
 * before text/html) or a template_id, custom_args values strings. A refusal
 * is 400 {"errors":[{"message","field","help"}]}. Keys must start with "SG.".
 *
 * Every accepted message is kept in the bucket "sendgrid.messages" under its
 * X-Message-Id (GET /_mock/state/sendgrid.messages): {"message_id", "request"
 * (the parsed body), "agape_message_id" (from custom_args, if any)}. */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sg_error(struct mock_resp *rs, int status, const char *field, const char *message)
{
    json_t *e = json_pack("{s:s, s:o, s:n}", "message", message, "field",
                          field ? json_string(field) : json_null(), "help");
    mock_json(rs, status, json_pack("{s:[o]}", "errors", e));
}

static bool sg_email_ok(json_t *v)
{
    const char *s = json_string_value(v);
    const char *at = s ? strchr(s, '@') : NULL;
    return at != NULL && at != s && at[1] != '\0' && strpbrk(s, " \r\n<>,") == NULL;
}

/* The first problem with the body, as SendGrid would name it; NULL if none. */
static const char *sg_check(json_t *body, const char **field)
{
    *field = NULL;
    if (!json_is_object(body)) {
        return "The request body must be a JSON object.";
    }
    json_t *pers = json_object_get(body, "personalizations");
    const char *tpl = json_string_value(json_object_get(body, "template_id"));
    bool top_subject = json_string_length(json_object_get(body, "subject")) > 0;
    if (!json_is_array(pers) || json_array_size(pers) == 0 || json_array_size(pers) > 1000) {
        *field = "personalizations";
        return "The personalizations field is required and must have at least one "
               "personalization.";
    }
    size_t i;
    json_t *p;
    json_array_foreach(pers, i, p) {
        json_t *to = json_object_get(p, "to");
        if (!json_is_array(to) || json_array_size(to) == 0) {
            *field = "personalizations.0.to";
            return "The to array is required for all personalization objects, and must have "
                   "at least one email object with a valid email address.";
        }
        size_t j;
        json_t *t;
        json_array_foreach(to, j, t) {
            if (!sg_email_ok(json_object_get(t, "email"))) {
                *field = "personalizations.0.to.0.email";
                return "Does not contain a valid address.";
            }
        }
        if (!tpl && !top_subject && json_string_length(json_object_get(p, "subject")) == 0) {
            *field = "subject";
            return "The subject is required. You can get around this requirement if you use a "
                   "template with a subject defined or if every personalization has a subject "
                   "defined.";
        }
        json_t *args = json_object_get(p, "custom_args");
        const char *k;
        json_t *v;
        if (args != NULL && !json_is_object(args)) {
            *field = "personalizations.0.custom_args";
            return "Invalid type. Expected: object, given: other.";
        }
        json_object_foreach(args, k, v) {
            if (!json_is_string(v)) {
                *field = "personalizations.0.custom_args";
                return "Invalid type. Expected: string, given: other.";
            }
        }
        json_t *data = json_object_get(p, "dynamic_template_data");
        if (data != NULL && !json_is_object(data)) {
            *field = "personalizations.0.dynamic_template_data";
            return "Invalid type. Expected: object, given: other.";
        }
    }
    if (!sg_email_ok(json_object_get(json_object_get(body, "from"), "email"))) {
        *field = "from.email";
        return "The from object must be provided for every email send. It is an object that "
               "requires the email parameter, but may also contain a name parameter.";
    }
    json_t *content = json_object_get(body, "content");
    if (content == NULL && tpl == NULL) {
        *field = "content";
        return "Unless a valid template_id is provided, the content parameter is required.";
    }
    if (content != NULL && (!json_is_array(content) || json_array_size(content) == 0)) {
        *field = "content";
        return "The content value must be an array of at least one content object.";
    }
    bool seen_html = false;
    json_array_foreach(content, i, p) {
        const char *type = json_string_value(json_object_get(p, "type"));
        if (type == NULL || type[0] == '\0') {
            *field = "content.0.type";
            return "The content type parameter is required.";
        }
        if (json_string_length(json_object_get(p, "value")) == 0) {
            *field = "content.0.value";
            return "The content value must be a string at least one character in length.";
        }
        if (strcmp(type, "text/plain") == 0 && seen_html) {
            *field = "content.0.type";
            return "If present, text/plain content must be first, followed by text/html.";
        }
        seen_html = seen_html || strcmp(type, "text/html") == 0;
    }
    return NULL;
}

static void mail_send(const struct mock_req *rq, struct mock_resp *rs)
{
    const char *auth = mock_req_header(rq, "authorization");
    if (auth == NULL || strncmp(auth, "Bearer SG.", 10) != 0 || auth[10] == '\0') {
        sg_error(rs, 401, NULL, "The provided authorization grant is invalid, expired, or "
                                "revoked");
        return;
    }
    const char *ctype = mock_req_header(rq, "content-type");
    if (ctype == NULL || strncmp(ctype, "application/json", 16) != 0) {
        sg_error(rs, 400, NULL, "Content-Type should be application/json.");
        return;
    }
    json_error_t je;
    json_t *body = json_loadb(rq->body, rq->body_len, 0, &je);
    const char *field = NULL;
    const char *problem = body ? sg_check(body, &field) : "Bad Request";
    if (problem != NULL) {
        sg_error(rs, 400, field, problem);
        json_decref(body);
        return;
    }

    char id[40];
    snprintf(id, sizeof(id), "sgmock%016lx", (unsigned long)mock_next_id("sendgrid.msg"));
    json_t *rec = json_object();
    json_object_set_new(rec, "message_id", json_string(id));
    json_t *ours = json_object_get(
        json_object_get(json_array_get(json_object_get(body, "personalizations"), 0),
                        "custom_args"),
        "agape_message_id");
    json_object_set_new(rec, "agape_message_id", ours ? json_deep_copy(ours) : json_null());
    json_object_set_new(rec, "request", body);
    json_object_set_new(mock_bucket("sendgrid.messages"), id, rec);

    rs->status = 202;
    rs->body = strdup("");
    snprintf(rs->content_type, sizeof(rs->content_type), "text/plain");
    mock_header(rs, "X-Message-Id", id);
    mock_header(rs, "X-RateLimit-Limit", "600");
    mock_header(rs, "X-RateLimit-Remaining", "599");
}

static const struct mock_route routes[] = {
    {"POST", "/v3/mail/send", mail_send, NULL}, /* SendGrid has no idempotency key */
    {NULL, NULL, NULL, NULL},
};

const struct mock_provider mock_sendgrid = {"sendgrid", routes, NULL};
