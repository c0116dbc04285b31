/**
 * The optional native addon (native/dense-update.c, built on `npm install` by
 * scripts/build-native.mjs) that updates a head's largest kernel in one fused pass.
 *
 * Why: in the ONNX step graph, each elementwise op of an optimizer update is its own pass over
 * memory, and onnxruntime-node copies every output of a run into a fresh buffer. For a 4096×256
 * kernel under Adam those passes and copies were half of each step. The addon computes the
 * kernel's gradient xᵀ·dz and applies the optimizer tile by tile in registers, in place, so the
 * step graph only has to hand it dz (n × 256 floats). onnxruntime-node has no way to register a
 * custom op, hence an addon rather than a graph node.
 *
 * Missing or unloadable, the trainer keeps its ONNX-only path; `nativeDenseUpdateStatus` says why.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { OptimizerConfig } from './trainer.ts';

/** The addon's optimizer codes (native/dense-update.h). */
const KIND = { sgd: 0, momentum: 1, adam: 2, rmsprop: 3 } as const;

interface Addon {
  isa(): string;
  useIsa(name: string): string;
  denseUpdate(
    x: Float32Array,
    n: number,
    inputs: number,
    dz: Float32Array,
    outputs: number,
    w: Float32Array,
    s1: Float32Array | null,
    s2: Float32Array | null,
    kind: number,
    params: Float32Array,
    threads: number,
  ): number;
}

export type NativeStatus = { readonly loaded: true; readonly isa: string } | { readonly loaded: false; readonly reason: string };

const ADDON_PATH = path.resolve(import.meta.dirname, '../../build/native/dense_update.node');

let cached: { addon: Addon | null; status: NativeStatus } | undefined;

function load(): { addon: Addon | null; status: NativeStatus } {
  if (process.env.BOTTLENECK_NATIVE === '0') return { addon: null, status: { loaded: false, reason: 'BOTTLENECK_NATIVE=0' } };
  if (!existsSync(ADDON_PATH)) return { addon: null, status: { loaded: false, reason: 'not built (npm run build:native says why)' } };
  try {
    const mod: unknown = createRequire(import.meta.url)(ADDON_PATH);
    if (!isAddon(mod)) return { addon: null, status: { loaded: false, reason: `${ADDON_PATH} is not this version's addon` } };
    return { addon: mod, status: { loaded: true, isa: mod.isa() } };
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    return { addon: null, status: { loaded: false, reason: `could not load: ${message}` } };
  }
}

function isAddon(mod: unknown): mod is Addon {
  const m = mod as Partial<Record<keyof Addon, unknown>> | null;
  return typeof m === 'object' && m !== null && typeof m.denseUpdate === 'function' && typeof m.isa === 'function' && typeof m.useIsa === 'function';
}

export type NativeIsa = 'avx512' | 'avx2' | 'generic';

/**
 * Makes the addon run the build for `isa` from now on, where this CPU has it; returns the build
 * in use, or null without the addon. For tests: each build must agree with the reference, not
 * only the one this machine would pick.
 */
export function useNativeIsa(isa: NativeIsa): string | null {
  cached ??= load();
  if (!cached.addon) return null;
  const inUse = cached.addon.useIsa(isa);
  cached = { addon: cached.addon, status: { loaded: true, isa: inUse } };
  return inUse;
}

export function nativeDenseUpdateStatus(): NativeStatus {
  cached ??= load();
  return cached.status;
}

/** The optimizer's per-step scalars, as the step graph's scalarSchedule gives them, in the addon's terms. */
export interface NativeStepScalars {
  /** sgd/momentum: lr; adam/rmsprop: lr_t. */
  readonly lr: number;
  /** adam: eps_t; unused otherwise. */
  readonly eps?: number;
}

/**
 * An in-place updater of one [inputs, outputs] kernel and its optimizer state, or null where
 * the addon is not loaded. `gradScale` and `l2` are the step graph's (dz arrives scaled).
 */
export function nativeKernelUpdater(
  opt: OptimizerConfig,
  gradScale: number,
  l2: number,
  threads: number,
): ((x: Float32Array, n: number, dz: Float32Array, w: Float32Array, states: readonly Float32Array[], inputs: number, outputs: number, scalars: NativeStepScalars) => number) | null {
  cached ??= load();
  const addon = cached.addon;
  if (!addon) return null;
  const kind = opt.kind === 'sgd' ? (opt.momentum === 0 ? KIND.sgd : KIND.momentum) : KIND[opt.kind];
  // [lr, eps, beta1, beta2, kappa, momentum, rho, l2coef]; the constants are those of optimizerPlan.
  const params = new Float32Array(8);
  if (opt.kind === 'adam') {
    params[2] = opt.beta1;
    params[3] = opt.beta2;
    params[4] = (1 - opt.beta2) / (1 - opt.beta1) ** 2;
  }
  if (opt.kind === 'sgd') params[5] = opt.momentum;
  if (opt.kind === 'rmsprop') {
    params[6] = opt.rho;
    params[1] = opt.epsilon;
  }
  params[7] = 2 * l2 * gradScale;
  return (x, n, dz, w, states, inputs, outputs, scalars) => {
    params[0] = scalars.lr;
    if (opt.kind === 'adam') params[1] = scalars.eps ?? 0;
    return addon.denseUpdate(x, n, inputs, dz, outputs, w, states[0] ?? null, states[1] ?? null, kind, params, threads);
  };
}
