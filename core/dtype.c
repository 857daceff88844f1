/* dtype.c: the one dtype table (name, size, kind), name lookup, scalar and array float casts, and
 * element load/store for buffers of any dtype. The rounding itself lives in dtype_cast.h, shared
 * with the CUDA kernels. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include "internal.h"
#include "dtype_cast.h"
#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

typedef struct {
    const char *name;
    int32_t size;
    int32_t is_float;
} dtype_info;

static const dtype_info dtype_table[DP_NUM_DTYPES] = {
    [DP_F32] = {"f32", 4, 1},
    [DP_F64] = {"f64", 8, 1},
    [DP_BF16] = {"bf16", 2, 1},
    [DP_F16] = {"f16", 2, 1},
    [DP_FP8_E4M3] = {"fp8_e4m3", 1, 1},
    [DP_FP8_E5M2] = {"fp8_e5m2", 1, 1},
    [DP_I32] = {"i32", 4, 0},
    [DP_I64] = {"i64", 8, 0},
    [DP_U8] = {"u8", 1, 0},
};

static const struct {
    const char *alias;
    dp_dtype dtype;
} dtype_aliases[] = {
    {"float32", DP_F32}, {"float", DP_F32}, {"fp32", DP_F32},
    {"float64", DP_F64}, {"double", DP_F64}, {"fp64", DP_F64},
    {"bfloat16", DP_BF16},
    {"float16", DP_F16}, {"half", DP_F16}, {"fp16", DP_F16},
    {"e4m3", DP_FP8_E4M3}, {"fp8e4m3", DP_FP8_E4M3}, {"float8_e4m3", DP_FP8_E4M3},
    {"float8_e4m3fn", DP_FP8_E4M3},
    {"e5m2", DP_FP8_E5M2}, {"fp8e5m2", DP_FP8_E5M2}, {"float8_e5m2", DP_FP8_E5M2},
    {"int32", DP_I32}, {"int", DP_I32},
    {"int64", DP_I64}, {"long", DP_I64},
    {"uint8", DP_U8}, {"bool", DP_U8}, {"byte", DP_U8},
};

static int dtype_valid(dp_dtype dtype) { return (unsigned)dtype < DP_NUM_DTYPES; }

const char *dp_dtype_name(dp_dtype dtype) {
    return dtype_valid(dtype) ? dtype_table[dtype].name : "invalid";
}

int32_t dp_dtype_size(dp_dtype dtype) { return dtype_valid(dtype) ? dtype_table[dtype].size : 0; }

int32_t dp_dtype_is_float(dp_dtype dtype) {
    return dtype_valid(dtype) ? dtype_table[dtype].is_float : 0;
}

/* Names compare case-insensitively. */
int32_t dp_dtype_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < DP_NUM_DTYPES; i++)
        if (strcasecmp(name, dtype_table[i].name) == 0) return i;
    for (size_t i = 0; i < sizeof dtype_aliases / sizeof dtype_aliases[0]; i++)
        if (strcasecmp(name, dtype_aliases[i].alias) == 0) return (int32_t)dtype_aliases[i].dtype;
    return -1;
}

const char *dp_device_name(dp_device device) {
    switch (device) {
    case DP_CPU: return "cpu";
    case DP_CUDA: return "cuda";
    default: return "invalid";
    }
}

/* ---------------------------------------------------------------- scalar casts */

uint16_t dp_f64_to_bf16(double x) { return dp_cast_f64_to_bf16(x); }
uint16_t dp_f64_to_f16(double x) { return dp_cast_f64_to_f16(x); }
uint8_t dp_f64_to_e4m3(double x) { return dp_cast_f64_to_e4m3(x); }
uint8_t dp_f64_to_e5m2(double x) { return dp_cast_f64_to_e5m2(x); }

/* f32 -> double is exact, so these round once. */
uint16_t dp_f32_to_bf16(float x) { return dp_cast_f32_to_bf16(x); }

uint16_t dp_f32_to_f16(float x) {
#ifdef __F16C__
    /* vcvtps2ph rounds to nearest even with subnormals; only NaN needs the canonical form. */
    if (x == x) return (uint16_t)_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT);
#endif
    return dp_cast_f64_to_f16((double)x);
}

uint8_t dp_f32_to_e4m3(float x) { return dp_cast_f64_to_e4m3((double)x); }
uint8_t dp_f32_to_e5m2(float x) { return dp_cast_f64_to_e5m2((double)x); }

float dp_bf16_to_f32(uint16_t h) { return dp_cast_bf16_to_f32(h); }
float dp_f16_to_f32(uint16_t h) { return dp_cast_f16_to_f32(h); }
float dp_e4m3_to_f32(uint8_t b) { return dp_cast_e4m3_to_f32(b); }
float dp_e5m2_to_f32(uint8_t b) { return dp_cast_e5m2_to_f32(b); }

/* ---------------------------------------------------------------- array casts */

void dp_f32_to_bf16_array(uint16_t *out, const float *in, int64_t n) {
    int64_t i = 0;
#ifdef __AVX2__
    /* The scalar bit trick on 8 lanes; NaN lanes take the canonical quiet NaN. */
    const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
    const __m256i bias = _mm256_set1_epi32(0x7FFF), one = _mm256_set1_epi32(1);
    const __m256i sign16 = _mm256_set1_epi32(0x8000), qnan = _mm256_set1_epi32(0x7FC0);
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_loadu_si256((const __m256i *)(in + i));
        __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
        __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
        __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, odd)), 16);
        __m256i nan = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u, 16), sign16), qnan);
        r = _mm256_blendv_epi8(r, nan, is_nan);
        /* Values fit 16 bits, so the unsigned-saturating pack is exact; it interleaves the two
         * 128-bit halves, which the permute puts back in order. */
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        _mm_storeu_si128((__m128i *)(out + i), _mm256_castsi256_si128(packed));
    }
#endif
    for (; i < n; i++) out[i] = dp_cast_f32_to_bf16(in[i]);
}

void dp_bf16_to_f32_array(float *out, const uint16_t *in, int64_t n) {
    int64_t i = 0;
#ifdef __AVX2__
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(in + i));
        __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_si256((__m256i *)(out + i), u);
    }
#endif
    for (; i < n; i++) out[i] = dp_cast_bf16_to_f32(in[i]);
}

/* ---------------------------------------------------------------- element access */

double dp_load_f64(const void *p, dp_dtype dtype, int64_t i) { return dp_cast_load(p, dtype, i); }

void dp_store_f64(void *p, dp_dtype dtype, int64_t i, double v) { dp_cast_store(p, dtype, i, v); }

float dp_load_f32(const void *p, dp_dtype dtype, int64_t i) {
    switch (dtype) {
    case DP_F32: return ((const float *)p)[i];
    case DP_BF16: return dp_cast_bf16_to_f32(((const uint16_t *)p)[i]);
    case DP_F16: return dp_cast_f16_to_f32(((const uint16_t *)p)[i]);
    case DP_FP8_E4M3: return dp_cast_e4m3_to_f32(((const uint8_t *)p)[i]);
    case DP_FP8_E5M2: return dp_cast_e5m2_to_f32(((const uint8_t *)p)[i]);
    default: return (float)dp_load_f64(p, dtype, i);
    }
}

void dp_store_f32(void *p, dp_dtype dtype, int64_t i, float v) {
    switch (dtype) {
    case DP_F32: ((float *)p)[i] = v; break;
    case DP_BF16: ((uint16_t *)p)[i] = dp_cast_f32_to_bf16(v); break;
    case DP_F16: ((uint16_t *)p)[i] = dp_f32_to_f16(v); break;
    default: dp_store_f64(p, dtype, i, v); break;
    }
}
