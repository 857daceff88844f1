/* dp_test.h: the tiny harness shared by the C tests: checks that count, a float64 gradient checker
 * by central finite differences, and a leak check on live tensor headers. Header-only. */
#ifndef DP_TEST_H
#define DP_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp.h"

/* Exit status of a test that cannot run here (no GPU): ctest reports it as skipped. */
#define DP_TEST_SKIP 77

static int dp_test_failures __attribute__((unused)) = 0;
static int dp_test_checks __attribute__((unused)) = 0;

#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        dp_test_checks++;                                                           \
        if (!(cond)) {                                                              \
            dp_test_failures++;                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, "\n");                                                  \
        }                                                                           \
    } while (0)

#define CHECK_CLOSE(a, b, tol)                                                      \
    CHECK(fabs((double)(a) - (double)(b)) <= (tol) * (1.0 + fabs((double)(b))),     \
          "%.17g vs %.17g (tol %g)", (double)(a), (double)(b), (double)(tol))

/* A call that must succeed; prints dp_last_error() otherwise. */
#define CHECK_OK(expr)                                                              \
    do {                                                                            \
        int rc_ = (expr);                                                           \
        CHECK(rc_ == 0, "rc %d: %s", rc_, dp_last_error());                          \
    } while (0)

#define CHECK_PTR(ptr) CHECK((ptr) != NULL, "NULL: %s", dp_last_error())

/* Print the summary and return the exit code for main(). */
static inline int dp_test_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, dp_test_checks, dp_test_failures);
    return dp_test_failures ? 1 : 0;
}

/* Deterministic values in [-1, 1) for test inputs (an LCG, independent of the library's RNG). */
static inline double dp_test_uniform(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static inline dp_tensor *dp_test_random(dp_dtype dtype, int32_t ndim, const int64_t *shape,
                                 uint64_t seed) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    uint64_t s = seed * 2654435761ULL + 1;
    for (int64_t i = 0; i < n; i++) v[i] = dp_test_uniform(&s);
    dp_tensor *t = dp_tensor_from_f64(dtype, ndim, shape, v);
    free(v);
    return t;
}

/* f maps inputs to one output tensor (new reference, or NULL on error). */
typedef dp_tensor *(*dp_test_fn)(dp_tensor **inputs, void *ctx);

/* Gradient check in float64: the loss is sum(f(x) * r) for a fixed random r, so every output
 * element's gradient matters. Compares the autograd gradient of each input that requires grad
 * against central differences with step h. Returns the number of mismatches (also counted as
 * failures). Inputs must be f64 CPU tensors. */
static inline int dp_test_gradcheck(const char *name, dp_test_fn f, void *ctx, int32_t n_inputs,
                             dp_tensor **inputs, double h, double tol) {
    int bad = 0;
    dp_tensor *y = f(inputs, ctx);
    CHECK(y != NULL, "%s: forward failed: %s", name, dp_last_error());
    if (!y) return 1;
    dp_tensor *r = dp_test_random(DP_F64, y->ndim, y->shape, 99);
    dp_tensor *yr = dp_mul(y, r);
    dp_tensor *loss = dp_sum(yr, 0, NULL, 0);
    CHECK(loss != NULL, "%s: loss failed: %s", name, dp_last_error());
    if (!loss) return 1;
    for (int i = 0; i < n_inputs; i++) dp_tensor_set_grad(inputs[i], NULL);
    int rc = dp_backward(loss, NULL, 0);
    CHECK(rc == 0, "%s: backward failed: %s", name, dp_last_error());
    dp_tensor_release(loss);
    dp_tensor_release(yr);
    dp_tensor_release(y);
    if (rc) { dp_tensor_release(r); return 1; }

    dp_set_grad_enabled(0);
    for (int i = 0; i < n_inputs; i++) {
        dp_tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        CHECK(x->grad != NULL, "%s: input %d got no gradient", name, i);
        if (!x->grad) { bad++; continue; }
        int64_t n = dp_tensor_numel(x);
        double *analytic = malloc(sizeof(double) * (size_t)(n ? n : 1));
        dp_tensor_to_f64(x->grad, analytic);
        for (int64_t k = 0; k < n; k++) {
            int64_t idx[8], rem = k;
            for (int d = x->ndim - 1; d >= 0; d--) { idx[d] = rem % x->shape[d]; rem /= x->shape[d]; }
            double x0;
            dp_tensor_get(x, idx, &x0);
            double side[2];
            for (int s = 0; s < 2; s++) {
                dp_tensor_set(x, idx, x0 + (s ? -h : h));
                dp_tensor *ys = f(inputs, ctx);
                dp_tensor *ysr = ys ? dp_mul(ys, r) : NULL;
                dp_tensor *ls = ysr ? dp_sum(ysr, 0, NULL, 0) : NULL;
                side[s] = 0;
                if (ls) dp_tensor_get_flat(ls, 0, &side[s]);
                dp_tensor_release(ls);
                dp_tensor_release(ysr);
                dp_tensor_release(ys);
            }
            dp_tensor_set(x, idx, x0);
            double numeric = (side[0] - side[1]) / (2 * h);
            if (fabs(numeric - analytic[k]) > tol * (1 + fabs(numeric))) {
                if (bad < 5)
                    fprintf(stderr, "FAIL %s: d/dinput%d[%lld]: autograd %.10g, finite diff %.10g\n",
                            name, i, (long long)k, analytic[k], numeric);
                bad++;
            }
        }
        free(analytic);
    }
    dp_set_grad_enabled(1);
    dp_tensor_release(r);
    dp_test_checks++;
    if (bad) dp_test_failures++;
    return bad;
}

#endif
