// register_dpsgd.cu: fills the op-table entries of the dpsgd kernel family (see cuda_common.h).
#include "dpsgd.h"

void dp_cuda_register_dpsgd(dp_ops *t) {
    t->gram = dp_cuda_gram;
    t->ghost_norm = dp_cuda_ghost_norm;
    t->scale_rows = dp_cuda_scale_rows;
    t->row_sums = dp_cuda_row_sums;
    t->row_sq_norms = dp_cuda_row_sq_norms;
    t->embedding_sq_norms = dp_cuda_embedding_sq_norms;
    t->noise_add_philox = dp_cuda_noise_add_philox;
    t->sgd_step = dp_cuda_sgd_step;
    t->adam_step = dp_cuda_adam_step;
}
