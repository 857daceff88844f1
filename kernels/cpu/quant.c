/* quant.c: CPU kernels of the emulated fp8 quantisation (dp_fake_quant in dp.h): each group's
 * max |x| and the round trip x -> q(x * s) / s through an fp8 format. Arguments are already
 * checked (core/ops_quant.c): x and out are contiguous, amax and scale hold one value per group of
 * consecutive elements (one group, or one per example along dim 0). */
#include <math.h>
#include "cpu_kernels.h"
#include "dtype_cast.h"
#include "ew_loop.h"

/* Elements per conversion block, and the size below which one thread does it all. */
enum { QBLOCK = 512, QPAR_MIN = 1 << 15 };

int dp_cpu_quant_amax(dp_tensor *amax, const dp_tensor *x) {
    int64_t groups = dp_tensor_numel(amax), n = dp_tensor_numel(x);
    int64_t per = groups ? n / groups : 0;
    double *out = (double *)amax->data;
    #pragma omp parallel for schedule(static) if (n > QPAR_MIN && groups > 1)
    for (int64_t gi = 0; gi < groups; gi++) {
        double buf[QBLOCK], m = 0;
        for (int64_t off = 0; off < per; off += QBLOCK) {
            int64_t k = per - off < QBLOCK ? per - off : QBLOCK;
            const char *p = (const char *)x->data + (gi * per + off) * dp_dtype_size(x->dtype);
            const double *v = dp_ew_load_f64(buf, p, x->dtype, 1, k);
            /* fabs(NaN) > m is false: NaN never becomes the maximum; Inf does. */
            for (int64_t i = 0; i < k; i++)
                if (fabs(v[i]) > m) m = fabs(v[i]);
        }
        out[gi] = m;
    }
    return 0;
}

/* v rounded to nearest even in dtype after saturating at its largest finite value; NaN stays. */
static double quantise(double v, dp_dtype dtype) {
    if (isnan(v)) return v;
    if (dtype == DP_FP8_E4M3) {
        if (fabs(v) > 448.0) v = copysign(448.0, v);
        return dp_cast_e4m3_to_f32((uint8_t)dp_cast_encode(v, 3, 4, 1));
    }
    if (fabs(v) > 57344.0) v = copysign(57344.0, v);
    return dp_cast_e5m2_to_f32((uint8_t)dp_cast_encode(v, 2, 5, 0));
}

int dp_cpu_fake_quant(dp_tensor *out, const dp_tensor *x, const dp_tensor *scale, dp_dtype dtype) {
    int64_t n = dp_tensor_numel(x), groups = dp_tensor_numel(scale);
    int64_t per = groups ? n / groups : 0;
    if (n == 0) return 0;
    int64_t blocks = (n + QBLOCK - 1) / QBLOCK;
    const float *s = (const float *)scale->data;
    int32_t xs = dp_dtype_size(x->dtype);
    #pragma omp parallel for schedule(static) if (n > QPAR_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        double buf[QBLOCK], res[QBLOCK];
        int64_t off = b * QBLOCK, k = n - off < QBLOCK ? n - off : QBLOCK;
        const double *v = dp_ew_load_f64(buf, (const char *)x->data + off * xs, x->dtype, 1, k);
        for (int64_t i = 0; i < k; i++) {
            double sc = (double)s[(off + i) / per];
            res[i] = quantise(v[i] * sc, dtype) / sc;
        }
        dp_ew_store_f64((char *)out->data + off * xs, out->dtype, 1, res, k);
    }
    return 0;
}
