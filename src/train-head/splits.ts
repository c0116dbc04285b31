/**
 * Which cached rows train the head, which validate it, and which are held out for test.
 *
 * Folder splits (train/validation/test folders) are used as they are. Otherwise each image's
 * split follows from its content hash alone, as in TF-Hub's retrain.py: adding images never
 * moves an existing one, the same bytes always land on the same side (even under two labels),
 * and every class is split by the same rule, so each class keeps the requested fractions in
 * expectation.
 */
import type { Split } from '../cache/code-rows.ts';
import { UsageError } from '../util/errors.ts';

export interface SplitRow {
  readonly sha256: string;
  readonly label: string;
  readonly split: Split | null;
}

export interface SplitPlan {
  readonly train: readonly number[];
  readonly validation: readonly number[];
  readonly test: readonly number[];
  /** 'folders' when the rows carried their own splits. */
  readonly source: 'folders' | 'hash';
}

export interface SplitFractions {
  readonly val: number;
  readonly test: number;
}

/** A uniform number in [0, 1) from a content hash. */
export function hashUnit(sha256: string): number {
  return parseInt(sha256.slice(0, 13), 16) / 2 ** 52;
}

export function splitByHash(sha256: string, f: SplitFractions): Split {
  const u = hashUnit(sha256);
  if (u < f.test) return 'test';
  if (u < f.test + f.val) return 'validation';
  return 'train';
}

export function planSplits(rows: readonly SplitRow[], f: SplitFractions): SplitPlan {
  if (f.val < 0 || f.test < 0 || f.val + f.test >= 1) throw new UsageError(`--val ${f.val} and --test ${f.test} must be ≥ 0 and leave rows to train on`);
  const hasFolders = rows.some((r) => r.split !== null);
  const plan = { train: [] as number[], validation: [] as number[], test: [] as number[] };
  if (hasFolders) {
    rows.forEach((r, i) => {
      if (r.split) plan[r.split].push(i);
    });
    if (plan.validation.length === 0) {
      // Train folders but no validation folder: carve validation out of train by hash.
      const train = plan.train;
      plan.train = [];
      for (const i of train) (splitByHash(rows[i].sha256, { val: f.val, test: 0 }) === 'validation' ? plan.validation : plan.train).push(i);
    }
    return { ...plan, source: 'folders' };
  }
  rows.forEach((r, i) => plan[splitByHash(r.sha256, f)].push(i));
  return { ...plan, source: 'hash' };
}
