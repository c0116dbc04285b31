/**
 * The train-head stage: cached codes in, a head folder out. Reads a dataset of one cache key
 * (and its augmented views), splits it, trains with the chosen trainer, and saves the head with
 * its history and curves. It never prints: it reports through `onEvent`.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { cacheKey } from '../cache/code-spec.ts';
import { FeatureCache } from '../cache/feature-cache.ts';
import { sweepDeadWritersTemps, tempName } from '../util/atomic-file.ts';
import { UsageError } from '../util/errors.ts';
import { checkNumber, FRACTION, WHOLE_POSITIVE, type NumberRule } from '../util/number-rules.ts';
import { concatMatrices } from './code-matrix.ts';
import { createTrainer } from './create-trainer.ts';
import { fit, type EpochStats, type FitResult, type TrainingRows } from './fit.ts';
import { assertReplaceable, HEAD_FORMAT, saveHead, type HeadConfig } from './head-folder.ts';
import { initHeadParams } from './head-init.ts';
import type { SplitPlan } from './splits.ts';
import { foldStandardizer } from './standardize.ts';
import { loadTrainingData, type TrainingData } from './training-rows.ts';
import type { HeadArchitecture, HeadParams, OptimizerConfig } from './trainer.ts';

/** Which epoch's weights a head keeps: the lowest validation loss (Keras' restore_best_weights), or the last. */
export type KeepEpoch = 'best' | 'last';

export interface TrainHeadOptions {
  /** A cache key folder (cache/<key>), or a key name under cacheRoot. */
  readonly codes: string;
  readonly cacheRoot: string;
  /** The head folder (default heads/<key>-<time>). */
  readonly out?: string;
  readonly hidden: readonly number[];
  readonly dropout: number;
  readonly optimizer: 'adam' | 'rmsprop' | 'sgd';
  readonly lr?: number;
  readonly momentum: number;
  readonly batch: number;
  readonly epochs: number;
  readonly l2: number;
  /** 'none', 'balanced', or 'CLASS=W,…'. */
  readonly classWeights: string;
  readonly seed: number;
  /** Stop after this many epochs without a better validation loss; null trains every epoch. */
  readonly patience: number | null;
  /** Default 'last' (measured to do better on held-out data than 'best'; see the README). */
  readonly keep?: KeepEpoch;
  /**
   * Choose the epoch count on the validation rows, then train again from the same start on
   * training and validation rows together, for that many epochs.
   */
  readonly refit?: boolean;
  readonly val: number;
  readonly test: number;
  readonly trainer: 'auto' | 'onnx' | 'tfjs';
  /** Train on per-feature standardised codes (folded back into the saved weights). */
  readonly standardize: boolean;
  /** Required when the key holds several datasets. */
  readonly dataset?: string;
  /** Bytes of codes to hold in memory; beyond it they are read from a scratch file batch by batch. */
  readonly maxMemory?: number;
  /** Seconds to wait for an extract that is writing the key. */
  readonly wait?: number;
  readonly onEvent?: (event: TrainHeadEvent) => void;
}

export type TrainHeadEvent =
  | {
      readonly kind: 'start';
      readonly key: string;
      readonly viewsKey: string | null;
      readonly train: number;
      readonly trainViews: number;
      readonly validation: number;
      readonly test: number;
      readonly unlabeled: number;
      readonly splits: SplitPlan['source'];
      readonly classes: readonly string[];
      readonly storage: string;
      readonly trainer: string;
      readonly layers: readonly number[];
      readonly optimizer: OptimizerConfig;
    }
  /** `refit`: an epoch of the second pass, on training and validation rows. */
  | { readonly kind: 'epoch'; readonly stats: EpochStats; readonly epochs: number; readonly refit: boolean }
  | { readonly kind: 'refit'; readonly epochs: number; readonly rows: number };

export interface TrainHeadResult {
  readonly dir: string;
  readonly config: HeadConfig;
  readonly history: readonly EpochStats[];
  /** 'memory', or the scratch folder the codes were read from (--max-memory). */
  readonly storage: string;
  readonly stoppedEarly: boolean;
}

/**
 * The Keras blog's head and settings (the CLI's defaults), for commands that train a head on
 * the user's behalf (demo, sweep) and say so.
 */
export const DEFAULT_HEAD_TRAINING = {
  hidden: [256],
  dropout: 0.5,
  optimizer: 'adam',
  momentum: 0,
  batch: 32,
  epochs: 50,
  l2: 0,
  classWeights: 'none',
  seed: 0,
  patience: null,
  // Measured by `npm run bench:keep` (README): the last epoch scored 0.3 points above the best
  // validation-loss epoch on held-out data, over three datasets and a small-data cut.
  keep: 'last',
  refit: false,
  val: 0.2,
  test: 0,
  trainer: 'auto',
  standardize: false,
} as const satisfies Omit<TrainHeadOptions, 'codes' | 'cacheRoot'>;

/** The rules every numeric training option follows, from the CLI and the API alike. */
export const TRAIN_RULES = {
  dropout: FRACTION,
  epochs: WHOLE_POSITIVE,
  seed: { integer: true },
  val: FRACTION,
  test: FRACTION,
  lr: { min: 0, minExclusive: true, max: 10 },
  momentum: FRACTION,
  batch: WHOLE_POSITIVE,
  l2: { min: 0 },
  patience: WHOLE_POSITIVE,
} as const satisfies Record<string, NumberRule>;

function checkOptions(o: TrainHeadOptions): void {
  for (const flag of ['dropout', 'epochs', 'seed', 'val', 'test', 'momentum', 'batch', 'l2'] as const) checkNumber(flag, o[flag], TRAIN_RULES[flag]);
  if (o.lr !== undefined) checkNumber('lr', o.lr, TRAIN_RULES.lr);
  if (o.patience !== null) checkNumber('patience', o.patience, TRAIN_RULES.patience);
  if (o.hidden.some((h) => !Number.isInteger(h) || h < 1)) throw new UsageError(`--hidden ${o.hidden.join(',')}: use sizes like 256 or 512,128`);
}

/** A key folder or key name, once no extract is writing it (or after waiting `waitSeconds`). */
export async function openCodes(codes: string, cacheRoot: string, waitSeconds = 0): Promise<FeatureCache> {
  const cache = await FeatureCache.locate(codes, cacheRoot);
  await cache.waitForWriters(waitSeconds);
  return cache;
}

export async function trainHead(opts: TrainHeadOptions): Promise<TrainHeadResult> {
  checkOptions(opts);
  if (opts.out) await assertReplaceable(opts.out);
  const { cache, viewsCache } = await withViews(await openCodes(opts.codes, opts.cacheRoot, opts.wait), opts.wait);
  const data = await loadTrainingData(cache, viewsCache, {
    dataset: opts.dataset,
    fractions: { val: opts.val, test: opts.test },
    standardize: opts.standardize,
    maxMemoryBytes: opts.maxMemory,
    scratchDir: await scratchFolder(cache.root),
  });
  try {
    return await trainOn(opts, cache, viewsCache, data);
  } finally {
    await data.dispose();
  }
}

async function trainOn(opts: TrainHeadOptions, cache: FeatureCache, viewsCache: FeatureCache | null, data: TrainingData): Promise<TrainHeadResult> {
  const out = path.resolve(opts.out ?? path.join('heads', `${cache.key}-${new Date().toISOString().replace(/[:.]/g, '-')}`));
  const { classes, plan, train, validation, standardizer } = data;
  const architecture: HeadArchitecture = { inputDim: data.dim, hidden: opts.hidden, dropout: opts.dropout, classes: classes.length };
  const optimizer = optimizerConfig(opts);
  const keep = opts.keep ?? DEFAULT_HEAD_TRAINING.keep;
  if (opts.refit && validation.n === 0) throw new UsageError('--refit chooses the epoch count on validation rows, and there are none (--val 0?)');
  const classWeights = classWeightsFor(opts.classWeights, classes, train);
  const fitOn = async (rows: TrainingRows, held: TrainingRows | undefined, epochs: number, refit: boolean, onTrainer?: (name: string) => void) => {
    const trainer = await createTrainer(opts.trainer, { architecture, training: { optimizer, l2: opts.l2 }, initial: initHeadParams(architecture, opts.seed), maxBatch: opts.batch * 8 });
    try {
      onTrainer?.(`${trainer.name} (${trainer.provider})`);
      const result = await fit({
        trainer,
        architecture,
        train: rows,
        validation: held,
        epochs,
        batch: opts.batch,
        seed: opts.seed,
        classWeights,
        patience: refit ? null : opts.patience,
        keep: refit ? 'last' : keep,
        // Within --max-memory, the batch buffers take a quarter of the budget at most.
        bufferBytes: opts.maxMemory !== undefined ? Math.max(1 << 20, Math.min(64 << 20, opts.maxMemory / 4)) : undefined,
        onEpoch: (stats) => opts.onEvent?.({ kind: 'epoch', stats, epochs, refit }),
      });
      return { result, trainer: `${trainer.name} (${trainer.provider})` };
    } finally {
      await trainer.dispose();
    }
  };
  const started = (trainer: string) =>
    opts.onEvent?.({
    kind: 'start',
    key: cache.key,
    viewsKey: viewsCache?.key ?? null,
    train: data.trainImages,
    trainViews: data.trainViews,
    validation: validation.n,
    test: plan.test.length,
    unlabeled: data.unlabeled,
    splits: plan.source,
    classes,
      storage: data.storage,
      trainer,
      layers: [data.dim, ...opts.hidden, classes.length],
      optimizer,
    });
  const first = await fitOn(train, validation, opts.epochs, false, started);
  let final: { result: FitResult; trainer: string } = first;
  let refit: HeadConfig['training']['refit'] = null;
  if (opts.refit) {
    // The epoch count the validation rows chose, whatever --keep says about the first pass.
    const epochs = bestByValidationLoss(first.result.history);
    const all = concatRows(train, validation);
    opts.onEvent?.({ kind: 'refit', epochs, rows: all.n });
    final = await fitOn(all, undefined, epochs, true);
    refit = { epochs, rows: all.n, validationRows: validation.n };
  }
  const chosen = first.result.history[(opts.refit ? bestByValidationLoss(first.result.history) : first.result.bestEpoch) - 1];
  const config: HeadConfig = {
    format: HEAD_FORMAT,
    architecture,
    classes,
    cacheKey: cache.key,
    codeSpec: cache.spec,
    dataset: data.dataset,
    cacheRoot: cache.root,
    training: {
      trainer: final.trainer,
      optimizer,
      l2: opts.l2,
      standardized: opts.standardize,
      epochs: opts.epochs,
      batch: opts.batch,
      seed: opts.seed,
      patience: opts.patience,
      keep,
      refit,
      classWeights: classWeights ? [...classWeights] : null,
      splits: { source: plan.source, fractions: { val: opts.val, test: opts.test }, train: data.trainImages, validation: validation.n, test: plan.test.length },
      augmented: viewsCache ? { key: viewsCache.key, ...viewsCache.spec.augment!, rows: data.trainViews } : null,
    },
    bestEpoch: final.result.bestEpoch,
    metrics: { valLoss: chosen.valLoss, valAcc: chosen.valAcc, trainAcc: final.result.history[final.result.bestEpoch - 1].acc },
  };
  const params: HeadParams = standardizer ? foldStandardizer(standardizer, final.result.params) : final.result.params;
  await saveHead(out, config, params, opts.refit ? [...first.result.history, ...final.result.history] : final.result.history);
  return { dir: out, config, history: final.result.history, storage: data.storage, stoppedEarly: first.result.stoppedEarly };
}

/** 1-based epoch with the lowest validation loss (the first, on ties). */
function bestByValidationLoss(history: readonly EpochStats[]): number {
  let best = 0;
  history.forEach((h, i) => {
    if (h.valLoss !== null && (history[best].valLoss === null || h.valLoss < history[best].valLoss!)) best = i;
  });
  return best + 1;
}

/** Training rows followed by validation rows, as one set (for --refit). */
function concatRows(a: TrainingRows, b: TrainingRows): TrainingRows {
  const y = Int32Array.from([...a.y, ...b.y]);
  if ('x' in a && 'x' in b) {
    const x = new Float32Array(a.x.length + b.x.length);
    x.set(a.x);
    x.set(b.x, a.x.length);
    return { x, y, n: a.n + b.n };
  }
  return { codes: concatMatrices(rowsMatrix(a), rowsMatrix(b)), y, n: a.n + b.n };
}

function rowsMatrix(rows: TrainingRows) {
  if ('codes' in rows) return rows.codes;
  throw new Error('concatRows: in-memory and on-disk rows do not mix');
}

function optimizerConfig(o: TrainHeadOptions): OptimizerConfig {
  switch (o.optimizer) {
    case 'adam':
      return { kind: 'adam', lr: o.lr ?? 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
    case 'rmsprop':
      return { kind: 'rmsprop', lr: o.lr ?? 1e-3, rho: 0.9, epsilon: 1e-7 };
    case 'sgd':
      return { kind: 'sgd', lr: o.lr ?? 1e-2, momentum: o.momentum };
  }
}

/** `balanced` (n / (classes · n_c), as scikit-learn and Keras users compute it), `none`, or `cat=1,dog=3`. */
export function classWeightsFor(spec: string, classes: readonly string[], train: { readonly y: Int32Array; readonly n: number }): Float32Array | null {
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
    if (i < 0 || !(Number(value) > 0) || !Number.isFinite(Number(value))) throw new UsageError(`--class-weights ${spec}: use balanced, none, or CLASS=WEIGHT,… with weights > 0 and classes ${classes.join(', ')}`);
    weights[i] = Number(value);
  }
  return weights;
}

/**
 * Where --max-memory keeps codes: the cache's `.scratch/`, on the same disk as the codes. What
 * a killed run left there is deleted first.
 */
async function scratchFolder(cacheRoot: string): Promise<string> {
  const dir = path.join(cacheRoot, '.scratch');
  await sweepDeadWritersTemps(dir);
  return tempName(dir, 'train-head');
}

/**
 * Given a key of augmented views, the key of the images themselves (which holds the validation
 * and test rows) and the views key; given an images key, just it.
 */
async function withViews(opened: FeatureCache, waitSeconds = 0): Promise<{ cache: FeatureCache; viewsCache: FeatureCache | null }> {
  if (!opened.spec.augment) return { cache: opened, viewsCache: null };
  const root = path.dirname(opened.dir);
  const imagesKey = cacheKey({ ...opened.spec, augment: null });
  if (!existsSync(path.join(root, imagesKey, 'spec.json'))) {
    throw new UsageError(`${opened.dir} holds augmented views, but the images' own codes (${imagesKey}) are not in ${root}: run extract again`);
  }
  const images = await FeatureCache.open(root, imagesKey);
  await images.waitForWriters(waitSeconds);
  return { cache: images, viewsCache: opened };
}
