/** keras.applications.mobilenet (v1) and mobilenet_v2, alpha 1.0 at 224×224 (Keras' mobilenet.py, mobilenet_v2.py). */
import type { LayerGraph } from '../layer-graph.ts';
import { correctPad, KerasGraphBuilder } from './keras-builder.ts';

/** MobileNet v1: filters of the 13 depthwise-separable blocks, and which ones stride 2. */
const V1_BLOCKS: readonly (readonly [filters: number, stride: number])[] = [
  [64, 1], [128, 2], [128, 1], [256, 2], [256, 1], [512, 2], [512, 1], [512, 1], [512, 1], [512, 1], [512, 1], [1024, 2], [1024, 1],
];

export function mobilenetGraph(): LayerGraph {
  const k = new KerasGraphBuilder('mobilenet_1.00_224');
  let x = k.conv('input_layer', 32, 3, 'conv1', { stride: 2, padding: 'same', useBias: false });
  x = k.batchNorm(x, 'conv1_bn');
  x = k.relu(x, 'conv1_relu', 6);
  V1_BLOCKS.forEach(([filters, stride], i) => {
    const id = i + 1;
    if (stride === 2) x = k.zeroPad(x, [0, 0, 1, 1], `conv_pad_${id}`);
    x = k.depthwise(x, 3, `conv_dw_${id}`, { stride, padding: stride === 1 ? 'same' : 'valid', useBias: false });
    x = k.batchNorm(x, `conv_dw_${id}_bn`);
    x = k.relu(x, `conv_dw_${id}_relu`, 6);
    x = k.conv(x, filters, 1, `conv_pw_${id}`, { padding: 'same', useBias: false });
    x = k.batchNorm(x, `conv_pw_${id}_bn`);
    x = k.relu(x, `conv_pw_${id}_relu`, 6);
  });
  x = k.globalPool(x, 'avg', undefined, true);
  x = k.dropout(x, 1e-3, 'dropout');
  x = k.conv(x, 1000, 1, 'conv_preds', { padding: 'same' });
  x = k.reshape(x, [1000], 'reshape_2');
  k.activation(x, 'softmax', 'predictions');
  return k.graph();
}

/** MobileNetV2's inverted residual blocks: [filters, stride, expansion], block_id 0 … 16. */
const V2_BLOCKS: readonly (readonly [number, number, number])[] = [
  [16, 1, 1], [24, 2, 6], [24, 1, 6], [32, 2, 6], [32, 1, 6], [32, 1, 6], [64, 2, 6], [64, 1, 6], [64, 1, 6], [64, 1, 6],
  [96, 1, 6], [96, 1, 6], [96, 1, 6], [160, 2, 6], [160, 1, 6], [160, 1, 6], [320, 1, 6],
];

export function mobilenetV2Graph(): LayerGraph {
  const k = new KerasGraphBuilder('mobilenetv2_1.00_224');
  let x = k.conv('input_layer', 32, 3, 'Conv1', { stride: 2, padding: 'same', useBias: false });
  x = k.batchNorm(x, 'bn_Conv1');
  x = k.relu(x, 'Conv1_relu', 6);
  V2_BLOCKS.forEach(([filters, stride, expansion], id) => (x = invertedResidual(k, x, filters, stride, expansion, id)));
  x = k.conv(x, 1280, 1, 'Conv_1', { useBias: false });
  x = k.batchNorm(x, 'Conv_1_bn');
  x = k.relu(x, 'out_relu', 6);
  x = k.globalPool(x, 'avg');
  k.dense(x, 1000, 'predictions', 'softmax');
  return k.graph();
}

function invertedResidual(k: KerasGraphBuilder, inputs: string, filters: number, stride: number, expansion: number, id: number): string {
  const inChannels = k.channelsOf(inputs);
  let x = inputs;
  let prefix = `block_${id}_`;
  if (id) {
    x = k.conv(x, expansion * inChannels, 1, `${prefix}expand`, { padding: 'same', useBias: false });
    x = k.batchNorm(x, `${prefix}expand_BN`);
    x = k.relu(x, `${prefix}expand_relu`, 6);
  } else prefix = 'expanded_conv_';
  if (stride === 2) x = k.zeroPad(x, correctPad(3), `${prefix}pad`);
  x = k.depthwise(x, 3, `${prefix}depthwise`, { stride, padding: stride === 1 ? 'same' : 'valid', useBias: false });
  x = k.batchNorm(x, `${prefix}depthwise_BN`);
  x = k.relu(x, `${prefix}depthwise_relu`, 6);
  x = k.conv(x, filters, 1, `${prefix}project`, { padding: 'same', useBias: false });
  x = k.batchNorm(x, `${prefix}project_BN`);
  return inChannels === filters && stride === 1 ? k.merge([inputs, x], 'add', `${prefix}add`) : x;
}
