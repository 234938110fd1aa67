/* sendgrid_webhook — the signed Event Webhook: verification and events.
 *
 * The scheme (PROVIDERS.md §4.3, sendgrid-nodejs eventwebhook): ECDSA P-256
 * with SHA-256 over the X-Twilio-Email-Event-Webhook-Timestamp header's text
 * immediately followed by the raw body; the signature header is base64 of a
 * DER signature; the key is the account's verification key (DER SPKI).
 * SendGrid documents no timestamp tolerance: ours refuses a timestamp more
 * than webhook_tolerance_s away from now, in either direction (a signature
 * from the future is as suspicious as an old one). */
#include "sendgrid.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SENDGRID_SIG_HEADER_MAX 256 /* base64 of a ≤ 72-byte DER signature is 96 */
#define SENDGRID_SIG_MAX 80
#define SENDGRID_MAX_EVENTS 10000   /* SendGrid batches far fewer */
#define SENDGRID_FIELD_MAX 512      /* ids and event names we copy */

#define SIG_HEADER "X-Twilio-Email-Event-Webhook-Signature"
#define TS_HEADER "X-Twilio-Email-Event-Webhook-Timestamp"

static enum agape_step sendgrid_reject(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum agape_step sendgrid_reject(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    call->outcome = AGAPE_OUTCOME_INVALID;
    return AGAPE_STEP_DONE;
}

/* A decimal unix time: digits only, at most 18 of them (fits int64). */
static bool sendgrid_parse_ts(const char *s, int64_t *out)
{
    size_t len = strlen(s);
    int64_t v = 0;
    if (len == 0 || len > 18) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

enum agape_step sendgrid_webhook_verify(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct sendgrid_ctx *ctx = call->ctx;
    const struct agape_webhook *wh = call->webhook;
    struct agape_buf *msg = NULL;
    unsigned char sig[SENDGRID_SIG_MAX];
    int64_t t = 0;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (wh == NULL || (wh->body == NULL && wh->body_len > 0)) {
        snprintf(call->err, sizeof(call->err), "verify called without a webhook");
        return AGAPE_STEP_FAIL;
    }
    if (ctx->webhook_key == NULL) {
        return sendgrid_reject(call, "webhook_public_key not configured");
    }
    const char *sig_b64 = h->webhook_header(call, SIG_HEADER);
    const char *ts = h->webhook_header(call, TS_HEADER);
    if (sig_b64 == NULL || sig_b64[0] == '\0') {
        return sendgrid_reject(call, "no " SIG_HEADER " header");
    }
    if (ts == NULL || ts[0] == '\0') {
        return sendgrid_reject(call, "no " TS_HEADER " header");
    }
    if (!sendgrid_parse_ts(ts, &t)) {
        return sendgrid_reject(call, TS_HEADER " is not a unix time");
    }
    size_t slen = strlen(sig_b64);
    long n = slen > SENDGRID_SIG_HEADER_MAX ? -1
                                            : h->base64_decode(sig_b64, slen, sig, sizeof(sig));
    if (n <= 0) {
        return sendgrid_reject(call, SIG_HEADER " is not base64 of a signature");
    }

    /* Signed bytes: the timestamp exactly as sent, then the raw body. */
    msg = h->buf_new();
    int rc = msg ? h->buf_add(msg, ts, strlen(ts)) : AGAPE_ENOMEM;
    if (rc == AGAPE_OK && wh->body_len > 0) {
        rc = h->buf_add(msg, wh->body, wh->body_len);
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        goto out;
    }
    if (!h->verify_ecdsa_sha256_der(ctx->webhook_key, ctx->webhook_key_len, h->buf_data(msg),
                                    h->buf_len(msg), sig, (size_t)n)) {
        st = sendgrid_reject(call, "signature does not match the body and timestamp");
        goto out;
    }
    if (ctx->tolerance_s > 0 &&
        (t < wh->now_s - ctx->tolerance_s || t > wh->now_s + ctx->tolerance_s)) {
        st = sendgrid_reject(call, "timestamp outside the tolerance zone (%lld s)",
                             (long long)ctx->tolerance_s);
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    h->buf_free(msg);
    return st;
}

/* SendGrid event → the message status it announces, or NULL. */
static const char *sendgrid_event_status(const char *event)
{
    if (strcmp(event, "delivered") == 0) {
        return "delivered";
    }
    if (strcmp(event, "bounce") == 0 || strcmp(event, "dropped") == 0) {
        return "failed";
    }
    return NULL;
}

/* A string field of an event that we copy: bounded, no control characters. */
static const char *sendgrid_field(const struct agape_host *h, const struct agape_json *ev,
                                  const char *name)
{
    const char *s = h->json_str(ev, name);
    if (s == NULL || s[0] == '\0' || strlen(s) > SENDGRID_FIELD_MAX) {
        return NULL;
    }
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x20) {
            return NULL;
        }
    }
    return s;
}

/* One normalized event appended to `out`; false on out-of-memory. */
static bool sendgrid_event(const struct agape_host *h, const struct agape_json *ev,
                           const char *event, struct agape_json *out)
{
    struct agape_json *o = h->json_add_object(out, NULL);
    if (o == NULL) {
        return false;
    }
    int rc = AGAPE_OK;
    const char *smid = sendgrid_field(h, ev, "sg_message_id");
    if (smid != NULL) {
        /* "<X-Message-Id>.<filter>…": the part before the first dot is what
         * mail send returned. */
        const char *dot = strchr(smid, '.');
        size_t n = dot ? (size_t)(dot - smid) : strlen(smid);
        if (n > 0) {
            rc = h->json_set_strn(o, "message_ref", smid, n);
        }
    }
    const char *ours = sendgrid_field(h, ev, "agape_message_id");
    if (rc == AGAPE_OK && ours != NULL) {
        rc = h->json_set_str(o, "agape_message_id", ours);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(o, "event", event);
    }
    const char *status = sendgrid_event_status(event);
    if (rc == AGAPE_OK && status != NULL) {
        rc = h->json_set_str(o, "status", status);
    }
    const char *eid = sendgrid_field(h, ev, "sg_event_id");
    if (rc == AGAPE_OK && eid != NULL) {
        rc = h->json_set_str(o, "event_id", eid);
    }
    return rc == AGAPE_OK;
}

enum agape_step sendgrid_webhook_normalize(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_webhook *wh = call->webhook;
    struct agape_json *body = NULL;
    struct agape_buf *hash = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (wh == NULL || wh->body == NULL) {
        snprintf(call->err, sizeof(call->err), "normalize called without a webhook");
        return AGAPE_STEP_FAIL;
    }
    body = h->json_parse(wh->body, wh->body_len, NULL, 0);
    if (h->json_type(body) != AGAPE_JSON_ARRAY) {
        st = sendgrid_reject(call, "the webhook body is not a JSON array of events");
        goto out;
    }
    size_t n = h->json_size(body);
    if (n == 0 || n > SENDGRID_MAX_EVENTS) {
        st = sendgrid_reject(call, "the webhook body has %zu events (1 to %d accepted)", n,
                             SENDGRID_MAX_EVENTS);
        goto out;
    }

    /* The batch's id: the first event's sg_event_id (a redelivery of the
     * batch carries the same one), else a hash of the exact bytes. */
    const char *first = sendgrid_field(h, h->json_at(body, 0), "sg_event_id");
    int rc;
    if (first != NULL) {
        rc = h->json_set_str(call->result, "event_id", first);
    } else {
        unsigned char md[32];
        hash = h->buf_new();
        rc = hash ? h->sha256(wh->body, wh->body_len, md) : AGAPE_ENOMEM;
        if (rc == AGAPE_OK) {
            rc = h->buf_add(hash, "sha256:", 7);
        }
        if (rc == AGAPE_OK) {
            rc = h->hex(hash, md, sizeof(md));
        }
        if (rc == AGAPE_OK) {
            rc = h->json_set_str(call->result, "event_id", h->buf_data(hash));
        }
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "type", "sendgrid.events");
    }
    struct agape_json *events = rc == AGAPE_OK ? h->json_add_array(call->result, "events")
                                               : NULL;
    if (events == NULL) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        goto out;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const struct agape_json *ev = h->json_at(body, i);
        const char *event = sendgrid_field(h, ev, "event");
        if (h->json_type(ev) != AGAPE_JSON_OBJECT || event == NULL) {
            continue; /* not an event we can read; the others still count */
        }
        if (!sendgrid_event(h, ev, event, events)) {
            snprintf(call->err, sizeof(call->err), "out of memory");
            goto out;
        }
        kept++;
    }
    if (kept == 0) {
        st = sendgrid_reject(call, "the webhook body holds no event with an \"event\" field");
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    h->buf_free(hash);
    h->json_free(body);
    return st;
}
