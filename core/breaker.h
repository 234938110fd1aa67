/* breaker — a circuit breaker per provider.
 *
 * Closed: every call is let through; each result goes into a sliding window
 * of the last `window` calls and a run of consecutive failures. The circuit
 * opens when the run reaches `failure_run`, or when the window holds at
 * least `min_calls` results of which at least `failure_ratio` failed.
 * Open: calls are refused for `open_ms`; then the circuit is half-open.
 * Half-open: at most `half_open_probes` calls are let through at a time
 * (admitted but not yet recorded); one failure reopens it at once for a new
 * open period; `probe_successes` successes close it with an empty window.
 *
 * What counts as a failure is the caller's decision (the dispatcher counts
 * unavailable, unknown, rate_limited and auth; ok, declined and invalid are
 * successes). Time is always passed in (monotonic ms, client_mono_ms()), so
 * nothing here reads a clock or sleeps.
 *
 * Every transition is logged once (log_msg with the provider's name):
 * warn for → open, info for → half_open and → closed.
 *
 * Thread-safety: every function may be called from any thread; one mutex
 * per breaker. The dispatcher calls allow/record on the client thread;
 * server threads read state and snapshots. */
#ifndef AGAPE_BREAKER_H
#define AGAPE_BREAKER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BREAKER_MAX_WINDOW 1000

struct breaker_config {
    int failure_run;        /* consecutive failures that open it; default 5; 0 = no run rule */
    int window;             /* sliding window of the last N calls; default 20 (1..1000) */
    double failure_ratio;   /* open when >= this share of the window failed and the window
                               holds at least min_calls; default 0.5; (0, 1] */
    int min_calls;          /* default 10 (1..window) */
    int64_t open_ms;        /* time open before half-open; default 5000 */
    int half_open_probes;   /* calls let through at a time when half-open; default 2 */
    int probe_successes;    /* successes that close it; default = half_open_probes */
    int64_t probe_lease_ms; /* a half-open admission never recorded is forgotten after
                               this long (a lost call cannot wedge the breaker);
                               default 30000 */
};

/* The defaults above. */
struct breaker_config breaker_config_defaults(void);

/* Fill *c from the optional `breaker` table of a provider's configuration
 * (its table in agape.conf, as JSON; may be NULL):
 *   breaker = { failure_run = 5, window = 20, failure_ratio = 0.5, min_calls = 10,
 *               open_seconds = 5, half_open_probes = 2, probe_successes = 2 }
 * Every key is optional; the others keep their defaults (min_calls defaults to
 * min(10, window), probe_successes to half_open_probes). open_seconds may be
 * fractional. Integers may be written as integral floats (1e3).
 * Returns AGAPE_OK with *c set (the defaults when there is no table), or
 * AGAPE_EINVAL with *c untouched and err naming the key, e.g.
 *   "breaker.window: expected an integer between 1 and 1000, got 0"
 *   "breaker.windw: unknown key (known: failure_run, window, …)"
 * Any thread; `provider_conf` is borrowed. */
int breaker_config_from_json(struct breaker_config *c, const json_t *provider_conf, char *err,
                             size_t errlen);

enum breaker_state {
    BREAKER_CLOSED = 0,
    BREAKER_OPEN = 1,
    BREAKER_HALF_OPEN = 2
};

struct breaker;

/* A closed breaker for `provider_name` (copied; used in log lines) with a copy
 * of *cfg (NULL: defaults). Returns NULL when out of memory or when cfg is out
 * of the ranges above. */
struct breaker *breaker_create(const char *provider_name, const struct breaker_config *cfg);
void breaker_destroy(struct breaker *b);

/* May a call go to the provider now? Closed: true. Open: false until open_ms
 * has passed since it opened, then it turns half-open. Half-open: true while
 * fewer than half_open_probes admitted calls are unresolved (the admission
 * is counted), false beyond. Every true must be followed by exactly one
 * breaker_record() or breaker_cancel(). */
bool breaker_allow(struct breaker *b, int64_t now_ms);

/* The result of a call that breaker_allow() let through. Closed: into the
 * window and the run; may open it. Half-open: a failure reopens it (new open
 * period), a success counts toward probe_successes and may close it (window
 * and run cleared). Open: ignored (a late answer of a call admitted before
 * it opened). Note: results are not tied to their admission, so a late
 * answer of a call admitted while closed that lands in half-open counts as a
 * probe result. */
void breaker_record(struct breaker *b, bool failure, int64_t now_ms);

/* Give back an admission that never reached the provider (nothing sent,
 * e.g. the operation was cancelled): no result is counted. */
void breaker_cancel(struct breaker *b, int64_t now_ms);

/* The state at now_ms: an open circuit whose period is over turns half-open
 * here (and logs it), as breaker_allow would. */
enum breaker_state breaker_state(struct breaker *b, int64_t now_ms);
/* "closed", "open", "half_open"; "unknown" for other values. Static string. */
const char *breaker_state_name(enum breaker_state s);

struct breaker_snapshot {
    enum breaker_state state;   /* as stored: not advanced in time (see breaker_state) */
    int window_calls;           /* results in the window now */
    int window_failures;        /* failures among them */
    int consecutive_failures;   /* the current run */
    int probes_inflight;        /* half-open admissions not yet recorded */
    int probe_successes;        /* successes so far in this half-open period */
    int64_t opened_at_ms;       /* when it last opened (monotonic ms); 0 if never */
    int64_t open_until_ms;      /* when the open period ends, if open */
    uint64_t transitions;       /* state changes since creation */
};
/* A consistent copy of the counters. Any thread. */
void breaker_snapshot(struct breaker *b, struct breaker_snapshot *out);

#endif
