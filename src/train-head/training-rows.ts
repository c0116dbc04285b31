/**
 * The rows a head trains and validates on, from a cache key (and its augmented views): split
 * as planSplits says, ordered by path (then view) so the same data and seed give the same head
 * however the cache was written, optionally standardised.
 *
 * They live in memory, or, when they would exceed `maxMemoryBytes` (`--max-memory`), in two
 * scratch files filled by streaming the shards one at a time and read a batch at a time while
 * training. Both give the training loop the same rows in the same order, so the same head.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { assertNoMissing, forEachCode, membershipIndex, resolveDataset, viewsIndex, type RowIndex } from '../cache/code-table.ts';
import type { FeatureCache } from '../cache/feature-cache.ts';
import { ensureDir } from '../util/atomic-file.ts';
import { UsageError } from '../util/errors.ts';
import { FileMatrix, standardizedMatrix } from './code-matrix.ts';
import type { LabelledCodes, TrainingRows } from './fit.ts';
import { planSplits, type SplitFractions, type SplitPlan } from './splits.ts';
import { fitStandardizer, fitStandardizerFrom, standardize, type Standardizer } from './standardize.ts';

export type { RowIndex };

export interface TrainingData {
  readonly dataset: string;
  readonly dim: number;
  readonly classes: readonly string[];
  readonly plan: SplitPlan;
  readonly train: TrainingRows;
  readonly validation: TrainingRows;
  /** Training rows that are images (the rest of `train` are their views). */
  readonly trainImages: number;
  readonly trainViews: number;
  /** Images without a label, which train nothing. */
  readonly unlabeled: number;
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
  const rows = (among ?? [...index.paths.keys()]).filter((r) => index.labels[r] !== null);
  const plan = planSplits(
    rows.map((r) => ({ label: index.labels[r]!, sha256: index.sha256[r], split: index.splits[r] })),
    fractions,
  );
  const rowsOf = (part: readonly number[]) => part.map((i) => rows[i]).sort(byPath(index));
  return { plan, train: rowsOf(plan.train), validation: rowsOf(plan.validation), test: rowsOf(plan.test) };
}

/** Which rows train and validate, in training order. */
interface Selection {
  readonly classes: readonly string[];
  readonly plan: SplitPlan;
  /** Image rows (indices into the images' index). */
  readonly trainImages: readonly number[];
  readonly validation: readonly number[];
}

function select(images: RowIndex, fractions: SplitFractions, where: string): Selection {
  const split = splitRows(images, fractions);
  const classes = [...new Set(split.train.map((i) => images.labels[i]!))].sort();
  if (classes.length < 2) throw new UsageError(`${where}: the training rows hold ${classes.length} class(es); a classifier needs at least two`);
  return {
    classes,
    plan: split.plan,
    trainImages: split.train,
    // Validation rows of a class the head never trained on cannot be scored; they are left out.
    validation: split.validation.filter((i) => classes.includes(images.labels[i]!)),
  };
}

/** Where fill() puts each code: a row of an in-memory matrix or of a scratch file. */
interface RowSink {
  write(row: number, code: Float32Array): void;
}

function labelsOf(index: RowIndex, rows: readonly number[], classes: readonly string[]): Int32Array {
  const at = new Map(classes.map((c, i) => [c, i]));
  return Int32Array.from(rows, (r) => at.get(index.labels[r] ?? '') ?? -1);
}

export async function loadTrainingData(images: FeatureCache, views: FeatureCache | null, opts: TrainingDataOptions): Promise<TrainingData> {
  const imageIndex = await membershipIndex(images, await resolveDataset(images, opts.dataset));
  const sel = select(imageIndex, opts.fractions, images.dir);
  // Views of training images only: a view of a validation image would leak it into training.
  const viewIndex = views ? await viewsIndex(views, imageIndex, sel.trainImages) : null;
  const trainViews = viewIndex ? viewIndex.paths.length : 0;
  const dim = imageIndex.dim;
  const trainN = sel.trainImages.length + trainViews;
  // Codes, plus a standardised copy of them while it is made.
  const bytes = (trainN + sel.validation.length) * dim * 4 * (opts.standardize ? 2 : 1);
  const allViews = viewIndex ? [...viewIndex.paths.keys()] : [];
  const y = Int32Array.from([...labelsOf(imageIndex, sel.trainImages, sel.classes), ...(viewIndex ? labelsOf(viewIndex, allViews, sel.classes) : [])]);
  const yVal = labelsOf(imageIndex, sel.validation, sel.classes);
  const unlabeled = imageIndex.labels.filter((l) => l === null).length;
  const common = { dataset: imageIndex.dataset, dim, classes: sel.classes, plan: sel.plan, trainImages: sel.trainImages.length, trainViews, unlabeled };

  /**
   * One pass over each key's shards puts every selected code at its place: training images,
   * then their views, in one matrix; validation rows in another.
   */
  const fill = async (train: RowSink, validation: RowSink) => {
    const trainAt = new Map(sel.trainImages.map((r, i) => [r, i]));
    const valAt = new Map(sel.validation.map((r, i) => [r, i]));
    const missing = await forEachCode(images, imageIndex, (row, code) => {
      const t = trainAt.get(row);
      if (t !== undefined) train.write(t, code);
      const v = valAt.get(row);
      if (v !== undefined) validation.write(v, code);
    });
    assertNoMissing(images, imageIndex, missing);
    if (views && viewIndex) {
      await forEachCode(views, viewIndex, (row, code) => train.write(sel.trainImages.length + row, code));
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

  await ensureDir(opts.scratchDir);
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
