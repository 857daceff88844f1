/* main.c: the dprun command: run a Lua script with the dp library, evaluate code, open a REPL,
 * or dispatch a subcommand (`dprun eps ...`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lauxlib.h"
#include "luajit.h"
#include "cli.h"
#include "dp.h"

static void usage(FILE *out) {
    fputs("usage: dprun [options] [script.lua [args...]]\n"
          "       dprun eps [accountant options]\n"
          "\n"
          "  dprun script.lua [args]  run a script; arg[0] is the script, arg[1..] its args\n"
          "  dprun                    open an interactive REPL with dp loaded\n"
          "  dprun -i [script.lua]    run the script until it ends, calls dp.breakpoint() or is\n"
          "                           interrupted (Ctrl-C), then open the REPL with its locals\n"
          "  dprun -e 'code'          run a Lua string (repeatable, runs before the script)\n"
          "  dprun -l module          require a module as a global before the script\n"
          "  dprun -                  read the script from stdin\n"
          "  dprun eps ...            privacy accountant: epsilon, delta, sigma (dprun eps --help)\n"
          "  dprun --paths            print where the Lua library, dp.h and recipes were found\n"
          "  dprun --version, -v      print the version of dprun and LuaJIT\n"
          "  dprun --help, -h         print this help\n"
          "  --                       stop handling options\n"
          "\n"
          "A script that is not found in the current directory is looked up among the recipes.\n"
          "Environment: DP_LUADIR (the Lua library dir), DP_HEADER (dp.h for ffi.cdef),\n"
          "DPRUN_HISTORY (REPL history file, default ~/.dprun_history), COLUMNS (histogram width).\n"
          "\n"
          "In the REPL (Tab completes names, fields and methods; Ctrl-C stops the running code):\n"
          "  help()                   list these helpers\n"
          "  grads(model)             per parameter: shape, dtype, gradient, clipped-sum and noise norms, SNR\n"
          "  persample(model)         per-sample gradient norms per layer: min, median, p90, max, clipped, histogram\n"
          "  privacy()                epsilon spent, the ledger and the projected epsilon at the end of the run\n"
          "  step(n)                  advance the current dp.private run n steps, printing each step's line\n"
          "  model:summary()          layers with precision, trainable or frozen, and memory\n"
          "  dp.precision.apply(model, policy)  change a layer's precision live (takes effect next step)\n"
          "  t:stats()                mean, std, min, max and NaN/Inf counts of a tensor\n"
          "  continue()               leave the REPL (after dp.breakpoint(): resume the script)\n"
          "Reading raw per-sample statistics is not private: the REPL says so once and the ledger\n"
          "records a debugging inspection.\n",
          out);
}

/* A script name that is not a file here may name a bundled recipe ("bert_snli.lua"). */
static const char *resolve_script(const dp_host_paths *paths, const char *script, char *buf,
                                  size_t size) {
    if (strcmp(script, "-") == 0 || access(script, R_OK) == 0 || strchr(script, '/') ||
        !*paths->recipe_dir)
        return script;
    snprintf(buf, size, "%s/%s", paths->recipe_dir, script);
    if (access(buf, R_OK) == 0) return buf;
    return script;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "eps") == 0) return dp_cli_eps(argc - 1, argv + 1);

    int interactive = 0, ran_code = 0, i = 1, show_paths = 0;
    /* First pass: validate options and find the script; -e and -l run later, in order. */
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--version") == 0 || strcmp(opt, "-v") == 0) {
            printf("dprun %s (%s)\n", DP_VERSION, LUAJIT_VERSION);
            return 0;
        } else if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(opt, "--paths") == 0) {
            show_paths = 1;
        } else if (strcmp(opt, "-i") == 0) {
            interactive = 1;
        } else if (strcmp(opt, "-e") == 0 || strcmp(opt, "-l") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "dprun: option '%s' needs an argument (see dprun --help)\n", opt);
                return 2;
            }
            i++;
            if (opt[1] == 'e') ran_code = 1;
        } else if (strcmp(opt, "--") == 0) {
            i++;
            break;
        } else if (strcmp(opt, "-") == 0) {
            break;
        } else {
            fprintf(stderr, "dprun: unknown option '%s' (see dprun --help)\n", opt);
            return 2;
        }
    }
    int script_index = i;

    dp_host_paths paths;
    dp_host_find_paths(&paths);
    if (show_paths) {
        printf("exe     %s\nlua     %s\nheader  %s\nrecipes %s\n", paths.exe_dir,
               *paths.lua_dir ? paths.lua_dir : "(not found)",
               *paths.header ? paths.header : "(not found)",
               *paths.recipe_dir ? paths.recipe_dir : "(not found)");
        return *paths.lua_dir ? 0 : 1;
    }
    if (!*paths.lua_dir)
        fprintf(stderr, "dprun: warning: lua/dp not found near %s; set DP_LUADIR\n", paths.exe_dir);

    /* Lua's dp.ffi binds to the libdpcore this executable links (this call also keeps the
     * linker's --as-needed from dropping it, which would leave ffi.C without the symbols). */
    if (strcmp(dp_version(), DP_VERSION) != 0)
        fprintf(stderr, "dprun: warning: dprun %s runs with libdpcore %s\n", DP_VERSION, dp_version());

    lua_State *L = dp_host_new_state(&paths, argc, argv, script_index);
    if (!L) {
        fprintf(stderr, "dprun: cannot create the Lua state (out of memory)\n");
        return 1;
    }
    int rc = 0;
    for (int k = 1; k < script_index && rc == 0; k++) {
        if (strcmp(argv[k], "-e") == 0)
            rc = dp_host_run_string(L, argv[++k], "=(command line)");
        else if (strcmp(argv[k], "-l") == 0)
            rc = dp_host_require(L, argv[++k]);
    }
    if (rc == 0 && script_index < argc) {
        char buf[8192];
        const char *script = resolve_script(&paths, argv[script_index], buf, sizeof buf);
        if (interactive && strcmp(script, "-") != 0) {
            /* The REPL opens where the script stops (end, dp.breakpoint, error or Ctrl-C). */
            rc = dp_host_run_interactive(L, script, argc - script_index - 1, argv + script_index + 1);
            lua_close(L);
            return rc;
        }
        rc = dp_host_run_file(L, script, argc - script_index - 1, argv + script_index + 1);
    }
    if (rc == 0 && (interactive || (script_index >= argc && !ran_code))) rc = dp_host_repl(L);
    lua_close(L);
    return rc;
}
