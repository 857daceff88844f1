/* gemm_fp8.c: fp8 GEMM with scale factors by exact widening. (placeholder: being written) */
#include "internal.h"
#include "cpu_kernels.h"

int dp_cpu_gemm_fp8(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                    int32_t trans_b, double scale_a, double scale_b, double alpha, double beta) {
    return dp_fail(DP_EUNSUPPORTED, "gemm_fp8: not written yet");
}
