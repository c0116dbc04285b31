/** keras.applications.inception_v3: InceptionV3 at 299×299 (Keras' inception_v3.py, call for call). */
import type { LayerGraph, Pair } from '../layer-graph.ts';
import { KerasGraphBuilder } from './keras-builder.ts';

export function inceptionV3Graph(): LayerGraph {
  const k = new KerasGraphBuilder('inception_v3');
  /** Keras' conv2d_bn: an unnamed conv (no bias), batch norm without scale, ReLU. */
  const cbn = (x: string, filters: number, rows: number, cols: number, o: { stride?: number; padding?: 'same' | 'valid' } = {}) => {
    const conv = k.conv(x, filters, [rows, cols] as Pair, undefined, { stride: o.stride ?? 1, padding: o.padding ?? 'same', useBias: false });
    return k.activation(k.batchNorm(conv, undefined, 1e-3, { scale: false }), 'relu');
  };
  const avgPool = (x: string) => k.pool(x, 'avg', 3, 1, undefined, 'same');
  let x = cbn('input_layer', 32, 3, 3, { stride: 2, padding: 'valid' });
  x = cbn(x, 32, 3, 3, { padding: 'valid' });
  x = cbn(x, 64, 3, 3);
  x = k.pool(x, 'max', 3, 2);
  x = cbn(x, 80, 1, 1, { padding: 'valid' });
  x = cbn(x, 192, 3, 3, { padding: 'valid' });
  x = k.pool(x, 'max', 3, 2);

  // mixed 0, 1, 2: 35 × 35 × 256, 288, 288
  for (const [i, poolFilters] of [32, 64, 64].entries()) {
    const b1 = cbn(x, 64, 1, 1);
    const b5 = cbn(cbn(x, 48, 1, 1), 64, 5, 5);
    const b3 = cbn(cbn(cbn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3);
    const bp = cbn(avgPool(x), poolFilters, 1, 1);
    x = k.concat([b1, b5, b3, bp], `mixed${i}`);
  }
  // mixed 3: 17 × 17 × 768
  {
    const b3 = cbn(x, 384, 3, 3, { stride: 2, padding: 'valid' });
    const bd = cbn(cbn(cbn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3, { stride: 2, padding: 'valid' });
    const bp = k.pool(x, 'max', 3, 2);
    x = k.concat([b3, bd, bp], 'mixed3');
  }
  // mixed 4, 5, 6, 7: 17 × 17 × 768
  for (const [i, f] of [128, 160, 160, 192].entries()) {
    const b1 = cbn(x, 192, 1, 1);
    const b7 = cbn(cbn(cbn(x, f, 1, 1), f, 1, 7), 192, 7, 1);
    let bd = cbn(x, f, 1, 1);
    bd = cbn(cbn(cbn(cbn(bd, f, 7, 1), f, 1, 7), f, 7, 1), 192, 1, 7);
    const bp = cbn(avgPool(x), 192, 1, 1);
    x = k.concat([b1, b7, bd, bp], `mixed${4 + i}`);
  }
  // mixed 8: 8 × 8 × 1280
  {
    const b3 = cbn(cbn(x, 192, 1, 1), 320, 3, 3, { stride: 2, padding: 'valid' });
    const b7 = cbn(cbn(cbn(cbn(x, 192, 1, 1), 192, 1, 7), 192, 7, 1), 192, 3, 3, { stride: 2, padding: 'valid' });
    const bp = k.pool(x, 'max', 3, 2);
    x = k.concat([b3, b7, bp], 'mixed8');
  }
  // mixed 9, 10: 8 × 8 × 2048
  for (let i = 0; i < 2; i++) {
    const b1 = cbn(x, 320, 1, 1);
    const b3 = cbn(x, 384, 1, 1);
    const b3cat = k.concat([cbn(b3, 384, 1, 3), cbn(b3, 384, 3, 1)], `mixed9_${i}`);
    const bd = cbn(cbn(x, 448, 1, 1), 384, 3, 3);
    const bdcat = k.concat([cbn(bd, 384, 1, 3), cbn(bd, 384, 3, 1)]);
    const bp = cbn(avgPool(x), 192, 1, 1);
    x = k.concat([b1, b3cat, bdcat, bp], `mixed${9 + i}`);
  }
  x = k.globalPool(x, 'avg', 'avg_pool');
  k.dense(x, 1000, 'predictions', 'softmax');
  return k.graph();
}
