/**
 * Out-of-fold probabilities: for each of k folds, a head trained on the other folds (the
 * project's own trainer and training loop, seeded) predicts the fold's rows, so every row is
 * scored by a head that never saw it.
 */
import { evaluateCodes, fit } from '../train-head/fit.ts';
import { initHeadParams } from '../train-head/head-init.ts';
import { fitStandardizer, standardize } from '../train-head/standardize.ts';
import { createTrainer } from '../train-head/create-trainer.ts';
import type { HeadArchitecture } from '../train-head/trainer.ts';

export interface OutOfFoldOptions {
  readonly hidden: readonly number[];
  readonly dropout: number;
  readonly epochs: number;
  readonly batch: number;
  readonly lr: number;
  readonly seed: number;
  readonly trainer: 'auto' | 'onnx' | 'tfjs';
  /** Called once per fold when its head is trained and has scored its rows. */
  readonly onFold?: (fold: number, folds: number, seconds: number) => void;
}

/** The Keras-free defaults audit uses: logistic regression on standardised codes trains in a second or two per fold. */
export const DEFAULT_OUT_OF_FOLD = { hidden: [], dropout: 0, epochs: 30, batch: 32, lr: 1e-3, seed: 0, trainer: 'auto' } as const satisfies Omit<OutOfFoldOptions, 'onFold'>;

export interface OutOfFold {
  /** n × classes; rows outside every fold are zeros. */
  readonly probabilities: Float32Array;
  readonly seconds: number;
  readonly trainer: string;
}

/**
 * `labels` is a class index per row (-1: not scored, never trained on); `folds` a fold per row
 * (-1 likewise). Codes are standardised with the training folds' statistics each time.
 */
export async function outOfFoldProbabilities(
  codes: Float32Array,
  dim: number,
  labels: Int32Array,
  folds: Int32Array,
  classes: number,
  k: number,
  opts: OutOfFoldOptions,
): Promise<OutOfFold> {
  const started = performance.now();
  const n = labels.length;
  const probabilities = new Float32Array(n * classes);
  const architecture: HeadArchitecture = { inputDim: dim, hidden: opts.hidden, dropout: opts.hidden.length > 0 ? opts.dropout : 0, classes };
  let trainerName = '';
  for (let f = 0; f < k; f++) {
    const foldStarted = performance.now();
    const train = rowsWhere(n, (r) => labels[r] >= 0 && folds[r] >= 0 && folds[r] !== f);
    const held = rowsWhere(n, (r) => labels[r] >= 0 && folds[r] === f);
    if (held.length === 0) continue;
    const x = gatherCodes(codes, dim, train);
    const standardizer = fitStandardizer(x, train.length, dim);
    const trainer = await createTrainer(opts.trainer, {
      architecture,
      training: { optimizer: { kind: 'adam', lr: opts.lr, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }, l2: 0 },
      initial: initHeadParams(architecture, opts.seed + f),
      maxBatch: opts.batch * 8,
    });
    trainerName = `${trainer.name} (${trainer.provider})`;
    try {
      await fit({
        trainer,
        architecture,
        train: { x: standardize(standardizer, x, train.length), y: Int32Array.from(train, (r) => labels[r]), n: train.length },
        epochs: opts.epochs,
        batch: opts.batch,
        seed: opts.seed + f,
        classWeights: null,
        patience: null,
        evaluate: false,
      keep: 'last',
      });
      const heldX = standardize(standardizer, gatherCodes(codes, dim, held), held.length);
      const scored = await evaluateCodes(trainer, { x: heldX, y: Int32Array.from(held, (r) => labels[r]), n: held.length }, classes, opts.batch * 8);
      held.forEach((r, i) => probabilities.set(scored.probabilities.subarray(i * classes, (i + 1) * classes), r * classes));
    } finally {
      await trainer.dispose();
    }
    opts.onFold?.(f, k, (performance.now() - foldStarted) / 1000);
  }
  return { probabilities, seconds: (performance.now() - started) / 1000, trainer: trainerName };
}

function rowsWhere(n: number, keep: (row: number) => boolean): number[] {
  const out: number[] = [];
  for (let r = 0; r < n; r++) if (keep(r)) out.push(r);
  return out;
}

function gatherCodes(codes: Float32Array, dim: number, rows: readonly number[]): Float32Array {
  const x = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => x.set(codes.subarray(r * dim, (r + 1) * dim), i * dim));
  return x;
}
