/* test_cli_eps.c: `dprun eps` through dp_cli_eps (its source is compiled in here, since the
 * command lives in the dprun executable): tables, JSON lines, calibration, delta, the dataset
 * form, and every bad argument exiting 2 with a message naming the flag and its range. */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>
#include "dp_test.h"
#include "cli/eps.c"

static char out_buf[65536], err_buf[65536];

/* Run `dprun eps <line>` (words split on spaces), capturing stdout and stderr. */
static int run(const char *line) {
    char copy[1024], *argv[64];
    int argc = 0;
    snprintf(copy, sizeof copy, "%s", line);
    argv[argc++] = "eps";
    for (char *tok = strtok(copy, " "); tok && argc < 63; tok = strtok(NULL, " ")) argv[argc++] = tok;
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    FILE *fo = tmpfile(), *fe = tmpfile();
    int so = dup(1), se = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    int rc = dp_cli_eps(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    rewind(fo);
    rewind(fe);
    out_buf[fread(out_buf, 1, sizeof out_buf - 1, fo)] = '\0';
    err_buf[fread(err_buf, 1, sizeof err_buf - 1, fe)] = '\0';
    fclose(fo);
    fclose(fe);
    return rc;
}

/* The number after "key": in the first line of out_buf holding accountant (NAN if absent). */
static double json_field(const char *accountant, const char *key) {
    char tag[64], k[64];
    snprintf(tag, sizeof tag, "\"accountant\":\"%s\"", accountant);
    snprintf(k, sizeof k, "\"%s\":", key);
    for (char *line = out_buf; line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        double v = NAN;
        char *at = strstr(line, k);
        int match = strstr(line, tag) != NULL;
        if (match && at) v = strtod(at + strlen(k), NULL);
        if (end) *end = '\n';
        if (match) return v;
        line = end ? end + 1 : NULL;
    }
    return NAN;
}

static void test_outputs(void) {
    CHECK(run("--q 0.01 --sigma 1.1 --steps 10000 --delta 1e-5") == 0, "table: %s", err_buf);
    CHECK(strstr(out_buf, "rdp ") && strstr(out_buf, "prv ") && strstr(out_buf, "gdp ") &&
          strstr(out_buf, "approximate") && strstr(out_buf, "optimal order"), "table:\n%s", out_buf);

    CHECK(run("--q 0.01 --sigma 1.1 --steps 10000 --delta 1e-5 --json") == 0, "json: %s", err_buf);
    int lines = 0;
    for (char *p = out_buf; *p; p++) lines += *p == '\n';
    CHECK(lines == 3 && strncmp(out_buf, "{\"q\":0.01,\"sigma\":1.1,\"steps\":10000,\"delta\":1e-05,", 50) == 0,
          "json lines:\n%s", out_buf);
    dp_mech_run run1 = { 0.01, 1.1, 10000 };
    dp_eps_result r, p, g;
    dp_rdp_epsilon(&r, &run1, 1, 1e-5, NULL, 0);
    dp_prv_epsilon(&p, &run1, 1, 1e-5, 0, 0);
    dp_gdp_epsilon(&g, &run1, 1, 1e-5);
    CHECK(json_field("rdp", "epsilon") == r.epsilon && json_field("rdp", "best_order") == r.best_order,
          "rdp json %s", out_buf);
    CHECK(json_field("prv", "epsilon") == p.epsilon && json_field("prv", "eps_estimate") == p.eps_estimate &&
          json_field("prv", "eps_lower") == p.eps_lower, "prv json %s", out_buf);
    CHECK(json_field("gdp", "epsilon") == g.epsilon && strstr(out_buf, "\"approximate\":true"), "gdp json");

    /* another library's orders, and the --flag=value form */
    CHECK(run("--q=0.02 --sigma=0.7 --steps=500 --delta=1e-5 --accountant=rdp --json "
              "--orders=2,2.5,3,3.5,4,8,16,32,63") == 0, "%s", err_buf);
    CHECK(fabs(json_field("rdp", "epsilon") - 7.66408776781746) < 1e-6 * 7.67 &&
          json_field("rdp", "best_order") == 3, "%s", out_buf);

    CHECK(run("--target-epsilon 8 --delta 1e-5 --q 0.01 --steps 10000 --accountant rdp --json") == 0,
          "calibrate: %s", err_buf);
    double sigma;
    dp_calibrate_sigma(&sigma, DP_ACCT_RDP, 0.01, 10000, 8, 1e-5, 1e-3);
    CHECK(json_field("rdp", "sigma") == sigma && json_field("rdp", "epsilon") <= 8 &&
          json_field("rdp", "target_epsilon") == 8, "calibrate json %s", out_buf);

    CHECK(run("--epsilon 3 --q 0.01 --sigma 1.1 --steps 10000 --accountant gdp --json") == 0, "%s", err_buf);
    double d;
    dp_accountant_delta(&d, DP_ACCT_GDP, &run1, 1, 3);
    CHECK(json_field("gdp", "delta") == d, "delta json %s", out_buf);

    /* dataset form: q = 256/60000, steps = ceil(60 * 60000 / 256) = 14063 */
    CHECK(run("--dataset-size 60000 --batch-size 256 --epochs 60 --sigma 1.1 --delta 1e-5 "
              "--accountant rdp --json") == 0, "%s", err_buf);
    dp_mech_run run2 = { 256.0 / 60000, 1.1, 14063 };
    dp_rdp_epsilon(&r, &run2, 1, 1e-5, NULL, 0);
    CHECK(json_field("rdp", "epsilon") == r.epsilon && strstr(out_buf, "\"steps\":14063"), "%s", out_buf);

    CHECK(run("--help") == 0 && strstr(out_buf, "usage: dprun eps") && strstr(out_buf, "--target-epsilon"),
          "help");
}

static void expect_bad(const char *line, const char *needle) {
    int rc = run(line);
    CHECK(rc == 2, "'%s': exit %d (stderr %s)", line, rc, err_buf);
    CHECK(strstr(err_buf, needle) != NULL, "'%s': stderr '%s' lacks '%s'", line, err_buf, needle);
    CHECK(out_buf[0] == '\0', "'%s': printed '%s'", line, out_buf);
}

static void test_bad_arguments(void) {
    const char *base = "--sigma 1.1 --steps 100 --delta 1e-5";
    char line[512];
#define BAD(extra, needle) \
    do { snprintf(line, sizeof line, "%s %s", base, extra); expect_bad(line, needle); } while (0)
    BAD("--q 0", "--q must be in (0, 1], got '0'");
    BAD("--q 1.5", "--q must be in (0, 1], got '1.5'");
    BAD("--q nan", "--q must be in (0, 1], got 'nan'");
    BAD("--q abc", "--q must be in (0, 1], got 'abc'");
    BAD("--q 0.1 --sigma 0", "--sigma must be finite and > 0, got '0'");
    BAD("--q 0.1 --sigma -2", "--sigma must be finite and > 0, got '-2'");
    BAD("--q 0.1 --sigma inf", "--sigma must be finite and > 0, got 'inf'");
    BAD("--q 0.1 --delta 0", "--delta must be in (0, 1), got '0'");
    BAD("--q 0.1 --delta 1", "--delta must be in (0, 1), got '1'");
    BAD("--q 0.1 --delta NaN", "--delta must be in (0, 1), got 'NaN'");
    BAD("--q 0.1 --steps 0", "--steps must be an integer >= 1, got '0'");
    BAD("--q 0.1 --steps 2.5", "--steps must be an integer >= 1, got '2.5'");
    BAD("--q 0.1 --epsilon -1", "--epsilon must be finite and >= 0, got '-1'");
    BAD("--q 0.1 --target-epsilon 0", "--target-epsilon must be finite and > 0, got '0'");
    BAD("--q 0.1 --eps-error 0", "--eps-error must be finite and > 0, got '0'");
    BAD("--q 0.1 --delta-error 2", "--delta-error must be in (0, delta), got '2'");
    BAD("--q 0.1 --delta-error 1e-4", "--delta-error must be in (0, delta = 1e-05), got 0.0001");
    BAD("--q 0.1 --tol 1", "--tol must be in (0, 1), got '1'");
    BAD("--q 0.1 --accountant foo", "--accountant must be rdp, prv or gdp, got 'foo'");
    BAD("--q 0.1 --orders 1,2", "--orders entry 1 must be a number in (1, 1e6], got '1'");
    BAD("--q 0.1 --orders 2,x", "--orders entry 2 must be a number in (1, 1e6], got 'x'");
    BAD("--q 0.1 --frobnicate 3", "unknown option '--frobnicate'");
    BAD("--q 0.1 extra", "unexpected argument 'extra'");
    BAD("--q", "--q needs a value (in (0, 1])");
    BAD("", "missing --q (sampling rate, in (0, 1]");
    BAD("--q 0.1 --dataset-size 10 --batch-size 1 --epochs 1", "give either --q and --steps or --dataset-size");
    BAD("--q 0.1 --epsilon 1 --target-epsilon 1", "give either --epsilon or --target-epsilon");
#undef BAD
    expect_bad("--q 0.1 --steps 10 --delta 1e-5", "missing --sigma (noise multiplier, finite and > 0)");
    expect_bad("--q 0.1 --sigma 1 --delta 1e-5", "missing --steps (an integer >= 1)");
    expect_bad("--q 0.1 --sigma 1 --steps 10", "missing --delta (target delta, in (0, 1))");
    expect_bad("--dataset-size 100 --batch-size 200 --epochs 1 --sigma 1 --delta 1e-5",
               "--batch-size must be an integer in [1, dataset size = 100], got 200");
    expect_bad("--dataset-size 100 --epochs 1 --sigma 1 --delta 1e-5", "missing --batch-size");
    expect_bad("--dataset-size 0 --batch-size 1 --epochs 1 --sigma 1 --delta 1e-5",
               "--dataset-size must be an integer >= 1, got '0'");
    expect_bad("--dataset-size 100 --batch-size 10 --epochs -1 --sigma 1 --delta 1e-5",
               "--epochs must be finite and > 0, got '-1'");
    int rc = run("--target-epsilon 1e-6 --delta 1e-5 --q 1 --steps 1000000 --accountant rdp");
    CHECK(rc == 2 && strstr(err_buf, "target_epsilon 1e-06 is out of reach"), "exit %d: %s", rc, err_buf);
}

static void test_failure_exit(void) {
    int rc = run("--q 0.01 --sigma 1 --steps 1000 --delta 1e-14 --accountant prv");
    CHECK(rc == 1 && strstr(err_buf, "error budget"), "exit %d, stderr %s", rc, err_buf);
}

int main(void) {
    test_outputs();
    test_bad_arguments();
    test_failure_exit();
    return dp_test_finish("test_cli_eps");
}
