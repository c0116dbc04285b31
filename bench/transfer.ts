/**
 * bench/transfer: the variants of the transfer-learning lessons on real data, each with its
 * validation accuracy and wall-clock time on this machine, in one run:
 *
 *   head      the default cut, a Dense(256) head
 *   sweep     the best of several cuts (extracted in one pass), same head
 *   augment   the default cut plus K cached augmented views of each training image
 *   fine-tune the head plus the backbone's last block, trained from cached codes (when available)
 *
 *   npm run bench:transfer                                   # squeezenet1_1 on the three datasets
 *   npm run bench:transfer -- --datasets flowers --views 2
 *
 * Needs ../shared (real weights and images). Validation accuracy: dogs-vs-cats on its
 * validation folder; flowers and cifar10-mini (no split folders) on a 20% content-hash split.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { cutLabel } from '../src/backbones/cut.ts';
import { loadBackbone } from '../src/backbones/zoo.ts';
import { loadDataset } from '../src/extract/dataset.ts';
import { DEFAULT_EXTRACT_SETTINGS, runExtract } from '../src/extract/run-extract.ts';
import { runSweep } from '../src/sweep/sweep-command.ts';
import { DEFAULT_HEAD_TRAINING, runTrainHead, type TrainHeadCommand } from '../src/train-head/train-command.ts';
import { benchArgs } from './args.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SHARED = path.resolve(ROOT, '..', 'shared');
const { values: args } = benchArgs({
  options: {
    backbone: { type: 'string', default: 'squeezenet1_1' },
    datasets: { type: 'string', default: 'dogs-vs-cats,flowers,cifar10-mini' },
    sweep: { type: 'string', default: 'pool3,pool5,fire7/concat,fire9/concat' },
    views: { type: 'string', default: '4' },
    epochs: { type: 'string', default: '40' },
    'finetune-epochs': { type: 'string', default: '3' },
    'skip-finetune': { type: 'boolean', default: false },
    /** Default: a fresh folder, deleted afterwards, so every time is a first run's. */
    cache: { type: 'string' },
  },
});
if (!existsSync(SHARED)) {
  console.log('bench/transfer: ../shared is absent (real weights and images); nothing to measure');
  process.exit(0);
}
process.env.BOTTLENECK_WEIGHTS ??= path.join(SHARED, 'models');

interface Row {
  readonly dataset: string;
  readonly variant: string;
  readonly cut: string;
  readonly valAcc: number;
  readonly seconds: number;
  readonly note: string;
}

const freshCache = !args.cache;
args.cache ??= await mkdtemp(path.join(os.tmpdir(), 'bottleneck-transfer-'));
const rows: Row[] = [];
const epochs = Number(args.epochs);
const views = Number(args.views);
const out = path.join(ROOT, 'bench', 'results', 'transfer');
await mkdir(out, { recursive: true });
const head = (codes: string, dir: string, dataset: string): TrainHeadCommand => ({
  ...DEFAULT_HEAD_TRAINING,
  codes,
  dataset,
  cacheRoot: args.cache!,
  out: dir,
  epochs,
  standardize: true,
  json: true,
  quiet: true,
});
const seconds = (since: number) => (performance.now() - since) / 1000;

for (const name of args.datasets!.split(',')) {
  const data = path.join(SHARED, 'datasets', name);
  const dataset = await loadDataset(data);
  const backbone = await loadBackbone(args.backbone!);
  const common = {
    items: dataset.items,
    dataset: dataset,
    backbone,
    ...DEFAULT_EXTRACT_SETTINGS,
    batch: 8,
    concurrency: 4,
    engine: 'auto',
    device: 'auto',
    cacheRoot: args.cache!,
  } as const;

  // 1. Head only, at the default cut.
  let started = performance.now();
  const plain = await runExtract({ ...common, cut: backbone.defaultCut });
  const plainHead = await runTrainHead(head(plain.path, path.join(out, `${name}-head`), dataset.name));
  rows.push({
    dataset: name,
    variant: 'head only',
    cut: cutLabel(backbone.defaultCut),
    valAcc: plainHead.config.metrics.valAcc ?? 0,
    seconds: seconds(started),
    note: `extract ${plain.seconds.toFixed(0)} s (${plain.new} new)`,
  });
  console.error(rows.at(-1));

  // 2. The best of several cuts, one forward pass.
  started = performance.now();
  const sweep = await runSweep({
    data,
    backbone: args.backbone!,
    layers: args.sweep!.split(','),
    pool: 'avg',
    cacheRoot: args.cache!,
    out: path.join(out, `${name}-sweep`),
    engine: 'auto',
    device: 'auto',
    batch: 8,
    concurrency: 4,
    hidden: [256],
    epochs,
    seed: 0,
    val: 0.2,
    quiet: true,
  });
  rows.push({
    dataset: name,
    variant: 'best swept cut',
    cut: cutLabel(sweep.best.cut),
    valAcc: sweep.best.valAcc,
    seconds: seconds(started),
    note: sweep.rows.map((r) => `${cutLabel(r.cut)} ${(r.valAcc * 100).toFixed(1)}`).join(', '),
  });
  console.error(rows.at(-1));

  // 3. Cached augmentation at the default cut (the images' codes are already cached).
  started = performance.now();
  const augmented = await runExtract({ ...common, cut: backbone.defaultCut, augment: { views, seed: 0 } });
  const augHead = await runTrainHead(head(augmented.caches[0].views!.path, path.join(out, `${name}-augment`), dataset.name));
  rows.push({
    dataset: name,
    variant: `+ ${views} cached views`,
    cut: cutLabel(backbone.defaultCut),
    valAcc: augHead.config.metrics.valAcc ?? 0,
    seconds: seconds(started),
    note: `${augmented.views} views extracted in ${augmented.seconds.toFixed(0)} s`,
  });
  console.error(rows.at(-1));

  // 4. Fine-tuning the last block from the head of (1).
  if (!args['skip-finetune']) {
    const { runFineTune } = await import('../src/finetune/finetune.ts');
    started = performance.now();
    const tuned = await runFineTune({
      head: plainHead.dir,
      out: path.join(out, `${name}-finetune`),
      cacheRoot: args.cache!,
      epochs: Number(args['finetune-epochs']),
      lr: 1e-4,
      momentum: 0.9,
      batch: 32,
      augment: 0,
      seed: 0,
      engine: 'auto',
      device: 'auto',
      json: true,
    });
    rows.push({
      dataset: name,
      variant: 'fine-tuned last block',
      cut: `${tuned.unfreeze.block} (from ${tuned.unfreeze.frozenCut})`,
      valAcc: tuned.config.metrics.valAcc ?? 0,
      seconds: seconds(started),
      note: `${args['finetune-epochs']} epochs`,
    });
    console.error(rows.at(-1));
  }
}

const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
console.log(`\nbench/transfer: ${args.backbone}, Dense(256) head, ${epochs} epochs, Adam, standardised codes; validation accuracy\n`);
console.log('| dataset | variant | cut | val acc | wall-clock | notes |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.dataset} | ${r.variant} | ${r.cut} | ${pct(r.valAcc)} | ${r.seconds.toFixed(0)} s | ${r.note} |`);
await writeFile(path.join(ROOT, 'bench', 'results', 'transfer.json'), `${JSON.stringify(rows, null, 2)}\n`);
if (freshCache) await rm(args.cache, { recursive: true, force: true });
