/* repl.c: the interactive loop of `dprun` and `dprun -i`: GNU readline line editing, a history
 * file, tab completion answered by Lua, and Ctrl-C that interrupts the running Lua code rather
 * than the session. What is evaluated and how it prints is decided in Lua (lua/dp/repl/). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>
#include <readline/history.h>
#include <readline/readline.h>
#include "lauxlib.h"
#include "luajit.h"
#include "cli.h"
#include "dp.h"

/* Signal state. The handler may only touch these and lua_sethook, which Lua documents as safe
 * to call from a signal handler (the standalone interpreter does the same). */
static lua_State *g_state;
static volatile sig_atomic_t g_running;    /* Lua code runs under interruptible() */
static volatile sig_atomic_t g_sigint;     /* Ctrl-C seen at the prompt */
static volatile sig_atomic_t g_pending;    /* Ctrl-C seen while deferred */
static volatile sig_atomic_t g_presses;    /* Ctrl-Cs while one is pending */
static int g_defer;                        /* critical sections open (see host.defer) */

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    /* A step between its noise and its ledger record must not stop halfway: wait for its end. */
    if (g_defer > 0) return;
    lua_sethook(L, NULL, 0, 0);
    g_pending = 0;
    luaL_error(L, "interrupted");
}

static void on_sigint(int sig) {
    (void)sig;
    if (g_running && g_state) {
        /* Compiled LuaJIT loops never look at hooks: after three unanswered Ctrl-Cs, give up. */
        if (g_pending && ++g_presses >= 3) {
            static const char msg[] = "\ndprun: the running code ignores Ctrl-C; exiting\n";
            ssize_t ignored = write(2, msg, sizeof msg - 1);
            (void)ignored;
            _exit(130);
        }
        if (!g_pending) g_presses = 1;
        g_pending = 1;
        lua_sethook(g_state, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    } else {
        g_sigint = 1;
    }
}

/* Install the SIGINT handler (no SA_RESTART: select() at the prompt must return EINTR). */
static void install_sigint(struct sigaction *old) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, old);
}

/* lua_pcall of the function below its nargs arguments, with Ctrl-C interrupting it; returns
 * lua_pcall's status with the results or the error left on the stack. */
static int interruptible_pcall(lua_State *L, int nargs, int nresults) {
    struct sigaction old;
    sig_atomic_t was_running = g_running;
    lua_State *was_state = g_state;
    g_state = L;
    install_sigint(&old);
    g_running = 1;
    int status = lua_pcall(L, nargs, nresults, 0);
    g_running = was_running;
    g_state = was_state;
    if (!was_running) {   /* a Ctrl-C that came too late to fire is dropped */
        lua_sethook(L, NULL, 0, 0);
        g_pending = 0;
    }
    sigaction(SIGINT, &old, NULL);
    return status;
}

/* host.interruptible(fn, ...): fn(...) with Ctrl-C raising "interrupted" inside it. */
static int l_interruptible(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int status = interruptible_pcall(L, lua_gettop(L) - 1, LUA_MULTRET);
    if (status != 0) return lua_error(L);
    return lua_gettop(L);
}

/* host.defer(true|false): open or close a section that Ctrl-C waits for. */
static int l_defer(lua_State *L) {
    if (lua_toboolean(L, 1)) {
        g_defer++;
    } else if (g_defer > 0 && --g_defer == 0 && g_pending && g_running) {
        lua_sethook(L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    }
    return 0;
}

static int l_isatty(lua_State *L) {
    lua_pushboolean(L, isatty(0) && isatty(1));
    return 1;
}

/* ------------------------------------------------------------------ completion */

static lua_State *g_complete_state;
static int g_session_ref = LUA_NOREF;

/* Candidates for the word under the cursor, from session:complete(word, line). */
static char *complete_generator(const char *text, int state) {
    static int index, count;
    lua_State *L = g_complete_state;
    if (!L) return NULL;
    if (state == 0) {
        index = 0;
        count = 0;
        lua_rawgeti(L, LUA_REGISTRYINDEX, g_session_ref);
        lua_getfield(L, -1, "complete");
        lua_pushvalue(L, -2);
        lua_pushstring(L, text);
        lua_pushlstring(L, rl_line_buffer, (size_t)rl_point);
        if (lua_pcall(L, 3, 1, 0) != 0 || !lua_istable(L, -1)) {
            lua_pop(L, 2);
            return NULL;
        }
        lua_remove(L, -2);
        count = (int)lua_objlen(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "dprun.completions");
    }
    if (index >= count) return NULL;
    lua_getfield(L, LUA_REGISTRYINDEX, "dprun.completions");
    lua_rawgeti(L, -1, ++index);
    const char *s = lua_tostring(L, -1);
    char *out = s ? strdup(s) : NULL;   /* readline frees it */
    lua_pop(L, 2);
    return out;
}

static char **complete(const char *text, int start, int end) {
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1;   /* never fall back to file names */
    return rl_completion_matches(text, complete_generator);
}

/* ------------------------------------------------------------------ the loop */

static char *g_line;
static int g_line_done;

static void line_handler(char *line) {
    g_line = line;
    g_line_done = 1;
    rl_callback_handler_remove();   /* the next prompt installs it again */
}

/* One line from readline's callback interface, so that a Ctrl-C at the prompt only clears the
 * line. Returns the malloc'd line, NULL at end of input. *cleared is set on Ctrl-C. */
static char *read_line_raw(const char *prompt, int *cleared);
static char *read_line(const char *prompt, int *cleared) {
    sig_atomic_t was_running = g_running;
    g_running = 0;   /* a nested prompt (dp.breakpoint inside a step) reads Ctrl-C as "clear" */
    char *line = read_line_raw(prompt, cleared);
    g_running = was_running;
    return line;
}

static char *read_line_raw(const char *prompt, int *cleared) {
    *cleared = 0;
    g_line = NULL;
    g_line_done = 0;
    g_sigint = 0;
    rl_callback_handler_install(prompt, line_handler);
    while (!g_line_done) {
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(fileno(rl_instream), &fds);
        int n = select(fileno(rl_instream) + 1, &fds, NULL, NULL, NULL);
        if (n < 0 && errno == EINTR) {
            if (g_sigint) {
                g_sigint = 0;
                rl_free_line_state();
                rl_replace_line("", 0);
                rl_crlf();
                rl_callback_handler_remove();
                *cleared = 1;
                return NULL;
            }
            continue;
        }
        if (n < 0) break;
        rl_callback_read_char();
        if (g_sigint && !g_line_done) {   /* clear_key ran */
            g_sigint = 0;
            free(g_line);
            g_line = NULL;
            rl_free_line_state();
            rl_replace_line("", 0);
            rl_crlf();
            rl_callback_handler_remove();
            *cleared = 1;
            return NULL;
        }
    }
    if (!g_line_done) rl_callback_handler_remove();
    return g_line;
}

/* C-c read as a key (a terminal without ISIG): the same as the signal at the prompt. */
static int clear_key(int count, int key) {
    (void)count;
    (void)key;
    g_sigint = 1;
    return 0;
}

static void history_path(char *out, size_t size) {
    const char *env = getenv("DPRUN_HISTORY");
    const char *home = getenv("HOME");
    if (env && *env)
        snprintf(out, size, "%s", env);
    else if (home && *home)
        snprintf(out, size, "%s/.dprun_history", home);
    else
        out[0] = '\0';
}

/* session:<name>(...) -> first result left on the stack; 0 or 1 on failure (message printed). */
static int call_method(lua_State *L, int session, const char *name, const char *arg,
                       int interruptible) {
    lua_getfield(L, session, name);
    lua_pushvalue(L, session);
    int nargs = 1;
    if (arg) {
        lua_pushstring(L, arg);
        nargs = 2;
    }
    int status = interruptible ? interruptible_pcall(L, nargs, 1) : lua_pcall(L, nargs, 1, 0);
    if (status != 0) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "dprun: %s\n", msg ? msg : "(error)");
        fflush(stderr);
        lua_pop(L, 1);
        return 1;
    }
    return 0;
}

static int session_done(lua_State *L, int session) {
    lua_getfield(L, session, "done");
    int done = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return done;
}

/* Prompt and feed lines to a session until it is done or input ends (readline on a tty). */
static void loop_tty(lua_State *L, int session) {
    char path[4096];
    history_path(path, sizeof path);
    static int history_loaded;
    if (*path && !history_loaded) {
        history_loaded = 1;
        if (read_history(path) != 0) {
            FILE *f = fopen(path, "a");   /* append_history needs an existing file */
            if (f) fclose(f);
        }
    }
    rl_readline_name = "dprun";
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = " \t\n\"'`><=;|&{}()[]+-*/%^,#~";
    rl_completion_append_character = '\0';
    rl_catch_signals = 0;   /* our handler decides what Ctrl-C means */
    rl_bind_key(3, clear_key);
    struct sigaction old;
    install_sigint(&old);
    lua_State *prev_complete = g_complete_state;
    int prev_ref = g_session_ref;
    g_complete_state = L;
    lua_pushvalue(L, session);
    g_session_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    while (!session_done(L, session)) {
        if (call_method(L, session, "prompt", NULL, 0) != 0) break;
        char prompt[256];
        snprintf(prompt, sizeof prompt, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "dp> ");
        lua_pop(L, 1);
        int cleared;
        char *line = read_line(prompt, &cleared);
        if (cleared) {
            if (call_method(L, session, "clear", NULL, 0) == 0) lua_pop(L, 1);
            continue;
        }
        if (!line) {
            putchar('\n');
            break;
        }
        if (*line) {
            add_history(line);
            if (*path) append_history(1, path);
        }
        if (call_method(L, session, "feed", line, 1) == 0) lua_pop(L, 1);
        free(line);
        install_sigint(NULL);   /* code run by the line may have replaced it */
    }
    if (*path) history_truncate_file(path, 1000);
    luaL_unref(L, LUA_REGISTRYINDEX, g_session_ref);
    g_session_ref = prev_ref;
    g_complete_state = prev_complete;
    sigaction(SIGINT, &old, NULL);
}

/* Without a terminal (piped input): plain lines, no prompt echo games. */
static void loop_plain(lua_State *L, int session) {
    char line[65536];
    while (!session_done(L, session) && fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n') line[n - 1] = '\0';
        if (call_method(L, session, "feed", line, 1) == 0) lua_pop(L, 1);
        fflush(stdout);
    }
}

/* host.loop(session): session has prompt(), feed(line), clear(), complete(word, line), done. */
static int l_loop(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (isatty(0) && isatty(1))
        loop_tty(L, 1);
    else
        loop_plain(L, 1);
    return 0;
}

static int open_host(lua_State *L) {
    lua_createtable(L, 0, 4);
    lua_pushcfunction(L, l_loop);
    lua_setfield(L, -2, "loop");
    lua_pushcfunction(L, l_interruptible);
    lua_setfield(L, -2, "interruptible");
    lua_pushcfunction(L, l_defer);
    lua_setfield(L, -2, "defer");
    lua_pushcfunction(L, l_isatty);
    lua_setfield(L, -2, "isatty");
    return 1;
}

void dp_host_register_repl(lua_State *L) {
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open_host);
    lua_setfield(L, -2, "dp.repl.host");
    lua_pop(L, 2);
}

/* ------------------------------------------------------------------ fallback */

/* Without lua/dp/repl (a broken install): read-eval-print with no helpers. */
static int minimal_repl(lua_State *L) {
    char line[65536];
    while (fgets(line, sizeof line, stdin)) {
        int base = lua_gettop(L);
        if (luaL_loadbuffer(L, line, strlen(line), "=stdin") != 0) {
            fprintf(stderr, "dprun: %s\n", lua_tostring(L, -1));
            lua_settop(L, base);
            continue;
        }
        dp_host_pcall(L, 0, 0);
        lua_settop(L, base);
    }
    return 0;
}

int dp_host_repl(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "dp.repl");
    if (lua_pcall(L, 1, 1, 0) != 0 || !lua_istable(L, -1)) {
        fprintf(stderr, "dprun: warning: dp.repl did not load (%s); minimal REPL\n",
                lua_tostring(L, -1) ? lua_tostring(L, -1) : "not a table");
        lua_pop(L, 1);
        return minimal_repl(L);
    }
    lua_getfield(L, -1, "start");
    lua_remove(L, -2);
    return dp_host_pcall(L, 0, 0);
}

/* dprun -i script: dp.repl.run_script(path, args...) runs it and opens the REPL where it stops. */
int dp_host_run_interactive(lua_State *L, const char *path, int nargs, char **args) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "dp.repl");
    if (dp_host_pcall(L, 1, 1) != 0) return 1;
    lua_getfield(L, -1, "run_script");
    lua_remove(L, -2);
    lua_pushstring(L, path);
    for (int i = 0; i < nargs; i++) lua_pushstring(L, args[i]);
    return dp_host_pcall(L, nargs + 1, 0);
}
