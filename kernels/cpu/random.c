/* random.c: CPU kernels for the counter-based random fills and dropout. Each Philox block is a pure
 * function of (seed, counter + block), so the blocks split across threads freely; the stream
 * itself is defined in core/philox.h and shared with the CUDA kernels. */
#include "cpu_kernels.h"
#include "philox.h"

/* Below this many elements a fill is not worth waking the thread team. */
enum { RANDOM_PARALLEL_MIN = 1 << 15 };

int dp_cpu_rand_uniform(dp_tensor *out, dp_rng *rng) {
    int64_t n = dp_tensor_numel(out);
    int64_t blocks = dp_philox_uniform_blocks(out->dtype, n);
    uint64_t seed = rng->seed, counter = rng->counter;
    void *data = out->data;
    dp_dtype dtype = out->dtype;
#pragma omp parallel for schedule(static) if (n > RANDOM_PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++) dp_philox_fill_uniform(data, dtype, n, seed, counter, b);
    rng->counter = counter + (uint64_t)blocks;
    return 0;
}

int dp_cpu_rand_normal(dp_tensor *out, dp_rng *rng, double mean, double std) {
    int64_t n = dp_tensor_numel(out);
    int64_t blocks = dp_philox_quad_blocks(n);
    uint64_t seed = rng->seed, counter = rng->counter;
    void *data = out->data;
    dp_dtype dtype = out->dtype;
#pragma omp parallel for schedule(static) if (n > RANDOM_PARALLEL_MIN / 4)
    for (int64_t b = 0; b < blocks; b++)
        dp_philox_fill_normal(data, dtype, n, seed, counter, b, mean, std);
    rng->counter = counter + (uint64_t)blocks;
    return 0;
}

/* mask[i] = keep; out[i] = x[i] * (keep ? scale : 0), so NaN and Inf inputs still give NaN when
 * dropped, as x * mask / (1 - p) would. In f64 for f64, in f32 otherwise (low-precision dtypes
 * round once on store). x may be strided. */
int dp_cpu_dropout(dp_tensor *out, dp_tensor *mask, const dp_tensor *x, double p, dp_rng *rng) {
    int64_t n = dp_tensor_numel(out);
    int64_t blocks = dp_philox_quad_blocks(n);
    uint64_t seed = rng->seed, counter = rng->counter;
    double scale = 1.0 / (1.0 - p);
    float scale_f = (float)scale;
    int contiguous = dp_tensor_is_contiguous(x);
    dp_dtype dtype = x->dtype;
    uint8_t *m = mask->data;
#pragma omp parallel for schedule(static) if (n > RANDOM_PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        uint32_t w[4];
        dp_philox_block(w, seed, counter + (uint64_t)b, 0);
        for (int j = 0; j < 4 && 4 * b + j < n; j++) {
            int64_t i = 4 * b + j;
            int64_t src = contiguous ? i : dp_tensor_flat_offset(x, i);
            int keep = dp_philox_keep(w[j], p);
            m[i] = (uint8_t)keep;
            switch (dtype) {
            case DP_F64:
                ((double *)out->data)[i] = ((const double *)x->data)[src] * (keep ? scale : 0.0);
                break;
            case DP_F32:
                ((float *)out->data)[i] = ((const float *)x->data)[src] * (keep ? scale_f : 0.0f);
                break;
            default:
                dp_store_f32(out->data, dtype, i,
                             dp_load_f32(x->data, dtype, src) * (keep ? scale_f : 0.0f));
                break;
            }
        }
    }
    rng->counter = counter + (uint64_t)blocks;
    return 0;
}

/* dst += std * z on the DP noise stream of (seed, stream) from block `counter` (philox.h): one
 * block feeds two elements, so the blocks split across threads like the fills above. */
int dp_cpu_noise_add_philox(dp_tensor *dst, double std, uint64_t seed, uint64_t stream,
                            uint64_t counter) {
    int64_t n = dp_tensor_numel(dst);
    int64_t blocks = (n + 1) / 2;
    void *data = dst->data;
    dp_dtype dtype = dst->dtype;
#pragma omp parallel for schedule(static) if (n > RANDOM_PARALLEL_MIN / 4)
    for (int64_t b = 0; b < blocks; b++)
        dp_philox_noise_add_block(data, dtype, n, std, seed, stream, counter, b);
    return 0;
}
