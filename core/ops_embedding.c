/* ops_embedding.c: row lookups and row scatter-adds: dp_embedding (rows of a (V, D) table picked
 * by integer indices of any shape) and dp_index_add (a functional scatter-add of rows), plus
 * dp_index_values, which brings integer indices to the host so every op can range-check them
 * before a kernel trusts them. */
#include <stdio.h>
#include <stdlib.h>
#include "internal.h"

int64_t *dp_index_values(const char *op, const dp_tensor *idx) {
    int64_t n = dp_tensor_numel(idx);
    size_t bytes = (size_t)(n ? n : 1) * (size_t)dp_dtype_size(idx->dtype);
    int64_t *out = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    void *raw = idx->dtype == DP_I64 ? (void *)out : malloc(bytes);
    if (!out || !raw) {
        free(out);
        return dp_fail_null(DP_ENOMEM, "%s: out of memory reading %lld indices", op, (long long)n);
    }
    int rc = 0;
    if (idx->device == DP_CPU) {
        memcpy(raw, idx->data, (size_t)n * (size_t)dp_dtype_size(idx->dtype));
    } else {
        const dp_ops *ops = dp_ops_for(idx->device);
        rc = ops ? ops->memcpy_d2h(raw, idx->data, (size_t)n * (size_t)dp_dtype_size(idx->dtype)) : DP_EDEVICE;
    }
    if (!rc && idx->dtype == DP_I32)
        for (int64_t i = n - 1; i >= 0; i--) out[i] = ((const int32_t *)raw)[i];
    if (raw != out) free(raw);
    if (rc) {
        free(out);
        dp_error_prefix(op);
        return NULL;
    }
    return out;
}

/* "[1,2]": the multi-index of flat position i in t. */
static void position_str(char *buf, size_t size, const dp_tensor *t, int64_t i) {
    int64_t idx[8];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = t->shape[d] ? i % t->shape[d] : 0;
        i = t->shape[d] ? i / t->shape[d] : 0;
    }
    dp_shape_str(buf, size, t->ndim, idx);
}

static int check_index_dtype(const char *op, const dp_tensor *idx) {
    if (idx->dtype != DP_I32 && idx->dtype != DP_I64)
        return dp_fail(DP_EDTYPE, "%s: indices must be i32 or i64, got %s", op, dp_tensor_desc(idx));
    return 0;
}

/* Every index in [0, rows); table names what they index, for the message. */
static int check_rows(const char *op, const dp_tensor *idx, const int64_t *v, int64_t rows,
                      const char *table_name, const dp_tensor *table) {
    int64_t n = dp_tensor_numel(idx);
    for (int64_t i = 0; i < n; i++) {
        if (v[i] >= 0 && v[i] < rows) continue;
        char pos[128];
        position_str(pos, sizeof pos, idx, i);
        return dp_fail(DP_EINDEX, "%s: index %lld at position %s is out of range for %lld rows "
                       "(indices %s, %s %s); valid indices are 0..%lld",
                       op, (long long)v[i], pos, (long long)rows, dp_tensor_desc(idx), table_name,
                       dp_tensor_desc(table), (long long)rows - 1);
    }
    return 0;
}

/* A (rows, cols) row-major view of contiguous t. */
static dp_tensor *view2(dp_tensor *t, int64_t rows, int64_t cols) {
    int64_t shape[2] = {rows, cols}, stride[2] = {cols, 1};
    return dp_tensor_view_of(t, 2, shape, stride, t->offset);
}

/* The device table, or DP_EUNSUPPORTED when it lacks the row kernels. */
static const dp_ops *row_ops(const char *op, const dp_tensor *t) {
    const dp_ops *ops = dp_ops_for(t->device);
    if (ops && (!ops->gather_rows || !ops->scatter_add_rows || !ops->copy))
        return dp_fail_null(DP_EUNSUPPORTED, "%s: the %s backend has no row gather/scatter kernels", op,
                            dp_device_name(t->device));
    return ops;
}

/* ---------------------------------------------------------------- embedding */

/* gweight (V, D) = zeros with the rows of gy scatter-added at the indices; a weight registered
 * with an active DP engine is tapped instead. */
static int embedding_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *w = node->inputs[0], *idx = node->saved[0];
    const dp_ops *ops = row_ops("embedding", w);
    if (!ops) return DP_EUNSUPPORTED;
    int64_t n = dp_tensor_numel(idx), D = w->shape[1];
    dp_psg_param *pw = dp_psg_lookup(w);
    if (pw) {
        /* The DP engine sums the clipped rows itself; it needs the indices in their own shape. */
        dp_tensor *shaped = dp_reshape(idx, node->out_ndim - 1, node->out_shape);
        int rc = shaped ? dp_psg_tap_embedding(pw, shaped, g) : DP_ENOMEM;
        dp_tensor_release(shaped);
        return rc ? DP_EGRAPH : 0;
    }
    dp_tensor *gw = dp_tensor_zeros(w->dtype, w->device, 2, w->shape);
    dp_tensor *gc = dp_contiguous(g);
    dp_tensor *g2 = gc ? view2(gc, n, D) : NULL;
    int rc = gw && g2 ? ops->scatter_add_rows(gw, idx, g2) : DP_ENOMEM;
    dp_tensor_release(g2);
    dp_tensor_release(gc);
    if (rc) { dp_tensor_release(gw); return rc; }
    gi[0] = gw;
    return 0;
}

dp_tensor *dp_embedding(dp_tensor *weight, dp_tensor *indices) {
    if (!weight || !indices) return dp_fail_null(DP_EARG, "embedding: weight or indices is NULL");
    if (dp_check_float("embedding", weight) || check_index_dtype("embedding", indices) ||
        dp_check_same_device("embedding", weight, indices))
        return NULL;
    if (weight->ndim != 2)
        return dp_fail_null(DP_ESHAPE, "embedding: weight must be (V, D), got %s", dp_tensor_desc(weight));
    if (indices->ndim > 7)
        return dp_fail_null(DP_ESHAPE, "embedding: indices %s have %d dims; the output adds one, at most 8",
                            dp_tensor_desc(indices), indices->ndim);
    const dp_ops *ops = row_ops("embedding", weight);
    if (!ops) return NULL;
    int64_t V = weight->shape[0], D = weight->shape[1], n = dp_tensor_numel(indices), one = 1;
    dp_tensor *ic = dp_contiguous(indices);
    int64_t *v = ic ? dp_index_values("embedding", ic) : NULL;
    int rc = v ? check_rows("embedding", ic, v, V, "weight", weight) : DP_ENOMEM;
    free(v);
    dp_tensor *idx = rc ? NULL : dp_tensor_view_of(ic, 1, &n, &one, ic->offset);
    dp_tensor_release(ic);
    if (!idx) return NULL;

    int64_t shape[8];
    for (int d = 0; d < indices->ndim; d++) shape[d] = indices->shape[d];
    shape[indices->ndim] = D;
    dp_tensor *wc = dp_contiguous(weight);
    dp_tensor *out = wc ? dp_empty_as(wc, wc->dtype, indices->ndim + 1, shape) : NULL;
    dp_tensor *o2 = out ? view2(out, n, D) : NULL;
    rc = o2 ? ops->gather_rows(o2, wc, idx) : DP_ENOMEM;
    dp_tensor_release(o2);
    if (!rc && dp_autograd_wanted(1, &wc)) {
        dp_node *node = dp_autograd_record(out, "embedding", embedding_backward, 1, &wc);
        if (node) dp_node_save(node, 0, idx);
        else rc = DP_ENOMEM;
    }
    dp_tensor_release(idx);
    dp_tensor_release(wc);
    if (rc) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- index_add */

/* gx = gy; gsrc = the rows of gy at the indices. */
static int index_add_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *x = node->inputs[0], *src = node->inputs[1], *idx = node->saved[0];
    if (x->requires_grad) {
        dp_tensor_retain(g);
        gi[0] = g;
    }
    if (!src->requires_grad) return 0;
    const dp_ops *ops = row_ops("index_add", src);
    if (!ops) return DP_EUNSUPPORTED;
    int64_t V = x->shape[0], n = src->shape[0], D = dp_shape_numel(x->ndim - 1, x->shape + 1);
    dp_tensor *gc = dp_contiguous(g);
    dp_tensor *g2 = gc ? view2(gc, V, D) : NULL;
    dp_tensor *gs = dp_empty_like(src);
    dp_tensor *gs2 = gs ? view2(gs, n, D) : NULL;
    int rc = g2 && gs2 ? ops->gather_rows(gs2, g2, idx) : DP_ENOMEM;
    dp_tensor_release(gs2);
    dp_tensor_release(g2);
    dp_tensor_release(gc);
    if (rc) { dp_tensor_release(gs); return rc; }
    gi[1] = gs;
    return 0;
}

dp_tensor *dp_index_add(dp_tensor *x, dp_tensor *indices, dp_tensor *src) {
    if (!x || !indices || !src) return dp_fail_null(DP_EARG, "index_add: x, indices or src is NULL");
    if (dp_check_float("index_add", x) || check_index_dtype("index_add", indices) ||
        dp_check_same_device("index_add", x, indices) || dp_check_same_device("index_add", x, src))
        return NULL;
    if (src->dtype != x->dtype)
        return dp_fail_null(DP_EDTYPE, "index_add: src is %s, expected the dtype of x %s", dp_tensor_desc(src),
                            dp_tensor_desc(x));
    if (x->ndim < 1 || indices->ndim != 1)
        return dp_fail_null(DP_ESHAPE, "index_add: expected x (V, ...) and 1-D indices, got x %s and indices %s",
                            dp_tensor_desc(x), dp_tensor_desc(indices));
    int64_t want[8];
    want[0] = indices->shape[0];
    for (int d = 1; d < x->ndim; d++) want[d] = x->shape[d];
    int same = src->ndim == x->ndim;
    for (int d = 0; same && d < x->ndim; d++) same = src->shape[d] == want[d];
    if (!same) {
        char w[128];
        dp_shape_str(w, sizeof w, x->ndim, want);
        return dp_fail_null(DP_ESHAPE, "index_add: src is %s, expected shape %s (indices %s, x %s)",
                            dp_tensor_desc(src), w, dp_tensor_desc(indices), dp_tensor_desc(x));
    }
    const dp_ops *ops = row_ops("index_add", x);
    if (!ops) return NULL;
    int64_t V = x->shape[0], n = indices->shape[0], D = dp_shape_numel(x->ndim - 1, x->shape + 1);
    dp_tensor *idx = dp_contiguous(indices);
    int64_t *v = idx ? dp_index_values("index_add", idx) : NULL;
    int rc = v ? check_rows("index_add", idx, v, V, "x", x) : DP_ENOMEM;
    free(v);
    if (rc) { dp_tensor_release(idx); return NULL; }

    dp_tensor *sc = dp_contiguous(src);
    dp_tensor *out = dp_empty_like(x);
    rc = sc && out ? ops->copy(out, x) : DP_ENOMEM;
    dp_tensor *o2 = rc ? NULL : view2(out, V, D), *s2 = rc ? NULL : view2(sc, n, D);
    if (!rc) rc = o2 && s2 ? ops->scatter_add_rows(o2, idx, s2) : DP_ENOMEM;
    dp_tensor_release(o2);
    dp_tensor_release(s2);
    dp_tensor *inputs[2] = {x, sc};
    if (!rc && dp_autograd_wanted(2, inputs)) {
        dp_node *node = dp_autograd_record(out, "index_add", index_add_backward, 2, inputs);
        if (node) dp_node_save(node, 0, idx);
        else rc = DP_ENOMEM;
    }
    dp_tensor_release(idx);
    dp_tensor_release(sc);
    if (rc) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}
