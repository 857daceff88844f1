/* reduce.c: CPU sum / mean / max over any set of dims of a strided tensor, argmax along one dim,
 * and the row load/store helpers the softmax, layer norm and cross-entropy kernels share.
 *
 * Sums accumulate in double for every float dtype, f32 included, so they need no compensated
 * summation; bf16, f16 and fp8 load through dp_load_f32. Max propagates NaN (a NaN anywhere in a
 * slice makes its max NaN, and argmax then points at the first NaN). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "internal.h"
#include "cpu_kernels.h"
#include "reduce_geometry.h"

/* Below this many elements a kernel runs on one thread: the fork costs more than it saves. */
enum { PAR_MIN = 32768, COL_CHUNK = 128 };

static inline double load_d(const void *p, dp_dtype t, int64_t i) {
    switch (t) {
    case DP_F32: return ((const float *)p)[i];
    case DP_F64: return ((const double *)p)[i];
    default: return dp_load_f32(p, t, i);
    }
}

static inline void store_d(void *p, dp_dtype t, int64_t i, double v) {
    switch (t) {
    case DP_F32: ((float *)p)[i] = (float)v; break;
    case DP_F64: ((double *)p)[i] = v; break;
    default: dp_store_f32(p, t, i, (float)v); break;
    }
}

void dp_cpu_row_load(double *dst, const void *base, dp_dtype dtype, int64_t off, int64_t stride,
                     int64_t n) {
    if (dtype == DP_F32 && stride == 1) {
        const float *p = (const float *)base + off;
        for (int64_t i = 0; i < n; i++) dst[i] = p[i];
    } else if (dtype == DP_F64 && stride == 1) {
        memcpy(dst, (const double *)base + off, sizeof(double) * (size_t)n);
    } else {
        for (int64_t i = 0; i < n; i++) dst[i] = load_d(base, dtype, off + i * stride);
    }
}

void dp_cpu_row_store(void *base, dp_dtype dtype, int64_t off, int64_t stride, const double *src,
                      int64_t n) {
    if (dtype == DP_F32 && stride == 1) {
        float *p = (float *)base + off;
        for (int64_t i = 0; i < n; i++) p[i] = (float)src[i];
    } else if (dtype == DP_F64 && stride == 1) {
        memcpy((double *)base + off, src, sizeof(double) * (size_t)n);
    } else {
        for (int64_t i = 0; i < n; i++) store_d(base, dtype, off + i * stride, src[i]);
    }
}

/* ---------------------------------------------------------------- geometry (reduce_geometry.h) */

/* x offset of the kept element with row-major index o. */
static int64_t kept_offset(const dp_red_geom *g, int64_t o) {
    int64_t off = 0;
    for (int d = g->nk - 1; d >= 0; d--) {
        off += (o % g->ks[d]) * g->kst[d];
        o /= g->ks[d];
    }
    return off;
}

/* ---------------------------------------------------------------- runs along one dim */

static double run_sum(const void *p, dp_dtype t, int64_t off, int64_t s, int64_t n) {
    if (t == DP_F32 && s == 1) {
        /* Four chains hide the latency of the double adds. */
        const float *f = (const float *)p + off;
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        int64_t i = 0;
        for (; i + 4 <= n; i += 4) { a0 += f[i]; a1 += f[i + 1]; a2 += f[i + 2]; a3 += f[i + 3]; }
        for (; i < n; i++) a0 += f[i];
        return (a0 + a1) + (a2 + a3);
    }
    double acc = 0;
    if (t == DP_F32) {
        const float *f = (const float *)p + off;
        for (int64_t i = 0; i < n; i++) acc += f[i * s];
    } else if (t == DP_F64) {
        const double *f = (const double *)p + off;
        for (int64_t i = 0; i < n; i++) acc += f[i * s];
    } else {
        for (int64_t i = 0; i < n; i++) acc += dp_load_f32(p, t, off + i * s);
    }
    return acc;
}

static inline double max_nan(double acc, double v) { return (v > acc || v != v) ? v : acc; }

static double run_max(double acc, const void *p, dp_dtype t, int64_t off, int64_t s, int64_t n) {
    for (int64_t i = 0; i < n; i++) acc = max_nan(acc, load_d(p, t, off + i * s));
    return acc;
}

/* Sum or max over the reduced elements with row-major indices r0..r1-1, from x offset base. */
static double red_partial(const dp_red_geom *g, const dp_tensor *x, int64_t base, int64_t r0, int64_t r1,
                          int is_max) {
    int nr = g->nr, last = nr - 1;
    int64_t idx[8], rem = r0, off = base;
    if (r0 >= r1) return is_max ? -INFINITY : 0.0;
    for (int d = last; d >= 0; d--) {
        idx[d] = rem % g->rs[d];
        rem /= g->rs[d];
        off += idx[d] * g->rst[d];
    }
    double acc = is_max ? -INFINITY : 0.0;
    int64_t len = g->rs[last], s = g->rst[last];
    for (int64_t r = r0; r < r1;) {
        int64_t n = len - idx[last];
        if (n > r1 - r) n = r1 - r;
        if (is_max) acc = run_max(acc, x->data, x->dtype, off, s, n);
        else acc += run_sum(x->data, x->dtype, off, s, n);
        r += n;
        off += n * s;
        idx[last] += n;
        for (int d = last; d > 0 && idx[d] == g->rs[d]; d--) {
            off += g->rst[d - 1] - g->rs[d] * g->rst[d];
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
    return acc;
}

static double finish(double acc, dp_redop op, int64_t rn) {
    return op == DP_RED_MEAN ? acc / (double)rn : acc;
}

/* ---------------------------------------------------------------- strategies */

/* The innermost kept dim is unit-stride (e.g. summing the rows of (N, C) into (C)): walk the
 * reduced elements outside and a chunk of columns inside, so loads stay contiguous. */
static void reduce_columns(dp_tensor *out, const dp_tensor *x, const dp_red_geom *g, dp_redop op) {
    int is_max = op == DP_RED_MAX;
    int64_t C = g->ks[g->nk - 1], rows = g->kn / C;
    int64_t chunks = (C + COL_CHUNK - 1) / COL_CHUNK, items = rows * chunks;
    int nr = g->nr;
    #pragma omp parallel for schedule(static) if (g->kn * g->rn > PAR_MIN && items > 1)
    for (int64_t it = 0; it < items; it++) {
        int64_t row = it / chunks, c0 = (it % chunks) * COL_CHUNK;
        int64_t cn = C - c0 < COL_CHUNK ? C - c0 : COL_CHUNK;
        int64_t base = kept_offset(g, row * C) + c0;
        double acc[COL_CHUNK];
        for (int64_t c = 0; c < cn; c++) acc[c] = is_max ? -INFINITY : 0.0;
        int64_t idx[8] = {0}, roff = 0;
        for (int64_t r = 0; r < g->rn; r++) {
            int64_t off = base + roff;
            if (is_max) {
                for (int64_t c = 0; c < cn; c++) acc[c] = max_nan(acc[c], load_d(x->data, x->dtype, off + c));
            } else if (x->dtype == DP_F32) {
                const float *f = (const float *)x->data + off;
                for (int64_t c = 0; c < cn; c++) acc[c] += f[c];
            } else if (x->dtype == DP_F64) {
                const double *f = (const double *)x->data + off;
                for (int64_t c = 0; c < cn; c++) acc[c] += f[c];
            } else {
                for (int64_t c = 0; c < cn; c++) acc[c] += dp_load_f32(x->data, x->dtype, off + c);
            }
            for (int d = nr - 1; d >= 0; d--) {
                roff += g->rst[d];
                if (++idx[d] < g->rs[d]) break;
                roff -= g->rs[d] * g->rst[d];
                idx[d] = 0;
            }
        }
        for (int64_t c = 0; c < cn; c++)
            store_d(out->data, out->dtype, row * C + c0 + c, finish(acc[c], op, g->rn));
    }
}

/* Each output reduces its own slice; when there are few outputs and long slices, the threads
 * share each slice instead. */
static int reduce_slices(dp_tensor *out, const dp_tensor *x, const dp_red_geom *g, dp_redop op) {
    int is_max = op == DP_RED_MAX;
    int nt = omp_get_max_threads();
    if (g->kn >= 4 * nt || g->kn * g->rn <= PAR_MIN || nt == 1) {
        #pragma omp parallel for schedule(static) if (g->kn * g->rn > PAR_MIN)
        for (int64_t o = 0; o < g->kn; o++) {
            double acc = red_partial(g, x, kept_offset(g, o), 0, g->rn, is_max);
            store_d(out->data, out->dtype, o, finish(acc, op, g->rn));
        }
        return 0;
    }
    double *part = malloc(sizeof(double) * (size_t)nt);
    if (!part) return dp_fail(DP_ENOMEM, "reduce: out of memory for %d partial results", nt);
    for (int64_t o = 0; o < g->kn; o++) {
        int64_t base = kept_offset(g, o);
        for (int i = 0; i < nt; i++) part[i] = is_max ? -INFINITY : 0.0;
        #pragma omp parallel num_threads(nt)
        {
            int tid = omp_get_thread_num(), nth = omp_get_num_threads();
            int64_t r0 = g->rn * tid / nth, r1 = g->rn * (tid + 1) / nth;
            part[tid] = red_partial(g, x, base, r0, r1, is_max);
        }
        double acc = is_max ? -INFINITY : 0.0;
        for (int i = 0; i < nt; i++) acc = is_max ? max_nan(acc, part[i]) : acc + part[i];
        store_d(out->data, out->dtype, o, finish(acc, op, g->rn));
    }
    free(part);
    return 0;
}

int dp_cpu_reduce(dp_tensor *out, const dp_tensor *x, int32_t ndims, const int32_t *dims,
                  dp_redop op) {
    if (!dp_dtype_is_float(x->dtype))
        return dp_fail(DP_EDTYPE, "reduce: cpu kernel needs a float tensor, got %s", dp_tensor_desc(x));
    int reduced[8] = {0};
    for (int i = 0; i < ndims; i++) reduced[dims[i]] = 1;
    dp_red_geom g;
    dp_red_geom_build(&g, x, reduced);
    if (g.kn == 0) return 0;
    if (g.rst[g.nr - 1] != 1 && g.kst[g.nk - 1] == 1 && g.ks[g.nk - 1] > 1) {
        reduce_columns(out, x, &g, op);
        return 0;
    }
    return reduce_slices(out, x, &g, op);
}

/* ---------------------------------------------------------------- argmax */

static inline double load_any(const void *p, dp_dtype t, int64_t i) {
    switch (t) {
    case DP_F32: return ((const float *)p)[i];
    case DP_F64: return ((const double *)p)[i];
    case DP_I32: return ((const int32_t *)p)[i];
    case DP_U8: return ((const uint8_t *)p)[i];
    default: return dp_load_f32(p, t, i);
    }
}

/* Index of the first maximum of n elements s apart from off; the first NaN wins. */
static int64_t run_argmax(const void *p, dp_dtype t, int64_t off, int64_t s, int64_t n) {
    int64_t best_i = 0;
    if (n <= 0) return 0;
    if (t == DP_I64) {
        const int64_t *q = (const int64_t *)p + off;
        int64_t best = q[0];
        for (int64_t i = 1; i < n; i++)
            if (q[i * s] > best) { best = q[i * s]; best_i = i; }
        return best_i;
    }
    double best = load_any(p, t, off);
    if (best != best) return 0;
    for (int64_t i = 1; i < n; i++) {
        double v = load_any(p, t, off + i * s);
        if (v != v) return i;
        if (v > best) { best = v; best_i = i; }
    }
    return best_i;
}

int dp_cpu_argmax(dp_tensor *out, const dp_tensor *x, int32_t dim) {
    int64_t len = x->ndim ? x->shape[dim] : 1, s = x->ndim ? x->stride[dim] : 0;
    int reduced[8] = {0};
    if (x->ndim) reduced[dim] = 1;
    dp_red_geom g;
    dp_red_geom_build(&g, x, reduced);
    int64_t *o = (int64_t *)out->data;
    #pragma omp parallel for schedule(static) if (g.kn * len > PAR_MIN)
    for (int64_t i = 0; i < g.kn; i++) o[i] = run_argmax(x->data, x->dtype, kept_offset(&g, i), s, len);
    return 0;
}
