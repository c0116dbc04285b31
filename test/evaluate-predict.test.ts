/**
 * Stage three on the tiny backbone: evaluate on the head's held-out rows and on new data,
 * predict on images agreeing with the head on cached codes, the ONNX export agreeing with
 * predict, and the CLI's happy paths and errors.
 */
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyRandomBackbone } from '../src/backbones/zoo/tiny-random.ts';
import { gather } from '../src/cache/code-table.ts';
import { runEvaluate } from '../src/evaluate/evaluate-command.ts';
import { computeMetrics } from '../src/evaluate/metrics.ts';
import { classify, headClassifier } from '../src/predict/classifier.ts';
import { runExport, type ExportedPreprocessing } from '../src/predict/export-command.ts';
import { decodeOptionsFor, imageBatches } from '../src/predict/image-batches.ts';
import { loadHead } from '../src/train-head/head-folder.ts';
import { createHeadPredictor } from '../src/train-head/head-predictor.ts';
import { runTrainHead } from '../src/train-head/train-command.ts';
import { relativeError } from './helpers/compare.ts';
import { runCli } from './helpers/cli.ts';
import { readRows, rowsOfSplit } from './helpers/read-codes.ts';
import { extractWithTinyBackbone } from './helpers/extract-options.ts';
import { makeDataset, writeNoisePng } from './helpers/make-dataset.ts';

const CLASSES = ['ant', 'bee', 'cow'];
const SETTINGS = { engine: 'onnx', device: 'cpu' } as const;

let tmp: string;
let cacheRoot: string;
let data: string;
let headDir: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-eval-'));
  cacheRoot = path.join(tmp, 'cache');
  data = path.join(tmp, 'data');
  await makeDataset(data, { classes: CLASSES, perClass: 6, splits: ['train', 'validation', 'test'] });
  const summary = await extractWithTinyBackbone(data, cacheRoot);
  headDir = path.join(tmp, 'head');
  await runTrainHead({
    codes: summary.path,
    cacheRoot,
    out: headDir,
    hidden: [8],
    dropout: 0,
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
    standardize: true,
    json: true,
  });
}, 120_000);
afterAll(() => rm(tmp, { recursive: true, force: true }));

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { cwd: tmp, env });

/** The head applied to the cached codes of the test split, by path. */
async function cachedProbabilities(): Promise<Map<string, Float32Array>> {
  const head = await loadHead(headDir);
  const table = await readRows(cacheRoot, head.config.cacheKey);
  const test = rowsOfSplit(table, 'test');
  const x = gather(table, test, CLASSES).x;
  const predictor = await createHeadPredictor(head.config.architecture, head.params);
  const probs = await predictor.predict(x, test.length);
  await predictor.dispose();
  const c = CLASSES.length;
  expect(table.dim).toBe(head.config.architecture.inputDim);
  return new Map(test.map((r, i) => [table.paths[r], probs.slice(i * c, (i + 1) * c)]));
}

describe('computeMetrics', () => {
  it('matches scikit-learn on a small worked example', () => {
    // y_true = [a, a, b, b, c], y_pred = [a, b, b, b, a]; sklearn: accuracy 0.6,
    // precision a 0.5 b 0.667 c 0, recall a 0.5 b 1 c 0, macro f1 (0.5 + 0.8 + 0) / 3.
    const rows = ['a', 'a', 'b', 'b', 'c'].map((label, i) => ({ path: `p${i}`, file: null, label, sha256: '' }));
    const probs = Float32Array.from([0.7, 0.2, 0.1, 0.3, 0.6, 0.1, 0.1, 0.8, 0.1, 0.2, 0.7, 0.1, 0.5, 0.1, 0.4]);
    const m = computeMetrics(['a', 'b', 'c'], rows, probs);
    expect(m.accuracy).toBeCloseTo(0.6, 10);
    expect(m.classes.map((c) => c.precision)).toEqual([0.5, 2 / 3, 0]);
    expect(m.classes.map((c) => c.recall)).toEqual([0.5, 1, 0]);
    expect(m.macro.f1).toBeCloseTo((0.5 + 0.8) / 3, 6);
    expect(m.weighted.f1).toBeCloseTo((2 * 0.5 + 2 * 0.8) / 5, 6);
    expect(m.confusion).toEqual([[1, 1, 0], [0, 2, 0], [1, 0, 0]]);
    // sklearn.metrics.log_loss: -mean(log p_true)
    const expected = -(Math.log(0.7) + Math.log(0.3) + Math.log(0.8) + Math.log(0.7) + Math.log(0.4)) / 5;
    expect(m.logLoss).toBeCloseTo(expected, 6);
    expect(m.topK).toEqual({});
    // Worst first: the c image had p(c) = 0.4, the a image p(a) = 0.3.
    expect(m.mistakes.map((x) => x.path)).toEqual(['p1', 'p4']);
  });

  it('counts labels the head never saw apart, and scores only the rest', () => {
    const rows = [
      { path: 'x', file: null, label: 'a', sha256: '' },
      { path: 'y', file: null, label: 'zebra', sha256: '' },
    ];
    const m = computeMetrics(['a', 'b'], rows, Float32Array.from([0.9, 0.1, 0.5, 0.5]));
    expect(m.n).toBe(1);
    expect(m.accuracy).toBe(1);
    expect(m.unseenLabels).toEqual({ zebra: 1 });
  });

  it('gives top-k only where there are more than k classes', () => {
    const classes = ['a', 'b', 'c', 'd'];
    const rows = [{ path: 'x', file: null, label: 'd', sha256: '' }];
    const m = computeMetrics(classes, rows, Float32Array.from([0.4, 0.3, 0.2, 0.1]));
    expect(m.accuracy).toBe(0);
    expect(m.topK).toEqual({ 3: 0 });
  });
});

describe('evaluate', () => {
  it("scores the head's test split, consistently with the head on those codes", async () => {
    const report = await runEvaluate({ head: headDir, cacheRoot, batch: 8, concurrency: 2, ...SETTINGS });
    expect(report.source).toMatch(/^test split/);
    expect(report.metrics.n).toBe(18);
    const expected = await cachedProbabilities();
    let correct = 0;
    for (const [p, probs] of expected) {
      const truth = CLASSES.indexOf(p.split('/')[1]);
      if (probs.indexOf(Math.max(...probs)) === truth) correct++;
    }
    expect(report.metrics.accuracy).toBeCloseTo(correct / 18, 10);
    expect(report.metrics.confusion.flat().reduce((a, b) => a + b, 0)).toBe(18);
    expect(report.metrics.classes.map((c) => c.support)).toEqual([6, 6, 6]);
    // Files are found through the cache's record of the dataset root.
    for (const m of report.metrics.mistakes) expect(m.file && existsSync(m.file)).toBeTruthy();
    expect(report.history).toHaveLength(3);
  });

  it('evaluates new data through the cache, reporting an unknown label', async () => {
    const extra = path.join(tmp, 'extra');
    await cp(path.join(data, 'test'), extra, { recursive: true });
    for (let i = 0; i < 3; i++) await writeNoisePng(path.join(extra, 'yak', `y${i}.png`), 900 + i);
    const report = await runEvaluate({ head: headDir, data: extra, cacheRoot, batch: 8, concurrency: 2, quiet: true, ...SETTINGS });
    expect(report.metrics.unseenLabels).toEqual({ yak: 3 });
    expect(report.metrics.n).toBe(18);
    // The same images as the test split, so the same numbers.
    const own = await runEvaluate({ head: headDir, cacheRoot, batch: 8, concurrency: 2, ...SETTINGS });
    expect(report.metrics.accuracy).toBe(own.metrics.accuracy);
    expect(report.metrics.logLoss).toBeCloseTo(own.metrics.logLoss, 6);
  });
});

describe('predict', () => {
  it('gives the probabilities of the head on the cached code, within 1e-5', async () => {
    const expected = await cachedProbabilities();
    const head = await loadHead(headDir);
    const classifier = await headClassifier(tinyRandomBackbone(), head, { ...SETTINGS, cacheDir: cacheRoot });
    const files = [...expected.keys()].map((p) => path.join(data, p));
    let seen = 0;
    for await (const p of classify(classifier, files, { batch: 4, topK: 2 })) {
      if ('error' in p) throw new Error(p.error);
      const want = expected.get(path.relative(data, p.file).split(path.sep).join('/'))!;
      for (let j = 0; j < want.length; j++) expect(Math.abs(p.probabilities[j] - want[j])).toBeLessThan(1e-5);
      expect(p.top).toHaveLength(2);
      expect(p.top[0].probability).toBe(Math.max(...p.probabilities));
      seen++;
    }
    await classifier.dispose();
    expect(seen).toBe(18);
  });
});

describe('export --format onnx', () => {
  it('writes one model that onnxruntime loads and that agrees with predict', async () => {
    const out = path.join(tmp, 'export-onnx');
    const { files } = await runExport({ head: headDir, format: 'onnx', out });
    expect(files.map((f) => path.basename(f))).toEqual(['model.onnx', 'preprocessing.json']);
    const prep = JSON.parse(await readFile(path.join(out, 'preprocessing.json'), 'utf8')) as ExportedPreprocessing;
    expect(prep.output.classes).toEqual(CLASSES);

    const head = await loadHead(headDir);
    const backbone = tinyRandomBackbone();
    const images = [...(await cachedProbabilities()).keys()].slice(0, 5).map((p) => path.join(data, p));
    const batches = imageBatches(images, { preprocessing: backbone.preprocessing, decode: decodeOptionsFor(head.config.codeSpec.preprocessing), batch: 5 });
    const { value: batch } = await batches.next();
    const [h, w] = prep.input.size;
    const session = await ort.InferenceSession.create(path.join(out, 'model.onnx'));
    const result = await session.run({ [prep.input.name]: new ort.Tensor('float32', batch!.images, [5, h, w, 3]) });
    const exported = result[prep.output.name].data as Float32Array;
    await session.release();

    const classifier = await headClassifier(backbone, head, { ...SETTINGS, cacheDir: cacheRoot });
    const predicted = await classifier.run(batch!.images, 5);
    await classifier.dispose();
    expect(relativeError(exported, predicted)).toBeLessThan(1e-5);
  });
});

describe('export --format tfjs', () => {
  it('writes model.json, its weights and preprocessing.json naming the layers a loader feeds and reads', async () => {
    const out = path.join(tmp, 'export-tfjs');
    const { files } = await runExport({ head: headDir, format: 'tfjs', out });
    expect(files.map((f) => path.basename(f))).toEqual(['group1-shard1of1.bin', 'model.json', 'preprocessing.json']);
    const prep = JSON.parse(await readFile(path.join(out, 'preprocessing.json'), 'utf8')) as ExportedPreprocessing;
    const model = JSON.parse(await readFile(path.join(out, 'model.json'), 'utf8')) as {
      modelTopology: { model_config: { config: { input_layers: [string][]; output_layers: [string][] } } };
    };
    expect(prep.model).toBe('model.json');
    expect(prep.input.name).toBe(model.modelTopology.model_config.config.input_layers[0][0]);
    expect(prep.output.name).toBe(model.modelTopology.model_config.config.output_layers[0][0]);
    expect(prep.input.size).toEqual([32, 32]);
  });
});

describe('CLI', () => {
  it('evaluate --json, predict --head, export, and a report folder', async () => {
    const ev = await cli(['evaluate', '--head', headDir, '--cache', cacheRoot, '--json', '--report', path.join(tmp, 'report')]);
    expect(ev.code).toBe(0);
    const report = JSON.parse(ev.stdout) as { metrics: { n: number; accuracy: number } };
    expect(report.metrics.n).toBe(18);
    expect(existsSync(path.join(tmp, 'report', 'report.html'))).toBe(true);

    const table = await cli(['evaluate', '--head', headDir, '--cache', cacheRoot]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/accuracy \d+\.\d\d%/);
    expect(table.stdout).toMatch(/weighted avg/);
    expect(table.stdout).toMatch(/confusion matrix/);

    await writeFile(path.join(tmp, 'notes.png'), 'not an image');
    const pr = await cli(['predict', '--head', headDir, '--cache', cacheRoot, '--json', '--top-k', '2', path.join(data, 'test', 'ant'), path.join(tmp, 'notes.png')]);
    expect(pr.code).toBe(1);
    const lines = pr.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; top?: { label: string; probability: number }[]; error?: string });
    expect(lines).toHaveLength(7);
    expect(lines.filter((l) => l.top).every((l) => l.top!.length === 2)).toBe(true);
    expect(lines.find((l) => l.error)?.error).toMatch(/notes\.png/);

    const bars = await cli(['predict', '--head', headDir, '--cache', cacheRoot, path.join(data, 'test', 'bee', 'img0000.png')]);
    expect(bars.code).toBe(0);
    expect(bars.stdout).toMatch(/img0000\.png\n\s+(ant|bee|cow)\s+█*[▏▎▍▌▋▊▉]?\s+\d+\.\d%/);
  });

  it('fails in one line on a missing head, a missing image, or no mode', async () => {
    const noHead = await cli(['evaluate', '--head', path.join(tmp, 'nope')]);
    expect(noHead.code).toBe(2);
    expect(noHead.stderr.trim()).toMatch(/^bottleneck: .*nope: not a head folder/);
    const noImage = await cli(['predict', '--head', headDir, path.join(tmp, 'missing.jpg')]);
    expect(noImage.code).toBe(2);
    expect(noImage.stderr.trim()).toMatch(/missing\.jpg: no such file or folder$/);
    const noMode = await cli(['predict', path.join(data, 'test', 'bee', 'img0000.png')]);
    expect(noMode.code).toBe(2);
    expect(noMode.stderr).toMatch(/--head DIR.*--imagenet/);
    const otherCache = await cli(['evaluate', '--head', headDir, '--cache', path.join(tmp, 'empty-cache')]);
    expect(otherCache.code).toBe(2);
    expect(otherCache.stderr).toMatch(/not in .*empty-cache/);
  });
});
