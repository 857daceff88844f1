/* cpu_kernels.h: the CPU kernels behind dp_cpu_ops (kernels/cpu/cpu_backend.c), one section per
 * kernel file. Signatures follow the dp_ops fields in core/backend.h. */
#ifndef DP_CPU_KERNELS_H
#define DP_CPU_KERNELS_H
#include "internal.h"

/* random.c */
int dp_cpu_rand_uniform(dp_tensor *out, dp_rng *rng);
int dp_cpu_rand_normal(dp_tensor *out, dp_rng *rng, double mean, double std);
int dp_cpu_dropout(dp_tensor *out, dp_tensor *mask, const dp_tensor *x, double p, dp_rng *rng);
int dp_cpu_noise_add_philox(dp_tensor *dst, double std, uint64_t seed, uint64_t stream,
                            uint64_t counter);

/* gemm.c */
int dp_cpu_gemm(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                int32_t trans_b, double alpha, double beta);

/* reduce, softmax, layernorm, embedding, cross_entropy */
int dp_cpu_reduce(dp_tensor *out, const dp_tensor *x, int32_t ndims, const int32_t *dims,
                  dp_redop op);
int dp_cpu_argmax(dp_tensor *out, const dp_tensor *x, int32_t dim);
int dp_cpu_softmax(dp_tensor *y, const dp_tensor *x, int32_t dim, int32_t log);
int dp_cpu_softmax_backward(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *y, int32_t dim,
                            int32_t log);
int dp_cpu_softmax_masked(dp_tensor *y, const dp_tensor *x, const dp_tensor *mask);
int dp_cpu_layer_norm(dp_tensor *y, dp_tensor *mean, dp_tensor *rstd, const dp_tensor *x,
                      const dp_tensor *weight, const dp_tensor *bias, double eps);
int dp_cpu_layer_norm_backward(dp_tensor *gx, dp_tensor *gweight, dp_tensor *gbias,
                               const dp_tensor *gy, const dp_tensor *x, const dp_tensor *mean,
                               const dp_tensor *rstd, const dp_tensor *weight);
int dp_cpu_gather_rows(dp_tensor *out, const dp_tensor *weight, const dp_tensor *indices);
int dp_cpu_scatter_add_rows(dp_tensor *dst, const dp_tensor *indices, const dp_tensor *src);
int dp_cpu_cross_entropy(dp_tensor *loss, dp_tensor *lse, const dp_tensor *logits,
                         const dp_tensor *labels, int64_t ignore_index);
int dp_cpu_cross_entropy_backward(dp_tensor *glogits, const dp_tensor *gloss,
                                  const dp_tensor *logits, const dp_tensor *lse,
                                  const dp_tensor *labels, int64_t ignore_index);
/* n elements of dtype from element off of base, stride apart, to/from doubles (reduce.c). */
void dp_cpu_row_load(double *dst, const void *base, dp_dtype dtype, int64_t off, int64_t stride,
                     int64_t n);
void dp_cpu_row_store(void *base, dp_dtype dtype, int64_t off, int64_t stride, const double *src,
                      int64_t n);

/* elementwise.c (and unary.c) */
int dp_cpu_fill(dp_tensor *out, double value);
int dp_cpu_copy(dp_tensor *out, const dp_tensor *src);
int dp_cpu_binary(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, dp_binop op);
int dp_cpu_unary(dp_tensor *out, const dp_tensor *x, dp_unop op, double alpha, double beta);
int dp_cpu_unary_backward(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *x,
                          const dp_tensor *y, dp_unop op, double alpha, double beta);
int dp_cpu_axpy(dp_tensor *dst, double alpha, const dp_tensor *src);
int dp_cpu_masked_fill(dp_tensor *out, const dp_tensor *x, const dp_tensor *mask, double value);

/* optim.c */
int dp_cpu_sgd_step(dp_tensor *param, const dp_tensor *grad, dp_tensor *buf, double lr,
                    double momentum, double dampening, double weight_decay, int32_t nesterov,
                    int32_t first_step, const dp_rounding *rounding);
int dp_cpu_adam_step(dp_tensor *param, const dp_tensor *grad, dp_tensor *m, dp_tensor *v,
                     double lr, double beta1, double beta2, double eps, double weight_decay,
                     int32_t decoupled, int64_t step, const dp_rounding *rounding);

/* quant.c */
int dp_cpu_quant_amax(dp_tensor *amax, const dp_tensor *x);
int dp_cpu_fake_quant(dp_tensor *out, const dp_tensor *x, const dp_tensor *scale, dp_dtype dtype);

/* per_sample.c */
int dp_cpu_gram(dp_tensor *out, const dp_tensor *x);
int dp_cpu_ghost_norm(dp_tensor *sq, dp_tensor *bound, const dp_tensor *ga, const dp_tensor *gg,
                      double ka, double kg);
int dp_cpu_scale_rows(dp_tensor *out, const dp_tensor *x, const dp_tensor *factor);
int dp_cpu_row_sums(dp_tensor *out, const dp_tensor *g, const dp_tensor *x, const dp_tensor *mean,
                    const dp_tensor *rstd);
int dp_cpu_row_sq_norms(dp_tensor *out, const dp_tensor *x);
int dp_cpu_embedding_sq_norms(dp_tensor *out, const dp_tensor *idx, const dp_tensor *g);

/* bias_act.c */
int dp_cpu_bias_act(dp_tensor *y, dp_tensor *pre, const dp_tensor *x, const dp_tensor *bias, dp_unop act);

/* noisy_update.c */
int dp_cpu_noisy_update(dp_tensor *param, dp_tensor *acc, dp_tensor *state0, dp_tensor *state1,
                        dp_tensor *sums, double std, uint64_t seed, uint64_t stream, uint64_t counter,
                        double scale, const dp_update_rule *rule, const dp_rounding *rounding);

/* gemm_fp8.c */
int dp_cpu_gemm_fp8(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                    int32_t trans_b, double scale_a, double scale_b, double alpha, double beta);

#endif
