/* templates — message templates: Lua files operators edit, rendered in the
 * script sandbox (not a home-made template language).
 *
 * A template is <dir>/email/<name>.lua or <dir>/sms/<name>.lua. The file is a
 * Lua chunk that returns a table; each member is a string or a function
 * (d, h) returning a string (or nil for an optional part):
 *   email: subject (required), text and html (at least one of them)
 *   sms:   body (required)
 * `d` is the request's `data` (a table; JSON null members are absent), `h`
 * the helpers:
 *   h.need(d, key)          d[key] as a string; raises "missing variable <key>"
 *                           when absent or empty (or when it is a table)
 *   h.get(d, key, default)  d[key] as a string, or default
 *   h.html(s)               s with & < > " ' escaped for HTML text and attributes
 * e.g.
 *   return {
 *     subject = function(d, h) return "Welcome, " .. h.need(d, "name") end,
 *     text    = function(d, h) return "Hi " .. h.need(d, "name") .. "!" end,
 *     html    = function(d, h) return "<p>Hi " .. h.html(h.need(d, "name")) .. "</p>" end,
 *   }
 *
 * Sandbox: the bare script sandbox (script_sandbox_state: string, table,
 * math, utf8, os.time/clock/date; no io, no require of files, read-only
 * globals), an instruction budget per render and a memory cap per thread.
 * Each thread keeps one lua_State and a cache of compiled templates, keyed
 * by path and checked against the file's inode, size and mtime on every
 * render, so an edited file is picked up at once without a reload. */
#ifndef AGAPE_TEMPLATES_H
#define AGAPE_TEMPLATES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define TEMPLATES_NAME_MAX 64               /* bytes of a template name */
#define TEMPLATES_FILE_MAX (256 * 1024)     /* bytes of a template file */
#define TEMPLATES_INSTRUCTIONS 2000000ULL   /* Lua instructions per render */
#define TEMPLATES_MEMORY ((size_t)32 << 20) /* bytes per thread's lua_State */

/* A usable template name: [a-z0-9_], 1..TEMPLATES_NAME_MAX bytes (so it can
 * never leave the templates directory). */
bool templates_name_ok(const char *name);

/* Render template `name` of `channel` ("email" or "sms") found under `dir`
 * with `data` (borrowed; an object or NULL). On AGAPE_OK *out is a new
 * object: {"subject", "text"?, "html"?} for email, {"body"} for sms (every
 * member a valid UTF-8 string; empty optional parts left out).
 * On failure *out is NULL, `param` names the culprit for an API error and
 * err says why:
 *   AGAPE_ENOENT  no such template (param "template")
 *   AGAPE_EINVAL  a missing variable (param "data.<key>", err "missing
 *                 variable <key>"), or the template failed or returned
 *                 something unusable (param "template", err with file:line)
 *   AGAPE_ENOMEM  out of memory
 * Any thread (each uses its own lua_State). */
int templates_render(const char *dir, const char *channel, const char *name, json_t *data,
                     json_t **out, char *param, size_t paramlen, char *err, size_t errlen);

/* Close the calling thread's lua_State now (threads that exit have theirs
 * closed automatically; this is for the main thread, e.g. in tests). */
void templates_thread_cleanup(void);

#endif
