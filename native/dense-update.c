/*
 * The head trainer's fused update of its largest dense kernel (see
 * src/train-head/native-dense-update.ts for why it exists and how it is used).
 *
 * One call computes the kernel's gradient G = xᵀ·dz + l2·W (dz already carries the optimizer's
 * gradient scale) and applies the optimizer to it, a tile of rows × columns at a time, so that
 * each tile of G lives only in registers: the kernel, its one or two optimizer states and x are
 * read once and the kernel and states written once, instead of the dozen passes over memory that
 * onnxruntime makes when every elementwise op of the update is its own kernel.
 *
 * The formulas are those of the ONNX step graph (onnx-train-graph.ts optimizerPlan), operation
 * for operation, so the two paths agree up to float32 rounding.
 *
 * This file is compiled once per instruction set (AVX-512, AVX2+FMA, baseline) with a suffix on
 * the kernel's name; dense-update-api.c picks one at load time.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "dense-update.h"

#ifndef KERNEL_SUFFIX
#error "compile with -DKERNEL_SUFFIX=_name"
#endif
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define KERNEL CAT(dense_update, KERNEL_SUFFIX)

/* 16 floats; gcc lowers it to one AVX-512 register, two AVX2 registers, or four SSE ones. */
typedef float v16 __attribute__((vector_size(64)));
#define LANES 16
/* Row tile height and column tile width (in vectors): 4 × 4 accumulators, 16 registers. */
#define TILE_ROWS 4
#define TILE_VECS 4

static inline v16 load(const float *p) {
  v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void store(float *p, v16 v) { memcpy(p, &v, sizeof v); }
static inline v16 splat(float s) { return (v16){0} + s; }

static inline v16 vsqrt(v16 a) {
  /* gcc has no vector sqrt builtin; this loop vectorizes to one sqrt instruction (with -fno-math-errno). */
  v16 r;
  for (int k = 0; k < LANES; k++) r[k] = sqrtf(a[k]);
  return r;
}

/* The optimizer step on LANES consecutive weights, G given; mirrors optimizerPlan's emit(). */
static inline void apply(const dense_update_args *u, float *w, float *s1, float *s2, v16 g, double *sumsq) {
  v16 wv = load(w);
  if (u->l2coef != 0) {
    g += wv * u->l2coef;
    for (int k = 0; k < LANES; k++) *sumsq += (double)wv[k] * wv[k];
  }
  switch (u->kind) {
    case UPDATE_SGD:
      store(w, wv - g * u->lr);
      break;
    case UPDATE_MOMENTUM: {
      v16 acc = load(s1) * u->momentum + g;
      store(s1, acc);
      store(w, wv - acc * u->lr);
      break;
    }
    case UPDATE_ADAM: {
      v16 m = load(s1) * u->beta1 + g;
      v16 v = load(s2) * u->beta2 + (g * g) * u->kappa;
      store(s1, m);
      store(s2, v);
      store(w, wv - (m / (vsqrt(v) + u->eps)) * u->lr);
      break;
    }
    case UPDATE_RMSPROP: {
      v16 ms = load(s1) * u->rho + g * g;
      store(s1, ms);
      store(w, wv - (g / vsqrt(ms + u->eps)) * u->lr);
      break;
    }
  }
}

/* Scalar twin of apply(), for the columns past the last whole vector. */
static inline void apply1(const dense_update_args *u, float *w, float *s1, float *s2, float g, double *sumsq) {
  float wv = *w;
  if (u->l2coef != 0) {
    g += wv * u->l2coef;
    *sumsq += (double)wv * wv;
  }
  switch (u->kind) {
    case UPDATE_SGD:
      *w = wv - g * u->lr;
      break;
    case UPDATE_MOMENTUM:
      *s1 = *s1 * u->momentum + g;
      *w = wv - *s1 * u->lr;
      break;
    case UPDATE_ADAM:
      *s1 = *s1 * u->beta1 + g;
      *s2 = *s2 * u->beta2 + (g * g) * u->kappa;
      *w = wv - (*s1 / (sqrtf(*s2) + u->eps)) * u->lr;
      break;
    case UPDATE_RMSPROP:
      *s1 = *s1 * u->rho + g * g;
      *w = wv - (g / sqrtf(*s1 + u->eps)) * u->lr;
      break;
  }
}

/*
 * Rows [r0, r0+rows) × columns [c0, c0 + vecs·LANES): accumulate G over the batch in registers,
 * then update. Called with constant rows and vecs, so gcc unrolls both loops into registers.
 */
static inline __attribute__((always_inline)) void tile(const dense_update_args *u, const float *xt, size_t r0, int rows, size_t c0,
                                                         int vecs, double *sumsq) {
  v16 acc[TILE_ROWS][TILE_VECS];
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < vecs; j++) acc[r][j] = (v16){0};
  for (size_t b = 0; b < u->n; b++) {
    const float *dzb = u->dz + b * u->outputs + c0;
    v16 d[TILE_VECS];
    for (int j = 0; j < vecs; j++) d[j] = load(dzb + j * LANES);
    for (int r = 0; r < rows; r++) {
      v16 s = splat(xt[r * u->n + b]);
      for (int j = 0; j < vecs; j++) acc[r][j] += s * d[j];
    }
  }
  for (int r = 0; r < rows; r++) {
    size_t at = (r0 + r) * u->outputs + c0;
    for (int j = 0; j < vecs; j++) {
      size_t k = at + j * LANES;
      apply(u, u->w + k, u->s1 ? u->s1 + k : NULL, u->s2 ? u->s2 + k : NULL, acc[r][j], sumsq);
    }
  }
}

/* Columns past the last whole vector: plain loops (only for widths that are not multiples of 16). */
static void tail_columns(const dense_update_args *u, const float *xt, size_t r0, size_t r1, size_t c0, double *sumsq) {
  for (size_t r = r0; r < r1; r++) {
    for (size_t c = c0; c < u->outputs; c++) {
      float g = 0;
      for (size_t b = 0; b < u->n; b++) g += xt[(r - r0) * u->n + b] * u->dz[b * u->outputs + c];
      size_t k = r * u->outputs + c;
      apply1(u, u->w + k, u->s1 ? u->s1 + k : NULL, u->s2 ? u->s2 + k : NULL, g, sumsq);
    }
  }
}

/*
 * x's columns r0..r1 as rows: xt[(r − r0)·n + b] = x[b·inputs + r]. The tiles read x down its
 * columns, and with inputs a power of two those n addresses share one L1 set (4096 floats apart)
 * and evict each other; transposed, each tile reads one short contiguous run.
 */
static void transpose_rows(const dense_update_args *u, size_t r0, size_t r1, float *xt) {
  for (size_t b = 0; b < u->n; b++) {
    const float *xb = u->x + b * u->inputs;
    for (size_t r = r0; r < r1; r++) xt[(r - r0) * u->n + b] = xb[r];
  }
}

/*
 * Updates kernel rows [r0, r1), with xt scratch for (r1 − r0)·n floats; returns Σ W² over those
 * rows (before the update) when l2coef ≠ 0.
 */
double KERNEL(const dense_update_args *u, size_t r0, size_t r1, float *xt) {
  if (r1 <= r0) return 0;
  transpose_rows(u, r0, r1, xt);
  double sumsq = 0;
  const size_t wide = (u->outputs / (TILE_VECS * LANES)) * TILE_VECS * LANES;
  const size_t vectors = (u->outputs / LANES) * LANES;
  size_t r = r0;
  for (; r + TILE_ROWS <= r1; r += TILE_ROWS) {
    const float *xr = xt + (r - r0) * u->n;
    for (size_t c = 0; c < wide; c += TILE_VECS * LANES) tile(u, xr, r, TILE_ROWS, c, TILE_VECS, &sumsq);
    for (size_t c = wide; c < vectors; c += LANES) tile(u, xr, r, TILE_ROWS, c, 1, &sumsq);
  }
  for (; r < r1; r++) {
    const float *xr = xt + (r - r0) * u->n;
    for (size_t c = 0; c < wide; c += TILE_VECS * LANES) tile(u, xr, r, 1, c, TILE_VECS, &sumsq);
    for (size_t c = wide; c < vectors; c += LANES) tile(u, xr, r, 1, c, 1, &sumsq);
  }
  tail_columns(u, xt, r0, r1, vectors, &sumsq);
  return sumsq;
}
