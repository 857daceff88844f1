/* fused_update_cases.h: the optimizer rules the fused-update tests run through noisy_update, on
 * the CPU (test_psg_fused_update.c) and on CUDA (test_cuda_noisy_update.c), so that both cover
 * the same cases: SGD plain, with momentum, dampening and weight decay, and nesterov; Adam with
 * L2 weight decay, and AdamW. Each comes with the gradient scale it runs at: 1/64, and 1 for
 * nesterov, the value at which the scale is skipped. Header-only; include after dp_test.h. */
#ifndef DP_FUSED_UPDATE_CASES_H
#define DP_FUSED_UPDATE_CASES_H

typedef struct {
    const char *name;
    dp_update_rule rule;   /* first_step and step are set per step by the tests */
    double scale;
} fused_update_case;

enum { N_FUSED_UPDATE_CASES = 5 };

static const fused_update_case fused_update_cases[N_FUSED_UPDATE_CASES] = {
    {"sgd", {.kind = DP_UPDATE_SGD, .lr = 0.05}, 1.0 / 64},
    {"sgd+momentum+wd", {.kind = DP_UPDATE_SGD, .lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 1e-3},
     1.0 / 64},
    {"nesterov", {.kind = DP_UPDATE_SGD, .lr = 0.05, .momentum = 0.8, .nesterov = 1, .weight_decay = 1e-2}, 1.0},
    {"adam", {.kind = DP_UPDATE_ADAM, .lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01},
     1.0 / 64},
    {"adamw",
     {.kind = DP_UPDATE_ADAM, .lr = 1e-2, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.05,
      .decoupled = 1},
     1.0 / 64},
};

#endif
