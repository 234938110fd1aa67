/* script — the Lua 5.4 rule engine.
 *
 * Rule scripts (every *.lua in the scripts directory, in name order) are
 * loaded into one sandboxed environment per lua_State. Each thread that calls
 * in keeps its own lua_State, built lazily and rebuilt when a reload changed
 * the scripts' generation. Sandbox: base (without dofile, loadfile,
 * collectgarbage; load only for text chunks in the sandbox environment),
 * string (without dump), table, math, utf8, os.time/os.clock/os.date;
 * no io, debug, package; require() loads only modules from the scripts
 * directory. Each call runs under an instruction budget and a memory cap;
 * exhausting either fails the call (and cannot be caught by pcall in the
 * script) and the state is thrown away and rebuilt on the next call.
 *
 * Scripts expose rules as global functions, e.g.
 *     function route_payment(req, ctx) return {"stripe", "paypal"} end
 * and call into the core through the `agape` table (agape.log(level, msg), …). */
#ifndef AGAPE_SCRIPT_H
#define AGAPE_SCRIPT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct script_limits {
    uint64_t instructions; /* per call; 0: 10 million */
    size_t memory;         /* bytes per lua_State; 0: 64 MiB */
};

struct script_engine;

/* Compile every script of `dir` in a fresh state; on failure nothing is
 * created and err holds "file:line: message". Main thread. */
int script_engine_create(const char *dir, const struct script_limits *lim,
                         struct script_engine **out, char *err, size_t errlen);
void script_engine_destroy(struct script_engine *e);

/* Re-read and compile the scripts; only if everything compiles and runs its
 * top level are they swapped in (atomically: a call sees the old or the new
 * set, never a mix). On failure nothing changes and err says file:line. Any
 * thread. */
int script_engine_reload(struct script_engine *e, char *err, size_t errlen);

/* Call global function `fn` with `arg` converted to a Lua table (borrowed),
 * and convert its first return value back: *ret is a new reference (json
 * null for nil). A table with only keys 1..n becomes an array. Returns
 * AGAPE_OK, AGAPE_ENOENT (no such function), AGAPE_ESCRIPT (error, budget or
 * memory, with err saying which, file:line when Lua knows it). Any thread. */
int script_call(struct script_engine *e, const char *fn, json_t *arg, json_t **ret, char *err,
                size_t errlen);

/* As script_call, with `nargs` (at most 16) arguments, each borrowed and
 * converted like `arg` (a NULL element becomes nil): route_payment(req, ctx)
 * is called with args {req, ctx}; script_call(e, fn, arg, …) is script_callv
 * with {arg}. Calls do not nest: a C function that a script called (see
 * script_register_lib) gets AGAPE_EBUSY from script_call(v) on the same
 * thread. Any thread. */
int script_callv(struct script_engine *e, const char *fn, json_t *const *args, size_t nargs,
                 json_t **ret, char *err, size_t errlen);

bool script_has(struct script_engine *e, const char *fn);
uint64_t script_generation(struct script_engine *e); /* +1 per successful reload */

/* The sandbox is shared with the configuration loader (conf.c): a state with
 * the safe libraries and a read-only view of them as _ENV. */
struct lua_State;
struct lua_State *script_sandbox_state(size_t memory_cap);
void script_sandbox_close(struct lua_State *L);

/* The seam for later modules: add the C functions `fns` (a {NULL, NULL}-ended
 * array that must outlive the engine) to the scripts' library table `name`:
 * "agape" extends the agape table, any other name [a-z_][a-z0-9_]* that is
 * not a built-in global becomes a new read-only global table. Each function
 * gets `ud` as upvalue 1 (lua_touserdata(L, lua_upvalueindex(1))). Threads
 * pick the change up at their next call (their state is rebuilt); call the
 * functions inside rule functions, not at a script's top level (the state
 * that script_engine_create proves the scripts in has none yet). Returns
 * AGAPE_OK, AGAPE_EINVAL (bad or built-in name) or AGAPE_ERANGE (too many
 * libraries, 16 at most). Any thread, normally the main thread at start. */
struct luaL_Reg;
int script_register_lib(struct script_engine *e, const char *name, const struct luaL_Reg *fns,
                        void *ud);

/* JSON <-> Lua, with the rules of script_call (depth 32, at most 1000000
 * values; JSON null is nil, so an array holding null does not convert back,
 * and an empty table becomes {}). script_push_json pushes `v` (borrowed; NULL or json null → nil) and
 * raises a Lua error past the limits: call it only where Lua errors are
 * caught (inside a Lua-called C function or a protected call).
 * script_to_json converts the value at `idx` without raising: a new
 * reference, or NULL with err = "<what><path>: reason" (e.g. "result[2]:
 * cannot convert a function to JSON"). */
int script_push_json(struct lua_State *L, json_t *v);
json_t *script_to_json(struct lua_State *L, int idx, const char *what, char *err,
                       size_t errlen);

#endif
