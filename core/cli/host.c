/* host.c: the embedded LuaJIT state of dprun: finding lua/, package.path, arg, and running chunks
 * with a traceback. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lauxlib.h"
#include "lualib.h"
#include "cli.h"

static int file_exists(const char *path) { return access(path, R_OK) == 0; }

/* out = a + b, cut to size (paths longer than PATH_MAX fail later at access()). */
static void join(char *out, size_t size, const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na >= size) na = size - 1;
    if (nb >= size - na) nb = size - na - 1;
    memcpy(out, a, na);
    memcpy(out + na, b, nb);
    out[na + nb] = '\0';
}

/* Copy dir into out when dir/dp/init.lua exists, with the path made canonical. */
static int try_lua_dir(char *out, size_t size, const char *dir) {
    char probe[PATH_MAX + 32];
    char canonical[PATH_MAX];
    if (!dir || !*dir) return 0;
    join(probe, sizeof probe, dir, "/dp/init.lua");
    if (!file_exists(probe)) return 0;
    if (!realpath(dir, canonical)) return 0;
    join(out, size, canonical, "");
    return 1;
}

static int try_file(char *out, size_t size, const char *path) {
    char canonical[PATH_MAX];
    if (!file_exists(path) || !realpath(path, canonical)) return 0;
    join(out, size, canonical, "");
    return 1;
}

/* 1 when the executable runs from the build tree it was compiled in. */
static int in_build_tree(const char *exe_dir) {
#ifdef DP_BUILD_DIR
    char build[PATH_MAX];
    return realpath(DP_BUILD_DIR, build) && strcmp(build, exe_dir) == 0;
#else
    (void)exe_dir;
    return 0;
#endif
}

void dp_host_find_paths(dp_host_paths *p) {
    char buf[PATH_MAX + 64];
    memset(p, 0, sizeof *p);
    if (realpath("/proc/self/exe", buf)) {
        char *slash = strrchr(buf, '/');
        if (slash) *slash = '\0';
        join(p->exe_dir, sizeof p->exe_dir, buf, "");
    } else {
        join(p->exe_dir, sizeof p->exe_dir, ".", "");
    }

    /* The library: an explicit override, then the source tree when running from the build tree,
     * then the installed layout (<prefix>/bin -> <prefix>/share/dprun/lua), then a source tree
     * beside or above the executable, then the source tree this binary was built from. */
    const char *env = getenv("DP_LUADIR");
    int found = env && try_lua_dir(p->lua_dir, sizeof p->lua_dir, env);
#ifdef DP_SOURCE_LUADIR
    if (!found && in_build_tree(p->exe_dir))
        found = try_lua_dir(p->lua_dir, sizeof p->lua_dir, DP_SOURCE_LUADIR);
#endif
#ifdef DP_INSTALL_LUADIR
    if (!found) {
        join(buf, sizeof buf, p->exe_dir, "/../" DP_INSTALL_LUADIR);
        found = try_lua_dir(p->lua_dir, sizeof p->lua_dir, buf);
    }
#endif
    if (!found) {
        join(buf, sizeof buf, p->exe_dir, "/../lua");
        found = try_lua_dir(p->lua_dir, sizeof p->lua_dir, buf);
    }
    if (!found) {
        join(buf, sizeof buf, p->exe_dir, "/../../lua");
        found = try_lua_dir(p->lua_dir, sizeof p->lua_dir, buf);
    }
#ifdef DP_SOURCE_LUADIR
    if (!found) found = try_lua_dir(p->lua_dir, sizeof p->lua_dir, DP_SOURCE_LUADIR);
#endif

    /* dp.h sits at ../core/include in the source tree and ../include in share/dprun. */
    const char *header = getenv("DP_HEADER");
    if (header && *header) {
        join(p->header, sizeof p->header, header, "");
    } else if (found) {
        join(buf, sizeof buf, p->lua_dir, "/../core/include/dp.h");
        if (!try_file(p->header, sizeof p->header, buf)) {
            join(buf, sizeof buf, p->lua_dir, "/../include/dp.h");
            try_file(p->header, sizeof p->header, buf);
        }
    }
    if (found) {
        join(buf, sizeof buf, p->lua_dir, "/../recipes");
        if (!realpath(buf, p->recipe_dir)) p->recipe_dir[0] = '\0';
    }
}

/* package.path = lua_dir/?.lua;lua_dir/?/init.lua;<what LUA_PATH or the default gave>. */
static void set_package_path(lua_State *L, const char *lua_dir) {
    if (!*lua_dir) return;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *old = lua_tostring(L, -1);
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", lua_dir, lua_dir, old ? old : "");
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

lua_State *dp_host_new_state(const dp_host_paths *paths, int argc, char **argv, int script_index) {
    lua_State *L = luaL_newstate();
    if (!L) return NULL;
    luaL_openlibs(L);
    set_package_path(L, paths->lua_dir);
    dp_host_register_repl(L);
    /* dp.ffi reads the header named here (it also searches itself when run from plain luajit). */
    if (*paths->header) setenv("DP_HEADER", paths->header, 0);

    /* arg as in the luajit standalone: arg[0] the script, arg[1..] its arguments, the
     * interpreter and its options at negative indices. */
    lua_createtable(L, argc - script_index, script_index + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script_index);
    }
    lua_setglobal(L, "arg");
    return L;
}

/* Message handler: the error text followed by the stack traceback. */
static int traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void report(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "dprun: %s\n", msg ? msg : "(error object is not a string)");
    fflush(stderr);
    lua_pop(L, 1);
}

int dp_host_pcall(lua_State *L, int nargs, int nresults) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (status != 0) {
        report(L);
        return 1;
    }
    return 0;
}

int dp_host_run_file(lua_State *L, const char *path, int nargs, char **args) {
    /* "-" reads the script from stdin, as luajit does. */
    int status = luaL_loadfile(L, strcmp(path, "-") == 0 ? NULL : path);
    if (status != 0) {
        report(L);
        return 1;
    }
    for (int i = 0; i < nargs; i++) lua_pushstring(L, args[i]);
    return dp_host_pcall(L, nargs, 0);
}

int dp_host_run_string(lua_State *L, const char *code, const char *chunkname) {
    if (luaL_loadbuffer(L, code, strlen(code), chunkname) != 0) {
        report(L);
        return 1;
    }
    return dp_host_pcall(L, 0, 0);
}

int dp_host_require(lua_State *L, const char *module) {
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    if (dp_host_pcall(L, 1, 1) != 0) return 1;
    lua_setglobal(L, module);   /* like luajit -l: the module becomes a global of that name */
    return 0;
}
