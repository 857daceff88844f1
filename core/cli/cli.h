/* cli.h: what the pieces of the dprun host share (paths, the Lua state, the REPL). */
#ifndef DP_CLI_H
#define DP_CLI_H
#include <stddef.h>
#include "lua.h"

/* Where the host found its Lua library, header and recipes ("" when not found). */
typedef struct dp_host_paths {
    char exe_dir[4096];     /* directory of the real path of the executable */
    char lua_dir[4096];     /* holds dp/init.lua */
    char header[4096];      /* dp.h, for dp.ffi's ffi.cdef */
    char recipe_dir[4096];
} dp_host_paths;

void dp_host_find_paths(dp_host_paths *paths);

/* A fresh state with the standard libraries, package.path extended by paths->lua_dir and the
 * arg table built from argv (script_index is argv's index of the script, or argc when none). */
lua_State *dp_host_new_state(const dp_host_paths *paths, int argc, char **argv, int script_index);

/* Run a chunk in protected mode with a traceback; on failure print
 * "dprun: <file>:<line>: <msg>" and the traceback to stderr. Return 0 or 1. */
int dp_host_run_file(lua_State *L, const char *path, int nargs_from_argv, char **argv);
int dp_host_run_string(lua_State *L, const char *code, const char *chunkname);
int dp_host_require(lua_State *L, const char *module);

/* The interactive loop: dp.repl.start(), or a minimal loop when dp.repl does not load.
 * Returns the process exit code. */
int dp_host_repl(lua_State *L);

/* Preload the C part of the REPL as the Lua module "dp.repl.host" (loop, interruptible, defer,
 * isatty). */
void dp_host_register_repl(lua_State *L);

/* `dprun -i script`: run it through dp.repl.run_script, which opens the REPL where it stops. */
int dp_host_run_interactive(lua_State *L, const char *path, int nargs, char **args);

/* Call the function on top of the stack (with nargs arguments below it) under the traceback
 * handler; print the failure like dp_host_run_file. Returns 0 or 1. */
int dp_host_pcall(lua_State *L, int nargs, int nresults);

#endif
