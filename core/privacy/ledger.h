/* ledger.h: the privacy ledger's layout, shared by its book-keeping (ledger.c) and its JSON form
 * (ledger_json.c). Internal to core/privacy. */
#ifndef DP_PRIVACY_LEDGER_H
#define DP_PRIVACY_LEDGER_H
#include <stdint.h>
#include "dp.h"

/* Distinct inspection labels kept (more are counted, not listed), and their longest length in
 * bytes (longer labels are cut at a UTF-8 character boundary). */
enum { DP_LEDGER_MAX_INSPECTED = 32, DP_LEDGER_MAX_WHAT = 128 };

typedef struct ledger_run {
    double q, sigma, clip;
    int64_t steps;
    /* book-keeping of dp_ledger_record; all zero when detailed is 0 */
    int32_t detailed;
    int32_t sampling, noise_mode;
    int64_t batch_total, batch_min, batch_max, empty_batches;
    uint64_t noise_seed;
    uint64_t noise_first, noise_last, sampler_first, sampler_last;
    int64_t skipped_steps;   /* steps recorded with skipped = 1 (updates not applied) */
    double aux_sigma;        /* noise std of the released overflow count; equal within a run */
} ledger_run;

struct dp_ledger {
    int32_t n, cap;
    ledger_run *runs;
    int64_t inspections;
    int32_t n_inspected;
    char inspected[DP_LEDGER_MAX_INSPECTED][DP_LEDGER_MAX_WHAT + 1];
};

/* Append a run (copied); fn names the caller in the out-of-memory message. */
int dp_ledger_append(dp_ledger *l, const ledger_run *run, const char *fn);
/* 0, or DP_EARG "<fn>: <what> (clipping norm) must be finite and > 0, got <clip>". */
int dp_ledger_check_clip(const char *fn, const char *what, double clip);
/* Keep `what` among the distinct inspection labels, cut to DP_LEDGER_MAX_WHAT bytes; nothing
 * when it is already there or the list is full. */
void dp_ledger_keep_label(dp_ledger *l, const char *what);

#endif
