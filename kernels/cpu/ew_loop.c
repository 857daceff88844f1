/* ew_loop.c: the strided N-d loop shared by the CPU elementwise kernels (elementwise.c, unary.c):
 * dim merging, the split between OpenMP threads, block conversion between storage dtypes and the
 * f32/f64 compute buffers, and float maps built on them. */
#include <omp.h>
#include "ew_loop.h"

/* Below this many elements a loop stays on one thread: forking costs more than it saves. */
enum { PARALLEL_MIN = 32768 };

/* ---------------------------------------------------------------- the strided loop */

void dp_ew_loop_init(dp_ew_loop *loop, int32_t nop, const dp_tensor *const *ts) {
    const dp_tensor *o = ts[0];
    loop->nop = nop;
    loop->numel = dp_tensor_numel(o);
    for (int k = 0; k < nop; k++) {
        loop->data[k] = (char *)ts[k]->data;
        loop->esize[k] = dp_dtype_size(ts[k]->dtype);
    }
    /* Size-1 dims carry no stride; a dim merges into the one before it when every operand steps
     * over it exactly (outer stride = inner stride * inner size). */
    int n = 0;
    for (int d = 0; d < o->ndim; d++) {
        if (o->shape[d] == 1) continue;
        int merge = n > 0;
        for (int k = 0; k < nop && merge; k++)
            merge = loop->stride[k][n - 1] == ts[k]->stride[d] * o->shape[d];
        if (merge) {
            loop->shape[n - 1] *= o->shape[d];
            for (int k = 0; k < nop; k++) loop->stride[k][n - 1] = ts[k]->stride[d];
            continue;
        }
        loop->shape[n] = o->shape[d];
        for (int k = 0; k < nop; k++) loop->stride[k][n] = ts[k]->stride[d];
        n++;
    }
    if (n == 0) {
        loop->shape[0] = 1;
        for (int k = 0; k < nop; k++) loop->stride[k][0] = 0;
        n = 1;
    }
    loop->ndim = n;
}

/* Elements [begin, end) in row-major order, one run per (partial) innermost row. */
static void run_range(const dp_ew_loop *loop, dp_ew_run_fn fn, void *ctx, int64_t begin,
                      int64_t end) {
    int last = loop->ndim - 1, nop = loop->nop;
    int64_t idx[8], rem = begin, step[DP_EW_MAX_OPS];
    for (int d = last; d >= 0; d--) {
        idx[d] = rem % loop->shape[d];
        rem /= loop->shape[d];
    }
    for (int k = 0; k < nop; k++) step[k] = loop->stride[k][last];
    while (begin < end) {
        char *ptr[DP_EW_MAX_OPS];
        for (int k = 0; k < nop; k++) {
            int64_t off = 0;
            for (int d = 0; d <= last; d++) off += idx[d] * loop->stride[k][d];
            ptr[k] = loop->data[k] + off * loop->esize[k];
        }
        int64_t n = loop->shape[last] - idx[last];
        if (n > end - begin) n = end - begin;
        fn(ctx, ptr, step, n);
        begin += n;
        idx[last] += n;
        for (int d = last; d > 0 && idx[d] == loop->shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
}

void dp_ew_loop_run(const dp_ew_loop *loop, dp_ew_run_fn fn, void *ctx) {
    int64_t numel = loop->numel;
    if (numel == 0) return;
    int64_t threads = omp_get_max_threads();
    if (threads > numel / (PARALLEL_MIN / 2)) threads = numel / (PARALLEL_MIN / 2);
    if (numel < PARALLEL_MIN || threads < 2) {
        run_range(loop, fn, ctx, 0, numel);
        return;
    }
    int64_t chunk = numel / threads, extra = numel % threads;
#pragma omp parallel for num_threads((int)threads) schedule(static)
    for (int64_t t = 0; t < threads; t++) {
        int64_t begin = t * chunk + (t < extra ? t : extra);
        run_range(loop, fn, ctx, begin, begin + chunk + (t < extra));
    }
}

/* ---------------------------------------------------------------- conversion to and from blocks */

static inline float bf16_bits_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* n elements at p (dtype dt, step s) as f32: p itself when it already is contiguous f32,
 * otherwise converted into buf. */
const float *dp_ew_load_f32(float *buf, const char *p, dp_dtype dt, int64_t s, int64_t n) {
    switch (dt) {
    case DP_F32: {
        const float *x = (const float *)p;
        if (s == 1) return x;
        for (int64_t i = 0; i < n; i++) buf[i] = x[i * s];
        break;
    }
    case DP_F64: {
        const double *x = (const double *)p;
        for (int64_t i = 0; i < n; i++) buf[i] = (float)x[i * s];
        break;
    }
    case DP_BF16: {
        const uint16_t *x = (const uint16_t *)p;
        if (s == 1) dp_bf16_to_f32_array(buf, x, n);
        else for (int64_t i = 0; i < n; i++) buf[i] = bf16_bits_to_f32(x[i * s]);
        break;
    }
    default:
        for (int64_t i = 0; i < n; i++) buf[i] = dp_load_f32(p, dt, i * s);
        break;
    }
    return buf;
}

/* Store n f32 values to p (dtype dt, step s), rounding to nearest even. */
void dp_ew_store_f32(char *p, dp_dtype dt, int64_t s, const float *v, int64_t n) {
    switch (dt) {
    case DP_F32: {
        float *o = (float *)p;
        for (int64_t i = 0; i < n; i++) o[i * s] = v[i];
        break;
    }
    case DP_F64: {
        double *o = (double *)p;
        for (int64_t i = 0; i < n; i++) o[i * s] = v[i];
        break;
    }
    case DP_BF16: {
        uint16_t *o = (uint16_t *)p;
        if (s == 1) dp_f32_to_bf16_array(o, v, n);
        else for (int64_t i = 0; i < n; i++) o[i * s] = dp_f32_to_bf16(v[i]);
        break;
    }
    case DP_F16: {
        uint16_t *o = (uint16_t *)p;
        for (int64_t i = 0; i < n; i++) o[i * s] = dp_f32_to_f16(v[i]);
        break;
    }
    default:
        for (int64_t i = 0; i < n; i++) dp_store_f32(p, dt, i * s, v[i]);
        break;
    }
}

const double *dp_ew_load_f64(double *buf, const char *p, dp_dtype dt, int64_t s, int64_t n) {
    switch (dt) {
    case DP_F64: {
        const double *x = (const double *)p;
        if (s == 1) return x;
        for (int64_t i = 0; i < n; i++) buf[i] = x[i * s];
        break;
    }
    case DP_F32: {
        const float *x = (const float *)p;
        for (int64_t i = 0; i < n; i++) buf[i] = x[i * s];
        break;
    }
    default:
        for (int64_t i = 0; i < n; i++) buf[i] = dp_load_f64(p, dt, i * s);
        break;
    }
    return buf;
}

void dp_ew_store_f64(char *p, dp_dtype dt, int64_t s, const double *v, int64_t n) {
    switch (dt) {
    case DP_F64: {
        double *o = (double *)p;
        for (int64_t i = 0; i < n; i++) o[i * s] = v[i];
        break;
    }
    case DP_F32: {
        float *o = (float *)p;
        for (int64_t i = 0; i < n; i++) o[i * s] = (float)v[i];
        break;
    }
    default:
        for (int64_t i = 0; i < n; i++) dp_store_f64(p, dt, i * s, v[i]);
        break;
    }
}

/* ---------------------------------------------------------------- float maps */

typedef struct {
    const dp_ew_map *map;
    int32_t nop;
    dp_dtype dtype[DP_EW_MAX_OPS];
    int32_t esize[DP_EW_MAX_OPS];
} map_ctx;

static void map_run_f32(void *vctx, char *const *p, const int64_t *s, int64_t n) {
    const map_ctx *c = vctx;
    float buf[DP_EW_MAX_OPS][DP_EW_BLOCK];
    int direct = 1;
    for (int k = 0; k < c->nop; k++) direct &= c->dtype[k] == DP_F32 && s[k] == 1;
    /* All operands contiguous f32: one call over the whole run, no copies. */
    int64_t block = direct ? n : DP_EW_BLOCK;
    for (int64_t i = 0; i < n; i += block) {
        int64_t m = n - i < block ? n - i : block;
        const float *in[DP_EW_MAX_OPS - 1] = { 0 };
        for (int k = 1; k < c->nop; k++)
            in[k - 1] = dp_ew_load_f32(buf[k], p[k] + i * s[k] * c->esize[k], c->dtype[k], s[k], m);
        char *o = p[0] + i * s[0] * c->esize[0];
        int out_direct = c->dtype[0] == DP_F32 && s[0] == 1;
        float *dst = out_direct ? (float *)o : buf[0];
        c->map->f32(c->map, dst, in, m);
        if (!out_direct) dp_ew_store_f32(o, c->dtype[0], s[0], dst, m);
    }
}

static void map_run_f64(void *vctx, char *const *p, const int64_t *s, int64_t n) {
    const map_ctx *c = vctx;
    double buf[DP_EW_MAX_OPS][DP_EW_BLOCK];
    int direct = 1;
    for (int k = 0; k < c->nop; k++) direct &= c->dtype[k] == DP_F64 && s[k] == 1;
    int64_t block = direct ? n : DP_EW_BLOCK;
    for (int64_t i = 0; i < n; i += block) {
        int64_t m = n - i < block ? n - i : block;
        const double *in[DP_EW_MAX_OPS - 1] = { 0 };
        for (int k = 1; k < c->nop; k++)
            in[k - 1] = dp_ew_load_f64(buf[k], p[k] + i * s[k] * c->esize[k], c->dtype[k], s[k], m);
        char *o = p[0] + i * s[0] * c->esize[0];
        int out_direct = c->dtype[0] == DP_F64 && s[0] == 1;
        double *dst = out_direct ? (double *)o : buf[0];
        c->map->f64(c->map, dst, in, m);
        if (!out_direct) dp_ew_store_f64(o, c->dtype[0], s[0], dst, m);
    }
}

void dp_ew_map_run(const dp_ew_map *m, int32_t nop, const dp_tensor *const *ts) {
    dp_ew_loop loop;
    dp_ew_loop_init(&loop, nop, ts);
    map_ctx c = { .map = m, .nop = nop };
    for (int k = 0; k < nop; k++) {
        c.dtype[k] = ts[k]->dtype;
        c.esize[k] = loop.esize[k];
    }
    dp_ew_loop_run(&loop, ts[0]->dtype == DP_F64 ? map_run_f64 : map_run_f32, &c);
}


int dp_ew_check_float(const char *kernel, const dp_tensor *t) {
    if (!dp_dtype_is_float(t->dtype))
        return dp_fail(DP_EDTYPE, "cpu %s: float tensors only, got %s", kernel, dp_tensor_desc(t));
    return 0;
}
