#include "route.h"

#include <stdio.h>

#define ROUTE_MAX_CANDIDATES 64

json_t *route_names(struct app *app, uint32_t kind, route_keep_fn keep, const char *fn,
                    json_t *req, bool *rule_failed, char *err, size_t errlen)
{
    *rule_failed = false;
    struct provider *avail[ROUTE_MAX_CANDIDATES];
    size_t na = registry_by_kind(app->reg, kind, avail, ROUTE_MAX_CANDIDATES);
    json_t *names = json_array();
    for (size_t i = 0; names && i < na; i++) {
        if (keep == NULL || keep(avail[i])) {
            json_array_append_new(names, json_string(avail[i]->name));
        }
    }
    if (json_array_size(names) == 0) {
        json_decref(names);
        snprintf(err, errlen, "no usable provider is configured for it");
        return NULL;
    }
    if (!script_has(app->scripts, fn)) {
        return names;
    }
    json_t *ctx = json_pack("{s:o}", "available", names);
    json_t *args[2] = {req, ctx};
    json_t *ret = NULL;
    char why[512];
    int rc = ctx ? script_callv(app->scripts, fn, args, 2, &ret, why, sizeof(why)) : AGAPE_ENOMEM;
    json_decref(ctx);
    if (rc == AGAPE_OK && !json_is_array(ret) && !json_is_object(ret)) {
        rc = AGAPE_ESCRIPT;
        snprintf(why, sizeof(why), "%s must return a list of provider names", fn);
    }
    if (rc != AGAPE_OK) {
        json_decref(ret);
        *rule_failed = true;
        snprintf(err, errlen, "%s failed: %.200s", fn, rc == AGAPE_ENOMEM ? "no memory" : why);
        return NULL;
    }
    return ret;
}
