/**
 * bench/int8-accuracy: what int8 extraction costs in accuracy, on real images and real weights.
 *
 *   npm run bench:int8-accuracy
 *   npm run bench:int8-accuracy -- --backbones googlenet --datasets flowers --seeds 1
 *
 * For each backbone and dataset: extract fp32 and int8 codes as a user would (`extract
 * --precision int8`), train the default head (Dense(256), 50 epochs) on each with the same
 * seeds, and report validation accuracy (mean over --seeds heads, which takes out most of the
 * head's own seed noise) and the cosine similarity of each image's int8 code to its fp32 code.
 * As for a user, a backbone is calibrated once, on 128 training images of the first dataset it
 * meets (dogs-vs-cats by default); the later datasets reuse that calibration.
 */
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readCodeTable, resolveDataset } from '../src/cache/code-table.ts';
import { FeatureCache } from '../src/cache/feature-cache.ts';
import { runExtractCommand, type ExtractCommand } from '../src/extract/extract-command.ts';
import { planExtract, planKey } from '../src/extract/extract-plan.ts';
import { DEFAULT_HEAD_TRAINING, runTrainHead, type TrainHeadCommand } from '../src/train-head/train-command.ts';
import { cosine } from '../test/helpers/compare.ts';
import { machineLine } from './machine.ts';
import { benchArgs } from './args.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SHARED = path.resolve(ROOT, '..', 'shared');
const { values: args } = benchArgs({
  options: {
    backbones: { type: 'string', default: `squeezenet1_1,googlenet,${path.join(SHARED, 'models', 'teachable-machine', 'model.json')}` },
    datasets: { type: 'string', default: 'dogs-vs-cats,flowers,cifar10-mini' },
    cache: { type: 'string', default: path.join(os.tmpdir(), 'bottleneck-int8-cache') },
    seeds: { type: 'string', default: '3' },
  },
});

const PRECISIONS = ['fp32', 'int8'] as const;
type Precision = (typeof PRECISIONS)[number];

async function extractKey(backbone: string, dataset: string, precision: Precision): Promise<string> {
  process.env.BOTTLENECK_WEIGHTS ??= path.join(SHARED, 'models');
  const cmd: ExtractCommand = {
    data: path.join(SHARED, 'datasets', dataset),
    backbone,
    engine: 'auto',
    device: 'cpu',
    cacheRoot: args.cache!,
    background: '255,255,255',
    batch: 8,
    concurrency: 4,
    float16: false,
    precision,
    strict: false,
    wait: 0,
    flushSeconds: 30,
    json: true,
    augment: 0,
    augmentSeed: 0,
  };
  await runExtractCommand(cmd);
  return planKey(await planExtract(cmd));
}

/** The dataset's codes in one key, by content hash (a key holds every dataset extracted into it). */
async function codesOf(key: string, dataset: string): Promise<Map<string, Float32Array>> {
  const cache = await FeatureCache.open(args.cache!, key);
  const table = await readCodeTable(cache, await resolveDataset(cache, dataset));
  return new Map(table.sha256.map((sha, r) => [sha, table.codes.subarray(r * table.dim, (r + 1) * table.dim)]));
}

function cosines(a: Map<string, Float32Array>, b: Map<string, Float32Array>): { mean: number; min: number } {
  const all = [...a].filter(([sha]) => b.has(sha)).map(([sha, x]) => cosine(x, b.get(sha)!));
  return { mean: all.reduce((s, c) => s + c, 0) / all.length, min: Math.min(...all) };
}

async function valAccuracy(key: string, dataset: string, seed: number): Promise<number> {
  const cmd: TrainHeadCommand = {
    ...DEFAULT_HEAD_TRAINING,
    codes: key,
    cacheRoot: args.cache!,
    out: path.join(args.cache!, '..', 'bottleneck-int8-heads', `${key}-${seed}`),
    seed,
    dataset,
    json: false,
  };
  const result = await runTrainHead(cmd);
  return result.config.metrics.valAcc ?? NaN;
}

interface Row {
  readonly backbone: string;
  readonly dataset: string;
  readonly acc: Record<Precision, number>;
  readonly cosine: { mean: number; min: number };
}

const seeds = Array.from({ length: Number(args.seeds) }, (_, i) => i);
const rows: Row[] = [];
mkdirSync(args.cache!, { recursive: true });
for (const backbone of args.backbones!.split(',')) {
  for (const dataset of args.datasets!.split(',')) {
    const keys = {} as Record<Precision, string>;
    const acc = {} as Record<Precision, number>;
    for (const p of PRECISIONS) {
      keys[p] = await extractKey(backbone, dataset, p);
      const accs: number[] = [];
      for (const seed of seeds) accs.push(await valAccuracy(keys[p], dataset, seed));
      acc[p] = accs.reduce((a, b) => a + b, 0) / accs.length;
    }
    rows.push({ backbone: path.basename(path.dirname(backbone)) === 'models' || !backbone.includes('/') ? backbone : path.basename(path.dirname(backbone)), dataset, acc, cosine: cosines(await codesOf(keys.fp32, dataset), await codesOf(keys.int8, dataset)) });
  }
}

console.log(`\n${machineLine()}`);
console.log(`default head (Dense(256), ${DEFAULT_HEAD_TRAINING.epochs} epochs), validation accuracy, mean of ${seeds.length} seeds\n`);
console.log('| backbone | dataset | fp32 val acc | int8 val acc | int8 − fp32 | cosine int8 vs fp32, mean (min) |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  const diff = (r.acc.int8 - r.acc.fp32) * 100;
  console.log(
    `| ${r.backbone} | ${r.dataset} | ${(r.acc.fp32 * 100).toFixed(2)}% | ${(r.acc.int8 * 100).toFixed(2)}% | ${diff >= 0 ? '+' : ''}${diff.toFixed(2)} pt | ${r.cosine.mean.toFixed(4)} (${r.cosine.min.toFixed(4)}) |`,
  );
}
