/* route — asking the rule scripts which providers to use.
 *
 * Every kind of work chooses its providers the same way: the candidates are
 * the usable providers of a kind that can do the operation, the scripts'
 * rule (route_event, route_error, …) is called with (request, {available =
 * candidate names}) and answers names in order; without the rule, every
 * candidate in configuration order. Callers then resolve the names. */
#ifndef AGAPE_ROUTE_H
#define AGAPE_ROUTE_H

#include "app.h"

#include <jansson.h>
#include <stdbool.h>

typedef bool (*route_keep_fn)(const struct provider *p);

/* The names (a new JSON array; an empty Lua table comes back as {} and
 * counts as none) that rule `fn` chooses for `req` (borrowed) among the
 * usable providers of `kind` that `keep` accepts. NULL with err when there is
 * no candidate (*rule_failed false) or the rule failed or answered something
 * else than a list (*rule_failed true). Any thread. */
json_t *route_names(struct app *app, uint32_t kind, route_keep_fn keep, const char *fn,
                    json_t *req, bool *rule_failed, char *err, size_t errlen);

#endif
