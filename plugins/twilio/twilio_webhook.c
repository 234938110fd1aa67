/* twilio_webhook — X-Twilio-Signature and message status callbacks.
 *
 * The scheme (PROVIDERS.md §3.4, twilio-python RequestValidator):
 *   signature = base64(HMAC-SHA1(key = auth token, msg = URL + params))
 * where URL is the exact URL Twilio requested (query string included) and
 * params are the form fields sorted by name, then by value, each pair
 * written as name + value with no separator (a pair repeated with the same
 * value counts once, as the validator's set() makes it). When the URL's query
 * carries bodySHA256 (JSON bodies), no params are appended and the hex
 * SHA-256 of the raw body must equal that value.
 *
 * Twilio is inconsistent about ports, so, like the validator, the URL is
 * tried as given, with the scheme's default port added (when it has none)
 * and with its port removed; any match is accepted. Every candidate is
 * computed and compared, so the time taken does not say which matched. */
#include "twilio.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TWILIO_URL_MAX 4096
#define TWILIO_SIG_HEADER_MAX 128 /* base64 of 20 bytes is 28 */
#define TWILIO_FIELD_MAX 64       /* MessageSid, MessageStatus, ErrorCode */

static enum agape_step twilio_reject(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum agape_step twilio_reject(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    call->outcome = AGAPE_OUTCOME_INVALID;
    return AGAPE_STEP_DONE;
}

/* Where the authority of an absolute URL ends and where its port is. */
struct twilio_url {
    size_t auth_end;   /* index of the first '/', '?' or '#' after "://", or the length */
    size_t colon;      /* index of the ':' before the port, when has_port */
    bool has_port;
    const char *default_port; /* "443" for https, else "80" */
};

static bool twilio_url_parse(const char *url, struct twilio_url *u)
{
    const char *sep = strstr(url, "://");
    memset(u, 0, sizeof(*u));
    if (sep == NULL || sep == url) {
        return false;
    }
    size_t scheme_len = (size_t)(sep - url);
    u->default_port = (scheme_len == 5 && strncasecmp(url, "https", 5) == 0) ? "443" : "80";
    size_t start = scheme_len + 3;
    size_t end = start + strcspn(url + start, "/?#");
    u->auth_end = end;
    /* The host follows any userinfo ("user:pass@"). */
    size_t host = start;
    for (size_t i = start; i < end; i++) {
        if (url[i] == '@') {
            host = i + 1;
        }
    }
    size_t from = host;
    if (url[host] == '[') {
        /* An IPv6 literal: the port, if any, follows the ']'. */
        const char *close = memchr(url + host, ']', end - host);
        if (close == NULL) {
            return false;
        }
        from = (size_t)(close - url) + 1;
    }
    for (size_t i = from; i < end; i++) {
        if (url[i] == ':') {
            u->colon = i;
            u->has_port = true;
        }
    }
    return host < end;
}

/* The URL with its port removed (a) and with the default port added (b). */
static int twilio_url_variants(const struct agape_host *h, const char *url,
                               const struct twilio_url *u, struct agape_buf *without,
                               struct agape_buf *with)
{
    int rc;
    if (u->has_port) {
        rc = h->buf_add(without, url, u->colon);
        if (rc == AGAPE_OK) {
            rc = h->buf_add(without, url + u->auth_end, strlen(url + u->auth_end));
        }
        if (rc == AGAPE_OK) {
            rc = h->buf_add(with, url, strlen(url));
        }
    } else {
        rc = h->buf_add(without, url, strlen(url));
        if (rc == AGAPE_OK) {
            rc = h->buf_printf(with, "%.*s:%s%s", (int)u->auth_end, url, u->default_port,
                               url + u->auth_end);
        }
    }
    return rc;
}

/* The value of bodySHA256 in the URL's query (decoded), or NULL; `q` keeps
 * the decoded query alive. */
static const struct twilio_param *twilio_body_hash_param(const char *url,
                                                         const struct twilio_url *u,
                                                         struct twilio_form *q, int *rc)
{
    const char *qs = strchr(url + u->auth_end, '?');
    *rc = AGAPE_OK;
    memset(q, 0, sizeof(*q));
    if (qs == NULL) {
        return NULL;
    }
    qs++;
    size_t qlen = strcspn(qs, "#");
    *rc = twilio_form_parse(qs, qlen, q);
    return *rc == AGAPE_OK ? twilio_form_get(q, "bodySHA256") : NULL;
}

static int twilio_param_cmp(const void *pa, const void *pb)
{
    const struct twilio_param *a = pa, *b = pb;
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, n);
    if (c != 0 || a->name_len != b->name_len) {
        return c != 0 ? c : (a->name_len < b->name_len ? -1 : 1);
    }
    n = a->value_len < b->value_len ? a->value_len : b->value_len;
    c = memcmp(a->value, b->value, n);
    if (c != 0 || a->value_len == b->value_len) {
        return c;
    }
    return a->value_len < b->value_len ? -1 : 1;
}

/* name + value of every distinct pair, sorted, appended to `out`. */
static int twilio_params_string(const struct agape_host *h, struct twilio_form *f,
                                struct agape_buf *out)
{
    int rc = AGAPE_OK;
    qsort(f->p, f->n, sizeof(f->p[0]), twilio_param_cmp);
    for (size_t i = 0; i < f->n && rc == AGAPE_OK; i++) {
        if (i > 0 && twilio_param_cmp(&f->p[i - 1], &f->p[i]) == 0) {
            continue;
        }
        rc = h->buf_add(out, f->p[i].name, f->p[i].name_len);
        if (rc == AGAPE_OK) {
            rc = h->buf_add(out, f->p[i].value, f->p[i].value_len);
        }
    }
    return rc;
}

/* base64(HMAC-SHA1(token, url + params)) compared with the header. */
static bool twilio_sig_matches(const struct agape_host *h, const char *token,
                               const struct agape_buf *url, const struct agape_buf *params,
                               const char *header, int *rc)
{
    struct agape_buf *msg = h->buf_new();
    struct agape_buf *b64 = h->buf_new();
    unsigned char mac[20];
    bool ok = false;

    *rc = (msg && b64) ? AGAPE_OK : AGAPE_ENOMEM;
    if (*rc == AGAPE_OK) {
        *rc = h->buf_add(msg, h->buf_data(url), h->buf_len(url));
    }
    if (*rc == AGAPE_OK && h->buf_len(params) > 0) {
        *rc = h->buf_add(msg, h->buf_data(params), h->buf_len(params));
    }
    if (*rc == AGAPE_OK) {
        *rc = h->hmac_sha1(token, strlen(token), h->buf_data(msg), h->buf_len(msg), mac);
    }
    if (*rc == AGAPE_OK) {
        *rc = h->base64(b64, mac, sizeof(mac));
    }
    if (*rc == AGAPE_OK) {
        ok = h->ct_equal(h->buf_data(b64), h->buf_len(b64), header, strlen(header));
    }
    h->buf_free(msg);
    h->buf_free(b64);
    return ok;
}

enum agape_step twilio_webhook_verify(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct twilio_ctx *ctx = call->ctx;
    const struct agape_webhook *wh = call->webhook;
    struct twilio_form form, query;
    struct twilio_url u;
    struct agape_buf *given = NULL, *without = NULL, *with = NULL, *params = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;
    int rc;

    memset(&form, 0, sizeof(form));
    memset(&query, 0, sizeof(query));
    if (wh == NULL || (wh->body == NULL && wh->body_len > 0)) {
        snprintf(call->err, sizeof(call->err), "verify called without a webhook");
        return AGAPE_STEP_FAIL;
    }
    const char *sig = h->webhook_header(call, "X-Twilio-Signature");
    if (sig == NULL || sig[0] == '\0') {
        return twilio_reject(call, "no X-Twilio-Signature header");
    }
    if (strlen(sig) > TWILIO_SIG_HEADER_MAX) {
        return twilio_reject(call, "X-Twilio-Signature is too long");
    }
    if (wh->url == NULL || strlen(wh->url) > TWILIO_URL_MAX || !twilio_url_parse(wh->url, &u)) {
        return twilio_reject(call, "no usable webhook URL to check the signature against "
                                   "(is public_url set?)");
    }

    given = h->buf_new();
    without = h->buf_new();
    with = h->buf_new();
    params = h->buf_new();
    rc = (given && without && with && params) ? AGAPE_OK : AGAPE_ENOMEM;
    if (rc == AGAPE_OK) {
        rc = h->buf_add(given, wh->url, strlen(wh->url));
    }
    if (rc == AGAPE_OK) {
        rc = twilio_url_variants(h, wh->url, &u, without, with);
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        goto out;
    }

    const struct twilio_param *hash = twilio_body_hash_param(wh->url, &u, &query, &rc);
    if (rc != AGAPE_OK) {
        st = twilio_reject(call, "the webhook URL's query is too large");
        goto out;
    }
    bool body_ok = true;
    if (hash != NULL) {
        /* A JSON (non-form) body: its hash is in the URL, the URL is signed. */
        unsigned char md[32];
        struct agape_buf *hex = h->buf_new();
        rc = hex ? h->sha256(wh->body_len ? wh->body : "", wh->body_len, md) : AGAPE_ENOMEM;
        if (rc == AGAPE_OK) {
            rc = h->hex(hex, md, sizeof(md));
        }
        if (rc == AGAPE_OK) {
            body_ok = h->ct_equal(h->buf_data(hex), h->buf_len(hex), hash->value,
                                  hash->value_len);
        }
        h->buf_free(hex);
    } else {
        rc = twilio_form_parse(wh->body_len ? wh->body : "", wh->body_len, &form);
        if (rc == AGAPE_ERANGE) {
            st = twilio_reject(call, "the webhook body is over %zu bytes or %d fields",
                               TWILIO_FORM_MAX, TWILIO_FORM_MAX_PARAMS);
            goto out;
        }
        if (rc == AGAPE_OK) {
            rc = twilio_params_string(h, &form, params);
        }
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        goto out;
    }

    int r1 = AGAPE_OK, r2 = AGAPE_OK, r3 = AGAPE_OK;
    bool m1 = twilio_sig_matches(h, ctx->auth_token, given, params, sig, &r1);
    bool m2 = twilio_sig_matches(h, ctx->auth_token, with, params, sig, &r2);
    bool m3 = twilio_sig_matches(h, ctx->auth_token, without, params, sig, &r3);
    if (r1 != AGAPE_OK || r2 != AGAPE_OK || r3 != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "cannot compute the signature");
        goto out;
    }
    if (!(m1 || m2 || m3)) {
        st = twilio_reject(call, "X-Twilio-Signature does not match (Twilio signs the exact URL "
                                 "it posted to: check public_url)");
        goto out;
    }
    if (!body_ok) {
        st = twilio_reject(call, "bodySHA256 in the URL does not match the body");
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    twilio_form_free(&form);
    twilio_form_free(&query);
    h->buf_free(given);
    h->buf_free(without);
    h->buf_free(with);
    h->buf_free(params);
    return st;
}

/* A field we copy into the event: 1 to 64 bytes of [A-Za-z0-9_-]. */
static const char *twilio_field(const struct twilio_param *p, char *out, size_t cap)
{
    if (p == NULL || p->value_len == 0 || p->value_len >= cap ||
        p->value_len > TWILIO_FIELD_MAX) {
        return NULL;
    }
    for (size_t i = 0; i < p->value_len; i++) {
        char c = p->value[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '-')) {
            return NULL;
        }
    }
    memcpy(out, p->value, p->value_len);
    out[p->value_len] = '\0';
    return out;
}

static const char *twilio_callback_status(const char *s)
{
    if (strcmp(s, "delivered") == 0) {
        return "delivered";
    }
    if (strcmp(s, "failed") == 0 || strcmp(s, "undelivered") == 0) {
        return "failed";
    }
    return NULL;
}

enum agape_step twilio_webhook_normalize(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_webhook *wh = call->webhook;
    struct twilio_form form;
    char sid[TWILIO_FIELD_MAX + 1], status[TWILIO_FIELD_MAX + 1], code[TWILIO_FIELD_MAX + 1];
    char id[2 * TWILIO_FIELD_MAX + 2];
    enum agape_step st = AGAPE_STEP_FAIL;

    memset(&form, 0, sizeof(form));
    if (wh == NULL || wh->body == NULL) {
        snprintf(call->err, sizeof(call->err), "normalize called without a webhook");
        return AGAPE_STEP_FAIL;
    }
    int rc = twilio_form_parse(wh->body, wh->body_len, &form);
    if (rc == AGAPE_ERANGE) {
        st = twilio_reject(call, "the webhook body is over %zu bytes or %d fields",
                           TWILIO_FORM_MAX, TWILIO_FORM_MAX_PARAMS);
        goto out;
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        goto out;
    }
    const char *msid = twilio_field(twilio_form_get(&form, "MessageSid"), sid, sizeof(sid));
    const char *mst = twilio_field(twilio_form_get(&form, "MessageStatus"), status,
                                   sizeof(status));
    const char *ecode = twilio_field(twilio_form_get(&form, "ErrorCode"), code, sizeof(code));
    if (msid == NULL || mst == NULL) {
        st = twilio_reject(call, "not a message status callback (MessageSid and MessageStatus "
                                 "are required)");
        goto out;
    }
    snprintf(id, sizeof(id), "%s:%s", msid, mst);
    rc = h->json_set_str(call->result, "event_id", id);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "type", "twilio.status");
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "message_ref", msid);
    }
    const char *ours = twilio_callback_status(mst);
    if (rc == AGAPE_OK && ours != NULL) {
        rc = h->json_set_str(call->result, "status", ours);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "provider_status", mst);
    }
    /* ErrorCode is a number (30003…), as error_code is in send results. */
    if (rc == AGAPE_OK && ecode != NULL && strlen(ecode) <= 9 && ecode[0] >= '0' &&
        ecode[0] <= '9') {
        char *end = NULL;
        long long n = strtoll(ecode, &end, 10);
        if (*end == '\0') {
            rc = h->json_set_int(call->result, "error_code", n);
        }
    }
    if (rc != AGAPE_OK) {
        snprintf(call->err, sizeof(call->err), "out of memory");
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    twilio_form_free(&form);
    return st;
}
