/* embedding.c: CPU row gather (embedding lookup) and row scatter-add (its backward, and
 * index_add). The scatter splits the D columns among threads, each walking every index, so
 * repeated indices never race and the additions happen in index order. */
#include <string.h>
#include <omp.h>
#include "internal.h"
#include "cpu_kernels.h"

enum { PAR_MIN = 32768, MIN_COLS_PER_THREAD = 32 };

static inline int64_t index_at(const dp_tensor *idx, int64_t i) {
    return idx->dtype == DP_I32 ? ((const int32_t *)idx->data)[i] : ((const int64_t *)idx->data)[i];
}

int dp_cpu_gather_rows(dp_tensor *out, const dp_tensor *weight, const dp_tensor *indices) {
    int64_t n = dp_tensor_numel(indices), D = weight->shape[1];
    size_t row = (size_t)D * (size_t)dp_dtype_size(weight->dtype);
    char *o = out->data;
    const char *w = weight->data;
    #pragma omp parallel for schedule(static) if (n * D > PAR_MIN)
    for (int64_t i = 0; i < n; i++) memcpy(o + (size_t)i * row, w + (size_t)index_at(indices, i) * row, row);
    return 0;
}

/* dst[0..n) += src[0..n), elements of dtype t. */
static void add_run(void *dst, int64_t doff, const void *src, int64_t soff, dp_dtype t, int64_t n) {
    if (t == DP_F32) {
        float *d = (float *)dst + doff;
        const float *s = (const float *)src + soff;
        for (int64_t i = 0; i < n; i++) d[i] += s[i];
    } else if (t == DP_F64) {
        double *d = (double *)dst + doff;
        const double *s = (const double *)src + soff;
        for (int64_t i = 0; i < n; i++) d[i] += s[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            dp_store_f32(dst, t, doff + i, dp_load_f32(dst, t, doff + i) + dp_load_f32(src, t, soff + i));
    }
}

int dp_cpu_scatter_add_rows(dp_tensor *dst, const dp_tensor *indices, const dp_tensor *src) {
    int64_t n = dp_tensor_numel(indices), D = dst->shape[1];
    int nt = 1;
    if (n * D > PAR_MIN) {
        nt = omp_get_max_threads();
        if (nt > D / MIN_COLS_PER_THREAD) nt = (int)(D / MIN_COLS_PER_THREAD);
        if (nt < 1) nt = 1;
    }
    #pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        int64_t c0 = D * tid / nth, c1 = D * (tid + 1) / nth;
        for (int64_t i = 0; i < n && c1 > c0; i++)
            add_run(dst->data, index_at(indices, i) * D + c0, src->data, i * D + c0, dst->dtype, c1 - c0);
    }
    return 0;
}
