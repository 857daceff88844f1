/* linear.h: the parts of dp_linear (ops_matmul.c) that dp_linear_act (ops_linear_act.c) reuses:
 * the argument check, the one-GEMM forward and the backward with its DP engine taps. */
#ifndef DP_LINEAR_H
#define DP_LINEAR_H
#include "internal.h"

/* x (..., in), w (out, in), bias (out) or NULL: same float dtype and device. DP_E... with a
 * message starting "op: " naming the argument and what was expected. */
int dp_linear_check(const char *op, const dp_tensor *x, const dp_tensor *w, const dp_tensor *bias);
/* New contiguous (..., out) = x @ w^T + bias as one GEMM over all rows of x (bias, when not NULL,
 * is accumulated inside the GEMM: one rounding), without autograd. Arguments already checked. */
dp_tensor *dp_linear_gemm(dp_tensor *x, dp_tensor *w, dp_tensor *bias);
/* Backward function of a node with inputs (x, w[, bias]) and saved[0] = x, saved[1] = w, given
 * the gradient gy of x @ w^T + bias: gx, gw, gbias into gi, or for parameters registered with an
 * active DP engine a tap (dp_psg_tap_linear) instead of their gradient. */
int dp_linear_grads(dp_node *node, dp_tensor *gy, dp_tensor **gi);

#endif
