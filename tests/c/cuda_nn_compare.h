/* cuda_nn_compare.h: the old name of cuda_test.h (the helpers the CUDA tests share), kept so that
 * tests written against it still build; include cuda_test.h in new tests. */
#include "cuda_test.h"
