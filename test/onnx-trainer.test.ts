import { describe, expect, it } from 'vitest';
import { nativeDenseUpdateStatus, useNativeIsa, type NativeIsa } from '../src/train-head/native-dense-update.ts';
import { createOnnxTrainer, type OnnxTrainerTuning } from '../src/train-head/onnx-trainer.ts';
import type { HeadArchitecture, HeadParams, OptimizerConfig, TrainBatch, TrainingConfig } from '../src/train-head/trainer.ts';

// A plain-JS (float64) reference of the head: forward, loss, analytic gradient, and tfjs' optimizers.

type Params64 = { weight: Float64Array; bias: Float64Array }[];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function randomParams(arch: HeadArchitecture, random: () => number): HeadParams {
  const widths = [arch.inputDim, ...arch.hidden, arch.classes];
  return widths.slice(1).map((out, i) => ({
    weight: new Float32Array(out * widths[i]).map(() => (random() * 2 - 1) * 0.8),
    bias: new Float32Array(out).map(() => (random() * 2 - 1) * 0.2),
  }));
}

function randomBatch(arch: HeadArchitecture, n: number, random: () => number, extraRows = 0): TrainBatch {
  const rows = n + extraRows; // rows past n are garbage the trainer must ignore
  return {
    x: new Float32Array(rows * arch.inputDim).map(() => random() * 2 - 1),
    y: new Int32Array(rows).map(() => Math.floor(random() * arch.classes)),
    weight: new Float32Array(rows).map(() => 0.5 + random() * 1.5),
    masks: arch.hidden.map((h) => new Float32Array(rows * h).map(() => (random() < arch.dropout ? 0 : 1 / (1 - arch.dropout)))),
    n,
  };
}

const to64 = (p: HeadParams): Params64 => p.map(({ weight, bias }) => ({ weight: Float64Array.from(weight), bias: Float64Array.from(bias) }));

/** Forward + loss; with `grads`, also fills the gradient of the loss. */
function lossAndGrad(params: Params64, batch: TrainBatch, l2: number, grads?: Params64): number {
  const { n } = batch;
  const L = params.length;
  const acts: Float64Array[] = [Float64Array.from(batch.x.subarray(0, n * params[0].weight.length / params[0].bias.length))];
  const zs: Float64Array[] = [];
  for (let l = 0; l < L; l++) {
    const { weight, bias } = params[l];
    const out = bias.length;
    const inp = weight.length / out;
    const a = acts[l];
    const z = new Float64Array(n * out);
    for (let i = 0; i < n; i++) {
      for (let o = 0; o < out; o++) {
        let s = bias[o];
        for (let k = 0; k < inp; k++) s += a[i * inp + k] * weight[o * inp + k];
        z[i * out + o] = s;
      }
    }
    zs.push(z);
    if (l < L - 1) acts.push(z.map((v, j) => Math.max(v, 0) * batch.masks[l][j]));
  }
  const C = params[L - 1].bias.length;
  const logits = zs[L - 1];
  let loss = 0;
  const dz = new Float64Array(n * C);
  for (let i = 0; i < n; i++) {
    const row = logits.subarray(i * C, (i + 1) * C);
    const max = Math.max(...row);
    const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
    const logSum = max + Math.log(sum);
    loss += (batch.weight[i] * (logSum - row[batch.y[i]])) / n;
    for (let c = 0; c < C; c++) dz[i * C + c] = ((Math.exp(row[c] - logSum) - (c === batch.y[i] ? 1 : 0)) * batch.weight[i]) / n;
  }
  for (const { weight } of params) loss += l2 * weight.reduce((s, v) => s + v * v, 0);
  if (!grads) return loss;

  let d = dz;
  for (let l = L - 1; l >= 0; l--) {
    const { weight } = params[l];
    const out = params[l].bias.length;
    const inp = weight.length / out;
    const a = acts[l];
    const gw = grads[l].weight;
    const gb = grads[l].bias;
    for (let o = 0; o < out; o++) {
      gb[o] = 0;
      for (let i = 0; i < n; i++) gb[o] += d[i * out + o];
      for (let k = 0; k < inp; k++) {
        let s = 2 * l2 * weight[o * inp + k];
        for (let i = 0; i < n; i++) s += d[i * out + o] * a[i * inp + k];
        gw[o * inp + k] = s;
      }
    }
    if (l > 0) {
      const prev = new Float64Array(n * inp);
      for (let i = 0; i < n; i++) {
        for (let k = 0; k < inp; k++) {
          let s = 0;
          for (let o = 0; o < out; o++) s += d[i * out + o] * weight[o * inp + k];
          const z = zs[l - 1][i * inp + k];
          prev[i * inp + k] = z > 0 ? s * batch.masks[l - 1][i * inp + k] : 0;
        }
      }
      d = prev;
    }
  }
  return loss;
}

const zerosLike = (p: Params64): Params64 => p.map(({ weight, bias }) => ({ weight: new Float64Array(weight.length), bias: new Float64Array(bias.length) }));

/** TF.js' optimizers (tfjs-core 4.x), one step over every tensor. */
function referenceOptimizer(opt: OptimizerConfig, shapeOf: Params64): (params: Params64, grads: Params64) => void {
  const m = zerosLike(shapeOf);
  const v = zerosLike(shapeOf);
  const f = Math.fround;
  let accBeta1 = opt.kind === 'adam' ? f(opt.beta1) : 0;
  let accBeta2 = opt.kind === 'adam' ? f(opt.beta2) : 0;
  return (params, grads) => {
    params.forEach((p, l) => {
      for (const kind of ['weight', 'bias'] as const) {
        const w = p[kind];
        const g = grads[l][kind];
        const m1 = m[l][kind];
        const v1 = v[l][kind];
        for (let j = 0; j < w.length; j++) {
          if (opt.kind === 'adam') {
            m1[j] = opt.beta1 * m1[j] + (1 - opt.beta1) * g[j];
            v1[j] = opt.beta2 * v1[j] + (1 - opt.beta2) * g[j] * g[j];
            w[j] -= (opt.lr * (m1[j] / (1 - accBeta1))) / (Math.sqrt(v1[j] / (1 - accBeta2)) + opt.epsilon);
          } else if (opt.kind === 'rmsprop') {
            v1[j] = opt.rho * v1[j] + (1 - opt.rho) * g[j] * g[j];
            w[j] -= (opt.lr * g[j]) / Math.sqrt(v1[j] + opt.epsilon);
          } else {
            m1[j] = opt.momentum * m1[j] + g[j];
            w[j] -= opt.lr * m1[j];
          }
        }
      }
    });
    if (opt.kind === 'adam') {
      accBeta1 = f(accBeta1 * f(opt.beta1));
      accBeta2 = f(accBeta2 * f(opt.beta2));
    }
  };
}

// ---------------------------------------------------------------------------------------------

const small: HeadArchitecture = { inputDim: 7, hidden: [5], dropout: 0.4, classes: 3 };
const logistic: HeadArchitecture = { inputDim: 7, hidden: [], dropout: 0, classes: 3 };
const deep: HeadArchitecture = { inputDim: 9, hidden: [6, 4], dropout: 0.3, classes: 3 };
// 90 outputs reach every part of the native update: a 64-wide tile, a 16-wide one and 10 single
// columns; 10 rows, a 4-row tile twice and 2 single rows (and, on 2 threads, slices of 8 and 2).
const wide: HeadArchitecture = { inputDim: 10, hidden: [90], dropout: 0.2, classes: 3 };
// Tiny chunks force the Scan path, with padding rows (7 inputs → 4 chunks of 2 rows).
const chunked: OnnxTrainerTuning = { chunkElements: 8, native: 'off' };
const native = nativeDenseUpdateStatus();
// CI builds the addon and sets BOTTLENECK_REQUIRE_NATIVE=1, so there its tests cannot skip.
const testNative = native.loaded || process.env.BOTTLENECK_REQUIRE_NATIVE === '1';
// Each build of the addon this CPU can run (an AVX-512 CPU runs all three), not just its best.
const nativeBuilds: NativeIsa[] = testNative ? (['avx512', 'avx2', 'generic'] as const).filter((isa) => useNativeIsa(isa) === isa) : [];
if (testNative) useNativeIsa('avx512');
type Variant = { label: string; tuning: OnnxTrainerTuning; isa?: NativeIsa };
const variants: Variant[] = [
  { label: 'whole kernels', tuning: { native: 'off' } },
  { label: 'chunked kernels', tuning: chunked },
  ...nativeBuilds.flatMap((isa): Variant[] => [
    { label: `native first kernel (${isa})`, tuning: { native: 'on' }, isa },
    { label: `native first kernel (${isa}), 2 threads`, tuning: { native: 'on', threads: 2 }, isa },
  ]),
];
if (!testNative) console.warn(`onnx trainer tests: native update variants skipped (${native.loaded ? '' : native.reason})`);

async function trainer(arch: HeadArchitecture, training: TrainingConfig, initial: HeadParams, variant: Variant, maxBatch = 4) {
  if (variant.isa) expect(useNativeIsa(variant.isa)).toBe(variant.isa);
  const t = await createOnnxTrainer({ architecture: arch, training, initial, maxBatch }, { threads: 1, ...variant.tuning });
  // 'on' falls back quietly where the addon is missing; these variants must really run it.
  if (variant.isa) expect(t.provider).toContain(`native update (${variant.isa})`);
  return t;
}

const maxAbs = (a: ArrayLike<number>): number => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

describe.each(variants)('onnx trainer ($label)', (variant) => {
  it.each([
    { arch: small, n: 4, extraRows: 0 },
    { arch: logistic, n: 4, extraRows: 0 },
    { arch: deep, n: 4, extraRows: 0 },
    { arch: small, n: 3, extraRows: 1 }, // the last, smaller batch of an epoch
    { arch: wide, n: 4, extraRows: 1 },
  ])('computes the gradient: $arch.hidden hidden, n=$n', async ({ arch, n, extraRows }) => {
    const random = rng(7);
    const initial = randomParams(arch, random);
    const batch = randomBatch(arch, n, random, extraRows);
    const l2 = 0.01;
    // Plain SGD is linear in the gradient, so (W − W')/lr recovers it for any lr; lr = 1 keeps
    // the most float32 digits of it.
    const t = await trainer(arch, { optimizer: { kind: 'sgd', lr: 1, momentum: 0 }, l2 }, initial, variant);
    const loss = await t.step(batch);
    const after = await t.getParams();
    await t.dispose();

    const p = to64(initial);
    expect(loss).toBeCloseTo(lossAndGrad(p, batch, l2), 5);
    const h = 1e-6;
    initial.forEach((layer, l) => {
      for (const kind of ['weight', 'bias'] as const) {
        const implied = layer[kind].map((w, j) => w - after[l][kind][j]);
        const numeric = new Float64Array(implied.length).map((_, j) => {
          const orig = p[l][kind][j];
          p[l][kind][j] = orig + h;
          const up = lossAndGrad(p, batch, l2);
          p[l][kind][j] = orig - h;
          const down = lossAndGrad(p, batch, l2);
          p[l][kind][j] = orig;
          return (up - down) / (2 * h);
        });
        const err = maxAbs(implied.map((g, j) => g - numeric[j]));
        expect(err, `layer ${l} ${kind}`).toBeLessThan(1e-5 * Math.max(1, maxAbs(numeric)));
      }
    });
  });

  it.each<{ opt: OptimizerConfig }>([
    { opt: { kind: 'adam', lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 } },
    { opt: { kind: 'rmsprop', lr: 0.01, rho: 0.9, epsilon: 1e-7 } },
    { opt: { kind: 'sgd', lr: 0.1, momentum: 0.9 } },
    { opt: { kind: 'sgd', lr: 0.1, momentum: 0 } },
  ])('matches tfjs $opt.kind over three steps', async ({ opt }) => {
    for (const arch of [small, wide]) await matchesTfjs(arch, opt);
  });

  async function matchesTfjs(arch: HeadArchitecture, opt: OptimizerConfig) {
    const random = rng(11);
    const initial = randomParams(arch, random);
    const batches = [0, 1, 2].map(() => randomBatch(arch, 4, random));
    const l2 = 0.001;
    const t = await trainer(arch, { optimizer: opt, l2 }, initial, variant);
    const ref = to64(initial);
    const refStep = referenceOptimizer(opt, ref);
    for (const batch of batches) {
      const grads = zerosLike(ref);
      const refLoss = lossAndGrad(ref, batch, l2, grads);
      expect(await t.step(batch)).toBeCloseTo(refLoss, 5);
      refStep(ref, grads);
    }
    const got = await t.getParams();
    await t.dispose();
    ref.forEach((layer, l) => {
      for (const kind of ['weight', 'bias'] as const) {
        const moved = maxAbs(layer[kind].map((w, j) => w - initial[l][kind][j]));
        const err = maxAbs(layer[kind].map((w, j) => w - got[l][kind][j]));
        expect(err / moved, `${arch.hidden} hidden, layer ${l} ${kind}`).toBeLessThan(1e-5);
      }
    });
  }

  it.each([
    { arch: small, l2: 0.001 },
    { arch: deep, l2: 0 },
    { arch: logistic, l2: 0.01 },
  ])('stepMany matches step: Adam, $arch.hidden hidden, l2 $l2', async ({ arch, l2 }) => {
    const random = rng(13);
    const initial = randomParams(arch, random);
    // Five full batches then a smaller last one; random row weights (class weights) and dropout masks.
    const batches = [4, 4, 4, 4, 4, 3].map((n) => randomBatch(arch, n, random, 4 - n));
    const training: TrainingConfig = { optimizer: { kind: 'adam', lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }, l2 };
    const single = await trainer(arch, training, initial, variant);
    const singleLosses: number[] = [];
    for (const batch of batches) singleLosses.push(await single.step(batch));
    const want = await single.getParams();
    await single.dispose();
    const many = await trainer(arch, training, initial, variant);
    // Two calls, so the optimizer state and step count carry across runs of the many-step graph.
    const manyLosses = [...(await many.stepMany!(batches.slice(0, 2))), ...(await many.stepMany!(batches.slice(2)))];
    const got = await many.getParams();
    await many.dispose();
    manyLosses.forEach((loss, i) => expect(loss).toBeCloseTo(singleLosses[i], 5));
    want.forEach((layer, l) => {
      for (const kind of ['weight', 'bias'] as const) {
        const moved = maxAbs(layer[kind].map((w, j) => w - initial[l][kind][j]));
        const err = maxAbs(layer[kind].map((w, j) => w - got[l][kind][j]));
        expect(err / moved, `layer ${l} ${kind}`).toBeLessThan(1e-5);
      }
    });
  });

  it('trains logistic regression (hidden: [])', async () => {
    const random = rng(3);
    const initial = randomParams(logistic, random);
    const batch = randomBatch(logistic, 4, random);
    const t = await trainer(logistic, { optimizer: { kind: 'adam', lr: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }, l2: 0 }, initial, variant);
    const first = await t.step(batch);
    let last = first;
    for (let i = 0; i < 50; i++) last = await t.step(batch);
    await t.dispose();
    expect(last).toBeLessThan(first / 4);
  });

  it('predicts probabilities with dropout off, and round-trips parameters', async () => {
    const random = rng(5);
    const initial = randomParams(small, random);
    const t = await trainer(small, { optimizer: { kind: 'sgd', lr: 0.1, momentum: 0 }, l2: 0 }, initial, variant, 6);
    const x = new Float32Array(6 * small.inputDim).map(() => random() * 2 - 1);
    const probs = await t.predict(x, 6);
    expect(probs).toHaveLength(6 * small.classes);
    for (let i = 0; i < 6; i++) {
      const row = probs.subarray(i * 3, i * 3 + 3);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      // Dropout off: the same rows as the reference forward pass with all-ones masks.
      const oneRow: TrainBatch = { x: x.subarray(i * 7, i * 7 + 7), y: new Int32Array([0]), weight: new Float32Array([1]), masks: [new Float32Array(5).fill(1)], n: 1 };
      expect(Math.log(row[0])).toBeCloseTo(-lossAndGrad(to64(initial), oneRow, 0), 5);
    }
    expect(await t.getParams()).toEqual(initial);
    const other = randomParams(small, random);
    await t.setParams(other);
    expect(await t.getParams()).toEqual(other);
    await t.dispose();
  });
});
