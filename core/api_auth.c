/* api_auth — end-user sign-in; the routes and the store layout are in
 * auth.h.
 *
 * The flow, and why each step is where it is:
 *   login     the state, nonce and PKCE verifier are made here and committed
 *             BEFORE the browser is sent away, so a callback can never arrive
 *             for a login the store does not know; the plugin only builds the
 *             URL (from the discovery document, fetched as a step).
 *   callback  the state is checked (exists, this provider) and consumed in a
 *             batch BEFORE the code is exchanged: the consuming batch inserts
 *             a "login_used:" marker, and an insert fails when the key
 *             exists, so of two concurrent callbacks with one state exactly
 *             one goes on. A replayed or unknown state is a 400.
 *   token     the id_token is verified by the plugin (signature via the JWKS,
 *             issuer, audience, expiry, nonce when given).
 *   then      the user is upserted under provider | 0x00 | subject (its id is
 *             made once and kept), a session is made whose token is returned
 *             once and stored only as its SHA-256, and both are committed in
 *             one batch before the answer leaves.
 * Every commit goes through httpd_commit: the connection is suspended while
 * its batch joins the store's next group commit, so no server thread waits
 * on the disk, and the next step runs once the batch is durable.
 * Nothing here logs a code, an id_token, a session token or a verifier: the
 * request log has the path without the query string, and the plugin's
 * reasons never quote a token. */
#include "auth.h"

#include "api.h"
#include "crypto.h"
#include "log.h"
#include "store_keys.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AUTH_STATE_MAX 128
#define AUTH_PROVIDER_MAX 63
#define AUTH_LOGIN_PREFIX "login:"
#define AUTH_USED_PREFIX "login_used:"
#define AUTH_EXP_PREFIX "login_exp:"
#define AUTH_EXP_PREFIX_LEN (sizeof(AUTH_EXP_PREFIX) - 1)

enum auth_kind { AUTH_LOGIN, AUTH_CALLBACK, AUTH_TOKEN };

struct auth_work {
    enum auth_kind kind;
    struct provider *prov;
    json_t *login;            /* the login record (login: the one made; callback: consumed) */
    json_t *input;            /* the provider operation's input, once the commit is done */
    struct dispatch_op *op;
    /* sign-in: what the commit of the user and the session needs, and the
     * answer that goes out once it is durable */
    json_t *result;           /* the plugin's result (a reference) */
    json_t *answer;
    bool user_inserted;       /* the batch inserted a new user (may lose a race) */
    int attempt;
};

/* Drop the prepared answer; it holds a session token, wiped first. */
static void answer_drop(struct auth_work *w)
{
    json_t *tok = json_object_get(json_object_get(w->answer, "session"), "token");
    if (json_is_string(tok)) {
        explicit_bzero((char *)json_string_value(tok), json_string_length(tok));
    }
    json_decref(w->answer);
    w->answer = NULL;
}

static void work_free(void *p)
{
    struct auth_work *w = p;
    if (w == NULL) {
        return;
    }
    dispatch_free(w->op);
    json_decref(w->login);
    json_decref(w->input);
    json_decref(w->result);
    answer_drop(w);
    free(w);
}

static struct auth_work *work_new(struct httpd_req *r, enum auth_kind kind, struct provider *p)
{
    struct auth_work *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return NULL;
    }
    w->kind = kind;
    w->prov = p;
    r->work = w;
    r->free_work = work_free;
    return w;
}

/* ---------------------------------------------------------------- */
/* Helpers (auth.h)                                                 */

static bool pkce_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

int auth_pkce_s256(const char *verifier, char *out, size_t outlen)
{
    size_t n = verifier ? strlen(verifier) : 0;
    unsigned char md[32];
    struct agape_buf b;
    int rc;

    if (n < 43 || n > 128) {
        return AGAPE_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!pkce_char(verifier[i])) {
            return AGAPE_EINVAL;
        }
    }
    if (outlen < 44) {
        return AGAPE_ERANGE;
    }
    crypto_sha256(verifier, n, md);
    buf_init(&b, 128);
    rc = crypto_base64url(&b, md, sizeof(md));
    if (rc == AGAPE_OK && b.len + 1 > outlen) {
        rc = AGAPE_ERANGE;
    }
    if (rc == AGAPE_OK) {
        memcpy(out, b.data, b.len + 1);
    }
    buf_fini(&b);
    return rc;
}

int auth_random_b64url(size_t nbytes, char *out, size_t outlen)
{
    unsigned char raw[64];
    struct agape_buf b;
    int rc;

    if (nbytes == 0 || nbytes > sizeof(raw)) {
        return AGAPE_ERANGE;
    }
    if (crypto_random(raw, nbytes) != AGAPE_OK) {
        return AGAPE_ERROR;
    }
    buf_init(&b, 256);
    rc = crypto_base64url(&b, raw, nbytes);
    explicit_bzero(raw, sizeof(raw));
    if (rc == AGAPE_OK && b.len + 1 > outlen) {
        rc = AGAPE_ERANGE;
    }
    if (rc == AGAPE_OK) {
        memcpy(out, b.data, b.len + 1);
    }
    if (b.data != NULL) {
        explicit_bzero(b.data, b.len);
    }
    buf_fini(&b);
    return rc;
}

/* origin: "scheme://host[:port]" with optional trailing slashes. */
static bool origin_match(const char *origin, const char *url)
{
    size_t n = strlen(origin);
    while (n > 0 && origin[n - 1] == '/') {
        n--;
    }
    const char *sep = strstr(origin, "://");
    if (sep == NULL || sep == origin || (size_t)(sep - origin) + 3 >= n) {
        return false; /* no scheme or no host: matches nothing */
    }
    if (memchr(sep + 3, '/', n - (size_t)(sep + 3 - origin)) != NULL) {
        return false; /* an origin has no path */
    }
    return strncasecmp(url, origin, n) == 0 && (url[n] == '\0' || url[n] == '/');
}

bool auth_return_to_allowed(const json_t *allowed, const char *url, char *why, size_t whylen)
{
    char dummy[8];
    if (why == NULL) {
        why = dummy;
        whylen = sizeof(dummy);
    }
    size_t n = strlen(url);
    if (n > AUTH_RETURN_TO_MAX) {
        snprintf(why, whylen, "return_to is over %d bytes", AUTH_RETURN_TO_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f || c == '\\') {
            snprintf(why, whylen, "return_to must be a URL without spaces, backslashes or "
                                  "control characters (percent-encode the rest)");
            return false;
        }
    }
    if (json_is_string(allowed)) {
        if (origin_match(json_string_value(allowed), url)) {
            return true;
        }
    } else if (json_is_array(allowed)) {
        size_t i;
        json_t *v;
        json_array_foreach(allowed, i, v) {
            if (json_is_string(v) && origin_match(json_string_value(v), url)) {
                return true;
            }
        }
    }
    if (json_array_size(allowed) == 0 && !json_is_string(allowed)) {
        snprintf(why, whylen, "return_to is not allowed: no auth.allowed_origins are configured");
    } else {
        snprintf(why, whylen, "return_to must start with one of auth.allowed_origins");
    }
    return false;
}

/* ---------------------------------------------------------------- */
/* Configuration, providers, answers                                */

static const json_t *auth_conf(struct httpd_req *r, const char *key)
{
    return json_object_get(json_object_get(r->app->conf->raw, "auth"), key);
}

static int64_t session_ttl_s(struct httpd_req *r)
{
    const json_t *v = auth_conf(r, "session_ttl_seconds");
    if (json_is_integer(v) && json_integer_value(v) >= 60 &&
        json_integer_value(v) <= 31536000) {
        return (int64_t)json_integer_value(v);
    }
    if (v != NULL && !json_is_null(v)) {
        log_warn("auth.session_ttl_seconds must be an integer from 60 to 31536000; using %d",
                 AUTH_SESSION_TTL_DEFAULT_S);
    }
    return AUTH_SESSION_TTL_DEFAULT_S;
}

/* The named provider when it is usable and of the auth kind; else 404. */
static struct provider *auth_provider(struct httpd_req *r, const char *name)
{
    struct provider *p = registry_find(r->app->reg, name);
    if (p == NULL || !(p->plugin->desc->kinds & AGAPE_KIND_AUTH) || !p->usable) {
        httpd_reply_error(r, 404, "not_found", "provider", "no usable sign-in provider '%s'",
                          name);
        return NULL;
    }
    return p;
}

static void reply_unauthenticated(struct httpd_req *r, const char *msg)
{
    httpd_add_header(r, "WWW-Authenticate", "Bearer");
    httpd_reply_error(r, 401, "unauthenticated", NULL, "%s", msg);
}

/* The user record as clients see it. */
static json_t *user_public(const json_t *user)
{
    json_t *o = json_copy((json_t *)user);
    json_object_del(o, "v");
    return o;
}

static void dispatched(struct dispatch_op *op, void *arg)
{
    (void)op;
    httpd_resume(arg); /* client thread → a server thread runs on_resume */
}

/* A provider operation for this request: suspend, then dispatch. */
static void auth_dispatch(struct httpd_req *r, struct auth_work *w, const char *op,
                          json_t *input, httpd_resume_fn done)
{
    char base[64];
    if (crypto_random_id("auth_", 12, base, sizeof(base)) != AGAPE_OK) {
        snprintf(base, sizeof(base), "auth_%s", r->id);
    }
    httpd_suspend(r, done);
    w->op = dispatch_start(r->app->client, &r->app->payment_policy, op, input, &w->prov, 1,
                           base, false, dispatched, r);
    if (w->op == NULL) {
        httpd_resume(r);
    }
}

/* ---------------------------------------------------------------- */
/* Login                                                            */

struct purge {
    int64_t now;
    size_t n;
    struct {
        uint8_t key[STORE_KEY_MAX];
        size_t klen;
    } items[AUTH_PURGE_MAX];
};

static int purge_visit(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct purge *pg = arg;
    (void)val;
    (void)vlen;
    if (klen < AUTH_EXP_PREFIX_LEN + 8 || klen > STORE_KEY_MAX) {
        return 0;
    }
    uint64_t exp = store_key_read_be64((const uint8_t *)key + AUTH_EXP_PREFIX_LEN);
    if ((int64_t)exp > pg->now || pg->n >= AUTH_PURGE_MAX) {
        return 1; /* in expiry order: the rest is younger */
    }
    memcpy(pg->items[pg->n].key, key, klen);
    pg->items[pg->n].klen = klen;
    pg->n++;
    return 0;
}

/* Delete up to AUTH_PURGE_MAX expired logins (record, marker, index). */
static void purge_expired(struct httpd_req *r, struct store_batch *b, int64_t now)
{
    struct purge *pg = calloc(1, sizeof(*pg));
    if (pg == NULL) {
        return;
    }
    pg->now = now;
    store_scan(r->app->store, STORE_META, AUTH_EXP_PREFIX, AUTH_EXP_PREFIX_LEN, NULL, 0,
               AUTH_PURGE_MAX + 1, purge_visit, pg);
    for (size_t i = 0; i < pg->n; i++) {
        const char *state = (const char *)pg->items[i].key + AUTH_EXP_PREFIX_LEN + 8;
        size_t slen = pg->items[i].klen - AUTH_EXP_PREFIX_LEN - 8;
        char k[AUTH_STATE_MAX + 32];
        if (slen <= AUTH_STATE_MAX) {
            int n = snprintf(k, sizeof(k), AUTH_LOGIN_PREFIX "%.*s", (int)slen, state);
            store_batch_del(b, STORE_META, k, (size_t)n);
            n = snprintf(k, sizeof(k), AUTH_USED_PREFIX "%.*s", (int)slen, state);
            store_batch_del(b, STORE_META, k, (size_t)n);
        }
        store_batch_del(b, STORE_META, pg->items[i].key, pg->items[i].klen);
    }
    free(pg);
}

static void login_done(struct httpd_req *r)
{
    struct auth_work *w = r->work;
    if (w->op == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory starting the sign-in");
        return;
    }
    const struct dispatch_outcome *o = dispatch_result(w->op);
    const char *url = json_string_value(json_object_get(o->result, "url"));
    if (o->outcome != AGAPE_OUTCOME_OK || url == NULL ||
        (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)) {
        httpd_reply_error(r, 502, "provider_unavailable", "provider",
                          "could not start the sign-in with %s: %s", w->prov->name,
                          o->err[0] ? o->err : "no authorization URL");
        return;
    }
    httpd_add_header(r, "Location", url);
    httpd_add_header(r, "Cache-Control", "no-store");
    httpd_reply_json(r, 302, json_pack("{s:s}", "url", url));
}

/* The login record is durable: now the provider builds the URL. */
static void login_committed(struct httpd_req *r)
{
    struct auth_work *w = r->work;
    if (r->commit_rc != AGAPE_OK) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the sign-in could not be recorded");
        return;
    }
    auth_dispatch(r, w, "authorize_url", w->input, login_done);
}

static void auth_login(struct httpd_req *r, const char *pname)
{
    struct provider *p = auth_provider(r, pname);
    if (p == NULL) {
        return;
    }
    const char *return_to = httpd_query(r, "return_to");
    if (return_to != NULL && return_to[0] == '\0') {
        return_to = NULL;
    }
    char why[160];
    if (return_to != NULL &&
        !auth_return_to_allowed(auth_conf(r, "allowed_origins"), return_to, why, sizeof(why))) {
        httpd_reply_error(r, 400, "invalid_request", "return_to", "%s", why);
        return;
    }
    char state[64], nonce[64], verifier[64], challenge[64];
    if (auth_random_b64url(32, state, sizeof(state)) != AGAPE_OK ||
        auth_random_b64url(32, nonce, sizeof(nonce)) != AGAPE_OK ||
        auth_random_b64url(32, verifier, sizeof(verifier)) != AGAPE_OK ||
        auth_pkce_s256(verifier, challenge, sizeof(challenge)) != AGAPE_OK) {
        httpd_reply_error(r, 503, "not_ready", NULL, "no randomness for the sign-in");
        return;
    }
    struct auth_work *w = work_new(r, AUTH_LOGIN, p);
    if (w == NULL) {
        return;
    }
    int64_t now = client_wall_ms();
    int64_t expires = now + AUTH_LOGIN_TTL_MS;
    w->login = json_pack("{s:i, s:s, s:s, s:s, s:I}", "v", 1, "provider", p->name, "nonce",
                         nonce, "verifier", verifier, "expires", (json_int_t)expires);
    if (w->login != NULL && return_to != NULL) {
        json_object_set_new(w->login, "return_to", json_string(return_to));
    }
    char *text = w->login ? json_dumps(w->login, JSON_COMPACT) : NULL;
    if (text == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return;
    }
    char k[AUTH_STATE_MAX + 32];
    uint8_t ek[AUTH_EXP_PREFIX_LEN + 8 + 64];
    int kn = snprintf(k, sizeof(k), AUTH_LOGIN_PREFIX "%s", state);
    size_t slen = strlen(state);
    memcpy(ek, AUTH_EXP_PREFIX, AUTH_EXP_PREFIX_LEN);
    store_key_be64(ek + AUTH_EXP_PREFIX_LEN, (uint64_t)expires);
    memcpy(ek + AUTH_EXP_PREFIX_LEN + 8, state, slen);

    w->input = json_pack("{s:s, s:s, s:s}", "state", state, "nonce", nonce, "code_challenge",
                         challenge);
    if (w->input != NULL && return_to != NULL) {
        json_object_set_new(w->input, "return_to", json_string(return_to));
    }
    explicit_bzero(verifier, sizeof(verifier));
    if (w->input == NULL) {
        free(text);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return;
    }
    struct store_batch *b = store_batch_new();
    purge_expired(r, b, now);
    store_batch_put(b, STORE_META, k, (size_t)kn, text, strlen(text));
    store_batch_put(b, STORE_META, ek, AUTH_EXP_PREFIX_LEN + 8 + slen, "1", 1);
    free(text);
    httpd_commit(r, b, login_committed);
}

/* ---------------------------------------------------------------- */
/* Users and sessions                                               */

static json_t *store_json(struct httpd_req *r, enum store_table t, const void *key, size_t klen,
                          int *rc)
{
    char *val = NULL;
    size_t vlen = 0;
    *rc = store_get(r->app->store, t, key, klen, &val, &vlen);
    if (*rc != AGAPE_OK) {
        return NULL;
    }
    json_t *o = json_loadb(val, vlen, 0, NULL);
    free(val);
    if (!json_is_object(o)) {
        json_decref(o);
        *rc = AGAPE_ESTORE;
        return NULL;
    }
    return o;
}

static void set_str_or_null(json_t *o, const char *k, const json_t *v)
{
    json_object_set_new(o, k, json_is_string(v) ? json_copy((json_t *)v) : json_null());
}

/* The user record from the plugin's result, keeping the id and created_at
 * of `old` when there is one. */
static json_t *user_make(const json_t *old, const json_t *res, const char *provider,
                         const char *now_iso)
{
    char id[48];
    const char *old_id = json_string_value(json_object_get(old, "id"));
    if (old_id != NULL) {
        snprintf(id, sizeof(id), "%s", old_id);
    } else if (crypto_random_id("usr_", 12, id, sizeof(id)) != AGAPE_OK) {
        return NULL;
    }
    const char *created = json_string_value(json_object_get(old, "created_at"));
    json_t *u = json_pack("{s:i, s:s}", "v", 1, "id", id);
    if (u == NULL) {
        return NULL;
    }
    set_str_or_null(u, "email", json_object_get(res, "email"));
    json_object_set_new(u, "email_verified",
                        json_boolean(json_is_true(json_object_get(res, "email_verified"))));
    set_str_or_null(u, "name", json_object_get(res, "name"));
    set_str_or_null(u, "picture", json_object_get(res, "picture"));
    json_object_set_new(u, "provider", json_string(provider));
    json_object_set(u, "subject", json_object_get(res, "subject"));
    json_object_set_new(u, "created_at", json_string(created ? created : now_iso));
    json_object_set_new(u, "updated_at", json_string(now_iso));
    return u;
}

static void signin_committed(struct httpd_req *r);

/* One attempt at the sign-in's batch: the user upserted under provider |
 * 0x00 | subject (inserted when new, so that of two concurrent first
 * sign-ins of one person exactly one makes the record) and a new session,
 * committed together; the answer waits in w->answer until it is durable. */
static void signin_attempt(struct httpd_req *r, struct auth_work *w)
{
    const json_t *res = w->result;
    const char *sub = json_string_value(json_object_get(res, "subject"));
    const char *pname = w->prov->name;
    uint8_t ukey[STORE_KEY_MAX];
    size_t uklen = 0;
    char token[80] = "";
    unsigned char thash[32];
    char now_iso[32], exp_iso[32];
    int64_t now = client_wall_ms();
    int64_t expires = now + session_ttl_s(r) * 1000;
    int grc;

    if (sub == NULL || sub[0] == '\0' || strlen(sub) > 255 ||
        store_key_pair(ukey, sizeof(ukey), pname, sub, &uklen) != AGAPE_OK) {
        httpd_reply_error(r, 502, "provider_unavailable", "provider",
                          "%s returned no usable subject", pname);
        return;
    }
    api_time_iso(now, now_iso);
    api_time_iso(expires, exp_iso);
    json_t *old = store_json(r, STORE_USERS, ukey, uklen, &grc);
    if (old == NULL && grc != AGAPE_ENOENT) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the user store is not available");
        return;
    }
    json_t *user = user_make(old, res, pname, now_iso);
    json_decref(old);
    if (user == NULL || crypto_random_id("ses_", 32, token, sizeof(token)) != AGAPE_OK) {
        json_decref(user);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return;
    }
    crypto_sha256(token, strlen(token), thash);
    json_t *sess = json_pack("{s:i, s:O, s:s, s:s, s:I, s:I, s:b}", "v", 1, "user_id",
                             json_object_get(user, "id"), "provider", pname, "subject", sub,
                             "created", (json_int_t)now, "expires", (json_int_t)expires,
                             "revoked", 0);
    char *utext = json_dumps(user, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char *stext = sess ? json_dumps(sess, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(sess);
    w->answer = json_pack("{s:o, s:{s:s, s:s}}", "user", user_public(user), "session", "token",
                          token, "expires_at", exp_iso);
    explicit_bzero(token, sizeof(token));
    json_decref(user);
    if (utext == NULL || stext == NULL || w->answer == NULL) {
        free(utext);
        free(stext);
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return;
    }
    const json_t *rt = json_object_get(w->login, "return_to");
    if (json_is_string(rt)) {
        json_object_set(w->answer, "return_to", (json_t *)rt);
    }
    struct store_batch *b = store_batch_new();
    w->user_inserted = grc == AGAPE_ENOENT;
    if (w->user_inserted) {
        store_batch_insert(b, STORE_USERS, ukey, uklen, utext, strlen(utext));
    } else {
        store_batch_put(b, STORE_USERS, ukey, uklen, utext, strlen(utext));
    }
    store_batch_put(b, STORE_SESSIONS, thash, sizeof(thash), stext, strlen(stext));
    free(utext);
    free(stext);
    httpd_commit(r, b, signin_committed);
}

static void signin_committed(struct httpd_req *r)
{
    struct auth_work *w = r->work;
    if (r->commit_rc == AGAPE_EEXIST && w->user_inserted && w->attempt == 0) {
        /* A concurrent first sign-in of the same person made the record:
         * update that one instead (its id stays). */
        answer_drop(w);
        w->attempt++;
        signin_attempt(r, w);
        return;
    }
    if (r->commit_rc != AGAPE_OK) {
        answer_drop(w);
        log_event(AGAPE_LOG_ERROR, &(struct log_fields){.request_id = r->id, .latency_ms = -1},
                  "sign-in with %s could not be recorded (rc %d)", w->prov->name,
                  r->commit_rc);
        httpd_reply_error(r, 503, "not_ready", NULL, "the sign-in could not be recorded");
        return;
    }
    log_event(AGAPE_LOG_INFO,
              &(struct log_fields){.request_id = r->id, .provider = w->prov->name,
                                   .latency_ms = -1},
              "signed in user %s",
              json_string_value(json_object_get(json_object_get(w->answer, "user"), "id")));
    httpd_add_header(r, "Cache-Control", "no-store");
    /* The work keeps a reference, so that work_free wipes the token. */
    httpd_reply_json(r, 200, json_incref(w->answer));
}

/* After exchange_code or verify_id_token. */
static void signin_done(struct httpd_req *r)
{
    struct auth_work *w = r->work;
    if (w->op == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory starting the sign-in");
        return;
    }
    const struct dispatch_outcome *o = dispatch_result(w->op);
    switch (o->outcome) {
    case AGAPE_OUTCOME_OK:
        w->result = json_incref(o->result);
        signin_attempt(r, w);
        return;
    case AGAPE_OUTCOME_INVALID:
    case AGAPE_OUTCOME_DECLINED:
        /* A refused code or id_token: the reason names the check, never the token. */
        httpd_reply_error(r, 400, "invalid_request", w->kind == AUTH_CALLBACK ? "code" : "id_token",
                          "%s", o->err[0] ? o->err : "the provider refused the sign-in");
        return;
    case AGAPE_OUTCOME_AUTH:
        httpd_reply_error(r, 502, "provider_unavailable", "provider",
                          "%s refused the gateway's client credentials", w->prov->name);
        return;
    default:
        httpd_reply_error(r, 502, "provider_unavailable", "provider",
                          "%s could not be reached: %s", w->prov->name,
                          o->err[0] ? o->err : dispatch_outcome_name(o->outcome));
        return;
    }
}

/* ---------------------------------------------------------------- */
/* Callback and token                                               */

static bool state_chars_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_') ||
            n >= AUTH_STATE_MAX) {
            return false;
        }
    }
    return n > 0;
}

/* A short printable copy of a query value for a message. */
static void quote_param(const char *s, char out[72])
{
    size_t i = 0;
    for (; s[i] != '\0' && i < 64; i++) {
        char c = s[i];
        out[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.')
                     ? c
                     : '?';
    }
    out[i] = '\0';
}

/* The state is spent (durably): now the checks of what came with it, then
 * the code exchange. */
static void callback_consumed(struct httpd_req *r)
{
    struct auth_work *w = r->work;
    if (r->commit_rc == AGAPE_EEXIST) {
        /* another callback with this state got there first */
        httpd_reply_error(r, 400, "invalid_request", "state", "unknown or used state");
        return;
    }
    if (r->commit_rc != AGAPE_OK) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the sign-in store is not available");
        return;
    }
    json_int_t expires = json_integer_value(json_object_get(w->login, "expires"));
    if (expires <= client_wall_ms()) {
        httpd_reply_error(r, 400, "invalid_request", "state",
                          "this sign-in expired; start again from the login URL");
        return;
    }
    const char *error = httpd_query(r, "error");
    if (error != NULL) {
        char q[72];
        quote_param(error, q);
        httpd_reply_error(r, 400, "invalid_request", "error",
                          "the provider did not sign the user in: %s", q);
        return;
    }
    const char *code = httpd_query(r, "code");
    if (code == NULL || code[0] == '\0' || strlen(code) > AUTH_CODE_MAX) {
        httpd_reply_error(r, 400, "invalid_request", "code",
                          "code is required (at most %d bytes)", AUTH_CODE_MAX);
        return;
    }
    w->input = json_pack("{s:s, s:O, s:O}", "code", code, "code_verifier",
                         json_object_get(w->login, "verifier"), "nonce",
                         json_object_get(w->login, "nonce"));
    if (w->input == NULL) {
        httpd_reply_error(r, 400, "invalid_request", "code", "code must be UTF-8 text");
        return;
    }
    auth_dispatch(r, w, "exchange_code", w->input, signin_done);
}

static void auth_callback(struct httpd_req *r, const char *pname)
{
    struct provider *p = auth_provider(r, pname);
    if (p == NULL) {
        return;
    }
    const char *state = httpd_query(r, "state");
    if (state == NULL || state[0] == '\0') {
        httpd_reply_error(r, 400, "invalid_request", "state", "state is required");
        return;
    }
    if (!state_chars_ok(state)) {
        httpd_reply_error(r, 400, "invalid_request", "state", "unknown or used state");
        return;
    }
    char k[AUTH_STATE_MAX + 32];
    char uk[AUTH_STATE_MAX + 32];
    int kn = snprintf(k, sizeof(k), AUTH_LOGIN_PREFIX "%s", state);
    int ukn = snprintf(uk, sizeof(uk), AUTH_USED_PREFIX "%s", state);
    int rc;
    json_t *login = store_json(r, STORE_META, k, (size_t)kn, &rc);
    if (login == NULL) {
        if (rc == AGAPE_ENOENT) {
            httpd_reply_error(r, 400, "invalid_request", "state", "unknown or used state");
        } else {
            httpd_reply_error(r, 503, "not_ready", NULL, "the sign-in store is not available");
        }
        return;
    }
    const char *owner = json_string_value(json_object_get(login, "provider"));
    if (owner == NULL || strcmp(owner, p->name) != 0) {
        json_decref(login);
        httpd_reply_error(r, 400, "invalid_request", "state", "unknown or used state");
        return;
    }
    struct auth_work *w = work_new(r, AUTH_CALLBACK, p);
    if (w == NULL) {
        json_decref(login);
        return;
    }
    w->login = login;
    /* Single use: consume the state before anything else happens. */
    struct store_batch *b = store_batch_new();
    store_batch_insert(b, STORE_META, uk, (size_t)ukn, "1", 1);
    store_batch_del(b, STORE_META, k, (size_t)kn);
    httpd_commit(r, b, callback_consumed);
}

static void auth_token(struct httpd_req *r, const char *pname)
{
    struct provider *p = auth_provider(r, pname);
    if (p == NULL) {
        return;
    }
    json_t *in = httpd_body_json(r);
    if (in == NULL) {
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(in, k, v) {
        if (strcmp(k, "id_token") != 0 && strcmp(k, "nonce") != 0) {
            httpd_reply_error(r, 400, "invalid_request", k, "unknown field '%.40s'", k);
            json_decref(in);
            return;
        }
    }
    json_t *tok = json_object_get(in, "id_token");
    json_t *nonce = json_object_get(in, "nonce");
    if (!json_is_string(tok) || json_string_length(tok) == 0 ||
        json_string_length(tok) > AUTH_ID_TOKEN_MAX) {
        httpd_reply_error(r, 400, "invalid_request", "id_token",
                          "id_token is required: the JWT as a string of at most %d bytes",
                          AUTH_ID_TOKEN_MAX);
        json_decref(in);
        return;
    }
    if (nonce != NULL && !json_is_null(nonce) &&
        (!json_is_string(nonce) || json_string_length(nonce) == 0 ||
         json_string_length(nonce) > 512)) {
        httpd_reply_error(r, 400, "invalid_request", "nonce",
                          "nonce must be a string of 1 to 512 bytes");
        json_decref(in);
        return;
    }
    struct auth_work *w = work_new(r, AUTH_TOKEN, p);
    if (w == NULL) {
        json_decref(in);
        return;
    }
    json_t *input = json_pack("{s:O}", "id_token", tok);
    if (input != NULL && json_is_string(nonce)) {
        json_object_set(input, "nonce", nonce);
    }
    json_decref(in);
    auth_dispatch(r, w, "verify_id_token", input, signin_done);
    json_decref(input);
}

/* ---------------------------------------------------------------- */
/* Sessions: me and logout                                          */

/* The session of the request's Bearer token; answers 401 (or 503) and
 * returns NULL when there is none usable. */
static json_t *session_load(struct httpd_req *r, unsigned char key[32])
{
    const char *h = httpd_header(r, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || h[7] == '\0') {
        reply_unauthenticated(r, "a session is required: Authorization: Bearer <session token>");
        return NULL;
    }
    const char *token = h + 7;
    size_t n = strlen(token);
    if (n > 256) {
        reply_unauthenticated(r, "unknown session");
        return NULL;
    }
    /* Looked up by its hash: nothing secret is compared byte by byte. */
    crypto_sha256(token, n, key);
    int rc;
    json_t *s = store_json(r, STORE_SESSIONS, key, 32, &rc);
    if (s == NULL) {
        if (rc == AGAPE_ENOENT) {
            reply_unauthenticated(r, "unknown session");
        } else {
            httpd_reply_error(r, 503, "not_ready", NULL, "the session store is not available");
        }
        return NULL;
    }
    if (json_is_true(json_object_get(s, "revoked"))) {
        json_decref(s);
        reply_unauthenticated(r, "this session was signed out");
        return NULL;
    }
    if (json_integer_value(json_object_get(s, "expires")) <= client_wall_ms()) {
        json_decref(s);
        reply_unauthenticated(r, "this session expired");
        return NULL;
    }
    return s;
}

static void auth_me(struct httpd_req *r)
{
    unsigned char key[32];
    json_t *s = session_load(r, key);
    if (s == NULL) {
        return;
    }
    uint8_t ukey[STORE_KEY_MAX];
    size_t uklen = 0;
    int rc = AGAPE_ENOENT;
    json_t *user = NULL;
    if (store_key_pair(ukey, sizeof(ukey), json_string_value(json_object_get(s, "provider")),
                       json_string_value(json_object_get(s, "subject")), &uklen) == AGAPE_OK) {
        user = store_json(r, STORE_USERS, ukey, uklen, &rc);
    }
    json_decref(s);
    if (user == NULL) {
        if (rc == AGAPE_ENOENT) {
            reply_unauthenticated(r, "unknown session");
        } else {
            httpd_reply_error(r, 503, "not_ready", NULL, "the user store is not available");
        }
        return;
    }
    httpd_add_header(r, "Cache-Control", "no-store");
    httpd_reply_json(r, 200, json_pack("{s:o}", "user", user_public(user)));
    json_decref(user);
}

static void logout_committed(struct httpd_req *r)
{
    if (r->commit_rc != AGAPE_OK) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the sign-out could not be recorded");
        return;
    }
    httpd_reply_raw(r, 204, "", 0);
}

static void auth_logout(struct httpd_req *r)
{
    unsigned char key[32];
    json_t *s = session_load(r, key);
    if (s == NULL) {
        return;
    }
    json_object_set_new(s, "revoked", json_true());
    json_object_set_new(s, "revoked_at", json_integer((json_int_t)client_wall_ms()));
    char *text = json_dumps(s, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(s);
    if (text == NULL) {
        httpd_reply_error(r, 503, "not_ready", NULL, "out of memory");
        return;
    }
    struct store_batch *b = store_batch_new();
    store_batch_put(b, STORE_SESSIONS, key, 32, text, strlen(text));
    free(text);
    httpd_commit(r, b, logout_committed);
}

/* ---------------------------------------------------------------- */
/* Routing                                                          */

static void set_route(struct httpd_req *r, const char *route)
{
    snprintf(r->route, sizeof(r->route), "%s", route);
}

bool api_auth_route(struct httpd_req *r)
{
    const char *p = r->path;
    bool get = strcmp(r->method, "GET") == 0;
    bool post = strcmp(r->method, "POST") == 0;

    if (strncmp(p, "/v1/auth/", 9) != 0) {
        return false;
    }
    if (strcmp(p, "/v1/auth/me") == 0 && get) {
        set_route(r, "/v1/auth/me");
        auth_me(r);
        return true;
    }
    if (strcmp(p, "/v1/auth/logout") == 0 && post) {
        set_route(r, "/v1/auth/logout");
        auth_logout(r);
        return true;
    }
    /* /v1/auth/{provider}/{action} */
    const char *s = p + 9;
    size_t n = 0;
    char name[AUTH_PROVIDER_MAX + 1];
    while (s[n] != '\0' && s[n] != '/') {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-') ||
            n >= AUTH_PROVIDER_MAX) {
            return false;
        }
        n++;
    }
    if (n == 0 || s[n] != '/') {
        return false;
    }
    memcpy(name, s, n);
    name[n] = '\0';
    const char *action = s + n + 1;
    if (strcmp(action, "login") == 0 && get) {
        set_route(r, "/v1/auth/{provider}/login");
        auth_login(r, name);
        return true;
    }
    if (strcmp(action, "callback") == 0 && get) {
        set_route(r, "/v1/auth/{provider}/callback");
        auth_callback(r, name);
        return true;
    }
    if (strcmp(action, "token") == 0 && post) {
        set_route(r, "/v1/auth/{provider}/token");
        auth_token(r, name);
        return true;
    }
    return false;
}
