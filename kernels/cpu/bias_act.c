/* bias_act.c: the linear epilogue on the CPU, pre = x + bias and y = act(pre) (gelu, relu, tanh)
 * in one pass over contiguous rows, split between OpenMP threads like the elementwise loops.
 * Arithmetic and rounding are those of elementwise.c's add and unary.c's act (f32 for every float
 * dtype but f64, which computes in double), so y is bit for bit unary(act, binary(add, x, bias)). */
#include <math.h>
#include <omp.h>
#include "cpu_kernels.h"
#include "ew_loop.h"

#define INV_SQRT2 0.70710678118654752440

/* Below this many elements one thread does it all (as in ew_loop.c). */
enum { PARALLEL_MIN = 32768, BLOCK = DP_EW_BLOCK };

typedef struct {
    dp_tensor *y, *pre;
    const dp_tensor *x, *bias;
    dp_unop act;
    dp_dtype dt;
    int64_t N, esize, bstride;
} job;

/* The activations exactly as unary_f32 / unary_f64 write them (same expressions, same libm). */
static void act_f32(dp_unop act, float *o, const float *x, int64_t n) {
    switch (act) {
    case DP_UN_TANH: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = tanhf(x[i]); break;
    case DP_UN_RELU:
        DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = (x[i] > 0.0f || x[i] != x[i]) ? x[i] : 0.0f;
        break;
    default:   /* DP_UN_GELU */
        for (int64_t i = 0; i < n; i++) o[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)INV_SQRT2));
        break;
    }
}

static void act_f64(dp_unop act, double *o, const double *x, int64_t n) {
    switch (act) {
    case DP_UN_TANH: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = tanh(x[i]); break;
    case DP_UN_RELU:
        DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = (x[i] > 0.0 || x[i] != x[i]) ? x[i] : 0.0;
        break;
    default:
        DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = 0.5 * x[i] * (1.0 + erf(x[i] * INV_SQRT2));
        break;
    }
}

/* m elements from flat index i, all in one row (column c): load, add, store pre, round, act,
 * store y. x is read before pre or y (either may be x itself) is written. */
static void segment_f32(const job *j, int64_t i, int64_t c, int64_t m) {
    float xb[BLOCK], bb[BLOCK], pb[BLOCK], yb[BLOCK];
    unsigned char scratch[BLOCK * sizeof(double)];
    char *yp = (char *)j->y->data + i * j->esize;
    char *pp = j->pre ? (char *)j->pre->data + i * j->esize : NULL;
    const float *p = dp_ew_load_f32(xb, (const char *)j->x->data + i * j->esize, j->dt, 1, m);
    if (j->bias) {
        const float *b = dp_ew_load_f32(bb, (const char *)j->bias->data + c * j->bstride * j->esize,
                                        j->dt, j->bstride, m);
        DP_SIMD for (int64_t k = 0; k < m; k++) pb[k] = p[k] + b[k];
        p = pb;
        /* The act reads pre as binary would have stored it: rounded to the dtype. */
        if (pp) {
            dp_ew_store_f32(pp, j->dt, 1, pb, m);
            p = dp_ew_load_f32(pb, pp, j->dt, 1, m);
        } else if (j->dt != DP_F32) {
            dp_ew_store_f32((char *)scratch, j->dt, 1, pb, m);
            p = dp_ew_load_f32(pb, (const char *)scratch, j->dt, 1, m);
        }
    } else if (pp) {
        dp_ew_store_f32(pp, j->dt, 1, p, m);
    }
    act_f32(j->act, yb, p, m);
    dp_ew_store_f32(yp, j->dt, 1, yb, m);
}

static void segment_f64(const job *j, int64_t i, int64_t c, int64_t m) {
    double xb[BLOCK], bb[BLOCK], pb[BLOCK], yb[BLOCK];
    char *yp = (char *)j->y->data + i * j->esize;
    char *pp = j->pre ? (char *)j->pre->data + i * j->esize : NULL;
    const double *p = dp_ew_load_f64(xb, (const char *)j->x->data + i * j->esize, j->dt, 1, m);
    if (j->bias) {
        const double *b = dp_ew_load_f64(bb, (const char *)j->bias->data + c * j->bstride * j->esize,
                                         j->dt, j->bstride, m);
        DP_SIMD for (int64_t k = 0; k < m; k++) pb[k] = p[k] + b[k];
        p = pb;
    }
    if (pp) dp_ew_store_f64(pp, j->dt, 1, p, m);
    act_f64(j->act, yb, p, m);
    dp_ew_store_f64(yp, j->dt, 1, yb, m);
}

/* Flat elements [begin, end) in segments that stay inside one row and one block. */
static void run_range(const job *j, int64_t begin, int64_t end) {
    while (begin < end) {
        int64_t c = begin % j->N, m = j->N - c;
        if (m > end - begin) m = end - begin;
        if (m > BLOCK) m = BLOCK;
        if (j->dt == DP_F64) segment_f64(j, begin, c, m);
        else segment_f32(j, begin, c, m);
        begin += m;
    }
}

int dp_cpu_bias_act(dp_tensor *y, dp_tensor *pre, const dp_tensor *x, const dp_tensor *bias, dp_unop act) {
    if (act != DP_UN_GELU && act != DP_UN_RELU && act != DP_UN_TANH)
        return dp_fail(DP_EARG, "cpu bias_act: act must be gelu, relu or tanh, got op %d", (int)act);
    if (dp_ew_check_float("bias_act", y) || dp_ew_check_float("bias_act", x)) return DP_EDTYPE;
    if (x->dtype != y->dtype || (pre && pre->dtype != x->dtype) || (bias && bias->dtype != x->dtype))
        return dp_fail(DP_EDTYPE, "cpu bias_act: x, y, pre and bias must share a dtype (x is %s, y is %s)",
                       dp_tensor_desc(x), dp_tensor_desc(y));
    int64_t numel = dp_tensor_numel(x);
    int64_t N = x->ndim > 0 ? x->shape[x->ndim - 1] : 1;
    if (numel == 0 || N == 0) return 0;
    job j = { .y = y, .pre = pre, .x = x, .bias = bias, .act = act, .dt = x->dtype, .N = N,
              .esize = dp_dtype_size(x->dtype), .bstride = bias ? bias->stride[0] : 0 };
    int64_t threads = omp_get_max_threads();
    if (threads > numel / (PARALLEL_MIN / 2)) threads = numel / (PARALLEL_MIN / 2);
    if (numel < PARALLEL_MIN || threads < 2) {
        run_range(&j, 0, numel);
        return 0;
    }
    int64_t chunk = numel / threads, extra = numel % threads;
#pragma omp parallel for num_threads((int)threads) schedule(static)
    for (int64_t t = 0; t < threads; t++) {
        int64_t begin = t * chunk + (t < extra ? t : extra);
        run_range(&j, begin, begin + chunk + (t < extra));
    }
    return 0;
}
