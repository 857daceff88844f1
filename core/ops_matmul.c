/* ops_matmul.c: matmul (NumPy semantics: 1-D operands promoted, batch dims broadcast) and linear
 * (x @ w^T + bias as one GEMM over all rows of x), checked once and dispatched to dp_ops.gemm,
 * with their backward passes. Operands reach the kernel as views of the callers' memory: a copy
 * is made only when neither of a matrix's last two dims has unit stride. linear's check, GEMM and
 * backward are shared with dp_linear_act (ops_linear_act.c) through linear.h. */
#include "internal.h"
#include "gemm_operands.h"
#include "linear.h"

/* ---------------------------------------------------------------- matmul into a kernel */

typedef struct batch_dim {
    int64_t size, stride_a, stride_b, stride_out;
} batch_dim;

/* out (batch..., M, N), contiguous = a (..., M, K) @ b (..., K, N), batch dims broadcast (already
 * checked), both matrices readable by a kernel (dp_gemm_matrix_layout >= 0). Batch dims that step
 * evenly in a, b and out collapse into the kernel's one batch dim; any left over are looped over
 * here. */
static int matmul_into(const dp_ops *ops, dp_tensor *out, const dp_tensor *a, const dp_tensor *b,
                       int32_t nb, const int64_t *batch_shape) {
    int64_t M = a->shape[a->ndim - 2], N = b->shape[b->ndim - 1];
    batch_dim dims[8];
    int n = 0;
    int64_t out_step = M * N;
    for (int i = nb - 1; i >= 0; i--) {
        int ia = i - (nb - (a->ndim - 2)), ib = i - (nb - (b->ndim - 2));
        batch_dim d = {batch_shape[i], 0, 0, out_step};
        out_step *= batch_shape[i];
        if (d.size == 1) continue;
        if (ia >= 0 && a->shape[ia] != 1) d.stride_a = a->stride[ia];
        if (ib >= 0 && b->shape[ib] != 1) d.stride_b = b->stride[ib];
        /* dims[] runs inner to outer; fold d into the dim inside it when all three step evenly. */
        batch_dim *in = n ? &dims[n - 1] : NULL;
        if (in && d.stride_a == in->stride_a * in->size && d.stride_b == in->stride_b * in->size &&
            d.stride_out == in->stride_out * in->size)
            in->size *= d.size;
        else
            dims[n++] = d;
    }
    batch_dim inner = n ? dims[0] : (batch_dim){1, 0, 0, M * N};
    int64_t outer = 1;
    for (int i = 1; i < n; i++) outer *= dims[i].size;

    for (int64_t o = 0; o < outer; o++) {
        int64_t rem = o, off_a = 0, off_b = 0, off_out = 0;
        for (int i = 1; i < n; i++) {
            int64_t k = rem % dims[i].size;
            rem /= dims[i].size;
            off_a += k * dims[i].stride_a;
            off_b += k * dims[i].stride_b;
            off_out += k * dims[i].stride_out;
        }
        dp_tensor av, bv, ov;
        int32_t ta, tb;
        dp_gemm_operand(&av, &ta, a, inner.size, inner.stride_a, off_a);
        dp_gemm_operand(&bv, &tb, b, inner.size, inner.stride_b, off_b);
        int64_t oshape[3] = {inner.size, M, N}, ostride[3] = {M * N, N, 1};
        dp_gemm_raw_view(&ov, out, 3, oshape, ostride, off_out);
        int rc = ops->gemm(&ov, &av, &bv, ta, tb, 1.0, 0.0);
        if (rc) return rc;
    }
    return 0;
}

static int check_pair(const char *op, const char *an, const dp_tensor *a, const char *bn,
                      const dp_tensor *b) {
    if (!a || !b) return dp_fail(DP_EARG, "%s: %s is NULL", op, !a ? an : bn);
    if (a->dtype != b->dtype)
        return dp_fail(DP_EDTYPE, "%s: dtypes differ (%s is %s, %s is %s)", op, an,
                       dp_tensor_desc(a), bn, dp_tensor_desc(b));
    int rc = dp_check_same_device(op, a, b);
    if (!rc) rc = dp_check_float(op, a);
    return rc;
}

/* ---------------------------------------------------------------- matmul */

/* a and b as >= 2-D operands: a (K) is read as (1, K), b (K) as (K, 1). */
static void promote(dp_tensor *a2, dp_tensor *b2, const dp_tensor *a, const dp_tensor *b) {
    if (a->ndim == 1) {
        int64_t shape[2] = {1, a->shape[0]}, stride[2] = {a->shape[0] * a->stride[0], a->stride[0]};
        dp_gemm_raw_view(a2, a, 2, shape, stride, 0);
    } else {
        *a2 = *a;
    }
    if (b->ndim == 1) {
        int64_t shape[2] = {b->shape[0], 1}, stride[2] = {b->stride[0], 1};
        dp_gemm_raw_view(b2, b, 2, shape, stride, 0);
    } else {
        *b2 = *b;
    }
}

/* Check a @ b and find the output geometry: batch dims, and the output shape with promoted dims
 * dropped. */
static int matmul_shapes(const dp_tensor *a2, const dp_tensor *b2, const dp_tensor *a,
                         const dp_tensor *b, int32_t *nb, int64_t *batch_shape, int32_t *out_ndim,
                         int64_t *out_shape) {
    int64_t K = a2->shape[a2->ndim - 1];
    if (b2->shape[b2->ndim - 2] != K)
        return dp_fail(DP_ESHAPE, "matmul: inner dims differ (a is %s, b is %s)", dp_tensor_desc(a),
                       dp_tensor_desc(b));
    int32_t na = a2->ndim - 2, nbb = b2->ndim - 2;
    *nb = na > nbb ? na : nbb;
    for (int i = 0; i < *nb; i++) {
        int ia = i - (*nb - na), ib = i - (*nb - nbb);
        int64_t sa = ia >= 0 ? a2->shape[ia] : 1, sb = ib >= 0 ? b2->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return dp_fail(DP_ESHAPE, "matmul: batch dims do not broadcast (a is %s, b is %s)",
                           dp_tensor_desc(a), dp_tensor_desc(b));
        batch_shape[i] = sa == 1 ? sb : sa;
    }
    int32_t n = 0;
    for (int i = 0; i < *nb; i++) out_shape[n++] = batch_shape[i];
    if (a->ndim > 1) out_shape[n++] = a2->shape[a2->ndim - 2];
    if (b->ndim > 1) out_shape[n++] = b2->shape[b2->ndim - 1];
    *out_ndim = n;
    return 0;
}

/* out = a @ b without autograd. */
static dp_tensor *matmul_raw(dp_tensor *a, dp_tensor *b) {
    int rc = check_pair("matmul", "a", a, "b", b);
    if (rc) return NULL;
    if (a->ndim < 1 || b->ndim < 1)
        return dp_fail_null(DP_ESHAPE, "matmul: both operands need at least 1 dim (a is %s, b is %s)",
                            dp_tensor_desc(a), dp_tensor_desc(b));
    const dp_ops *ops = dp_ops_for(a->device);
    if (!ops) return NULL;
    dp_tensor a2, b2;
    promote(&a2, &b2, a, b);
    int32_t nb = 0, out_ndim = 0;
    int64_t batch_shape[8], out_shape[8];
    if (matmul_shapes(&a2, &b2, a, b, &nb, batch_shape, &out_ndim, out_shape)) return NULL;
    dp_tensor *out = dp_tensor_empty(a->dtype, a->device, out_ndim, out_shape);
    if (!out) return NULL;
    /* Only a matrix no kernel can read at all is copied. */
    dp_tensor *ac = NULL, *bc = NULL;
    rc = dp_gemm_readable(ops, &a2, &ac);
    if (!rc) rc = dp_gemm_readable(ops, &b2, &bc);
    if (!rc) rc = matmul_into(ops, out, ac ? ac : &a2, bc ? bc : &b2, nb, batch_shape);
    dp_tensor_release(ac);
    dp_tensor_release(bc);
    if (rc) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}

/* Undo 1-D promotion of a gradient computed for the promoted operand. */
static dp_tensor *reshape_to(dp_tensor *g, const dp_tensor *x) {
    if (!g) return NULL;
    dp_tensor *r = dp_reshape(g, x->ndim, x->shape);
    dp_tensor_release(g);
    return r;
}

static dp_tensor *transpose_last(dp_tensor *x) { return dp_transpose(x, x->ndim - 2, x->ndim - 1); }

/* ga = gy @ b^T and gb = a^T @ gy, summed over the batch dims each operand was broadcast along. */
static int matmul_backward(dp_node *node, dp_tensor *gy, dp_tensor **gi) {
    dp_tensor *a = node->saved[0], *b = node->saved[1];
    dp_tensor *a2 = a->ndim == 1 ? dp_unsqueeze(a, 0) : (dp_tensor_retain(a), a);
    dp_tensor *b2 = b->ndim == 1 ? dp_unsqueeze(b, 1) : (dp_tensor_retain(b), b);
    dp_tensor *gy2 = NULL;
    int rc = DP_ENOMEM;
    if (!a2 || !b2) goto done;
    /* gy with the promoted dims back: (batch..., M, N). */
    int32_t nb = a2->ndim > b2->ndim ? a2->ndim - 2 : b2->ndim - 2, n = 0;
    int64_t full[8];
    for (int i = 0; i < nb; i++) full[n++] = 1;
    for (int i = 0; i < a2->ndim - 2; i++) full[nb - (a2->ndim - 2) + i] = a2->shape[i];
    for (int i = 0; i < b2->ndim - 2; i++) {
        int j = nb - (b2->ndim - 2) + i;
        if (b2->shape[i] != 1) full[j] = b2->shape[i];
    }
    full[n++] = a2->shape[a2->ndim - 2];
    full[n++] = b2->shape[b2->ndim - 1];
    if (!(gy2 = dp_reshape(gy, n, full))) goto done;

    if (node->inputs[0]->requires_grad) {
        dp_tensor *bt = transpose_last(b2);
        dp_tensor *ga = bt ? dp_matmul(gy2, bt) : NULL;
        dp_tensor_release(bt);
        dp_tensor *summed = ga ? dp_sum_to_shape(ga, a2->ndim, a2->shape) : NULL;
        dp_tensor_release(ga);
        if (!(gi[0] = reshape_to(summed, a))) goto done;
    }
    if (node->inputs[1]->requires_grad) {
        dp_tensor *gb;
        if (b2->ndim == 2 && a2->ndim > 2) {
            /* A shared weight: one GEMM over all rows, a_rows^T (K, rows) @ gy_rows (rows, N). */
            int64_t a_rows[2] = {-1, a2->shape[a2->ndim - 1]}, g_rows[2] = {-1, full[n - 1]};
            dp_tensor *af = dp_reshape(a2, 2, a_rows), *gf = dp_reshape(gy2, 2, g_rows);
            dp_tensor *at = af ? transpose_last(af) : NULL;
            gb = at && gf ? dp_matmul(at, gf) : NULL;
            dp_tensor_release(at);
            dp_tensor_release(af);
            dp_tensor_release(gf);
        } else {
            dp_tensor *at = transpose_last(a2);
            dp_tensor *g = at ? dp_matmul(at, gy2) : NULL;
            dp_tensor_release(at);
            gb = g ? dp_sum_to_shape(g, b2->ndim, b2->shape) : NULL;
            dp_tensor_release(g);
        }
        if (!(gi[1] = reshape_to(gb, b))) goto done;
    }
    rc = 0;
done:
    dp_tensor_release(gy2);
    dp_tensor_release(a2);
    dp_tensor_release(b2);
    return rc;
}

dp_tensor *dp_matmul(dp_tensor *a, dp_tensor *b) {
    dp_tensor *out = matmul_raw(a, b);
    dp_tensor *inputs[2] = {a, b};
    if (!out || !dp_autograd_wanted(2, inputs)) return out;
    dp_node *node = dp_autograd_record(out, "matmul", matmul_backward, 2, inputs);
    if (!node) {
        dp_tensor_release(out);
        return NULL;
    }
    dp_node_save(node, 0, a);
    dp_node_save(node, 1, b);
    return out;
}

/* ---------------------------------------------------------------- linear */

/* Row stride of x's leading dims collapsed into one rows dim (x (..., in) -> (rows, in)), or -1
 * when they do not collapse without a copy. */
static int64_t rows_stride(const dp_tensor *x) {
    int64_t stride = -1, expect = 0;
    for (int i = x->ndim - 2; i >= 0; i--) {
        if (x->shape[i] == 1) continue;
        if (stride >= 0 && x->stride[i] != expect) return -1;
        if (stride < 0) stride = x->stride[i];
        expect = x->stride[i] * x->shape[i];
    }
    /* One row: BLAS never steps over it, so any stride reads it. */
    return stride < 0 ? 0 : stride;
}

int dp_linear_check(const char *op, const dp_tensor *x, const dp_tensor *w, const dp_tensor *bias) {
    int rc = check_pair(op, "x", x, "w", w);
    if (!rc && bias) rc = check_pair(op, "w", w, "bias", bias);
    if (rc) return rc;
    if (w->ndim != 2)
        return dp_fail(DP_ESHAPE, "%s: w must be (out, in), got %s", op, dp_tensor_desc(w));
    if (x->ndim < 1)
        return dp_fail(DP_ESHAPE, "%s: x must have at least 1 dim, got %s", op, dp_tensor_desc(x));
    if (x->shape[x->ndim - 1] != w->shape[1])
        return dp_fail(DP_ESHAPE, "%s: expected input width %lld, got %lld (x is %s, w is %s)", op,
                       (long long)w->shape[1], (long long)x->shape[x->ndim - 1], dp_tensor_desc(x),
                       dp_tensor_desc(w));
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        return dp_fail(DP_ESHAPE, "%s: bias must be (%lld) to match w %s, got %s", op,
                       (long long)w->shape[0], dp_tensor_desc(w), dp_tensor_desc(bias));
    return 0;
}

dp_tensor *dp_linear_gemm(dp_tensor *x, dp_tensor *w, dp_tensor *bias) {
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return NULL;
    int64_t in = w->shape[1], outf = w->shape[0], rows = 1;
    int64_t out_shape[8];
    for (int i = 0; i < x->ndim - 1; i++) {
        rows *= x->shape[i];
        out_shape[i] = x->shape[i];
    }
    out_shape[x->ndim - 1] = outf;
    dp_tensor *out = dp_tensor_empty(x->dtype, x->device, x->ndim, out_shape);
    if (!out) return NULL;

    /* x as (1, rows, in), w as (1, out, in) read transposed. */
    dp_tensor *xc = NULL, *wc = NULL, xv, wv, ov;
    int64_t rs = rows_stride(x), xs = x->stride[x->ndim - 1];
    if (rs < 0 || dp_gemm_layout(rows, in, rs, xs) < 0) {
        if (!(xc = dp_gemm_contiguous(ops, x))) goto fail;
        rs = in;
        xs = 1;
    }
    if (dp_gemm_readable(ops, w, &wc)) goto fail;
    int64_t xshape[3] = {1, rows, in}, xstride[3] = {0, rs, xs};
    dp_gemm_raw_view(&xv, xc ? xc : x, 3, xshape, xstride, 0);
    const dp_tensor *wm = wc ? wc : w;
    int32_t tw;
    dp_gemm_operand(&wv, &tw, wm, 1, 0, 0);
    /* wv is w (out, in), trans 0, or w^T (in, out) when w's unit stride runs down its columns:
     * as the right operand w^T (in, out) this flips. */
    int32_t trans_b = !tw;
    int64_t oshape[3] = {1, rows, outf}, ostride[3] = {rows * outf, outf, 1};
    dp_gemm_raw_view(&ov, out, 3, oshape, ostride, 0);
    double beta = 0;
    if (bias) {
        /* Start from the bias rows and accumulate onto them (beta = 1): one rounding for bf16. */
        int64_t bshape[2] = {rows, outf}, bstride[2] = {0, bias->stride[0]};
        dp_tensor bv, o2;
        int64_t o2stride[2] = {outf, 1};
        dp_gemm_raw_view(&bv, bias, 2, bshape, bstride, 0);
        dp_gemm_raw_view(&o2, out, 2, bshape, o2stride, 0);
        if (ops->copy(&o2, &bv)) goto fail;
        beta = 1;
    }
    if (ops->gemm(&ov, &xv, &wv, 0, trans_b, 1.0, beta)) goto fail;
    dp_tensor_release(xc);
    dp_tensor_release(wc);
    return out;
fail:
    dp_tensor_release(xc);
    dp_tensor_release(wc);
    dp_tensor_release(out);
    return NULL;
}

/* gx = gy @ w, gw = gy_rows^T @ x_rows, gbias = gy summed over rows. Parameters registered with
 * an active DP engine get no gradient here: the engine receives x and gy instead (a tap) and
 * forms their clipped per-sample sum itself. */
int dp_linear_grads(dp_node *node, dp_tensor *gy, dp_tensor **gi) {
    dp_tensor *x = node->saved[0], *w = node->saved[1];
    int64_t outf = w->shape[0], in = w->shape[1];
    int64_t grows_shape[2] = {-1, outf}, xrows_shape[2] = {-1, in};
    int has_bias = node->n_inputs > 2;
    dp_psg_param *pw = node->inputs[1]->requires_grad ? dp_psg_lookup(node->inputs[1]) : NULL;
    dp_psg_param *pb = has_bias && node->inputs[2]->requires_grad ? dp_psg_lookup(node->inputs[2]) : NULL;
    if ((pw || pb) && dp_psg_tap_linear(pw, pb, x, gy)) return DP_EGRAPH;
    dp_tensor *g2 = dp_reshape(gy, 2, grows_shape);
    if (!g2) return DP_ENOMEM;
    int rc = DP_ENOMEM;
    if (node->inputs[0]->requires_grad) {
        dp_tensor *gx = dp_matmul(g2, w);
        if (!(gi[0] = reshape_to(gx, x))) goto done;
    }
    if (node->inputs[1]->requires_grad && !pw) {
        dp_tensor *x2 = dp_reshape(x, 2, xrows_shape);
        dp_tensor *gt = transpose_last(g2);
        gi[1] = x2 && gt ? dp_matmul(gt, x2) : NULL;
        dp_tensor_release(gt);
        dp_tensor_release(x2);
        if (!gi[1]) goto done;
    }
    if (has_bias && node->inputs[2]->requires_grad && !pb) {
        int32_t dim0 = 0;
        if (!(gi[2] = dp_sum(g2, 1, &dim0, 0))) goto done;
    }
    rc = 0;
done:
    dp_tensor_release(g2);
    return rc;
}

dp_tensor *dp_linear(dp_tensor *x, dp_tensor *w, dp_tensor *bias) {
    dp_tensor *out = dp_linear_check("linear", x, w, bias) ? NULL : dp_linear_gemm(x, w, bias);
    dp_tensor *inputs[3] = {x, w, bias};
    int32_t n = bias ? 3 : 2;
    if (!out || !dp_autograd_wanted(n, inputs)) return out;
    dp_node *node = dp_autograd_record(out, "linear", dp_linear_grads, n, inputs);
    if (!node) {
        dp_tensor_release(out);
        return NULL;
    }
    dp_node_save(node, 0, x);
    dp_node_save(node, 1, w);
    return out;
}
