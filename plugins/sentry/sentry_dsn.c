/* sentry_dsn — a DSN the way sentry-python's Dsn() reads it (urllib's
 * urlsplit underneath), PROVIDERS.md §7.1 and the §10.7 cases:
 *
 *   {scheme}://{public_key}[:{secret_key}]@{host}[:{port}]{path}/{project_id}
 *
 * Checked in sentry-python's order, with its messages: the scheme (http or
 * https), the host, the public key, then the project: the last path segment,
 * a decimal number (so a trailing slash or a missing id is refused). The
 * path before it is kept as a prefix. A default port (80 for http, 443 for
 * https) is dropped from the URL, as sentry-python's netloc does. */
#include "sentry.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DSN_MAX 2048
#define PROJECT_MAX 20

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static bool scheme_char(char c)
{
    return isalnum((unsigned char)c) || c == '+' || c == '-' || c == '.';
}

int sentry_dsn_parse(const char *dsn, char **envelope_url, char **public_key, char **secret,
                     char *err, size_t errlen)
{
    char scheme[24] = "";
    const char *rest = dsn;
    int rc = AGAPE_EINVAL;
    char *host = NULL;

    *envelope_url = NULL;
    *public_key = NULL;
    *secret = NULL;
    if (strlen(dsn) > DSN_MAX || !sentry_token_ok(dsn)) {
        snprintf(err, errlen, "DSN contains spaces or control characters, or is over %d bytes",
                 DSN_MAX);
        goto out;
    }

    /* The scheme: letters first, then [A-Za-z0-9+-.], up to the first ':'. */
    const char *colon = strchr(dsn, ':');
    if (colon != NULL && colon > dsn && isalpha((unsigned char)dsn[0])) {
        bool ok = true;
        for (const char *p = dsn; p < colon; p++) {
            ok = ok && scheme_char(*p);
        }
        if (ok) {
            size_t n = (size_t)(colon - dsn);
            for (size_t i = 0; i < n && i + 1 < sizeof(scheme); i++) {
                scheme[i] = (char)tolower((unsigned char)dsn[i]);
            }
            scheme[n < sizeof(scheme) - 1 ? n : sizeof(scheme) - 1] = '\0';
            rest = colon + 1;
        }
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(err, errlen, "Unsupported scheme '%.20s'", scheme);
        goto out;
    }

    /* netloc: after "//" up to '/', '?' or '#'; path up to '?' or '#'. */
    const char *netloc = "";
    size_t netloc_len = 0;
    if (strncmp(rest, "//", 2) == 0) {
        netloc = rest + 2;
        netloc_len = strcspn(netloc, "/?#");
        rest = netloc + netloc_len;
    }
    const char *path = rest;
    size_t path_len = strcspn(path, "?#");

    /* userinfo@hostinfo, split at the last '@'. */
    const char *at = NULL;
    for (const char *p = netloc; p < netloc + netloc_len; p++) {
        if (*p == '@') {
            at = p;
        }
    }
    const char *hostinfo = at ? at + 1 : netloc;
    size_t hostinfo_len = (size_t)(netloc + netloc_len - hostinfo);
    size_t host_len;
    const char *port_s = NULL;
    size_t port_len = 0;
    if (hostinfo_len > 0 && hostinfo[0] == '[') {
        const char *close = memchr(hostinfo, ']', hostinfo_len);
        if (close == NULL) {
            snprintf(err, errlen, "Invalid IPv6 host in DSN");
            goto out;
        }
        host_len = (size_t)(close - hostinfo) + 1;
        if (host_len < hostinfo_len && hostinfo[host_len] != ':') {
            snprintf(err, errlen, "Invalid IPv6 host in DSN");
            goto out;
        }
    } else {
        const char *c = memchr(hostinfo, ':', hostinfo_len);
        host_len = c ? (size_t)(c - hostinfo) : hostinfo_len;
    }
    if (host_len < hostinfo_len) {
        port_s = hostinfo + host_len + 1;
        port_len = hostinfo_len - host_len - 1;
    }
    if (host_len == 0 || (host_len == 2 && hostinfo[0] == '[')) {
        snprintf(err, errlen, "Missing hostname");
        goto out;
    }
    long port = -1;
    if (port_len > 0) {
        char buf[8];
        char *end = NULL;
        if (port_len >= sizeof(buf)) {
            snprintf(err, errlen, "Invalid port in DSN");
            goto out;
        }
        memcpy(buf, port_s, port_len);
        buf[port_len] = '\0';
        for (size_t i = 0; i < port_len; i++) {
            if (!isdigit((unsigned char)buf[i])) {
                snprintf(err, errlen, "Invalid port in DSN");
                goto out;
            }
        }
        port = strtol(buf, &end, 10);
        if (*end != '\0' || port > 65535) {
            snprintf(err, errlen, "Invalid port in DSN");
            goto out;
        }
    }

    const char *user = NULL, *pass = NULL;
    size_t user_len = 0, pass_len = 0;
    if (at != NULL) {
        const char *c = memchr(netloc, ':', (size_t)(at - netloc));
        user = netloc;
        user_len = c ? (size_t)(c - netloc) : (size_t)(at - netloc);
        if (c != NULL) {
            pass = c + 1;
            pass_len = (size_t)(at - pass);
        }
    }
    if (user_len == 0) {
        snprintf(err, errlen, "Missing public key");
        goto out;
    }

    /* The project: the last path segment, digits only. */
    const char *slash = NULL;
    for (const char *p = path; p < path + path_len; p++) {
        if (*p == '/') {
            slash = p;
        }
    }
    const char *proj = slash ? slash + 1 : path;
    size_t proj_len = (size_t)(path + path_len - proj);
    bool digits = proj_len > 0 && proj_len <= PROJECT_MAX;
    for (size_t i = 0; digits && i < proj_len; i++) {
        digits = isdigit((unsigned char)proj[i]) != 0;
    }
    if (!digits) {
        /* sentry-python: "Invalid project in DSN (%r)" % path[1:] */
        const char *shown = path_len > 0 ? path + 1 : path;
        int shown_len = path_len > 0 ? (int)(path_len - 1) : 0;
        snprintf(err, errlen, "Invalid project in DSN ('%.*s')", shown_len > 64 ? 64 : shown_len,
                 shown);
        goto out;
    }
    while (proj_len > 1 && proj[0] == '0') { /* str(int(...)) */
        proj++;
        proj_len--;
    }
    size_t prefix_len = slash ? (size_t)(slash - path) : 0; /* "/bam" of "/bam/123" */

    host = dupn(hostinfo, host_len);
    if (host == NULL) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (char *p = host; *p; p++) {
        *p = (char)tolower((unsigned char)*p);
    }
    bool https = strcmp(scheme, "https") == 0;
    char port_part[24] = "";
    if (port >= 0 && port != (https ? 443 : 80)) {
        snprintf(port_part, sizeof(port_part), ":%ld", port);
    }
    size_t cap = strlen(scheme) + 3 + host_len + sizeof(port_part) + prefix_len + 6 +
                 proj_len + 11 + 1;
    *envelope_url = malloc(cap);
    *public_key = dupn(user, user_len);
    if (pass != NULL && pass_len > 0) {
        *secret = dupn(pass, pass_len);
    }
    if (*envelope_url == NULL || *public_key == NULL || (pass_len > 0 && *secret == NULL)) {
        rc = AGAPE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    snprintf(*envelope_url, cap, "%s://%s%s%.*s/api/%.*s/envelope/", scheme, host, port_part,
             (int)prefix_len, path, (int)proj_len, proj);
    rc = AGAPE_OK;
out:
    free(host);
    if (rc != AGAPE_OK) {
        free(*envelope_url);
        free(*public_key);
        free(*secret);
        *envelope_url = NULL;
        *public_key = NULL;
        *secret = NULL;
    }
    return rc;
}
