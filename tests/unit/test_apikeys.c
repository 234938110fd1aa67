/* Unit tests of core/apikeys.c over a real store in a temp directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "apikeys.h"
#include "crypto.h"
#include "store.h"

#include <ftw.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fixture {
    char dir[64];
    struct store *s;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[AGAPE_ERR_SIZE] = "";
    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/agape-apikeys-XXXXXX");
    if (mkdtemp(f->dir) == NULL || store_open(f->dir, &f->s, err, sizeof(err)) != AGAPE_OK) {
        fprintf(stderr, "setup: %s\n", err);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    apikeys_cache_clear();
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void create_ok(struct store *s, const char *name, uint32_t scopes, char *key,
                      struct apikey *info)
{
    char err[AGAPE_ERR_SIZE] = "";
    int rc = apikeys_create(s, name, scopes, key, APIKEYS_KEY_SIZE, info, err, sizeof(err));
    if (rc != AGAPE_OK) {
        fail_msg("apikeys_create(%s): %d %s", name, rc, err);
    }
}

static void test_create_lookup(void **state)
{
    struct fixture *f = *state;
    char key[APIKEYS_KEY_SIZE];
    struct apikey info;
    struct apikey k;
    int64_t now = (int64_t)time(NULL) * 1000;

    create_ok(f->s, "billing-svc.1", APIKEYS_SCOPE_PAYMENTS | APIKEYS_SCOPE_ADMIN, key, &info);
    /* agk_ + 64 lowercase hex */
    assert_int_equal(strlen(key), 68);
    assert_memory_equal(key, "agk_", 4);
    assert_int_equal(strspn(key + 4, "0123456789abcdef"), 64);
    /* id = key_ + the first 16 hex of sha256(key) */
    unsigned char md[32];
    char hex[65];
    char want_id[32];
    crypto_sha256(key, strlen(key), md);
    crypto_hex(md, 32, hex);
    snprintf(want_id, sizeof(want_id), "key_%.16s", hex);
    assert_string_equal(info.id, want_id);
    assert_string_equal(info.name, "billing-svc.1");
    assert_int_equal(info.scopes, APIKEYS_SCOPE_PAYMENTS | APIKEYS_SCOPE_ADMIN);
    assert_false(info.revoked);
    assert_true(info.created_ms >= now - 2000 && info.created_ms <= now + 2000);

    assert_int_equal(apikeys_lookup(f->s, key, &k), AGAPE_OK);
    assert_string_equal(k.id, info.id);
    assert_string_equal(k.name, "billing-svc.1");
    assert_int_equal(k.scopes, APIKEYS_SCOPE_PAYMENTS | APIKEYS_SCOPE_ADMIN);
    assert_false(k.revoked);
    assert_int_equal(k.created_ms, info.created_ms);

    /* Lookup after a cache clear reads the store and agrees. */
    apikeys_cache_clear();
    memset(&k, 0, sizeof(k));
    assert_int_equal(apikeys_lookup(f->s, key, &k), AGAPE_OK);
    assert_string_equal(k.id, info.id);
    assert_int_equal(k.scopes, APIKEYS_SCOPE_PAYMENTS | APIKEYS_SCOPE_ADMIN);

    /* Two keys never collide. */
    char key2[APIKEYS_KEY_SIZE];
    struct apikey info2;
    create_ok(f->s, "other", APIKEYS_SCOPE_ALL, key2, &info2);
    assert_string_not_equal(key, key2);
    assert_string_not_equal(info.id, info2.id);
    assert_int_equal(apikeys_lookup(f->s, key2, &k), AGAPE_OK);
    assert_int_equal(k.scopes, APIKEYS_SCOPE_ALL);
}

static void test_wrong_keys(void **state)
{
    struct fixture *f = *state;
    char key[APIKEYS_KEY_SIZE];
    char bad[APIKEYS_KEY_SIZE + 4];
    struct apikey k;

    create_ok(f->s, "svc", APIKEYS_SCOPE_MESSAGES, key, NULL);

    /* One character changed. */
    memcpy(bad, key, sizeof(key));
    bad[10] = bad[10] == 'a' ? 'b' : 'a';
    assert_int_equal(apikeys_lookup(f->s, bad, &k), AGAPE_ENOENT);

    /* Malformed: too short, too long, uppercase, another prefix, empty. */
    memcpy(bad, key, 67);
    bad[67] = '\0';
    assert_int_equal(apikeys_lookup(f->s, bad, &k), AGAPE_ENOENT);
    snprintf(bad, sizeof(bad), "%s0", key);
    assert_int_equal(apikeys_lookup(f->s, bad, &k), AGAPE_ENOENT);
    memcpy(bad, key, sizeof(key));
    for (char *p = bad + 4; *p; p++) {
        if (*p >= 'a' && *p <= 'f') {
            *p = (char)(*p - 'a' + 'A');
        }
    }
    assert_int_equal(apikeys_lookup(f->s, bad, &k), AGAPE_ENOENT);
    memcpy(bad, key, sizeof(key));
    memcpy(bad, "agx_", 4);
    assert_int_equal(apikeys_lookup(f->s, bad, &k), AGAPE_ENOENT);
    assert_int_equal(apikeys_lookup(f->s, "", &k), AGAPE_ENOENT);
    assert_int_equal(apikeys_lookup(f->s, "agk_", &k), AGAPE_ENOENT);

    /* The real key still works. */
    assert_int_equal(apikeys_lookup(f->s, key, &k), AGAPE_OK);
    assert_int_equal(k.scopes, APIKEYS_SCOPE_MESSAGES);
}

static void test_revoke(void **state)
{
    struct fixture *f = *state;
    char key1[APIKEYS_KEY_SIZE];
    char key2[APIKEYS_KEY_SIZE];
    char key3[APIKEYS_KEY_SIZE];
    struct apikey info2;
    struct apikey k;
    char err[AGAPE_ERR_SIZE];

    create_ok(f->s, "ci", APIKEYS_SCOPE_EVENTS, key1, NULL);
    create_ok(f->s, "cron", APIKEYS_SCOPE_ERRORS, key2, &info2);

    /* Cached as live first; revoke by name must still take effect at once. */
    assert_int_equal(apikeys_lookup(f->s, key1, &k), AGAPE_OK);
    assert_false(k.revoked);
    assert_int_equal(apikeys_revoke(f->s, "ci", err, sizeof(err)), AGAPE_OK);
    assert_int_equal(apikeys_lookup(f->s, key1, &k), AGAPE_OK);
    assert_true(k.revoked);
    apikeys_cache_clear();
    assert_int_equal(apikeys_lookup(f->s, key1, &k), AGAPE_OK);
    assert_true(k.revoked); /* durable, not only in the cache */

    /* Revoking again: no live key of that name. */
    err[0] = '\0';
    assert_int_equal(apikeys_revoke(f->s, "ci", err, sizeof(err)), AGAPE_ENOENT);
    assert_non_null(strstr(err, "ci"));

    /* Revoke by id. */
    assert_int_equal(apikeys_lookup(f->s, key2, &k), AGAPE_OK);
    assert_int_equal(apikeys_revoke(f->s, info2.id, err, sizeof(err)), AGAPE_OK);
    assert_int_equal(apikeys_lookup(f->s, key2, &k), AGAPE_OK);
    assert_true(k.revoked);
    assert_int_equal(apikeys_revoke(f->s, info2.id, err, sizeof(err)), AGAPE_ENOENT);

    /* Unknown names and ids. */
    assert_int_equal(apikeys_revoke(f->s, "nobody", err, sizeof(err)), AGAPE_ENOENT);
    assert_int_equal(apikeys_revoke(f->s, "key_0000000000000000", err, sizeof(err)),
                     AGAPE_ENOENT);
    assert_int_equal(apikeys_revoke(f->s, "", err, sizeof(err)), AGAPE_EINVAL);

    /* The name is free again after the revoke; the old key stays revoked. */
    create_ok(f->s, "ci", APIKEYS_SCOPE_EVENTS, key3, NULL);
    assert_int_equal(apikeys_lookup(f->s, key3, &k), AGAPE_OK);
    assert_false(k.revoked);
    assert_int_equal(apikeys_lookup(f->s, key1, &k), AGAPE_OK);
    assert_true(k.revoked);
}

static void test_duplicate_and_bad_names(void **state)
{
    struct fixture *f = *state;
    char key[APIKEYS_KEY_SIZE];
    char err[AGAPE_ERR_SIZE];
    char longname[70];

    create_ok(f->s, "web", APIKEYS_SCOPE_PAYMENTS, key, NULL);
    err[0] = '\0';
    assert_int_equal(apikeys_create(f->s, "web", APIKEYS_SCOPE_ADMIN, key, sizeof(key), NULL,
                                    err, sizeof(err)),
                     AGAPE_EEXIST);
    assert_non_null(strstr(err, "'web'"));
    assert_string_equal(key, ""); /* no key handed out */

    static const char *const bad[] = {"", "a b", "tab\t", "sl/ash", "\xc3\xbc", "q\"uote"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(apikeys_create(f->s, bad[i], APIKEYS_SCOPE_ADMIN, key, sizeof(key),
                                        NULL, err, sizeof(err)),
                         AGAPE_EINVAL);
        assert_non_null(strstr(err, "name"));
    }
    memset(longname, 'n', 65);
    longname[65] = '\0';
    assert_int_equal(apikeys_create(f->s, longname, 1, key, sizeof(key), NULL, err,
                                    sizeof(err)),
                     AGAPE_EINVAL);
    longname[64] = '\0'; /* 64 is the maximum */
    create_ok(f->s, longname, 1, key, NULL);

    /* Scopes must be known bits, and some. */
    assert_int_equal(apikeys_create(f->s, "x", 0, key, sizeof(key), NULL, err, sizeof(err)),
                     AGAPE_EINVAL);
    assert_int_equal(apikeys_create(f->s, "x", 64, key, sizeof(key), NULL, err, sizeof(err)),
                     AGAPE_EINVAL);
    /* The key buffer must hold a key. */
    assert_int_equal(apikeys_create(f->s, "x", 1, key, 68, NULL, err, sizeof(err)),
                     AGAPE_ERANGE);
}

static void test_scopes(void **state)
{
    (void)state;
    uint32_t sc = 99;
    char err[AGAPE_ERR_SIZE];
    char out[APIKEYS_SCOPES_STR_SIZE];

    assert_int_equal(apikeys_parse_scopes("payments,admin", &sc, err, sizeof(err)), AGAPE_OK);
    assert_int_equal(sc, APIKEYS_SCOPE_PAYMENTS | APIKEYS_SCOPE_ADMIN);
    assert_int_equal(apikeys_parse_scopes("all", &sc, err, sizeof(err)), AGAPE_OK);
    assert_int_equal(sc, APIKEYS_SCOPE_ALL);
    assert_int_equal(apikeys_parse_scopes("payments,messages,events,errors,admin", &sc, err,
                                          sizeof(err)),
                     AGAPE_OK);
    assert_int_equal(sc, APIKEYS_SCOPE_ALL);
    assert_int_equal(apikeys_parse_scopes(" events , errors", &sc, err, sizeof(err)), AGAPE_OK);
    assert_int_equal(sc, APIKEYS_SCOPE_EVENTS | APIKEYS_SCOPE_ERRORS);

    err[0] = '\0';
    assert_int_equal(apikeys_parse_scopes("payments,refunds", &sc, err, sizeof(err)),
                     AGAPE_EINVAL);
    assert_int_equal(sc, 0);
    assert_non_null(strstr(err, "'refunds'"));
    assert_int_equal(apikeys_parse_scopes("Payments", &sc, err, sizeof(err)), AGAPE_EINVAL);
    assert_non_null(strstr(err, "'Payments'"));
    assert_int_equal(apikeys_parse_scopes("payments,,admin", &sc, err, sizeof(err)),
                     AGAPE_EINVAL);
    assert_non_null(strstr(err, "empty"));
    assert_int_equal(apikeys_parse_scopes("payments,", &sc, err, sizeof(err)), AGAPE_EINVAL);
    assert_int_equal(apikeys_parse_scopes("", &sc, err, sizeof(err)), AGAPE_EINVAL);
    assert_int_equal(apikeys_parse_scopes(NULL, &sc, err, sizeof(err)), AGAPE_EINVAL);

    apikeys_scopes_str(APIKEYS_SCOPE_PAYMENTS | APIKEYS_SCOPE_ADMIN, out, sizeof(out));
    assert_string_equal(out, "payments,admin");
    apikeys_scopes_str(APIKEYS_SCOPE_ALL, out, sizeof(out));
    assert_string_equal(out, "payments,messages,events,errors,admin");
    apikeys_scopes_str(0, out, sizeof(out));
    assert_string_equal(out, "");
    apikeys_scopes_str(APIKEYS_SCOPE_ALL, out, 12); /* truncated to whole names */
    assert_string_equal(out, "payments");
    apikeys_scopes_str(APIKEYS_SCOPE_PAYMENTS, out, 5);
    assert_string_equal(out, "");
    /* Round trip. */
    apikeys_scopes_str(APIKEYS_SCOPE_MESSAGES | APIKEYS_SCOPE_ERRORS, out, sizeof(out));
    assert_int_equal(apikeys_parse_scopes(out, &sc, err, sizeof(err)), AGAPE_OK);
    assert_int_equal(sc, APIKEYS_SCOPE_MESSAGES | APIKEYS_SCOPE_ERRORS);
}

/* Does any byte string `needle` occur in any key or value of any table? */
struct needle {
    const void *p;
    size_t n;
    int hits;
};

static int find_needle(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct needle *nd = arg;
    if ((klen >= nd->n && memmem(key, klen, nd->p, nd->n) != NULL) ||
        (vlen >= nd->n && memmem(val, vlen, nd->p, nd->n) != NULL)) {
        nd->hits++;
    }
    return 0;
}

static int stored_anywhere(struct store *s, const void *p, size_t n)
{
    struct needle nd = {p, n, 0};
    for (int t = 0; t < STORE_TABLE_COUNT; t++) {
        assert_int_equal(store_scan(s, (enum store_table)t, NULL, 0, NULL, 0, 0, find_needle,
                                    &nd),
                         AGAPE_OK);
    }
    return nd.hits;
}

static void test_list_and_secrecy(void **state)
{
    struct fixture *f = *state;
    char key1[APIKEYS_KEY_SIZE];
    char key2[APIKEYS_KEY_SIZE];
    struct apikey i1;
    struct apikey i2;
    char err[AGAPE_ERR_SIZE];
    json_t *arr = NULL;

    assert_int_equal(apikeys_list(f->s, &arr), AGAPE_OK);
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);

    create_ok(f->s, "first", APIKEYS_SCOPE_PAYMENTS | APIKEYS_SCOPE_ADMIN, key1, &i1);
    create_ok(f->s, "second", APIKEYS_SCOPE_ALL, key2, &i2);
    assert_int_equal(apikeys_revoke(f->s, "first", err, sizeof(err)), AGAPE_OK);

    assert_int_equal(apikeys_list(f->s, &arr), AGAPE_OK);
    assert_int_equal(json_array_size(arr), 2);
    json_t *a = json_array_get(arr, 0);
    json_t *b = json_array_get(arr, 1);
    if (strcmp(json_string_value(json_object_get(a, "name")), "first") != 0) {
        json_t *t = a; /* same millisecond: order by id */
        a = b;
        b = t;
    }
    assert_string_equal(json_string_value(json_object_get(a, "id")), i1.id);
    assert_string_equal(json_string_value(json_object_get(a, "name")), "first");
    assert_string_equal(json_string_value(json_object_get(a, "scopes")), "payments,admin");
    assert_true(json_is_true(json_object_get(a, "revoked")));
    assert_string_equal(json_string_value(json_object_get(b, "name")), "second");
    assert_string_equal(json_string_value(json_object_get(b, "scopes")),
                        "payments,messages,events,errors,admin");
    assert_true(json_is_false(json_object_get(b, "revoked")));
    const char *when = json_string_value(json_object_get(b, "created_at"));
    assert_non_null(when);
    assert_int_equal(strlen(when), 20); /* 2026-11-28T10:00:00Z */
    assert_int_equal(when[10], 'T');
    assert_int_equal(when[19], 'Z');
    char year[16];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(year, sizeof(year), "%04d-", tm.tm_year + 1900);
    assert_memory_equal(when, year, 5);
    assert_int_equal(json_object_size(b), 5); /* id, name, scopes, created_at, revoked */

    /* Neither the keys nor their full hashes appear in the listing. */
    char *text = json_dumps(arr, JSON_COMPACT);
    assert_non_null(text);
    unsigned char md[32];
    char hex[65];
    crypto_sha256(key2, strlen(key2), md);
    crypto_hex(md, 32, hex);
    assert_null(strstr(text, key1));
    assert_null(strstr(text, key2));
    assert_null(strstr(text, key2 + 4));
    assert_null(strstr(text, hex));
    free(text);
    json_decref(arr);

    /* The store never holds a key, in any table, in any form we produce. */
    assert_int_equal(stored_anywhere(f->s, key1, strlen(key1)), 0);
    assert_int_equal(stored_anywhere(f->s, key2, strlen(key2)), 0);
    assert_int_equal(stored_anywhere(f->s, key2 + 4, 64), 0);
    /* ... but its hash is the table key (sanity check of the search). */
    assert_true(stored_anywhere(f->s, md, 32) >= 1);
}

static void test_cache_serves_until_cleared(void **state)
{
    struct fixture *f = *state;
    char key[APIKEYS_KEY_SIZE];
    struct apikey info;
    struct apikey k;

    create_ok(f->s, "cached", APIKEYS_SCOPE_EVENTS, key, &info);
    assert_int_equal(apikeys_lookup(f->s, key, &k), AGAPE_OK);

    /* Another process revokes it: simulate by rewriting the record directly. */
    unsigned char md[32];
    crypto_sha256(key, strlen(key), md);
    char rec[256];
    snprintf(rec, sizeof(rec),
             "{\"v\":1,\"id\":\"%s\",\"name\":\"cached\",\"scopes\":\"events\","
             "\"created_ms\":%lld,\"revoked\":true}",
             info.id, (long long)info.created_ms);
    struct store_batch *b = store_batch_new();
    store_batch_put(b, STORE_API_KEYS, md, 32, rec, strlen(rec));
    assert_int_equal(store_commit(f->s, b), AGAPE_OK);

    /* Within the TTL the cached answer is served ... */
    assert_int_equal(apikeys_lookup(f->s, key, &k), AGAPE_OK);
    assert_false(k.revoked);
    /* ... and once it is gone the store's answer is. */
    apikeys_cache_clear();
    assert_int_equal(apikeys_lookup(f->s, key, &k), AGAPE_OK);
    assert_true(k.revoked);

    /* An unreadable record is a store error, not "unknown". */
    b = store_batch_new();
    store_batch_put(b, STORE_API_KEYS, md, 32, "not json", 8);
    assert_int_equal(store_commit(f->s, b), AGAPE_OK);
    apikeys_cache_clear();
    assert_int_equal(apikeys_lookup(f->s, key, &k), AGAPE_ESTORE);
}

/* The CLI is another process on the same LMDB environment while the gateway
 * runs: a key it creates is found here, and its revoke is seen once the
 * cached answer is gone. */
static int child_do(const char *dir, const char *what, int fd)
{
    char err[AGAPE_ERR_SIZE] = "";
    char key[APIKEYS_KEY_SIZE] = "";
    struct store *s = NULL;
    int rc = store_open(dir, &s, err, sizeof(err));
    if (rc == AGAPE_OK && strcmp(what, "create") == 0) {
        rc = apikeys_create(s, "from-cli", APIKEYS_SCOPE_ERRORS, key, sizeof(key), NULL, err,
                            sizeof(err));
    } else if (rc == AGAPE_OK) {
        rc = apikeys_revoke(s, "from-cli", err, sizeof(err));
    }
    store_close(s);
    if (write(fd, key, sizeof(key)) != (ssize_t)sizeof(key)) {
        rc = AGAPE_ERROR;
    }
    return rc == AGAPE_OK ? 0 : 1;
}

static void run_child(const char *dir, const char *what, char *key_out)
{
    int fds[2];
    int status = -1;
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        _exit(child_do(dir, what, fds[1]));
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], key_out, APIKEYS_KEY_SIZE), APIKEYS_KEY_SIZE);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_other_process(void **state)
{
    struct fixture *f = *state;
    char key[APIKEYS_KEY_SIZE];
    char unused[APIKEYS_KEY_SIZE];
    struct apikey k;

    run_child(f->dir, "create", key);
    assert_int_equal(strlen(key), 68);
    assert_int_equal(apikeys_lookup(f->s, key, &k), AGAPE_OK);
    assert_string_equal(k.name, "from-cli");
    assert_int_equal(k.scopes, APIKEYS_SCOPE_ERRORS);
    assert_false(k.revoked);

    run_child(f->dir, "revoke", unused);
    apikeys_cache_clear(); /* stands for the TTL running out */
    assert_int_equal(apikeys_lookup(f->s, key, &k), AGAPE_OK);
    assert_true(k.revoked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_and_bad_names, setup, teardown),
        cmocka_unit_test(test_scopes),
        cmocka_unit_test_setup_teardown(test_list_and_secrecy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_serves_until_cleared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_process, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
