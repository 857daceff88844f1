/* ops_gather.c: dp_index_select_rows, the rows of a tensor at a list of indices, for batching data
 * (examples are rows of the dataset's tensors). Any dtype: the backend's gather_rows kernel copies
 * whole rows of bytes. Not differentiable: data batches need no gradient. */
#include <stdio.h>
#include <stdlib.h>
#include "internal.h"

static const char *const OP = "index_select_rows";

/* Every value in [0, rows), else DP_EINDEX naming the position and the valid range. */
static int check_range(const dp_tensor *indices, const int64_t *v, const dp_tensor *x) {
    int64_t n = indices->shape[0], rows = x->shape[0];
    for (int64_t i = 0; i < n; i++) {
        if (v[i] >= 0 && v[i] < rows) continue;
        if (rows == 0)
            return dp_fail(DP_EINDEX, "%s: index %lld at position %lld, but x %s has no rows "
                           "(indices %s)", OP, (long long)v[i], (long long)i, dp_tensor_desc(x),
                           dp_tensor_desc(indices));
        return dp_fail(DP_EINDEX, "%s: index %lld at position %lld is out of range for x %s "
                       "(indices %s); valid indices are 0..%lld", OP, (long long)v[i],
                       (long long)i, dp_tensor_desc(x), dp_tensor_desc(indices), (long long)rows - 1);
    }
    return 0;
}

static int check_args(const dp_tensor *x, const dp_tensor *indices) {
    if (!x || !indices) return dp_fail(DP_EARG, "%s: x or indices is NULL", OP);
    if (indices->dtype != DP_I32 && indices->dtype != DP_I64)
        return dp_fail(DP_EDTYPE, "%s: indices must be i32 or i64, got %s", OP, dp_tensor_desc(indices));
    if (indices->ndim != 1)
        return dp_fail(DP_ESHAPE, "%s: indices must be 1-D, got %s", OP, dp_tensor_desc(indices));
    if (x->ndim < 1)
        return dp_fail(DP_ESHAPE, "%s: x must have at least one dim (its rows), got %s", OP,
                       dp_tensor_desc(x));
    return dp_check_same_device(OP, x, indices);
}

/* x's rows gathered into out (n, ...): x is made contiguous and seen as (N, row elements). */
static int gather(dp_tensor *out, dp_tensor *x, dp_tensor *idx, const dp_ops *ops) {
    int64_t N = x->shape[0], n = idx->shape[0], row = dp_shape_numel(x->ndim - 1, x->shape + 1);
    /* detached first so the copy made by dp_contiguous records no autograd node */
    dp_tensor *xd = dp_detach(x);
    dp_tensor *xc = xd ? dp_contiguous(xd) : NULL;
    dp_tensor_release(xd);
    if (!xc) return DP_ENOMEM;
    int64_t xs[2] = {N, row}, os[2] = {n, row}, stride[2] = {row, 1};
    dp_tensor *x2 = dp_tensor_view_of(xc, 2, xs, stride, xc->offset);
    dp_tensor *o2 = dp_tensor_view_of(out, 2, os, stride, out->offset);
    int rc = x2 && o2 ? ops->gather_rows(o2, x2, idx) : DP_ENOMEM;
    dp_tensor_release(o2);
    dp_tensor_release(x2);
    dp_tensor_release(xc);
    return rc;
}

dp_tensor *dp_index_select_rows(dp_tensor *x, dp_tensor *indices) {
    if (check_args(x, indices)) return NULL;
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return NULL;
    if (!ops->gather_rows)
        return dp_fail_null(DP_EUNSUPPORTED, "%s: the %s backend has no row gather kernel", OP,
                            dp_device_name(x->device));
    dp_tensor *idx = dp_contiguous(indices);
    int64_t *v = idx ? dp_index_values(OP, idx) : NULL;
    int rc = v ? check_range(idx, v, x) : DP_ENOMEM;
    free(v);
    if (rc) {
        dp_tensor_release(idx);
        return NULL;
    }
    int64_t shape[8];
    shape[0] = indices->shape[0];
    for (int d = 1; d < x->ndim; d++) shape[d] = x->shape[d];
    dp_tensor *out = dp_empty_as(x, x->dtype, x->ndim, shape);
    if (out && dp_tensor_numel(out) > 0) rc = gather(out, x, idx, ops);
    dp_tensor_release(idx);
    if (!out || rc) {   /* the failing call has set the message */
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}
