/* gemm_onednn.c: GEMM through oneDNN's matmul primitive: bf16 inputs with f32 accumulation on
 * CPUs that have a bf16 kernel (AMX, AVX-512 BF16), and f32 or f16 when DP_GEMM_ENGINE=onednn.
 * Primitives are created on first use of a geometry and kept in a small LRU cache. Whether a
 * dtype has any kernel on this CPU is probed once; a dtype without one (bf16 on AVX2-only CPUs:
 * dnnl_unimplemented) is never tried again. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <dnnl.h>
#include <dnnl_debug.h>
#include "gemm_impl.h"

enum { CACHE_SIZE = 32 };

typedef struct gemm_key {
    int32_t data_type;
    int32_t pad;
    int64_t batch_a, batch_b, batch, M, N, K;
    int64_t stride_a[3], stride_b[3];
    double alpha, beta;
} gemm_key;

typedef struct cache_entry {
    gemm_key key;
    int used;
    dnnl_primitive_t prim;   /* NULL: oneDNN has no kernel for this geometry */
    dnnl_memory_t src, weights, dst;
    uint64_t last_use;
} cache_entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cache_entry cache[CACHE_SIZE];
static uint64_t cache_tick;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static int engine_state;                  /* 0 untried, 1 ready, -1 failed */
static char engine_why[192];              /* why it failed */
static int dtype_state[DP_NUM_DTYPES];    /* 0 unprobed, 1 has a kernel, -1 none */

#define DNNL_TRY(call)                                                                      \
    do {                                                                                    \
        dnnl_status_t st_ = (call);                                                         \
        if (st_ != dnnl_success) {                                                          \
            status = st_;                                                                   \
            failed_call = #call;                                                            \
            goto fail;                                                                      \
        }                                                                                   \
    } while (0)

static void entry_clear(cache_entry *e) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->src) dnnl_memory_destroy(e->src);
    if (e->weights) dnnl_memory_destroy(e->weights);
    if (e->dst) dnnl_memory_destroy(e->dst);
    memset(e, 0, sizeof *e);
}

__attribute__((destructor)) static void onednn_release(void) {
    for (int i = 0; i < CACHE_SIZE; i++) entry_clear(&cache[i]);
    if (stream) dnnl_stream_destroy(stream);
    if (engine) dnnl_engine_destroy(engine);
    stream = NULL;
    engine = NULL;
}

/* Length of the function name in a DNNL_TRY call's text, for messages. */
static int call_name_len(const char *call) {
    int len = 0;
    while (call[len] && call[len] != '(') len++;
    return len;
}

static int fail_call(const char *call, dnnl_status_t status) {
    return dp_fail(DP_EINTERNAL, "gemm: oneDNN %.*s failed: %s", call_name_len(call), call,
                   dnnl_status2str(status));
}

static int ensure_engine(void) {
    if (engine_state) return engine_state;
    dnnl_status_t status = dnnl_success;
    const char *failed_call = "";
    DNNL_TRY(dnnl_engine_create(&engine, dnnl_cpu, 0));
    DNNL_TRY(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    engine_state = 1;
    return 1;
fail:
    snprintf(engine_why, sizeof engine_why, "oneDNN %.*s failed: %s", call_name_len(failed_call),
             failed_call, dnnl_status2str(status));
    engine_state = -1;
    return -1;
}

/* Fill e with a primitive for key. Returns 0, 1 when oneDNN has no kernel for it (e->prim stays
 * NULL and the entry remembers that), or a negative status after dp_fail. */
static int entry_create(cache_entry *e, const gemm_key *key) {
    dnnl_status_t status = dnnl_success;
    const char *failed_call = "";
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post_ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t src_md, weights_md, dst_md;
    dnnl_matmul_desc_t matmul;
    dnnl_data_type_t dt = (dnnl_data_type_t)key->data_type;
    dnnl_dims_t src_dims = {key->batch_a, key->M, key->K};
    dnnl_dims_t weights_dims = {key->batch_b, key->K, key->N};
    dnnl_dims_t dst_dims = {key->batch, key->M, key->N};
    dnnl_dims_t src_strides = {key->stride_a[0], key->stride_a[1], key->stride_a[2]};
    dnnl_dims_t weights_strides = {key->stride_b[0], key->stride_b[1], key->stride_b[2]};
    dnnl_dims_t dst_strides = {key->M * key->N, key->N, 1};
    int rc = 0;

    memset(e, 0, sizeof *e);
    e->key = *key;
    e->used = 1;
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&src_md, 3, src_dims, dt, src_strides));
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&weights_md, 3, weights_dims, dt, weights_strides));
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&dst_md, 3, dst_dims, dt, dst_strides));
    DNNL_TRY(dnnl_matmul_desc_init(&matmul, &src_md, &weights_md, NULL, &dst_md));
    DNNL_TRY(dnnl_primitive_attr_create(&attr));
    if (key->alpha != 1) {
        float scale = (float)key->alpha;
        DNNL_TRY(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale));
    }
    if (key->beta != 0) {
        DNNL_TRY(dnnl_post_ops_create(&post_ops));
        DNNL_TRY(dnnl_post_ops_append_sum(post_ops, (float)key->beta));
        DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, post_ops));
    }
    status = dnnl_primitive_desc_create(&pd, &matmul, attr, engine, NULL);
    if (status == dnnl_unimplemented) {
        rc = 1;
        goto out;
    }
    if (status != dnnl_success) {
        failed_call = "dnnl_primitive_desc_create";
        goto fail;
    }
    DNNL_TRY(dnnl_primitive_create(&e->prim, pd));
    DNNL_TRY(dnnl_memory_create(&e->src, &src_md, engine, DNNL_MEMORY_NONE));
    DNNL_TRY(dnnl_memory_create(&e->weights, &weights_md, engine, DNNL_MEMORY_NONE));
    DNNL_TRY(dnnl_memory_create(&e->dst, &dst_md, engine, DNNL_MEMORY_NONE));
    goto out;
fail:
    rc = fail_call(failed_call, status);
    entry_clear(e);
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (post_ops) dnnl_post_ops_destroy(post_ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return rc;
}

/* The slot holding key, else a free or least recently used slot (cleared, used = 0). */
static cache_entry *cache_find(const gemm_key *key) {
    cache_entry *victim = &cache[0];
    for (int i = 0; i < CACHE_SIZE; i++) {
        cache_entry *e = &cache[i];
        if (e->used && !memcmp(&e->key, key, sizeof *key)) return e;
        if (!e->used) victim = e;
        else if (victim->used && e->last_use < victim->last_use) victim = e;
    }
    entry_clear(victim);
    return victim;
}

/* A small plain problem tells whether the dtype has any kernel here: 0 yes, 1 no, or a negative
 * status. */
static int probe_dtype(dnnl_data_type_t dt) {
    enum { P = 16 };
    gemm_key key;
    memset(&key, 0, sizeof key);
    key.data_type = dt;
    key.batch_a = key.batch_b = key.batch = 1;
    key.M = key.N = key.K = P;
    key.stride_a[0] = key.stride_b[0] = P * P;
    key.stride_a[1] = key.stride_b[1] = P;
    key.stride_a[2] = key.stride_b[2] = 1;
    key.alpha = 1;
    cache_entry *e = cache_find(&key);
    if (e->used) return e->prim ? 0 : 1;
    return entry_create(e, &key);
}

static void operand_strides(int64_t *strides, int64_t *count, const dp_gemm_operand *op,
                            int64_t batch) {
    *count = op->batch_stride == 0 ? 1 : batch;
    strides[0] = op->batch_stride == 0 ? op->rows * op->ld : op->batch_stride;
    /* op(x)[i][j] lives at i*ld + j when stored as itself, at j*ld + i when transposed. */
    strides[1] = op->trans ? 1 : op->ld;
    strides[2] = op->trans ? op->ld : 1;
}

/* The reason oneDNN cannot run a problem, as the error when the caller asked for oneDNN. */
static int unavailable(int explain, const char *why) {
    if (explain) dp_fail(DP_EUNSUPPORTED, "%s", why);
    return 1;
}

int dp_gemm_onednn(const dp_gemm_problem *p, int explain) {
    dnnl_data_type_t dt;
    char why[256];
    switch (p->dtype) {
    case DP_F32: dt = dnnl_f32; break;
    case DP_BF16: dt = dnnl_bf16; break;
    case DP_F16: dt = dnnl_f16; break;
    default:
        snprintf(why, sizeof why, "oneDNN has no %s matmul", dp_dtype_name(p->dtype));
        return unavailable(explain, why);
    }
    if (p->batch > 1 && p->a.batch_stride == 0 && p->b.batch_stride == 0)
        return unavailable(explain, "oneDNN's matmul cannot broadcast both operands over a batch");
    gemm_key key;
    memset(&key, 0, sizeof key);
    key.data_type = dt;
    key.batch = p->batch;
    key.M = p->M;
    key.N = p->N;
    key.K = p->K;
    operand_strides(key.stride_a, &key.batch_a, &p->a, p->batch);
    operand_strides(key.stride_b, &key.batch_b, &p->b, p->batch);
    key.alpha = p->alpha;
    key.beta = p->beta;

    dnnl_status_t status = dnnl_success;
    const char *failed_call = "";
    int rc = 0;
    pthread_mutex_lock(&cache_lock);
    if (ensure_engine() < 0) {
        snprintf(why, sizeof why, "%s", engine_why);
        rc = 1;
        goto out;
    }
    if (dtype_state[p->dtype] == 0) {
        int probe = probe_dtype(dt);
        if (probe < 0) {
            rc = probe;
            goto out;
        }
        dtype_state[p->dtype] = probe == 0 ? 1 : -1;
    }
    if (dtype_state[p->dtype] < 0) {
        snprintf(why, sizeof why, "oneDNN has no %s matmul on this CPU "
                 "(dnnl_primitive_desc_create: unimplemented)", dnnl_dt2str(dt));
        rc = 1;
        goto out;
    }
    cache_entry *e = cache_find(&key);
    if (!e->used && (rc = entry_create(e, &key)) < 0) goto out;
    e->last_use = ++cache_tick;
    if (!e->prim) {
        snprintf(why, sizeof why, "oneDNN has no %s matmul for this geometry on this CPU "
                 "(dnnl_primitive_desc_create: unimplemented)", dnnl_dt2str(dt));
        rc = 1;
        goto out;
    }
    /* Execution stays under the lock: the cached memories and the one stream are shared, and
     * oneDNN already spreads one matmul over all cores. */
    DNNL_TRY(dnnl_memory_set_data_handle(e->src, (void *)p->a.data));
    DNNL_TRY(dnnl_memory_set_data_handle(e->weights, (void *)p->b.data));
    DNNL_TRY(dnnl_memory_set_data_handle(e->dst, p->out));
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->weights}, {DNNL_ARG_DST, e->dst}};
    DNNL_TRY(dnnl_primitive_execute(e->prim, stream, 3, args));
    DNNL_TRY(dnnl_stream_wait(stream));
    goto out;
fail:
    rc = fail_call(failed_call, status);
out:
    pthread_mutex_unlock(&cache_lock);
    return rc == 1 ? unavailable(explain, why) : rc;
}
