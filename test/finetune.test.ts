/**
 * fine-tune: the block and the frozen cut, the custom conv filter gradient, and a whole run on
 * the tiny backbone (block weights change, frozen ones do not; the frozen codes are cached once;
 * predict, export and evaluate take the fine-tuned head); plus squeezenet1_1 fire9 on a small
 * dogs-vs-cats subset when ../shared is there.
 */
import { requireGraph } from '../src/backbones/backbone.ts';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphFromCaffeArch, type CaffeArch } from '../src/backbones/caffe-arch.ts';
import { subgraphFrom } from '../src/backbones/subgraph.ts';
import { readSafetensors } from '../src/backbones/weights/safetensors.ts';
import { tinyRandomBackbone } from '../src/backbones/zoo/tiny-random.ts';
import { vgg16Graph } from '../src/backbones/zoo/vgg16.ts';
import { gather } from '../src/cache/code-table.ts';
import { createEngine } from '../src/engines/select-engine.ts';
import { tfBackend } from '../src/engines/tfjs-backend.ts';
import { runEvaluate } from '../src/evaluate/evaluate-command.ts';
import { loadDataset } from '../src/extract/dataset.ts';
import { runExtract } from '../src/extract/run-extract.ts';
import { resolveUnfreeze } from '../src/finetune/blocks.ts';
import { runFineTune, type FineTuneCommand } from '../src/finetune/finetune.ts';
import { convFilterGrad, convInputGrad } from '../src/finetune/trainable-net.ts';
import { headClassifier } from '../src/predict/classifier.ts';
import { runExport } from '../src/predict/export-command.ts';
import { loadHeadBackbone } from '../src/train-head/head-backbone.ts';
import { decodeOptionsFor, imageBatches } from '../src/predict/image-batches.ts';
import { PROBABILITIES, stitchHead } from '../src/predict/stitch-head.ts';
import { loadHead } from '../src/train-head/head-folder.ts';
import { createHeadPredictor } from '../src/train-head/head-predictor.ts';
import { runTrainHead, type TrainHeadCommand } from '../src/train-head/train-command.ts';
import { UsageError } from '../src/util/errors.ts';
import { relativeError } from './helpers/compare.ts';
import { extractWithTinyBackbone, TEST_EXTRACT_DEFAULTS } from './helpers/extract-options.ts';
import { makeDataset } from './helpers/make-dataset.ts';
import { readRows, rowsOfSplit } from './helpers/read-codes.ts';
import { hasSharedDatasets, hasSharedModels, NEEDS_SHARED_DATASETS, NEEDS_SHARED_MODELS, SHARED_DATASETS, SHARED_MODELS } from './helpers/shared.ts';

const SETTINGS = { engine: 'onnx', device: 'cpu' } as const;
const CLASSES = ['ant', 'bee'];

let tmp: string;
let cacheRoot: string;
let data: string;
let headDir: string;

const headCommand = (codes: string, out: string): TrainHeadCommand => ({
  codes,
  cacheRoot,
  out,
  hidden: [8],
  dropout: 0.5,
  optimizer: 'adam',
  momentum: 0,
  batch: 8,
  epochs: 3,
  l2: 0,
  classWeights: 'none',
  seed: 1,
  patience: null,
  val: 0.2,
  test: 0,
  trainer: 'onnx',
  standardize: false,
  json: true,
  quiet: true,
});

const tune = (over: Partial<FineTuneCommand> = {}): FineTuneCommand => ({
  head: headDir,
  out: path.join(tmp, 'tuned'),
  unfreeze: 'block2',
  cacheRoot,
  epochs: 2,
  lr: 1e-3,
  momentum: 0.9,
  batch: 4,
  augment: 1,
  seed: 3,
  ...SETTINGS,
  quiet: true,
  ...over,
});

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-finetune-'));
  cacheRoot = path.join(tmp, 'cache');
  data = path.join(tmp, 'data');
  await makeDataset(data, { classes: CLASSES, perClass: 4, splits: ['train', 'validation', 'test'] });
  const summary = await extractWithTinyBackbone(data, cacheRoot);
  headDir = path.join(tmp, 'head');
  await runTrainHead(headCommand(summary.path, headDir));
}, 120_000);
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('--unfreeze', () => {
  it('finds the block and its frozen cut: vgg16 block5 → block4_pool, by default the last block', () => {
    const graph = vgg16Graph();
    const plan = resolveUnfreeze(graph, [224, 224], 'block5_pool');
    expect(plan.block).toBe('block5');
    expect(plan.frozenCut).toBe('block4_pool');
    expect(plan.nodes).toEqual(['block5_conv1', 'block5_conv2', 'block5_conv3', 'block5_pool']);
    expect(plan.weighted).toEqual(['block5_conv1', 'block5_conv2', 'block5_conv3']);
    // A lower block trains everything above it up to the cut, as Keras' layer.trainable does.
    expect(resolveUnfreeze(graph, [224, 224], 'block5_pool', 'block4').nodes).toHaveLength(8);
  });

  it('refuses, in one line, a block that is unknown, above the cut, or without weights', () => {
    const graph = vgg16Graph();
    const refused = (block: string, cut = 'block5_pool') => {
      try {
        resolveUnfreeze(graph, [224, 224], cut, block);
      } catch (error) {
        expect(error).toBeInstanceOf(UsageError);
        expect((error as Error).message).not.toMatch(/\n/);
        return (error as Error).message;
      }
      throw new Error(`--unfreeze ${block} was accepted`);
    };
    expect(refused('block9')).toMatch(/^--unfreeze block9: vgg16 has no block 'block9' \(blocks below the head's cut block5_pool: block1, .*block5\)/);
    expect(refused('fc1')).toMatch(/not wholly below the head's cut block5_pool/);
    expect(refused('block5', 'block5_conv2')).toMatch(/not wholly below.*block5_conv3/);
    expect(refused('flatten', 'fc1')).toMatch(/no layer with weights/);
  });

  it.skipIf(!hasSharedModels)(`squeezenet1_1 fire9 → fire8/concat, googlenet inception_5b → inception_5a/output${NEEDS_SHARED_MODELS}`, () => {
    const arch = (file: string) => graphFromCaffeArch(JSON.parse(readFileSync(path.join(SHARED_MODELS, file), 'utf8')) as CaffeArch);
    const squeeze = resolveUnfreeze(arch('squeezenet1_1.arch.json'), [227, 227], 'fire9/concat');
    expect([squeeze.block, squeeze.frozenCut]).toEqual(['fire9', 'fire8/concat']);
    const google = resolveUnfreeze(arch('googlenet-bvlc.arch.json'), [224, 224], 'pool5/7x7_s1');
    expect([google.block, google.frozenCut]).toEqual(['inception_5b', 'inception_5a/output']);
    expect(google.weighted).toHaveLength(6);
  });
});

describe('the pieces', () => {
  it('computes a conv filter gradient, strided and not, as the textbook sum', async () => {
    const { tf } = await tfBackend('cpu');
    for (const [stride, size, k] of [[1, 6, 3], [2, 7, 3], [2, 6, 1]] as const) {
      const [n, c, o] = [2, 3, 4];
      const out = Math.floor((size - k) / stride) + 1;
      const xs = Float32Array.from({ length: n * size * size * c }, (_, i) => Math.sin(i * 1.3));
      const dys = Float32Array.from({ length: n * out * out * o }, (_, i) => Math.cos(i * 0.7));
      const g = tf.tidy(() => convFilterGrad(tf, tf.tensor4d(xs, [n, size, size, c]), tf.tensor4d(dys, [n, out, out, o]), [k, k, c, o], [stride, stride]));
      const got = Float32Array.from(await g.data());
      g.dispose();
      const want = new Float32Array(k * k * c * o);
      for (let b = 0; b < n; b++)
        for (let i = 0; i < out; i++)
          for (let j = 0; j < out; j++)
            for (let kh = 0; kh < k; kh++)
              for (let kw = 0; kw < k; kw++)
                for (let ci = 0; ci < c; ci++)
                  for (let oi = 0; oi < o; oi++) {
                    const xv = xs[((b * size + i * stride + kh) * size + j * stride + kw) * c + ci];
                    want[((kh * k + kw) * c + ci) * o + oi] += xv * dys[((b * out + i) * out + j) * o + oi];
                  }
      expect(relativeError(got, want)).toBeLessThan(1e-5);
    }
  });

  it("computes a conv input gradient as TF.js' own Conv2DBackpropInput, with strides and uncovered edges", async () => {
    const { tf } = await tfBackend('cpu');
    for (const [stride, h, w, k] of [[1, 6, 7, 3], [2, 8, 9, 3], [3, 11, 10, 5], [1, 5, 5, 1]] as const) {
      const [n, c, o] = [2, 3, 4];
      const shape = [n, h, w, c] as const;
      const [oh, ow] = [Math.floor((h - k) / stride) + 1, Math.floor((w - k) / stride) + 1];
      const dy = tf.tensor4d(Float32Array.from({ length: n * oh * ow * o }, (_, i) => Math.cos(i * 0.7)), [n, oh, ow, o]);
      const filter = tf.tensor4d(Float32Array.from({ length: k * k * c * o }, (_, i) => Math.sin(i * 1.9)), [k, k, c, o]);
      const got = convInputGrad(tf, dy, filter, shape, [stride, stride]);
      const want = tf.conv2dTranspose(dy, filter, [...shape], stride, 'valid');
      expect(got.shape).toEqual([...shape]);
      expect(relativeError(Float32Array.from(await got.data()), Float32Array.from(await want.data()))).toBeLessThan(1e-5);
      tf.dispose([dy, filter, got, want]);
    }
  });

  it('runs the layers above a node on its codes as the whole backbone runs them', async () => {
    const backbone = tinyRandomBackbone();
    const images = Float32Array.from({ length: 3 * 32 * 32 * 3 }, (_, i) => 50 * Math.sin(i * 0.37));
    const full = await createEngine({ ...SETTINGS, backbone, cuts: [{ layer: 'block1_pool' }, { layer: 'block2_pool', pool: 'avg' }], cacheDir: path.join(tmp, 'engines') });
    const [codes, expected] = await full.run(images, 3);
    await full.dispose();
    const sub = subgraphFrom(backbone, 'block1_pool');
    expect(sub.graph.nodes[0]).toMatchObject({ op: 'input', name: 'block1_pool', channels: 8 });
    expect(sub.preprocessing.size).toEqual([16, 16]);
    const upper = await createEngine({ ...SETTINGS, backbone: sub, cuts: [{ layer: 'block2_pool', pool: 'avg' }], cacheDir: path.join(tmp, 'engines') });
    const [got] = await upper.run(codes, 3);
    await upper.dispose();
    expect(relativeError(got, expected)).toBeLessThan(1e-5);
  });
});

describe('fine-tune on the tiny backbone', () => {
  let tunedDir: string;
  beforeAll(async () => {
    tunedDir = (await runFineTune(tune())).dir;
  }, 120_000);

  it('trains the block and the head from the trained head, leaving the frozen layers as they were', async () => {
    const tuned = await loadHead(tunedDir);
    const source = await loadHead(headDir);
    const base = tinyRandomBackbone();
    const ft = tuned.config.finetune!;
    expect(ft).toMatchObject({ block: 'block2', frozenCut: 'block1_pool', headCut: 'block2_pool', nodes: ['block2_conv1', 'block2_conv2'], lr: 1e-3, momentum: 0.9, epochs: 2, augment: 1 });
    expect(ft.baseWeights).toBe(base.weightsId);
    const { source: file } = await readSafetensors(path.join(tunedDir, 'backbone.safetensors'));
    expect([...file.tensors.keys()].sort()).toEqual(['block2_conv1.bias', 'block2_conv1.weight', 'block2_conv2.bias', 'block2_conv2.weight']);
    for (const [name, t] of file.tensors) expect(relativeError(t.data, base.weights.get(name)!.data)).toBeGreaterThan(0);
    // The backbone a fine-tuned head loads: frozen layers bit for bit the base's, the block its own.
    const loaded = requireGraph(await loadHeadBackbone(tuned), 'test');
    for (const name of ['block1_conv1.weight', 'block1_conv2.weight', 'block1_conv2.bias', 'fc1.weight']) {
      expect(loaded.weights.get(name)!.data).toEqual(base.weights.get(name)!.data);
    }
    expect(loaded.weights.get('block2_conv2.weight')!.data).toEqual(file.tensors.get('block2_conv2.weight')!.data);
    expect(relativeError(tuned.params[0].weight, source.params[0].weight)).toBeGreaterThan(0);
    // A new weights id, hence a new cache key: codes of the base backbone are never taken for these.
    expect(tuned.config.codeSpec.weights).toBe(loaded.weightsId);
    expect(tuned.config.codeSpec.weights).not.toBe(base.weightsId);
    expect(tuned.config.cacheKey).not.toBe(source.config.cacheKey);
    const history = JSON.parse(readFileSync(path.join(tunedDir, 'history.json'), 'utf8')) as { loss: number; valAcc: number | null }[];
    expect(history).toHaveLength(2);
    for (const h of history) {
      expect(Number.isFinite(h.loss)).toBe(true);
      expect(h.valAcc).not.toBeNull();
    }
  });

  it('writes the fine-tuned codes, and the head on them gives the validation loss training reported', async () => {
    const tuned = await loadHead(tunedDir);
    const table = await readRows(cacheRoot, tuned.config.cacheKey);
    expect(rowsOfSplit(table, 'train')).toHaveLength(8);
    const validation = rowsOfSplit(table, 'validation');
    const { x, y } = gather(table, validation, CLASSES);
    const predictor = await createHeadPredictor(tuned.config.architecture, tuned.params);
    const probs = await predictor.predict(x, validation.length);
    await predictor.dispose();
    let loss = 0;
    y.forEach((label, i) => (loss -= Math.log(probs[i * 2 + label])));
    loss /= validation.length;
    // TF.js (training) and onnxruntime (the written codes) agree on the trained network.
    expect(Math.abs(loss - tuned.config.metrics.valLoss!)).toBeLessThan(1e-4 * Math.max(1, loss));
  });

  it('predicts as the stitched fine-tuned graph, and its ONNX export agrees within 1e-5', async () => {
    const head = await loadHead(tunedDir);
    const backbone = requireGraph(await loadHeadBackbone(head), 'test');
    const files = ['ant/img0000.png', 'bee/img0001.png', 'bee/img0003.png'].map((f) => path.join(data, 'test', f));
    const { value: batch } = await imageBatches(files, { preprocessing: backbone.preprocessing, decode: decodeOptionsFor(head.config.codeSpec.preprocessing), batch: 3 }).next();
    const classifier = await headClassifier(backbone, head, { ...SETTINGS, cacheDir: cacheRoot });
    const predicted = await classifier.run(batch!.images, 3);
    await classifier.dispose();

    const stitched = await createEngine({ ...SETTINGS, backbone: stitchHead(backbone, head), cuts: [{ layer: PROBABILITIES }], cacheDir: cacheRoot });
    const [whole] = await stitched.run(batch!.images, 3);
    await stitched.dispose();
    expect(relativeError(predicted, whole)).toBeLessThan(1e-5);

    const out = path.join(tmp, 'export');
    await runExport({ head: tunedDir, format: 'onnx', out });
    const session = await ort.InferenceSession.create(path.join(out, 'model.onnx'));
    const result = await session.run({ images: new ort.Tensor('float32', batch!.images, [3, 32, 32, 3]) });
    await session.release();
    expect(relativeError(result.probabilities.data as Float32Array, predicted)).toBeLessThan(1e-5);
  });

  it('evaluates on its held-out rows and on --data alike', async () => {
    const own = await runEvaluate({ head: tunedDir, cacheRoot, batch: 8, concurrency: 2, ...SETTINGS });
    expect(own.source).toMatch(/^test split/);
    expect(own.metrics.n).toBe(8);
    const fresh = await runEvaluate({ head: tunedDir, data: path.join(data, 'test'), cacheRoot, batch: 8, concurrency: 2, quiet: true, ...SETTINGS });
    expect(fresh.metrics.n).toBe(8);
    expect(fresh.metrics.logLoss).toBeCloseTo(own.metrics.logLoss, 4);
  });

  it('never recomputes the frozen codes on a second run, and the same seed gives the same weights', async () => {
    const again = await runFineTune(tune({ out: path.join(tmp, 'tuned-again') }));
    expect(again.extract.new).toBe(0);
    expect(again.extract.views).toBe(0);
    expect(again.config.cacheKey).toBe((await loadHead(tunedDir)).config.cacheKey);
  });

  it('refuses a wrong --unfreeze in one line, and fine-tunes a fine-tuned head on', async () => {
    const wrong = runFineTune(tune({ unfreeze: 'block7', out: path.join(tmp, 'never') }));
    await expect(wrong).rejects.toBeInstanceOf(UsageError);
    await expect(wrong).rejects.toThrow(/^--unfreeze block7: tiny-vgg-random has no block 'block7' \(blocks below the head's cut block2_pool: block1, block2\)$/);
    const twice = await runFineTune(tune({ head: tunedDir, unfreeze: 'block1', epochs: 1, augment: 0, out: path.join(tmp, 'tuned-twice') }));
    expect(twice.config.finetune!.frozenCut).toBe('input_1');
    expect([...twice.config.finetune!.nodes].sort()).toEqual(['block1_conv1', 'block1_conv2', 'block2_conv1', 'block2_conv2']);
    const backbone = await loadHeadBackbone(await loadHead(twice.dir));
    expect(backbone.weightsId).toBe(twice.config.codeSpec.weights);
  });
});

describe('fine-tune on real weights', () => {
  it.skipIf(!hasSharedModels || !hasSharedDatasets)(
    `squeezenet1_1 --unfreeze fire9 on 40 + 20 dogs-vs-cats images runs and reports validation accuracy${NEEDS_SHARED_MODELS}${NEEDS_SHARED_DATASETS}`,
    async () => {
      const subset = path.join(tmp, 'dogs-vs-cats');
      const source = path.join(SHARED_DATASETS, 'dogs-vs-cats');
      for (const [split, count] of [['train', 20], ['validation', 10]] as const) {
        for (const label of ['cats', 'dogs']) {
          await mkdir(path.join(subset, split, label), { recursive: true });
          const files = (await readdir(path.join(source, split, label))).sort().slice(0, count);
          for (const f of files) await symlink(path.join(source, split, label, f), path.join(subset, split, label, f));
        }
      }
      const dataset = await loadDataset(subset);
      const { loadGraphBackbone } = await import('../src/backbones/zoo.ts');
      const backbone = await loadGraphBackbone('squeezenet1_1', { weights: SHARED_MODELS });
      const summary = await runExtract({ items: dataset.items, dataset, backbone, cut: { layer: 'fire9/concat', pool: 'avg' }, ...TEST_EXTRACT_DEFAULTS, cacheRoot });
      const head = path.join(tmp, 'squeeze-head');
      await runTrainHead({ ...headCommand(summary.path, head), hidden: [32], epochs: 10, batch: 8 });
      const result = await runFineTune(tune({ head, unfreeze: 'fire9', weights: SHARED_MODELS, epochs: 1, lr: 1e-4, batch: 8, augment: 0, out: path.join(tmp, 'squeeze-tuned') }));
      expect(result.unfreeze.frozenCut).toBe('fire8/concat');
      expect(result.unfreeze.weighted).toEqual(['fire9/squeeze1x1', 'fire9/expand1x1', 'fire9/expand3x3']);
      expect(result.history).toHaveLength(1);
      expect(result.history[0].valAcc).toBeGreaterThanOrEqual(0);
      expect(result.history[0].valAcc).toBeLessThanOrEqual(1);
      expect(Number.isFinite(result.history[0].loss)).toBe(true);
      expect(result.config.training.splits).toMatchObject({ train: 40, validation: 20 });
    },
    90_000,
  );
});
