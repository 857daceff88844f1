/* ew_loop.h: the strided N-d loop (ew_loop.c) behind the CPU elementwise kernels (elementwise.c, unary.c).
 * Private to kernels/cpu: a loop walks same-shaped operands (operand 0 is written) in row-major
 * order, after merging dims that are contiguous for every operand, and hands out 1-d runs with
 * one element step per operand. Large loops are split between OpenMP threads. */
#ifndef DP_EW_LOOP_H
#define DP_EW_LOOP_H
#include "internal.h"

enum { DP_EW_MAX_OPS = 3, DP_EW_BLOCK = 512 };

/* Vectorise the loop that follows even at -O2: out may equal an input, but element i only ever
 * reads element i, so lanes are independent. */
#define DP_SIMD _Pragma("omp simd")

typedef struct dp_ew_loop {
    int32_t nop;                        /* operands, the written one first */
    int32_t ndim;                       /* after merging, >= 1 */
    int64_t numel;
    int64_t shape[8];
    int64_t stride[DP_EW_MAX_OPS][8];   /* in elements */
    char *data[DP_EW_MAX_OPS];
    int32_t esize[DP_EW_MAX_OPS];
} dp_ew_loop;

/* One run: ptr[k] is operand k's first element, step[k] its stride in elements, n elements. */
typedef void (*dp_ew_run_fn)(void *ctx, char *const *ptr, const int64_t *step, int64_t n);

/* Loop over ts[0]'s shape; every ts[k] must have that shape (strides may be 0). */
void dp_ew_loop_init(dp_ew_loop *loop, int32_t nop, const dp_tensor *const *ts);
/* Call fn over every element, on several threads when the loop is large. */
void dp_ew_loop_run(const dp_ew_loop *loop, dp_ew_run_fn fn, void *ctx);

/* n elements at p (dtype dt, step s elements) as f32 / f64: p itself when it already is
 * contiguous in the compute dtype, otherwise converted into buf[n]. */
const float *dp_ew_load_f32(float *buf, const char *p, dp_dtype dt, int64_t s, int64_t n);
const double *dp_ew_load_f64(double *buf, const char *p, dp_dtype dt, int64_t s, int64_t n);
/* Store n values to p (dtype dt, step s), rounding to nearest even. */
void dp_ew_store_f32(char *p, dp_dtype dt, int64_t s, const float *v, int64_t n);
void dp_ew_store_f64(char *p, dp_dtype dt, int64_t s, const double *v, int64_t n);
/* DP_EDTYPE naming the kernel unless t is a float tensor. */
int dp_ew_check_float(const char *kernel, const dp_tensor *t);

/* Float maps: out = f(in...) with the arithmetic in f32 (or f64 when out is f64). Operands of
 * other float dtypes are converted a block at a time, so f and the compute loops never see them.
 * out may be the very same tensor as an input (same data and strides), never a shifted alias. */
typedef struct dp_ew_map dp_ew_map;
struct dp_ew_map {
    int32_t op;
    double alpha, beta;
    void (*f32)(const dp_ew_map *m, float *out, const float *const *in, int64_t n);
    void (*f64)(const dp_ew_map *m, double *out, const double *const *in, int64_t n);
};
void dp_ew_map_run(const dp_ew_map *m, int32_t nop, const dp_tensor *const *ts);

#endif
