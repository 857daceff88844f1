/* gemm_lowp.c: bf16, f16 and fp8 GEMM without a native kernel: convert the operands to f32 in
 * pooled scratch, run sgemm (so products accumulate in f32), and round each result once, to
 * nearest even, into the output dtype. Debian's OpenBLAS exports no bf16 GEMM, and oneDNN 2.6 has
 * no bf16 matmul on AVX2-only CPUs. */
#include <pthread.h>
#include <omp.h>
#ifdef __F16C__
#include <immintrin.h>
#endif
#include "gemm_impl.h"

/* The batch is converted in chunks of at most this many f32 elements (A, B and C together),
 * unless one matrix alone needs more: bounds the scratch for long batches of small matrices. */
#define CHUNK_FLOATS ((int64_t)16 << 20)
/* Conversions shorter than this stay on one thread. */
#define PARALLEL_MIN_ELEMS ((int64_t)1 << 16)

static float e4m3_table[256], e5m2_table[256];
static pthread_once_t fp8_once = PTHREAD_ONCE_INIT;

static void fp8_tables_init(void) {
    for (int i = 0; i < 256; i++) {
        e4m3_table[i] = dp_e4m3_to_f32((uint8_t)i);
        e5m2_table[i] = dp_e5m2_to_f32((uint8_t)i);
    }
}

static void to_f32(float *dst, const char *src, dp_dtype dtype, int64_t n) {
    int64_t i = 0;
    switch (dtype) {
    case DP_BF16:
        dp_bf16_to_f32_array(dst, (const uint16_t *)src, n);
        return;
    case DP_F16: {
        const uint16_t *h = (const uint16_t *)src;
#ifdef __F16C__
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
#endif
        for (; i < n; i++) dst[i] = dp_f16_to_f32(h[i]);
        return;
    }
    case DP_FP8_E4M3:
    case DP_FP8_E5M2: {
        const float *table = dtype == DP_FP8_E4M3 ? e4m3_table : e5m2_table;
        const uint8_t *q = (const uint8_t *)src;
        for (; i < n; i++) dst[i] = table[q[i]];
        return;
    }
    default:
        for (; i < n; i++) dst[i] = dp_load_f32(src, dtype, i);
        return;
    }
}

static void from_f32(char *dst, const float *src, dp_dtype dtype, int64_t n) {
    int64_t i = 0;
    switch (dtype) {
    case DP_BF16:
        dp_f32_to_bf16_array((uint16_t *)dst, src, n);
        return;
    case DP_F16: {
        uint16_t *h = (uint16_t *)dst;
#ifdef __F16C__
        /* vcvtps2ph rounds to nearest even and keeps subnormals; blocks holding a NaN go through
         * the scalar path, which writes the canonical quiet NaN like the rest of the core. */
        for (; i + 8 <= n; i += 8) {
            __m256 v = _mm256_loadu_ps(src + i);
            if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
                for (int j = 0; j < 8; j++) h[i + j] = dp_f32_to_f16(src[i + j]);
                continue;
            }
            _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
        }
#endif
        for (; i < n; i++) h[i] = dp_f32_to_f16(src[i]);
        return;
    }
    case DP_FP8_E4M3:
        for (; i < n; i++) ((uint8_t *)dst)[i] = dp_f32_to_e4m3(src[i]);
        return;
    case DP_FP8_E5M2:
        for (; i < n; i++) ((uint8_t *)dst)[i] = dp_f32_to_e5m2(src[i]);
        return;
    default:
        for (; i < n; i++) dp_store_f32(dst, dtype, i, src[i]);
        return;
    }
}

/* Pack `count` matrices of op, from batch index first, row by row into dst (ld = cols). */
static void pack_operand(float *dst, const dp_gemm_operand *op, dp_dtype dtype, int64_t first,
                         int64_t count) {
    int64_t es = dp_dtype_size(dtype), rows = op->rows, cols = op->cols, total = count * rows;
#pragma omp parallel for schedule(static) if (total * cols >= PARALLEL_MIN_ELEMS)
    for (int64_t t = 0; t < total; t++) {
        int64_t m = t / rows, r = t % rows;
        const char *src = op->data + ((first + m) * op->batch_stride + r * op->ld) * es;
        to_f32(dst + t * cols, src, dtype, cols);
    }
}

/* Contiguous conversions of n elements, split into blocks for the threads. */
static void convert_block(float *f32, char *low, dp_dtype dtype, int64_t n, int to_low) {
    const int64_t block = 1 << 14;
    int64_t blocks = (n + block - 1) / block, es = dp_dtype_size(dtype);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMS)
    for (int64_t k = 0; k < blocks; k++) {
        int64_t start = k * block, len = n - start < block ? n - start : block;
        if (to_low)
            from_f32(low + start * es, f32 + start, dtype, len);
        else
            to_f32(f32 + start, low + start * es, dtype, len);
    }
}

int dp_gemm_lowp(const dp_gemm_problem *p) {
    pthread_once(&fp8_once, fp8_tables_init);
    dp_dtype dtype = p->dtype;
    int64_t es = dp_dtype_size(dtype);
    int64_t a_elems = p->a.rows * p->a.cols, b_elems = p->b.rows * p->b.cols, c_elems = p->M * p->N;
    int a_shared = p->a.batch_stride == 0, b_shared = p->b.batch_stride == 0;
    int64_t fixed = (a_shared ? a_elems : 0) + (b_shared ? b_elems : 0);
    int64_t per = (a_shared ? 0 : a_elems) + (b_shared ? 0 : b_elems) + c_elems;
    int64_t chunk = (CHUNK_FLOATS - fixed) / per;
    if (chunk < 1) chunk = 1;
    if (chunk > p->batch) chunk = p->batch;

    int64_t a_count = a_shared ? 1 : chunk, b_count = b_shared ? 1 : chunk;
    float *A = dp_gemm_scratch_get((size_t)(a_count * a_elems) * sizeof(float));
    float *B = dp_gemm_scratch_get((size_t)(b_count * b_elems) * sizeof(float));
    float *C = dp_gemm_scratch_get((size_t)(chunk * c_elems) * sizeof(float));
    int rc = 0;
    if (!A || !B || !C) {
        rc = dp_fail(DP_ENOMEM, "gemm: no memory for the f32 copies of a %s GEMM (M %lld, N %lld, "
                     "K %lld, batch %lld)", dp_dtype_name(dtype), (long long)p->M,
                     (long long)p->N, (long long)p->K, (long long)p->batch);
        goto done;
    }
    if (a_shared) pack_operand(A, &p->a, dtype, 0, 1);
    if (b_shared) pack_operand(B, &p->b, dtype, 0, 1);
    for (int64_t first = 0; first < p->batch && !rc; first += chunk) {
        int64_t n = p->batch - first < chunk ? p->batch - first : chunk;
        if (!a_shared) pack_operand(A, &p->a, dtype, first, n);
        if (!b_shared) pack_operand(B, &p->b, dtype, first, n);
        char *out = p->out + first * c_elems * es;
        if (p->beta != 0) convert_block(C, out, dtype, n * c_elems, 0);
        dp_gemm_problem q = *p;
        q.dtype = DP_F32;
        q.batch = n;
        q.a.data = (const char *)A;
        q.a.batch_stride = a_shared ? 0 : a_elems;
        q.a.ld = p->a.cols > 1 ? p->a.cols : 1;
        q.b.data = (const char *)B;
        q.b.batch_stride = b_shared ? 0 : b_elems;
        q.b.ld = p->b.cols > 1 ? p->b.cols : 1;
        q.out = (char *)C;
        rc = dp_gemm_blas(&q);
        if (!rc) convert_block(C, out, dtype, n * c_elems, 1);
    }
done:
    dp_gemm_scratch_put(A);
    dp_gemm_scratch_put(B);
    dp_gemm_scratch_put(C);
    return rc;
}
