/**
 * The layers fine-tuning trains, as TF.js ops on tf.Variables: a planned sub-graph (frozen cut
 * → head's cut), the cut's pooling or flatten, then the head's dense layers. Geometry comes
 * from the plan exactly as the TF.js engine reads it (explicit pads, -Infinity for max-pool
 * padding, the avg-pool divisor correction), so the trained network computes what the engines
 * will compute with the trained weights.
 *
 * Plain ops, not a tf.LayersModel: TF.js' wasm backend has no Conv2DBackpropFilter kernel (and
 * tf.fused.conv2d's gradient fails there), so a convolution's filter gradient is computed here,
 * on backends that lack that kernel, as one more convolution (see convFilterGrad). With
 * tfjs-node(-gpu) TF.js' own gradient runs, on the GPU where there is one.
 */
import type { GradSaveFunc, Tensor, Tensor1D, Tensor2D, Tensor4D, Variable } from '@tensorflow/tfjs';
import type { GraphPlan, PlannedNode } from '../backbones/graph-plan.ts';
import { biasName, groupsOf, weightName, type Pair } from '../backbones/layer-graph.ts';
import { transpose, type WeightMap, type WeightTensor } from '../backbones/weights.ts';
import { avgPoolCorrection } from '../engines/tfjs-engine.ts';
import type { Tf } from '../engines/tfjs-backend.ts';
import { addPads, pair, spatialPadding, spatialSize } from '../engines/tfjs-layout.ts';
import { activate, batchNormCoefficients, plainOp } from '../engines/tfjs-ops.ts';
import type { HeadArchitecture, HeadParams } from '../train-head/trainer.ts';

export interface TrainableNet {
  /** Every trainable variable: the sub-graph's weighted nodes, then the head's layers. */
  readonly variables: readonly Variable[];
  /**
   * Logits for a batch of frozen-cut codes [n, H, W, C]. `masks` (one [n, hidden[i]] scaled
   * mask per hidden layer) applies dropout for training; null is inference.
   */
  logits(x: Tensor4D, masks: readonly Tensor2D[] | null): Tensor2D;
  /** The trained weights in canonical layout (OIHW, [out, in]) and the head's parameters. */
  read(): Promise<{ weights: Map<string, WeightTensor>; head: HeadParams }>;
  dispose(): void;
}

export interface TrainableOptions {
  /** The sub-graph planned from its input (the frozen cut) to the head's cut. */
  readonly plan: GraphPlan;
  readonly weights: WeightMap;
  /** The head cut's global pooling; without it a spatial cut is flattened H, W, C. */
  readonly pool: 'avg' | 'max' | null;
  readonly architecture: HeadArchitecture;
  readonly head: HeadParams;
}

type Op = (inputs: readonly Tensor[]) => Tensor;
type ConvStep = Extract<PlannedNode, { readonly node: { readonly op: 'conv2d' } }>;
type PoolStep = Extract<PlannedNode, { readonly node: { readonly op: 'maxpool' | 'avgpool' } }>;

export function createTrainableNet(tf: Tf, opts: TrainableOptions): TrainableNet {
  const owned: Tensor[] = [];
  const variables: Variable[] = [];
  /** Canonical weight name → its variable, and how to turn it back to canonical layout. */
  const canonical = new Map<string, { variable: Variable; perm: number[] | null; shape: readonly number[] }>();
  /** `reshape`: a view of the canonical tensor to permute instead of its own shape (depthwise kernels). */
  const variable = (key: string, perm: number[] | null, reshape?: readonly number[]): Variable => {
    const w = opts.weights.get(key);
    if (!w) throw new Error(`fine-tune: no weight tensor '${key}'`);
    const init = tf.tidy(() => {
      const t = tf.tensor(w.data, [...(reshape ?? w.shape)], 'float32');
      return perm ? tf.transpose(t, perm) : t;
    });
    const v = tf.variable(init, true);
    init.dispose();
    variables.push(v);
    canonical.set(key, { variable: v, perm: perm && inversePermutation(perm), shape: w.shape });
    return v;
  };
  const conv = convOp(tf);

  let ops: (Op | undefined)[];
  const headLayers: { kernel: Variable; bias: Variable }[] = [];
  try {
    ops = opts.plan.steps.map((step) => (step.node.op === 'input' ? undefined : buildOp(tf, step, opts.weights, variable, conv, (t) => (owned.push(t), t))));
    const widths = [opts.architecture.inputDim, ...opts.architecture.hidden, opts.architecture.classes];
    opts.head.forEach((layer, i) => {
      const [inputs, outputs] = [widths[i], widths[i + 1]];
      const kernelInit = tf.tidy(() => tf.transpose(tf.tensor2d(layer.weight, [outputs, inputs])));
      const biasInit = tf.tensor1d(layer.bias);
      // A variable shares its initial tensor's storage; the handles are released here.
      const [kernel, bias] = [tf.variable(kernelInit, true), tf.variable(biasInit, true)];
      tf.dispose([kernelInit, biasInit]);
      variables.push(kernel, bias);
      headLayers.push({ kernel, bias });
    });
  } catch (error) {
    tf.dispose([...owned, ...variables]);
    throw error;
  }
  const output = opts.plan.outputs[0];

  return {
    variables,
    logits(x, masks) {
      const values = new Map<string, Tensor>();
      opts.plan.steps.forEach((step, i) => {
        const op = ops[i];
        values.set(step.node.name, op ? op(step.node.inputs.map((name) => values.get(name)!)) : x);
      });
      const cut = values.get(output)!;
      let h: Tensor2D;
      if (cut.rank === 4) h = (opts.pool === 'avg' ? tf.mean(cut, [1, 2]) : opts.pool === 'max' ? tf.max(cut, [1, 2]) : tf.reshape(cut, [cut.shape[0], -1])) as Tensor2D;
      else h = cut as Tensor2D;
      headLayers.forEach((layer, i) => {
        h = tf.add(tf.matMul(h, layer.kernel as Tensor2D), layer.bias as Tensor1D);
        if (i < headLayers.length - 1) {
          h = tf.relu(h);
          if (masks) h = tf.mul(h, masks[i]);
        }
      });
      return h;
    },
    async read() {
      const weights = new Map<string, WeightTensor>();
      for (const [key, { variable: v, perm }] of canonical) {
        const t: WeightTensor = { shape: v.shape, data: Float32Array.from(await v.data()) };
        const back = perm ? transpose(t, perm) : t;
        weights.set(key, { shape: canonical.get(key)!.shape, data: back.data });
      }
      const head: HeadParams = await Promise.all(
        headLayers.map(async (l) => ({
          weight: transpose({ shape: l.kernel.shape, data: Float32Array.from(await l.kernel.data()) }, [1, 0]).data,
          bias: Float32Array.from(await l.bias.data()),
        })),
      );
      return { weights, head };
    },
    dispose() {
      tf.dispose([...owned, ...variables]);
    },
  };
}

type ConvFn = (x: Tensor4D, filter: Tensor4D, stride: [number, number]) => Tensor4D;

function inversePermutation(perm: readonly number[]): number[] {
  const inverse = new Array<number>(perm.length);
  perm.forEach((p, i) => (inverse[p] = i));
  return inverse;
}

type VariableFn = (key: string, perm: number[] | null, reshape?: readonly number[]) => Variable;

function buildOp(tf: Tf, step: PlannedNode, weights: WeightMap, variable: VariableFn, conv: ConvFn, keep: <T extends Tensor>(t: T) => T): Op {
  const node = step.node;
  const plain = plainOp(tf, step, false);
  if (plain) return plain;
  const constant = (key: string): Tensor => {
    const w = weights.get(key);
    if (!w) throw new Error(`fine-tune: no weight tensor '${key}'`);
    return keep(tf.tensor(w.data, [...w.shape], 'float32'));
  };
  switch (node.op) {
    case 'input':
      throw new Error('the input node has no op');
    case 'conv2d': {
      const { pads, inShape } = step as ConvStep;
      if (node.dilation[0] !== 1 || node.dilation[1] !== 1) throw new Error(`fine-tune: ${node.name} is dilated; TF.js has no gradient for dilated convolutions`);
      const groups = groupsOf(node);
      const channels = inShape[2]!;
      const padded = pads.some((p) => p > 0);
      const stride: [number, number] = [node.stride[0], node.stride[1]];
      const pad = (x: Tensor) => (padded ? tf.pad(x as Tensor4D, spatialPadding(pads)) : (x as Tensor4D));
      const bias = variable(biasName(node), null);
      if (groups > 1 && groups === channels) {
        // Canonical [C·m, 1, kh, kw] → TF's depthwise [kh, kw, C, m], as a variable.
        const filter = variable(weightName(node), [2, 3, 0, 1], [channels, node.filters / channels, ...node.kernel]);
        const depthwise = depthwiseOp(tf);
        return ([x]) => activate(tf, tf.add(depthwise(pad(x), filter as Tensor4D, stride), bias), node.activation);
      }
      if (groups > 1) throw new Error(`fine-tune: ${node.name} is a grouped convolution (${groups} groups), which fine-tuning does not train`);
      const filter = variable(weightName(node), [2, 3, 1, 0]);
      return ([x]) => activate(tf, tf.add(conv(pad(x), filter as Tensor4D, stride), bias), node.activation);
    }
    case 'separable_conv2d':
      throw new Error(`fine-tune: ${node.name} is a separable convolution, which fine-tuning does not train`);
    case 'batchnorm': {
      // Frozen, as Keras recommends for transfer learning: inference statistics, not trained.
      const [gamma, beta, mean, variance] = ['gamma', 'beta', 'mean', 'variance'].map((p) => weights.get(`${node.name}.${p}`)!.data);
      const { scale, shift } = batchNormCoefficients(gamma, beta, mean, variance, node.epsilon);
      const [a, b] = [keep(tf.tensor1d(scale)), keep(tf.tensor1d(shift))];
      return ([x]) => tf.add(tf.mul(x, a), b);
    }
    case 'normalize': {
      const mean = constant(`${node.name}.mean`);
      const std = keep(tf.maximum(tf.sqrt(constant(`${node.name}.variance`)), 1e-7));
      return ([x]) => tf.div(tf.sub(x, mean), std);
    }
    case 'maxpool': {
      const { pads } = step as PoolStep;
      const total = addPads(pads.counted, pads.uncounted);
      const padded = total.some((p) => p > 0);
      const [k, s] = [pair(node.kernel), pair(node.stride)];
      return ([x]) => tf.maxPool(padded ? tf.pad(x as Tensor4D, spatialPadding(total), -Infinity) : (x as Tensor4D), k, s, 'valid');
    }
    case 'avgpool': {
      const { pads } = step as PoolStep;
      const total = addPads(pads.counted, pads.uncounted);
      const padded = total.some((p) => p > 0);
      const [k, s] = [pair(node.kernel), pair(node.stride)];
      const out = spatialSize(step.outShape);
      const correction = pads.uncounted.some((p) => p > 0)
        ? keep(tf.tensor4d(avgPoolCorrection(spatialSize(step.inShape), k, s, pads, out), [1, ...out, 1]))
        : undefined;
      return ([x]) => {
        const mean = tf.avgPool(padded ? tf.pad(x as Tensor4D, spatialPadding(total)) : (x as Tensor4D), k, s, 'valid');
        return correction ? tf.mul(mean, correction) : mean;
      };
    }
    case 'lrn': {
      const depthRadius = (node.size - 1) / 2;
      return ([x]) => tf.localResponseNormalization(x as Tensor4D, depthRadius, node.k, node.alpha / node.size, node.beta);
    }
    case 'dense': {
      const kernel = variable(weightName(node), [1, 0]);
      const bias = variable(biasName(node), null);
      return ([x]) => activate(tf, tf.add(tf.matMul(x as Tensor2D, kernel as Tensor2D), bias), node.activation);
    }
    default:
      throw new Error(`fine-tune: no op for ${node.op} node '${node.name}'`);
  }
}

type DepthwiseFn = (x: Tensor4D, filter: Tensor4D, stride: [number, number]) => Tensor4D;

/**
 * A 'valid' depthwise convolution whose gradients work on every backend: TF.js' own where the
 * backend has the backprop kernels (cpu, tfjs-node), else (wasm has neither) custom ones built
 * from forward depthwise convolutions and sums, as convOp does for plain convolutions.
 */
export function depthwiseOp(tf: Tf): DepthwiseFn {
  const backend = tf.getBackend();
  if (tf.getKernel('DepthwiseConv2dNativeBackpropFilter', backend) && tf.getKernel('DepthwiseConv2dNativeBackpropInput', backend)) {
    return (x, filter, stride) => tf.depthwiseConv2d(x, filter, stride, 'valid');
  }
  const custom = new Map<string, (x: Tensor4D, filter: Tensor4D) => Tensor4D>();
  return (x, filter, stride) => {
    const key = stride.join('x');
    let f = custom.get(key);
    if (!f) {
      f = tf.customGrad((...args: (Tensor | GradSaveFunc)[]) => {
        const [xs, fs, save] = args as [Tensor, Tensor, GradSaveFunc];
        save([xs, fs]);
        return {
          value: tf.depthwiseConv2d(xs as Tensor4D, fs as Tensor4D, stride, 'valid'),
          gradFunc: (dy: Tensor, saved: Tensor[]) => {
            const [xSaved, fSaved] = saved as [Tensor4D, Tensor4D];
            return [depthwiseInputGrad(tf, dy as Tensor4D, fSaved, xSaved.shape, stride), depthwiseFilterGrad(tf, xSaved, dy as Tensor4D, fSaved.shape, stride)];
          },
        };
      }) as unknown as (x: Tensor4D, filter: Tensor4D) => Tensor4D;
      custom.set(key, f);
    }
    return f(x, filter);
  };
}

/**
 * dL/dx of a 'valid' depthwise convolution, filter [kh, kw, C, m]: dy [n, oh, ow, C·m] dilated
 * by the stride and zero-padded by K − 1, depthwise-convolved (multiplier 1) with the filter
 * turned 180°, then summed over each channel's m outputs.
 */
export function depthwiseInputGrad(tf: Tf, dy: Tensor4D, filter: Tensor4D, xShape: readonly number[], stride: Pair): Tensor4D {
  const [kh, kw, c, m] = filter.shape;
  const [n, h, w] = xShape;
  const [, oh, ow] = dy.shape;
  return tf.tidy(() => {
    let d: Tensor4D = dy;
    if (stride[0] > 1 || stride[1] > 1) {
      const spread = tf.pad(tf.reshape(dy, [n, oh, 1, ow, 1, c * m]), [[0, 0], [0, 0], [0, stride[0] - 1], [0, 0], [0, stride[1] - 1], [0, 0]]);
      d = tf.slice(tf.reshape(spread, [n, oh * stride[0], ow * stride[1], c * m]) as Tensor4D, [0, 0, 0, 0], [n, (oh - 1) * stride[0] + 1, (ow - 1) * stride[1] + 1, c * m]);
    }
    const extraH = h - ((oh - 1) * stride[0] + kh);
    const extraW = w - ((ow - 1) * stride[1] + kw);
    const padded = tf.pad(d, [[0, 0], [kh - 1, kh - 1 + extraH], [kw - 1, kw - 1 + extraW], [0, 0]]);
    const turned = tf.reshape(tf.reverse(filter, [0, 1]), [kh, kw, c * m, 1]) as Tensor4D;
    const all = tf.depthwiseConv2d(padded, turned, 1, 'valid');
    return m === 1 ? all : (tf.sum(tf.reshape(all, [n, h, w, c, m]), 4) as Tensor4D);
  });
}

/** dL/dW[kh, kw, c, j] = Σ_{n,i,j'} x[n, i·s + kh, j'·s + kw, c] · dy[n, i, j', c·m + j]: one strided slice per kernel tap. */
export function depthwiseFilterGrad(tf: Tf, x: Tensor4D, dy: Tensor4D, filterShape: readonly number[], stride: Pair): Tensor4D {
  const [kh, kw, c, m] = filterShape;
  const [n, oh, ow] = dy.shape;
  return tf.tidy(() => {
    const dyByChannel = tf.reshape(dy, [n, oh, ow, c, m]);
    const taps: Tensor[] = [];
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const end = [n, i + (oh - 1) * stride[0] + 1, j + (ow - 1) * stride[1] + 1, c];
        const window = tf.stridedSlice(x, [0, i, j, 0], end, [1, stride[0], stride[1], 1]);
        taps.push(tf.sum(tf.mul(tf.reshape(window, [n, oh, ow, c, 1]), dyByChannel), [0, 1, 2]));
      }
    }
    return tf.reshape(tf.stack(taps), [kh, kw, c, m]) as Tensor4D;
  });
}

/**
 * A 'valid' convolution whose gradient works on every backend: TF.js' own where the backend
 * has a Conv2DBackpropFilter kernel (tfjs-node, tfjs-node-gpu, cpu), else a custom gradient.
 */
export function convOp(tf: Tf): ConvFn {
  if (tf.getKernel('Conv2DBackpropFilter', tf.getBackend())) return (x, filter, stride) => tf.conv2d(x, filter, stride, 'valid');
  const custom = new Map<string, (x: Tensor4D, filter: Tensor4D) => Tensor4D>();
  return (x, filter, stride) => {
    const key = stride.join('x');
    let f = custom.get(key);
    if (!f) {
      f = tf.customGrad((...args: (Tensor | GradSaveFunc)[]) => {
        const [xs, fs, save] = args as [Tensor, Tensor, GradSaveFunc];
        save([xs, fs]);
        return {
          value: tf.conv2d(xs as Tensor4D, fs as Tensor4D, stride, 'valid'),
          gradFunc: (dy: Tensor, saved: Tensor[]) => {
            const [xSaved, fSaved] = saved as [Tensor4D, Tensor4D];
            return [convInputGrad(tf, dy as Tensor4D, fSaved, xSaved.shape, stride), convFilterGrad(tf, xSaved, dy as Tensor4D, fSaved.shape, stride)];
          },
        };
      }) as unknown as (x: Tensor4D, filter: Tensor4D) => Tensor4D;
      custom.set(key, f);
    }
    return f(x, filter);
  };
}

/**
 * dL/dx of a 'valid' convolution y = conv(x, W, stride), W in HWIO, as a forward convolution:
 * dy dilated by the stride and zero-padded by K − 1 (plus the rows and columns of x that no
 * window reached), convolved with W turned 180° and its channels swapped. wasm's own
 * Conv2DBackpropInput is a plain loop, about 10× slower than its (XNNPACK) convolution.
 */
export function convInputGrad(tf: Tf, dy: Tensor4D, filter: Tensor4D, xShape: readonly number[], stride: Pair): Tensor4D {
  const [kh, kw] = filter.shape;
  const [n, h, w] = xShape;
  const [, oh, ow, o] = dy.shape;
  return tf.tidy(() => {
    let d: Tensor4D = dy;
    if (stride[0] > 1 || stride[1] > 1) {
      // Interleave zeros: [n, oh, 1, ow, 1, o] padded to [n, oh, s, ow, s, o], then cut the tail.
      const spread = tf.pad(tf.reshape(dy, [n, oh, 1, ow, 1, o]), [[0, 0], [0, 0], [0, stride[0] - 1], [0, 0], [0, stride[1] - 1], [0, 0]]);
      d = tf.slice(tf.reshape(spread, [n, oh * stride[0], ow * stride[1], o]) as Tensor4D, [0, 0, 0, 0], [n, (oh - 1) * stride[0] + 1, (ow - 1) * stride[1] + 1, o]);
    }
    const extraH = h - ((oh - 1) * stride[0] + kh);
    const extraW = w - ((ow - 1) * stride[1] + kw);
    const padded = tf.pad(d, [[0, 0], [kh - 1, kh - 1 + extraH], [kw - 1, kw - 1 + extraW], [0, 0]]);
    const turned = tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]) as Tensor4D;
    return tf.conv2d(padded, turned, 1, 'valid');
  });
}

/**
 * dL/dW of a 'valid' convolution y = conv(x, W, stride), W in HWIO, as a convolution itself:
 * dW[kh, kw, c, o] = Σ_{n,i,j} x[n, i·s + kh, j·s + kw, c] · dy[n, i, j, o], which is x with
 * batch and channels swapped ([C, H, W, N]) convolved with dy as a filter ([OH, OW, N, O])
 * dilated by the stride, read at the first KH × KW positions.
 */
export function convFilterGrad(tf: Tf, x: Tensor4D, dy: Tensor4D, filterShape: readonly number[], stride: Pair): Tensor4D {
  const [kh, kw, c, o] = filterShape;
  return tf.tidy(() => {
    const xT = tf.transpose(x, [3, 1, 2, 0]) as Tensor4D;
    const dyT = tf.transpose(dy, [1, 2, 0, 3]) as Tensor4D;
    const full = tf.conv2d(xT, dyT, 1, 'valid', 'NHWC', [stride[0], stride[1]]);
    const g = full.shape[1] === kh && full.shape[2] === kw ? full : tf.slice(full, [0, 0, 0, 0], [c, kh, kw, o]);
    return tf.transpose(g, [1, 2, 0, 3]) as Tensor4D;
  });
}

