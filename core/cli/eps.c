/* eps.c: `dprun eps`, the command-line front of the privacy accountant: epsilon for a run of
 * DP-SGD steps (one accountant or a table of all three), delta for an epsilon, or the sigma that
 * meets a target epsilon. Uses only the public API in dp.h. Exit codes: 0 ok, 1 the computation
 * failed, 2 bad arguments (with a message naming the flag and its allowed range). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp.h"

static const char usage_text[] =
    "usage: dprun eps --q Q --sigma S --steps T --delta D [options]      epsilon\n"
    "       dprun eps --epsilon E --q Q --sigma S --steps T [options]    delta for an epsilon\n"
    "       dprun eps --target-epsilon E --delta D --q Q --steps T       sigma for a target\n"
    "\n"
    "Privacy accountant for DP-SGD with Poisson sampling (the subsampled Gaussian mechanism).\n"
    "\n"
    "  --q Q               sampling rate per step, in (0, 1]\n"
    "  --sigma S           noise multiplier (noise std / clipping norm), finite and > 0\n"
    "  --steps T           number of steps, an integer >= 1\n"
    "  --dataset-size N    instead of --q and --steps: q = B/N, steps = ceil(E*N/B), with\n"
    "  --batch-size B        N an integer >= 1, B an integer in [1, N] (the expected batch)\n"
    "  --epochs E            and E finite and > 0\n"
    "  --delta D           target delta, in (0, 1)\n"
    "  --accountant A      rdp, prv or gdp; default: a table of all three\n"
    "                        rdp: Renyi DP (Mironov et al. 2019), an upper bound\n"
    "                        prv: privacy random variables (Gopi et al. 2021): an upper bound,\n"
    "                             with the estimate and a lower bound\n"
    "                        gdp: Gaussian DP by the central limit theorem: approximate\n"
    "  --orders LIST       RDP orders for epsilon, comma-separated, each in (1, 1e6]\n"
    "                        (default: 334 orders from 1.001 to 16384)\n"
    "  --eps-error X       PRV epsilon accuracy, finite and > 0 (default 0.01)\n"
    "  --delta-error X     PRV delta accuracy, in (0, delta) (default delta/1000)\n"
    "                        (delta and calibration use the defaults of both)\n"
    "  --epsilon E         print delta at this epsilon (finite and >= 0) instead of epsilon\n"
    "  --target-epsilon E  print the smallest sigma (within --tol) whose epsilon at --delta\n"
    "                        is at most E (finite and > 0), by bisection on sigma\n"
    "  --tol X             relative tolerance on the calibrated sigma, in (0, 1)\n"
    "                        (default 0.001)\n"
    "  --json              one JSON object per line instead of a table\n"
    "  --help              this text\n"
    "\n"
    "Exit status: 0 ok, 1 the computation failed, 2 bad arguments.\n";

typedef struct eps_args {
    double q, sigma, delta, epsilon, target, eps_error, delta_error, tol, epochs;
    int64_t steps, dataset_size, batch_size;
    int have_q, have_sigma, have_steps, have_delta, have_epsilon, have_target;
    int have_dataset, have_batch, have_epochs, have_eps_error, have_delta_error, have_tol;
    int accountant;   /* -1: all */
    int json;
    double *orders;
    int32_t n_orders;
} eps_args;

static const char *kind_names[] = { "rdp", "prv", "gdp" };

/* Each flag with a value, and the range its message names. */
static const struct { const char *flag, *range; } flag_ranges[] = {
    { "--q", "in (0, 1]" },
    { "--sigma", "finite and > 0" },
    { "--steps", "an integer >= 1" },
    { "--delta", "in (0, 1)" },
    { "--epsilon", "finite and >= 0" },
    { "--target-epsilon", "finite and > 0" },
    { "--eps-error", "finite and > 0" },
    { "--delta-error", "in (0, delta)" },
    { "--tol", "in (0, 1)" },
    { "--dataset-size", "an integer >= 1" },
    { "--batch-size", "an integer in [1, dataset size]" },
    { "--epochs", "finite and > 0" },
    { "--accountant", "rdp, prv or gdp" },
    { "--orders", "a comma-separated list of numbers in (1, 1e6]" },
};

static const char *range_of(const char *flag) {
    for (size_t i = 0; i < sizeof flag_ranges / sizeof flag_ranges[0]; i++)
        if (!strcmp(flag, flag_ranges[i].flag)) return flag_ranges[i].range;
    return NULL;
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dprun eps: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see dprun eps --help)\n");
    va_end(ap);
    return 2;
}

static int bad_value(const char *flag, const char *value) {
    return bad("%s must be %s, got '%s'", flag, range_of(flag), value);
}

/* A double using the whole text; NaN is read as NaN so that every range rejects it. */
static int parse_double(const char *text, double *out) {
    char *end;
    errno = 0;
    *out = strtod(text, &end);
    return *text && !*end && errno != ERANGE ? 0 : -1;
}

/* An integer, also written as 1e4, up to 2^53. */
static int parse_int(const char *text, int64_t *out) {
    double v;
    if (parse_double(text, &v) || !(v == floor(v)) || fabs(v) > 9007199254740992.0) return -1;
    *out = (int64_t)v;
    return 0;
}

static int parse_orders(eps_args *a, const char *text) {
    int32_t n = 1;
    for (const char *p = text; *p; p++) n += *p == ',';
    a->orders = malloc(sizeof(double) * (size_t)n);
    if (!a->orders) return 1;
    char buf[64];
    const char *p = text;
    for (int32_t i = 0; i < n; i++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        double v;
        if (len >= sizeof buf) len = sizeof buf - 1;
        memcpy(buf, p, len);
        buf[len] = '\0';
        if (parse_double(buf, &v) || !(v > 1 && v <= 1e6))
            return bad("--orders entry %d must be a number in (1, 1e6], got '%s'", (int)i + 1, buf);
        a->orders[i] = v;
        p = comma ? comma + 1 : p + len;
    }
    a->n_orders = n;
    return 0;
}

/* Read one flag's value; returns 0 or the exit code. */
static int take_value(eps_args *a, const char *flag, const char *v) {
    double d;
    int64_t k;
    int ok = 1;
    if (!strcmp(flag, "--q")) {
        ok = !parse_double(v, &d) && d > 0 && d <= 1;
        a->q = d; a->have_q = 1;
    } else if (!strcmp(flag, "--sigma")) {
        ok = !parse_double(v, &d) && d > 0 && isfinite(d);
        a->sigma = d; a->have_sigma = 1;
    } else if (!strcmp(flag, "--steps")) {
        ok = !parse_int(v, &k) && k >= 1;
        a->steps = k; a->have_steps = 1;
    } else if (!strcmp(flag, "--delta")) {
        ok = !parse_double(v, &d) && d > 0 && d < 1;
        a->delta = d; a->have_delta = 1;
    } else if (!strcmp(flag, "--epsilon")) {
        ok = !parse_double(v, &d) && d >= 0 && isfinite(d);
        a->epsilon = d; a->have_epsilon = 1;
    } else if (!strcmp(flag, "--target-epsilon")) {
        ok = !parse_double(v, &d) && d > 0 && isfinite(d);
        a->target = d; a->have_target = 1;
    } else if (!strcmp(flag, "--eps-error")) {
        ok = !parse_double(v, &d) && d > 0 && isfinite(d);
        a->eps_error = d; a->have_eps_error = 1;
    } else if (!strcmp(flag, "--delta-error")) {
        ok = !parse_double(v, &d) && d > 0 && d < 1;
        a->delta_error = d; a->have_delta_error = 1;
    } else if (!strcmp(flag, "--tol")) {
        ok = !parse_double(v, &d) && d > 0 && d < 1;
        a->tol = d; a->have_tol = 1;
    } else if (!strcmp(flag, "--dataset-size")) {
        ok = !parse_int(v, &k) && k >= 1;
        a->dataset_size = k; a->have_dataset = 1;
    } else if (!strcmp(flag, "--batch-size")) {
        ok = !parse_int(v, &k) && k >= 1;
        a->batch_size = k; a->have_batch = 1;
    } else if (!strcmp(flag, "--epochs")) {
        ok = !parse_double(v, &d) && d > 0 && isfinite(d);
        a->epochs = d; a->have_epochs = 1;
    } else if (!strcmp(flag, "--accountant")) {
        a->accountant = -1;
        for (int i = 0; i < 3; i++) if (!strcmp(v, kind_names[i])) a->accountant = i;
        ok = a->accountant >= 0;
    } else if (!strcmp(flag, "--orders")) {
        free(a->orders);
        a->orders = NULL;
        return parse_orders(a, v);
    }
    return ok ? 0 : bad_value(flag, v);
}

static int parse_args(eps_args *a, int argc, char **argv, int *help) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) { *help = 1; return 0; }
        if (!strcmp(arg, "--json")) { a->json = 1; continue; }
        char flag[64];
        const char *eq = strchr(arg, '='), *value;
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (len >= sizeof flag) len = sizeof flag - 1;
        memcpy(flag, arg, len);
        flag[len] = '\0';
        if (strncmp(arg, "--", 2)) return bad("unexpected argument '%s'", arg);
        if (!range_of(flag)) return bad("unknown option '%s'", flag);
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return bad("%s needs a value (%s)", flag, range_of(flag));
        }
        int rc = take_value(a, flag, value);
        if (rc) return rc;
    }
    return 0;
}

/* Cross-flag checks and the --dataset-size form; returns 0 or 2. */
static int finish_args(eps_args *a) {
    int sized = a->have_dataset || a->have_batch || a->have_epochs;
    if (sized && (a->have_q || a->have_steps))
        return bad("give either --q and --steps or --dataset-size, --batch-size and --epochs");
    if (sized) {
        if (!a->have_dataset) return bad("missing --dataset-size (%s)", range_of("--dataset-size"));
        if (!a->have_batch) return bad("missing --batch-size (%s)", range_of("--batch-size"));
        if (!a->have_epochs) return bad("missing --epochs (%s)", range_of("--epochs"));
        if (a->batch_size > a->dataset_size)
            return bad("--batch-size must be an integer in [1, dataset size = %lld], got %lld",
                       (long long)a->dataset_size, (long long)a->batch_size);
        a->q = (double)a->batch_size / (double)a->dataset_size;
        double steps = ceil(a->epochs * (double)a->dataset_size / (double)a->batch_size);
        if (steps > 9007199254740992.0) return bad("--epochs gives more than 2^53 steps");
        a->steps = (int64_t)steps;
        a->have_q = a->have_steps = 1;
    }
    if (a->have_epsilon && a->have_target) return bad("give either --epsilon or --target-epsilon");
    if (!a->have_q)
        return bad("missing --q (sampling rate, in (0, 1]; or --dataset-size, --batch-size and "
                   "--epochs)");
    if (!a->have_steps) return bad("missing --steps (%s)", range_of("--steps"));
    if (!a->have_target && !a->have_sigma)
        return bad("missing --sigma (noise multiplier, %s)", range_of("--sigma"));
    if (!a->have_epsilon && !a->have_delta)
        return bad("missing --delta (target delta, %s)", range_of("--delta"));
    if (a->have_delta_error && a->have_delta && !(a->delta_error < a->delta))
        return bad("--delta-error must be in (0, delta = %g), got %g", a->delta, a->delta_error);
    return 0;
}

static int fail_call(void) {
    fprintf(stderr, "dprun eps: %s\n", dp_last_error());
    return 1;
}

/* JSON members: ,"key":value with the shortest digits that read back as the same double. */
static void json_num(const char *key, double v) {
    char buf[32];
    if (!isfinite(v)) {   /* JSON has no inf: say so in a string */
        printf(",\"%s\":\"%s\"", key, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
        return;
    }
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) break;
    }
    printf(",\"%s\":%s", key, buf);
}

static void json_begin(const eps_args *a, int with_sigma) {
    printf("{\"q\":");
    char buf[32];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, a->q);
        if (strtod(buf, NULL) == a->q) break;
    }
    printf("%s", buf);
    if (with_sigma) json_num("sigma", a->sigma);
    printf(",\"steps\":%lld", (long long)a->steps);
}

static void json_end(int kind) {
    if (kind == DP_ACCT_GDP) printf(",\"approximate\":true");
    printf("}\n");
}

static void print_head(const eps_args *a) {
    printf("q %.10g  steps %lld", a->q, (long long)a->steps);
    if (!a->have_target) printf("  sigma %.10g", a->sigma);
    if (a->have_epsilon) printf("  epsilon %.10g\n", a->epsilon);
    else printf("  delta %.10g\n", a->delta);
}

static int run_epsilon(const eps_args *a, int first, int last) {
    dp_mech_run run = { a->q, a->sigma, a->steps };
    double ee = a->have_eps_error ? a->eps_error : 0.01;
    double de = a->have_delta_error ? a->delta_error : a->delta / 1000;
    if (!a->json) {
        print_head(a);
        printf("%-11s %-14s %s\n", "accountant", "epsilon", "notes");
    }
    for (int k = first; k <= last; k++) {
        dp_eps_result r;
        int rc;
        if (k == DP_ACCT_RDP) rc = dp_rdp_epsilon(&r, &run, 1, a->delta, a->orders, a->n_orders);
        else if (k == DP_ACCT_PRV) rc = dp_prv_epsilon(&r, &run, 1, a->delta, ee, de);
        else rc = dp_gdp_epsilon(&r, &run, 1, a->delta);
        if (rc) return fail_call();
        if (a->json) {
            json_begin(a, 1);
            json_num("delta", a->delta);
            printf(",\"accountant\":\"%s\"", kind_names[k]);
            json_num("epsilon", r.epsilon);
            if (k == DP_ACCT_RDP) json_num("best_order", r.best_order);
            if (k == DP_ACCT_PRV) {
                json_num("eps_estimate", r.eps_estimate);
                json_num("eps_lower", r.eps_lower);
                json_num("eps_error", ee);
                json_num("delta_error", de);
            }
            json_end(k);
        } else {
            printf("%-11s %-14.8g ", kind_names[k], r.epsilon);
            if (k == DP_ACCT_RDP) printf("upper bound, optimal order %g\n", r.best_order);
            else if (k == DP_ACCT_PRV)
                printf("upper bound; estimate %.8g, lower bound %.8g\n", r.eps_estimate, r.eps_lower);
            else printf("approximate (central limit theorem)\n");
        }
    }
    return 0;
}

static int run_delta(const eps_args *a, int first, int last) {
    dp_mech_run run = { a->q, a->sigma, a->steps };
    if (!a->json) {
        print_head(a);
        printf("%-11s %s\n", "accountant", "delta");
    }
    for (int k = first; k <= last; k++) {
        double d;
        if (dp_accountant_delta(&d, (dp_accountant_kind)k, &run, 1, a->epsilon)) return fail_call();
        if (a->json) {
            json_begin(a, 1);
            json_num("epsilon", a->epsilon);
            printf(",\"accountant\":\"%s\"", kind_names[k]);
            json_num("delta", d);
            json_end(k);
        } else {
            printf("%-11s %-14.8g%s\n", kind_names[k], d,
                   k == DP_ACCT_GDP ? " approximate (central limit theorem)" : " upper bound");
        }
    }
    return 0;
}

static int run_calibrate(const eps_args *a, int first, int last) {
    double tol = a->have_tol ? a->tol : 1e-3;
    if (!a->json) {
        print_head(a);
        printf("target epsilon %.10g, tolerance %g (relative, on sigma)\n", a->target, tol);
        printf("%-11s %-14s %s\n", "accountant", "sigma", "epsilon at sigma");
    }
    for (int k = first; k <= last; k++) {
        double sigma;
        dp_eps_result r;
        int rc = dp_calibrate_sigma(&sigma, (dp_accountant_kind)k, a->q, a->steps, a->target,
                                    a->delta, tol);
        if (rc) {
            fprintf(stderr, "dprun eps: %s\n", dp_last_error());
            return rc == DP_EARG ? 2 : 1;
        }
        dp_mech_run run = { a->q, sigma, a->steps };
        if (dp_accountant_epsilon(&r, (dp_accountant_kind)k, &run, 1, a->delta)) return fail_call();
        if (a->json) {
            json_begin(a, 0);
            json_num("delta", a->delta);
            json_num("target_epsilon", a->target);
            printf(",\"accountant\":\"%s\"", kind_names[k]);
            json_num("sigma", sigma);
            json_num("epsilon", r.epsilon);
            json_num("tol", tol);
            json_end(k);
        } else {
            printf("%-11s %-14.8g %.8g%s\n", kind_names[k], sigma, r.epsilon,
                   k == DP_ACCT_GDP ? " approximate (central limit theorem)" : "");
        }
    }
    return 0;
}

int dp_cli_eps(int argc, char **argv) {
    eps_args a;
    memset(&a, 0, sizeof a);
    a.accountant = -1;
    int help = 0, rc = parse_args(&a, argc, argv, &help);
    if (!rc && help) {
        fputs(usage_text, stdout);
    } else if (!rc && !(rc = finish_args(&a))) {
        int first = a.accountant < 0 ? 0 : a.accountant;
        int last = a.accountant < 0 ? 2 : a.accountant;
        if (a.have_target) rc = run_calibrate(&a, first, last);
        else if (a.have_epsilon) rc = run_delta(&a, first, last);
        else rc = run_epsilon(&a, first, last);
    }
    free(a.orders);
    fflush(stdout);
    return rc;
}
