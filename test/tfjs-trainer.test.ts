import { beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../src/util/numbers.ts';
import { tfBackend, type Tf } from '../src/engines/tfjs-backend.ts';
import { checkHeadParams, denseShapes, glorotLimit, initHeadParams } from '../src/train-head/head-init.ts';
import { createTfjsTrainer, transpose } from '../src/train-head/tfjs-trainer.ts';
import type {
  HeadArchitecture,
  HeadParams,
  HeadTrainer,
  OptimizerConfig,
  TrainBatch,
  TrainingConfig,
} from '../src/train-head/trainer.ts';

// ---------------------------------------------------------------------------------------
// Reference: the head's loss, gradients and the three tfjs-core update rules, in float64,
// written from the formulas documented in tfjs-trainer.ts rather than from TF.js' code.

interface RefLayer {
  readonly inputs: number;
  readonly outputs: number;
  /** [out, in] row-major, as HeadParams. */
  readonly w: Float64Array;
  readonly b: Float64Array;
}

const toRef = (arch: HeadArchitecture, params: HeadParams): RefLayer[] =>
  denseShapes(arch).map(({ inputs, outputs }, i) => ({
    inputs,
    outputs,
    w: Float64Array.from(params[i].weight),
    b: Float64Array.from(params[i].bias),
  }));

/** Forward pass; masks null means dropout off. Returns each layer's input and pre-activation. */
function refForward(layers: readonly RefLayer[], x: Float32Array, n: number, masks: readonly Float32Array[] | null) {
  const acts: Float64Array[] = [Float64Array.from(x.subarray(0, n * layers[0].inputs))];
  const pres: Float64Array[] = [];
  layers.forEach((layer, l) => {
    const a = acts[l];
    const z = new Float64Array(n * layer.outputs);
    for (let i = 0; i < n; i++)
      for (let o = 0; o < layer.outputs; o++) {
        let s = layer.b[o];
        for (let k = 0; k < layer.inputs; k++) s += a[i * layer.inputs + k] * layer.w[o * layer.inputs + k];
        z[i * layer.outputs + o] = s;
      }
    pres.push(z);
    if (l < layers.length - 1) {
      const mask = masks?.[l];
      acts.push(z.map((v, j) => Math.max(0, v) * (mask ? mask[j] : 1)));
    }
  });
  return { acts, pres, logits: pres[pres.length - 1] };
}

function refSoftmax(logits: Float64Array, n: number, classes: number): Float64Array {
  const p = new Float64Array(n * classes);
  for (let i = 0; i < n; i++) {
    const row = logits.subarray(i * classes, (i + 1) * classes);
    const max = Math.max(...row);
    const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
    for (let c = 0; c < classes; c++) p[i * classes + c] = Math.exp(row[c] - max) / sum;
  }
  return p;
}

/** Σ w·CE / n + l2·ΣW², and its gradient for every weight and bias. */
function refLossAndGrads(layers: readonly RefLayer[], batch: TrainBatch, l2: number) {
  const { n } = batch;
  const classes = layers[layers.length - 1].outputs;
  const { acts, pres, logits } = refForward(layers, batch.x, n, batch.masks);
  const p = refSoftmax(logits, n, classes);
  let loss = 0;
  let dz = new Float64Array(n * classes);
  for (let i = 0; i < n; i++) {
    loss -= (batch.weight[i] * Math.log(p[i * classes + batch.y[i]])) / n;
    for (let c = 0; c < classes; c++) {
      dz[i * classes + c] = (batch.weight[i] / n) * (p[i * classes + c] - (c === batch.y[i] ? 1 : 0));
    }
  }
  for (const layer of layers) loss += l2 * layer.w.reduce((s, v) => s + v * v, 0);

  const grads: { w: Float64Array; b: Float64Array }[] = [];
  for (let l = layers.length - 1; l >= 0; l--) {
    const { inputs, outputs, w } = layers[l];
    const a = acts[l];
    const gw = w.map((v) => 2 * l2 * v);
    const gb = new Float64Array(outputs);
    for (let i = 0; i < n; i++)
      for (let o = 0; o < outputs; o++) {
        const d = dz[i * outputs + o];
        gb[o] += d;
        for (let k = 0; k < inputs; k++) gw[o * inputs + k] += d * a[i * inputs + k];
      }
    grads[l] = { w: gw, b: gb };
    if (l > 0) {
      const prev = new Float64Array(n * inputs);
      const mask = batch.masks[l - 1];
      for (let i = 0; i < n; i++)
        for (let k = 0; k < inputs; k++) {
          let s = 0;
          for (let o = 0; o < outputs; o++) s += dz[i * outputs + o] * w[o * inputs + k];
          const j = i * inputs + k;
          prev[j] = pres[l - 1][j] > 0 ? s * mask[j] : 0;
        }
      dz = prev;
    }
  }
  return { loss, grads };
}

/** One parameter array's optimiser state and update, per tfjs-core 4.22. */
function refOptimizer(config: OptimizerConfig) {
  const slots = new Map<Float64Array, { a: Float64Array; b: Float64Array }>();
  let t = 0;
  const state = (theta: Float64Array) => {
    let s = slots.get(theta);
    if (!s) slots.set(theta, (s = { a: new Float64Array(theta.length), b: new Float64Array(theta.length) }));
    return s;
  };
  return {
    beginStep: () => t++,
    update(theta: Float64Array, g: Float64Array) {
      const { a, b } = state(theta);
      for (let j = 0; j < theta.length; j++) {
        if (config.kind === 'adam') {
          const { lr, beta1, beta2, epsilon } = config;
          a[j] = beta1 * a[j] + (1 - beta1) * g[j];
          b[j] = beta2 * b[j] + (1 - beta2) * g[j] ** 2;
          const mHat = a[j] / (1 - beta1 ** t);
          const vHat = b[j] / (1 - beta2 ** t);
          theta[j] -= (lr * mHat) / (Math.sqrt(vHat) + epsilon);
        } else if (config.kind === 'rmsprop') {
          a[j] = config.rho * a[j] + (1 - config.rho) * g[j] ** 2;
          theta[j] -= (config.lr * g[j]) / Math.sqrt(a[j] + config.epsilon);
        } else {
          a[j] = config.momentum * a[j] + g[j];
          theta[j] -= config.lr * a[j];
        }
      }
    },
  };
}

function refStep(layers: RefLayer[], batch: TrainBatch, training: TrainingConfig, opt: ReturnType<typeof refOptimizer>) {
  const { loss, grads } = refLossAndGrads(layers, batch, training.l2);
  opt.beginStep();
  layers.forEach((layer, l) => {
    opt.update(layer.w, grads[l].w);
    opt.update(layer.b, grads[l].b);
  });
  return loss;
}

/** ‖a − b‖∞ / ‖b‖∞: element-wise relative error is meaningless for entries near zero. */
function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / scale;
}

// ---------------------------------------------------------------------------------------
// Fixtures

const uniform = (random: () => number, length: number, lo: number, hi: number) =>
  Float32Array.from({ length }, () => lo + (hi - lo) * random());

/**
 * A batch of n real rows inside buffers sized for `capacity` rows, the way the fit loop
 * passes a short last batch; the rows past n are garbage that must not be read.
 */
function randomBatch(arch: HeadArchitecture, n: number, seed: number, capacity = n, dropout = 0.5): TrainBatch {
  const random = mulberry32(seed);
  const x = uniform(random, capacity * arch.inputDim, -1, 1);
  x.fill(1e6, n * arch.inputDim);
  const y = Int32Array.from({ length: capacity }, (_, i) => (i < n ? Math.floor(random() * arch.classes) : 99));
  // Class weights, as the fit loop would pass them.
  const classWeight = [1, 2.5, 0.5, 1.5];
  const weight = Float32Array.from(y, (c, i) => (i < n ? classWeight[c % 4] : 1e6));
  const keep = 1 - dropout;
  const masks = arch.hidden.map((h) =>
    Float32Array.from({ length: capacity * h }, (_, j) => (j >= n * h ? 1e6 : random() < keep ? 1 / keep : 0)),
  );
  return { x, y, weight, masks, n };
}

const SMALL: HeadArchitecture = { inputDim: 6, hidden: [4], dropout: 0.5, classes: 3 };

const OPTIMIZERS: readonly OptimizerConfig[] = [
  // ε large enough that putting it inside or outside the square root changes the result.
  { kind: 'adam', lr: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-3 },
  { kind: 'rmsprop', lr: 0.02, rho: 0.9, epsilon: 1e-3 },
  { kind: 'sgd', lr: 0.5, momentum: 0.9 },
];

let tf: Tf;
beforeAll(async () => {
  tf = (await tfBackend('auto')).tf;
});

async function withTrainer<T>(
  arch: HeadArchitecture,
  optimizer: OptimizerConfig,
  initial: HeadParams,
  use: (trainer: HeadTrainer) => Promise<T>,
  l2 = 0.01,
  maxBatch = 8,
): Promise<T> {
  const trainer = await createTfjsTrainer({ architecture: arch, training: { optimizer, l2 }, initial, maxBatch });
  try {
    return await use(trainer);
  } finally {
    await trainer.dispose();
  }
}

/**
 * Runs three steps (so Adam's bias correction and the momentum/moment accumulators are
 * exercised past their first, degenerate step) on TF.js and the reference, comparing the
 * loss of each step and the weights after the last.
 */
async function compareWithReference(arch: HeadArchitecture, optimizer: OptimizerConfig) {
  const training: TrainingConfig = { optimizer, l2: 0.01 };
  const initial = initHeadParams(arch, 7);
  // Non-zero biases, so a bias-layout mistake cannot hide behind Keras' zero init.
  initial.forEach((layer, l) => layer.bias.forEach((_, o) => (layer.bias[o] = 0.1 * (o + 1) * (l % 2 ? -1 : 1))));
  const reference = toRef(arch, initial);
  const refOpt = refOptimizer(optimizer);
  const batches = [randomBatch(arch, 5, 1), randomBatch(arch, 5, 2), randomBatch(arch, 3, 3, 5)];

  await withTrainer(arch, optimizer, initial, async (trainer) => {
    expect(trainer.name).toBe('tfjs');
    expect(trainer.provider).toMatch(/^tfjs (wasm|cpu|tensorflow|tensorflow-gpu)$/);
    for (const batch of batches) {
      const expected = refStep(reference, batch, training, refOpt);
      expect(relError([await trainer.step(batch)], [expected])).toBeLessThan(1e-5);
    }
    const params = await trainer.getParams();
    params.forEach((layer, l) => {
      expect(relError(layer.weight, reference[l].w)).toBeLessThan(1e-5);
      expect(relError(layer.bias, reference[l].b)).toBeLessThan(1e-5);
      // The steps must have moved the weights well beyond float32 noise, or the check is empty.
      expect(relError(layer.weight, initial[l].weight)).toBeGreaterThan(1e-2);
    });

    const x = randomBatch(arch, 4, 9).x;
    const probabilities = await trainer.predict(x, 4);
    const expected = refSoftmax(refForward(reference, x, 4, null).logits, 4, arch.classes);
    expect(relError(probabilities, expected)).toBeLessThan(1e-5);
  });
}

// ---------------------------------------------------------------------------------------

describe('tfjs trainer against a float64 reference', () => {
  for (const optimizer of OPTIMIZERS) {
    it(`${optimizer.kind}: loss, updated weights and predictions match`, async () => {
      await compareWithReference(SMALL, optimizer);
    });
  }

  it('hidden: [] (logistic regression) matches too', async () => {
    await compareWithReference({ inputDim: 6, hidden: [], dropout: 0, classes: 3 }, OPTIMIZERS[0]);
  });

  it('two hidden layers match', async () => {
    await compareWithReference({ inputDim: 6, hidden: [5, 4], dropout: 0.5, classes: 4 }, OPTIMIZERS[0]);
  });
});

describe('tfjs trainer training', () => {
  /** Three well-separated Gaussian blobs in 8-d. */
  function blobs(n: number, seed: number): TrainBatch {
    const random = mulberry32(seed);
    const dim = 8;
    const y = Int32Array.from({ length: n }, (_, i) => i % 3);
    const x = Float32Array.from({ length: n * dim }, (_, j) => {
      const row = Math.floor(j / dim);
      const centre = j % dim === y[row] ? 2 : 0;
      return centre + 0.3 * (random() * 2 - 1);
    });
    return { x, y, weight: new Float32Array(n).fill(1), masks: [], n };
  }

  for (const hidden of [[16], []] as const) {
    it(`loss falls over 50 steps on a separable problem (hidden [${hidden.join(', ')}])`, async () => {
      const arch: HeadArchitecture = { inputDim: 8, hidden, dropout: 0.2, classes: 3 };
      const data = blobs(60, 3);
      const random = mulberry32(4);
      const withMasks = (): TrainBatch => ({
        ...data,
        masks: hidden.map((h) => Float32Array.from({ length: data.n * h }, () => (random() < 0.8 ? 1 / 0.8 : 0))),
      });
      const optimizer: OptimizerConfig = { kind: 'adam', lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
      await withTrainer(
        arch,
        optimizer,
        initHeadParams(arch, 5),
        async (trainer) => {
          const losses: number[] = [];
          for (let s = 0; s < 50; s++) losses.push(await trainer.step(withMasks()));
          expect(losses.every(Number.isFinite)).toBe(true);
          expect(losses[49]).toBeLessThan(losses[0] * 0.5);
          const p = await trainer.predict(data.x, data.n);
          let right = 0;
          for (let i = 0; i < data.n; i++) {
            const row = Array.from(p.subarray(i * 3, i * 3 + 3));
            if (row.indexOf(Math.max(...row)) === data.y[i]) right++;
          }
          expect(right).toBeGreaterThanOrEqual(0.9 * data.n);
        },
        0.001,
        60,
      );
    });
  }

  it('setParams replaces the weights; getParams round-trips the canonical layout', async () => {
    const first = initHeadParams(SMALL, 1);
    const second = initHeadParams(SMALL, 2);
    second[1].bias.set([0.5, -0.25, 1]);
    await withTrainer(SMALL, OPTIMIZERS[0], first, async (trainer) => {
      expect(await trainer.getParams()).toEqual(first);
      await trainer.setParams(second);
      expect(await trainer.getParams()).toEqual(second);
      await expect(trainer.setParams(initHeadParams({ ...SMALL, hidden: [5] }, 1))).rejects.toThrow(/layer 0/);
    });
  });

  it('rejects malformed batches with a clear message', async () => {
    await withTrainer(SMALL, OPTIMIZERS[0], initHeadParams(SMALL, 1), async (trainer) => {
      const batch = randomBatch(SMALL, 5, 1);
      await expect(trainer.step({ ...batch, masks: [] })).rejects.toThrow(/1 dropout masks/);
      await expect(trainer.step({ ...batch, y: Int32Array.of(0, 1, 2, 3, 0) })).rejects.toThrow(/label 3 in row 3/);
      await expect(trainer.step({ ...batch, n: 6 })).rejects.toThrow(/x needs 36 values/);
      expect(await trainer.predict(new Float32Array(0), 0)).toEqual(new Float32Array(0));
    });
  });
});

describe('tfjs trainer memory', () => {
  for (const optimizer of OPTIMIZERS) {
    it(`${optimizer.kind}: no tensors leak across steps, and dispose frees them all`, async () => {
      const baseline = tf.memory().numTensors;
      const trainer = await createTfjsTrainer({
        architecture: SMALL,
        training: { optimizer, l2: 0.01 },
        initial: initHeadParams(SMALL, 1),
        maxBatch: 5,
      });
      const cycle = async (seed: number) => {
        await trainer.step(randomBatch(SMALL, 5, seed));
        await trainer.step(randomBatch(SMALL, 2, seed + 1, 5));
        await trainer.predict(randomBatch(SMALL, 5, seed).x, 5);
        await trainer.setParams(await trainer.getParams());
      };
      await cycle(1); // the optimiser creates its slot variables on the first step
      const steady = tf.memory().numTensors;
      for (let s = 2; s < 6; s++) await cycle(s * 10);
      expect(tf.memory().numTensors).toBe(steady);
      await trainer.dispose();
      expect(tf.memory().numTensors).toBe(baseline);
      await expect(trainer.step(randomBatch(SMALL, 5, 1))).rejects.toThrow(/after dispose/);
    });
  }
});

describe('initHeadParams', () => {
  const arch: HeadArchitecture = { inputDim: 300, hidden: [64, 32], dropout: 0.5, classes: 5 };

  it('has canonical [out, in] shapes, zero biases and glorot-uniform limits', () => {
    const params = initHeadParams(arch, 42);
    expect(() => checkHeadParams(arch, params)).not.toThrow();
    const fans: [number, number][] = [
      [300, 64],
      [64, 32],
      [32, 5],
    ];
    expect(params.map((p) => [p.weight.length, p.bias.length])).toEqual(fans.map(([i, o]) => [i * o, o]));
    fans.forEach(([fanIn, fanOut], l) => {
      const limit = glorotLimit(fanIn, fanOut);
      expect(limit).toBeCloseTo(Math.sqrt(6 / (fanIn + fanOut)), 12);
      const w = params[l].weight;
      const max = w.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(max).toBeLessThanOrEqual(limit);
      expect(max).toBeGreaterThan(0.9 * limit);
      // U(−a, a) has variance a²/3.
      const variance = w.reduce((s, v) => s + v * v, 0) / w.length;
      expect(variance / (limit * limit / 3)).toBeGreaterThan(0.8);
      expect(variance / (limit * limit / 3)).toBeLessThan(1.2);
      expect(params[l].bias.every((b) => b === 0)).toBe(true);
    });
  });

  it('is deterministic for a seed and differs between seeds', () => {
    expect(initHeadParams(arch, 42)).toEqual(initHeadParams(arch, 42));
    expect(initHeadParams(arch, 43)[0].weight).not.toEqual(initHeadParams(arch, 42)[0].weight);
  });

  it('rejects non-positive widths', () => {
    expect(() => initHeadParams({ ...arch, hidden: [0] }, 1)).toThrow(/positive integers/);
  });
});

describe('transpose', () => {
  it('turns [out, in] into [in, out] and back', () => {
    const w = Float32Array.of(1, 2, 3, 4, 5, 6); // 2 × 3
    expect(Array.from(transpose(w, 2, 3))).toEqual([1, 4, 2, 5, 3, 6]);
    expect(transpose(transpose(w, 2, 3), 3, 2)).toEqual(w);
  });
});
