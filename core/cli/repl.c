/* repl.c: a minimal interactive loop for `dprun` and `dprun -i`, used until lua/dp/repl.lua
 * exists (when it does, its run() takes over). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lauxlib.h"
#include "luajit.h"
#include "cli.h"
#include "dp.h"

/* 1 when the chunk failed only because the input stopped early (keep reading lines). */
static int incomplete(lua_State *L, int status) {
    if (status != LUA_ERRSYNTAX) return 0;
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    const char *eof = "'<eof>'";
    size_t n = strlen(eof);
    return msg && len >= n && strcmp(msg + len - n, eof) == 0;
}

/* Compile the buffer as an expression first (so `x + 1` prints), then as statements. */
static int compile(lua_State *L, const char *code, size_t len) {
    lua_pushliteral(L, "return ");
    lua_pushlstring(L, code, len);
    lua_concat(L, 2);
    size_t elen;
    const char *expr = lua_tolstring(L, -1, &elen);
    int status = luaL_loadbuffer(L, expr, elen, "=stdin");
    lua_remove(L, -2);
    if (status == 0) return 0;
    lua_pop(L, 1);
    return luaL_loadbuffer(L, code, len, "=stdin");
}

static void print_results(lua_State *L, int base) {
    int n = lua_gettop(L) - base;
    if (n <= 0) return;
    lua_getglobal(L, "print");
    lua_insert(L, base + 1);
    dp_host_pcall(L, n, 0);
}

static int builtin_repl(lua_State *L) {
    int tty = isatty(0);
    char line[65536];
    size_t cap = 1 << 16, len = 0;
    char *chunk = malloc(cap);
    if (!chunk) return 1;
    if (tty)
        printf("dprun %s (%s), minimal REPL: Lua statements or expressions, Ctrl-D exits\n",
               DP_VERSION, LUAJIT_VERSION);
    for (;;) {
        if (tty) {
            fputs(len ? ">> " : "dp> ", stdout);
            fflush(stdout);
        }
        if (!fgets(line, sizeof line, stdin)) break;
        size_t n = strlen(line);
        if (len + n + 1 > cap) {
            char *bigger = realloc(chunk, (cap = 2 * (len + n + 1)));
            if (!bigger) break;
            chunk = bigger;
        }
        memcpy(chunk + len, line, n + 1);
        len += n;
        int base = lua_gettop(L);
        int status = compile(L, chunk, len);
        if (incomplete(L, status)) {
            lua_pop(L, 1);
            continue;
        }
        len = 0;
        if (status != 0) {
            fprintf(stderr, "dprun: %s\n", lua_tostring(L, -1));
            lua_pop(L, 1);
            continue;
        }
        if (dp_host_pcall(L, 0, LUA_MULTRET) == 0) print_results(L, base);
        lua_settop(L, base);
    }
    free(chunk);
    if (tty) putchar('\n');
    return 0;
}

int dp_host_repl(lua_State *L) {
    /* Make dp available as a global for interactive use; a missing library is not fatal here. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "dp");
    if (lua_pcall(L, 1, 1, 0) == 0) {
        lua_setglobal(L, "dp");
    } else {
        fprintf(stderr, "dprun: warning: the dp library did not load: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    /* A library REPL (lua/dp/repl.lua with a run function) takes precedence. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "dp.repl");
    if (lua_pcall(L, 1, 1, 0) == 0 && lua_istable(L, -1)) {
        lua_getfield(L, -1, "run");
        lua_remove(L, -2);
        if (lua_isfunction(L, -1)) return dp_host_pcall(L, 0, 0);
    }
    lua_pop(L, 1);
    return builtin_repl(L);
}
