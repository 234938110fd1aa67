/* idem — Idempotency-Key handling for POST endpoints (API.md). The record
 * lives in the idempotency table under api key id | 0x00 | client key (see
 * store_keys.h), written in the same batch as the resource it protects. */
#include "api.h"
#include "crypto.h"
#include "jsonr.h"
#include "jsonw.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

bool idem_prepare(struct httpd_req *r, const char *scope, json_t *canonical, struct idem *id)
{
    memset(id, 0, sizeof(*id));
    const char *k = httpd_header(r, "Idempotency-Key");
    if (k == NULL) {
        /* Without a key nothing reads the hash (idem_check, idem_begin and
         * idem_finish do nothing): the canonical dump is not made. */
        return true;
    }
    size_t n = strlen(k);
    if (n == 0 || n > 255) {
        httpd_reply_error(r, 400, "invalid_request", "Idempotency-Key",
                          "Idempotency-Key must be 1 to 255 characters");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (k[i] < 0x21 || k[i] > 0x7e) {
            httpd_reply_error(r, 400, "invalid_request", "Idempotency-Key",
                              "Idempotency-Key must be printable ASCII without spaces");
            return false;
        }
    }
    char *text = json_dumps(canonical, JSON_COMPACT | JSON_SORT_KEYS);
    struct agape_buf b;
    buf_init(&b, 0);
    buf_printf(&b, "%s %s\n%s", r->method, scope, text ? text : "");
    free(text);
    unsigned char md[32];
    crypto_sha256(buf_cstr(&b), b.len, md);
    buf_fini(&b);
    crypto_hex(md, sizeof(md), id->hash);

    id->present = true;
    memcpy(id->client_key, k, n + 1);
    size_t kl = strlen(r->key.id);
    memcpy(id->store_key, r->key.id, kl);
    id->store_key[kl] = '\0';
    memcpy(id->store_key + kl + 1, k, n);
    id->store_klen = kl + 1 + n;
    /* Provider keys derive from (api key, client key): the same client key
     * gives the same provider key after a restart too. */
    crypto_sha256(id->store_key, id->store_klen, md);
    char hex[65];
    crypto_hex(md, 16, hex);
    snprintf(id->base, sizeof(id->base), "k%s", hex);
    return true;
}

bool idem_check(struct httpd_req *r, const struct idem *id, char *resource_out, size_t outlen)
{
    if (resource_out && outlen) {
        resource_out[0] = '\0';
    }
    if (!id->present) {
        return false;
    }
    char *val = NULL;
    size_t vlen = 0;
    int rc = store_get(r->app->store, STORE_IDEMPOTENCY, id->store_key, id->store_klen, &val,
                       &vlen);
    if (rc == AGAPE_ENOENT) {
        return false;
    }
    if (rc != AGAPE_OK) {
        httpd_reply_error(r, 503, "not_ready", NULL, "the store is not available");
        return true;
    }
    json_t *rec = jsonr_loadb(val, vlen, 0, NULL);
    free(val);
    if (rec == NULL) {
        httpd_reply_error(r, 500, "internal", NULL, "a stored idempotency record is unreadable");
        return true;
    }
    const char *hash = json_string_value(json_object_get(rec, "hash"));
    const char *state = json_string_value(json_object_get(rec, "state"));
    const char *boot = json_string_value(json_object_get(rec, "boot"));
    const char *res = json_string_value(json_object_get(rec, "resource"));
    bool answered = true;
    if (hash == NULL || !crypto_ct_equal(hash, strlen(hash), id->hash, strlen(id->hash))) {
        httpd_reply_error(r, 409, "idempotency_conflict", "Idempotency-Key",
                          "this Idempotency-Key was used with a different request");
    } else if (state && strcmp(state, "done") == 0) {
        const char *answer = json_string_value(json_object_get(rec, "answer"));
        json_int_t status = json_integer_value(json_object_get(rec, "status"));
        httpd_reply_raw(r, (int)status, answer ? answer : "", answer ? strlen(answer) : 0);
        httpd_add_header(r, "Idempotent-Replayed", "true");
    } else if (boot && strcmp(boot, r->app->boot_id) == 0) {
        httpd_reply_error(r, 409, "in_progress", "Idempotency-Key",
                          "a request with this Idempotency-Key is still in progress");
    } else {
        /* Begun by an earlier run that stopped before it finished. */
        if (resource_out && res) {
            snprintf(resource_out, outlen, "%s", res);
        }
        answered = false;
    }
    json_decref(rec);
    return answered;
}

/* The record as JSON text, written by hand: it is made for every request
 * with a key, and the stored answer inside it is already text. Members in
 * the order of api.h. */
static void record_text(struct agape_buf *b, struct httpd_req *r, const struct idem *id,
                        const char *state, const char *resource, bool with_answer)
{
    buf_add(b, "{", 1);
    jsonw_key(b, "state", 1);
    jsonw_str(b, state);
    jsonw_key(b, "hash", 0);
    jsonw_str(b, id->hash);
    jsonw_key(b, "resource", 0);
    jsonw_str(b, resource);
    jsonw_key(b, "boot", 0);
    jsonw_str(b, r->app->boot_id);
    jsonw_key(b, "created", 0);
    jsonw_int(b, client_wall_ms());
    if (with_answer) {
        jsonw_key(b, "status", 0);
        jsonw_int(b, r->status);
        jsonw_key(b, "answer", 0);
        jsonw_strn(b, r->resp ? r->resp : "", r->resp ? r->resp_len : 0);
    }
    buf_add(b, "}", 1);
}

/* Out of memory building the record: the batch must not commit without it
 * (the resource would be unprotected), so make it fail — an operation with
 * no key is refused by the store and fails the whole batch. */
static void fail_batch(struct store_batch *b)
{
    store_batch_put(b, STORE_IDEMPOTENCY, NULL, 0, NULL, 0);
}

void idem_begin(struct httpd_req *r, const struct idem *id, struct store_batch *b,
                const char *resource)
{
    if (!id->present) {
        return;
    }
    struct agape_buf t;
    buf_init(&t, 0);
    record_text(&t, r, id, "in_progress", resource, false);
    if (t.error == AGAPE_OK) {
        store_batch_insert(b, STORE_IDEMPOTENCY, id->store_key, id->store_klen, t.data, t.len);
    } else {
        fail_batch(b);
    }
    buf_fini(&t);
}

void idem_finish(struct httpd_req *r, const struct idem *id, struct store_batch *b,
                 const char *resource)
{
    if (!id->present) {
        return;
    }
    struct agape_buf t;
    buf_init(&t, 0);
    record_text(&t, r, id, "done", resource, true);
    if (t.error == AGAPE_OK) {
        store_batch_put(b, STORE_IDEMPOTENCY, id->store_key, id->store_klen, t.data, t.len);
    } else {
        fail_batch(b);
    }
    buf_fini(&t);
}
