/* bias_act.c: bias add and activation in one pass. (placeholder: being written) */
#include "internal.h"
#include "cpu_kernels.h"

int dp_cpu_bias_act(dp_tensor *y, dp_tensor *pre, const dp_tensor *x, const dp_tensor *bias, dp_unop act) {
    return dp_fail(DP_EUNSUPPORTED, "bias_act: not written yet");
}
