#include "payments.h"

#include "api.h"
#include "reconcile.h"
#include "store_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void payments_touch(json_t *rec)
{
    char now[32];
    api_time_iso(client_wall_ms(), now);
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

void payments_put(struct store_batch *b, json_t *rec)
{
    const char *id = json_string_value(json_object_get(rec, "id"));
    char *text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text && id) {
        store_batch_put(b, STORE_PAYMENTS, id, strlen(id), text, strlen(text));
    }
    free(text);
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
