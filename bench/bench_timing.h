/* bench_timing.h: what the C benchmarks share to time things: milliseconds on CLOCK_MONOTONIC and
 * the median of repeated measurements (bench/timing.lua is the Lua twin). Header-only. */
#ifndef DP_BENCH_TIMING_H
#define DP_BENCH_TIMING_H
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (the upper one for even n); sorts v in place. */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

#endif
