/* noisy_update.c: noise, scale and optimizer update in one pass. (placeholder: being written) */
#include "internal.h"
#include "cpu_kernels.h"

int dp_cpu_noisy_update(dp_tensor *param, dp_tensor *acc, dp_tensor *state0, dp_tensor *state1,
                        dp_tensor *sums, double std, uint64_t seed, uint64_t stream, uint64_t counter,
                        double scale, const dp_update_rule *rule, const dp_rounding *rounding) {
    return dp_fail(DP_EUNSUPPORTED, "noisy_update: not written yet");
}
