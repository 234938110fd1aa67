/* paypal_webhook — PayPal webhook verification (PROVIDERS.md §2.5) and
 * normalization.
 *
 * Two methods, chosen by webhook_verify:
 *
 *   offline (default, method B) — what PayPal's SDKs do: the signed string
 *     <PAYPAL-TRANSMISSION-ID>|<PAYPAL-TRANSMISSION-TIME>|<webhook_id>|<crc>
 *     (crc = CRC-32 of the raw body as an unsigned decimal) is checked with
 *     RSA PKCS#1 v1.5 + SHA-256 against the certificate at PAYPAL-CERT-URL.
 *     The URL must start with one of cert_url_prefixes before anything is
 *     fetched (an attacker chooses that header: without the allow-list the
 *     gateway would fetch any URL it is told to). The certificate comes from
 *     the provider cache ("cert:<url>", 24 h) or from a GET (a SEND step);
 *     its subject CN must end with ".paypal.com" and, unless
 *     webhook_check_cert_expiry is false, it must be within its validity
 *     period (host->x509_check). The chain is not checked: the certificate
 *     is fetched over TLS from an allow-listed PayPal host.
 *
 *   api (method A) — POST {base}/v1/notifications/verify-webhook-signature
 *     with the Bearer token (paypal_run's token steps, shared with the
 *     payment operations) and the raw body spliced in as webhook_event:
 *     re-serializing the event can change its bytes and make PayPal answer
 *     FAILURE (§2.5 caveat).
 *
 * Both check, first, that webhook_id is configured, that the five headers
 * are present and sane, and (webhook_tolerance_s > 0) that the transmission
 * time is within the tolerance of call->webhook->now_s: PayPal's signature
 * has no other replay protection, and the inbox only deduplicates by event
 * id. Every refusal is DONE with outcome INVALID and the reason in err;
 * an unreachable PayPal is UNAVAILABLE. */
#include "paypal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PP_CERT_TTL_MS ((int64_t)24 * 3600 * 1000)
#define PP_CERT_MAX ((size_t)64 * 1024)   /* a PEM certificate (chain) we accept */
#define PP_CERT_URL_MAX 2048
#define PP_PREFIX_MAX 512
#define PP_HEADER_MAX 256                 /* transmission id, time, auth algo */
#define PP_SIG_B64_MAX 1024               /* base64 of at most a 768-byte signature */
#define PP_SIG_MAX 768                    /* RSA-4096 is 512 bytes */
#define PP_EVENT_ID_MAX 200
#define PP_CN_SUFFIX ".paypal.com"
#define PP_VERIFY_PATH "/v1/notifications/verify-webhook-signature"

/* ------------------------------------------------------------------ */
/* Options                                                             */

static bool pp_printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* One prefix: http(s)://host[...], printable, at most PP_PREFIX_MAX. A
 * prefix without a path gets "/" appended, so "https://api.paypal.com"
 * cannot match "https://api.paypal.com.example.net/...". */
static int pp_add_prefix(struct paypal_ctx *ctx, const char *s, size_t len, char *err,
                         size_t errlen)
{
    size_t scheme = 0;
    if (len >= 8 && strncmp(s, "https://", 8) == 0) {
        scheme = 8;
    } else if (len >= 7 && strncmp(s, "http://", 7) == 0) {
        scheme = 7;
    }
    if (scheme == 0 || len == scheme || s[scheme] == '/' || len > PP_PREFIX_MAX ||
        !pp_printable(s, len)) {
        snprintf(err, errlen, "cert_url_prefixes: each prefix must be an http:// or https:// "
                              "URL with a host, without spaces, at most %d bytes",
                 PP_PREFIX_MAX);
        return AGAPE_EINVAL;
    }
    if (ctx->n_cert_prefixes >= PAYPAL_CERT_PREFIXES_MAX) {
        snprintf(err, errlen, "cert_url_prefixes: at most %d prefixes",
                 PAYPAL_CERT_PREFIXES_MAX);
        return AGAPE_ERANGE;
    }
    bool has_path = memchr(s + scheme, '/', len - scheme) != NULL;
    char *p = malloc(len + 2);
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return AGAPE_ENOMEM;
    }
    memcpy(p, s, len);
    if (!has_path) {
        p[len++] = '/';
    }
    p[len] = '\0';
    ctx->cert_prefixes[ctx->n_cert_prefixes++] = p;
    return AGAPE_OK;
}

/* The core made cert_url_prefixes a list (default: PayPal's API hosts, at
 * most PAYPAL_CERT_PREFIXES_MAX); each item must still be a usable prefix. */
static int pp_prefixes(const struct agape_host *h, const struct agape_json *conf,
                       struct paypal_ctx *ctx, char *err, size_t errlen)
{
    const struct agape_json *v = h->json_get(conf, "cert_url_prefixes");
    int rc = AGAPE_OK;

    for (size_t i = 0; i < h->json_size(v) && rc == AGAPE_OK; i++) {
        const char *s = h->json_str(h->json_at(v, i), "");
        if (s == NULL) {
            snprintf(err, errlen, "cert_url_prefixes must be a list of strings");
            return AGAPE_EINVAL;
        }
        rc = pp_add_prefix(ctx, s, strlen(s), err, errlen);
    }
    if (rc == AGAPE_OK && ctx->n_cert_prefixes == 0) {
        snprintf(err, errlen, "cert_url_prefixes is empty: no signing certificate could ever "
                              "be fetched");
        rc = AGAPE_EINVAL;
    }
    return rc;
}

int paypal_webhook_init(const struct agape_host *h, const struct agape_json *conf,
                        struct paypal_ctx *ctx, char *err, size_t errlen)
{
    const char *method = h->json_str(conf, "webhook_verify");

    if (method == NULL || strcmp(method, "offline") == 0) {
        ctx->webhook_api = false;
    } else if (strcmp(method, "api") == 0) {
        ctx->webhook_api = true;
    } else {
        snprintf(err, errlen, "webhook_verify must be \"offline\" or \"api\"");
        return AGAPE_EINVAL;
    }
    ctx->check_cert_expiry = h->json_bool(conf, "webhook_check_cert_expiry", true);
    ctx->webhook_tolerance_s =
        h->json_int(conf, "webhook_tolerance_s", PAYPAL_WEBHOOK_TOLERANCE_S);
    int rc = pp_prefixes(h, conf, ctx, err, errlen);
    if (rc != AGAPE_OK) {
        return rc;
    }
    for (size_t i = 0; i < ctx->n_cert_prefixes; i++) {
        if (strncmp(ctx->cert_prefixes[i], "http://", 7) == 0) {
            h->log(NULL, AGAPE_LOG_WARN,
                   "paypal: cert_url_prefixes allows plain http:// certificate URLs; use that "
                   "for tests only");
            break;
        }
    }
    return AGAPE_OK;
}

void paypal_webhook_destroy(struct paypal_ctx *ctx)
{
    for (size_t i = 0; i < ctx->n_cert_prefixes; i++) {
        free(ctx->cert_prefixes[i]);
        ctx->cert_prefixes[i] = NULL;
    }
    ctx->n_cert_prefixes = 0;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static enum agape_step pp_reject(struct agape_call *call, enum agape_outcome o, const char *fmt,
                                 ...) __attribute__((format(printf, 3, 4)));

static enum agape_step pp_reject(struct agape_call *call, enum agape_outcome o, const char *fmt,
                                 ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    paypal_scrub_err(call);
    call->outcome = o;
    return AGAPE_STEP_DONE;
}

static enum agape_step pp_fail(struct agape_call *call, const char *what)
{
    snprintf(call->err, sizeof(call->err), "%s", what);
    return AGAPE_STEP_FAIL;
}

/* The signature headers (borrowed from the webhook). */
struct pp_headers {
    const char *id;
    const char *time;
    const char *sig;
    const char *cert_url;
    const char *algo;
};

/* Read and bound every header; false with the refusal in call (DONE). */
static bool pp_read_headers(struct agape_call *call, struct pp_headers *hd)
{
    static const struct {
        const char *name;
        size_t off;
        size_t max;
    } want[] = {
        {"PAYPAL-TRANSMISSION-ID", offsetof(struct pp_headers, id), PP_HEADER_MAX},
        {"PAYPAL-TRANSMISSION-TIME", offsetof(struct pp_headers, time), PP_HEADER_MAX},
        {"PAYPAL-TRANSMISSION-SIG", offsetof(struct pp_headers, sig), PP_SIG_B64_MAX},
        {"PAYPAL-CERT-URL", offsetof(struct pp_headers, cert_url), PP_CERT_URL_MAX},
        {"PAYPAL-AUTH-ALGO", offsetof(struct pp_headers, algo), PP_HEADER_MAX},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *v = call->host->webhook_header(call, want[i].name);
        size_t n = v ? strlen(v) : 0;
        if (v == NULL || n == 0) {
            pp_reject(call, AGAPE_OUTCOME_INVALID, "missing %s header", want[i].name);
            return false;
        }
        if (n > want[i].max) {
            pp_reject(call, AGAPE_OUTCOME_INVALID, "%s header is over %zu bytes", want[i].name,
                      want[i].max);
            return false;
        }
        /* '|' separates the signed string's fields: a value holding one
         * could shift them. */
        if (!pp_printable(v, n) || strchr(v, '|') != NULL) {
            pp_reject(call, AGAPE_OUTCOME_INVALID,
                      "%s header has characters outside printable ASCII or a '|'",
                      want[i].name);
            return false;
        }
        *(const char **)((char *)hd + want[i].off) = v;
    }
    return true;
}

static bool pp_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil): no timegm, no time zone, no locale. */
static int64_t pp_days(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* RFC 3339 "2015-05-18T15:45:13Z" (fraction and ±hh:mm offsets accepted)
 * → seconds since the epoch. */
static bool pp_parse_time(const char *s, int64_t *out)
{
    int y, mo, d, hh, mi, ss, oh = 0, om = 0;
    size_t n = strlen(s);
    if (n < 20 || !pp_digits(s, 4, &y) || s[4] != '-' || !pp_digits(s + 5, 2, &mo) ||
        s[7] != '-' || !pp_digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        !pp_digits(s + 11, 2, &hh) || s[13] != ':' || !pp_digits(s + 14, 2, &mi) ||
        s[16] != ':' || !pp_digits(s + 17, 2, &ss)) {
        return false;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mi > 59 || ss > 60) {
        return false;
    }
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') {
            return false;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }
    int sign = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        sign = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && pp_digits(p + 1, 2, &oh) &&
               p[3] == ':' && pp_digits(p + 4, 2, &om) && oh <= 23 && om <= 59) {
        sign = *p == '+' ? 1 : -1;
    } else {
        return false;
    }
    *out = pp_days(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - sign * (oh * 3600 + om * 60);
    return true;
}

/* Checks common to both methods; false with the refusal in call (DONE). */
static bool pp_precheck(struct agape_call *call, struct pp_headers *hd)
{
    const struct paypal_ctx *ctx = call->ctx;
    const struct agape_webhook *wh = call->webhook;

    if (ctx->webhook_id == NULL) {
        pp_reject(call, AGAPE_OUTCOME_INVALID,
                  "webhook_id not configured (set PAYPAL_WEBHOOK_ID): PayPal webhooks cannot be "
                  "verified");
        return false;
    }
    if (!pp_read_headers(call, hd)) {
        return false;
    }
    if (ctx->webhook_tolerance_s > 0) {
        int64_t t = 0;
        if (!pp_parse_time(hd->time, &t)) {
            pp_reject(call, AGAPE_OUTCOME_INVALID,
                      "PAYPAL-TRANSMISSION-TIME is not an RFC 3339 time");
            return false;
        }
        if (t < wh->now_s - ctx->webhook_tolerance_s ||
            t > wh->now_s + ctx->webhook_tolerance_s) {
            pp_reject(call, AGAPE_OUTCOME_INVALID,
                      "PAYPAL-TRANSMISSION-TIME %.40s is outside the tolerance of %" PRId64 " s",
                      hd->time, ctx->webhook_tolerance_s);
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Offline (method B)                                                  */

static bool pp_cert_url_allowed(const struct paypal_ctx *ctx, const char *url)
{
    for (size_t i = 0; i < ctx->n_cert_prefixes; i++) {
        size_t n = strlen(ctx->cert_prefixes[i]);
        if (strncmp(url, ctx->cert_prefixes[i], n) == 0) {
            return true;
        }
    }
    return false;
}

static bool pp_have_x509(const struct agape_host *h)
{
    return h->size >= offsetof(struct agape_host, x509_check) + sizeof(h->x509_check) &&
           h->x509_check != NULL;
}

/* "cert:<url>" */
static struct agape_buf *pp_cert_key(const struct agape_host *h, const char *url)
{
    struct agape_buf *k = h->buf_new();
    if (k != NULL && h->buf_printf(k, "cert:%s", url) != AGAPE_OK) {
        h->buf_free(k);
        k = NULL;
    }
    return k;
}

/* With the certificate in hand: check it, cache it (when it was just
 * fetched and passed), then check the signature. */
static enum agape_step pp_offline_finish(struct agape_call *call, const struct pp_headers *hd,
                                         const char *pem, size_t pem_len, bool fetched)
{
    const struct agape_host *h = call->host;
    const struct paypal_ctx *ctx = call->ctx;
    const struct agape_webhook *wh = call->webhook;
    char why[AGAPE_ERR_SIZE] = "";
    unsigned char sig[PP_SIG_MAX];
    struct agape_buf *msg = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (!pp_have_x509(h)) {
        return pp_reject(call, AGAPE_OUTCOME_INVALID,
                         "this agape cannot inspect certificates (host table without "
                         "x509_check); upgrade agape");
    }
    if (!h->x509_check(pem, pem_len, PP_CN_SUFFIX, wh->now_s, ctx->check_cert_expiry, why,
                       sizeof(why))) {
        return pp_reject(call, AGAPE_OUTCOME_INVALID, "signing certificate refused: %s", why);
    }
    if (fetched) {
        struct agape_buf *key = pp_cert_key(h, hd->cert_url);
        int rc = key ? h->cache_put(call, h->buf_data(key), pem, PP_CERT_TTL_MS) : AGAPE_ENOMEM;
        h->buf_free(key);
        if (rc != AGAPE_OK) {
            /* The check goes on; the next delivery fetches again. */
            h->log(call->provider, AGAPE_LOG_WARN,
                   "cannot cache the PayPal signing certificate (rc %d)", rc);
        }
    }
    long siglen = h->base64_decode(hd->sig, strlen(hd->sig), sig, sizeof(sig));
    if (siglen <= 0) {
        return pp_reject(call, AGAPE_OUTCOME_INVALID, "PAYPAL-TRANSMISSION-SIG is not base64");
    }
    msg = h->buf_new();
    uint32_t crc = h->crc32(wh->body, wh->body_len);
    if (msg == NULL || h->buf_printf(msg, "%s|%s|%s|%" PRIu32, hd->id, hd->time,
                                     ctx->webhook_id, crc) != AGAPE_OK) {
        st = pp_fail(call, "out of memory");
        goto out;
    }
    if (!h->verify_rsa_sha256_pem(pem, pem_len, h->buf_data(msg), h->buf_len(msg), sig,
                                  (size_t)siglen)) {
        st = pp_reject(call, AGAPE_OUTCOME_INVALID, "signature does not match");
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    h->buf_free(msg);
    return st;
}

static enum agape_step pp_verify_offline(struct agape_call *call, const struct pp_headers *hd)
{
    const struct agape_host *h = call->host;
    const struct paypal_ctx *ctx = call->ctx;
    unsigned char sig[PP_SIG_MAX];

    if (strcasecmp(hd->algo, "SHA256withRSA") != 0) {
        return pp_reject(call, AGAPE_OUTCOME_INVALID,
                         "PAYPAL-AUTH-ALGO %.32s is not supported (only SHA256withRSA)",
                         hd->algo);
    }
    if (!pp_cert_url_allowed(ctx, hd->cert_url)) {
        return pp_reject(call, AGAPE_OUTCOME_INVALID,
                         "PAYPAL-CERT-URL is not under an allowed prefix (cert_url_prefixes); "
                         "nothing was fetched");
    }
    if (h->base64_decode(hd->sig, strlen(hd->sig), sig, sizeof(sig)) <= 0) {
        return pp_reject(call, AGAPE_OUTCOME_INVALID, "PAYPAL-TRANSMISSION-SIG is not base64");
    }

    if (call->step == 0) {
        struct agape_buf *key = pp_cert_key(h, hd->cert_url);
        if (key == NULL) {
            return pp_fail(call, "out of memory");
        }
        const char *pem = h->cache_get(call, h->buf_data(key));
        h->buf_free(key);
        if (pem != NULL) {
            return pp_offline_finish(call, hd, pem, strlen(pem), false);
        }
        if (h->json_set_str(call->state, "phase", "cert") != AGAPE_OK ||
            h->req_start(call, "GET", hd->cert_url) != AGAPE_OK) {
            return pp_fail(call, "cannot build the certificate request");
        }
        return AGAPE_STEP_SEND;
    }

    const struct agape_response *r = call->resp;
    const char *phase = h->json_str(call->state, "phase");
    if (r == NULL || phase == NULL || strcmp(phase, "cert") != 0 || call->step != 1) {
        return pp_fail(call, "lost track of the certificate request");
    }
    if (r->status == 429 || r->status >= 500) {
        return pp_reject(call, AGAPE_OUTCOME_UNAVAILABLE,
                         "the PayPal signing certificate could not be fetched now (HTTP %d)",
                         r->status);
    }
    if (r->status != 200) {
        return pp_reject(call, AGAPE_OUTCOME_INVALID,
                         "the PayPal signing certificate could not be fetched (HTTP %d)",
                         r->status);
    }
    if (r->body == NULL || r->body_len == 0 || r->body_len > PP_CERT_MAX ||
        memchr(r->body, '\0', r->body_len) != NULL) {
        return pp_reject(call, AGAPE_OUTCOME_INVALID,
                         "the answer at PAYPAL-CERT-URL is not a certificate (empty, binary or "
                         "over %zu bytes)",
                         PP_CERT_MAX);
    }
    return pp_offline_finish(call, hd, r->body, r->body_len, true);
}

/* ------------------------------------------------------------------ */
/* API (method A)                                                      */

static bool pp_api_check(struct agape_call *call)
{
    (void)call; /* pp_precheck and the body check ran before paypal_run */
    return true;
}

/* {"auth_algo",…,"webhook_id", "webhook_event": <raw body>} */
static int pp_api_build(struct agape_call *call, const char *token)
{
    const struct agape_host *h = call->host;
    const struct paypal_ctx *ctx = call->ctx;
    const struct agape_webhook *wh = call->webhook;
    struct agape_json *o = h->json_new_object();
    struct agape_buf *fields = h->buf_new();
    struct agape_buf *body = h->buf_new();
    struct agape_buf *url = h->buf_new();
    struct agape_buf *auth = h->buf_new();
    static const char *const hdr[][2] = {
        {"auth_algo", "PAYPAL-AUTH-ALGO"},
        {"cert_url", "PAYPAL-CERT-URL"},
        {"transmission_id", "PAYPAL-TRANSMISSION-ID"},
        {"transmission_sig", "PAYPAL-TRANSMISSION-SIG"},
        {"transmission_time", "PAYPAL-TRANSMISSION-TIME"},
    };
    int rc = o && fields && body && url && auth ? AGAPE_OK : AGAPE_ENOMEM;

    for (size_t i = 0; i < sizeof(hdr) / sizeof(hdr[0]) && rc == AGAPE_OK; i++) {
        const char *v = h->webhook_header(call, hdr[i][1]);
        rc = v ? h->json_set_str(o, hdr[i][0], v) : AGAPE_EINVAL;
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(o, "webhook_id", ctx->webhook_id);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_dump(o, fields);
    }
    /* The compact object ends with '}': splice the raw event before it. */
    if (rc == AGAPE_OK && (h->buf_len(fields) < 2 ||
                           h->buf_data(fields)[h->buf_len(fields) - 1] != '}')) {
        rc = AGAPE_ERROR;
    }
    if (rc == AGAPE_OK) {
        rc = h->buf_add(body, h->buf_data(fields), h->buf_len(fields) - 1);
    }
    if (rc == AGAPE_OK) {
        rc = h->buf_printf(body, ",\"webhook_event\":");
    }
    if (rc == AGAPE_OK) {
        rc = h->buf_add(body, wh->body, wh->body_len);
    }
    if (rc == AGAPE_OK) {
        rc = h->buf_add(body, "}", 1);
    }
    if (rc == AGAPE_OK) {
        rc = h->buf_printf(url, "%s%s", ctx->base_url, PP_VERIFY_PATH);
    }
    if (rc == AGAPE_OK) {
        rc = h->buf_printf(auth, "Bearer %s", token);
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
    h->json_free(o);
    h->buf_free(fields);
    h->buf_free(body);
    h->buf_free(url);
    h->buf_free(auth);
    return rc;
}

/* A short reason from a PayPal error body, with its debug id. */
static void pp_api_reason(struct agape_call *call, const struct agape_json *e, char *out,
                          size_t len)
{
    const struct agape_host *h = call->host;
    const char *issue = paypal_error_issue(h, e);
    const char *name = h->json_str(e, "name");
    const char *dbg = h->json_str(e, "debug_id");
    if (dbg == NULL) {
        dbg = h->resp_header(call, "Paypal-Debug-Id");
    }
    snprintf(out, len, "%s%.64s%s%.64s%s", issue || name ? ": " : "",
             issue ? issue : name ? name : "", dbg ? " [debug_id " : "", dbg ? dbg : "",
             dbg ? "]" : "");
}

static enum agape_step pp_api_answer(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_response *r = call->resp;
    struct agape_json *e = h->json_parse(r->body, r->body_len, NULL, 0);
    char why[160];
    enum agape_step st;

    pp_api_reason(call, e, why, sizeof(why));
    if (r->status >= 200 && r->status <= 299) {
        const char *vs = h->json_str(e, "verification_status");
        if (vs != NULL && strcmp(vs, "SUCCESS") == 0) {
            call->outcome = AGAPE_OUTCOME_OK;
            st = AGAPE_STEP_DONE;
        } else if (vs != NULL && strcmp(vs, "FAILURE") == 0) {
            st = pp_reject(call, AGAPE_OUTCOME_INVALID,
                           "signature does not match (PayPal's verify API answered FAILURE)");
        } else {
            st = pp_reject(call, AGAPE_OUTCOME_UNAVAILABLE,
                           "PayPal's verify API answered HTTP %d without a verification_status",
                           r->status);
        }
    } else if (r->status == 401 || r->status == 403) {
        st = pp_reject(call, AGAPE_OUTCOME_AUTH,
                       "PayPal refused the credentials for the verify API (HTTP %d)%s",
                       r->status, why);
    } else if (r->status == 429) {
        call->retry_after_ms = paypal_retry_after(h->resp_header(call, "Retry-After"));
        st = pp_reject(call, AGAPE_OUTCOME_RATE_LIMITED,
                       "PayPal's verify API is rate limiting (HTTP 429)%s", why);
    } else if (r->status >= 400 && r->status <= 499) {
        st = pp_reject(call, AGAPE_OUTCOME_INVALID,
                       "PayPal's verify API refused the request (HTTP %d)%s", r->status, why);
    } else {
        st = pp_reject(call, AGAPE_OUTCOME_UNAVAILABLE,
                       "PayPal's verify API is unavailable (HTTP %d)%s", r->status, why);
    }
    h->json_free(e);
    return st;
}

static const struct paypal_op pp_verify_api_op = {
    /* `what` is informational; pp_api_answer classifies the answers itself. */
    PAYPAL_WHAT_GET, pp_api_check, pp_api_build, pp_api_answer,
};

static enum agape_step pp_verify_api(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    if (call->step == 0) {
        /* Spliced into our request as it is: it must be one JSON object. */
        struct agape_json *ev =
            h->json_parse(call->webhook->body, call->webhook->body_len, NULL, 0);
        bool ok = h->json_type(ev) == AGAPE_JSON_OBJECT;
        h->json_free(ev);
        if (!ok) {
            return pp_reject(call, AGAPE_OUTCOME_INVALID,
                             "the webhook body is not a JSON object");
        }
    }
    return paypal_run(call, &pp_verify_api_op);
}

/* ------------------------------------------------------------------ */
/* verify                                                              */

enum agape_step paypal_webhook_verify(struct agape_call *call)
{
    const struct paypal_ctx *ctx = call->ctx;
    const struct agape_webhook *wh = call->webhook;
    struct pp_headers hd;

    if (wh == NULL || (wh->body == NULL && wh->body_len > 0)) {
        return pp_fail(call, "verify called without a webhook");
    }
    if (call->step == 0) {
        call->retry_after_ms = -1;
    }
    /* Re-read on every step: the headers are borrowed, state keeps none. */
    if (!pp_precheck(call, &hd)) {
        return AGAPE_STEP_DONE;
    }
    return ctx->webhook_api ? pp_verify_api(call) : pp_verify_offline(call, &hd);
}

/* ------------------------------------------------------------------ */
/* normalize                                                           */

/* ^[A-Z0-9]{1,36}$ */
static bool pp_order_id_ok(const char *s)
{
    size_t n = 0;
    if (s == NULL) {
        return false;
    }
    for (; *s; s++, n++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')) ||
            n >= PAYPAL_ORDER_ID_MAX) {
            return false;
        }
    }
    return n > 0;
}

/* A capture's status → ours (as the payment operations read it). */
static const char *pp_capture_status(const char *s)
{
    static const char *const map[][2] = {
        {"COMPLETED", "succeeded"}, {"PARTIALLY_REFUNDED", "succeeded"},
        {"PENDING", "processing"},  {"DECLINED", "failed"},
        {"FAILED", "failed"},       {"REFUNDED", "refunded"},
    };
    for (size_t i = 0; s != NULL && i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i][0], s) == 0) {
            return map[i][1];
        }
    }
    return NULL;
}

/* Event type → the payment status it announces (NULL: none). */
static const char *pp_event_status(const struct agape_host *h, const char *type,
                                   const struct agape_json *res)
{
    static const char *const map[][2] = {
        {"CHECKOUT.ORDER.APPROVED", "requires_action"}, /* approved, not captured yet */
        {"PAYMENT.CAPTURE.COMPLETED", "succeeded"},
        {"PAYMENT.CAPTURE.PENDING", "processing"},
        {"PAYMENT.CAPTURE.DENIED", "failed"},
        {"PAYMENT.CAPTURE.DECLINED", "failed"},
        {"PAYMENT.CAPTURE.REFUNDED", "refunded"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i][0], type) == 0) {
            return map[i][1];
        }
    }
    if (strcmp(type, "CHECKOUT.ORDER.COMPLETED") == 0) {
        /* An order can be COMPLETED while its capture is PENDING or DECLINED
         * (§2.2): the capture, when the event carries it, decides. */
        const char *cs = h->json_str(res, "purchase_units.0.payments.captures.0.status");
        const char *m = pp_capture_status(cs);
        return cs == NULL ? "succeeded" : m;
    }
    return NULL;
}

/* custom_id as our payment id: 1..127 printable characters. */
static bool pp_custom_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= PAYPAL_CUSTOM_ID_MAX && pp_printable(s, n);
}

enum agape_step paypal_webhook_normalize(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_webhook *wh = call->webhook;
    struct agape_json *ev = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (wh == NULL || wh->body == NULL) {
        return pp_fail(call, "normalize called without a webhook");
    }
    ev = h->json_parse(wh->body, wh->body_len, NULL, 0);
    if (h->json_type(ev) != AGAPE_JSON_OBJECT) {
        st = pp_reject(call, AGAPE_OUTCOME_INVALID, "the webhook body is not a JSON object");
        goto out;
    }
    const char *id = h->json_str(ev, "id");
    const char *type = h->json_str(ev, "event_type");
    if (id == NULL || strncmp(id, "WH-", 3) != 0 || strlen(id) > PP_EVENT_ID_MAX ||
        !pp_printable(id, strlen(id))) {
        st = pp_reject(call, AGAPE_OUTCOME_INVALID,
                       "event id must be a string starting with WH- (at most %d printable "
                       "characters)",
                       PP_EVENT_ID_MAX);
        goto out;
    }
    if (type == NULL || type[0] == '\0') {
        st = pp_reject(call, AGAPE_OUTCOME_INVALID, "event_type must be a non-empty string");
        goto out;
    }
    const struct agape_json *res = h->json_get(ev, "resource");
    if (h->json_type(res) != AGAPE_JSON_OBJECT) {
        res = NULL;
    }

    /* Payments are indexed by the order id (their provider_ref). */
    const char *ref = NULL;
    const char *payment_id = NULL;
    if (strncmp(type, "CHECKOUT.ORDER.", 15) == 0) {
        ref = h->json_str(res, "id");
    } else if (strcmp(type, "CHECKOUT.PAYMENT-APPROVAL.REVERSED") == 0) {
        ref = h->json_str(res, "order_id");
    } else if (strncmp(type, "PAYMENT.CAPTURE.", 16) == 0 ||
               strncmp(type, "PAYMENT.AUTHORIZATION.", 22) == 0) {
        ref = h->json_str(res, "supplementary_data.related_ids.order_id");
        if (ref == NULL) {
            /* The plugin sends custom_id = our payment id (paypal_payment.c). */
            payment_id = h->json_str(res, "custom_id");
        }
    }
    if (!pp_order_id_ok(ref)) {
        ref = NULL;
    }
    if (!pp_custom_id_ok(payment_id)) {
        payment_id = NULL;
    }
    const char *status = pp_event_status(h, type, res);

    int rc = h->json_set_str(call->result, "event_id", id);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "type", type);
    }
    if (rc == AGAPE_OK && ref != NULL) {
        rc = h->json_set_str(call->result, "payment_ref", ref);
    }
    if (rc == AGAPE_OK && payment_id != NULL) {
        rc = h->json_set_str(call->result, "payment_id", payment_id);
    }
    if (rc == AGAPE_OK && status != NULL) {
        rc = h->json_set_str(call->result, "status", status);
    }
    if (rc == AGAPE_OK && res != NULL) {
        rc = h->json_set_copy(call->result, "object", res);
    }
    if (rc != AGAPE_OK) {
        st = pp_fail(call, "out of memory (or a resource that is not valid UTF-8)");
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    h->json_free(ev);
    return st;
}
