/**
 * The TF.js engine: translates a GraphPlan into TF.js ops, one node at a time, in NHWC.
 * The plan has already resolved every pad, so this file only maps geometry onto ops; it
 * never decides what 'same' or ceil mode mean.
 */
import type { Tensor, Tensor2D, Tensor4D } from '@tensorflow/tfjs';
import { codeShape, planCuts, type Cut } from '../backbones/cut.ts';
import { shapeSize, type GraphPlan, type PlannedNode, type PoolPads } from '../backbones/graph-plan.ts';
import { biasName, groupsOf, weightName, type Activation, type Pair } from '../backbones/layer-graph.ts';
import { checkWeights, type WeightMap } from '../backbones/weights.ts';
import { foldPlan } from '../backbones/fold-batchnorm.ts';
import type { CodeSpec, FeatureEngine, GraphEngineOptions } from './engine.ts';
import { tfBackend, type Tf } from './tfjs-backend.ts';
import { addPads, pair, spatialPadding, spatialSize } from './tfjs-layout.ts';
import { activate, batchNormCoefficients, plainOp } from './tfjs-ops.ts';

export async function createTfjsEngine(opts: GraphEngineOptions): Promise<FeatureEngine> {
  const inputSize = opts.inputSize ?? opts.backbone.preprocessing.size;
  // Plan and check before touching TF.js, so a bad cut or weight file fails fast and clearly.
  const plan = planCuts(opts.backbone.graph, inputSize, opts.cuts);
  checkWeights(plan, opts.backbone.weights);
  const outputs: CodeSpec[] = opts.cuts.map((cut) => {
    const shape = codeShape(plan, cut);
    return { cut, shape, size: shapeSize(shape) };
  });
  const { tf, provider, notes } = await tfBackend(opts.device);
  const folded = foldPlan(plan, opts.backbone.weights);
  const program = compile(tf, folded.plan, opts.cuts, folded.weights);
  const floatsPerImage = inputSize[0] * inputSize[1] * plan.inputChannels;
  let disposed = false;

  return {
    name: 'tfjs',
    provider,
    inputSize,
    outputs,
    notes,
    async run(images, count) {
      if (disposed) throw new Error('tfjs engine: run() after dispose()');
      // A longer buffer is fine: callers reuse one sized for a full batch for the short last one.
      if (!Number.isInteger(count) || count < 0 || images.length < count * floatsPerImage) {
        throw new Error(
          `tfjs engine: ${count} images of ${inputSize.join('×')}×${plan.inputChannels} need ` +
            `${count * floatsPerImage} floats, got ${images.length}`,
        );
      }
      if (count === 0) return outputs.map(() => new Float32Array(0));
      const codes = program.execute(images.subarray(0, count * floatsPerImage), count);
      try {
        return await Promise.all(
          codes.map(async (code) => {
            const data = await code.data();
            // The cpu backend hands back its own storage, which for a cut at the input node
            // is the caller's reusable batch buffer: copy rather than alias it.
            return data instanceof Float32Array && data.buffer !== images.buffer ? data : Float32Array.from(data);
          }),
        );
      } finally {
        tf.dispose(codes);
      }
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      program.dispose();
    },
  };
}

/** A node's computation with its weights bound; runs inside a tf.tidy. */
type Kernel = (inputs: readonly Tensor[]) => Tensor;

interface Program {
  /** One [count, size] tensor per cut, in cut order; the caller disposes them. */
  execute(images: Float32Array, count: number): Tensor[];
  dispose(): void;
}

/** Uploads the weights once and binds a kernel to every planned node. */
function compile(tf: Tf, plan: GraphPlan, cuts: readonly Cut[], weights: WeightMap): Program {
  const owned: Tensor[] = [];
  const keep = <T extends Tensor>(t: T): T => {
    owned.push(t);
    return t;
  };
  let kernels: (Kernel | undefined)[];
  try {
    kernels = plan.steps.map((step) => (step.node.op === 'input' ? undefined : buildKernel(tf, step, weights, keep)));
  } catch (error) {
    tf.dispose(owned);
    throw error;
  }

  // Free each activation right after its last reader: holding every layer of a batch until
  // the end would need gigabytes for VGG-sized maps, more than wasm's 4 GB heap.
  const lastReader = new Map<string, number>();
  plan.steps.forEach((step, i) => {
    lastReader.set(step.node.name, i);
    for (const input of step.node.inputs) lastReader.set(input, i);
  });
  const releaseAfter = plan.steps.map(() => [] as string[]);
  for (const [name, i] of lastReader) releaseAfter[i].push(name);

  const cutsAt = new Map<string, { index: number; cut: Cut }[]>();
  plan.outputs.forEach((name, index) => {
    cutsAt.set(name, [...(cutsAt.get(name) ?? []), { index, cut: cuts[index] }]);
  });

  const [height, width] = plan.inputSize;
  return {
    execute(images, count) {
      // The outer tidy is the safety net (it frees everything but the codes, even when an op
      // throws); the inner ones free each kernel's temporaries as soon as it returns.
      return tf.tidy(() => {
        const values = new Map<string, Tensor>();
        const codes: Tensor[] = [];
        plan.steps.forEach((step, i) => {
          const kernel = kernels[i];
          const out = kernel
            ? tf.tidy(() => kernel(step.node.inputs.map((name) => values.get(name)!)))
            : tf.tensor4d(images, [count, height, width, plan.inputChannels]);
          values.set(step.node.name, out);
          for (const { index, cut } of cutsAt.get(step.node.name) ?? []) {
            codes[index] = tf.tidy(() => codeOf(tf, out, cut, count));
          }
          for (const name of releaseAfter[i]) {
            values.get(name)!.dispose();
            values.delete(name);
          }
        });
        return codes;
      });
    },
    dispose() {
      tf.dispose(owned);
      owned.length = 0;
    },
  };
}

/** A cut's code: the node's output, globally pooled on request, as [count, size] in H, W, C order. */
function codeOf(tf: Tf, out: Tensor, cut: Cut, count: number): Tensor {
  if (cut.pool === 'avg') return tf.mean(out, [1, 2]);
  if (cut.pool === 'max') return tf.max(out, [1, 2]);
  return tf.reshape(out, [count, -1]);
}

type ConvStep = Extract<PlannedNode, { readonly node: { readonly op: 'conv2d' } }>;
type PoolStep = Extract<PlannedNode, { readonly node: { readonly op: 'maxpool' | 'avgpool' } }>;
type SeparableStep = Extract<PlannedNode, { readonly node: { readonly op: 'separable_conv2d' } }>;
type Keep = <T extends Tensor>(t: T) => T;

const isConv = (step: PlannedNode): step is ConvStep => step.node.op === 'conv2d';
const isPool = (step: PlannedNode): step is PoolStep => step.node.op === 'maxpool' || step.node.op === 'avgpool';

function buildKernel(tf: Tf, step: PlannedNode, weights: WeightMap, keep: Keep): Kernel {
  if (isConv(step)) return convKernel(tf, step, weights, keep);
  if (isPool(step)) return step.node.op === 'maxpool' ? maxPoolKernel(tf, step) : avgPoolKernel(tf, step, keep);
  const plain = plainOp(tf, step, true);
  if (plain) return plain;
  const node = step.node;
  const constant = (key: string) => keep(weightTensor(tf, weights, key));
  switch (node.op) {
    case 'separable_conv2d': {
      const { pads } = step as SeparableStep;
      const c = step.inShape[2]!;
      const depthwise = keep(tf.tidy(() => depthwiseFilter(tf, weights, `${node.name}.depthwise`, c, node.multiplier, node.kernel)));
      const pointwise = keep(tf.tidy(() => tf.transpose(weightTensor(tf, weights, `${node.name}.pointwise`), [2, 3, 1, 0]) as Tensor4D));
      const bias = constant(`${node.name}.bias`);
      const padded = pads.some((p) => p > 0);
      return ([x]) => {
        const input = padded ? tf.pad(map4d(x), spatialPadding(pads)) : map4d(x);
        const mid = tf.depthwiseConv2d(input, depthwise, pair(node.stride), 'valid', 'NHWC', pair(node.dilation));
        return withActivation(tf, node.activation, (activation) => tf.fused.conv2d({ x: mid, filter: pointwise, bias, strides: 1, pad: 'valid', activation }));
      };
    }
    case 'batchnorm': {
      const [gamma, beta, mean, variance] = ['gamma', 'beta', 'mean', 'variance'].map((p) => weights.get(`${node.name}.${p}`)!.data);
      const { scale, shift } = batchNormCoefficients(gamma, beta, mean, variance, node.epsilon);
      const [a, b] = [keep(tf.tensor1d(scale)), keep(tf.tensor1d(shift))];
      return ([x]) => tf.add(tf.mul(x, a), b);
    }
    case 'normalize': {
      const mean = constant(`${node.name}.mean`);
      const std = keep(tf.tidy(() => tf.maximum(tf.sqrt(weightTensor(tf, weights, `${node.name}.variance`)), 1e-7)));
      return ([x]) => tf.div(tf.sub(x, mean), std);
    }
    case 'lrn': {
      if (node.size % 2 !== 1) throw new Error(`${node.name}: LRN needs an odd size (as in Caffe), got ${node.size}`);
      // TF's LRN sums over depthRadius on each side and does not divide alpha by the window;
      // Caffe does. Every TF.js backend (cpu, wasm, tensorflow) registers this kernel.
      const depthRadius = (node.size - 1) / 2;
      const alpha = node.alpha / node.size;
      return ([x]) => tf.localResponseNormalization(map4d(x), depthRadius, node.k, alpha, node.beta);
    }
    case 'dense': {
      // [out, in] → [in, out]. XNNPACK packs a plain right-hand operand once and caches it;
      // with transposeB it repacks on every call, 12× slower for VGG16's fc6 on wasm.
      const kernel = keep(tf.tidy(() => tf.transpose(weightTensor(tf, weights, weightName(node))) as Tensor2D));
      const bias = keep(weightTensor(tf, weights, biasName(node)));
      return ([x]) =>
        withActivation(tf, node.activation, (activation) =>
          tf.fused.matMul({ a: map2d(x), b: kernel, bias, activation }),
        );
    }
    default:
      throw new Error(`tfjs engine: no kernel for ${node.op} node '${node.name}'`);
  }
}

/** Canonical [C·m, 1, kh, kw] → TF's depthwise filter [kh, kw, C, m]. */
export function depthwiseFilter(tf: Tf, weights: WeightMap, key: string, channels: number, multiplier: number, [kh, kw]: Pair): Tensor4D {
  return tf.transpose(tf.reshape(weightTensor(tf, weights, key), [channels, multiplier, kh, kw]), [2, 3, 0, 1]) as Tensor4D;
}

function convKernel(tf: Tf, { node, pads, inShape }: ConvStep, weights: WeightMap, keep: Keep): Kernel {
  if (Math.max(...node.stride) > 1 && Math.max(...node.dilation) > 1) {
    throw new Error(`${node.name}: TF.js cannot combine stride ${node.stride.join('×')} with dilation ${node.dilation.join('×')}`);
  }
  const groups = groupsOf(node);
  const channels = inShape[2]!;
  const bias = keep(weightTensor(tf, weights, biasName(node)));
  const pad = spatialPadding(pads);
  const strides = pair(node.stride);
  const dilations = pair(node.dilation);
  if (groups > 1 && groups === channels) {
    const filter = keep(tf.tidy(() => depthwiseFilter(tf, weights, weightName(node), channels, node.filters / channels, node.kernel)));
    // TF.js' depthwise convolution takes no explicit padding: pad with zeros first.
    const padded = pads.some((p) => p > 0);
    return ([x]) =>
      withActivation(tf, node.activation, (activation) =>
        tf.fused.depthwiseConv2d({ x: padded ? tf.pad(map4d(x), pad) : map4d(x), filter, bias, strides, pad: 'valid', dilations, activation }),
      );
  }
  // OIHW → HWIO, the only filter layout TF.js takes; a grouped conv is one conv per group.
  const filters = tf.tidy(() => {
    const all = tf.transpose(weightTensor(tf, weights, weightName(node)), [2, 3, 1, 0]) as Tensor4D;
    return groups === 1 ? [all] : tf.split(all, groups, 3);
  }).map((f) => keep(f as Tensor4D));
  if (groups === 1) {
    return ([x]) =>
      withActivation(tf, node.activation, (activation) =>
        tf.fused.conv2d({ x: map4d(x), filter: filters[0], bias, strides, pad, dilations, activation }),
      );
  }
  return ([x]) => {
    const parts = tf.split(map4d(x), groups, 3) as Tensor4D[];
    const out = tf.concat(parts.map((part, g) => tf.conv2d(part, filters[g], strides, pad, 'NHWC', dilations)), 3);
    return activate(tf, tf.add(out, bias), node.activation);
  };
}

function maxPoolKernel(tf: Tf, { node, pads }: PoolStep): Kernel {
  const total = addPads(pads.counted, pads.uncounted);
  const padding = spatialPadding(total);
  const padded = total.some((p) => p > 0);
  const [kernel, stride] = [pair(node.kernel), pair(node.stride)];
  // Max pooling ignores padding of either kind, which is exactly what -Infinity does.
  return ([x]) => tf.maxPool(padded ? tf.pad(map4d(x), padding, -Infinity) : map4d(x), kernel, stride, 'valid');
}

function avgPoolKernel(tf: Tf, step: PoolStep, keep: Keep): Kernel {
  const { node, pads } = step;
  const total = addPads(pads.counted, pads.uncounted);
  const padding = spatialPadding(total);
  const padded = total.some((p) => p > 0);
  const [kernel, stride] = [pair(node.kernel), pair(node.stride)];
  // A 'valid' pool over zero padding divides every window by the kernel area; windows that
  // reach into uncounted padding are rescaled to divide by their counted cells only.
  const out = spatialSize(step.outShape);
  const correction = pads.uncounted.some((p) => p > 0)
    ? keep(tf.tensor4d(avgPoolCorrection(spatialSize(step.inShape), kernel, stride, pads, out), [1, ...out, 1]))
    : undefined;
  return ([x]) => {
    const mean = tf.avgPool(padded ? tf.pad(map4d(x), padding) : map4d(x), kernel, stride, 'valid');
    return correction ? tf.mul(mean, correction) : mean;
  };
}

/**
 * Per output cell, kernel area ÷ the cells of its window that count: those inside the input
 * or its counted padding. Uncounted padding lies outside the counted padding on each side.
 * Multiplying a zero-padded 'valid' average by this gives Caffe's divisor (window clipped at
 * H + pad) and TF 'same''s (valid cells only). A window with no counted cell averages to 0.
 */
export function avgPoolCorrection(inSize: Pair, kernel: Pair, stride: Pair, pads: PoolPads, outSize: Pair): Float32Array {
  const counted = (axis: 0 | 1): number[] => {
    const lo = pads.uncounted[axis];
    const hi = lo + pads.counted[axis] + inSize[axis] + pads.counted[axis + 2];
    return Array.from({ length: outSize[axis] }, (_, i) => {
      const start = i * stride[axis];
      return Math.max(0, Math.min(start + kernel[axis], hi) - Math.max(start, lo));
    });
  };
  const rows = counted(0);
  const cols = counted(1);
  const area = kernel[0] * kernel[1];
  const out = new Float32Array(outSize[0] * outSize[1]);
  rows.forEach((r, i) => cols.forEach((c, j) => (out[i * outSize[1] + j] = r * c > 0 ? area / (r * c) : 0)));
  return out;
}

/** Runs a fusable op with the node's activation: fused where TF.js fuses it, else after the op. */
function withActivation(tf: Tf, activation: Activation, op: (fused: 'linear' | 'relu' | 'relu6') => Tensor): Tensor {
  if (activation === 'linear' || activation === 'relu' || activation === 'relu6') return op(activation);
  return activate(tf, op('linear'), activation);
}

function weightTensor(tf: Tf, weights: WeightMap, key: string): Tensor {
  const w = weights.get(key);
  if (!w) throw new Error(`no weight tensor '${key}'`); // checkWeights has ruled this out
  return tf.tensor(w.data, [...w.shape], 'float32');
}


// The plan guarantees which ranks reach which ops; these state it to the type checker.
function map4d(t: Tensor): Tensor4D {
  if (t.rank !== 4) throw new Error(`expected a batch of feature maps, got a tensor of shape [${t.shape}]`);
  return t as Tensor4D;
}

function map2d(t: Tensor): Tensor2D {
  if (t.rank !== 2) throw new Error(`expected a batch of vectors, got a tensor of shape [${t.shape}]`);
  return t as Tensor2D;
}
