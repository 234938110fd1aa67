/* Sentry's envelope endpoint, as PROVIDERS.md §7 describes it.
 *
 *   POST [/<prefix>]/api/<project>/envelope/
 *     X-Sentry-Auth: Sentry sentry_key=<key>, sentry_version=7, … (or ?sentry_key=, or the
 *     envelope header's dsn, as Relay accepts)
 *
 * The envelope is parsed as Relay does: a header line, then items (header
 * line, `length` bytes of payload — or up to the next newline without a
 * length — then a newline). An item whose length does not match (including an
 * event payload that swallows the line's newline) is a 400 with X-Sentry-Error, as
 * is a malformed header. Each event item is recorded
 * in bucket "sentry.events" under its event_id (the event JSON as sent), and
 * the envelope's facts in "sentry.envelopes" under the same id
 * ({"project", "sentry_key", "header", "item"}). Answers 200 {"id"}. */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTRY_ITEM_MAX 1000000 /* 1 MB per event item (§7.4) */

static void sentry_error(struct mock_resp *rs, int status, const char *detail)
{
    mock_json(rs, status, json_pack("{s:s}", "detail", detail));
    mock_header(rs, "X-Sentry-Error", detail);
    rs->no_replay = true;
}

/* The sentry_key of "Sentry sentry_key=…, sentry_version=7, …" into out. */
static bool auth_key(const char *h, char *out, size_t len)
{
    if (h == NULL || strncmp(h, "Sentry ", 7) != 0) {
        return false;
    }
    const char *p = strstr(h, "sentry_key=");
    if (p == NULL || (p != h + 7 && p[-1] != ' ')) {
        return false;
    }
    p += 11;
    size_t n = strcspn(p, ", ");
    if (n == 0 || n >= len) {
        return false;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

/* The public key of a DSN "scheme://key[:secret]@host/…". */
static bool dsn_key(const char *dsn, char *out, size_t len)
{
    const char *p = dsn ? strstr(dsn, "://") : NULL;
    const char *at = p ? strchr(p + 3, '@') : NULL;
    if (at == NULL) {
        return false;
    }
    p += 3;
    size_t n = strcspn(p, ":@");
    if (n == 0 || n >= len) {
        return false;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

static void envelope(const struct mock_req *rq, struct mock_resp *rs, const char *project)
{
    const char *b = rq->body;
    size_t len = rq->body_len;
    char key[128] = "";
    json_t *header = NULL, *item = NULL, *event = NULL, *form = NULL;

    const char *nl = memchr(b, '\n', len);
    header = json_loadb(b, nl ? (size_t)(nl - b) : len, 0, NULL);
    if (!json_is_object(header)) {
        sentry_error(rs, 400, "invalid envelope header");
        goto out;
    }
    form = mock_form_parse(rq->query, strlen(rq->query));
    if (!auth_key(mock_req_header(rq, "x-sentry-auth"), key, sizeof(key)) &&
        !(mock_form_get(form, "sentry_key") &&
          snprintf(key, sizeof(key), "%s", mock_form_get(form, "sentry_key")) > 0) &&
        !dsn_key(json_string_value(json_object_get(header, "dsn")), key, sizeof(key))) {
        sentry_error(rs, 401, "missing authorization information");
        goto out;
    }
    size_t pos = nl ? (size_t)(nl - b) + 1 : len;
    while (pos < len) {
        const char *ih = b + pos;
        const char *inl = memchr(ih, '\n', len - pos);
        json_decref(item);
        item = json_loadb(ih, inl ? (size_t)(inl - ih) : len - pos, 0, NULL);
        if (!json_is_object(item) || !json_is_string(json_object_get(item, "type"))) {
            sentry_error(rs, 400, "invalid item header");
            goto out;
        }
        pos = inl ? (size_t)(inl - b) + 1 : len;
        json_t *jl = json_object_get(item, "length");
        size_t plen;
        if (jl != NULL) {
            if (!json_is_integer(jl) || json_integer_value(jl) < 0 ||
                (size_t)json_integer_value(jl) > len - pos) {
                sentry_error(rs, 400, "invalid item length");
                goto out;
            }
            plen = (size_t)json_integer_value(jl);
            /* The payload is followed by a newline or the end of the envelope. */
            if (pos + plen < len && b[pos + plen] != '\n') {
                sentry_error(rs, 400, "invalid item length");
                goto out;
            }
        } else {
            const char *pnl = memchr(b + pos, '\n', len - pos);
            plen = pnl ? (size_t)(pnl - (b + pos)) : len - pos;
        }
        const char *type = json_string_value(json_object_get(item, "type"));
        if (strcmp(type, "event") == 0) {
            if (plen > SENTRY_ITEM_MAX) {
                sentry_error(rs, 413, "event too large");
                goto out;
            }
            /* Stricter than Relay: an event payload that swallows its line's
             * newline (a length one too long) is refused, to catch off-by-ones. */
            if (plen > 0 && b[pos + plen - 1] == '\n') {
                sentry_error(rs, 400, "invalid item length");
                goto out;
            }
            json_decref(event);
            event = json_loadb(b + pos, plen, 0, NULL);
            const char *id = json_string_value(json_object_get(event, "event_id"));
            if (!json_is_object(event) || id == NULL || strlen(id) != 32 ||
                strspn(id, "0123456789abcdef") != 32) {
                sentry_error(rs, 400, "invalid event payload");
                goto out;
            }
            json_object_set(mock_bucket("sentry.events"), id, event);
            json_object_set_new(mock_bucket("sentry.envelopes"), id,
                                json_pack("{s:s,s:s,s:O,s:O}", "project", project, "sentry_key",
                                          key, "header", header, "item", item));
        }
        pos += plen;
        if (pos < len && b[pos] == '\n') {
            pos++;
        }
    }
    const char *id = json_string_value(json_object_get(header, "event_id"));
    if (id == NULL && event != NULL) {
        id = json_string_value(json_object_get(event, "event_id"));
    }
    mock_json(rs, 200, id ? json_pack("{s:s}", "id", id) : json_object());
out:
    json_decref(form);
    json_decref(event);
    json_decref(item);
    json_decref(header);
}

static void envelope_root(const struct mock_req *rq, struct mock_resp *rs)
{
    envelope(rq, rs, rq->params[0]);
}

/* A DSN with a path prefix: /<prefix>/api/<project>/envelope/. */
static void envelope_prefixed(const struct mock_req *rq, struct mock_resp *rs)
{
    envelope(rq, rs, rq->params[1]);
}

static const struct mock_route routes[] = {
    {"POST", "/api/*/envelope/", envelope_root, NULL},
    {"POST", "/*/api/*/envelope/", envelope_prefixed, NULL},
    {NULL, NULL, NULL, NULL},
};

const struct mock_provider mock_sentry = {"sentry", routes, NULL};
