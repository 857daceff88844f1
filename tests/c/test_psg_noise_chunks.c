/* test_psg_noise_chunks.c: dp_psg_finish adds noise to large accumulators in chunks (so that
 * measuring the noise it added needs no whole-tensor copies). Checks, for parameters larger than
 * several chunks (odd and even sizes, f32 and f64): the noise equals one dp_noise_add_ over the
 * whole tensor from a generator at the same position, bit for bit, the generator ends at the same
 * counter, and noise_norm equals the f64 norm of that noise. An empty logical batch is used, so
 * the accumulator starts at zero and .grad is the noise alone (scale 1). */
#include "dp_test.h"

static void check_size(dp_dtype dt, int64_t n) {
    dp_tensor *p = dp_tensor_zeros(dt, DP_CPU, 1, &n);
    dp_tensor_set_requires_grad(p, 1);
    p->is_param = 1;
    dp_psg *psg = dp_psg_new();
    CHECK(dp_psg_add_param(psg, p, "big", 0) == 0, "%s", dp_last_error());
    dp_noise *a = dp_noise_new_seeded(7, 3, 11), *b = dp_noise_new_seeded(7, 3, 11);
    CHECK_OK(dp_psg_finish(psg, a, 0.5, 1.0));
    dp_tensor *ref = dp_tensor_zeros(dt, DP_CPU, 1, &n);
    CHECK_OK(dp_noise_add_(b, ref, 0.5));
    double *got = malloc(sizeof(double) * (size_t)n), *want = malloc(sizeof(double) * (size_t)n);
    CHECK_PTR(p->grad);
    if (p->grad && got && want) {
        CHECK_OK(dp_tensor_to_f64(p->grad, got));
        CHECK_OK(dp_tensor_to_f64(ref, want));
        int64_t bad = 0;
        double sq = 0;
        for (int64_t i = 0; i < n; i++) {
            bad += got[i] != want[i];
            sq += want[i] * want[i];
        }
        CHECK(bad == 0, "%s n=%lld: %lld elements differ from one whole add", dp_dtype_name(dt),
              (long long)n, (long long)bad);
        dp_psg_param_info info;
        CHECK_OK(dp_psg_describe(psg, 0, &info));
        CHECK_CLOSE(info.noise_norm, sqrt(sq), 1e-12);
        CHECK(info.sum_norm == 0, "sum_norm %g of an empty batch", info.sum_norm);
    }
    uint64_t s, st, ca, cb;
    CHECK_OK(dp_noise_state(a, &s, &st, &ca));
    CHECK_OK(dp_noise_state(b, &s, &st, &cb));
    CHECK(ca == cb, "counter %llu after finish, %llu after one add", (unsigned long long)ca,
          (unsigned long long)cb);
    free(got);
    free(want);
    dp_noise_free(a);
    dp_noise_free(b);
    dp_psg_free(psg);
    dp_tensor_release(ref);
    dp_tensor_release(p);
}

int main(void) {
    int64_t live = dp_live_tensors();
    check_size(DP_F32, ((int64_t)1 << 20) + 7);
    check_size(DP_F32, ((int64_t)3 << 18) + 2);
    check_size(DP_F64, ((int64_t)1 << 18) + 1);
    check_size(DP_F32, 5);
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_psg_noise_chunks");
}
