/** train-head: trainer parity, determinism, early stopping, saved heads, and the wrong-codes refusal. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../src/util/numbers.ts';
import { evaluateCodes, fit, type LabelledCodes } from '../src/train-head/fit.ts';
import { assertSameCodes, loadHead, saveHead } from '../src/train-head/head-folder.ts';
import { initHeadParams } from '../src/train-head/head-init.ts';
import { createOnnxTrainer } from '../src/train-head/onnx-trainer.ts';
import { createTfjsTrainer } from '../src/train-head/tfjs-trainer.ts';
import type { HeadArchitecture, HeadParams, HeadTrainer, TrainerOptions } from '../src/train-head/trainer.ts';
import { relativeError } from './helpers/compare.ts';
import { runTrainHead } from '../src/train-head/train-command.ts';
import { loadDataset } from '../src/extract/dataset.ts';
import { runExtract } from '../src/extract/run-extract.ts';
import { tinyRandomBackbone } from '../src/backbones/zoo/tiny-random.ts';
import { TEST_EXTRACT_DEFAULTS } from './helpers/extract-options.ts';
import { makeDataset } from './helpers/make-dataset.ts';
import { fitStandardizer, foldStandardizer, standardize } from '../src/train-head/standardize.ts';
import type { CodeSpec } from '../src/cache/code-spec.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-head-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

/** Gaussian blobs, one per class, in `dim` dimensions; `noise` controls the overlap. */
function blobs(n: number, dim: number, classes: number, seed: number, noise = 1): LabelledCodes {
  const random = mulberry32(seed);
  const centres = Array.from({ length: classes }, () => Float32Array.from({ length: dim }, () => random() * 4 - 2));
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % classes;
    for (let d = 0; d < dim; d++) x[i * dim + d] = centres[y[i]][d] + noise * (random() + random() + random() - 1.5);
  }
  return { x, y, n };
}

const arch: HeadArchitecture = { inputDim: 64, hidden: [16], dropout: 0, classes: 3 };

function options(a: HeadArchitecture, seed: number): TrainerOptions {
  return {
    architecture: a,
    training: { optimizer: { kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }, l2: 1e-4 },
    initial: initHeadParams(a, seed),
    maxBatch: 256,
  };
}

function flat(params: HeadParams): Float32Array {
  return Float32Array.from(params.flatMap((l) => [...l.weight, ...l.bias]));
}

async function train(trainer: HeadTrainer, a: HeadArchitecture, data: LabelledCodes, epochs: number, seed: number) {
  return fit({ trainer, architecture: a, train: data, validation: blobs(60, a.inputDim, a.classes, 99), epochs, batch: 16, seed, classWeights: null, patience: null, keep: 'last' });
}

describe('head trainers', () => {
  it('onnx and tfjs hold the same weights after an epoch (same init, same batches, dropout off)', async () => {
    const data = blobs(200, arch.inputDim, arch.classes, 1);
    const onnx = await createOnnxTrainer(options(arch, 7));
    const tfjs = await createTfjsTrainer(options(arch, 7));
    await train(onnx, arch, data, 1, 3);
    await train(tfjs, arch, data, 1, 3);
    const a = flat(await onnx.getParams());
    const b = flat(await tfjs.getParams());
    expect(relativeError(a, b)).toBeLessThan(1e-4);
    expect(relativeError(a, flat(initHeadParams(arch, 7)))).toBeGreaterThan(1e-3); // it did train
    await onnx.dispose();
    await tfjs.dispose();
  });

  it('gives the same weights for the same seed, dropout included', async () => {
    const withDropout = { ...arch, dropout: 0.5 };
    const data = blobs(150, arch.inputDim, arch.classes, 2);
    const run = async (seed: number) => {
      const trainer = await createOnnxTrainer(options(withDropout, seed));
      await train(trainer, withDropout, data, 3, seed);
      const params = flat(await trainer.getParams());
      await trainer.dispose();
      return params;
    };
    const first = await run(11);
    expect([...(await run(11))]).toEqual([...first]);
    expect(relativeError(await run(12), first)).toBeGreaterThan(1e-3);
  });

  it('stops early and keeps the best epoch', async () => {
    // Few, noisy rows and a big learning rate: validation loss bottoms out, then climbs.
    const a = { ...arch, hidden: [64] };
    const data = blobs(30, a.inputDim, a.classes, 5, 4);
    const validation = blobs(90, a.inputDim, a.classes, 6, 4);
    const opts = options(a, 1);
    const trainer = await createOnnxTrainer({ ...opts, training: { ...opts.training, optimizer: { kind: 'adam', lr: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 } } });
    const result = await fit({ trainer, architecture: a, train: data, validation, epochs: 60, batch: 8, seed: 1, classWeights: null, patience: 3, keep: 'best' });
    expect(result.stoppedEarly).toBe(true);
    expect(result.history.length).toBe(result.bestEpoch + 3);
    const best = Math.min(...result.history.map((h) => h.valLoss!));
    expect(result.history[result.bestEpoch - 1].valLoss).toBe(best);
    // The trainer was rolled back to the best epoch's weights.
    const now = await evaluateCodes(trainer, validation, a.classes, 64);
    expect(now.loss).toBeCloseTo(best, 5);
    await trainer.dispose();
  });
});

describe('standardised codes', () => {
  it('folds the scaling into the first layer: the saved head gives the same outputs on raw codes', async () => {
    const data = blobs(90, arch.inputDim, arch.classes, 8);
    for (let i = 0; i < data.x.length; i++) data.x[i] = data.x[i] * 30 + 100; // raw codes: large, offset
    const s = fitStandardizer(data.x, data.n, arch.inputDim);
    const z = standardize(s, data.x, data.n);
    const trainer = await createOnnxTrainer(options(arch, 4));
    await train(trainer, arch, { ...data, x: z }, 2, 4);
    const onStandardized = await trainer.predict(z, data.n);
    const raw = await createOnnxTrainer({ ...options(arch, 0), initial: foldStandardizer(s, await trainer.getParams()) });
    expect(relativeError(await raw.predict(data.x, data.n), onStandardized)).toBeLessThan(1e-4);
    await trainer.dispose();
    await raw.dispose();
  });
});

describe('head folders', () => {
  it('saves and reloads a head that predicts the same, and refuses codes of another key', async () => {
    const data = blobs(120, arch.inputDim, arch.classes, 3);
    const trainer = await createOnnxTrainer(options(arch, 2));
    const result = await train(trainer, arch, data, 2, 2);
    const before = await trainer.predict(data.x, data.n);
    const spec: CodeSpec = {
      backbone: 'tiny-vgg-random',
      weights: 'seed-1',
      layer: 'block2_pool',
      pool: 'avg',
      shape: [arch.inputDim],
      dtype: 'float32',
      preprocessing: { size: [32, 32], resize: 'squash', interpolation: 'linear', background: [255, 255, 255], channels: 'rgb', mean: [0, 0, 0], std: [1, 1, 1] },
      augment: null,
    };
    const dir = path.join(tmp, 'head');
    await saveHead(
      dir,
      {
        format: 'bottleneck-head/1',
        architecture: arch,
        classes: ['a', 'b', 'c'],
        cacheKey: 'tiny-vgg-random-block2_pool-avg-0123456789abcdef',
        codeSpec: spec,
        dataset: 'blobs',
        training: {
          trainer: 'onnx',
          optimizer: { kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 },
          l2: 1e-4,
          standardized: false,
          epochs: 2,
          batch: 16,
          seed: 2,
          patience: null,
          classWeights: null,
          splits: { source: 'hash', fractions: { val: 0.2, test: 0 }, train: 120, validation: 60, test: 0 },
        },
        bestEpoch: result.bestEpoch,
        metrics: { valLoss: null, valAcc: null, trainAcc: 1 },
      },
      result.params,
      result.history,
    );
    await trainer.dispose();

    const head = await loadHead(dir);
    const reloaded = await createOnnxTrainer({ ...options(arch, 0), initial: head.params });
    expect(relativeError(await reloaded.predict(data.x, data.n), before)).toBeLessThan(1e-6);
    await reloaded.dispose();
    expect(() => assertSameCodes(head, head.config.cacheKey, spec)).not.toThrow();
    expect(() => assertSameCodes(head, 'vgg16-block5_pool-fedcba9876543210', { ...spec, backbone: 'vgg16', layer: 'block5_pool' } as CodeSpec)).toThrow(
      /was trained on codes tiny-vgg-random-block2_pool-avg-0123456789abcdef \(tiny-vgg-random block2_pool:avg .*\), not on vgg16-block5_pool-fedcba9876543210/,
    );
  });

  it('trains from a cache key end to end and writes the head folder', async () => {
    const data = path.join(tmp, 'images');
    await makeDataset(data, { classes: ['red', 'green'], perClass: 12 });
    const dataset = await loadDataset(data);
    const summary = await runExtract({
      items: dataset.items,
      dataset,
      backbone: tinyRandomBackbone(),
      cut: { layer: 'block2_pool', pool: 'avg' },
      ...TEST_EXTRACT_DEFAULTS,
      cacheRoot: path.join(tmp, 'cache'),
    });
    const out = path.join(tmp, 'trained');
    const result = await runTrainHead({
      codes: summary.path,
      cacheRoot: path.join(tmp, 'cache'),
      out,
      hidden: [8],
      dropout: 0.5,
      optimizer: 'sgd',
      momentum: 0.9,
      batch: 4,
      epochs: 3,
      l2: 0,
      classWeights: 'balanced',
      seed: 1,
      patience: null,
      val: 0.25,
      test: 0,
      trainer: 'auto',
      standardize: true,
      json: true,
    });
    expect(result.history).toHaveLength(3);
    const head = await loadHead(out);
    expect(head.config.classes).toEqual(['green', 'red']);
    expect(head.config.cacheKey).toBe(summary.key);
    expect(head.config.training.trainer).toMatch(/^onnx/);
  });
});
