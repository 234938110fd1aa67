/* store_keys — the key layout of every store table, written down once.
 *
 * Notation (Knot DNS style):
 *   (S)        a UTF-8 string, its bytes without a terminating NUL
 *   0x00       one zero byte; it follows every string that is not the last
 *              part of a key, so a prefix scan for "ab" | 0x00 never matches
 *              "abc" | 0x00 …
 *   (8 B BE)   an unsigned 64-bit integer, big-endian, so byte order equals
 *              numeric order (store_key_be64 / store_key_read_be64)
 *   (32 B)     raw bytes
 * Keys are 1..STORE_KEY_MAX bytes (LMDB's compile-time limit). Values are
 * opaque to the store; JSON values carry "v": <format version> so records
 * can migrate.
 *
 *   payments:    payment_id (S, e.g. "pay_<hex>") → JSON payment record
 *   idempotency: api_key_id (S) | 0x00 | client key (S)
 *                  → JSON {state, request_hash, payment_id, status, answer}
 *   api_keys:    sha256(key) (32 B)
 *                  → JSON {"v":1, "id":"key_<16 hex>", "name", "scopes":"payments,admin",
 *                          "created_ms": int (ms since the epoch), "revoked": bool,
 *                          "revoked_ms"?: int}
 *                The key itself is never stored. "id" is "key_" + the first 16 hex
 *                characters of sha256(key), i.e. the first 8 bytes of the table key,
 *                so an id is found by a prefix scan.
 *   kv:          namespace (S) | 0x00 | key (S) → value
 *   outbox:      due_ms (8 B BE) | seq (8 B BE) → JSON work item
 *   inbox:       provider (S) | 0x00 | event_id (S) → JSON event
 *   users:       provider (S) | 0x00 | subject (S)
 *                  → JSON {"v":1, "id":"usr_<24 hex>" (made once, then stable), "email",
 *                          "email_verified", "name", "picture", "provider", "subject",
 *                          "created_at", "updated_at"}
 *   sessions:    sha256(session token) (32 B)
 *                  → JSON {"v":1, "user_id", "provider", "subject", "created" (ms),
 *                          "expires" (ms), "revoked": bool, "revoked_at"? (ms)}
 *                The token ("ses_" + 64 hex) is never stored or logged.
 *   meta:        name (S) → value
 *                Names in use:
 *                  "apikeys.name" | 0x00 | key name (S) → sha256(key) (32 B) of the
 *                  live (not revoked) key with that name; inserted with the key and
 *                  deleted on revoke, in the same batch, so names of live keys are
 *                  unique even across processes.
 *                  "pref:<provider>" | 0x00 | provider reference (S) → payment id (S):
 *                  finds a payment from a provider's webhook; written with the outcome.
 *                  "login:" state (S) → JSON {"v":1, "provider", "nonce", "verifier",
 *                  "return_to"?, "expires"}: a sign-in under way (10 minutes).
 *                  "login_used:" state (S) → "1": inserted when a callback spends the
 *                  state, so of two concurrent callbacks exactly one proceeds.
 *                  "login_exp:" expires (8 B BE) | state (S) → "": the expiry index
 *                  each login purges a few expired logins by (see auth.h).
 *                  "recon:" payment id (S) → JSON {"due": ms, "tries": n}: a payment
 *                  whose outcome is not known yet. Written in the same batch as the
 *                  payment's first record (due after the payment deadline, so a crash
 *                  mid-call leaves it to the reconciler), deleted with the final outcome.
 *                  "msg:" message id (S) → JSON message record (messages.h). Written
 *                  with its outbox item {"kind":"message","id"} in one batch.
 *                  "mref:<provider>" | 0x00 | provider reference (S) → message id (S):
 *                  finds a message from a delivery webhook; written with "sent".
 *                  "mfail:" message id (S) → "" (empty): the failed messages, for the
 *                  admin list; written with "failed", deleted by an admin retry.
 */
#ifndef AGAPE_STORE_KEYS_H
#define AGAPE_STORE_KEYS_H

#include <agape/plugin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The longest key LMDB accepts (MDB_MAXKEYSIZE of the Debian build). */
#define STORE_KEY_MAX 511

/* meta: the name-index prefix of live API keys (followed by 0x00 | name). */
#define STORE_META_APIKEY_NAME "apikeys.name"
/* meta: payments waiting for reconciliation (followed by the payment id). */
#define STORE_META_RECON "recon:"

/* Write v as 8 big-endian bytes. */
static inline void store_key_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(v & 0xffu);
        v >>= 8;
    }
}

/* Read 8 big-endian bytes (the reverse of store_key_be64). */
static inline uint64_t store_key_read_be64(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | in[i];
    }
    return v;
}

/* outbox key: due_ms (8 B BE) | seq (8 B BE). */
static inline void store_key_outbox(uint8_t out[16], uint64_t due_ms, uint64_t seq)
{
    store_key_be64(out, due_ms);
    store_key_be64(out + 8, seq);
}

/* Two-part key a (S) | 0x00 | b (S) into out (cap bytes); *klen gets its
 * length. b may be NULL or "" to build the scan prefix a | 0x00. Returns
 * AGAPE_OK, AGAPE_EINVAL when a is NULL or empty, or AGAPE_ERANGE when the
 * key would exceed cap or STORE_KEY_MAX. */
static inline int store_key_pair(uint8_t *out, size_t cap, const char *a, const char *b,
                                 size_t *klen)
{
    size_t alen = a ? strlen(a) : 0;
    size_t blen = b ? strlen(b) : 0;
    if (alen == 0) {
        return AGAPE_EINVAL;
    }
    if (alen + 1 + blen > cap || alen + 1 + blen > STORE_KEY_MAX) {
        return AGAPE_ERANGE;
    }
    memcpy(out, a, alen);
    out[alen] = 0x00;
    if (blen) {
        memcpy(out + alen + 1, b, blen);
    }
    *klen = alen + 1 + blen;
    return AGAPE_OK;
}

#endif
