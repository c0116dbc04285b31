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

export type Activation = 'linear' | 'relu' | 'softmax';

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
export type Conv2dNode = NodeBase & {
  readonly op: 'conv2d';
  readonly filters: number;
  readonly kernel: Pair;
  readonly stride: Pair;
  readonly pad: Padding;
  readonly dilation: Pair;
  readonly activation: Activation;
};
export type ReluNode = NodeBase & { readonly op: 'relu' };
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
export type DenseNode = NodeBase & { readonly op: 'dense'; readonly units: number; readonly activation: Activation };
export type GlobalPoolNode = NodeBase & { readonly op: 'globalpool'; readonly mode: 'avg' | 'max' };
/** Identity at inference; kept so that graphs keep their original names. */
export type DropoutNode = NodeBase & { readonly op: 'dropout'; readonly rate: number };
export type SoftmaxNode = NodeBase & { readonly op: 'softmax' };
export type ZeroPadNode = NodeBase & { readonly op: 'zeropad'; readonly pad: Pads };

export type LayerNode =
  | InputNode
  | Conv2dNode
  | ReluNode
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

/** Ops that own weights, under the canonical names `<node>.weight` and `<node>.bias`. */
export function hasWeights(node: LayerNode): node is Conv2dNode | DenseNode {
  return node.op === 'conv2d' || node.op === 'dense';
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
    const arity = node.op === 'input' ? 0 : node.op === 'concat' ? -1 : 1;
    if (arity >= 0 && node.inputs.length !== arity) {
      throw new Error(`${graph.name}: node '${node.name}' (${node.op}) takes ${arity} input(s), got ${node.inputs.length}`);
    }
    seen.add(node.name);
  });
  for (const [alias, target] of Object.entries(graph.aliases ?? {})) {
    if (!seen.has(target)) throw new Error(`${graph.name}: alias '${alias}' points to unknown node '${target}'`);
  }
}
