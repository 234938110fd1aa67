/* apikeys — API keys with scopes, kept in the store's api_keys table.
 *
 * A key is "agk_" + 64 lowercase hex characters (32 random bytes). Only
 * sha256(key) is stored (the table key, see store_keys.h); the key itself is
 * shown once by apikeys_create and never stored, logged or listed. A key's
 * public identifier is "key_" + the first 16 hex characters of sha256(key).
 * Names are 1..64 characters of [A-Za-z0-9_.-], unique among live (not
 * revoked) keys.
 *
 * All functions are thread-safe (any thread). apikeys_lookup keeps a small
 * process-local cache: a key revoked in this process stops at once; a key
 * revoked by another process (the CLI) stops within APIKEYS_CACHE_TTL_MS. */
#ifndef AGAPE_APIKEYS_H
#define AGAPE_APIKEYS_H

#include <agape/plugin.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* Scopes (bits). API.md names them: payments, messages, events, errors, admin, all. */
#define APIKEYS_SCOPE_PAYMENTS 1u
#define APIKEYS_SCOPE_MESSAGES 2u
#define APIKEYS_SCOPE_EVENTS 4u
#define APIKEYS_SCOPE_ERRORS 8u
#define APIKEYS_SCOPE_ADMIN 16u
#define APIKEYS_SCOPE_ALL 31u

#define APIKEYS_KEY_SIZE 69         /* "agk_" + 64 hex + NUL: room for key_out */
#define APIKEYS_SCOPES_STR_SIZE 48  /* room for apikeys_scopes_str of every scope */
#define APIKEYS_NAME_MAX 64
#define APIKEYS_CACHE_TTL_MS 5000

struct apikey {
    char id[40];          /* "key_<16 hex>" */
    char name[65];
    uint32_t scopes;      /* APIKEYS_SCOPE_* bits */
    bool revoked;
    int64_t created_ms;   /* wall clock, ms since the epoch */
};

/* Parse a comma-separated scope list ("payments,admin", or "all"; spaces
 * around names are ignored) into *out. AGAPE_EINVAL for an empty list, an
 * empty element ("a,,b", a trailing comma) or an unknown name, which err
 * names. */
int apikeys_parse_scopes(const char *csv, uint32_t *out, char *err, size_t errlen);

/* The scope names of `scopes`, comma-separated, in the order of the bits
 * ("payments,admin"); "" for none; unknown bits are left out. Always
 * NUL-terminated (truncated if outlen < APIKEYS_SCOPES_STR_SIZE). */
void apikeys_scopes_str(uint32_t scopes, char *out, size_t outlen);

/* Create a key named `name` with `scopes` (non-zero, within APIKEYS_SCOPE_ALL)
 * and commit it (durable on return). The key goes to key_out (keylen >=
 * APIKEYS_KEY_SIZE, else AGAPE_ERANGE); info_out (may be NULL) gets its
 * record. Returns AGAPE_OK; AGAPE_EINVAL (bad name or scopes), AGAPE_EEXIST
 * (a live key has that name), AGAPE_ESTORE / AGAPE_ERROR (store, randomness),
 * with err filled. The caller should wipe key_out once it has shown it. */
int apikeys_create(struct store *s, const char *name, uint32_t scopes, char *key_out,
                   size_t keylen, struct apikey *info_out, char *err, size_t errlen);

/* Find the key presented by a client. AGAPE_OK fills *out: the caller must
 * still check out->revoked and out->scopes. AGAPE_ENOENT when the key is
 * unknown or malformed (no store access for a malformed key). AGAPE_ESTORE
 * when the store fails or the record is unreadable. `key` is borrowed and is
 * never logged. Answers may come from the cache (see above). */
int apikeys_lookup(struct store *s, const char *key, struct apikey *out);

/* Every key, oldest first, as a new JSON array (the caller json_decref()s
 * it) of {"id", "name", "scopes": "payments,admin", "created_at": ISO-8601
 * UTC "2026-11-28T10:00:00Z", "revoked": bool}; never the key or its hash.
 * AGAPE_OK, AGAPE_ENOMEM or AGAPE_ESTORE. */
int apikeys_list(struct store *s, json_t **out);

/* Revoke the live key whose id ("key_<16 hex>") or name is `name_or_id`
 * (an id is tried first). Durable on return; this process stops accepting the
 * key at once. AGAPE_ENOENT (with err) when no live key matches. */
int apikeys_revoke(struct store *s, const char *name_or_id, char *err, size_t errlen);

/* Drop every cached lookup (e.g. after closing a store and opening another). */
void apikeys_cache_clear(void);

#endif
