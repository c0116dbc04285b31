/**
 * The rows a head trains and validates on, from a cache key (and its augmented views): split
 * as planSplits says, ordered by path (then view) so the same data and seed give the same head
 * however the cache was written, optionally standardised.
 *
 * They live in memory, or, when they would exceed `maxMemoryBytes` (`--max-memory`), in two
 * scratch files filled by streaming the shards one at a time and read a batch at a time while
 * training. Both give the training loop the same rows in the same order, so the same head.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Split } from '../cache/code-rows.ts';
import type { FeatureCache } from '../cache/feature-cache.ts';
import { UsageError } from '../util/errors.ts';
import { FileMatrix, standardizedMatrix } from './code-matrix.ts';
import type { LabelledCodes, TrainingRows } from './fit.ts';
import { planSplits, type SplitFractions, type SplitPlan } from './splits.ts';
import { fitStandardizer, fitStandardizerFrom, standardize, type Standardizer } from './standardize.ts';

/** Every row's facts (not its code), in the order `forEachCode` visits the codes. */
export interface RowIndex {
  /** The dataset the rows belong to (null when the key holds no rows). */
  readonly dataset: string | null;
  readonly dim: number;
  readonly labels: readonly string[];
  readonly sha256: readonly string[];
  readonly paths: readonly string[];
  readonly splits: readonly (Split | null)[];
  /** Augmented-view index per row (0 for the images themselves). */
  readonly views: readonly number[];
}

export interface TrainingData {
  readonly dataset: string | null;
  readonly dim: number;
  readonly classes: readonly string[];
  readonly plan: SplitPlan;
  readonly train: TrainingRows;
  readonly validation: TrainingRows;
  /** Training rows that are images (the rest of `train` are their views). */
  readonly trainImages: number;
  readonly trainViews: number;
  readonly standardizer: Standardizer | null;
  /** 'memory', or the scratch folder holding the codes. */
  readonly storage: string;
  dispose(): Promise<void>;
}

export interface TrainingDataOptions {
  readonly dataset?: string;
  readonly fractions: SplitFractions;
  readonly standardize: boolean;
  /** Codes beyond this many bytes are kept on disk; undefined: always in memory. */
  readonly maxMemoryBytes?: number;
  /** Where the on-disk codes go (deleted by dispose). */
  readonly scratchDir: string;
}

/** One pass over a key's shards: the facts of every row of one dataset, codes left on disk. */
export async function readRowIndex(cache: FeatureCache, dataset?: string): Promise<RowIndex> {
  const labels: string[] = [];
  const sha256: string[] = [];
  const paths: string[] = [];
  const splits: (Split | null)[] = [];
  const views: number[] = [];
  const datasets = new Set<string>();
  for await (const { rows } of cache.shards()) {
    rows.sha256.forEach((sha, i) => {
      datasets.add(rows.dataset[i]);
      if (dataset !== undefined && rows.dataset[i] !== dataset) return;
      labels.push(rows.label[i]);
      sha256.push(sha);
      paths.push(rows.path[i]);
      splits.push(rows.split[i]);
      views.push(rows.view?.[i] ?? 0);
    });
  }
  checkDataset(cache, [...datasets].sort(), dataset);
  return { dataset: dataset ?? [...datasets][0] ?? null, dim: cache.dim, labels, sha256, paths, splits, views };
}

/** The same rows as readRowIndex, in the same order, with their codes: calls `visit(row, code)`. */
async function forEachCode(cache: FeatureCache, dataset: string | null, visit: (row: number, code: Float32Array) => void): Promise<void> {
  let row = 0;
  for await (const { rows } of cache.shards()) {
    for (let i = 0; i < rows.sha256.length; i++) {
      if (dataset !== null && rows.dataset[i] !== dataset) continue;
      visit(row++, rows.codes.subarray(i * cache.dim, (i + 1) * cache.dim));
    }
  }
}

export function checkDataset(cache: FeatureCache, datasets: readonly string[], dataset: string | undefined): void {
  if (dataset === undefined && datasets.length > 1) {
    throw new UsageError(`${cache.dir} holds ${datasets.length} datasets (${datasets.join(', ')}): choose one with --dataset`);
  }
  if (dataset !== undefined && !datasets.includes(dataset)) {
    throw new UsageError(`${cache.dir} has no dataset '${dataset}' (it has ${datasets.join(', ') || 'no rows'})`);
  }
}

/** Shard order depends on flush timing and resumes; path (then view) order does not. */
function byPath(t: RowIndex): (a: number, b: number) => number {
  return (a, b) => (t.paths[a] < t.paths[b] ? -1 : t.paths[a] > t.paths[b] ? 1 : t.views[a] - t.views[b]);
}

export interface SplitRows {
  readonly plan: SplitPlan;
  /** Row indices of `index` per split, in path order. */
  readonly train: readonly number[];
  readonly validation: readonly number[];
  readonly test: readonly number[];
}

/**
 * The rows of each split by the one rule train-head, evaluate and fine-tune share (planSplits),
 * in path order. `among` restricts it to some rows of `index` (default: all).
 */
export function splitRows(index: RowIndex, fractions: SplitFractions, among?: readonly number[]): SplitRows {
  const rows = among ?? [...index.paths.keys()];
  const plan = planSplits(
    rows.map((r) => ({ label: index.labels[r], sha256: index.sha256[r], split: index.splits[r] })),
    fractions,
  );
  const rowsOf = (part: readonly number[]) => part.map((i) => rows[i]).sort(byPath(index));
  return { plan, train: rowsOf(plan.train), validation: rowsOf(plan.validation), test: rowsOf(plan.test) };
}

/**
 * The cached views (indices into `views`) of the training images `train` (indices into
 * `images`), view indices up to `maxView`, in path then view order. Only training images:
 * a view of a validation image would leak it into training.
 */
export function viewsOfRows(images: RowIndex, train: readonly number[], views: RowIndex, maxView = Infinity): number[] {
  const rowKey = (t: RowIndex, i: number) => `${t.sha256[i]}\u0000${t.paths[i]}\u0000${t.labels[i]}`;
  const wanted = new Set(train.map((i) => rowKey(images, i)));
  return [...views.paths.keys()].filter((i) => views.views[i] <= maxView && wanted.has(rowKey(views, i))).sort(byPath(views));
}

/** Which rows train and validate, in training order. */
interface Selection {
  readonly classes: readonly string[];
  readonly plan: SplitPlan;
  /** Image rows, then view rows (indices into the views index). */
  readonly trainImages: readonly number[];
  readonly trainViews: readonly number[];
  readonly validation: readonly number[];
}

function select(images: RowIndex, views: RowIndex | null, fractions: SplitFractions, where: string): Selection {
  const split = splitRows(images, fractions);
  const classes = [...new Set(split.train.map((i) => images.labels[i]))].sort();
  if (classes.length < 2) throw new UsageError(`${where}: the training rows hold ${classes.length} class(es); a classifier needs at least two`);
  return {
    classes,
    plan: split.plan,
    trainImages: split.train,
    trainViews: views ? viewsOfRows(images, split.train, views) : [],
    // Validation rows of a class the head never trained on cannot be scored; they are left out.
    validation: split.validation.filter((i) => classes.includes(images.labels[i])),
  };
}

/** Where fill() puts each code: a row of an in-memory matrix or of a scratch file. */
interface RowSink {
  write(row: number, code: Float32Array): void;
}

function labelsOf(index: RowIndex, rows: readonly number[], classes: readonly string[]): Int32Array {
  const at = new Map(classes.map((c, i) => [c, i]));
  return Int32Array.from(rows, (r) => at.get(index.labels[r]) ?? -1);
}

export async function loadTrainingData(images: FeatureCache, views: FeatureCache | null, opts: TrainingDataOptions): Promise<TrainingData> {
  const imageIndex = await readRowIndex(images, opts.dataset);
  const viewIndex = views ? await readRowIndex(views, imageIndex.dataset ?? undefined) : null;
  const sel = select(imageIndex, viewIndex, opts.fractions, images.dir);
  const dim = imageIndex.dim;
  const trainN = sel.trainImages.length + sel.trainViews.length;
  // Codes, plus a standardised copy of them while it is made.
  const bytes = (trainN + sel.validation.length) * dim * 4 * (opts.standardize ? 2 : 1);
  const y = Int32Array.from([...labelsOf(imageIndex, sel.trainImages, sel.classes), ...(viewIndex ? labelsOf(viewIndex, sel.trainViews, sel.classes) : [])]);
  const yVal = labelsOf(imageIndex, sel.validation, sel.classes);
  const common = { dataset: imageIndex.dataset, dim, classes: sel.classes, plan: sel.plan, trainImages: sel.trainImages.length, trainViews: sel.trainViews.length };

  /**
   * One pass over each key's shards puts every selected code at its place: training images,
   * then their views, in one matrix; validation rows in another.
   */
  const fill = async (train: RowSink, validation: RowSink) => {
    const trainAt = new Map(sel.trainImages.map((r, i) => [r, i]));
    const valAt = new Map(sel.validation.map((r, i) => [r, i]));
    await forEachCode(images, imageIndex.dataset, (row, code) => {
      const t = trainAt.get(row);
      if (t !== undefined) train.write(t, code);
      const v = valAt.get(row);
      if (v !== undefined) validation.write(v, code);
    });
    if (views && viewIndex) {
      const viewAt = new Map(sel.trainViews.map((r, i) => [r, sel.trainImages.length + i]));
      await forEachCode(views, viewIndex.dataset, (row, code) => {
        const t = viewAt.get(row);
        if (t !== undefined) train.write(t, code);
      });
    }
  };

  if (opts.maxMemoryBytes === undefined || bytes <= opts.maxMemoryBytes) {
    const x = new Float32Array(trainN * dim);
    const xVal = new Float32Array(sel.validation.length * dim);
    const into = (out: Float32Array): RowSink => ({ write: (row, code) => out.set(code, row * dim) });
    await fill(into(x), into(xVal));
    const standardizer = opts.standardize ? fitStandardizer(x, trainN, dim) : null;
    const scaled = (d: LabelledCodes): LabelledCodes => (standardizer ? { ...d, x: standardize(standardizer, d.x, d.n) } : d);
    return {
      ...common,
      train: scaled({ x, y, n: trainN }),
      validation: scaled({ x: xVal, y: yVal, n: sel.validation.length }),
      standardizer,
      storage: 'memory',
      dispose: async () => undefined,
    };
  }

  await mkdir(opts.scratchDir, { recursive: true });
  const trainFile = new FileMatrix(path.join(opts.scratchDir, 'train.f32'), trainN, dim);
  const valFile = new FileMatrix(path.join(opts.scratchDir, 'validation.f32'), sel.validation.length, dim);
  const dispose = async () => {
    trainFile.dispose();
    valFile.dispose();
    await rm(opts.scratchDir, { recursive: true, force: true });
  };
  try {
    await fill(trainFile, valFile);
    const standardizer = opts.standardize ? fitStandardizerFrom(chunks(trainFile), dim) : null;
    const scaled = (m: FileMatrix) => (standardizer ? standardizedMatrix(m, standardizer) : m);
    return {
      ...common,
      train: { codes: scaled(trainFile), y, n: trainN },
      validation: { codes: scaled(valFile), y: yVal, n: sel.validation.length },
      standardizer,
      storage: opts.scratchDir,
      dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/** A file-backed matrix's rows in order, about 16 MB at a time. */
function* chunks(m: FileMatrix): Generator<Float32Array> {
  const rows = Math.max(1, Math.floor((16 << 20) / (m.dim * 4)));
  for (let start = 0; start < m.n; start += rows) yield m.range(start, Math.min(rows, m.n - start));
}
