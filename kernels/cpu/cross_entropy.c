/* cross_entropy.c: CPU per-row cross-entropy of logits (N, C) against integer labels,
 * loss = logsumexp(row) - row[label] with the row maximum subtracted inside the logsumexp, and
 * its backward gloss * (softmax(row) - onehot(label)). Rows whose label is ignore_index give 0. */
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include "internal.h"
#include "cpu_kernels.h"

enum { PAR_MIN = 32768 };

static inline int64_t label_at(const dp_tensor *labels, int64_t i) {
    return labels->dtype == DP_I32 ? ((const int32_t *)labels->data)[i] : ((const int64_t *)labels->data)[i];
}

int dp_cpu_cross_entropy(dp_tensor *loss, dp_tensor *lse, const dp_tensor *logits,
                         const dp_tensor *labels, int64_t ignore_index) {
    int64_t N = logits->shape[0], C = logits->shape[1];
    int failed = 0;
    #pragma omp parallel if (N * C > PAR_MIN)
    {
        double *v = malloc(sizeof(double) * (size_t)(C ? C : 1));
        if (!v) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < N; r++) {
            if (!v) continue;
            int64_t label = label_at(labels, r);
            dp_cpu_row_load(v, logits->data, logits->dtype, r * C, 1, C);
            double m = -INFINITY, s = 0;
            for (int64_t c = 0; c < C; c++)
                if (v[c] > m) m = v[c];
            for (int64_t c = 0; c < C; c++) s += exp(v[c] - m);
            double l = m + log(s);
            dp_store_f64(lse->data, lse->dtype, r, l);
            dp_store_f64(loss->data, loss->dtype, r, label == ignore_index ? 0.0 : l - v[label]);
        }
        free(v);
    }
    if (failed) return dp_fail(DP_ENOMEM, "cross_entropy: out of memory for a row of %lld doubles", (long long)C);
    return 0;
}

int dp_cpu_cross_entropy_backward(dp_tensor *glogits, const dp_tensor *gloss,
                                  const dp_tensor *logits, const dp_tensor *lse,
                                  const dp_tensor *labels, int64_t ignore_index) {
    int64_t N = logits->shape[0], C = logits->shape[1];
    int64_t gs = gloss->ndim ? gloss->stride[0] : 0;
    int failed = 0;
    #pragma omp parallel if (N * C > PAR_MIN)
    {
        double *v = malloc(sizeof(double) * (size_t)(C ? C : 1));
        if (!v) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < N; r++) {
            if (!v) continue;
            int64_t label = label_at(labels, r);
            if (label == ignore_index) {
                for (int64_t c = 0; c < C; c++) v[c] = 0;
            } else {
                double g = dp_load_f64(gloss->data, gloss->dtype, r * gs);
                double l = dp_load_f64(lse->data, lse->dtype, r);
                dp_cpu_row_load(v, logits->data, logits->dtype, r * C, 1, C);
                for (int64_t c = 0; c < C; c++) v[c] = g * exp(v[c] - l);
                v[label] -= g;
            }
            dp_cpu_row_store(glogits->data, glogits->dtype, r * C, 1, v, C);
        }
        free(v);
    }
    if (failed)
        return dp_fail(DP_ENOMEM, "cross_entropy_backward: out of memory for a row of %lld doubles", (long long)C);
    return 0;
}
