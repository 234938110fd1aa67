/* newrelic — plugin-private declarations.
 *
 * The context is made by init on the main thread and only read afterwards;
 * both operations are reentrant. The error input and the scrubber are
 * sentry's (plugins/sentry/sentry_common.c is compiled in), so an error is
 * checked and scrubbed the same way for both monitoring providers. */
#ifndef NEWRELIC_H
#define NEWRELIC_H

#include "sentry_common.h"

#include <agape/plugin.h>

#define NEWRELIC_PLUGIN_VERSION "1.0.0"

/* PROVIDERS.md §8 */
#define NEWRELIC_US_METRIC "https://metric-api.newrelic.com"
#define NEWRELIC_US_EVENT "https://insights-collector.newrelic.com"
#define NEWRELIC_EU_METRIC "https://metric-api.eu.newrelic.com"
#define NEWRELIC_EU_EVENT "https://insights-collector.eu01.nr-data.net"

#define NEWRELIC_PAYLOAD_MAX 1000000 /* bytes per POST, compressed (§8; 413 above) */
#define NEWRELIC_VALUE_MAX 4096      /* event attribute value bytes (§8) */
#define NEWRELIC_NAME_MAX 254        /* metric and attribute names: < 255 */
#define NEWRELIC_METRICS_MAX 10000   /* metrics per send_metrics call */
#define NEWRELIC_ATTRS_MAX 100       /* attributes per attributes object we accept */

/* The strings are borrowed from the normalized configuration init received
 * (which the core keeps until destroy) or are constants. */
struct newrelic_ctx {
    const char *license_key; /* never logged, never in err or result */
    const char *app_name;
    const char *account_id;  /* digits (account_text), or NULL: report_error is refused */
    const char *metric_base; /* without a trailing slash */
    const char *event_base;
    const char *environment; /* or NULL */
    char account_text[24];
    bool send_default_pii;
};

/* newrelic_ops.c */
enum agape_step newrelic_send_metrics(struct agape_call *call);
enum agape_step newrelic_report_error(struct agape_call *call);

#endif
