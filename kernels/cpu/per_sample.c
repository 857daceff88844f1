/* per_sample.c: the CPU kernels behind the per-sample-gradient entries of dp_ops (gram, ghost_norm,
 * scale_rows, row_sums, row_sq_norms, embedding_sq_norms), with which the DP engine (core/dpsgd)
 * gets each example's gradient norm without materialising per-example gradients ("ghost
 * clipping": Goodfellow 2015, arXiv:1510.01799; Li et al. 2022, arXiv:2110.05679) and scales each
 * example's gradient by its clipping factor.
 *
 * Every sum accumulates in double whatever the input dtype. Each example (or row) is summed by one
 * thread in an order fixed by the shapes alone, so results do not depend on the thread count. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <cblas.h>
#include "internal.h"
#include "cpu_kernels.h"
#include "per_sample_checks.h"

/* Below PAR_MIN elements a kernel runs on one thread: the fork costs more than it saves. COLS
 * doubles are the conversion buffer of the dtypes without a fast path. row_sums keeps a strip of
 * STRIP columns in a stack accumulator (8 KiB, inside L1): strips this wide read each example's
 * rows whole, which ran 2-3x faster at (32, 128, 1024) than 256-column strips. scale_rows cuts the
 * flat range into SCALE_CHUNK elements so that one example still splits over the threads. */
enum { PAR_MIN = 32768, COLS = 256, STRIP = 1024, SCALE_CHUNK = 16384 };

static inline double bf16_value(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;   /* bf16 is the top half of an f32: widening is exact */
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline double load_d(const void *p, dp_dtype t, int64_t i) {
    switch (t) {
    case DP_F32: return ((const float *)p)[i];
    case DP_F64: return ((const double *)p)[i];
    case DP_BF16: return bf16_value(((const uint16_t *)p)[i]);
    default: return dp_load_f64(p, t, i);
    }
}

/* dst[0..n) = elements off.. of a contiguous float tensor, as doubles. */
static void load_row(double *dst, const void *base, dp_dtype t, int64_t off, int64_t n) {
    if (t == DP_F32) {
        const float *p = (const float *)base + off;
        #pragma omp simd
        for (int64_t i = 0; i < n; i++) dst[i] = p[i];
    } else if (t == DP_F64) {
        memcpy(dst, (const double *)base + off, sizeof(double) * (size_t)n);
    } else if (t == DP_BF16) {
        const uint16_t *p = (const uint16_t *)base + off;
        #pragma omp simd
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_value(p[i]);
    } else {
        for (int64_t i = 0; i < n; i++) dst[i] = dp_load_f64(base, t, off + i);
    }
}

static int is_f32_or_f64(dp_dtype t) { return t == DP_F32 || t == DP_F64; }

/* ---------------------------------------------------------------- gram */

/* Upper triangle of c (T, T) = a a^T for a (T, K), both row-major: syrk does half the multiplies
 * of the GEMM. */
static void syrk_one(dp_dtype t, int T, int K, const char *a, char *c) {
    if (t == DP_F64)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, T, K, 1.0, (const double *)a, K, 0.0,
                    (double *)c, T);
    else
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, T, K, 1.0f, (const float *)a, K, 0.0f,
                    (float *)c, T);
}

int dp_cpu_gram(dp_tensor *out, const dp_tensor *x) {
    int rc = dp_ps_check_gram(out, x);
    if (rc) return rc;
    int64_t B = x->shape[0], T = x->shape[1], K = x->shape[2];
    if (T > INT_MAX || K > INT_MAX)
        return dp_fail(DP_EUNSUPPORTED, "gram: T %lld or K %lld exceeds BLAS's 32-bit ints",
                       (long long)T, (long long)K);
    if (B == 0 || T == 0) return 0;
    int64_t es = dp_dtype_size(x->dtype);
    if (K == 0) {
        memset(out->data, 0, (size_t)(B * T * T * es));
        return 0;
    }
    const char *a = x->data;
    char *c = out->data;
    /* One single-threaded syrk per example on each OpenMP thread beats handing each small syrk
     * to OpenBLAS's threads: on 2 cores, 32 x (128x256) took 1.6-2.1 ms against 2.3-3.7 ms, and
     * 32 x (128x1024) 5.6-6.9 ms against 9.5-13 ms (OpenBLAS barely splits a syrk this small).
     * Dynamic scheduling lets one thread take over when the other is preempted. */
    int threads = openblas_get_num_threads();
    if (threads > 1 && B >= 2) {
        /* openblas_set_num_threads is global: another host thread's BLAS call running right now
         * would briefly get one thread too (as in gemm.c). */
        openblas_set_num_threads(1);
        #pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++)
            syrk_one(x->dtype, (int)T, (int)K, a + b * T * K * es, c + b * T * T * es);
        openblas_set_num_threads(threads);
    } else {
        for (int64_t b = 0; b < B; b++)
            syrk_one(x->dtype, (int)T, (int)K, a + b * T * K * es, c + b * T * T * es);
    }
    return 0;
}

/* ---------------------------------------------------------------- ghost_norm */

/* Off-diagonal part of row i (columns i+1..T-1) of one example's upper triangles a, g: adds
 * sum a*g, sum ra*|g| and sum |a|*rg to acc[0..3). The f32 and f64 versions differ only in the
 * element type; reading f32 directly saves a conversion pass (a third of the time). */
static inline void tri_row_f32(double *acc, const float *a, const float *g, const double *ra,
                               const double *rg, int64_t i, int64_t T) {
    double s_sq = 0, s_ba = 0, s_bg = 0;
    #pragma omp simd reduction(+ : s_sq, s_ba, s_bg)
    for (int64_t s = i + 1; s < T; s++) {
        double av = a[s], gv = g[s];
        s_sq += av * gv;
        s_ba += ra[s] * fabs(gv);
        s_bg += fabs(av) * rg[s];
    }
    acc[0] = s_sq, acc[1] = s_ba, acc[2] = s_bg;
}

static inline void tri_row_f64(double *acc, const double *a, const double *g, const double *ra,
                               const double *rg, int64_t i, int64_t T) {
    double s_sq = 0, s_ba = 0, s_bg = 0;
    #pragma omp simd reduction(+ : s_sq, s_ba, s_bg)
    for (int64_t s = i + 1; s < T; s++) {
        s_sq += a[s] * g[s];
        s_ba += ra[s] * fabs(g[s]);
        s_bg += fabs(a[s]) * rg[s];
    }
    acc[0] = s_sq, acc[1] = s_ba, acc[2] = s_bg;
}

/* One example. A, G: upper triangles of its Gram matrices (T, T), row-major, f32 or f64 (t). r
 * holds 2 T doubles. The sums over all (t, s) run over the upper triangle, doubling off-diagonal
 * terms. */
static void ghost_one(double *sq_out, double *bound_out, const char *A, const char *G, dp_dtype t,
                      int64_t T, double ka, double kg, double *r) {
    double *ra = r, *rg = r + T;
    for (int64_t i = 0; i < T; i++) {
        ra[i] = sqrt(load_d(A, t, i * T + i));
        rg[i] = sqrt(load_d(G, t, i * T + i));
    }
    double sq = 0, ba = 0, bg = 0;   /* bound = ka * ba + kg * bg */
    for (int64_t i = 0; i < T; i++) {
        double off[3], a = load_d(A, t, i * T + i), g = load_d(G, t, i * T + i);
        if (t == DP_F64)
            tri_row_f64(off, (const double *)A + i * T, (const double *)G + i * T, ra, rg, i, T);
        else
            tri_row_f32(off, (const float *)A + i * T, (const float *)G + i * T, ra, rg, i, T);
        sq += a * g + 2 * off[0];
        ba += ra[i] * (ra[i] * fabs(g) + 2 * off[1]);
        bg += rg[i] * (fabs(a) * rg[i] + 2 * off[2]);
    }
    *sq_out = sq;
    *bound_out = ka * ba + kg * bg;
}

int dp_cpu_ghost_norm(dp_tensor *sq, dp_tensor *bound, const dp_tensor *ga, const dp_tensor *gg,
                      double ka, double kg) {
    int64_t B = 0, T = 0;
    int rc = dp_ps_check_ghost_norm(sq, bound, ga, gg, &B, &T);
    if (rc) return rc;
    int nth = B * T * T > PAR_MIN ? omp_get_max_threads() : 1;
    if (nth > B) nth = (int)(B ? B : 1);
    double *buf = malloc(sizeof(double) * (size_t)(2 * T * nth + 1));
    if (!buf) return dp_fail(DP_ENOMEM, "ghost_norm: out of memory for %d x %lld doubles", nth,
                             (long long)(2 * T));
    int64_t es = dp_dtype_size(ga->dtype);
    const char *A = ga->data, *G = gg->data;
    double *sqv = sq->data, *bv = bound->data;
    #pragma omp parallel for num_threads(nth) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        ghost_one(sqv + b, bv + b, A + b * T * T * es, G + b * T * T * es, ga->dtype, T, ka, kg,
                  buf + 2 * T * omp_get_thread_num());
    free(buf);
    return 0;
}

/* ---------------------------------------------------------------- scale_rows */

/* out[oo + i] = f * x[i] for i < n, rounded once into out's dtype; f == 0 writes exact zeros. */
static void scale_run(void *out, dp_dtype ot, int64_t oo, const void *x, dp_dtype xt, int64_t n,
                      double f) {
    if (f == 0 && is_f32_or_f64(ot)) {
        memset((char *)out + oo * dp_dtype_size(ot), 0, (size_t)(n * dp_dtype_size(ot)));
    } else if (ot == DP_F32 && xt == DP_F32) {
        float *o = (float *)out + oo;
        const float *p = (const float *)x + oo;
        #pragma omp simd
        for (int64_t i = 0; i < n; i++) o[i] = (float)(f * p[i]);
    } else if (ot == DP_F32 && xt == DP_BF16) {
        float *o = (float *)out + oo;
        const uint16_t *p = (const uint16_t *)x + oo;
        #pragma omp simd
        for (int64_t i = 0; i < n; i++) o[i] = (float)(f * bf16_value(p[i]));
    } else if (ot == DP_F64 && xt == DP_F64) {
        double *o = (double *)out + oo;
        const double *p = (const double *)x + oo;
        #pragma omp simd
        for (int64_t i = 0; i < n; i++) o[i] = f * p[i];
    } else if (ot == DP_F64) {
        double *o = (double *)out + oo;
        for (int64_t i = 0; i < n; i++) o[i] = f * load_d(x, xt, oo + i);
    } else {
        for (int64_t i = 0; i < n; i++)
            dp_store_f64(out, ot, oo + i, f == 0 ? 0.0 : f * load_d(x, xt, oo + i));
    }
}

int dp_cpu_scale_rows(dp_tensor *out, const dp_tensor *x, const dp_tensor *factor) {
    int64_t B = 1, total = 0;
    int rc = dp_ps_check_scale_rows(out, x, factor, &B, &total);
    if (rc) return rc;
    if (total == 0) return 0;
    int64_t n = total / B, chunks = (total + SCALE_CHUNK - 1) / SCALE_CHUNK;
    const double *f = factor->data;
    /* Fixed chunks of the flat range, cut again at example boundaries, so B = 1 splits too. */
    #pragma omp parallel for schedule(static) if (total > PAR_MIN)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i = c * SCALE_CHUNK, end = i + SCALE_CHUNK < total ? i + SCALE_CHUNK : total;
        while (i < end) {
            int64_t b = i / n, stop = (b + 1) * n < end ? (b + 1) * n : end;
            scale_run(out->data, out->dtype, i, x->data, x->dtype, stop - i, f[b]);
            i = stop;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- row_sums */

static inline double load_stat(const dp_tensor *t, int64_t i) {
    return t->dtype == DP_F64 ? ((const double *)t->data)[i] : load_d(t->data, t->dtype, i);
}

/* acc[0..w) += sum over T rows of g (or g * xhat) at columns c0..c0+w of example b. gb, xb: two
 * strips of w doubles for dtypes without a fast path. */
static void row_sums_strip(double *acc, const dp_tensor *g, const dp_tensor *x,
                           const dp_tensor *mean, const dp_tensor *rstd, int64_t b, int64_t T,
                           int64_t N, int64_t c0, int64_t w, double *gb, double *xb) {
    int fast = g->dtype == DP_F32 && (!x || x->dtype == DP_F32);
    for (int64_t t = 0; t < T; t++) {
        int64_t off = (b * T + t) * N + c0;
        if (fast && !x) {
            const float *gp = (const float *)g->data + off;
            #pragma omp simd
            for (int64_t j = 0; j < w; j++) acc[j] += gp[j];
            continue;
        }
        if (fast) {
            const float *gp = (const float *)g->data + off, *xp = (const float *)x->data + off;
            double m = load_stat(mean, b * T + t), r = load_stat(rstd, b * T + t);
            #pragma omp simd
            for (int64_t j = 0; j < w; j++) acc[j] += gp[j] * ((xp[j] - m) * r);
            continue;
        }
        load_row(gb, g->data, g->dtype, off, w);
        if (!x) {
            #pragma omp simd
            for (int64_t j = 0; j < w; j++) acc[j] += gb[j];
        } else {
            double m = load_stat(mean, b * T + t), r = load_stat(rstd, b * T + t);
            load_row(xb, x->data, x->dtype, off, w);
            #pragma omp simd
            for (int64_t j = 0; j < w; j++) acc[j] += gb[j] * ((xb[j] - m) * r);
        }
    }
}

int dp_cpu_row_sums(dp_tensor *out, const dp_tensor *g, const dp_tensor *x, const dp_tensor *mean,
                    const dp_tensor *rstd) {
    int64_t B = 0, T = 0, N = 0;
    int rc = dp_ps_check_row_sums(out, g, x, mean, rstd, &B, &T, &N);
    if (rc) return rc;
    int64_t strips = (N + STRIP - 1) / STRIP, tasks = B * strips;
    double *o = out->data;
    #pragma omp parallel for schedule(static) if (B * T * N > PAR_MIN)
    for (int64_t k = 0; k < tasks; k++) {
        double acc[STRIP], gb[STRIP], xb[STRIP];
        int64_t b = k / strips, c0 = (k % strips) * STRIP, w = N - c0 < STRIP ? N - c0 : STRIP;
        for (int64_t j = 0; j < w; j++) acc[j] = 0;
        row_sums_strip(acc, g, x, mean, rstd, b, T, N, c0, w, gb, xb);
        memcpy(o + b * N + c0, acc, sizeof(double) * (size_t)w);
    }
    return 0;
}

/* ---------------------------------------------------------------- row_sq_norms */

/* Sum of squares of n elements from off, in double. buf: COLS doubles for the generic path. */
static double sq_norm(const void *base, dp_dtype t, int64_t off, int64_t n, double *buf) {
    double s = 0;
    if (t == DP_F32) {
        const float *p = (const float *)base + off;
        #pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; i++) s += (double)p[i] * p[i];
    } else if (t == DP_F64) {
        const double *p = (const double *)base + off;
        #pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; i++) s += p[i] * p[i];
    } else {
        for (int64_t i0 = 0; i0 < n; i0 += COLS) {
            int64_t w = n - i0 < COLS ? n - i0 : COLS;
            load_row(buf, base, t, off + i0, w);
            for (int64_t i = 0; i < w; i++) s += buf[i] * buf[i];
        }
    }
    return s;
}

int dp_cpu_row_sq_norms(dp_tensor *out, const dp_tensor *x) {
    int64_t R = 0, N = 0;
    int rc = dp_ps_check_row_sq_norms(out, x, &R, &N);
    if (rc) return rc;
    int64_t total = R * N;
    double *o = out->data;
    #pragma omp parallel for schedule(static) if (total > PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        double buf[COLS];
        o[r] = sq_norm(x->data, x->dtype, r * N, N, buf);
    }
    return 0;
}

/* ---------------------------------------------------------------- embedding_sq_norms */

static inline int64_t index_at(const dp_tensor *idx, int64_t i) {
    return idx->dtype == DP_I32 ? ((const int32_t *)idx->data)[i] : ((const int64_t *)idx->data)[i];
}

static inline uint64_t hash_index(int64_t v) {
    uint64_t h = (uint64_t)v * 0x9E3779B97F4A7C15ULL;   /* Fibonacci hashing: high bits mix */
    return h ^ (h >> 29);
}

/* acc[0..D) += row of g at off; buf: COLS doubles for the generic path. */
static void add_row(double *acc, const void *g, dp_dtype t, int64_t off, int64_t D, double *buf) {
    if (t == DP_F32) {
        const float *p = (const float *)g + off;
        #pragma omp simd
        for (int64_t d = 0; d < D; d++) acc[d] += p[d];
    } else {
        for (int64_t d0 = 0; d0 < D; d0 += COLS) {
            int64_t w = D - d0 < COLS ? D - d0 : COLS;
            load_row(buf, g, t, off + d0, w);
            #pragma omp simd
            for (int64_t d = 0; d < w; d++) acc[d0 + d] += buf[d];
        }
    }
}

/* Per-thread scratch of embedding_sq_norms for T positions, D columns and a table of cap slots. */
typedef struct {
    int32_t *slot;    /* cap: first position holding a value, -1 when empty */
    int32_t *next;    /* T: next position with the same value, -1 at the end */
    int32_t *last;    /* T: for a first position, the last one of its group so far */
    double *acc;      /* D */
    double buf[COLS];
} emb_scratch;

/* One example: group the T positions by index value with an open-addressing hash table (linked in
 * position order, so sums run in a fixed order), then add each group's squared row sum. */
static double embedding_one(const dp_tensor *idx, const dp_tensor *g, int64_t b, int64_t T,
                            int64_t D, int64_t cap, emb_scratch *s) {
    for (int64_t i = 0; i < cap; i++) s->slot[i] = -1;
    for (int64_t t = 0; t < T; t++) {
        int64_t v = index_at(idx, b * T + t);
        uint64_t h = hash_index(v) & (uint64_t)(cap - 1);
        while (s->slot[h] >= 0 && index_at(idx, b * T + s->slot[h]) != v)
            h = (h + 1) & (uint64_t)(cap - 1);
        s->next[t] = -1;
        if (s->slot[h] < 0) {
            s->slot[h] = (int32_t)t;
            s->last[t] = (int32_t)t;
        } else {
            int32_t first = s->slot[h];
            s->next[s->last[first]] = (int32_t)t;
            s->last[first] = (int32_t)t;
            s->last[t] = -1;   /* not a first position */
        }
    }
    double total = 0;
    for (int64_t t = 0; t < T; t++) {
        if (s->last[t] < 0) continue;
        int64_t off = (b * T + t) * D;
        if (s->next[t] < 0) {
            total += sq_norm(g->data, g->dtype, off, D, s->buf);
            continue;
        }
        for (int64_t d = 0; d < D; d++) s->acc[d] = 0;
        for (int64_t u = t; u >= 0; u = s->next[u])
            add_row(s->acc, g->data, g->dtype, (b * T + u) * D, D, s->buf);
        total += sq_norm(s->acc, DP_F64, 0, D, s->buf);
    }
    return total;
}

int dp_cpu_embedding_sq_norms(dp_tensor *out, const dp_tensor *idx, const dp_tensor *g) {
    int64_t B = 0, T = 0, D = 0;
    int rc = dp_ps_check_embedding_sq_norms(out, idx, g, &B, &T, &D);
    if (rc) return rc;
    int64_t cap = 1;
    while (cap < 2 * T) cap *= 2;   /* load factor at most 1/2 keeps probes short */
    int nth = B * T * D > PAR_MIN ? omp_get_max_threads() : 1;
    if (nth > B) nth = (int)(B ? B : 1);
    size_t ints = (size_t)(cap + 2 * T), per = sizeof(int32_t) * ints + sizeof(double) * (size_t)D;
    per = (per + 63) & ~(size_t)63;
    char *mem = malloc(per * (size_t)nth + 64);
    emb_scratch *sc = malloc(sizeof(emb_scratch) * (size_t)nth);
    if (!mem || !sc) {
        free(mem);
        free(sc);
        return dp_fail(DP_ENOMEM, "embedding_sq_norms: out of memory for %d x %zu bytes of scratch",
                       nth, per);
    }
    for (int i = 0; i < nth; i++) {
        char *p = mem + per * (size_t)i;
        sc[i].acc = (double *)p;
        sc[i].slot = (int32_t *)(p + sizeof(double) * (size_t)D);
        sc[i].next = sc[i].slot + cap;
        sc[i].last = sc[i].next + T;
    }
    double *o = out->data;
    #pragma omp parallel for num_threads(nth) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        o[b] = embedding_one(idx, g, b, T, D, cap, &sc[omp_get_thread_num()]);
    free(sc);
    free(mem);
    return 0;
}
