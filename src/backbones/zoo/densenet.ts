/** keras.applications.densenet: DenseNet121 (Keras' densenet.py, call for call). */
import type { LayerGraph } from '../layer-graph.ts';
import { KerasGraphBuilder } from './keras-builder.ts';

const EPSILON = 1.001e-5;
const DENSENET121_BLOCKS = [6, 12, 24, 16] as const;

export function densenet121Graph(): LayerGraph {
  const k = new KerasGraphBuilder('densenet121');
  let x = k.zeroPad('input_layer', [3, 3, 3, 3]);
  x = k.conv(x, 64, 7, 'conv1_conv', { stride: 2, useBias: false });
  x = k.batchNorm(x, 'conv1_bn', EPSILON);
  x = k.activation(x, 'relu', 'conv1_relu');
  x = k.zeroPad(x, [1, 1, 1, 1]);
  x = k.pool(x, 'max', 3, 2, 'pool1');
  DENSENET121_BLOCKS.forEach((blocks, i) => {
    x = denseBlock(k, x, blocks, `conv${i + 2}`);
    if (i < DENSENET121_BLOCKS.length - 1) x = transition(k, x, `pool${i + 2}`);
  });
  x = k.batchNorm(x, 'bn', EPSILON);
  x = k.activation(x, 'relu', 'relu');
  x = k.globalPool(x, 'avg', 'avg_pool');
  k.dense(x, 1000, 'predictions', 'softmax');
  return k.graph();
}

function denseBlock(k: KerasGraphBuilder, x: string, blocks: number, name: string): string {
  for (let i = 1; i <= blocks; i++) {
    const prefix = `${name}_block${i}`;
    let y = k.batchNorm(x, `${prefix}_0_bn`, EPSILON);
    y = k.activation(y, 'relu', `${prefix}_0_relu`);
    y = k.conv(y, 128, 1, `${prefix}_1_conv`, { useBias: false });
    y = k.batchNorm(y, `${prefix}_1_bn`, EPSILON);
    y = k.activation(y, 'relu', `${prefix}_1_relu`);
    y = k.conv(y, 32, 3, `${prefix}_2_conv`, { padding: 'same', useBias: false });
    x = k.concat([x, y], `${prefix}_concat`);
  }
  return x;
}

function transition(k: KerasGraphBuilder, x: string, name: string): string {
  let y = k.batchNorm(x, `${name}_bn`, EPSILON);
  y = k.activation(y, 'relu', `${name}_relu`);
  y = k.conv(y, Math.floor(k.channelsOf(y) * 0.5), 1, `${name}_conv`, { useBias: false });
  return k.pool(y, 'avg', 2, 2, `${name}_pool`);
}
