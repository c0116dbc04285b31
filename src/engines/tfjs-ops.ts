/**
 * TF.js forms of the graph's weightless, element-wise and shape ops, and of its activations,
 * shared by the TF.js engine and fine-tuning's trainable network so that both compute exactly
 * the same thing (and gradients flow through all of them).
 */
import type { Tensor } from '@tensorflow/tfjs';
import type { PlannedNode } from '../backbones/graph-plan.ts';
import type { Activation, LayerNode } from '../backbones/layer-graph.ts';
import type { Tf } from './tfjs-backend.ts';
import { spatialPadding } from './tfjs-layout.ts';
import { product } from '../util/numbers.ts';

type Op = (inputs: readonly Tensor[]) => Tensor;

/** An activation as tfjs-layers computes it (see Activation in layer-graph.ts). */
export function activate(tf: Tf, x: Tensor, fn: Activation, alpha = 1): Tensor {
  switch (fn) {
    case 'linear':
      return x;
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.relu6(x);
    case 'softmax':
      return tf.softmax(x);
    case 'sigmoid':
      return tf.sigmoid(x);
    case 'tanh':
      return tf.tanh(x);
    case 'swish':
      return tf.mul(x, tf.sigmoid(x));
    case 'hard_sigmoid':
      return tf.clipByValue(tf.add(tf.mul(x, 0.2), 0.5), 0, 1);
    case 'hard_swish':
      return tf.mul(x, tf.div(tf.relu6(tf.add(x, 3)), 6));
    case 'gelu':
      return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
    case 'elu':
      return alpha === 1 ? tf.elu(x) : tf.where(tf.greater(x, 0), x, tf.mul(alpha, tf.sub(tf.exp(x), 1)));
    case 'selu':
      return tf.selu(x);
    case 'softplus':
      return tf.softplus(x);
  }
}

/** Keras' ReLU with max_value, threshold and negative_slope (see ReluNode). */
export function reluOf(tf: Tf, x: Tensor, node: Extract<LayerNode, { op: 'relu' }>): Tensor {
  const { maxValue, threshold = 0, negativeSlope = 0 } = node;
  if (threshold === 0 && negativeSlope === 0) return maxValue === undefined ? tf.relu(x) : maxValue === 6 ? tf.relu6(x) : tf.clipByValue(x, 0, maxValue);
  let y = tf.where(tf.greaterEqual(x, threshold), x, tf.mul(negativeSlope, tf.sub(x, threshold)));
  if (maxValue !== undefined) y = tf.minimum(y, maxValue);
  return y;
}

/**
 * The op of a weightless node other than pooling, LRN and the input, or undefined for the
 * ones the caller builds itself. `copy` says whether an identity must return a new handle
 * (the engine frees inputs after their last reader).
 */
export function plainOp(tf: Tf, step: PlannedNode, copy: boolean): Op | undefined {
  const node = step.node;
  switch (node.op) {
    case 'relu':
      return ([x]) => reluOf(tf, x, node);
    case 'activation':
      return ([x]) => activate(tf, x, node.fn, node.alpha);
    case 'softmax':
      return ([x]) => tf.softmax(x);
    case 'dropout':
      return copy ? ([x]) => tf.clone(x) : ([x]) => x;
    case 'zeropad':
      return ([x]) => tf.pad(x, spatialPadding(node.pad));
    case 'crop': {
      const [h, w] = step.outShape;
      return ([x]) => tf.slice(x, [0, node.crop[0], node.crop[1], 0], [-1, h, w!, -1]);
    }
    case 'concat':
      return (inputs) => (inputs.length === 1 ? (copy ? tf.clone(inputs[0]) : inputs[0]) : tf.concat([...inputs], -1));
    case 'globalpool': {
      const keep = node.keepdims === true;
      return node.mode === 'avg' ? ([x]) => tf.mean(x, [1, 2], keep) : ([x]) => tf.max(x, [1, 2], keep);
    }
    case 'merge':
      return mergeOp(tf, node.mode);
    case 'rescale': {
      const scale: number | number[] = typeof node.scale === 'number' ? node.scale : [...node.scale];
      const offset: number | number[] = typeof node.offset === 'number' ? node.offset : [...node.offset];
      return ([x]) => tf.add(tf.mul(x, typeof scale === 'number' ? scale : tf.tensor1d(scale)), typeof offset === 'number' ? offset : tf.tensor1d(offset));
    }
    case 'reshape': {
      const shape = [...step.outShape];
      return ([x]) => tf.reshape(x, [x.shape[0], ...shape]);
    }
    case 'flatten': {
      const size = product(step.inShape);
      // Caffe's fc6 reads C, H, W: go through NCHW first so its weights line up.
      if (step.inShape.length === 1) return copy ? ([x]) => tf.clone(x) : ([x]) => x;
      return node.order === 'hwc' ? ([x]) => tf.reshape(x, [x.shape[0], size]) : ([x]) => tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [x.shape[0], size]);
    }
    default:
      return undefined;
  }
}

function mergeOp(tf: Tf, mode: Extract<LayerNode, { op: 'merge' }>['mode']): Op {
  const fold = (f: (a: Tensor, b: Tensor) => Tensor): Op => (inputs) => inputs.slice(1).reduce(f, inputs[0]);
  switch (mode) {
    case 'add':
      return fold((a, b) => tf.add(a, b));
    case 'multiply':
      return fold((a, b) => tf.mul(a, b));
    case 'subtract':
      return ([a, b]) => tf.sub(a, b);
    case 'average':
      return (inputs) => tf.div(fold((a, b) => tf.add(a, b))(inputs), inputs.length);
    case 'maximum':
      return fold((a, b) => tf.maximum(a, b));
    case 'minimum':
      return fold((a, b) => tf.minimum(a, b));
  }
}

/** y = x · a + b per channel, the inference form of batch normalisation. */
export function batchNormCoefficients(gamma: Float32Array, beta: Float32Array, mean: Float32Array, variance: Float32Array, epsilon: number): { scale: Float32Array; shift: Float32Array } {
  const scale = new Float32Array(gamma.length);
  const shift = new Float32Array(gamma.length);
  for (let i = 0; i < gamma.length; i++) {
    scale[i] = gamma[i] / Math.sqrt(variance[i] + epsilon);
    shift[i] = beta[i] - mean[i] * scale[i];
  }
  return { scale, shift };
}
