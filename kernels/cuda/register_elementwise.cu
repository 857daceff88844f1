// register_elementwise.cu: fills the op-table entries of the elementwise kernel family (see
// cuda_common.h; kernels in binary.cu, unary.cu, copy_cast.cu, reduce.cu, quant.cu). fill and
// copy replace backend.cu's contiguous-only versions with strided, casting ones.
#include "ew.h"

void dp_cuda_register_elementwise(dp_ops *t) {
    t->fill = dp_cuda_fill;
    t->copy = dp_cuda_copy;
    t->binary = dp_cuda_binary;
    t->unary = dp_cuda_unary;
    t->unary_backward = dp_cuda_unary_backward;
    t->axpy = dp_cuda_axpy;
    t->reduce = dp_cuda_reduce;
    t->argmax = dp_cuda_argmax;
    t->masked_fill = dp_cuda_masked_fill;
    t->quant_amax = dp_cuda_quant_amax;
    t->fake_quant = dp_cuda_fake_quant;
}
