/**
 * The engine-neutral description of a CNN: a list of named nodes in topological order.
 *
 * One LayerGraph drives every engine (ONNX, TF.js), so a backbone is described once.
 * Conventions every engine follows:
 * - Activations are logically NHWC, the layout images arrive in; engines may compute in
 *   any layout but must emit codes in this order.
 * - Weights are canonical: conv kernels OIHW, dense kernels [out, in], as Caffe, PyTorch
 *   and ONNX store them. Loaders convert Keras' HWIO / [in, out] once, on load.
 * - A node's output is post-activation, which is what Keras' layer outputs and Caffe's
 *   in-place ReLU blobs both mean by a layer name.
 */
import { UserError } from '../util/errors.ts';

/**
 * Activations, named as Keras names them. Where Keras versions differ, tfjs-layers (the
 * reference for TF.js models) decides: 'hard_sigmoid' is max(0, min(1, 0.2x + 0.5)), 'gelu' is
 * the exact x·Φ(x); 'hard_swish' is x·relu6(x + 3)/6 (MobileNetV3's). 'softmax' is over channels.
 */
export const ACTIVATIONS = ['linear', 'relu', 'softmax', 'relu6', 'sigmoid', 'hard_sigmoid', 'tanh', 'swish', 'hard_swish', 'gelu', 'elu', 'selu', 'softplus'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

/** Explicit zero padding as [top, left, bottom, right]. */
export type Pads = readonly [number, number, number, number];

/** Keras' 'same' / 'valid' depend on the input size, so they are resolved when a graph is planned. */
export type Padding = 'same' | 'valid' | Pads;

export type Pair = readonly [number, number];

interface NodeBase {
  readonly name: string;
  readonly inputs: readonly string[];
}

export type InputNode = NodeBase & { readonly op: 'input'; readonly channels: number };
/**
 * A convolution. With `groups` g (Caffe's group, Keras' groups) the input channels split into g
 * groups, each convolved with its filters / g filters: the weight is [filters, C / g, kh, kw].
 * Keras' DepthwiseConv2D is groups = C with `depthwise` set, which only changes how Keras files
 * name and lay out its kernel (`depthwise_kernel`, [kh, kw, C, multiplier]).
 */
export type Conv2dNode = NodeBase & {
  readonly op: 'conv2d';
  readonly filters: number;
  readonly kernel: Pair;
  readonly stride: Pair;
  readonly pad: Padding;
  readonly dilation: Pair;
  readonly activation: Activation;
  readonly groups?: number;
  readonly depthwise?: boolean;
  /** false where the Keras layer has no bias (the canonical bias is then zeros). */
  readonly useBias?: boolean;
};
/**
 * Keras' SeparableConv2D: a depthwise convolution (C × multiplier channels, no bias), then a
 * 1×1 convolution to `filters` with the bias. Weights `.depthwise` [C·m, 1, kh, kw],
 * `.pointwise` [filters, C·m, 1, 1], `.bias`.
 */
export type SeparableConv2dNode = NodeBase & {
  readonly op: 'separable_conv2d';
  readonly filters: number;
  readonly multiplier: number;
  readonly kernel: Pair;
  readonly stride: Pair;
  readonly pad: Padding;
  readonly dilation: Pair;
  readonly activation: Activation;
  readonly useBias?: boolean;
};
/**
 * Keras' ReLU layer: max_value when x ≥ max_value, x when threshold ≤ x < max_value, else
 * negative_slope · (x − threshold). Without options it is the plain ReLU; LeakyReLU is
 * negativeSlope = alpha.
 */
export type ReluNode = NodeBase & { readonly op: 'relu'; readonly maxValue?: number; readonly threshold?: number; readonly negativeSlope?: number };
/** An element-wise activation; `alpha` is ELU's (default 1). */
export type ActivationNode = NodeBase & { readonly op: 'activation'; readonly fn: Activation; readonly alpha?: number };
/** Inference-time batch normalisation over channels: (x − mean) / sqrt(variance + epsilon) · gamma + beta. */
export type BatchNormNode = NodeBase & {
  readonly op: 'batchnorm';
  readonly epsilon: number;
  /** false where the Keras layer has no gamma (scale=False) or beta (center=False): then 1 and 0. */
  readonly scale?: boolean;
  readonly center?: boolean;
};
/** Keras' Normalization layer: (x − mean) / max(sqrt(variance), 1e-7), per channel, from `.mean` and `.variance`. */
export type NormalizeNode = NodeBase & { readonly op: 'normalize' };
/** Keras' Rescaling: x · scale + offset, each a number or one per channel. */
export type RescaleNode = NodeBase & { readonly op: 'rescale'; readonly scale: number | readonly number[]; readonly offset: number | readonly number[] };
/**
 * Element-wise merges of two or more inputs of one shape, or broadcast over H and W where an
 * input is 1×1 (squeeze-and-excitation's Multiply). 'subtract' takes exactly two.
 */
export type MergeNode = NodeBase & { readonly op: 'merge'; readonly mode: 'add' | 'multiply' | 'subtract' | 'average' | 'maximum' | 'minimum' };
/** Keras' Reshape of H, W, C (row-major) to `shape`, [H, W, C] or [D]; one entry may be -1. */
export type ReshapeNode = NodeBase & { readonly op: 'reshape'; readonly shape: readonly number[] };
/** Keras' Cropping2D: rows and columns cut from each side, [top, left, bottom, right]. */
export type CropNode = NodeBase & { readonly op: 'crop'; readonly crop: Pads };
export type PoolNode = NodeBase & {
  readonly op: 'maxpool' | 'avgpool';
  readonly kernel: Pair;
  readonly stride: Pair;
  readonly pad: Padding;
  /** Caffe's ceil-mode output size (see poolGeometry). Keras pools use floor. */
  readonly ceil: boolean;
};
/** Caffe's ACROSS_CHANNELS LRN: y = x / (k + alpha/size * sum_window x^2)^beta. */
export type LrnNode = NodeBase & {
  readonly op: 'lrn';
  readonly size: number;
  readonly alpha: number;
  readonly beta: number;
  readonly k: number;
};
/** Concatenates along channels, inputs in listed order. */
export type ConcatNode = NodeBase & { readonly op: 'concat' };
/**
 * Flattens H, W, C. The order matters to the dense layer that follows: Keras flattens
 * H, W, C (its fc1 expects that), Caffe flattens C, H, W.
 */
export type FlattenNode = NodeBase & { readonly op: 'flatten'; readonly order: 'hwc' | 'chw' };
export type DenseNode = NodeBase & { readonly op: 'dense'; readonly units: number; readonly activation: Activation; readonly useBias?: boolean };
/** With `keepdims` the output is a 1×1×C map (Keras' keepdims=True), else a vector. */
export type GlobalPoolNode = NodeBase & { readonly op: 'globalpool'; readonly mode: 'avg' | 'max'; readonly keepdims?: boolean };
/** Identity at inference; kept so that graphs keep their original names. */
export type DropoutNode = NodeBase & { readonly op: 'dropout'; readonly rate: number };
export type SoftmaxNode = NodeBase & { readonly op: 'softmax' };
export type ZeroPadNode = NodeBase & { readonly op: 'zeropad'; readonly pad: Pads };

export type LayerNode =
  | InputNode
  | Conv2dNode
  | SeparableConv2dNode
  | ReluNode
  | ActivationNode
  | BatchNormNode
  | NormalizeNode
  | RescaleNode
  | MergeNode
  | ReshapeNode
  | CropNode
  | PoolNode
  | LrnNode
  | ConcatNode
  | FlattenNode
  | DenseNode
  | GlobalPoolNode
  | DropoutNode
  | SoftmaxNode
  | ZeroPadNode;

export type LayerOp = LayerNode['op'];

export interface LayerGraph {
  readonly name: string;
  /** Nodes in topological order; the first is the single input node. */
  readonly nodes: readonly LayerNode[];
  /** Other names for nodes, e.g. vgg16's `relu6` for `fc1`. */
  readonly aliases?: Readonly<Record<string, string>>;
}

export type WeightedNode = Conv2dNode | SeparableConv2dNode | DenseNode | BatchNormNode | NormalizeNode;

/** Ops that own weights, under canonical names `<node>.<param>` (see weight-slots.ts). */
export function hasWeights(node: LayerNode): node is WeightedNode {
  return node.op === 'conv2d' || node.op === 'dense' || node.op === 'separable_conv2d' || node.op === 'batchnorm' || node.op === 'normalize';
}

/** Layers that learn in training; batch normalisation and Normalization keep their statistics. */
export function isTrainable(node: LayerNode): boolean {
  return node.op === 'conv2d' || node.op === 'dense' || node.op === 'separable_conv2d';
}

export function groupsOf(node: Conv2dNode): number {
  return node.groups ?? 1;
}

export function weightName(node: LayerNode): string {
  return `${node.name}.weight`;
}

export function biasName(node: LayerNode): string {
  return `${node.name}.bias`;
}

export class UnknownLayerError extends UserError {
  constructor(
    readonly layer: string,
    readonly graphName: string,
    readonly known: readonly string[],
  ) {
    const sample = known.length > 12 ? [...known.slice(0, 6), '…', ...known.slice(-5)] : known;
    super(`unknown layer '${layer}' in ${graphName}; layers are: ${sample.join(', ')}`);
  }
}

/** Resolves a user-facing layer name (or alias) to the node that produces it. */
export function resolveLayer(graph: LayerGraph, layer: string): LayerNode {
  const target = graph.aliases?.[layer] ?? layer;
  const node = graph.nodes.find((n) => n.name === target);
  if (!node) {
    const names = [...graph.nodes.map((n) => n.name), ...Object.keys(graph.aliases ?? {})];
    throw new UnknownLayerError(layer, graph.name, names);
  }
  return node;
}

/** Checks the structural rules every engine relies on, so they never meet a malformed graph. */
export function validateGraph(graph: LayerGraph): void {
  const seen = new Set<string>();
  graph.nodes.forEach((node, i) => {
    if (seen.has(node.name)) throw new Error(`${graph.name}: duplicate node name '${node.name}'`);
    if ((i === 0) !== (node.op === 'input')) {
      throw new Error(`${graph.name}: the first node, and only it, must be the input (found '${node.name}')`);
    }
    for (const input of node.inputs) {
      if (!seen.has(input)) {
        throw new Error(`${graph.name}: node '${node.name}' reads '${input}', which is not defined before it`);
      }
    }
    const arity = node.op === 'input' ? 0 : node.op === 'concat' ? -1 : node.op === 'merge' ? (node.mode === 'subtract' ? 2 : -2) : 1;
    if (arity === -2 && node.inputs.length < 2) {
      throw new Error(`${graph.name}: node '${node.name}' (${node.op}) takes two inputs or more, got ${node.inputs.length}`);
    }
    if (arity >= 0 && node.inputs.length !== arity) {
      throw new Error(`${graph.name}: node '${node.name}' (${node.op}) takes ${arity} input(s), got ${node.inputs.length}`);
    }
    seen.add(node.name);
  });
  for (const [alias, target] of Object.entries(graph.aliases ?? {})) {
    if (!seen.has(target)) throw new Error(`${graph.name}: alias '${alias}' points to unknown node '${target}'`);
  }
}
