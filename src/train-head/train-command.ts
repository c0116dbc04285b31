/**
 * `bottleneck train-head`: cached codes in, a head folder out. Reads one cache key, splits
 * it, trains with the chosen trainer and saves the head with its history and curves.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { cacheKey } from '../cache/code-spec.ts';
import { FeatureCache } from '../cache/feature-cache.ts';
import { sweepDeadWritersTemps, tempName } from '../util/atomic-file.ts';
import { UsageError } from '../util/errors.ts';
import { fit, formatEpoch, type EpochStats } from './fit.ts';
import { assertReplaceable, HEAD_FORMAT, saveHead, type HeadConfig } from './head-folder.ts';
import { initHeadParams } from './head-init.ts';
import type { SplitPlan } from './splits.ts';
import { foldStandardizer } from './standardize.ts';
import { loadTrainingData, type TrainingData } from './training-rows.ts';
import { createTrainer } from './create-trainer.ts';
import type { HeadArchitecture, OptimizerConfig } from './trainer.ts';
import { cacheRootOf, checkNumber, defineCommand, FRACTION, numberOption, optionalNumber, parseBytes, withCache, withWait, WHOLE_POSITIVE, type NumberRule } from '../util/cli-options.ts';

/** `--hidden 256`, `512,128`, or 0 for a plain softmax (logistic regression). */
export function parseHidden(value: string): number[] {
  const hidden = value.trim() === '0' ? [] : value.split(',').map((h) => Number(h.trim()));
  if (hidden.some((h) => !Number.isInteger(h) || h <= 0 || h > 1 << 16)) throw new UsageError(`--hidden ${value}: use sizes like 256 or 512,128, or 0`);
  return hidden;
}

/** The rules every numeric training option follows, from the CLI and the API alike. */
const RULES = {
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

function checkOptions(cmd: TrainHeadCommand): void {
  for (const flag of ['dropout', 'epochs', 'seed', 'val', 'test', 'momentum', 'batch', 'l2'] as const) checkNumber(flag, cmd[flag], RULES[flag]);
  if (cmd.lr !== undefined) checkNumber('lr', cmd.lr, RULES.lr);
  if (cmd.patience !== null) checkNumber('patience', cmd.patience, RULES.patience);
}

/** The head's options, shared with the commands that train heads on the user's behalf (sweep). */
export function withHeadOptions<T>(y: import('yargs').Argv<T>) {
  return y
    .option('hidden', { type: 'string', default: '256', describe: 'hidden layer sizes, e.g. 256 or 512,128; 0 for a plain softmax', coerce: parseHidden })
    .option('dropout', numberOption('dropout', 'dropout after each hidden layer', RULES.dropout, 0.5))
    .option('epochs', numberOption('epochs', 'passes over the training rows', RULES.epochs, 50))
    .option('seed', numberOption('seed', 'initial weights, batch order and dropout', RULES.seed, 0))
    .option('val', numberOption('val', 'validation fraction when rows have no split folders', RULES.val, 0.2));
}

export const trainHeadCommand = defineCommand(
  'train-head <codes>',
  'train a small classifier on cached codes, in seconds',
  (y) =>
    withWait(withCache(withHeadOptions(y)))
      .positional('codes', { type: 'string', demandOption: true, describe: 'cache key folder (cache/<key>) or key, as extract printed it' })
      .option('out', { type: 'string', describe: 'head folder to write (default heads/<key>-<time>)' })
      .option('optimizer', { choices: ['adam', 'rmsprop', 'sgd'] as const, default: 'adam' as const })
      .option('lr', optionalNumber('lr', 'learning rate (default 1e-3; 1e-2 for sgd)', RULES.lr))
      .option('momentum', numberOption('momentum', 'sgd momentum', RULES.momentum, 0.9))
      .option('batch', numberOption('batch', 'rows per training step', RULES.batch, 32))
      .option('l2', numberOption('l2', "L2 penalty on kernels, as Keras' l2(…)", RULES.l2, 0))
      .option('class-weights', { type: 'string', default: 'none', describe: 'none | balanced | CLASS=W,… (weights > 0)' })
      .option('patience', optionalNumber('patience', 'stop after N epochs without a better validation loss (keeps the best)', RULES.patience))
      .option('test', numberOption('test', 'test fraction held out when rows have no split folders', RULES.test, 0))
      .option('trainer', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const })
      .option('dataset', { type: 'string', describe: 'which dataset of the cache key, when it holds several' })
      .option('standardize', { type: 'boolean', default: false, describe: 'train on per-feature standardised codes (helps --hidden 0); folded into the saved weights' })
      .option('max-memory', { type: 'string', describe: 'memory for codes, e.g. 2GB; bigger codes are read from disk batch by batch (same result)', coerce: (v: string) => parseBytes(v, '--max-memory') })
      .option('json', { type: 'boolean', default: false, describe: 'JSON lines per epoch and a summary on stdout' }),
  async (argv) => {
    await runTrainHead({
      ...argv,
      codes: argv.codes!,
      cacheRoot: cacheRootOf(argv.cache),
      classWeights: argv['class-weights'],
      patience: argv.patience ?? null,
      maxMemory: argv['max-memory'],
    });
  },
);

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
  /** Bytes of codes to hold in memory; beyond it they are read from a scratch file batch by batch. */
  readonly maxMemory?: number;
  /** Seconds to wait for an extract that is writing the key. */
  readonly wait?: number;
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
  val: 0.2,
  test: 0,
  trainer: 'auto',
  standardize: false,
  json: false,
} as const satisfies Omit<TrainHeadCommand, 'codes' | 'cacheRoot'>;

/** A key folder or key name, once no extract is writing it (or after waiting `waitSeconds`). */
export async function openCodes(codes: string, cacheRoot: string, waitSeconds = 0): Promise<FeatureCache> {
  const cache = await FeatureCache.locate(codes, cacheRoot);
  await cache.waitForWriters(waitSeconds);
  return cache;
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

export async function runTrainHead(cmd: TrainHeadCommand): Promise<TrainHeadResult> {
  checkOptions(cmd);
  if (cmd.out) await assertReplaceable(cmd.out);
  const { cache, viewsCache } = await withViews(await openCodes(cmd.codes, cmd.cacheRoot, cmd.wait), cmd.wait);
  const data = await loadTrainingData(cache, viewsCache, {
    dataset: cmd.dataset,
    fractions: { val: cmd.val, test: cmd.test },
    standardize: cmd.standardize,
    maxMemoryBytes: cmd.maxMemory,
    scratchDir: await scratchFolder(cache.root),
  });
  try {
    return await trainOn(cmd, cache, viewsCache, data);
  } finally {
    await data.dispose();
  }
}

export interface TrainHeadResult {
  readonly dir: string;
  readonly config: HeadConfig;
  readonly history: readonly EpochStats[];
  /** 'memory', or the scratch folder the codes were read from (--max-memory). */
  readonly storage: string;
}

async function trainOn(cmd: TrainHeadCommand, cache: FeatureCache, viewsCache: FeatureCache | null, data: TrainingData): Promise<TrainHeadResult> {
  const out = path.resolve(cmd.out ?? path.join('heads', `${cache.key}-${new Date().toISOString().replace(/[:.]/g, '-')}`));
  const { classes, plan, train, validation, standardizer } = data;
  const architecture: HeadArchitecture = { inputDim: data.dim, hidden: cmd.hidden, dropout: cmd.dropout, classes: classes.length };
  const optimizer = optimizerConfig(cmd);
  const trainer = await createTrainer(cmd.trainer, {
    architecture,
    training: { optimizer, l2: cmd.l2 },
    initial: initHeadParams(architecture, cmd.seed),
    maxBatch: cmd.batch * 8,
  });
  const classWeights = classWeightsFor(cmd.classWeights, classes, train);

  const quiet = cmd.quiet ?? false;
  const log = (line: string) => {
    if (!quiet) console.error(line);
  };
  const print = (line: string) => {
    if (!quiet) console.log(line);
  };
  if (!cmd.json) {
    log(`codes ${cache.key}: ${data.trainImages} train, ${validation.n} validation, ${plan.test.length} test rows (${describeSplits(plan)}), ${classes.length} classes`);
    if (viewsCache) log(`augmented: + ${data.trainViews} views of the training images from ${viewsCache.key}`);
    if (data.storage !== 'memory') log(`codes exceed --max-memory: read from ${data.storage} batch by batch`);
    log(`trainer: ${trainer.name} (${trainer.provider}); head ${[data.dim, ...cmd.hidden, classes.length].join(' → ')}, dropout ${cmd.dropout}, ${optimizer.kind} lr ${optimizer.lr}`);
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
      // Within --max-memory, the batch buffers take a quarter of the budget at most.
      bufferBytes: cmd.maxMemory !== undefined ? Math.max(1 << 20, Math.min(64 << 20, cmd.maxMemory / 4)) : undefined,
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
      dataset: data.dataset,
      cacheRoot: cache.root,
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
        splits: { source: plan.source, fractions: { val: cmd.val, test: cmd.test }, train: data.trainImages, validation: validation.n, test: plan.test.length },
        augmented: viewsCache ? { key: viewsCache.key, ...viewsCache.spec.augment!, rows: data.trainViews } : null,
      },
      bestEpoch: result.bestEpoch,
      metrics: { valLoss: last.valLoss, valAcc: last.valAcc, trainAcc: last.acc },
    };
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
    return { dir: out, config, history: result.history, storage: data.storage };
  } finally {
    await trainer.dispose();
  }
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

function describeSplits(plan: SplitPlan): string {
  return plan.source === 'folders' ? 'from the split folders' : 'split by content hash';
}

function pct(v: number | null): string {
  return v === null ? '-' : `${(v * 100).toFixed(2)}%`;
}

