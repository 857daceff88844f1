/* ledger.c: the privacy ledger, an append-only list of runs of equal (q, sigma, clip) that the
 * optimizer extends each step, with its JSON form for checkpoints:
 *   {"version":1,"runs":[{"q":0.01,"sigma":1.1,"clip":1,"steps":120}]}
 * Doubles are written with up to 17 significant digits, the fewest that read back bit for bit. Readers ignore
 * keys they do not know, so later versions can add fields (batch sizes, RNG counters, flags) to
 * runs or to the top level without breaking older checkpoints' readers of the same version. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "privacy/privacy.h"
#include "privacy/json.h"

typedef struct ledger_run {
    double q, sigma, clip;
    int64_t steps;
} ledger_run;

struct dp_ledger {
    int32_t n, cap;
    ledger_run *runs;
};

void dp_free(void *p) { free(p); }

dp_ledger *dp_ledger_new(void) {
    dp_ledger *l = calloc(1, sizeof(dp_ledger));
    if (!l) return dp_fail_null(DP_ENOMEM, "dp_ledger_new: out of memory");
    return l;
}

void dp_ledger_free(dp_ledger *ledger) {
    if (!ledger) return;
    free(ledger->runs);
    free(ledger);
}

static int check_clip(const char *fn, const char *what, double clip) {
    if (!(clip > 0 && isfinite(clip)))
        return dp_fail(DP_EARG, "%s: %s (clipping norm) must be finite and > 0, got %g", fn, what,
                       clip);
    return 0;
}

static int append(dp_ledger *l, double q, double sigma, double clip, int64_t steps) {
    if (l->n == l->cap) {
        int32_t cap = l->cap ? l->cap * 2 : 8;
        ledger_run *runs = realloc(l->runs, sizeof(ledger_run) * (size_t)cap);
        if (!runs) return dp_fail(DP_ENOMEM, "dp_ledger_step: out of memory for %d runs", (int)cap);
        l->runs = runs;
        l->cap = cap;
    }
    l->runs[l->n++] = (ledger_run){ q, sigma, clip, steps };
    return 0;
}

int dp_ledger_step(dp_ledger *ledger, double q, double sigma, double clip) {
    const char *fn = "dp_ledger_step";
    int rc;
    if (!ledger) return dp_fail(DP_EARG, "%s: ledger must not be NULL", fn);
    if ((rc = dp_check_q(fn, "q", q))) return rc;
    if ((rc = dp_check_sigma(fn, "sigma", sigma))) return rc;
    if ((rc = check_clip(fn, "clip", clip))) return rc;
    if (ledger->n) {
        ledger_run *last = &ledger->runs[ledger->n - 1];
        if (last->q == q && last->sigma == sigma && last->clip == clip) {
            last->steps++;
            return 0;
        }
    }
    return append(ledger, q, sigma, clip, 1);
}

int32_t dp_ledger_num_runs(const dp_ledger *ledger) { return ledger ? ledger->n : 0; }

int64_t dp_ledger_total_steps(const dp_ledger *ledger) {
    int64_t total = 0;
    for (int32_t i = 0; ledger && i < ledger->n; i++) total += ledger->runs[i].steps;
    return total;
}

int dp_ledger_run(const dp_ledger *ledger, int32_t i, dp_mech_run *out) {
    if (!ledger || !out) return dp_fail(DP_EARG, "dp_ledger_run: ledger and out must not be NULL");
    if (i < 0 || i >= ledger->n)
        return dp_fail(DP_EINDEX, "dp_ledger_run: run index must be in [0, %d), got %d",
                       (int)ledger->n, (int)i);
    out->q = ledger->runs[i].q;
    out->sigma = ledger->runs[i].sigma;
    out->steps = ledger->runs[i].steps;
    return 0;
}

int dp_ledger_run_clip(const dp_ledger *ledger, int32_t i, double *clip) {
    if (!ledger || !clip)
        return dp_fail(DP_EARG, "dp_ledger_run_clip: ledger and clip must not be NULL");
    if (i < 0 || i >= ledger->n)
        return dp_fail(DP_EINDEX, "dp_ledger_run_clip: run index must be in [0, %d), got %d",
                       (int)ledger->n, (int)i);
    *clip = ledger->runs[i].clip;
    return 0;
}

int dp_ledger_epsilon(const dp_ledger *ledger, dp_eps_result *out, dp_accountant_kind kind,
                      double delta) {
    const char *fn = "dp_ledger_epsilon";
    int rc;
    if (!ledger || !out) return dp_fail(DP_EARG, "%s: ledger and out must not be NULL", fn);
    if ((rc = dp_check_delta(fn, delta))) return rc;
    if (kind != DP_ACCT_RDP && kind != DP_ACCT_PRV && kind != DP_ACCT_GDP)
        return dp_fail(DP_EARG, "%s: kind must be 0 (rdp), 1 (prv) or 2 (gdp), got %d", fn,
                       (int)kind);
    if (ledger->n == 0) {   /* nothing released yet */
        memset(out, 0, sizeof *out);
        out->approximate = kind == DP_ACCT_GDP;
        return 0;
    }
    dp_mech_run *runs = malloc(sizeof(dp_mech_run) * (size_t)ledger->n);
    if (!runs) return dp_fail(DP_ENOMEM, "%s: out of memory", fn);
    for (int32_t i = 0; i < ledger->n; i++)
        runs[i] = (dp_mech_run){ ledger->runs[i].q, ledger->runs[i].sigma, ledger->runs[i].steps };
    rc = dp_accountant_epsilon(out, kind, runs, ledger->n, delta);
    free(runs);
    if (rc) dp_error_prefix(fn);
    return rc;
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double. */
static void format_double(char *buf, size_t size, double v) {
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

char *dp_ledger_to_json(const dp_ledger *ledger) {
    if (!ledger) return dp_fail_null(DP_EARG, "dp_ledger_to_json: ledger must not be NULL");
    size_t cap = 64 + (size_t)ledger->n * 128, len = 0;
    char *s = malloc(cap);
    if (!s) return dp_fail_null(DP_ENOMEM, "dp_ledger_to_json: out of memory");
    len += (size_t)snprintf(s + len, cap - len, "{\"version\":1,\"runs\":[");
    for (int32_t i = 0; i < ledger->n; i++) {
        const ledger_run *r = &ledger->runs[i];
        char q[32], sigma[32], clip[32];
        format_double(q, sizeof q, r->q);
        format_double(sigma, sizeof sigma, r->sigma);
        format_double(clip, sizeof clip, r->clip);
        len += (size_t)snprintf(s + len, cap - len, "%s{\"q\":%s,\"sigma\":%s,\"clip\":%s,\"steps\":%lld}",
                                i ? "," : "", q, sigma, clip, (long long)r->steps);
    }
    snprintf(s + len, cap - len, "]}");
    return s;
}

/* A number member of a run, checked; what names the range in the message. */
static int run_number(double *out, const dp_json *run, int32_t i, const char *key,
                      const char *what) {
    const dp_json *v = dp_json_get(run, key);
    if (!v)
        return dp_fail(DP_EARG, "dp_ledger_from_json: runs[%d] lacks \"%s\" (%s)", (int)i, key, what);
    if (v->type != DP_JSON_NUMBER)
        return dp_fail(DP_EARG, "dp_ledger_from_json: runs[%d].%s must be a number (%s), got %s",
                       (int)i, key, what, dp_json_type_name(v->type));
    *out = v->number;
    return 0;
}

static int read_runs(dp_ledger *l, const dp_json *root) {
    const char *fn = "dp_ledger_from_json";
    if (root->type != DP_JSON_OBJECT)
        return dp_fail(DP_EARG, "%s: expected an object at the top, got %s", fn,
                       dp_json_type_name(root->type));
    const dp_json *version = dp_json_get(root, "version");
    if (!version || version->type != DP_JSON_NUMBER || !version->is_integer || version->integer != 1)
        return dp_fail(DP_EARG, "%s: \"version\" must be the number 1 (this build reads version 1)", fn);
    const dp_json *runs = dp_json_get(root, "runs");
    if (!runs || runs->type != DP_JSON_ARRAY)
        return dp_fail(DP_EARG, "%s: \"runs\" must be an array of runs, got %s", fn,
                       runs ? dp_json_type_name(runs->type) : "nothing");
    char what[48];
    for (int32_t i = 0; i < runs->n; i++) {
        const dp_json *run = &runs->items[i];
        double q, sigma, clip;
        int rc;
        if (run->type != DP_JSON_OBJECT)
            return dp_fail(DP_EARG, "%s: runs[%d] must be an object, got %s", fn, (int)i,
                           dp_json_type_name(run->type));
        if ((rc = run_number(&q, run, i, "q", "sampling rate in (0, 1]"))) return rc;
        if ((rc = run_number(&sigma, run, i, "sigma", "noise multiplier > 0"))) return rc;
        if ((rc = run_number(&clip, run, i, "clip", "clipping norm > 0"))) return rc;
        snprintf(what, sizeof what, "runs[%d].q", (int)i);
        if ((rc = dp_check_q(fn, what, q))) return rc;
        snprintf(what, sizeof what, "runs[%d].sigma", (int)i);
        if ((rc = dp_check_sigma(fn, what, sigma))) return rc;
        snprintf(what, sizeof what, "runs[%d].clip", (int)i);
        if ((rc = check_clip(fn, what, clip))) return rc;
        const dp_json *steps = dp_json_get(run, "steps");
        if (!steps || steps->type != DP_JSON_NUMBER || !steps->is_integer || steps->integer < 1)
            return dp_fail(DP_EARG, "%s: runs[%d].steps must be an integer >= 1", fn, (int)i);
        if ((rc = append(l, q, sigma, clip, steps->integer))) return rc;
    }
    return 0;
}

dp_ledger *dp_ledger_from_json(const char *json) {
    char err[256];
    dp_json *root = dp_json_parse(json, err, sizeof err);
    if (!root) return dp_fail_null(DP_EARG, "dp_ledger_from_json: malformed JSON %s", err);
    dp_ledger *l = dp_ledger_new();
    if (l && read_runs(l, root)) {
        dp_ledger_free(l);
        l = NULL;
    }
    dp_json_free(root);
    return l;
}
