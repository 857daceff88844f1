// register_nn.cu: fills the op-table entries of the nn kernel family (see cuda_common.h, nn.h).
#include "nn.h"

void dp_cuda_register_nn(dp_ops *t) {
    t->softmax = dp_cuda_softmax;
    t->softmax_backward = dp_cuda_softmax_backward;
    t->softmax_masked = dp_cuda_softmax_masked;
    t->layer_norm = dp_cuda_layer_norm;
    t->layer_norm_backward = dp_cuda_layer_norm_backward;
    t->gather_rows = dp_cuda_gather_rows;
    t->scatter_add_rows = dp_cuda_scatter_add_rows;
    t->cross_entropy = dp_cuda_cross_entropy;
    t->cross_entropy_backward = dp_cuda_cross_entropy_backward;
}
