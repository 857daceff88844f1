// register_gemm.cu: fills the op-table entries of the gemm kernel family (see cuda_common.h,
// nn.h). No per-device engine name: dp_matmul_engine() reports CPU engines only.
#include "nn.h"

void dp_cuda_register_gemm(dp_ops *t) {
    t->gemm = dp_cuda_gemm;
}
