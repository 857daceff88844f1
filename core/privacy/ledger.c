/* ledger.c: the privacy ledger, an append-only list of runs of equal (q, sigma, clip) that the
 * optimizer extends each step. dp_ledger_step keeps only what the accountant needs; a DP-SGD
 * step recorded with dp_ledger_record also keeps its book-keeping (batch sizes, sampler, noise
 * mode, seed and generator counters), so an audit can check that no noise was drawn twice and
 * that consecutive steps used consecutive draws. The accountant reads q, sigma and steps only.
 * Inspections (reads of raw per-sample statistics) are counted. The JSON form is in
 * ledger_json.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "privacy/privacy.h"
#include "privacy/ledger.h"

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

int dp_ledger_check_clip(const char *fn, const char *what, double clip) {
    if (!(clip > 0 && isfinite(clip)))
        return dp_fail(DP_EARG, "%s: %s (clipping norm) must be finite and > 0, got %g", fn, what,
                       clip);
    return 0;
}

int dp_ledger_append(dp_ledger *l, const ledger_run *run, const char *fn) {
    if (l->n == l->cap) {
        int32_t cap = l->cap ? l->cap * 2 : 8;
        ledger_run *runs = realloc(l->runs, sizeof(ledger_run) * (size_t)cap);
        if (!runs) return dp_fail(DP_ENOMEM, "%s: out of memory for %d runs", fn, (int)cap);
        l->runs = runs;
        l->cap = cap;
    }
    l->runs[l->n++] = *run;
    return 0;
}

/* The three values every step is accounted by. */
static int check_mechanism(const char *fn, double q, double sigma, double clip) {
    int rc;
    if ((rc = dp_check_q(fn, "q", q))) return rc;
    if ((rc = dp_check_sigma(fn, "sigma", sigma))) return rc;
    return dp_ledger_check_clip(fn, "clip", clip);
}

int dp_ledger_step(dp_ledger *ledger, double q, double sigma, double clip) {
    const char *fn = "dp_ledger_step";
    int rc;
    if (!ledger) return dp_fail(DP_EARG, "%s: ledger must not be NULL", fn);
    if ((rc = check_mechanism(fn, q, sigma, clip))) return rc;
    if (ledger->n) {
        /* A detailed run is not lengthened by a step without book-keeping: its batch statistics
         * and counters would then describe only some of its steps. */
        ledger_run *last = &ledger->runs[ledger->n - 1];
        if (!last->detailed && last->q == q && last->sigma == sigma && last->clip == clip) {
            last->steps++;
            return 0;
        }
    }
    ledger_run run = { .q = q, .sigma = sigma, .clip = clip, .steps = 1 };
    return dp_ledger_append(ledger, &run, fn);
}

/* info's fields beyond the mechanism: ranges, and generators that only move forward. */
static int check_book_keeping(const char *fn, const dp_ledger_step_info *info) {
    if (info->batch_size < 0)
        return dp_fail(DP_EARG, "%s: batch_size must be >= 0 (the realised logical batch size), got %lld",
                       fn, (long long)info->batch_size);
    if (info->sampling != 0 && info->sampling != 1)
        return dp_fail(DP_EARG, "%s: sampling must be 0 (Poisson) or 1 (shuffled fixed-size), got %d",
                       fn, (int)info->sampling);
    if (info->noise_mode != DP_NOISE_REPRODUCIBLE && info->noise_mode != DP_NOISE_SECURE)
        return dp_fail(DP_EARG, "%s: noise_mode must be 0 (reproducible) or 1 (secure), got %d", fn,
                       (int)info->noise_mode);
    if (info->skipped != 0 && info->skipped != 1)
        return dp_fail(DP_EARG, "%s: skipped must be 0 (update applied) or 1 (update skipped), got %d",
                       fn, (int)info->skipped);
    if (!(info->aux_sigma >= 0) || !isfinite(info->aux_sigma))
        return dp_fail(DP_EARG, "%s: aux_sigma must be finite and >= 0 (0: no auxiliary release), "
                       "got %g", fn, info->aux_sigma);
    if (info->noise_counter_after < info->noise_counter_before)
        return dp_fail(DP_EARG, "%s: noise_counter_after (%llu) is below noise_counter_before (%llu); "
                       "a generator only moves forward", fn,
                       (unsigned long long)info->noise_counter_after,
                       (unsigned long long)info->noise_counter_before);
    if (info->sampler_counter_after < info->sampler_counter_before)
        return dp_fail(DP_EARG, "%s: sampler_counter_after (%llu) is below sampler_counter_before (%llu); "
                       "a generator only moves forward", fn,
                       (unsigned long long)info->sampler_counter_after,
                       (unsigned long long)info->sampler_counter_before);
    return 0;
}

/* Whether a step continues run r: same mechanism (auxiliary release included) and generators, and
 * its draws start where the run's stopped (so the run's counter ranges cover exactly the draws of
 * its steps). Skipped steps join runs: they spend privacy like the others. */
static int continues(const ledger_run *r, const dp_ledger_step_info *info) {
    return r->detailed && r->q == info->q && r->sigma == info->sigma && r->clip == info->clip &&
           r->aux_sigma == info->aux_sigma &&
           r->sampling == info->sampling && r->noise_mode == info->noise_mode &&
           r->noise_seed == info->noise_seed && r->noise_last == info->noise_counter_before &&
           r->sampler_last == info->sampler_counter_before;
}

int dp_ledger_record(dp_ledger *ledger, const dp_ledger_step_info *info) {
    const char *fn = "dp_ledger_record";
    int rc;
    if (!ledger || !info) return dp_fail(DP_EARG, "%s: ledger and info must not be NULL", fn);
    if ((rc = check_mechanism(fn, info->q, info->sigma, info->clip))) return rc;
    if ((rc = check_book_keeping(fn, info))) return rc;
    int64_t b = info->batch_size;
    ledger_run *last = ledger->n ? &ledger->runs[ledger->n - 1] : NULL;
    if (last && continues(last, info)) {
        if (last->batch_total > INT64_MAX - b)
            return dp_fail(DP_EARG, "%s: batch_total of run %d would overflow int64 (%lld + %lld)",
                           fn, (int)ledger->n - 1, (long long)last->batch_total, (long long)b);
        last->steps++;
        last->batch_total += b;
        if (b < last->batch_min) last->batch_min = b;
        if (b > last->batch_max) last->batch_max = b;
        last->empty_batches += b == 0;
        last->skipped_steps += info->skipped;
        last->noise_last = info->noise_counter_after;
        last->sampler_last = info->sampler_counter_after;
        return 0;
    }
    ledger_run run = {
        .q = info->q, .sigma = info->sigma, .clip = info->clip, .steps = 1, .detailed = 1,
        .sampling = info->sampling, .noise_mode = info->noise_mode,
        .batch_total = b, .batch_min = b, .batch_max = b, .empty_batches = b == 0,
        .noise_seed = info->noise_seed,
        .noise_first = info->noise_counter_before, .noise_last = info->noise_counter_after,
        .sampler_first = info->sampler_counter_before, .sampler_last = info->sampler_counter_after,
        .skipped_steps = info->skipped, .aux_sigma = info->aux_sigma,
    };
    return dp_ledger_append(ledger, &run, fn);
}

int32_t dp_ledger_num_runs(const dp_ledger *ledger) { return ledger ? ledger->n : 0; }

int64_t dp_ledger_total_steps(const dp_ledger *ledger) {
    int64_t total = 0;
    for (int32_t i = 0; ledger && i < ledger->n; i++) total += ledger->runs[i].steps;
    return total;
}

static int check_index(const char *fn, const dp_ledger *ledger, int32_t i) {
    if (i < 0 || i >= ledger->n)
        return dp_fail(DP_EINDEX, "%s: run index must be in [0, %d), got %d", fn, (int)ledger->n,
                       (int)i);
    return 0;
}

int dp_ledger_run(const dp_ledger *ledger, int32_t i, dp_mech_run *out) {
    if (!ledger || !out) return dp_fail(DP_EARG, "dp_ledger_run: ledger and out must not be NULL");
    if (check_index("dp_ledger_run", ledger, i)) return DP_EINDEX;
    out->q = ledger->runs[i].q;
    out->sigma = ledger->runs[i].sigma;
    out->steps = ledger->runs[i].steps;
    return 0;
}

int dp_ledger_run_clip(const dp_ledger *ledger, int32_t i, double *clip) {
    if (!ledger || !clip)
        return dp_fail(DP_EARG, "dp_ledger_run_clip: ledger and clip must not be NULL");
    if (check_index("dp_ledger_run_clip", ledger, i)) return DP_EINDEX;
    *clip = ledger->runs[i].clip;
    return 0;
}

int dp_ledger_run_detail(const dp_ledger *ledger, int32_t i, dp_ledger_run_info *out) {
    if (!ledger || !out)
        return dp_fail(DP_EARG, "dp_ledger_run_detail: ledger and out must not be NULL");
    if (check_index("dp_ledger_run_detail", ledger, i)) return DP_EINDEX;
    const ledger_run *r = &ledger->runs[i];
    memset(out, 0, sizeof *out);
    out->q = r->q;
    out->sigma = r->sigma;
    out->clip = r->clip;
    out->steps = r->steps;
    out->batch_total = r->batch_total;
    out->batch_min = r->batch_min;
    out->batch_max = r->batch_max;
    out->empty_batches = r->empty_batches;
    out->sampling = r->sampling;
    out->noise_mode = r->noise_mode;
    out->noise_seed = r->noise_seed;
    out->noise_counter_first = r->noise_first;
    out->noise_counter_last = r->noise_last;
    out->sampler_counter_first = r->sampler_first;
    out->sampler_counter_last = r->sampler_last;
    out->detailed = r->detailed;
    out->skipped_steps = r->skipped_steps;
    out->aux_sigma = r->aux_sigma;
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

/* ---------------------------------------------------------------- inspections */

void dp_ledger_keep_label(dp_ledger *l, const char *what) {
    size_t len = strlen(what);
    if (len > DP_LEDGER_MAX_WHAT) {
        len = DP_LEDGER_MAX_WHAT;
        /* back off over UTF-8 continuation bytes so no character is cut in half */
        while (len > 0 && ((unsigned char)what[len] & 0xC0) == 0x80) len--;
    }
    for (int32_t i = 0; i < l->n_inspected; i++)
        if (strlen(l->inspected[i]) == len && memcmp(l->inspected[i], what, len) == 0) return;
    if (l->n_inspected == DP_LEDGER_MAX_INSPECTED) return;
    memcpy(l->inspected[l->n_inspected], what, len);
    l->inspected[l->n_inspected++][len] = '\0';
}

int dp_ledger_mark_inspected(dp_ledger *ledger, const char *what) {
    const char *fn = "dp_ledger_mark_inspected";
    if (!ledger) return dp_fail(DP_EARG, "%s: ledger must not be NULL", fn);
    if (!what || !*what)
        return dp_fail(DP_EARG, "%s: what must be a non-empty string naming what was read", fn);
    ledger->inspections++;
    dp_ledger_keep_label(ledger, what);
    return 0;
}

int64_t dp_ledger_inspections(const dp_ledger *ledger) { return ledger ? ledger->inspections : 0; }
