/**
 * Writes an ONNX model for a planned LayerGraph: NHWC float32 images in, one flattened code
 * tensor per cut out. The graph computes in NCHW (what ONNX Runtime's CPU kernels are fast
 * at) and transposes back, so the codes come out in the same H, W, C order as Keras.
 */
import { codeShape, spatialPool, type Cut } from '../backbones/cut.ts';
import type { GraphPlan, PlannedNode, PoolPads } from '../backbones/graph-plan.ts';
import { biasName, weightName, type Activation, type Pads } from '../backbones/layer-graph.ts';
import type { WeightMap } from '../backbones/weights.ts';
import { winogradConv, winogradEligible, winogradPays, type WinogradOptions } from './onnx-winograd.ts';
import { product } from '../util/numbers.ts';
import type { onnx as proto } from 'onnx-proto';
import { attr, encodeProto, modelProto, OnnxGraph, valueInfo } from '../util/onnx-graph.ts';

export const ONNX_INPUT = 'images';
export const onnxOutputName = (i: number): string => `code${i}`;

export interface OnnxModelSpec {
  readonly plan: GraphPlan;
  readonly cuts: readonly Cut[];
  readonly weights: WeightMap;
  /**
   * 'winograd' computes the 3×3 stride-1 convs wide enough for it to pay as Winograd
   * F(4×4, 3×3) (onnx-winograd.ts): faster on CPUs, within a few 1e-6 (relative) of 'direct',
   * the default.
   */
  readonly convAlgorithm?: ConvAlgorithm;
  readonly winograd?: WinogradOptions;
  /** Graph output names, one per cut; default code0, code1, … (what the engine reads). */
  readonly outputNames?: readonly string[];
}

export type ConvAlgorithm = 'direct' | 'winograd';

interface Value {
  readonly name: string;
  /** A 4-D feature map rather than a vector. */
  readonly spatial: boolean;
  /** Channel-major [C, N, H, W] rather than NCHW. */
  readonly cnhw?: boolean;
}

export function buildOnnxModel(spec: OnnxModelSpec): Uint8Array {
  return encodeProto(buildOnnxProto(spec));
}

export function buildOnnxProto({ plan, cuts, weights, convAlgorithm = 'direct', winograd = {}, outputNames }: OnnxModelSpec): proto.IModelProto {
  const g = new OnnxGraph();
  // Which ONNX value holds each plan node's output, and whether it is still a 4-D map: NCHW, or
  // channel-major CNHW as Winograd convs leave it, which the next one reads without a transpose.
  const values = new Map<string, Value>();
  /** The value of a node in NCHW, transposing a CNHW map (once). */
  const nchw = (node: string): Value => {
    const v = values.get(node)!;
    if (!v.cnhw) return v;
    const t = { name: g.op('Transpose', [v.name], g.fresh(`${node}_nchw`), [attr.ints('perm', [1, 0, 2, 3])]), spatial: true };
    values.set(node, t);
    return t;
  };

  for (const step of plan.steps) {
    const node = step.node;
    const winogradStep =
      node.op === 'conv2d' &&
      (node.groups ?? 1) === 1 &&
      convAlgorithm === 'winograd' &&
      winogradEligible(node.kernel, node.stride, node.dilation) &&
      (winograd.everywhere || winogradPays(step.inShape[2]!, node.filters));
    // Element-wise ops, pooling, padding and cropping treat C and N alike, so they take either layout.
    const anyLayout =
      winogradStep || ['relu', 'maxpool', 'avgpool', 'zeropad', 'dropout', 'crop'].includes(node.op) || (node.op === 'activation' && node.fn !== 'softmax');
    const input = node.op === 'input' ? undefined : anyLayout ? values.get(node.inputs[0]) : node.op === 'merge' ? undefined : nchw(node.inputs[0]);
    const cnhw = input?.cnhw;
    const x = input?.name ?? '';
    switch (node.op) {
      case 'input':
        values.set(node.name, { name: g.op('Transpose', [ONNX_INPUT], g.fresh(node.name), [attr.ints('perm', [0, 3, 1, 2])]), spatial: true });
        break;
      case 'conv2d': {
        const pads = (step as Extract<PlannedNode, { node: { op: 'conv2d' } }>).pads;
        const weight = weights.get(weightName(node))!;
        const bias = weights.get(biasName(node))!;
        if (winogradStep) {
          const spec = { x, cnhw: !!cnhw, name: node.name, inShape: step.inShape, outShape: step.outShape, pads, weight, bias };
          const conv = winogradConv(g, spec, winograd.tile);
          // Softmax is across channels, so it needs the NCHW layout back.
          const out = node.activation === 'softmax' ? g.op('Transpose', [conv], g.fresh(node.name), [attr.ints('perm', [1, 0, 2, 3])]) : conv;
          values.set(node.name, { name: activate(g, out, node.activation, node.name), spatial: true, cnhw: node.activation !== 'softmax' });
          break;
        }
        const conv = g.op(
          'Conv',
          [x, g.floats(weightName(node), weight), g.floats(biasName(node), bias)],
          node.activation === 'linear' ? node.name : g.fresh(node.name),
          [attr.ints('kernel_shape', node.kernel), attr.ints('strides', node.stride), attr.ints('dilations', node.dilation), attr.ints('pads', pads), attr.int('group', node.groups ?? 1)],
        );
        values.set(node.name, { name: activate(g, conv, node.activation, node.name), spatial: true });
        break;
      }
      case 'separable_conv2d': {
        const pads = (step as Extract<PlannedNode, { node: { op: 'separable_conv2d' } }>).pads;
        const channels = step.inShape[2]!;
        const depthwise = g.op('Conv', [x, g.floats(`${node.name}.depthwise`, weights.get(`${node.name}.depthwise`)!)], g.fresh(`${node.name}_depthwise`), [
          attr.ints('kernel_shape', node.kernel),
          attr.ints('strides', node.stride),
          attr.ints('dilations', node.dilation),
          attr.ints('pads', pads),
          attr.int('group', channels),
        ]);
        const conv = g.op(
          'Conv',
          [depthwise, g.floats(`${node.name}.pointwise`, weights.get(`${node.name}.pointwise`)!), g.floats(`${node.name}.bias`, weights.get(`${node.name}.bias`)!)],
          node.activation === 'linear' ? node.name : g.fresh(node.name),
          [attr.ints('kernel_shape', [1, 1])],
        );
        values.set(node.name, { name: activate(g, conv, node.activation, node.name), spatial: true });
        break;
      }
      case 'batchnorm': {
        const param = (p: string) => g.floats(`${node.name}.${p}`, weights.get(`${node.name}.${p}`)!);
        const out = g.op('BatchNormalization', [x, param('gamma'), param('beta'), param('mean'), param('variance')], node.name, [attr.float('epsilon', node.epsilon)]);
        values.set(node.name, { name: out, spatial: input!.spatial });
        break;
      }
      case 'normalize': {
        const mean = weights.get(`${node.name}.mean`)!.data;
        const std = Array.from(weights.get(`${node.name}.variance`)!.data, (v) => Math.max(Math.sqrt(v), 1e-7));
        const dims = channelDims(input!.spatial, mean.length);
        const centred = g.op('Sub', [x, g.constant(`${node.name}_mean`, [...mean], dims)], g.fresh(node.name));
        values.set(node.name, { name: g.op('Div', [centred, g.constant(`${node.name}_std`, std, dims)], node.name), spatial: input!.spatial });
        break;
      }
      case 'rescale': {
        const perChannel = (v: number | readonly number[]) => (typeof v === 'number' ? { values: [v], dims: [] as number[] } : { values: [...v], dims: channelDims(input!.spatial, v.length) });
        const scale = perChannel(node.scale);
        const offset = perChannel(node.offset);
        const scaled = g.op('Mul', [x, g.constant(`${node.name}_scale`, scale.values, scale.dims)], g.fresh(node.name));
        values.set(node.name, { name: g.op('Add', [scaled, g.constant(`${node.name}_offset`, offset.values, offset.dims)], node.name), spatial: input!.spatial });
        break;
      }
      case 'activation':
        values.set(node.name, { name: activate(g, x, node.fn, node.name, node.alpha), spatial: input!.spatial, cnhw });
        break;
      case 'merge': {
        // Inputs in one layout stay in it (ONNX broadcasts a 1×1 map either way); mixed ones meet in NCHW.
        const all = node.inputs.map((i) => values.get(i)!);
        const shared = all.every((v) => !!v.cnhw === !!all[0].cnhw);
        const xs = shared ? all : node.inputs.map((i) => nchw(i));
        const op = { add: 'Sum', multiply: 'Mul', subtract: 'Sub', average: 'Mean', maximum: 'Max', minimum: 'Min' }[node.mode];
        const names = xs.map((v) => v.name);
        // Mul is binary in ONNX; the others take any number of inputs (Sub exactly two).
        const out = op === 'Mul' ? names.slice(1).reduce((a, b, i) => g.op('Mul', [a, b], i === names.length - 2 ? node.name : g.fresh(node.name)), names[0]) : g.op(op, names, node.name);
        values.set(node.name, { name: out, spatial: xs[0].spatial, cnhw: xs[0].cnhw });
        break;
      }
      case 'reshape': {
        const nhwc = input!.spatial ? g.op('Transpose', [x], g.fresh(node.name), [attr.ints('perm', [0, 2, 3, 1])]) : x;
        const shaped = g.op('Reshape', [nhwc, g.int64s([0, ...step.outShape])], step.outShape.length === 3 ? g.fresh(node.name) : node.name);
        const spatial = step.outShape.length === 3;
        values.set(node.name, { name: spatial ? g.op('Transpose', [shaped], node.name, [attr.ints('perm', [0, 3, 1, 2])]) : shaped, spatial });
        break;
      }
      case 'crop': {
        const [t, l] = node.crop;
        const [h, w] = step.outShape;
        const out = g.op('Slice', [x, g.int64s([t, l]), g.int64s([t + h, l + w!]), g.int64s([2, 3])], node.name);
        values.set(node.name, { name: out, spatial: true, cnhw });
        break;
      }
      case 'maxpool':
      case 'avgpool': {
        const pads = (step as Extract<PlannedNode, { node: { op: 'maxpool' | 'avgpool' } }>).pads;
        values.set(node.name, { name: pool(g, x, node.name, node.op, node.kernel, node.stride, pads), spatial: true, cnhw });
        break;
      }
      case 'relu':
        values.set(node.name, { name: relu(g, x, node), spatial: input!.spatial, cnhw });
        break;
      case 'lrn':
        values.set(node.name, {
          // ONNX's LRN divides alpha by size exactly as Caffe does.
          name: g.op('LRN', [x], node.name, [attr.int('size', node.size), attr.float('alpha', node.alpha), attr.float('beta', node.beta), attr.float('bias', node.k)]),
          spatial: true,
        });
        break;
      case 'concat':
        values.set(node.name, { name: g.op('Concat', node.inputs.map((i) => nchw(i).name), node.name, [attr.int('axis', 1)]), spatial: true });
        break;
      case 'flatten': {
        const ordered = node.order === 'hwc' && input!.spatial ? g.op('Transpose', [x], g.fresh(node.name), [attr.ints('perm', [0, 2, 3, 1])]) : x;
        values.set(node.name, { name: g.op('Flatten', [ordered], node.name, [attr.int('axis', 1)]), spatial: false });
        break;
      }
      case 'dense': {
        const gemm = g.op(
          'Gemm',
          [x, g.floats(weightName(node), weights.get(weightName(node))!), g.floats(biasName(node), weights.get(biasName(node))!)],
          node.activation === 'linear' ? node.name : g.fresh(node.name),
          [attr.int('transB', 1)],
        );
        values.set(node.name, { name: activate(g, gemm, node.activation, node.name), spatial: false });
        break;
      }
      case 'globalpool':
        values.set(node.name, node.keepdims ? { name: g.op(node.mode === 'avg' ? 'GlobalAveragePool' : 'GlobalMaxPool', [x], node.name), spatial: true } : { name: globalPool(g, x, node.mode, node.name), spatial: false });
        break;
      case 'dropout':
        values.set(node.name, input!);
        break;
      case 'softmax':
        values.set(node.name, { name: g.op('Softmax', [x], node.name, [attr.int('axis', 1)]), spatial: input!.spatial });
        break;
      case 'zeropad':
        values.set(node.name, { name: padZeros(g, x, node.pad, node.name), spatial: true, cnhw });
        break;
    }
  }

  const outputs = cuts.map((cut, i) => {
    const source = nchw(plan.outputs[i]);
    const out = outputNames?.[i] ?? onnxOutputName(i);
    if (cut.pool) {
      if (!source.spatial) throw new Error(`cannot pool the vector '${cut.layer}'`);
      g.op('Identity', [globalPool(g, source.name, spatialPool(cut.pool, cut.layer), g.fresh(out))], out);
    } else if (source.spatial) {
      const nhwc = g.op('Transpose', [source.name], g.fresh(out), [attr.ints('perm', [0, 2, 3, 1])]);
      g.op('Flatten', [nhwc], out, [attr.int('axis', 1)]);
    } else {
      g.op('Identity', [source.name], out);
    }
    const size = product(codeShape(plan, cut));
    return valueInfo(out, ['batch', size]);
  });

  const [h, w] = plan.inputSize;
  return modelProto(g, plan.graph.name, [valueInfo(ONNX_INPUT, ['batch', h, w, plan.inputChannels])], outputs);
}


/** `x` through an activation, the result named `name` (`x` itself for 'linear'). */
function activate(g: OnnxGraph, x: string, activation: Activation, name: string, alpha = 1): string {
  const scalar = (v: number) => g.constant(name, [v], []);
  switch (activation) {
    case 'linear':
      return x;
    case 'relu':
      return g.op('Relu', [x], name);
    case 'relu6':
      return g.op('Clip', [x, scalar(0), scalar(6)], name);
    case 'softmax':
      return g.op('Softmax', [x], name, [attr.int('axis', 1)]);
    case 'sigmoid':
      return g.op('Sigmoid', [x], name);
    case 'tanh':
      return g.op('Tanh', [x], name);
    case 'swish':
      return g.op('Mul', [x, g.op('Sigmoid', [x], g.fresh(name))], name);
    case 'hard_sigmoid':
      return g.op('HardSigmoid', [x], name, [attr.float('alpha', 0.2), attr.float('beta', 0.5)]);
    case 'hard_swish':
      // ONNX's HardSwish is x · max(0, min(1, x/6 + 1/2)) = x · relu6(x + 3) / 6.
      return g.op('HardSwish', [x], name);
    case 'gelu': {
      const erf = g.op('Erf', [g.op('Mul', [x, scalar(Math.SQRT1_2)], g.fresh(name))], g.fresh(name));
      return g.op('Mul', [g.op('Mul', [x, scalar(0.5)], g.fresh(name)), g.op('Add', [erf, scalar(1)], g.fresh(name))], name);
    }
    case 'elu':
      return g.op('Elu', [x], name, [attr.float('alpha', alpha)]);
    case 'selu':
      return g.op('Selu', [x], name);
    case 'softplus':
      return g.op('Softplus', [x], name);
  }
}

/** Keras' ReLU with max_value, threshold and negative_slope (see ReluNode). */
function relu(g: OnnxGraph, x: string, node: Extract<PlannedNode['node'], { op: 'relu' }>): string {
  const { maxValue, threshold = 0, negativeSlope = 0 } = node;
  const scalar = (v: number) => g.constant(node.name, [v], []);
  const capped = (y: string) => (maxValue === undefined ? y : g.op('Min', [y, scalar(maxValue)], node.name));
  const inner = maxValue === undefined ? node.name : g.fresh(node.name);
  if (threshold === 0 && negativeSlope === 0) return maxValue === undefined ? g.op('Relu', [x], node.name) : g.op('Clip', [x, scalar(0), scalar(maxValue)], node.name);
  if (threshold === 0) return capped(g.op('LeakyRelu', [x], inner, [attr.float('alpha', negativeSlope)]));
  const below = g.op('Mul', [g.op('Sub', [x, scalar(threshold)], g.fresh(node.name)), scalar(negativeSlope)], g.fresh(node.name));
  const keep = g.op('GreaterOrEqual', [x, scalar(threshold)], g.fresh(node.name));
  return capped(g.op('Where', [keep, x, below], inner));
}

/** Per-channel constants broadcast over NCHW maps ([1, C, 1, 1]) or [N, C] vectors ([1, C]). */
function channelDims(spatial: boolean, channels: number): number[] {
  return spatial ? [1, channels, 1, 1] : [1, channels];
}

function globalPool(g: OnnxGraph, x: string, mode: 'avg' | 'max', name: string): string {
  const pooled = g.op(mode === 'avg' ? 'GlobalAveragePool' : 'GlobalMaxPool', [x], g.fresh(name));
  return g.op('Flatten', [pooled], name, [attr.int('axis', 1)]);
}

function padZeros(g: OnnxGraph, x: string, [t, l, b, r]: Pads, name: string): string {
  return g.op('Pad', [x, g.int64s([0, 0, t, l, 0, 0, b, r])], name);
}

function pool(
  g: OnnxGraph,
  x: string,
  name: string,
  op: 'maxpool' | 'avgpool',
  kernel: readonly [number, number],
  stride: readonly [number, number],
  { counted, uncounted }: PoolPads,
): string {
  const attrs = [attr.ints('kernel_shape', kernel), attr.ints('strides', stride)];
  if (op === 'maxpool') {
    // MaxPool ignores padding, so counted and uncounted pads are the same thing to it.
    return g.op('MaxPool', [x], name, [...attrs, attr.ints('pads', counted.map((p, i) => p + uncounted[i]))]);
  }
  // Caffe counts its zero padding in the divisor but not the ceil-mode overhang: pad the
  // counted part with real zeros, and let AveragePool exclude the rest.
  const padded = counted.some((p) => p > 0) ? padZeros(g, x, counted, g.fresh(name)) : x;
  return g.op('AveragePool', [padded], name, [...attrs, attr.ints('pads', uncounted), attr.int('count_include_pad', 0)]);
}
