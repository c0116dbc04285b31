/** keras.applications.xception: Xception at 299×299 (Keras' xception.py, call for call). */
import type { LayerGraph } from '../layer-graph.ts';
import { KerasGraphBuilder } from './keras-builder.ts';

export function xceptionGraph(): LayerGraph {
  const k = new KerasGraphBuilder('xception');
  const sep = (x: string, filters: number, name: string) => k.batchNorm(k.separable(x, filters, 3, name, { padding: 'same', useBias: false }), `${name}_bn`);
  const shortcut = (x: string, filters: number) => k.batchNorm(k.conv(x, filters, 1, undefined, { stride: 2, padding: 'same', useBias: false }), undefined);
  let x = k.conv('input_layer', 32, 3, 'block1_conv1', { stride: 2, useBias: false });
  x = k.activation(k.batchNorm(x, 'block1_conv1_bn'), 'relu', 'block1_conv1_act');
  x = k.conv(x, 64, 3, 'block1_conv2', { useBias: false });
  x = k.activation(k.batchNorm(x, 'block1_conv2_bn'), 'relu', 'block1_conv2_act');

  let residual = shortcut(x, 128);
  x = sep(x, 128, 'block2_sepconv1');
  x = k.activation(x, 'relu', 'block2_sepconv2_act');
  x = sep(x, 128, 'block2_sepconv2');
  x = k.pool(x, 'max', 3, 2, 'block2_pool', 'same');
  x = k.merge([x, residual], 'add');

  for (const [block, filters] of [[3, 256], [4, 728]] as const) {
    residual = shortcut(x, filters);
    x = sep(k.activation(x, 'relu', `block${block}_sepconv1_act`), filters, `block${block}_sepconv1`);
    x = sep(k.activation(x, 'relu', `block${block}_sepconv2_act`), filters, `block${block}_sepconv2`);
    x = k.pool(x, 'max', 3, 2, `block${block}_pool`, 'same');
    x = k.merge([x, residual], 'add');
  }
  for (let i = 0; i < 8; i++) {
    residual = x;
    const prefix = `block${i + 5}`;
    for (const j of [1, 2, 3]) x = sep(k.activation(x, 'relu', `${prefix}_sepconv${j}_act`), 728, `${prefix}_sepconv${j}`);
    x = k.merge([x, residual], 'add');
  }
  residual = shortcut(x, 1024);
  x = sep(k.activation(x, 'relu', 'block13_sepconv1_act'), 728, 'block13_sepconv1');
  x = sep(k.activation(x, 'relu', 'block13_sepconv2_act'), 1024, 'block13_sepconv2');
  x = k.pool(x, 'max', 3, 2, 'block13_pool', 'same');
  x = k.merge([x, residual], 'add');
  x = k.activation(sep(x, 1536, 'block14_sepconv1'), 'relu', 'block14_sepconv1_act');
  x = k.activation(sep(x, 2048, 'block14_sepconv2'), 'relu', 'block14_sepconv2_act');
  x = k.globalPool(x, 'avg', 'avg_pool');
  k.dense(x, 1000, 'predictions', 'softmax');
  return k.graph();
}
