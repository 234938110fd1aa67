#include "payments.h"

#include "api.h"
#include "jsonw.h"
#include "reconcile.h"
#include "store_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void payments_now_iso(char out[32])
{
    static _Thread_local int64_t cached_sec = -1;
    static _Thread_local char cached[32];
    int64_t sec = client_wall_ms() / 1000;
    if (sec != cached_sec) {
        api_time_iso(sec * 1000, cached);
        cached_sec = sec;
    }
    memcpy(out, cached, sizeof(cached));
}

void payments_touch(json_t *rec)
{
    char now[32];
    payments_now_iso(now);
    json_object_set_new(rec, "updated_at", json_string(now));
}

static void copy_str(json_t *rec, const char *k, json_t *res)
{
    json_t *v = json_object_get(res, k);
    json_object_set(rec, k, json_is_string(v) ? v : json_null());
}

enum payments_verdict payments_apply(json_t *rec, const struct dispatch_outcome *o,
                                     bool append_attempts)
{
    json_t *res = o->result;
    if (append_attempts) {
        json_t *att = json_object_get(rec, "attempts");
        if (!json_is_array(att)) {
            att = json_array();
            json_object_set_new(rec, "attempts", att);
        }
        json_array_extend(att, o->attempts);
    } else {
        json_object_set(rec, "attempts", o->attempts);
    }
    if (o->provider) {
        json_object_set_new(rec, "provider", json_string(o->provider->name));
    }
    const char *ref = json_string_value(json_object_get(res, "provider_ref"));
    if (ref) {
        json_object_set_new(rec, "provider_ref", json_string(ref));
    }
    payments_touch(rec);
    const char *status = json_string_value(json_object_get(res, "status"));

    switch (o->outcome) {
    case AGAPE_OUTCOME_OK:
        json_object_set_new(rec, "status", json_string(status ? status : "processing"));
        if (json_object_get(res, "client_secret")) {
            copy_str(rec, "client_secret", res);
        }
        if (json_object_get(res, "approval_url")) {
            copy_str(rec, "approval_url", res);
        }
        if (json_object_get(res, "capture_ref")) {
            copy_str(rec, "capture_ref", res);
        }
        return PAYMENTS_DONE;
    case AGAPE_OUTCOME_DECLINED:
        json_object_set_new(rec, "status", json_string("failed"));
        copy_str(rec, "decline_code", res);
        return PAYMENTS_DECLINED;
    case AGAPE_OUTCOME_INVALID:
        json_object_set_new(rec, "status", json_string("failed"));
        return PAYMENTS_INVALID;
    case AGAPE_OUTCOME_UNKNOWN:
        if (o->moves_money_unknown) {
            /* Sent, no answer: it may have been charged. It stays with this
             * provider, `processing`, until reconciled. */
            json_object_set_new(rec, "status", json_string("processing"));
            return PAYMENTS_PENDING;
        }
        break;
    default:
        break;
    }
    json_object_set_new(rec, "status", json_string("failed"));
    return PAYMENTS_FAILED;
}

/* Members clients never see. */
static const char *const internal_keys[] = {"api_key_id", "idem_base", "boot"};
#define N_INTERNAL (sizeof(internal_keys) / sizeof(internal_keys[0]))

/* Out of memory building a record: the batch must not commit without it,
 * so it is made to fail (the store refuses an operation with no key, and
 * that fails the whole batch). */
static void fail_batch(struct store_batch *b)
{
    store_batch_put(b, STORE_PAYMENTS, NULL, 0, NULL, 0);
}

static void put_text(struct store_batch *b, json_t *rec, const char *text, size_t len)
{
    const char *id = json_string_value(json_object_get(rec, "id"));
    if (text && id) {
        store_batch_put(b, STORE_PAYMENTS, id, strlen(id), text, len);
    }
    const char *prov = json_string_value(json_object_get(rec, "provider"));
    const char *ref = json_string_value(json_object_get(rec, "provider_ref"));
    if (id && prov && ref) {
        /* Webhooks name payments by the provider's reference. */
        uint8_t k[STORE_KEY_MAX];
        size_t kl = 0;
        char scope[96];
        snprintf(scope, sizeof(scope), "pref:%s", prov);
        if (store_key_pair(k, sizeof(k), scope, ref, &kl) == AGAPE_OK) {
            store_batch_put(b, STORE_META, k, kl, id, strlen(id));
        }
    }
}

void payments_put(struct store_batch *b, json_t *rec)
{
    struct agape_buf t;
    buf_init(&t, 0);
    jsonw_reserve(&t, 1000);
    jsonw_value(&t, rec);
    if (t.error != AGAPE_OK) {
        fail_batch(b);
    } else {
        put_text(b, rec, t.data, t.len);
    }
    buf_fini(&t);
}

void payments_put_public(struct store_batch *b, json_t *rec, char **pub, size_t *publen)
{
    json_t *saved[N_INTERNAL];
    *pub = NULL;
    *publen = 0;
    /* Take the internal members out, dump, put them back (at the end). */
    for (size_t i = 0; i < N_INTERNAL; i++) {
        saved[i] = json_incref(json_object_get(rec, internal_keys[i]));
        if (saved[i]) {
            json_object_del(rec, internal_keys[i]);
        }
    }
    struct agape_buf t;
    buf_init(&t, 0);
    jsonw_reserve(&t, 1000);
    jsonw_value(&t, rec);
    /* The stored text is the public text with the internal members added
     * before its closing brace; the public text is then that prefix again. */
    size_t len = t.len;
    bool ok = t.error == AGAPE_OK && len >= 2;
    if (ok) {
        t.len--; /* drop the closing brace */
    }
    bool first = len == 2; /* "{}" */
    for (size_t i = 0; i < N_INTERNAL; i++) {
        if (saved[i] == NULL) {
            continue;
        }
        if (ok) {
            jsonw_key(&t, internal_keys[i], first);
            jsonw_value(&t, saved[i]);
        }
        first = false;
        json_object_set_new(rec, internal_keys[i], saved[i]);
    }
    buf_add(&t, "}", 1);
    if (!ok || t.error != AGAPE_OK) {
        fail_batch(b);
        buf_fini(&t);
        return;
    }
    put_text(b, rec, t.data, t.len);
    t.data[len - 1] = '}';
    t.data[len] = '\0';
    t.len = len;
    *publen = len;
    *pub = buf_take(&t);
}

json_t *payments_public(json_t *rec)
{
    json_t *o = json_copy(rec);
    for (size_t i = 0; o && i < N_INTERNAL; i++) {
        json_object_del(o, internal_keys[i]);
    }
    return o;
}

json_t *payments_charge_input(json_t *rec)
{
    json_t *in = json_pack("{s:O, s:O, s:O}", "payment_id", json_object_get(rec, "id"),
                           "amount", json_object_get(rec, "amount"), "currency",
                           json_object_get(rec, "currency"));
    static const char *pass[] = {"description", "customer", "metadata", "return_url",
                                 "cancel_url", NULL};
    for (int i = 0; in && pass[i]; i++) {
        json_t *v = json_object_get(rec, pass[i]);
        if (v && !json_is_null(v)) {
            json_object_set(in, pass[i], v);
        }
    }
    return in;
}
