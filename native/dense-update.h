/* The arguments of one fused kernel update; see dense-update.c. */
#ifndef DENSE_UPDATE_H
#define DENSE_UPDATE_H
#include <stddef.h>

/* Kept in step with NativeUpdateKind in src/train-head/native-dense-update.ts. */
enum { UPDATE_SGD = 0, UPDATE_MOMENTUM = 1, UPDATE_ADAM = 2, UPDATE_RMSPROP = 3 };

typedef struct {
  const float *x;  /* n × inputs, row-major */
  const float *dz; /* n × outputs: the gradient at the layer's output, times the optimizer's scale */
  float *w;        /* inputs × outputs (Keras layout), updated in place */
  float *s1, *s2;  /* optimizer state shaped like w, or NULL where the optimizer keeps none */
  size_t n, inputs, outputs;
  int kind;
  /* lr: sgd/momentum lr, adam/rmsprop lr_t; eps: adam eps_t, rmsprop epsilon. */
  float lr, eps, beta1, beta2, kappa, momentum, rho;
  /* 2·l2·gradScale, folded into G; 0 when there is no L2 term. */
  float l2coef;
} dense_update_args;

/* Rows [r0, r1); xt: scratch for (r1 − r0)·n floats. Returns Σ W² over the rows (0 without L2). */
double dense_update_avx512(const dense_update_args *u, size_t r0, size_t r1, float *xt);
double dense_update_avx2(const dense_update_args *u, size_t r0, size_t r1, float *xt);
double dense_update_generic(const dense_update_args *u, size_t r0, size_t r1, float *xt);

#endif
