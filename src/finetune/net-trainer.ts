/**
 * The block + head network of fine-tune as a HeadTrainer, so that fine-tune trains with the
 * same loop as train-head (train-head/fit.ts: seeded batch order and dropout masks, per-epoch
 * scoring) instead of a copy of it. Its rows are frozen-cut codes, [H, W, C] each.
 */
import type { Tensor, Tensor2D } from '@tensorflow/tfjs';
import type { Tf } from '../engines/tfjs-backend.ts';
import type { CodeMatrix } from '../train-head/code-matrix.ts';
import type { HeadParams, HeadTrainer, TrainBatch } from '../train-head/trainer.ts';
import type { TrainableNet } from './trainable-net.ts';

type Optimizer = ReturnType<Tf['train']['momentum']>;

export interface NetShape {
  /** A frozen-cut code's [H, W, C]. */
  readonly shape: readonly number[];
  readonly hidden: readonly number[];
  readonly classes: number;
}

export function netTrainer(tf: Tf, net: TrainableNet, optimizer: Optimizer, provider: string, { shape, hidden, classes }: NetShape): HeadTrainer {
  const [h, w, c] = shape;
  return {
    name: 'tfjs',
    provider,
    async step(batch: TrainBatch): Promise<number> {
      const { n } = batch;
      const xs = tf.tensor4d(batch.x.subarray(0, n * h * w * c), [n, h, w, c]);
      const masks = hidden.map((units, l) => tf.tensor2d(batch.masks[l].subarray(0, n * units), [n, units]));
      const weights = tf.tensor1d(batch.weight.subarray(0, n));
      const oneHot = tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(batch.y.subarray(0, n), 'int32'), classes), 'float32') as Tensor2D);
      try {
        // Σ w·CE / n, as the other trainers define a batch's loss.
        const cost = optimizer.minimize(() => tf.div(tf.sum(tf.mul(weights, tf.neg(tf.sum(tf.mul(oneHot, tf.logSoftmax(net.logits(xs, masks))), 1)))), n) as Tensor as never, true, [...net.variables]);
        if (!cost) throw new Error('fine-tune: the optimizer returned no loss');
        const loss = (await cost.data())[0];
        cost.dispose();
        return loss;
      } finally {
        tf.dispose([xs, weights, oneHot, ...masks]);
      }
    },
    async predict(x: Float32Array, n: number): Promise<Float32Array> {
      const probs = tf.tidy(() => tf.softmax(net.logits(tf.tensor4d(x.subarray(0, n * h * w * c), [n, h, w, c]), null)));
      const out = (await probs.data()) as Float32Array;
      probs.dispose();
      return out;
    },
    async getParams(): Promise<HeadParams> {
      return (await net.read()).head;
    },
    async setParams(): Promise<void> {
      throw new Error('fine-tune keeps the last epoch: no weights are restored');
    },
    async dispose(): Promise<void> {},
  };
}

/** Rows of several code tables as one matrix, without copying them: row i is `rows[i]`. */
export function rowsMatrix(rows: readonly { readonly codes: Float32Array; readonly row: number }[], dim: number): CodeMatrix {
  const copy = (r: number, out: Float32Array, at: number) => out.set(rows[r].codes.subarray(rows[r].row * dim, (rows[r].row + 1) * dim), at * dim);
  return {
    n: rows.length,
    dim,
    gather(indices, out, at) {
      for (let i = 0; i < indices.length; i++) copy(indices[i], out, at + i);
    },
    range(start, count) {
      const out = new Float32Array(count * dim);
      for (let i = 0; i < count; i++) copy(start + i, out, i);
      return out;
    },
  };
}
