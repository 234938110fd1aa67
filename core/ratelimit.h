/* ratelimit — a token bucket per API key.
 *
 * Each key holds up to `burst` tokens and earns `rate_per_s` tokens a
 * second; a request takes one. A refused request learns how long until one
 * token is there (the Retry-After of the 429). A rate of 0 means unlimited.
 *
 * The buckets live in a fixed table (RATELIMIT_BUCKETS entries, grouped in
 * sets of RATELIMIT_WAYS, one mutex per stripe of sets), so memory is
 * bounded whatever keys arrive. A key takes a free entry of its set, else an
 * idle one (refilled to full: forgetting it changes nothing), else the least
 * recently used one — which forgets that key's debt; counted as an eviction.
 * With up to about a thousand keys (16 ways per set), evictions practically
 * never happen.
 *
 * Time is passed in (monotonic ms, client_mono_ms()); nothing here reads a
 * clock. Threads: create/destroy on the main thread; take from any thread. */
#ifndef AGAPE_RATELIMIT_H
#define AGAPE_RATELIMIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_BUCKETS 4096
#define RATELIMIT_WAYS 16
#define RATELIMIT_KEY_MAX 64 /* bytes of a key id that are told apart, with the NUL */

struct ratelimit;

/* A limiter: rate_per_s >= 0 (0: unlimited, burst ignored; resolution
 * 0.001/s), burst >= 1 otherwise (both at most 1e9). NULL when out of
 * memory or an argument is out of range (a negative or non-finite number,
 * burst < 1 with a rate). */
struct ratelimit *ratelimit_create(double rate_per_s, double burst);
void ratelimit_destroy(struct ratelimit *rl);

/* Take one token from key_id's bucket at now_ms. True if taken (and
 * *retry_after_ms, if not NULL, set to 0). False when the bucket is empty,
 * with *retry_after_ms (if not NULL) set to the milliseconds until one token
 * is available (>= 1, rounded up). A new key starts with a full bucket.
 * Keys are compared on their first RATELIMIT_KEY_MAX - 1 bytes. Any thread. */
bool ratelimit_take(struct ratelimit *rl, const char *key_id, int64_t now_ms,
                    int64_t *retry_after_ms);

struct ratelimit_stats {
    uint64_t allowed;
    uint64_t refused;
    uint64_t evictions;  /* active buckets forgotten to make room */
};
void ratelimit_stats(struct ratelimit *rl, struct ratelimit_stats *out);

/* The `rate_limit` table of agape.conf (the value itself, or NULL when the
 * key is absent):
 *   rate_limit = { requests_per_second = 50, burst = 100 }
 * Absent: rate 0 (unlimited). burst defaults to max(1, requests_per_second).
 * Returns AGAPE_OK with *rate_per_s and *burst set, or AGAPE_EINVAL with err
 * naming the key ("rate_limit.burst: expected a number between 1 and 1e9,
 * got a string") and the outputs untouched. */
int ratelimit_config_from_json(const json_t *table, double *rate_per_s, double *burst,
                               char *err, size_t errlen);

#endif
