/*
 * Node-API front of dense-update.c: checks the arguments, picks the build for this CPU, and
 * splits the kernel's rows over threads.
 *
 *   isa(): 'avx512' | 'avx2' | 'generic'
 *   useIsa(name): switches to that build where the CPU has it; returns the build in use (tests)
 *   denseUpdate(x, n, inputs, dz, outputs, w, s1, s2, kind, params, threads): Σ W² before the
 *     update (0 without L2). x, dz, w: Float32Array; s1, s2: Float32Array or null; params:
 *     Float32Array [lr, eps, beta1, beta2, kappa, momentum, rho, l2coef].
 *
 * Node-API (not V8's C++ API) so one build serves every Node version, and it needs only the
 * headers of the node-api-headers package, which come from npm like everything else.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAPI_VERSION 8
#include <node_api.h>

#include "dense-update.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

/*
 * Denormal floats flushed to zero (FTZ and DAZ) inside the kernel only, then the thread's mode
 * restored, since JavaScript on the calling thread needs IEEE subnormals. Where a gradient stays
 * zero (a dead ReLU unit's column), Adam's m shrinks into the subnormals and sticks at the
 * smallest one (0.9 × it rounds back to it), and each op on one took a microcode assist: 4096-d
 * epochs ran 3× slower from about the 14th on (bench/train-head). Values that small move no weight.
 */
typedef struct {
  unsigned long saved;
} float_mode;

static float_mode flush_denormals(void) {
  float_mode m = {0};
#if defined(__x86_64__)
  m.saved = _mm_getcsr();
  _mm_setcsr((unsigned)m.saved | 0x8040); /* FTZ (bit 15) | DAZ (bit 6) */
#elif defined(__aarch64__)
  __asm__ volatile("mrs %0, fpcr" : "=r"(m.saved));
  __asm__ volatile("msr fpcr, %0" ::"r"(m.saved | (1UL << 24))); /* FZ */
#endif
  return m;
}

static void restore_float_mode(float_mode m) {
#if defined(__x86_64__)
  _mm_setcsr((unsigned)m.saved);
#elif defined(__aarch64__)
  __asm__ volatile("msr fpcr, %0" ::"r"(m.saved));
#endif
  (void)m;
}

typedef double (*kernel_fn)(const dense_update_args *, size_t, size_t, float *);

static kernel_fn kernel;
static const char *kernel_isa;

static void pick_kernel(void) {
#if defined(__x86_64__) && defined(HAVE_X86_KERNELS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    kernel = dense_update_avx512;
    kernel_isa = "avx512";
    return;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    kernel = dense_update_avx2;
    kernel_isa = "avx2";
    return;
  }
#endif
  kernel = dense_update_generic;
  kernel_isa = "generic";
}

#define MAX_THREADS 64

typedef struct {
  const dense_update_args *u;
  size_t r0, r1;
  float *scratch;
  double sumsq;
} slice;

static void *run_slice(void *arg) {
  slice *s = arg;
  float_mode mode = flush_denormals();
  s->sumsq = kernel(s->u, s->r0, s->r1, s->scratch);
  restore_float_mode(mode);
  return NULL;
}

/*
 * The calling thread's scratch, kept across calls: a fresh buffer of this size each step costs
 * its page faults. Per thread, so Node worker threads may train heads side by side.
 */
static float *caller_scratch(size_t floats) {
  static __thread float *buffer;
  static __thread size_t capacity;
  if (floats > capacity) {
    free(buffer);
    buffer = malloc(floats * sizeof *buffer);
    capacity = buffer ? floats : 0;
  }
  return buffer;
}

/* Throws a JS TypeError and returns NULL, the convention for a failed Node-API callback. */
static napi_value fail(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

/* The float32 data of argument `v`, which must hold at least `need` floats; NULL (no throw) for null when `optional`. */
static int float_array(napi_env env, napi_value v, size_t need, int optional, float **out, const char *name) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (optional && (t == napi_null || t == napi_undefined)) {
    *out = NULL;
    return 1;
  }
  bool is_typed;
  napi_is_typedarray(env, v, &is_typed);
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (!is_typed || napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float32_array) {
    char msg[96];
    snprintf(msg, sizeof msg, "denseUpdate: %s must be a Float32Array", name);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  if (length < need) {
    char msg[128];
    snprintf(msg, sizeof msg, "denseUpdate: %s holds %zu floats, needs %zu", name, length, need);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  *out = data;
  return 1;
}

static int size_arg(napi_env env, napi_value v, size_t *out, const char *name) {
  int64_t i;
  if (napi_get_value_int64(env, v, &i) != napi_ok || i < 0) {
    char msg[96];
    snprintf(msg, sizeof msg, "denseUpdate: %s must be a non-negative integer", name);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  *out = (size_t)i;
  return 1;
}

static napi_value dense_update(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 11) return fail(env, "denseUpdate: expected 11 arguments");

  dense_update_args u = {0};
  size_t threads, kind;
  float *x, *dz, *w, *s1, *s2, *params;
  if (!size_arg(env, argv[1], &u.n, "n") || !size_arg(env, argv[2], &u.inputs, "inputs") ||
      !size_arg(env, argv[4], &u.outputs, "outputs") || !size_arg(env, argv[8], &kind, "kind") ||
      !size_arg(env, argv[10], &threads, "threads"))
    return NULL;
  if (kind > UPDATE_RMSPROP) return fail(env, "denseUpdate: unknown optimizer kind");
  const size_t cells = u.inputs * u.outputs;
  const int states = kind == UPDATE_ADAM ? 2 : kind == UPDATE_SGD ? 0 : 1;
  if (!float_array(env, argv[0], u.n * u.inputs, 0, &x, "x") || !float_array(env, argv[3], u.n * u.outputs, 0, &dz, "dz") ||
      !float_array(env, argv[5], cells, 0, &w, "w") || !float_array(env, argv[6], cells, states < 1, &s1, "s1") ||
      !float_array(env, argv[7], cells, states < 2, &s2, "s2") || !float_array(env, argv[9], 8, 0, &params, "params"))
    return NULL;
  u.x = x, u.dz = dz, u.w = w, u.s1 = states >= 1 ? s1 : NULL, u.s2 = states >= 2 ? s2 : NULL, u.kind = (int)kind;
  u.lr = params[0], u.eps = params[1], u.beta1 = params[2], u.beta2 = params[3], u.kappa = params[4];
  u.momentum = params[5], u.rho = params[6], u.l2coef = params[7];

  napi_value result;
  if (u.n == 0 || cells == 0) {  // no rows or an empty kernel: nothing to update
    napi_create_double(env, 0, &result);
    return result;
  }

  // Rows split in multiples of 4 (the kernel's tile height); the calling thread takes the first slice.
  if (threads < 1) threads = 1;
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  size_t per = ((u.inputs + threads - 1) / threads + 3) & ~(size_t)3;
  slice slices[MAX_THREADS];
  pthread_t ids[MAX_THREADS];
  size_t used = 0;
  for (size_t r = 0; r < u.inputs; r += per) slices[used++] = (slice){&u, r, r + per < u.inputs ? r + per : u.inputs, NULL, 0};
  // Scratch for the transposed x: the caller's slice reuses its own; the others get one per call.
  float *shared = used > 1 ? malloc((used - 1) * per * u.n * sizeof(float)) : NULL;
  if (used > 0) slices[0].scratch = caller_scratch(per * u.n);
  if ((used > 0 && !slices[0].scratch) || (used > 1 && !shared)) {
    free(shared);
    napi_throw_error(env, NULL, "denseUpdate: out of memory");
    return NULL;
  }
  for (size_t i = 1; i < used; i++) slices[i].scratch = shared + (i - 1) * per * u.n;
  size_t started = 1;
  for (; started < used; started++)
    if (pthread_create(&ids[started], NULL, run_slice, &slices[started]) != 0) break;
  // Slices a thread could not be started for run here, in order.
  for (size_t i = started; i < used; i++) run_slice(&slices[i]);
  if (used > 0) run_slice(&slices[0]);
  double sumsq = used > 0 ? slices[0].sumsq : 0;
  for (size_t i = 1; i < used; i++) {
    if (i < started) pthread_join(ids[i], NULL);
    sumsq += slices[i].sumsq;
  }
  free(shared);
  napi_create_double(env, sumsq, &result);
  return result;
}

/* useIsa(name): runs the named build from now on, if this CPU has it; returns the one in use. For tests. */
static napi_value use_isa(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[16] = "";
  if (argc != 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, NULL) != napi_ok) return fail(env, "useIsa: expected a name");
  if (strcmp(name, "generic") == 0) {
    kernel = dense_update_generic;
    kernel_isa = "generic";
  } else {
    pick_kernel(); /* the best this CPU has; an AVX-512 CPU also runs the AVX2 build */
#if defined(__x86_64__) && defined(HAVE_X86_KERNELS)
    if (strcmp(name, "avx2") == 0 && kernel == dense_update_avx512) {
      kernel = dense_update_avx2;
      kernel_isa = "avx2";
    }
#endif
  }
  napi_value s;
  napi_create_string_utf8(env, kernel_isa, NAPI_AUTO_LENGTH, &s);
  return s;
}

static napi_value isa(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value s;
  napi_create_string_utf8(env, kernel_isa, NAPI_AUTO_LENGTH, &s);
  return s;
}

static napi_value init(napi_env env, napi_value exports) {
  pick_kernel();
  napi_property_descriptor props[] = {
      {"denseUpdate", NULL, dense_update, NULL, NULL, NULL, napi_default, NULL},
      {"isa", NULL, isa, NULL, NULL, NULL, napi_default, NULL},
      {"useIsa", NULL, use_isa, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
