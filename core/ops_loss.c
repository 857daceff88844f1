/* ops_loss.c: dp_cross_entropy of logits (N, C) against integer labels (N). The per-row loss
 * comes from one kernel; the mean and sum reductions are applied here so one node covers all
 * three, and its backward hands the kernel the per-row upstream gradient.
 *
 * The mean divides by the number of rows whose label is not ignore_index. When every row is
 * ignored that count is 0 and the mean is defined as 0 (with zero gradient), not 0/0 = NaN, so a
 * fully padded batch cannot poison training. Loss and logsumexp are f64 for f64 logits and f32
 * otherwise (bf16 logits still give an f32 loss). */
#include <stdlib.h>
#include "internal.h"

static int cross_entropy_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *logits = node->inputs[0], *labels = node->saved[0], *lse = node->saved[1];
    int32_t reduction = (int32_t)node->ints[1];
    double scale = node->scalars[0];
    const dp_ops *ops = dp_ops_for(logits->device);
    if (!ops) return DP_EDEVICE;
    int64_t N = logits->shape[0], zero = 0;
    dp_tensor *gloss;
    if (reduction == 0) {
        dp_tensor_retain(g);
        gloss = g;
    } else {
        /* The scalar gradient, scaled for the mean, read by every row through a stride-0 view. */
        dp_tensor *gs = scale == 1.0 ? (dp_tensor_retain(g), g) : dp_affine(g, scale, 0.0);
        gloss = gs ? dp_tensor_view_of(gs, 1, &N, &zero, gs->offset) : NULL;
        dp_tensor_release(gs);
    }
    dp_tensor *gx = dp_empty_like(logits);
    int rc = gloss && gx ? ops->cross_entropy_backward(gx, gloss, logits, lse, labels, node->ints[0])
                         : DP_ENOMEM;
    dp_tensor_release(gloss);
    if (rc) { dp_tensor_release(gx); return rc; }
    gi[0] = gx;
    return 0;
}

/* Range-check the labels; *count gets the number of rows not ignored. */
static int check_labels(const dp_tensor *labels, const dp_tensor *logits, int64_t ignore_index,
                        int64_t *count) {
    int64_t N = labels->shape[0], C = logits->shape[1];
    int64_t *v = dp_index_values("cross_entropy", labels);
    if (!v) return DP_ENOMEM;
    *count = 0;
    for (int64_t i = 0; i < N; i++) {
        if (v[i] == ignore_index) continue;
        if (v[i] < 0 || v[i] >= C) {
            int rc = dp_fail(DP_EINDEX, "cross_entropy: label %lld in row %lld is out of range for %lld classes "
                             "(logits %s, labels %s); labels must be in [0, %lld) or equal ignore_index (%lld)",
                             (long long)v[i], (long long)i, (long long)C, dp_tensor_desc(logits),
                             dp_tensor_desc(labels), (long long)C, (long long)ignore_index);
            free(v);
            return rc;
        }
        (*count)++;
    }
    free(v);
    return 0;
}

dp_tensor *dp_cross_entropy(dp_tensor *logits, dp_tensor *labels, int64_t ignore_index,
                            int32_t reduction) {
    if (!logits || !labels) return dp_fail_null(DP_EARG, "cross_entropy: logits or labels is NULL");
    if (dp_check_float("cross_entropy", logits) || dp_check_same_device("cross_entropy", logits, labels))
        return NULL;
    if (labels->dtype != DP_I32 && labels->dtype != DP_I64)
        return dp_fail_null(DP_EDTYPE, "cross_entropy: labels must be i32 or i64, got %s", dp_tensor_desc(labels));
    if (logits->ndim != 2 || labels->ndim != 1 || labels->shape[0] != logits->shape[0])
        return dp_fail_null(DP_ESHAPE, "cross_entropy: expected logits (N, C) and labels (N), got logits %s and "
                            "labels %s", dp_tensor_desc(logits), dp_tensor_desc(labels));
    if (reduction < 0 || reduction > 2)
        return dp_fail_null(DP_EARG, "cross_entropy: reduction %d, expected 0 (none), 1 (mean) or 2 (sum)",
                            reduction);
    const dp_ops *ops = dp_ops_for(logits->device);
    if (!ops) return NULL;
    if (!ops->cross_entropy || !ops->cross_entropy_backward || !ops->reduce || !ops->unary)
        return dp_fail_null(DP_EUNSUPPORTED, "cross_entropy: the %s backend has no cross-entropy kernel (%s)",
                            dp_device_name(logits->device), dp_tensor_desc(logits));
    dp_tensor *lab = dp_contiguous(labels);
    int64_t count = 0, N = logits->shape[0], one = 1;
    if (!lab || check_labels(lab, logits, ignore_index, &count)) {
        dp_tensor_release(lab);
        return NULL;
    }
    double scale = reduction == 1 ? (count ? 1.0 / (double)count : 0.0) : 1.0;
    dp_dtype ldt = logits->dtype == DP_F64 ? DP_F64 : DP_F32;
    dp_tensor *lc = dp_contiguous(logits);
    dp_tensor *loss = dp_empty_as(logits, ldt, 1, &N), *lse = dp_empty_as(logits, ldt, 1, &N);
    int rc = lc && loss && lse ? ops->cross_entropy(loss, lse, lc, lab, ignore_index) : DP_ENOMEM;
    dp_tensor *out = NULL;
    if (!rc && reduction == 0) {
        out = loss;
        loss = NULL;
    } else if (!rc) {
        /* (N) -> (1) sum, then scaled for the mean, then viewed as a 0-d result. */
        int32_t dim0 = 0;
        dp_tensor *sum = dp_empty_as(logits, ldt, 1, &one);
        dp_tensor *res = sum && reduction == 1 ? dp_empty_as(logits, ldt, 1, &one) : NULL;
        rc = sum ? ops->reduce(sum, loss, 1, &dim0, DP_RED_SUM) : DP_ENOMEM;
        if (!rc && reduction == 1) rc = res ? ops->unary(res, sum, DP_UN_AFFINE, scale, 0.0) : DP_ENOMEM;
        dp_tensor *last = reduction == 1 ? res : sum;
        if (!rc) out = dp_tensor_view_of(last, 0, NULL, NULL, last->offset);
        if (!rc && !out) rc = DP_ENOMEM;
        dp_tensor_release(sum);
        dp_tensor_release(res);
    }
    if (!rc && dp_autograd_wanted(1, &lc)) {
        dp_node *node = dp_autograd_record(out, "cross_entropy", cross_entropy_backward, 1, &lc);
        if (node) {
            dp_node_save(node, 0, lab);
            dp_node_save(node, 1, lse);
            node->ints[0] = ignore_index;
            node->ints[1] = reduction;
            node->scalars[0] = scale;
        } else {
            rc = DP_ENOMEM;
        }
    }
    dp_tensor_release(lab);
    dp_tensor_release(lc);
    dp_tensor_release(loss);
    dp_tensor_release(lse);
    if (rc) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}
