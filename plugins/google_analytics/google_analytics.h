/* google_analytics — plugin-private declarations.
 *
 * The context is made by init on the main thread and only read afterwards;
 * track_batch is reentrant. */
#ifndef GOOGLE_ANALYTICS_H
#define GOOGLE_ANALYTICS_H

#include <agape/plugin.h>

#define GA_PLUGIN_VERSION "1.0.0"
#define GA_DEFAULT_BASE "https://www.google-analytics.com"

/* GA4 Measurement Protocol limits (PROVIDERS.md §6.1). */
#define GA_EVENTS_MAX 25
#define GA_PARAMS_MAX 25
#define GA_NAME_MAX 40
#define GA_BODY_MAX 130000 /* "≤130 kB": counted in decimal kB, the safe reading */
#define GA_ID_MAX 256      /* client_id / user_id bytes we accept */

/* The init refusal when only the retired Universal Analytics id is set. */
#define GA_UA_RETIRED                                                                   \
    "GA_TRACKING_ID (Universal Analytics) was retired in 2023/2024 and accepts no data; " \
    "set GA_MEASUREMENT_ID and GA_API_SECRET for GA4"

struct ga_ctx {
    char *collect_url; /* {base}[/debug]/mp/collect?measurement_id=…&api_secret=…; the
                          secret is only [A-Za-z0-9._~-], so the URL holds it verbatim and
                          the logger's redaction of the option also covers the URL */
    bool debug;        /* /debug/mp/collect: validated, never recorded */
};

/* ga_track.c */
enum agape_step ga_track_batch(struct agape_call *call);

#endif
