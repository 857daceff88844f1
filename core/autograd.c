/* autograd.c: the reverse-mode tape. Ops record a node per result (dp_autograd_record); backward
 * walks the nodes in reverse topological order, calling each op's backward function and summing
 * gradients that meet at a tensor. Grad mode is per thread. */
#include <stdio.h>
#include <stdlib.h>
#include "internal.h"

static _Thread_local int32_t grad_disabled;

void dp_set_grad_enabled(int32_t enabled) { grad_disabled = !enabled; }
int32_t dp_is_grad_enabled(void) { return !grad_disabled; }

int dp_autograd_wanted(int32_t n, dp_tensor *const *inputs) {
    if (grad_disabled) return 0;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad) return 1;
    return 0;
}

dp_node *dp_autograd_record(dp_tensor *out, const char *op, dp_backward_fn backward, int32_t n,
                            dp_tensor *const *inputs) {
    if (n > DP_NODE_MAX_INPUTS)
        return dp_fail_null(DP_EINTERNAL, "%s: %d autograd inputs, at most %d", op, n, DP_NODE_MAX_INPUTS);
    dp_node *node = calloc(1, sizeof *node);
    if (!node) return dp_fail_null(DP_ENOMEM, "%s: out of memory for an autograd node", op);
    node->op = op;
    node->backward = backward;
    node->refcount = 1;
    node->n_inputs = n;
    for (int i = 0; i < n; i++) {
        node->inputs[i] = inputs[i];
        dp_tensor_retain(inputs[i]);
    }
    node->out_ndim = out->ndim;
    for (int i = 0; i < out->ndim; i++) node->out_shape[i] = out->shape[i];
    node->out_dtype = out->dtype;
    if (out->grad_fn) dp_node_release(out->grad_fn);
    out->grad_fn = node;
    out->requires_grad = 1;
    return node;
}

void dp_node_save(dp_node *node, int32_t slot, dp_tensor *t) {
    dp_tensor_retain(t);
    dp_tensor_release(node->saved[slot]);
    node->saved[slot] = t;
}

static void node_free_buffers(dp_node *node) {
    for (int i = 0; i < DP_NODE_MAX_SAVED; i++) { dp_tensor_release(node->saved[i]); node->saved[i] = NULL; }
    for (int i = 0; i < node->n_inputs; i++) { dp_tensor_release(node->inputs[i]); node->inputs[i] = NULL; }
    dp_tensor_release(node->grad_accum);
    node->grad_accum = NULL;
}

void dp_node_release(dp_node *node) {
    if (!node || __atomic_sub_fetch(&node->refcount, 1, __ATOMIC_ACQ_REL) > 0) return;
    node_free_buffers(node);
    free(node);
}

const char *dp_tensor_op_name(const dp_tensor *t) {
    return t && t->grad_fn ? t->grad_fn->op : "";
}

int dp_tensor_set_requires_grad(dp_tensor *t, int32_t requires_grad) {
    if (!t) return dp_fail(DP_EARG, "requires_grad: tensor is NULL");
    if (t->grad_fn && !requires_grad)
        return dp_fail(DP_EGRAPH, "requires_grad: %s is the result of %s; detach it instead",
                       dp_tensor_desc(t), t->grad_fn->op);
    if (requires_grad && !dp_dtype_is_float(t->dtype))
        return dp_fail(DP_EDTYPE, "requires_grad: only float tensors can require grad, got %s", dp_tensor_desc(t));
    t->requires_grad = requires_grad ? 1 : 0;
    return 0;
}

int dp_tensor_set_grad(dp_tensor *t, dp_tensor *g) {
    if (!t) return dp_fail(DP_EARG, "set_grad: tensor is NULL");
    if (g && (g->ndim != t->ndim || dp_tensor_numel(g) != dp_tensor_numel(t)))
        return dp_fail(DP_ESHAPE, "set_grad: gradient %s does not match %s", dp_tensor_desc(g), dp_tensor_desc(t));
    dp_tensor_retain(g);
    dp_tensor_release(t->grad);
    t->grad = g;
    return 0;
}

dp_tensor *dp_sum_to_shape(dp_tensor *g, int32_t ndim, const int64_t *shape) {
    int32_t dims[8], n = 0, lead = g->ndim - ndim;
    if (lead < 0)
        return dp_fail_null(DP_ESHAPE, "sum_to_shape: gradient %s has fewer dims than its input (%d)",
                            dp_tensor_desc(g), ndim);
    for (int i = 0; i < g->ndim; i++)
        if (i < lead || (shape[i - lead] == 1 && g->shape[i] != 1)) dims[n++] = i;
    if (n == 0) {
        if (lead == 0) { dp_tensor_retain(g); return g; }
        return dp_reshape(g, ndim, shape);
    }
    dp_tensor *s = dp_sum(g, n, dims, 1);
    if (!s) return NULL;
    dp_tensor *r = dp_reshape(s, ndim, shape);
    dp_tensor_release(s);
    return r;
}

/* ---------------------------------------------------------------- the engine */

typedef struct {
    dp_node **items;
    int64_t count, capacity;
} node_list;

static int list_push(node_list *l, dp_node *n) {
    if (l->count == l->capacity) {
        int64_t cap = l->capacity ? l->capacity * 2 : 64;
        dp_node **items = realloc(l->items, sizeof *items * (size_t)cap);
        if (!items) return dp_fail(DP_ENOMEM, "backward: out of memory for the node list");
        l->items = items;
        l->capacity = cap;
    }
    l->items[l->count++] = n;
    return 0;
}

/* True when only the caller holds g and its storage, so it may be updated in place. */
static int exclusively_owned(const dp_tensor *g) {
    return g->refcount == 1 && g->storage->refcount == 1 && dp_tensor_is_contiguous(g) && !g->grad_fn;
}

/* *slot += g, taking a reference to g (or a private copy of it) on first use. */
static int accumulate(dp_tensor **slot, dp_tensor *g, int for_leaf) {
    if (!*slot) {
        if (!for_leaf || exclusively_owned(g)) { dp_tensor_retain(g); *slot = g; return 0; }
        /* A leaf's .grad is updated in place by later passes: never share g's storage. */
        *slot = dp_clone(g);
        return *slot ? 0 : DP_ENOMEM;
    }
    if (exclusively_owned(*slot) || for_leaf) return dp_axpy_(*slot, 1.0, g);
    dp_tensor *sum = dp_add(*slot, g);
    if (!sum) return DP_ENOMEM;
    dp_tensor_release(*slot);
    *slot = sum;
    return 0;
}

static int check_grad(const dp_node *node, const dp_tensor *input, const dp_tensor *g, int i) {
    if (g->ndim != input->ndim || dp_tensor_numel(g) != dp_tensor_numel(input))
        return dp_fail(DP_EINTERNAL, "backward of %s: gradient for input %d is %s, expected the shape of %s",
                       node->op, i, dp_tensor_desc(g), dp_tensor_desc(input));
    for (int d = 0; d < g->ndim; d++)
        if (g->shape[d] != input->shape[d])
            return dp_fail(DP_EINTERNAL, "backward of %s: gradient for input %d is %s, expected the shape of %s",
                           node->op, i, dp_tensor_desc(g), dp_tensor_desc(input));
    return 0;
}

/* Collect every node reachable from root (each once), counting for each node how many
 * consumers in the graph will send it a gradient. */
static int collect(dp_node *root, node_list *all) {
    static int32_t epoch;
    int32_t mark = __atomic_add_fetch(&epoch, 1, __ATOMIC_RELAXED);
    node_list stack = {0};
    int rc = list_push(&stack, root);
    root->visit_mark = mark;
    root->pending = 0;
    while (!rc && stack.count) {
        dp_node *n = stack.items[--stack.count];
        if ((rc = list_push(all, n))) break;
        __atomic_add_fetch(&n->refcount, 1, __ATOMIC_RELAXED);
        for (int i = 0; i < n->n_inputs; i++) {
            dp_tensor *in = n->inputs[i];
            if (!in || !in->requires_grad || !in->grad_fn) continue;
            dp_node *child = in->grad_fn;
            if (child->visit_mark != mark) {
                child->visit_mark = mark;
                child->pending = 0;
                if ((rc = list_push(&stack, child))) break;
            }
            child->pending++;
        }
    }
    free(stack.items);
    return rc;
}

static int run_node(dp_node *node, node_list *ready, int retain_graph) {
    dp_tensor *grads[DP_NODE_MAX_INPUTS] = {0};
    int rc = 0;
    if (node->freed)
        return dp_fail(DP_EGRAPH, "backward: the graph through %s was already freed by an earlier backward; "
                       "pass retain_graph to backward twice", node->op);
    if (node->grad_accum) {
        rc = node->backward(node, node->grad_accum, grads);
        if (rc) {
            char ctx[96];
            snprintf(ctx, sizeof ctx, "backward of %s", node->op);
            dp_error_prefix(ctx);
        }
    }
    for (int i = 0; i < node->n_inputs && !rc; i++) {
        dp_tensor *in = node->inputs[i];
        if (!in || !in->requires_grad) continue;
        if (grads[i] && (rc = check_grad(node, in, grads[i], i))) break;
        if (in->grad_fn) {
            if (grads[i]) rc = accumulate(&in->grad_fn->grad_accum, grads[i], 0);
            if (!rc && --in->grad_fn->pending == 0) rc = list_push(ready, in->grad_fn);
        } else if (grads[i]) {
            rc = dp_psg_check_leaf(in, node->op);
            if (!rc) rc = accumulate(&in->grad, grads[i], 1);
        }
    }
    for (int i = 0; i < DP_NODE_MAX_INPUTS; i++) dp_tensor_release(grads[i]);
    dp_tensor_release(node->grad_accum);
    node->grad_accum = NULL;
    if (!retain_graph) {
        node_free_buffers(node);
        node->freed = 1;
    }
    return rc;
}

int dp_backward(dp_tensor *root, const dp_tensor *grad_root, int32_t retain_graph) {
    if (!root) return dp_fail(DP_EARG, "backward: tensor is NULL");
    if (!root->requires_grad)
        return dp_fail(DP_EGRAPH, "backward: %s does not require grad (no parameter reaches it)",
                       dp_tensor_desc(root));
    if (root->grad_fn && root->grad_fn->freed)
        return dp_fail(DP_EGRAPH, "backward: the graph behind %s (op %s) was already freed by an earlier "
                       "backward; pass retain_graph to backward twice", dp_tensor_desc(root), root->grad_fn->op);
    int prev = dp_is_grad_enabled();
    dp_set_grad_enabled(0);
    dp_tensor *seed;
    if (grad_root) {
        if (grad_root->ndim != root->ndim || dp_tensor_numel(grad_root) != dp_tensor_numel(root)) {
            dp_set_grad_enabled(prev);
            return dp_fail(DP_ESHAPE, "backward: gradient %s does not match %s", dp_tensor_desc(grad_root),
                           dp_tensor_desc(root));
        }
        seed = dp_cast((dp_tensor *)grad_root, root->dtype);
    } else {
        if (dp_tensor_numel(root) != 1) {
            dp_set_grad_enabled(prev);
            return dp_fail(DP_EGRAPH, "backward: %s has %lld elements; pass a gradient for non-scalar roots",
                           dp_tensor_desc(root), (long long)dp_tensor_numel(root));
        }
        seed = dp_tensor_full(root->dtype, root->device, root->ndim, root->shape, 1.0);
    }
    int rc = seed ? 0 : DP_ENOMEM;
    if (!rc && !root->grad_fn) {
        rc = dp_psg_check_leaf(root, "backward");
        if (!rc) rc = accumulate(&root->grad, seed, 1);
    } else if (!rc) {
        node_list all = {0}, ready = {0};
        rc = collect(root->grad_fn, &all);
        if (!rc) {
            dp_tensor_retain(seed);
            root->grad_fn->grad_accum = seed;
            rc = list_push(&ready, root->grad_fn);
        }
        while (!rc && ready.count) {
            dp_node *n = ready.items[--ready.count];
            rc = run_node(n, &ready, retain_graph);
        }
        for (int64_t i = 0; i < all.count; i++) {
            dp_tensor_release(all.items[i]->grad_accum);
            all.items[i]->grad_accum = NULL;
            dp_node_release(all.items[i]);
        }
        free(all.items);
        free(ready.items);
    }
    dp_tensor_release(seed);
    dp_set_grad_enabled(prev);
    return rc;
}
