/**
 * The size axis of advise: whether there is enough data per class to fine-tune. Counted from
 * the folder listing alone (no decoding), so it costs nothing and never depends on the backbone.
 */
import type { Split } from '../cache/code-rows.ts';
import type { DatasetItem } from '../extract/dataset.ts';
import { median } from './arrays.ts';

/**
 * Training images per class below which a dataset is "small" for fine-tuning.
 *
 * Why 1000: fine-tuning a block of VGG16 (block5 alone is 7 M weights) on a few hundred images
 * per class memorises them unless heavily regularised, while a linear head on frozen codes has
 * only codes × classes weights. The Keras blog calls 1000 images per class (dogs-vs-cats,
 * 2000 training images) "very little data" and still gains from fine-tuning block5 there
 * (about 90% → 94%), with strong augmentation and SGD at lr 1e-4; ImageNet itself has ~1300 per
 * class. So ~1000 per class is where fine-tuning starts to pay off reliably, which is also the
 * common rule of thumb. Within a factor 1.5 of the line the advice names the neighbouring case
 * as the thing to try next.
 */
export const SMALL_DATA_PER_CLASS = 1000;
/** Median per class within [threshold / 1.5, threshold × 1.5) is reported as borderline. */
export const BORDERLINE_FACTOR = 1.5;

export type SizeVerdict = 'small' | 'large';

export interface CountStats {
  readonly total: number;
  readonly min: number;
  readonly median: number;
  readonly max: number;
  /** Images per class, every class of the dataset (0 where a class is absent from this split). */
  readonly perClass: Readonly<Record<string, number>>;
}

export interface SizeReport {
  readonly classes: number;
  readonly all: CountStats;
  /** One entry per split folder; empty without split folders. */
  readonly splits: readonly { readonly split: Split; readonly stats: CountStats }[];
  /** What the verdict counts: the train split when there is one, else every image. */
  readonly basis: 'train' | 'all';
  /** Median images per class in `basis`: the number compared with the threshold. */
  readonly perClass: number;
  readonly threshold: number;
  readonly verdict: SizeVerdict;
  /** Within BORDERLINE_FACTOR of the threshold. */
  readonly borderline: boolean;
  /** The smallest class holds under a quarter of the median. */
  readonly imbalanced: boolean;
}

export function countStats(items: readonly { readonly label: string }[], classes: readonly string[]): CountStats {
  const perClass: Record<string, number> = Object.fromEntries(classes.map((c) => [c, 0]));
  for (const item of items) perClass[item.label] = (perClass[item.label] ?? 0) + 1;
  const counts = Object.values(perClass).sort((a, b) => a - b);
  return { total: items.length, min: counts[0] ?? 0, median: median(counts), max: counts[counts.length - 1] ?? 0, perClass };
}

export function sizeReport(items: readonly (Pick<DatasetItem, 'split'> & { readonly label: string })[], classes: readonly string[], threshold = SMALL_DATA_PER_CLASS): SizeReport {
  const all = countStats(items, classes);
  const splitNames = (['train', 'validation', 'test'] as const).filter((s) => items.some((i) => i.split === s));
  const splits = splitNames.map((split) => ({ split, stats: countStats(items.filter((i) => i.split === split), classes) }));
  const train = splits.find((s) => s.split === 'train');
  const basis = train ? train.stats : all;
  return judgeSize({ classes: classes.length, all, splits, basis: train ? 'train' : 'all', perClass: basis.median, min: basis.min, threshold });
}

/** The size verdict from counts alone: small when the median per class is below the threshold. */
export function judgeSize(s: {
  classes: number;
  all: CountStats;
  splits: SizeReport['splits'];
  basis: SizeReport['basis'];
  perClass: number;
  min: number;
  threshold?: number;
}): SizeReport {
  const threshold = s.threshold ?? SMALL_DATA_PER_CLASS;
  const verdict: SizeVerdict = s.perClass < threshold ? 'small' : 'large';
  const borderline = s.perClass >= threshold / BORDERLINE_FACTOR && s.perClass < threshold * BORDERLINE_FACTOR;
  return {
    classes: s.classes,
    all: s.all,
    splits: s.splits,
    basis: s.basis,
    perClass: s.perClass,
    threshold,
    verdict,
    borderline,
    imbalanced: s.min < s.perClass / 4,
  };
}
