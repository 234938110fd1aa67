/* Twilio Programmable Messaging, as PROVIDERS.md §3 and specs/twilio.json
 * describe Create Message: Basic AccountSid:AuthToken, a form body, 201 with
 * the Message resource (sid "SM" + 32 hex digits).
 *
 * Errors are Twilio's {"code","message","more_info","status"} (§10.5). The
 * test numbers of §3.5 (unconfirmed there, reproduced here) refuse with their
 * codes: To +15005550001 → 21211, +15005550002 → 21612, +15005550003 → 21408,
 * +15005550004 → 21610, +15005550009 → 21614. The Basic user must be the
 * path's Account SID (AC…); any non-empty token is accepted.
 *
 * Every created message is kept in the bucket "twilio.messages" under its
 * sid (GET /_mock/state/twilio.messages/<sid>): the resource plus
 * "status_callback" when one was given. */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void tw_error(struct mock_resp *rs, int status, int code, const char *message)
{
    char more[80];
    snprintf(more, sizeof(more), "https://www.twilio.com/docs/errors/%d", code);
    mock_json(rs, status, json_pack("{s:i, s:s, s:s, s:i}", "code", code, "message", message,
                                    "more_info", more, "status", status));
}

static bool tw_authorized(const struct mock_req *rq, const char *sid)
{
    const char *a = mock_req_header(rq, "authorization");
    bool ok = false;
    if (a != NULL && strncmp(a, "Basic ", 6) == 0) {
        size_t n = 0;
        char *up = mock_b64_decode(a + 6, &n);
        const char *colon = up ? strchr(up, ':') : NULL;
        ok = colon != NULL && (size_t)(colon - up) == strlen(sid) &&
             strncmp(up, sid, strlen(sid)) == 0 && colon[1] != '\0';
        free(up);
    }
    return ok;
}

/* ^\+[1-9][0-9]{1,14}$ */
static bool tw_e164(const char *s)
{
    if (s == NULL || s[0] != '+' || s[1] < '1' || s[1] > '9') {
        return false;
    }
    size_t n = strlen(s + 1);
    return n >= 2 && n <= 15 && strspn(s + 1, "0123456789") == n;
}

static const struct {
    const char *to;
    int code;
    const char *message;
} magic[] = {
    {"+15005550001", 21211, "The 'To' number +15005550001 is not a valid phone number."},
    {"+15005550002", 21612,
     "The 'To' phone number: +15005550002, is not currently reachable using the 'From' phone "
     "number: via SMS."},
    {"+15005550003", 21408,
     "Permission to send an SMS has not been enabled for the region indicated by the 'To' "
     "number: +15005550003."},
    {"+15005550004", 21610, "Attempt to send to unsubscribed recipient"},
    {"+15005550009", 21614, "'To' number is not a valid mobile number"},
};

/* "SM" + 32 hex digits, different per message and per run. */
static void tw_sid(char out[35], long n)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)mock_now_ms();
    h = (h ^ (uint64_t)n) * 1099511628211ULL;
    snprintf(out, 35, "SM%016llx%016llx", (unsigned long long)h,
             (unsigned long long)(h * 1099511628211ULL ^ (uint64_t)n));
}

static void create_message(const struct mock_req *rq, struct mock_resp *rs)
{
    const char *sid = rq->params[0];
    if (strncmp(sid, "AC", 2) != 0 || !tw_authorized(rq, sid)) {
        tw_error(rs, 401, 20003, "Authenticate");
        return;
    }
    json_t *form = mock_form_parse(rq->body, rq->body_len);
    const char *to = mock_form_get(form, "To");
    const char *from = mock_form_get(form, "From");
    const char *mg = mock_form_get(form, "MessagingServiceSid");
    const char *body = mock_form_get(form, "Body");
    const char *cb = mock_form_get(form, "StatusCallback");

    if (to == NULL || to[0] == '\0') {
        tw_error(rs, 400, 21604, "A 'To' phone number is required.");
        goto out;
    }
    if ((from == NULL || from[0] == '\0') && (mg == NULL || mg[0] == '\0')) {
        tw_error(rs, 400, 21603, "A 'From' phone number is required.");
        goto out;
    }
    if (body == NULL || body[0] == '\0') {
        tw_error(rs, 400, 21602, "Message body is required.");
        goto out;
    }
    for (size_t i = 0; i < sizeof(magic) / sizeof(magic[0]); i++) {
        if (strcmp(to, magic[i].to) == 0) {
            tw_error(rs, 400, magic[i].code, magic[i].message);
            goto out;
        }
    }
    if (!tw_e164(to)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "The 'To' number %.64s is not a valid phone number.", to);
        tw_error(rs, 400, 21211, msg);
        goto out;
    }

    char msid[35];
    char date[64];
    char uri[160];
    time_t now = (time_t)mock_now_s();
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    tw_sid(msid, mock_next_id("twilio.sms"));
    snprintf(uri, sizeof(uri), "/2010-04-01/Accounts/%s/Messages/%s.json", sid, msid);

    json_t *m = json_object();
    json_object_set_new(m, "account_sid", json_string(sid));
    json_object_set_new(m, "api_version", json_string("2010-04-01"));
    json_object_set_new(m, "body", json_string(body));
    json_object_set_new(m, "date_created", json_string(date));
    json_object_set_new(m, "date_sent", json_null());
    json_object_set_new(m, "date_updated", json_string(date));
    json_object_set_new(m, "direction", json_string("outbound-api"));
    json_object_set_new(m, "error_code", json_null());
    json_object_set_new(m, "error_message", json_null());
    json_object_set_new(m, "from", from ? json_string(from) : json_null());
    json_object_set_new(m, "messaging_service_sid", mg ? json_string(mg) : json_null());
    json_object_set_new(m, "num_media", json_string("0"));
    json_object_set_new(m, "num_segments", json_string("1"));
    json_object_set_new(m, "price", json_null());
    json_object_set_new(m, "price_unit", json_null());
    json_object_set_new(m, "sid", json_string(msid));
    /* A Messaging Service answers "accepted", a number "queued" (§3.2). */
    json_object_set_new(m, "status", json_string(mg ? "accepted" : "queued"));
    json_object_set_new(m, "to", json_string(to));
    json_object_set_new(m, "uri", json_string(uri));

    json_t *rec = json_deep_copy(m);
    json_object_set_new(rec, "status_callback", cb ? json_string(cb) : json_null());
    json_object_set_new(mock_bucket("twilio.messages"), msid, rec);
    mock_json(rs, 201, m);
out:
    json_decref(form);
}

static const struct mock_route routes[] = {
    /* No idempotency header: Twilio documents none for Messages (§3.5). */
    {"POST", "/2010-04-01/Accounts/*/Messages.json", create_message, NULL},
    {NULL, NULL, NULL, NULL},
};

const struct mock_provider mock_twilio = {"twilio", routes, NULL};
