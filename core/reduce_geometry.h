/* reduce_geometry.h: how a reduction walks x, shared by the CPU (kernels/cpu/reduce.c) and CUDA
 * (kernels/cuda/reduce.cu) kernels: x split into kept dims (out is row-major over them) and
 * reduced dims, size-1 dims dropped and neighbours merged where the strides allow, so most
 * reductions become one or two loops. Host code; the struct is passed to CUDA kernels by value.
 * Include after internal.h (dp_shape_numel; in CUDA files through cuda_common.h). */
#ifndef DP_REDUCE_GEOMETRY_H
#define DP_REDUCE_GEOMETRY_H
#include <stdint.h>

typedef struct dp_red_geom {
    int32_t nk, nr;
    int64_t ks[8], kst[8];   /* kept: sizes, x strides */
    int64_t rs[8], rst[8];   /* reduced: sizes, x strides */
    int64_t kn, rn;          /* element counts */
} dp_red_geom;

/* Append dim (s, st) to a list, merging it into the previous one when that steps over it evenly. */
static inline void dp_red_add_dim(int64_t *size, int64_t *stride, int32_t *n, int64_t s, int64_t st) {
    if (s == 1) return;
    if (*n > 0 && stride[*n - 1] == st * s) {
        size[*n - 1] *= s;
        stride[*n - 1] = st;
        return;
    }
    size[*n] = s;
    stride[*n] = st;
    (*n)++;
}

/* reduced[d] != 0 for the dims of x being reduced. */
static inline void dp_red_geom_build(dp_red_geom *g, const dp_tensor *x, const int *reduced) {
    g->nk = g->nr = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (reduced[d]) dp_red_add_dim(g->rs, g->rst, &g->nr, x->shape[d], x->stride[d]);
        else dp_red_add_dim(g->ks, g->kst, &g->nk, x->shape[d], x->stride[d]);
    }
    if (!g->nk) { g->ks[0] = 1; g->kst[0] = 0; g->nk = 1; }
    if (!g->nr) { g->rs[0] = 1; g->rst[0] = 0; g->nr = 1; }
    g->kn = dp_shape_numel(g->nk, g->ks);
    g->rn = dp_shape_numel(g->nr, g->rs);
}

#endif
