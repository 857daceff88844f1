/* ops_random.c: argument checks and dispatch for the random fills and dropout, and dropout's
 * backward. Which (seed, counter) block feeds which element is documented in philox.h. */
#include <math.h>
#include "internal.h"

/* Fill x through a backend fill; a strided x is filled through a contiguous temporary so that
 * element i in row-major order still takes stream element i. */
typedef int (*fill_fn)(const dp_ops *ops, dp_tensor *out, dp_rng *rng, double mean, double std);

static int fill_uniform(const dp_ops *ops, dp_tensor *out, dp_rng *rng, double mean, double std) {
    return ops->rand_uniform(out, rng);
}

static int fill_normal(const dp_ops *ops, dp_tensor *out, dp_rng *rng, double mean, double std) {
    return ops->rand_normal(out, rng, mean, std);
}

static int random_fill(const char *op, dp_tensor *x, dp_rng *rng, fill_fn fill, double mean,
                       double std) {
    if (!x) return dp_fail(DP_EARG, "%s: x is NULL", op);
    if (!rng) return dp_fail(DP_EARG, "%s: rng is NULL", op);
    int rc = dp_check_float(op, x);
    if (rc) return rc;
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return DP_EDEVICE;
    if (dp_tensor_numel(x) == 0) return 0;
    if (dp_tensor_is_contiguous(x)) {
        dp_tensor_bump_version(x);   /* the strided path counts its write in dp_copy_ */
        return fill(ops, x, rng, mean, std);
    }
    dp_tensor *tmp = dp_empty_like(x);
    if (!tmp) return DP_ENOMEM;
    rc = fill(ops, tmp, rng, mean, std);
    if (!rc) rc = dp_copy_(x, tmp);
    dp_tensor_release(tmp);
    return rc;
}

int dp_rand_(dp_tensor *x, dp_rng *rng) {
    return random_fill("rand_", x, rng, fill_uniform, 0.0, 1.0);
}

int dp_randn_(dp_tensor *x, dp_rng *rng, double mean, double std) {
    if (!(std >= 0) || !isfinite(std))
        return dp_fail(DP_EARG, "randn_: std must be finite and >= 0, got %g", std);
    if (!isfinite(mean)) return dp_fail(DP_EARG, "randn_: mean must be finite, got %g", mean);
    return random_fill("randn_", x, rng, fill_normal, mean, std);
}

/* gx = gy * mask / (1 - p); saved[0] is the u8 mask, scalars[0] is p. */
static int dropout_backward(dp_node *node, dp_tensor *grad_out, dp_tensor **grad_inputs) {
    dp_tensor *mask = dp_cast(node->saved[0], grad_out->dtype);
    if (!mask) return DP_ENOMEM;
    dp_tensor *kept = dp_mul(grad_out, mask);
    dp_tensor_release(mask);
    if (!kept) return DP_ENOMEM;
    grad_inputs[0] = dp_affine(kept, 1.0 / (1.0 - node->scalars[0]), 0.0);
    dp_tensor_release(kept);
    return grad_inputs[0] ? 0 : DP_ENOMEM;
}

dp_tensor *dp_dropout(dp_tensor *x, double p, int32_t train, dp_rng *rng) {
    if (!x) return dp_fail_null(DP_EARG, "dropout: x is NULL");
    if (!(p >= 0 && p < 1)) return dp_fail_null(DP_EARG, "dropout: p must be in [0, 1), got %g", p);
    if (dp_check_float("dropout", x)) return NULL;
    if (!train || p == 0) {
        dp_tensor_retain(x);
        return x;
    }
    if (!rng) return dp_fail_null(DP_EARG, "dropout: rng is NULL (needed when train = 1 and p > 0)");
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return NULL;
    dp_tensor *out = dp_empty_like(x);
    dp_tensor *mask = out ? dp_empty_as(x, DP_U8, x->ndim, x->shape) : NULL;
    if (!mask) {
        dp_tensor_release(out);
        return NULL;
    }
    if (dp_tensor_numel(x) > 0 && ops->dropout(out, mask, x, p, rng)) {
        dp_tensor_release(mask);
        dp_tensor_release(out);
        return NULL;
    }
    if (dp_autograd_wanted(1, &x)) {
        dp_node *node = dp_autograd_record(out, "dropout", dropout_backward, 1, &x);
        if (!node) {
            dp_tensor_release(mask);
            dp_tensor_release(out);
            return dp_fail_null(DP_ENOMEM, "dropout: out of memory for the autograd node");
        }
        dp_node_save(node, 0, mask);
        node->scalars[0] = p;
    }
    dp_tensor_release(mask);
    return out;
}
