/** keras.applications.resnet: ResNet50, ResNet101, ResNet152 (v1, Keras' resnet.py, call for call). */
import type { LayerGraph } from '../layer-graph.ts';
import { KerasGraphBuilder } from './keras-builder.ts';

const EPSILON = 1.001e-5;

/** Blocks per stage: conv2 … conv5. */
export const RESNET_STAGES = { resnet50: [3, 4, 6, 3], resnet101: [3, 4, 23, 3], resnet152: [3, 8, 36, 3] } as const;

export function resnetGraph(name: keyof typeof RESNET_STAGES): LayerGraph {
  const k = new KerasGraphBuilder(name);
  let x = k.zeroPad('input_layer', [3, 3, 3, 3], 'conv1_pad');
  x = k.conv(x, 64, 7, 'conv1_conv', { stride: 2 });
  x = k.batchNorm(x, 'conv1_bn', EPSILON);
  x = k.activation(x, 'relu', 'conv1_relu');
  x = k.zeroPad(x, [1, 1, 1, 1], 'pool1_pad');
  x = k.pool(x, 'max', 3, 2, 'pool1_pool');
  const [b2, b3, b4, b5] = RESNET_STAGES[name];
  x = stack(k, x, 64, b2, 1, 'conv2');
  x = stack(k, x, 128, b3, 2, 'conv3');
  x = stack(k, x, 256, b4, 2, 'conv4');
  x = stack(k, x, 512, b5, 2, 'conv5');
  x = k.globalPool(x, 'avg', 'avg_pool');
  k.dense(x, 1000, 'predictions', 'softmax');
  return k.graph();
}

function stack(k: KerasGraphBuilder, x: string, filters: number, blocks: number, stride1: number, name: string): string {
  let y = block(k, x, filters, stride1, true, `${name}_block1`);
  for (let i = 2; i <= blocks; i++) y = block(k, y, filters, 1, false, `${name}_block${i}`);
  return y;
}

function block(k: KerasGraphBuilder, x: string, filters: number, stride: number, convShortcut: boolean, name: string): string {
  let shortcut = x;
  if (convShortcut) {
    shortcut = k.conv(x, 4 * filters, 1, `${name}_0_conv`, { stride });
    shortcut = k.batchNorm(shortcut, `${name}_0_bn`, EPSILON);
  }
  let y = k.conv(x, filters, 1, `${name}_1_conv`, { stride });
  y = k.batchNorm(y, `${name}_1_bn`, EPSILON);
  y = k.activation(y, 'relu', `${name}_1_relu`);
  y = k.conv(y, filters, 3, `${name}_2_conv`, { padding: 'same' });
  y = k.batchNorm(y, `${name}_2_bn`, EPSILON);
  y = k.activation(y, 'relu', `${name}_2_relu`);
  y = k.conv(y, 4 * filters, 1, `${name}_3_conv`);
  y = k.batchNorm(y, `${name}_3_bn`, EPSILON);
  y = k.merge([shortcut, y], 'add', `${name}_add`);
  return k.activation(y, 'relu', `${name}_out`);
}
