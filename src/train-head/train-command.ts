/**
 * `bottleneck train-head`: cached codes in, a head folder out. Reads one cache key, splits
 * it, trains with the chosen trainer and saves the head with its history and curves.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Split } from '../cache/code-rows.ts';
import { cacheKey } from '../cache/code-spec.ts';
import { FeatureCache } from '../cache/feature-cache.ts';
import { tfBackend } from '../engines/tfjs-backend.ts';
import { UsageError } from '../util/errors.ts';
import { isInstalled } from '../util/installed.ts';
import { fit, type EpochStats, type LabelledCodes } from './fit.ts';
import { HEAD_FORMAT, saveHead, type HeadConfig } from './head-folder.ts';
import { initHeadParams } from './head-init.ts';
import { createOnnxTrainer } from './onnx-trainer.ts';
import { planSplits, type SplitPlan } from './splits.ts';
import { fitStandardizer, foldStandardizer, standardize } from './standardize.ts';
import { createTfjsTrainer } from './tfjs-trainer.ts';
import type { HeadArchitecture, HeadTrainer, OptimizerConfig, TrainerOptions } from './trainer.ts';

export interface TrainHeadCommand {
  /** A cache key folder (cache/<key>), or a key name under cacheRoot. */
  readonly codes: string;
  readonly cacheRoot: string;
  readonly out?: string;
  readonly hidden: readonly number[];
  readonly dropout: number;
  readonly optimizer: 'adam' | 'rmsprop' | 'sgd';
  readonly lr?: number;
  readonly momentum: number;
  readonly batch: number;
  readonly epochs: number;
  readonly l2: number;
  readonly classWeights: string;
  readonly seed: number;
  readonly patience: number | null;
  readonly val: number;
  readonly test: number;
  readonly trainer: 'auto' | 'onnx' | 'tfjs';
  /** Train on per-feature standardised codes (folded back into the saved weights). */
  readonly standardize: boolean;
  /** Required when the key holds rows of several datasets. */
  readonly dataset?: string;
  readonly json: boolean;
  /** No output at all (for callers that report themselves, such as sweep). */
  readonly quiet?: boolean;
}

/** All rows of a cache key as one table, whatever split they were stored under. */
export interface CodeTable {
  /** The dataset the rows belong to (null when the key holds no rows). */
  readonly dataset: string | null;
  readonly codes: Float32Array;
  readonly dim: number;
  readonly labels: readonly string[];
  readonly sha256: readonly string[];
  readonly paths: readonly string[];
  readonly splits: readonly (Split | null)[];
  /** Augmented-view index per row (0 for the images themselves). */
  readonly views: readonly number[];
}

export async function readCodeTable(cache: FeatureCache, dataset?: string): Promise<CodeTable> {
  const all = await cache.readAll({ dataset });
  if (dataset === undefined && all.datasets.length > 1) {
    throw new UsageError(`${cache.dir} holds ${all.datasets.length} datasets (${all.datasets.join(', ')}): choose one with --dataset`);
  }
  if (dataset !== undefined && !all.datasets.includes(dataset)) {
    throw new UsageError(`${cache.dir} has no dataset '${dataset}' (it has ${all.datasets.join(', ') || 'no rows'})`);
  }
  const parts = [...all.splits.entries()];
  const n = parts.reduce((s, [, p]) => s + p.labels.length, 0);
  const codes = new Float32Array(n * all.dim);
  let offset = 0;
  for (const [, p] of parts) {
    codes.set(p.codes, offset);
    offset += p.codes.length;
  }
  return {
    dataset: dataset ?? all.datasets[0] ?? null,
    codes,
    dim: all.dim,
    labels: parts.flatMap(([, p]) => p.labels),
    sha256: parts.flatMap(([, p]) => p.sha256),
    paths: parts.flatMap(([, p]) => p.paths),
    splits: parts.flatMap(([split, p]) => p.labels.map(() => (split === 'none' ? null : split))),
    views: parts.flatMap(([, p]) => p.views),
  };
}

export function gather(table: CodeTable, rows: readonly number[], classes: readonly string[]): LabelledCodes {
  const x = new Float32Array(rows.length * table.dim);
  const y = new Int32Array(rows.length);
  const index = new Map(classes.map((c, i) => [c, i]));
  rows.forEach((r, i) => {
    x.set(table.codes.subarray(r * table.dim, (r + 1) * table.dim), i * table.dim);
    y[i] = index.get(table.labels[r]) ?? -1;
  });
  return { x, y, n: rows.length };
}

export async function openCodes(codes: string, cacheRoot: string): Promise<FeatureCache> {
  const dir = existsSync(path.join(codes, 'spec.json')) ? codes : path.join(cacheRoot, codes);
  if (!existsSync(path.join(dir, 'spec.json'))) {
    throw new UsageError(`${codes}: not a cache key folder (run \`bottleneck extract\` first; it prints the key and its folder)`);
  }
  return FeatureCache.open(path.dirname(path.resolve(dir)), path.basename(dir));
}

function optimizerConfig(cmd: TrainHeadCommand): OptimizerConfig {
  switch (cmd.optimizer) {
    case 'adam':
      return { kind: 'adam', lr: cmd.lr ?? 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
    case 'rmsprop':
      return { kind: 'rmsprop', lr: cmd.lr ?? 1e-3, rho: 0.9, epsilon: 1e-7 };
    case 'sgd':
      return { kind: 'sgd', lr: cmd.lr ?? 1e-2, momentum: cmd.momentum };
  }
}

/** `balanced` (n / (classes · n_c), as scikit-learn and Keras users compute it), `none`, or `cat=1,dog=3`. */
export function classWeightsFor(spec: string, classes: readonly string[], train: LabelledCodes): Float32Array | null {
  if (spec === 'none') return null;
  if (spec === 'balanced') {
    const counts = new Float32Array(classes.length);
    for (const y of train.y) counts[y]++;
    return counts.map((c) => (c > 0 ? train.n / (classes.length * c) : 0));
  }
  const weights = new Float32Array(classes.length).fill(1);
  for (const part of spec.split(',')) {
    const [name, value] = part.split('=');
    const i = classes.indexOf(name);
    if (i < 0 || !Number.isFinite(Number(value))) throw new UsageError(`--class-weights ${spec}: use balanced, none, or CLASS=WEIGHT,… with classes ${classes.join(', ')}`);
    weights[i] = Number(value);
  }
  return weights;
}

export async function createTrainer(choice: 'auto' | 'onnx' | 'tfjs', opts: TrainerOptions): Promise<HeadTrainer> {
  if (choice === 'onnx') return createOnnxTrainer(opts);
  if (choice === 'tfjs') return createTfjsTrainer(opts);
  // TF.js is only faster where its native GPU backend runs; everywhere else the ONNX trainer wins.
  if (!isInstalled('@tensorflow/tfjs-node-gpu')) return createOnnxTrainer(opts);
  const backend = await tfBackend('auto');
  return backend.provider === 'tensorflow-gpu' ? createTfjsTrainer(opts) : createOnnxTrainer(opts);
}

export async function runTrainHead(cmd: TrainHeadCommand): Promise<{ dir: string; config: HeadConfig; history: readonly EpochStats[] }> {
  const { cache, viewsCache } = await withViews(await openCodes(cmd.codes, cmd.cacheRoot));
  const table = await readCodeTable(cache, cmd.dataset);
  const plan = planSplits(
    table.labels.map((label, i) => ({ label, sha256: table.sha256[i], split: table.splits[i] })),
    { val: cmd.val, test: cmd.test },
  );
  const classes = [...new Set(plan.train.map((i) => table.labels[i]))].sort();
  if (classes.length < 2) throw new UsageError(`${cache.dir}: the training rows hold ${classes.length} class(es); a classifier needs at least two`);
  // Row order follows the shard layout, which depends on flush timing and resumes; order rows by
  // path so the same data and seed give the same head however it was extracted.
  const byPath = (a: number, b: number) => (table.paths[a] < table.paths[b] ? -1 : table.paths[a] > table.paths[b] ? 1 : 0);
  const trainImages = gather(table, [...plan.train].sort(byPath), classes);
  // Views of training images only: a view of a validation image would leak it into training.
  const views = viewsCache ? await trainingViews(viewsCache, table, plan.train, classes) : null;
  const rawTrain = views ? concatLabelled(trainImages, views.codes, table.dim) : trainImages;
  // Validation rows of a class the head never trained on cannot be scored; they are left out.
  const rawValidation = gather(table, plan.validation.filter((i) => classes.includes(table.labels[i])).sort(byPath), classes);
  const standardizer = cmd.standardize ? fitStandardizer(rawTrain.x, rawTrain.n, table.dim) : null;
  const scaled = (d: LabelledCodes): LabelledCodes => (standardizer ? { ...d, x: standardize(standardizer, d.x, d.n) } : d);
  const train = scaled(rawTrain);
  const validation = scaled(rawValidation);

  const architecture: HeadArchitecture = { inputDim: table.dim, hidden: cmd.hidden, dropout: cmd.dropout, classes: classes.length };
  const optimizer = optimizerConfig(cmd);
  const trainer = await createTrainer(cmd.trainer, {
    architecture,
    training: { optimizer, l2: cmd.l2 },
    initial: initHeadParams(architecture, cmd.seed),
    maxBatch: cmd.batch * 8,
  });
  const classWeights = classWeightsFor(cmd.classWeights, classes, train);
  const out = path.resolve(cmd.out ?? path.join('heads', `${cache.key}-${new Date().toISOString().replace(/[:.]/g, '-')}`));
  const quiet = cmd.quiet ?? false;
  const log = (line: string) => {
    if (!quiet) console.error(line);
  };
  const print = (line: string) => {
    if (!quiet) console.log(line);
  };
  if (!cmd.json) {
    log(`codes ${cache.key}: ${trainImages.n} train, ${validation.n} validation, ${plan.test.length} test rows (${describeSplits(plan)}), ${classes.length} classes`);
    if (views) log(`augmented: + ${views.codes.n} views of the training images from ${viewsCache!.key}`);
    log(`trainer: ${trainer.name} (${trainer.provider}); head ${[table.dim, ...cmd.hidden, classes.length].join(' → ')}, dropout ${cmd.dropout}, ${optimizer.kind} lr ${optimizer.lr}`);
  }
  const live = !cmd.json && !quiet && process.stderr.isTTY;
  try {
    const result = await fit({
      trainer,
      architecture,
      train,
      validation,
      epochs: cmd.epochs,
      batch: cmd.batch,
      seed: cmd.seed,
      classWeights,
      patience: cmd.patience,
      onEpoch: (s) => {
        if (cmd.json) {
          print(JSON.stringify({ event: 'epoch', ...s }));
          return;
        }
        const line = formatEpoch(s, cmd.epochs);
        if (live) process.stderr.write(`\r${line}\u001b[K`);
        else log(line);
      },
    });
    if (live) process.stderr.write('\n');
    const last = result.history[result.bestEpoch - 1];
    const config: HeadConfig = {
      format: HEAD_FORMAT,
      architecture,
      classes,
      cacheKey: cache.key,
      codeSpec: cache.spec,
      dataset: table.dataset,
      training: {
        trainer: `${trainer.name} (${trainer.provider})`,
        optimizer,
        l2: cmd.l2,
        standardized: cmd.standardize,
        epochs: cmd.epochs,
        batch: cmd.batch,
        seed: cmd.seed,
        patience: cmd.patience,
        classWeights: classWeights ? [...classWeights] : null,
        splits: { source: plan.source, fractions: { val: cmd.val, test: cmd.test }, train: trainImages.n, validation: validation.n, test: plan.test.length },
        augmented: views && viewsCache ? { key: viewsCache.key, ...viewsCache.spec.augment!, rows: views.codes.n } : null,
      },
      bestEpoch: result.bestEpoch,
      metrics: { valLoss: last.valLoss, valAcc: last.valAcc, trainAcc: last.acc },
    };
    await mkdir(out, { recursive: true });
    await saveHead(out, config, standardizer ? foldStandardizer(standardizer, result.params) : result.params, result.history);
    const seconds = result.history.reduce((s, h) => s + h.seconds, 0);
    if (cmd.json) {
      print(JSON.stringify({ event: 'summary', head: out, bestEpoch: result.bestEpoch, ...config.metrics, seconds, trainer: config.training.trainer }));
    } else {
      print(
        `${cmd.patience === null ? 'final' : 'best'} epoch ${result.bestEpoch}${result.stoppedEarly ? ' (stopped early)' : ''}: ` +
          `val acc ${pct(last.valAcc)}, val loss ${last.valLoss?.toFixed(4) ?? '-'}, train acc ${pct(last.acc)} — ${seconds.toFixed(1)} s`,
      );
      print(`head saved to ${out}`);
    }
    return { dir: out, config, history: result.history };
  } finally {
    await trainer.dispose();
  }
}

/**
 * Given a key of augmented views, the key of the images themselves (which holds the validation
 * and test rows) and the views key; given an images key, just it.
 */
async function withViews(opened: FeatureCache): Promise<{ cache: FeatureCache; viewsCache: FeatureCache | null }> {
  if (!opened.spec.augment) return { cache: opened, viewsCache: null };
  const root = path.dirname(opened.dir);
  const imagesKey = cacheKey({ ...opened.spec, augment: null });
  if (!existsSync(path.join(root, imagesKey, 'spec.json'))) {
    throw new UsageError(`${opened.dir} holds augmented views, but the images' own codes (${imagesKey}) are not in ${root}: run extract again`);
  }
  return { cache: await FeatureCache.open(root, imagesKey), viewsCache: opened };
}

/** Every cached view of the training images, ordered by path then view index. */
async function trainingViews(viewsCache: FeatureCache, images: CodeTable, train: readonly number[], classes: readonly string[]): Promise<{ codes: LabelledCodes }> {
  const views = await readCodeTable(viewsCache, images.dataset ?? undefined);
  const rowKey = (t: CodeTable, i: number) => `${t.sha256[i]}\u0000${t.paths[i]}\u0000${t.labels[i]}`;
  const wanted = new Set(train.map((i) => rowKey(images, i)));
  const rows = [...views.paths.keys()]
    .filter((i) => wanted.has(rowKey(views, i)))
    .sort((a, b) => (views.paths[a] < views.paths[b] ? -1 : views.paths[a] > views.paths[b] ? 1 : views.views[a] - views.views[b]));
  return { codes: gather(views, rows, classes) };
}

function concatLabelled(a: LabelledCodes, b: LabelledCodes, dim: number): LabelledCodes {
  const x = new Float32Array((a.n + b.n) * dim);
  x.set(a.x.subarray(0, a.n * dim));
  x.set(b.x.subarray(0, b.n * dim), a.n * dim);
  const y = new Int32Array(a.n + b.n);
  y.set(a.y);
  y.set(b.y, a.n);
  return { x, y, n: a.n + b.n };
}

function describeSplits(plan: SplitPlan): string {
  return plan.source === 'folders' ? 'from the split folders' : 'split by content hash';
}

function pct(v: number | null): string {
  return v === null ? '-' : `${(v * 100).toFixed(2)}%`;
}

function formatEpoch(s: EpochStats, epochs: number): string {
  return (
    `epoch ${String(s.epoch).padStart(String(epochs).length)}/${epochs}  loss ${s.loss.toFixed(4)}  acc ${pct(s.acc)}` +
    (s.valLoss !== null ? `  val_loss ${s.valLoss.toFixed(4)}  val_acc ${pct(s.valAcc)}` : '') +
    `  ${s.seconds.toFixed(2)} s`
  );
}
