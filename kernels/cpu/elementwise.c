/* elementwise.c: CPU kernels for fill, copy, binary ops, axpy and masked_fill over the shared
 * strided loop (ew_loop.h). Contiguous f32 operands are used in place and the compute loops are
 * plain enough for the compiler to vectorise; other dtypes and strides are converted to f32 (f64
 * for f64) a block at a time. */
#include "cpu_kernels.h"
#include "ew_loop.h"

/* ---------------------------------------------------------------- binary ops and axpy */

static void binary_f32(const dp_ew_map *m, float *o, const float *const *in, int64_t n) {
    const float *a = in[0], *b = in[1];
    switch ((dp_binop)m->op) {
    case DP_BIN_ADD: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = a[i] + b[i]; break;
    case DP_BIN_SUB: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = a[i] - b[i]; break;
    case DP_BIN_MUL: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = a[i] * b[i]; break;
    case DP_BIN_DIV: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = a[i] / b[i]; break;
    /* Ties and a NaN in a pick a; a NaN in b loses the comparison and is picked. */
    case DP_BIN_MAX:
        DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = (a[i] >= b[i] || a[i] != a[i]) ? a[i] : b[i];
        break;
    }
}

static void binary_f64(const dp_ew_map *m, double *o, const double *const *in, int64_t n) {
    const double *a = in[0], *b = in[1];
    switch ((dp_binop)m->op) {
    case DP_BIN_ADD: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = a[i] + b[i]; break;
    case DP_BIN_SUB: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = a[i] - b[i]; break;
    case DP_BIN_MUL: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = a[i] * b[i]; break;
    case DP_BIN_DIV: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = a[i] / b[i]; break;
    case DP_BIN_MAX:
        DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = (a[i] >= b[i] || a[i] != a[i]) ? a[i] : b[i];
        break;
    }
}

int dp_cpu_binary(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, dp_binop op) {
    if (dp_ew_check_float("binary", out)) return DP_EDTYPE;
    if ((unsigned)op > DP_BIN_MAX) return dp_fail(DP_EARG, "cpu binary: unknown op %d", (int)op);
    dp_ew_map m = { .op = op, .f32 = binary_f32, .f64 = binary_f64 };
    const dp_tensor *ts[3] = { out, a, b };
    dp_ew_map_run(&m, 3, ts);
    return 0;
}

static void axpy_f32(const dp_ew_map *m, float *o, const float *const *in, int64_t n) {
    const float *d = in[0], *x = in[1];
    float alpha = (float)m->alpha;
    DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = d[i] + alpha * x[i];
}

static void axpy_f64(const dp_ew_map *m, double *o, const double *const *in, int64_t n) {
    const double *d = in[0], *x = in[1];
    double alpha = m->alpha;
    DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = d[i] + alpha * x[i];
}

int dp_cpu_axpy(dp_tensor *dst, double alpha, const dp_tensor *src) {
    if (dp_ew_check_float("axpy", dst) || dp_ew_check_float("axpy", src)) return DP_EDTYPE;
    dp_ew_map m = { .alpha = alpha, .f32 = axpy_f32, .f64 = axpy_f64 };
    /* dst is both the output and the first input (the very same tensor, which maps allow). */
    const dp_tensor *ts[3] = { dst, dst, src };
    dp_ew_map_run(&m, 3, ts);
    return 0;
}

/* ---------------------------------------------------------------- fill */

typedef struct {
    unsigned char bits[8];   /* the value, already in the dtype's layout */
    int32_t esize;
} fill_ctx;

static void fill_run(void *vctx, char *const *p, const int64_t *step, int64_t n) {
    const fill_ctx *c = vctx;
    int64_t s = step[0];
    switch (c->esize) {
    case 1: {
        uint8_t *o = (uint8_t *)p[0];
        if (s == 1) memset(o, c->bits[0], (size_t)n);
        else for (int64_t i = 0; i < n; i++) o[i * s] = c->bits[0];
        break;
    }
    case 2: {
        uint16_t v, *o = (uint16_t *)p[0];
        memcpy(&v, c->bits, sizeof v);
        if (s == 1) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = v;
        else for (int64_t i = 0; i < n; i++) o[i * s] = v;
        break;
    }
    case 4: {
        uint32_t v, *o = (uint32_t *)p[0];
        memcpy(&v, c->bits, sizeof v);
        if (s == 1) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = v;
        else for (int64_t i = 0; i < n; i++) o[i * s] = v;
        break;
    }
    default: {
        uint64_t v, *o = (uint64_t *)p[0];
        memcpy(&v, c->bits, sizeof v);
        if (s == 1) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = v;
        else for (int64_t i = 0; i < n; i++) o[i * s] = v;
        break;
    }
    }
}

int dp_cpu_fill(dp_tensor *out, double value) {
    fill_ctx c;
    memset(&c, 0, sizeof c);
    c.esize = dp_dtype_size(out->dtype);
    /* Convert once (one rounding from double), then replicate the bits. */
    dp_store_f64(c.bits, out->dtype, 0, value);
    dp_ew_loop loop;
    const dp_tensor *ts[1] = { out };
    dp_ew_loop_init(&loop, 1, ts);
    dp_ew_loop_run(&loop, fill_run, &c);
    return 0;
}

/* ---------------------------------------------------------------- copy */

typedef struct {
    dp_dtype out_dtype, src_dtype;
    int32_t out_size, src_size;
} copy_ctx;

/* Same dtype: move the bits. */
static void copy_same_run(void *vctx, char *const *p, const int64_t *s, int64_t n) {
    const copy_ctx *c = vctx;
    if (s[0] == 1 && s[1] == 1) {
        memmove(p[0], p[1], (size_t)n * (size_t)c->out_size);
        return;
    }
    switch (c->out_size) {
    case 1: {
        uint8_t *o = (uint8_t *)p[0];
        const uint8_t *x = (const uint8_t *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = x[i * s[1]];
        break;
    }
    case 2: {
        uint16_t *o = (uint16_t *)p[0];
        const uint16_t *x = (const uint16_t *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = x[i * s[1]];
        break;
    }
    case 4: {
        uint32_t *o = (uint32_t *)p[0];
        const uint32_t *x = (const uint32_t *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = x[i * s[1]];
        break;
    }
    default: {
        uint64_t *o = (uint64_t *)p[0];
        const uint64_t *x = (const uint64_t *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = x[i * s[1]];
        break;
    }
    }
}

/* Between f32 and the narrower floats: every value is exact in f32, so one rounding on store. */
static void copy_f32_run(void *vctx, char *const *p, const int64_t *s, int64_t n) {
    const copy_ctx *c = vctx;
    float buf[DP_EW_BLOCK];
    int out_direct = c->out_dtype == DP_F32 && s[0] == 1;
    int src_direct = c->src_dtype == DP_F32 && s[1] == 1;
    int64_t block = out_direct || src_direct ? n : DP_EW_BLOCK;
    for (int64_t i = 0; i < n; i += block) {
        int64_t m = n - i < block ? n - i : block;
        char *o = p[0] + i * s[0] * c->out_size;
        /* A contiguous f32 destination receives the converted values directly. */
        float *dst = out_direct ? (float *)o : buf;
        const float *v = dp_ew_load_f32(dst, p[1] + i * s[1] * c->src_size, c->src_dtype, s[1], m);
        if (v != (const float *)o) dp_ew_store_f32(o, c->out_dtype, s[0], v, m);
    }
}

/* Everything else (f64, integers) through f64. */
static void copy_f64_run(void *vctx, char *const *p, const int64_t *s, int64_t n) {
    const copy_ctx *c = vctx;
    double buf[DP_EW_BLOCK];
    int out_direct = c->out_dtype == DP_F64 && s[0] == 1;
    int src_direct = c->src_dtype == DP_F64 && s[1] == 1;
    int64_t block = out_direct || src_direct ? n : DP_EW_BLOCK;
    for (int64_t i = 0; i < n; i += block) {
        int64_t m = n - i < block ? n - i : block;
        char *o = p[0] + i * s[0] * c->out_size;
        double *dst = out_direct ? (double *)o : buf;
        const double *v = dp_ew_load_f64(dst, p[1] + i * s[1] * c->src_size, c->src_dtype, s[1], m);
        if (v != (const double *)o) dp_ew_store_f64(o, c->out_dtype, s[0], v, m);
    }
}

static int is_f32_family(dp_dtype dt) {
    return dt == DP_F32 || dt == DP_BF16 || dt == DP_F16 || dt == DP_FP8_E4M3 || dt == DP_FP8_E5M2;
}

int dp_cpu_copy(dp_tensor *out, const dp_tensor *src) {
    copy_ctx c = { out->dtype, src->dtype, dp_dtype_size(out->dtype), dp_dtype_size(src->dtype) };
    dp_ew_run_fn fn = out->dtype == src->dtype ? copy_same_run
                    : is_f32_family(out->dtype) && is_f32_family(src->dtype) ? copy_f32_run
                    : copy_f64_run;
    dp_ew_loop loop;
    const dp_tensor *ts[2] = { out, src };
    dp_ew_loop_init(&loop, 2, ts);
    dp_ew_loop_run(&loop, fn, &c);
    return 0;
}

/* ---------------------------------------------------------------- masked_fill */

/* out and x share a dtype, so this selects bits: value's where the mask is set, else x's. */
static void masked_run(void *vctx, char *const *p, const int64_t *s, int64_t n) {
    const fill_ctx *c = vctx;
    const uint8_t *mask = (const uint8_t *)p[2];
    int unit = s[0] == 1 && s[1] == 1 && s[2] == 1;
    switch (c->esize) {
    case 1: {
        uint8_t *o = (uint8_t *)p[0], v = c->bits[0];
        const uint8_t *x = (const uint8_t *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = mask[i * s[2]] ? v : x[i * s[1]];
        break;
    }
    case 2: {
        uint16_t *o = (uint16_t *)p[0], v;
        const uint16_t *x = (const uint16_t *)p[1];
        memcpy(&v, c->bits, sizeof v);
        if (unit) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = mask[i] ? v : x[i];
        else for (int64_t i = 0; i < n; i++) o[i * s[0]] = mask[i * s[2]] ? v : x[i * s[1]];
        break;
    }
    case 4: {
        uint32_t *o = (uint32_t *)p[0], v;
        const uint32_t *x = (const uint32_t *)p[1];
        memcpy(&v, c->bits, sizeof v);
        if (unit) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = mask[i] ? v : x[i];
        else for (int64_t i = 0; i < n; i++) o[i * s[0]] = mask[i * s[2]] ? v : x[i * s[1]];
        break;
    }
    default: {
        uint64_t *o = (uint64_t *)p[0], v;
        const uint64_t *x = (const uint64_t *)p[1];
        memcpy(&v, c->bits, sizeof v);
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = mask[i * s[2]] ? v : x[i * s[1]];
        break;
    }
    }
}

int dp_cpu_masked_fill(dp_tensor *out, const dp_tensor *x, const dp_tensor *mask, double value) {
    if (out->dtype != x->dtype)
        return dp_fail(DP_EDTYPE, "cpu masked_fill: out %s and x %s differ in dtype", dp_tensor_desc(out),
                       dp_tensor_desc(x));
    if (mask->dtype != DP_U8)
        return dp_fail(DP_EDTYPE, "cpu masked_fill: mask must be u8, got %s", dp_tensor_desc(mask));
    fill_ctx c;
    memset(&c, 0, sizeof c);
    c.esize = dp_dtype_size(out->dtype);
    dp_store_f64(c.bits, out->dtype, 0, value);
    dp_ew_loop loop;
    const dp_tensor *ts[3] = { out, x, mask };
    dp_ew_loop_init(&loop, 3, ts);
    dp_ew_loop_run(&loop, masked_run, &c);
    return 0;
}
