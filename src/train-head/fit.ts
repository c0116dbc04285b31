/**
 * The training loop: seeded batch order and dropout masks, per-epoch metrics, and early
 * stopping on validation loss that keeps the best epoch's weights. It drives any HeadTrainer.
 */
import { mulberry32 } from '../util/numbers.ts';
import type { LabelledCodes } from '../cache/code-table.ts';
import { memoryMatrix, type CodeMatrix } from './code-matrix.ts';
import type { HeadArchitecture, HeadParams, HeadTrainer, TrainBatch } from './trainer.ts';
import { pct } from '../util/numbers.ts';

export type { LabelledCodes };

/** Labelled codes that may live on disk (train-head --max-memory). */
export interface LabelledMatrix {
  readonly codes: CodeMatrix;
  readonly y: Int32Array;
  readonly n: number;
}

export type TrainingRows = LabelledCodes | LabelledMatrix;

function matrixOf(data: TrainingRows, dim: number): CodeMatrix {
  return 'codes' in data ? data.codes : memoryMatrix(data.x, data.n, dim);
}

export interface EpochStats {
  readonly epoch: number;
  /** Mean training batch loss (with dropout, class weights and L2), as Keras reports it. */
  readonly loss: number;
  /** Accuracy on the training rows, dropout off, after the epoch; null when not evaluated. */
  readonly acc: number | null;
  /** Mean cross-entropy on validation rows; null without validation rows. */
  readonly valLoss: number | null;
  readonly valAcc: number | null;
  readonly seconds: number;
}

export interface FitOptions {
  readonly trainer: HeadTrainer;
  readonly architecture: HeadArchitecture;
  readonly train: TrainingRows;
  readonly validation?: TrainingRows;
  /** Bytes the batch buffers may take (default 64 MB); --max-memory lowers it. */
  readonly bufferBytes?: number;
  readonly epochs: number;
  readonly batch: number;
  readonly seed: number;
  /** Per-class loss weight; null for equal weights. */
  readonly classWeights: Float32Array | null;
  /** Stop after this many epochs without a better validation loss; null trains every epoch. */
  readonly patience: number | null;
  /**
   * The weights kept: the epoch with the lowest validation loss (Keras' restore_best_weights),
   * or the last. Without validation rows there is no best, and the last is kept.
   */
  readonly keep: 'best' | 'last';
  readonly onEpoch?: (stats: EpochStats) => void;
  /** Score train and validation rows after each epoch (default true; benchmarks time training alone). */
  readonly evaluate?: boolean;
}

export interface FitResult {
  readonly history: readonly EpochStats[];
  /** 1-based epoch whose weights were kept (with keep 'best', the lowest validation loss; else the last). */
  readonly bestEpoch: number;
  readonly params: HeadParams;
  readonly stoppedEarly: boolean;
}

export async function fit(opts: FitOptions): Promise<FitResult> {
  const { trainer, architecture: arch, train } = opts;
  const dim = arch.inputDim;
  const random = mulberry32(opts.seed ^ 0x5eed);
  const order = Int32Array.from({ length: train.n }, (_, i) => i);
  // Trainers with stepMany get up to `perCall` batches at once, built back to back in these
  // buffers (about 64 MB of codes at most); the batch order, masks and weights are the same.
  const batchCount = Math.ceil(train.n / opts.batch);
  const perCall = trainer.stepMany ? Math.max(1, Math.min(batchCount, Math.floor((opts.bufferBytes ?? 64 << 20) / (opts.batch * dim * 4)))) : 1;
  const trainCodes = matrixOf(train, dim);
  const x = new Float32Array(perCall * opts.batch * dim);
  const y = new Int32Array(perCall * opts.batch);
  const weight = new Float32Array(perCall * opts.batch);
  const masks = arch.hidden.map((h) => new Float32Array(perCall * opts.batch * h));
  const keep = 1 - arch.dropout;

  const history: EpochStats[] = [];
  let best: { loss: number; epoch: number; params: HeadParams } | undefined;
  let sinceBest = 0;
  let stoppedEarly = false;

  for (let epoch = 1; epoch <= opts.epochs; epoch++) {
    const started = performance.now();
    shuffle(order, random);
    let lossSum = 0;
    const pending: TrainBatch[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      const losses = trainer.stepMany ? await trainer.stepMany(pending) : [await trainer.step(pending[0])];
      pending.forEach((b, k) => (lossSum += losses[k] * b.n));
      pending.length = 0;
    };
    for (let start = 0; start < train.n; start += opts.batch) {
      const n = Math.min(opts.batch, train.n - start);
      const at = pending.length * opts.batch;
      trainCodes.gather(order.subarray(start, start + n), x, at);
      for (let i = 0; i < n; i++) {
        y[at + i] = train.y[order[start + i]];
        weight[at + i] = opts.classWeights ? opts.classWeights[y[at + i]] : 1;
      }
      for (const [l, mask] of masks.entries()) {
        const h = arch.hidden[l];
        for (let j = at * h; j < (at + n) * h; j++) mask[j] = arch.dropout > 0 ? (random() < keep ? 1 / keep : 0) : 1;
      }
      pending.push({
        x: x.subarray(at * dim, (at + n) * dim),
        y: y.subarray(at, at + n),
        weight: weight.subarray(at, at + n),
        masks: masks.map((m, l) => m.subarray(at * arch.hidden[l], (at + n) * arch.hidden[l])),
        n,
      });
      if (pending.length === perCall) await flush();
    }
    await flush();
    const scoring = opts.evaluate ?? true;
    const acc = scoring ? (await evaluateCodes(trainer, train, arch.classes, opts.batch * 8)).acc : null;
    const val = scoring && opts.validation && opts.validation.n > 0 ? await evaluateCodes(trainer, opts.validation, arch.classes, opts.batch * 8) : null;
    const stats: EpochStats = {
      epoch,
      loss: lossSum / train.n,
      acc,
      valLoss: val?.loss ?? null,
      valAcc: val?.acc ?? null,
      seconds: (performance.now() - started) / 1000,
    };
    history.push(stats);
    opts.onEpoch?.(stats);

    if (val) {
      if (!best || val.loss < best.loss) {
        // Only a kept best needs its weights copied out of the trainer.
        best = { loss: val.loss, epoch, params: opts.keep === 'best' ? await trainer.getParams() : [] };
        sinceBest = 0;
      } else if (opts.patience !== null && ++sinceBest >= opts.patience) {
        stoppedEarly = epoch < opts.epochs;
        break;
      }
    }
  }
  if (opts.keep === 'best' && best) {
    if (best.epoch !== history.length) await trainer.setParams(best.params);
    return { history, bestEpoch: best.epoch, params: best.params, stoppedEarly };
  }
  return { history, bestEpoch: history.length, params: await trainer.getParams(), stoppedEarly };
}

/** Mean cross-entropy and accuracy of the current weights, dropout off. */
export async function evaluateCodes(
  trainer: HeadTrainer,
  data: TrainingRows,
  classes: number,
  chunk: number,
): Promise<{ loss: number; acc: number; probabilities: Float32Array }> {
  const codes = 'codes' in data ? data.codes : memoryMatrix(data.x, data.n, data.x.length / Math.max(data.n, 1));
  const probabilities = new Float32Array(data.n * classes);
  for (let start = 0; start < data.n; start += chunk) {
    const n = Math.min(chunk, data.n - start);
    probabilities.set(await trainer.predict(codes.range(start, n), n), start * classes);
  }
  let loss = 0;
  let right = 0;
  for (let i = 0; i < data.n; i++) {
    const row = probabilities.subarray(i * classes, (i + 1) * classes);
    loss -= Math.log(Math.max(row[data.y[i]], 1e-12));
    let top = 0;
    for (let c = 1; c < classes; c++) if (row[c] > row[top]) top = c;
    if (top === data.y[i]) right++;
  }
  return { loss: loss / Math.max(data.n, 1), acc: right / Math.max(data.n, 1), probabilities };
}

/** Fisher–Yates with the seeded generator, so a seed fixes the batch order. */
export function shuffle(a: Int32Array, random: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}


/** One epoch's line on the terminal, as train-head and fine-tune print it. */
export function formatEpoch(s: EpochStats, epochs: number): string {
  return (
    `epoch ${String(s.epoch).padStart(String(epochs).length)}/${epochs}  loss ${s.loss.toFixed(4)}  acc ${pct(s.acc)}` +
    (s.valLoss !== null ? `  val_loss ${s.valLoss.toFixed(4)}  val_acc ${pct(s.valAcc)}` : '') +
    `  ${s.seconds.toFixed(2)} s`
  );
}
