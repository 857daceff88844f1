/* update_pass.h: the optimizer update of kernels/cpu/optim.c with a caller's pass run on each
 * block just before the block is updated, so that a fused kernel (noisy_update.c) forms the
 * block's gradient in the same sweep over memory while the update itself is the very code that
 * dp_cpu_sgd_step / dp_cpu_adam_step run (same bits, whatever the compiler contracts). */
#ifndef DP_CPU_UPDATE_PASS_H
#define DP_CPU_UPDATE_PASS_H
#include "internal.h"

/* Elements per block of the update loop. */
enum { DP_CPU_UPDATE_BLOCK = 1024 };

/* The pass on elements [off, off + n) of one block (off a multiple of DP_CPU_UPDATE_BLOCK). Blocks
 * run on any thread in any order; the pass may write only what its block owns. */
typedef void (*dp_cpu_block_fn)(void *ctx, int64_t off, int64_t n);

/* param updated from grad by rule (kind DP_UPDATE_SGD with s0 the momentum buffer, unused when
 * momentum is 0, or DP_UPDATE_ADAM with s0 = m, s1 = v), exactly as dp_cpu_sgd_step /
 * dp_cpu_adam_step with the same arguments; pre (may be NULL) runs on each block first. Arguments
 * are already checked. Blocks are split between threads when numel > par_min. */
void dp_cpu_update_pass(dp_tensor *param, const dp_tensor *grad, dp_tensor *s0, dp_tensor *s1,
                        const dp_update_rule *rule, const dp_rounding *rounding, dp_cpu_block_fn pre,
                        void *ctx, int64_t par_min);

#endif
