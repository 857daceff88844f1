/* threads.c: one thread count for the OpenMP kernels and OpenBLAS. */
#include <omp.h>
#include <unistd.h>
#include "internal.h"

/* From OpenBLAS (cblas.h does not declare it in every packaging). */
void openblas_set_num_threads(int num_threads);

static int32_t num_threads;   /* 0 until set: then OpenMP's own default applies */

/* n <= 0 restores the default, the number of online CPUs. */
void dp_set_num_threads(int32_t n) {
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int32_t)cpus : 1;
    }
    __atomic_store_n(&num_threads, n, __ATOMIC_RELAXED);
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

/* Before any dp_set_num_threads this is OpenMP's default: the online CPUs, unless the
 * OMP_NUM_THREADS environment variable says otherwise. */
int32_t dp_get_num_threads(void) {
    int32_t n = __atomic_load_n(&num_threads, __ATOMIC_RELAXED);
    return n > 0 ? n : (int32_t)omp_get_max_threads();
}
