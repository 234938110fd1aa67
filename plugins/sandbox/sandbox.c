/* sandbox — every kind, in process, deterministic, like a provider's test mode.
 *
 * Every operation answers DONE at step 0 without a request, so the gateway
 * runs end to end with no account anywhere, and tests can reach every outcome
 * class by choosing an input. The test inputs (README.md has the same table):
 *
 *   payments, by amount:
 *     4000  → INVALID       err "amount 4000 is refused by the sandbox"
 *     4002  → DECLINED      status "failed", decline_code "card_declined"
 *     4080  → UNKNOWN       as if the provider timed out after the request was sent
 *     4290  → RATE_LIMITED  retry_after_ms 1000
 *     5003  → UNAVAILABLE
 *     other → OK            status "succeeded", provider_ref "sbx_<payment_id>";
 *                           "requires_action" + approval_url when
 *                           metadata.sandbox_action == "approve"
 *     metadata.sandbox_delay_ms (decimal string, ≤ 60000): the answer comes that late
 *   messaging, by recipient ("to"):
 *     contains "+declined" or "15005550001" → DECLINED
 *     contains "+unavailable"               → UNAVAILABLE
 *     other → OK, provider_ref "sbxmsg_<first 8 bytes of sha256(to), hex>"
 *   auth: a code or id_token "bad" → INVALID; otherwise the fixed sandbox user
 *
 * Webhooks: header Sandbox-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">
 * keyed with webhook_secret, checked exactly like Stripe-Signature. */
#include <agape/plugin.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SANDBOX_DEFAULT_BASE "http://127.0.0.1/sandbox-auth"
#define SANDBOX_DEFAULT_TOLERANCE_S 300
#define SANDBOX_DELAY_MAX_MS 60000
#define SANDBOX_SIG_HEADER_MAX 8192
#define SANDBOX_SIG_MAX_V1 16

/* The strings are borrowed from the normalized configuration init received,
 * which the core keeps until destroy. */
struct sandbox_ctx {
    const char *webhook_secret; /* NULL: webhooks are refused */
    const char *base_url;       /* of the pretend authorization server, no trailing slash */
    int64_t tolerance_s;        /* webhook timestamp tolerance; 0 disables */
};

/* The documented payment test inputs. */
static const struct {
    int64_t amount;
    enum agape_outcome outcome;
} sandbox_amounts[] = {
    {4000, AGAPE_OUTCOME_INVALID},      {4002, AGAPE_OUTCOME_DECLINED},
    {4080, AGAPE_OUTCOME_UNKNOWN},      {4290, AGAPE_OUTCOME_RATE_LIMITED},
    {5003, AGAPE_OUTCOME_UNAVAILABLE},
};

static const struct agape_option sandbox_options[] = {
    {.name = "webhook_secret",
     .flags = AGAPE_OPT_SECRET,
     .env = "SANDBOX_WEBHOOK_SECRET",
     .description = "key of the Sandbox-Signature HMAC; without it webhooks are refused"},
    {.name = "base_url",
     .description = "base of the pretend authorization server",
     .type = AGAPE_OPT_URL,
     .dflt = SANDBOX_DEFAULT_BASE},
    {.name = "webhook_tolerance_s",
     .description = "accepted webhook timestamp skew in seconds; 0 disables the check",
     .type = AGAPE_OPT_INT,
     .dflt = "300",
     .max = 31536000},
    {0},};

/* ---------------------------------------------------------------- */
/* Context                                                          */

static void sandbox_destroy(void *p)
{
    free(p);
}

/* The core has read the options by their declared types (plugin.h):
 * base_url is a checked URL without a trailing slash, webhook_tolerance_s an
 * integer in range. */
static int sandbox_init(const struct agape_host *host, const struct agape_json *conf,
                        void **out, char *err, size_t errlen)
{
    struct sandbox_ctx *ctx = calloc(1, sizeof(*ctx));

    *out = NULL;
    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        return AGAPE_ENOMEM;
    }
    ctx->webhook_secret = host->json_str(conf, "webhook_secret");
    ctx->base_url = host->json_str(conf, "base_url");
    if (ctx->base_url == NULL) {
        ctx->base_url = SANDBOX_DEFAULT_BASE;
    }
    ctx->tolerance_s = host->json_int(conf, "webhook_tolerance_s", SANDBOX_DEFAULT_TOLERANCE_S);
    *out = ctx;
    return AGAPE_OK;
}

/* ---------------------------------------------------------------- */
/* Helpers                                                          */

static enum agape_step sandbox_fail(struct agape_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum agape_step sandbox_fail(struct agape_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    return AGAPE_STEP_FAIL;
}

/* DONE with an outcome other than OK, and the reason. */
static enum agape_step sandbox_done(struct agape_call *call, enum agape_outcome outcome,
                                    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static enum agape_step sandbox_done(struct agape_call *call, enum agape_outcome outcome,
                                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    call->outcome = outcome;
    return AGAPE_STEP_DONE;
}

static const char *sandbox_need(struct agape_call *call, const char *path)
{
    const char *s = call->host->json_str(call->input, path);
    if (s == NULL || s[0] == '\0') {
        snprintf(call->err, sizeof(call->err), "%s is required (a non-empty string)", path);
        return NULL;
    }
    return s;
}

/* result[key] = prefix + value. */
static int sandbox_set_ref(struct agape_call *call, const char *key, const char *prefix,
                           const char *value)
{
    const struct agape_host *h = call->host;
    struct agape_buf *b = h->buf_new();
    int rc = AGAPE_ENOMEM;
    if (b != NULL) {
        rc = h->buf_printf(b, "%s%s", prefix, value);
        if (rc == AGAPE_OK) {
            rc = h->json_set_str(call->result, key, h->buf_data(b));
        }
        h->buf_free(b);
    }
    return rc;
}

/* metadata.sandbox_delay_ms → call->delay_ms. False (err filled) when malformed. */
static bool sandbox_delay(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_json *v = h->json_get(call->input, "metadata.sandbox_delay_ms");
    enum agape_json_type t = h->json_type(v);
    int64_t ms = 0;

    if (t == AGAPE_JSON_ABSENT) {
        return true;
    }
    const char *s = h->json_str(call->input, "metadata.sandbox_delay_ms");
    size_t len = s ? strlen(s) : 0;
    bool ok = len > 0 && len <= 5;
    for (size_t i = 0; ok && i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            ok = false;
        } else {
            ms = ms * 10 + (s[i] - '0');
        }
    }
    if (!ok || ms > SANDBOX_DELAY_MAX_MS) {
        snprintf(call->err, sizeof(call->err),
                 "metadata.sandbox_delay_ms must be a decimal string from 0 to %d",
                 SANDBOX_DELAY_MAX_MS);
        return false;
    }
    call->delay_ms = ms;
    return true;
}

static enum agape_step sandbox_oom(struct agape_call *call)
{
    return sandbox_fail(call, "out of memory");
}

/* ---------------------------------------------------------------- */
/* Payment                                                          */

static enum agape_step sandbox_charge(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const char *id = sandbox_need(call, "payment_id");
    const char *currency = id ? sandbox_need(call, "currency") : NULL;
    enum agape_outcome outcome = AGAPE_OUTCOME_OK;
    int rc;

    if (currency == NULL) {
        return AGAPE_STEP_FAIL;
    }
    if (h->json_type(h->json_get(call->input, "amount")) != AGAPE_JSON_INT ||
        h->json_int(call->input, "amount", 0) <= 0) {
        return sandbox_fail(call, "amount must be a positive integer (minor units)");
    }
    int64_t amount = h->json_int(call->input, "amount", 0);
    if (!sandbox_delay(call)) {
        return AGAPE_STEP_FAIL;
    }
    for (size_t i = 0; i < sizeof(sandbox_amounts) / sizeof(sandbox_amounts[0]); i++) {
        if (sandbox_amounts[i].amount == amount) {
            outcome = sandbox_amounts[i].outcome;
        }
    }
    switch (outcome) {
    case AGAPE_OUTCOME_INVALID:
        return sandbox_done(call, outcome, "amount %" PRId64 " is refused by the sandbox",
                            amount);
    case AGAPE_OUTCOME_DECLINED:
        rc = h->json_set_str(call->result, "status", "failed");
        if (rc == AGAPE_OK) {
            rc = h->json_set_str(call->result, "decline_code", "card_declined");
        }
        if (rc == AGAPE_OK) {
            rc = h->json_set_str(call->result, "message", "Your card was declined (sandbox).");
        }
        if (rc == AGAPE_OK) {
            rc = sandbox_set_ref(call, "provider_ref", "sbx_", id);
        }
        if (rc != AGAPE_OK) {
            return sandbox_oom(call);
        }
        return sandbox_done(call, outcome, "declined by the sandbox (card_declined) for amount "
                                           "%" PRId64,
                            amount);
    case AGAPE_OUTCOME_UNKNOWN:
        return sandbox_done(call, outcome, "the sandbox timed out after the request was sent "
                                           "(amount %" PRId64 ")",
                            amount);
    case AGAPE_OUTCOME_RATE_LIMITED:
        call->retry_after_ms = 1000;
        return sandbox_done(call, outcome, "the sandbox rate-limits amount %" PRId64
                                           " (Retry-After: 1)",
                            amount);
    case AGAPE_OUTCOME_UNAVAILABLE:
        return sandbox_done(call, outcome, "the sandbox is unavailable for amount %" PRId64,
                            amount);
    default:
        break;
    }

    const char *action = h->json_str(call->input, "metadata.sandbox_action");
    bool approve = action != NULL && strcmp(action, "approve") == 0;
    rc = h->json_set_str(call->result, "status", approve ? "requires_action" : "succeeded");
    if (rc == AGAPE_OK) {
        rc = sandbox_set_ref(call, "provider_ref", "sbx_", id);
    }
    if (rc == AGAPE_OK && approve) {
        struct agape_buf *url = h->buf_new();
        rc = url ? h->buf_printf(url, "https://sandbox.invalid/approve/") : AGAPE_ENOMEM;
        if (rc == AGAPE_OK) {
            rc = h->url_escape(url, id, strlen(id));
        }
        if (rc == AGAPE_OK) {
            rc = h->json_set_str(call->result, "approval_url", h->buf_data(url));
        }
        h->buf_free(url);
    }
    if (rc != AGAPE_OK) {
        return sandbox_oom(call);
    }
    call->outcome = AGAPE_OUTCOME_OK;
    return AGAPE_STEP_DONE;
}

/* A provider_ref the sandbox made ("sbx_…"), or NULL with err filled. */
static const char *sandbox_ref(struct agape_call *call)
{
    const char *ref = sandbox_need(call, "provider_ref");
    if (ref != NULL && (strncmp(ref, "sbx_", 4) != 0 || ref[4] == '\0')) {
        snprintf(call->err, sizeof(call->err),
                 "provider_ref is not a sandbox payment (sbx_…)");
        return NULL;
    }
    return ref;
}

static enum agape_step sandbox_get(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const char *ref = sandbox_ref(call);
    if (ref == NULL) {
        /* Like a provider's 404: the request was understood and refused. */
        call->outcome = AGAPE_OUTCOME_INVALID;
        return AGAPE_STEP_DONE;
    }
    int rc = h->json_set_str(call->result, "status", "succeeded");
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "provider_ref", ref);
    }
    if (rc != AGAPE_OK) {
        return sandbox_oom(call);
    }
    call->outcome = AGAPE_OUTCOME_OK;
    return AGAPE_STEP_DONE;
}

static enum agape_step sandbox_capture(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const char *id = sandbox_need(call, "payment_id");
    const char *ref = id ? sandbox_ref(call) : NULL;
    if (ref == NULL) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        return AGAPE_STEP_DONE;
    }
    int rc = h->json_set_str(call->result, "status", "succeeded");
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "provider_ref", ref);
    }
    if (rc == AGAPE_OK) {
        rc = sandbox_set_ref(call, "capture_ref", "sbxcap_", id);
    }
    if (rc != AGAPE_OK) {
        return sandbox_oom(call);
    }
    call->outcome = AGAPE_OUTCOME_OK;
    return AGAPE_STEP_DONE;
}

static enum agape_step sandbox_refund(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const char *id = sandbox_need(call, "payment_id");
    const char *ref = id ? sandbox_ref(call) : NULL;
    if (ref == NULL) {
        call->outcome = AGAPE_OUTCOME_INVALID;
        return AGAPE_STEP_DONE;
    }
    enum agape_json_type at = h->json_type(h->json_get(call->input, "amount"));
    int64_t amount = h->json_int(call->input, "amount", 0);
    if (at != AGAPE_JSON_ABSENT && at != AGAPE_JSON_NULL && (at != AGAPE_JSON_INT || amount <= 0)) {
        return sandbox_fail(call, "amount must be a positive integer (minor units)");
    }
    int rc = sandbox_set_ref(call, "refund_ref", "sbxre_", id);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "status", "succeeded");
    }
    if (rc == AGAPE_OK && at == AGAPE_JSON_INT) {
        rc = h->json_set_int(call->result, "amount", amount);
    }
    if (rc != AGAPE_OK) {
        return sandbox_oom(call);
    }
    call->outcome = AGAPE_OUTCOME_OK;
    return AGAPE_STEP_DONE;
}

/* ---------------------------------------------------------------- */
/* Messaging                                                        */

static enum agape_step sandbox_send(struct agape_call *call, const char *channel)
{
    const struct agape_host *h = call->host;
    const char *to = sandbox_need(call, "to");
    unsigned char digest[32];
    struct agape_buf *ref = NULL;
    enum agape_step st = AGAPE_STEP_FAIL;

    if (to == NULL) {
        return AGAPE_STEP_FAIL;
    }
    if (strstr(to, "+declined") != NULL || strstr(to, "15005550001") != NULL) {
        return sandbox_done(call, AGAPE_OUTCOME_DECLINED,
                            "the sandbox refuses this %s recipient", channel);
    }
    if (strstr(to, "+unavailable") != NULL) {
        return sandbox_done(call, AGAPE_OUTCOME_UNAVAILABLE,
                            "the sandbox is unavailable for this %s recipient", channel);
    }
    ref = h->buf_new();
    int rc = ref ? h->sha256(to, strlen(to), digest) : AGAPE_ENOMEM;
    if (rc == AGAPE_OK) {
        rc = h->buf_printf(ref, "sbxmsg_");
    }
    if (rc == AGAPE_OK) {
        rc = h->hex(ref, digest, 8);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "provider_ref", h->buf_data(ref));
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "status", "sent");
    }
    if (rc != AGAPE_OK) {
        st = sandbox_oom(call);
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    h->buf_free(ref);
    return st;
}

static enum agape_step sandbox_send_email(struct agape_call *call)
{
    return sandbox_send(call, "email");
}

static enum agape_step sandbox_send_sms(struct agape_call *call)
{
    return sandbox_send(call, "sms");
}

/* ---------------------------------------------------------------- */
/* Analytics and monitoring                                         */

static enum agape_step sandbox_track_batch(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_json *events = h->json_get(call->input, "events");
    if (h->json_type(events) != AGAPE_JSON_ARRAY) {
        return sandbox_fail(call, "events must be an array");
    }
    if (h->json_set_int(call->result, "accepted", (int64_t)h->json_size(events)) != AGAPE_OK) {
        return sandbox_oom(call);
    }
    call->outcome = AGAPE_OUTCOME_OK;
    return AGAPE_STEP_DONE;
}

static enum agape_step sandbox_sent(struct agape_call *call)
{
    if (call->host->json_set_str(call->result, "status", "sent") != AGAPE_OK) {
        return sandbox_oom(call);
    }
    call->outcome = AGAPE_OUTCOME_OK;
    return AGAPE_STEP_DONE;
}

static enum agape_step sandbox_report_error(struct agape_call *call)
{
    return sandbox_sent(call);
}

static enum agape_step sandbox_send_metrics(struct agape_call *call)
{
    return sandbox_sent(call);
}

/* ---------------------------------------------------------------- */
/* Auth                                                             */

/* "&name=<escaped value>" when the input has a string at name. */
static int sandbox_query(struct agape_call *call, struct agape_buf *url, const char *name)
{
    const struct agape_host *h = call->host;
    const char *v = h->json_str(call->input, name);
    if (v == NULL) {
        return AGAPE_OK;
    }
    int rc = h->buf_printf(url, "&%s=", name);
    if (rc == AGAPE_OK) {
        rc = h->url_escape(url, v, strlen(v));
    }
    return rc;
}

static enum agape_step sandbox_authorize_url(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct sandbox_ctx *ctx = call->ctx;
    const char *state = sandbox_need(call, "state");
    if (state == NULL) {
        return AGAPE_STEP_FAIL;
    }
    struct agape_buf *url = h->buf_new();
    int rc = url ? h->buf_printf(url, "%s/authorize?state=", ctx->base_url) : AGAPE_ENOMEM;
    if (rc == AGAPE_OK) {
        rc = h->url_escape(url, state, strlen(state));
    }
    if (rc == AGAPE_OK) {
        rc = sandbox_query(call, url, "nonce");
    }
    if (rc == AGAPE_OK) {
        rc = sandbox_query(call, url, "code_challenge");
    }
    if (rc == AGAPE_OK) {
        rc = sandbox_query(call, url, "redirect_uri");
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "url", h->buf_data(url));
    }
    h->buf_free(url);
    if (rc != AGAPE_OK) {
        return sandbox_oom(call);
    }
    call->outcome = AGAPE_OUTCOME_OK;
    return AGAPE_STEP_DONE;
}

/* The fixed user, unless the credential at `field` is "bad". */
static enum agape_step sandbox_user(struct agape_call *call, const char *field)
{
    const struct agape_host *h = call->host;
    const char *v = sandbox_need(call, field);
    if (v == NULL) {
        return AGAPE_STEP_FAIL;
    }
    if (strcmp(v, "bad") == 0) {
        return sandbox_done(call, AGAPE_OUTCOME_INVALID, "%s refused by the sandbox", field);
    }
    int rc = h->json_set_str(call->result, "subject", "sandbox-user-1");
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "email", "sandbox@example.com");
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_bool(call->result, "email_verified", true);
    }
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "name", "Sandbox User");
    }
    if (rc != AGAPE_OK) {
        return sandbox_oom(call);
    }
    call->outcome = AGAPE_OUTCOME_OK;
    return AGAPE_STEP_DONE;
}

static enum agape_step sandbox_exchange_code(struct agape_call *call)
{
    return sandbox_user(call, "code");
}

static enum agape_step sandbox_verify_id_token(struct agape_call *call)
{
    return sandbox_user(call, "id_token");
}

/* ---------------------------------------------------------------- */
/* Webhooks: Stripe's scheme under another header name               */

struct sandbox_sig {
    int64_t t;
    const char *v1[SANDBOX_SIG_MAX_V1];
    size_t v1_len[SANDBOX_SIG_MAX_V1];
    size_t n_v1;
};

static bool sandbox_parse_t(const char *s, size_t len, int64_t *out)
{
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

/* Split on ',', each element on its first '='; first t counts, every v1 is
 * kept, anything else ignored. False without a usable t. */
static bool sandbox_parse_header(const char *hdr, struct sandbox_sig *sig)
{
    bool have_t = false;
    const char *p = hdr;

    memset(sig, 0, sizeof(*sig));
    if (strlen(hdr) > SANDBOX_SIG_HEADER_MAX) {
        return false;
    }
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (eq != NULL) {
            size_t klen = (size_t)(eq - p);
            const char *val = eq + 1;
            size_t vlen = len - klen - 1;
            if (klen == 1 && p[0] == 't' && !have_t) {
                if (!sandbox_parse_t(val, vlen, &sig->t)) {
                    return false;
                }
                have_t = true;
            } else if (klen == 2 && p[0] == 'v' && p[1] == '1' &&
                       sig->n_v1 < SANDBOX_SIG_MAX_V1) {
                sig->v1[sig->n_v1] = val;
                sig->v1_len[sig->n_v1] = vlen;
                sig->n_v1++;
            }
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    return have_t;
}

static enum agape_step sandbox_verify(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct sandbox_ctx *ctx = call->ctx;
    const struct agape_webhook *wh = call->webhook;
    struct agape_buf *payload = NULL, *expected = NULL;
    struct sandbox_sig sig;
    unsigned char mac[32];
    enum agape_step st = AGAPE_STEP_FAIL;

    if (wh == NULL || (wh->body == NULL && wh->body_len > 0)) {
        return sandbox_fail(call, "verify called without a webhook");
    }
    if (ctx->webhook_secret == NULL) {
        return sandbox_done(call, AGAPE_OUTCOME_INVALID, "webhook_secret not configured");
    }
    const char *hdr = h->webhook_header(call, "Sandbox-Signature");
    if (hdr == NULL) {
        return sandbox_done(call, AGAPE_OUTCOME_INVALID, "No Sandbox-Signature header");
    }
    if (!sandbox_parse_header(hdr, &sig)) {
        return sandbox_done(call, AGAPE_OUTCOME_INVALID,
                            "Unable to extract timestamp and signatures from header");
    }
    if (sig.n_v1 == 0) {
        return sandbox_done(call, AGAPE_OUTCOME_INVALID,
                            "No signatures found with expected scheme v1");
    }
    payload = h->buf_new();
    expected = h->buf_new();
    int rc = payload && expected ? h->buf_printf(payload, "%" PRId64 ".", sig.t) : AGAPE_ENOMEM;
    if (rc == AGAPE_OK && wh->body_len > 0) {
        rc = h->buf_add(payload, wh->body, wh->body_len);
    }
    if (rc == AGAPE_OK) {
        rc = h->hmac_sha256(ctx->webhook_secret, strlen(ctx->webhook_secret),
                            h->buf_data(payload), h->buf_len(payload), mac);
    }
    if (rc == AGAPE_OK) {
        rc = h->hex(expected, mac, sizeof(mac));
    }
    if (rc != AGAPE_OK) {
        st = sandbox_fail(call, "cannot compute the signature (rc %d)", rc);
        goto out;
    }
    bool match = false;
    for (size_t i = 0; i < sig.n_v1; i++) {
        if (h->ct_equal(h->buf_data(expected), h->buf_len(expected), sig.v1[i],
                        sig.v1_len[i])) {
            match = true;
        }
    }
    if (!match) {
        st = sandbox_done(call, AGAPE_OUTCOME_INVALID,
                          "No signatures found matching the expected signature for payload");
        goto out;
    }
    if (ctx->tolerance_s > 0 &&
        (sig.t < wh->now_s - ctx->tolerance_s || sig.t > wh->now_s + ctx->tolerance_s)) {
        st = sandbox_done(call, AGAPE_OUTCOME_INVALID, "Timestamp outside the tolerance zone");
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    h->buf_free(payload);
    h->buf_free(expected);
    return st;
}

/* {"id", "type", "payment_ref"?, "status"?, "data"?} → the normalized event. */
static enum agape_step sandbox_normalize(struct agape_call *call)
{
    const struct agape_host *h = call->host;
    const struct agape_webhook *wh = call->webhook;
    struct agape_json *ev = NULL;
    enum agape_step st;

    if (wh == NULL || wh->body == NULL) {
        return sandbox_fail(call, "normalize called without a webhook");
    }
    ev = h->json_parse(wh->body, wh->body_len, NULL, 0);
    const char *id = h->json_str(ev, "id");
    const char *type = h->json_str(ev, "type");
    const struct agape_json *ref = h->json_get(ev, "payment_ref");
    const struct agape_json *status = h->json_get(ev, "status");
    const struct agape_json *data = h->json_get(ev, "data");

    if (h->json_type(ev) != AGAPE_JSON_OBJECT) {
        st = sandbox_done(call, AGAPE_OUTCOME_INVALID, "the webhook body is not a JSON object");
        goto out;
    }
    if (id == NULL || id[0] == '\0' || type == NULL || type[0] == '\0') {
        st = sandbox_done(call, AGAPE_OUTCOME_INVALID,
                          "a sandbox event needs string members id and type");
        goto out;
    }
    if ((ref != NULL && h->json_type(ref) != AGAPE_JSON_STRING) ||
        (status != NULL && h->json_type(status) != AGAPE_JSON_STRING)) {
        st = sandbox_done(call, AGAPE_OUTCOME_INVALID,
                          "payment_ref and status must be strings when present");
        goto out;
    }
    int rc = h->json_set_str(call->result, "event_id", id);
    if (rc == AGAPE_OK) {
        rc = h->json_set_str(call->result, "type", type);
    }
    if (rc == AGAPE_OK && ref != NULL) {
        rc = h->json_set_copy(call->result, "payment_ref", ref);
    }
    if (rc == AGAPE_OK && status != NULL) {
        rc = h->json_set_copy(call->result, "status", status);
    }
    if (rc == AGAPE_OK && h->json_type(data) == AGAPE_JSON_OBJECT) {
        rc = h->json_set_copy(call->result, "object", data);
    }
    if (rc != AGAPE_OK) {
        st = sandbox_oom(call);
        goto out;
    }
    call->outcome = AGAPE_OUTCOME_OK;
    st = AGAPE_STEP_DONE;
out:
    h->json_free(ev);
    return st;
}

/* ---------------------------------------------------------------- */
/* Descriptor                                                       */

static const struct agape_auth_ops sandbox_auth_ops = {
    .size = sizeof(struct agape_auth_ops),
    .authorize_url = sandbox_authorize_url,
    .exchange_code = sandbox_exchange_code,
    .verify_id_token = sandbox_verify_id_token,
};

static const struct agape_payment_ops sandbox_payment_ops = {
    .size = sizeof(struct agape_payment_ops),
    .charge = sandbox_charge,
    .get = sandbox_get,
    .capture = sandbox_capture,
    .refund = sandbox_refund,
};

static const struct agape_messaging_ops sandbox_messaging_ops = {
    .size = sizeof(struct agape_messaging_ops),
    .send_email = sandbox_send_email,
    .send_sms = sandbox_send_sms,
};

static const struct agape_analytics_ops sandbox_analytics_ops = {
    .size = sizeof(struct agape_analytics_ops),
    .track_batch = sandbox_track_batch,
};

static const struct agape_monitoring_ops sandbox_monitoring_ops = {
    .size = sizeof(struct agape_monitoring_ops),
    .report_error = sandbox_report_error,
    .send_metrics = sandbox_send_metrics,
};

static const struct agape_webhook_ops sandbox_webhook_ops = {
    .size = sizeof(struct agape_webhook_ops),
    .verify = sandbox_verify,
    .normalize = sandbox_normalize,
};

static const struct agape_plugin sandbox_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "sandbox",
    .version = "1.0.0",
    .kinds = AGAPE_KIND_AUTH | AGAPE_KIND_PAYMENT | AGAPE_KIND_MESSAGING |
             AGAPE_KIND_ANALYTICS | AGAPE_KIND_MONITORING | AGAPE_KIND_WEBHOOK,
    .options = sandbox_options,
    .init = sandbox_init,
    .destroy = sandbox_destroy,
    .auth = &sandbox_auth_ops,
    .payment = &sandbox_payment_ops,
    .messaging = &sandbox_messaging_ops,
    .analytics = &sandbox_analytics_ops,
    .monitoring = &sandbox_monitoring_ops,
    .webhook = &sandbox_webhook_ops,
};

AGAPE_PLUGIN_DEFINE(sandbox_plugin)
