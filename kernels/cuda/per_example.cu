// per_example.cu: per-example products of the DP engine's linear taps (materialised-form norms, clipped sum). (placeholder: being written)
#include "cuda_common.h"

void dp_cuda_register_per_example(dp_ops *t) { (void)t; }
