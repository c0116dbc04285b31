/**
 * Keras' VGG16 (keras.applications.vgg16), node for node: the same layer names, and weight
 * tensors in the same order, so Keras h5 files and TF.js conversions load by name.
 */
import type { LayerGraph, LayerNode } from '../layer-graph.ts';
import type { Preprocessing } from '../backbone.ts';

/** Keras "caffe" mode: RGB → BGR, minus the ImageNet mean, no scaling. */
export const VGG16_PREPROCESSING: Preprocessing = {
  size: [224, 224],
  channels: 'bgr',
  mean: [103.939, 116.779, 123.68],
  std: [1, 1, 1],
};

const BLOCKS: readonly (readonly [convs: number, filters: number])[] = [
  [2, 64],
  [2, 128],
  [3, 256],
  [3, 512],
  [3, 512],
];

/** Nodes after block5_pool; cutting at any of them needs the full (with-top) weights. */
export const VGG16_TOP_NODES = ['flatten', 'fc1', 'fc2', 'predictions'] as const;

export function vgg16Graph(): LayerGraph {
  return vggGraph('vgg16', BLOCKS, [4096, 4096], 1000);
}

/** keras.applications.vgg19: VGG16 with four convs in blocks 3 to 5 (Keras 3 names its input input_layer). */
export function vgg19Graph(): LayerGraph {
  return vggGraph('vgg19', [[2, 64], [2, 128], [4, 256], [4, 512], [4, 512]], [4096, 4096], 1000, 'input_layer');
}

/**
 * A VGG-shaped graph: blocks of 3×3 'same' ReLU convs, each closed by a 2×2 max pool, then
 * flatten (H, W, C, as Keras) and fully connected layers `fc1`, `fc2`, …, `predictions`.
 */
export function vggGraph(
  name: string,
  blocks: readonly (readonly [number, number])[],
  fc: readonly number[],
  classes: number,
  input = 'input_1',
): LayerGraph {
  const nodes: LayerNode[] = [{ name: input, op: 'input', inputs: [], channels: 3 }];
  let prev = input;
  const push = (node: LayerNode) => {
    nodes.push(node);
    prev = node.name;
  };
  blocks.forEach(([convs, filters], b) => {
    for (let i = 1; i <= convs; i++) {
      push({
        name: `block${b + 1}_conv${i}`,
        op: 'conv2d',
        inputs: [prev],
        filters,
        kernel: [3, 3],
        stride: [1, 1],
        pad: 'same',
        dilation: [1, 1],
        activation: 'relu',
      });
    }
    push({ name: `block${b + 1}_pool`, op: 'maxpool', inputs: [prev], kernel: [2, 2], stride: [2, 2], pad: 'valid', ceil: false });
  });
  push({ name: 'flatten', op: 'flatten', inputs: [prev], order: 'hwc' });
  fc.forEach((units, i) => push({ name: `fc${i + 1}`, op: 'dense', inputs: [prev], units, activation: 'relu' }));
  push({ name: 'predictions', op: 'dense', inputs: [prev], units: classes, activation: 'softmax' });
  // Caffe's VGG names the post-ReLU fully connected outputs relu6 and relu7.
  const aliases: Record<string, string> = {};
  fc.forEach((_, i) => (aliases[`relu${i + 6}`] = `fc${i + 1}`));
  return { name, nodes, aliases };
}
