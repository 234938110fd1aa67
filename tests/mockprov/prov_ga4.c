/* Google Analytics 4 Measurement Protocol, as PROVIDERS.md §6.1 describes it.
 *
 *   POST /mp/collect?measurement_id=G-…&api_secret=…         → 204, always (GA reports
 *        nothing); a valid batch is recorded in bucket "ga4.batches" under "1", "2", …,
 *        an invalid one in "ga4.dropped" with the reason (what GA would silently drop)
 *   POST /debug/mp/collect?…                                  → 200 {"validationMessages":
 *        [...]}, nothing recorded
 *
 * Mock choices where GA's behaviour is not documented: a missing
 * measurement_id or api_secret, or a measurement_id that is not G-…, is
 * answered 400 {"error": …} on both paths, so a misconfigured plugin shows. */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GA4_EVENTS_MAX 25
#define GA4_PARAMS_MAX 25

static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 40 ||
        !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_')) {
            return false;
        }
    }
    return strncmp(s, "google_", 7) != 0 && strncmp(s, "ga_", 3) != 0 &&
           strncmp(s, "firebase_", 9) != 0;
}

static void message(json_t *msgs, const char *path, const char *code, const char *desc)
{
    json_array_append_new(msgs, json_pack("{s:s,s:s,s:s}", "fieldPath", path, "description",
                                          desc, "validationCode", code));
}

/* GA's validation, the part the gateway can get wrong. */
static json_t *validate(const json_t *body)
{
    json_t *msgs = json_array();
    char desc[200];
    if (!json_is_object(body)) {
        message(msgs, "", "VALUE_INVALID", "Unable to parse Measurement Protocol JSON payload.");
        return msgs;
    }
    const char *client = json_string_value(json_object_get(body, "client_id"));
    if (client == NULL || client[0] == '\0') {
        message(msgs, "client_id", "VALUE_REQUIRED", "Measurement requires a client_id.");
    }
    json_t *events = json_object_get(body, "events");
    size_t n = json_array_size(events);
    if (!json_is_array(events) || n == 0) {
        message(msgs, "events", "VALUE_REQUIRED", "Measurement requires events.");
    } else if (n > GA4_EVENTS_MAX) {
        snprintf(desc, sizeof(desc), "Measurement has %zu events; the limit is %d.", n,
                 GA4_EVENTS_MAX);
        message(msgs, "events", "VALUE_INVALID", desc);
    }
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev) {
        const char *name = json_string_value(json_object_get(ev, "name"));
        if (!name_ok(name)) {
            snprintf(desc, sizeof(desc), "Event at index: [%zu] has invalid name [%.60s].", i,
                     name ? name : "");
            message(msgs, "events", "NAME_INVALID", desc);
        }
        json_t *params = json_object_get(ev, "params");
        if (params != NULL && (!json_is_object(params) ||
                               json_object_size(params) > GA4_PARAMS_MAX)) {
            snprintf(desc, sizeof(desc), "Event at index: [%zu] has invalid params.", i);
            message(msgs, "events.params", "VALUE_INVALID", desc);
        }
    }
    return msgs;
}

static bool params_ok(const struct mock_req *rq, struct mock_resp *rs, json_t **form)
{
    *form = mock_form_parse(rq->query, strlen(rq->query));
    const char *mid = mock_form_get(*form, "measurement_id");
    const char *secret = mock_form_get(*form, "api_secret");
    if (mid == NULL || strncmp(mid, "G-", 2) != 0 || mid[2] == '\0' || secret == NULL ||
        secret[0] == '\0') {
        mock_json(rs, 400, json_pack("{s:{s:i,s:s}}", "error", "code", 400, "message",
                                     "measurement_id (G-…) and api_secret are required"));
        return false;
    }
    return true;
}

static void collect(const struct mock_req *rq, struct mock_resp *rs)
{
    json_t *form = NULL;
    if (!params_ok(rq, rs, &form)) {
        json_decref(form);
        return;
    }
    json_t *body = json_loadb(rq->body, rq->body_len, 0, NULL);
    json_t *msgs = validate(body);
    char key[32];
    if (json_array_size(msgs) == 0) {
        json_t *rec = json_deep_copy(body);
        json_object_set(rec, "measurement_id", json_object_get(form, "measurement_id"));
        snprintf(key, sizeof(key), "%ld", mock_next_id("ga4.batch"));
        json_object_set_new(mock_bucket("ga4.batches"), key, rec);
    } else {
        snprintf(key, sizeof(key), "%ld", mock_next_id("ga4.dropped"));
        json_object_set_new(mock_bucket("ga4.dropped"), key,
                            json_pack("{s:o}", "validationMessages", msgs));
        msgs = NULL;
    }
    rs->status = 204; /* GA answers 2xx whatever the payload */
    rs->body = NULL;
    json_decref(msgs);
    json_decref(body);
    json_decref(form);
}

static void debug_collect(const struct mock_req *rq, struct mock_resp *rs)
{
    json_t *form = NULL;
    if (!params_ok(rq, rs, &form)) {
        json_decref(form);
        return;
    }
    json_t *body = json_loadb(rq->body, rq->body_len, 0, NULL);
    mock_json(rs, 200, json_pack("{s:o}", "validationMessages", validate(body)));
    json_decref(body);
    json_decref(form);
}

static const struct mock_route routes[] = {
    {"POST", "/mp/collect", collect, NULL},
    {"POST", "/debug/mp/collect", debug_collect, NULL},
    {NULL, NULL, NULL, NULL},
};

const struct mock_provider mock_ga4 = {"ga4", routes, NULL};
