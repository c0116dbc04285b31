/**
 * Plans a LayerGraph for one input size and a set of wanted outputs: prunes the nodes that
 * are not needed, infers every shape, and turns 'same'/'valid'/ceil-mode into explicit pads.
 * Engines translate a plan node by node and never redo this arithmetic, so they cannot
 * disagree about geometry.
 */
import { resolveLayer, validateGraph, type LayerGraph, type LayerNode, type Pads, type Padding, type Pair } from './layer-graph.ts';
import { product } from '../util/numbers.ts';

/** [H, W, C] for feature maps, [D] for vectors. */
export type Shape = readonly [number, number, number] | readonly [number];

export interface PoolPads {
  /** Zero padding that average pooling counts in its divisor (Caffe's pad). */
  readonly counted: Pads;
  /** Padding no pool ever counts: Caffe's ceil-mode overhang and TF's 'same'. */
  readonly uncounted: Pads;
}

export type PlannedNode =
  | { readonly node: Extract<LayerNode, { op: 'conv2d' }>; readonly pads: Pads; readonly inShape: Shape; readonly outShape: Shape }
  | { readonly node: Extract<LayerNode, { op: 'separable_conv2d' }>; readonly pads: Pads; readonly inShape: Shape; readonly outShape: Shape }
  | { readonly node: Extract<LayerNode, { op: 'maxpool' | 'avgpool' }>; readonly pads: PoolPads; readonly inShape: Shape; readonly outShape: Shape }
  | { readonly node: Exclude<LayerNode, { op: 'conv2d' | 'separable_conv2d' | 'maxpool' | 'avgpool' }>; readonly inShape: Shape; readonly outShape: Shape };

export interface GraphPlan {
  readonly graph: LayerGraph;
  readonly inputSize: Pair;
  readonly inputChannels: number;
  /** Needed nodes only, in topological order, the input first. */
  readonly steps: readonly PlannedNode[];
  readonly shapes: ReadonlyMap<string, Shape>;
  /** Resolved node names of the requested outputs, in request order. */
  readonly outputs: readonly string[];
}

const ZERO: Pads = [0, 0, 0, 0];

export function planGraph(graph: LayerGraph, inputSize: Pair, outputs: readonly string[]): GraphPlan {
  validateGraph(graph);
  const outputNodes = outputs.map((o) => resolveLayer(graph, o).name);
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));

  const needed = new Set<string>();
  const stack = [...outputNodes];
  while (stack.length) {
    const name = stack.pop()!;
    if (needed.has(name)) continue;
    needed.add(name);
    stack.push(...byName.get(name)!.inputs);
  }

  const input = graph.nodes[0];
  if (input.op !== 'input') throw new Error(`${graph.name}: no input node`);
  const shapes = new Map<string, Shape>();
  const steps: PlannedNode[] = [];
  for (const node of graph.nodes) {
    if (!needed.has(node.name)) continue;
    const inShape: Shape = node.op === 'input' ? [inputSize[0], inputSize[1], input.channels] : shapes.get(node.inputs[0])!;
    const planned = planNode(graph.name, node, inShape, node.inputs.map((i) => shapes.get(i)!));
    shapes.set(node.name, planned.outShape);
    steps.push(planned);
  }
  return { graph, inputSize, inputChannels: input.channels, steps, shapes, outputs: outputNodes };
}

function planNode(graphName: string, node: LayerNode, inShape: Shape, inShapes: Shape[]): PlannedNode {
  const where = `${graphName}/${node.name}`;
  const spatial = (): readonly [number, number, number] => {
    if (inShape.length !== 3) throw new Error(`${where}: ${node.op} needs a feature map, got a vector of ${inShape[0]}`);
    return inShape;
  };
  switch (node.op) {
    case 'input':
      return { node, inShape, outShape: inShape };
    case 'conv2d':
    case 'separable_conv2d': {
      const [h, w, c] = spatial();
      const groups = node.op === 'conv2d' ? (node.groups ?? 1) : 1;
      if (c % groups !== 0 || node.filters % groups !== 0) {
        throw new Error(`${where}: ${groups} groups must divide both the ${c} input channels and the ${node.filters} filters`);
      }
      const pads = resolveConvPads(node.pad, [h, w], node.kernel, node.stride, node.dilation);
      const out = (size: number, k: number, s: number, d: number, p0: number, p1: number) =>
        Math.floor((size + p0 + p1 - d * (k - 1) - 1) / s) + 1;
      const oh = out(h, node.kernel[0], node.stride[0], node.dilation[0], pads[0], pads[2]);
      const ow = out(w, node.kernel[1], node.stride[1], node.dilation[1], pads[1], pads[3]);
      if (oh < 1 || ow < 1) throw new Error(`${where}: input ${h}×${w} is too small for this convolution`);
      return node.op === 'conv2d' ? { node, pads, inShape, outShape: [oh, ow, node.filters] } : { node, pads, inShape, outShape: [oh, ow, node.filters] };
    }
    case 'maxpool':
    case 'avgpool': {
      const [h, w, c] = spatial();
      const rows = poolGeometry(h, node.kernel[0], node.stride[0], node.pad, 0, node.ceil);
      const cols = poolGeometry(w, node.kernel[1], node.stride[1], node.pad, 1, node.ceil);
      if (rows.out < 1 || cols.out < 1) throw new Error(`${where}: input ${h}×${w} is too small for this pooling`);
      const pads: PoolPads = {
        counted: [rows.counted[0], cols.counted[0], rows.counted[1], cols.counted[1]],
        uncounted: [rows.uncounted[0], cols.uncounted[0], rows.uncounted[1], cols.uncounted[1]],
      };
      return { node, pads, inShape, outShape: [rows.out, cols.out, c] };
    }
    case 'zeropad': {
      const [h, w, c] = spatial();
      return { node, inShape, outShape: [h + node.pad[0] + node.pad[2], w + node.pad[1] + node.pad[3], c] };
    }
    case 'relu':
    case 'dropout':
    case 'softmax':
    case 'activation':
    case 'batchnorm':
    case 'normalize':
    case 'rescale':
      return { node, inShape, outShape: inShape };
    case 'crop': {
      const [h, w, c] = spatial();
      const [t, l, b, r] = node.crop;
      if (h - t - b < 1 || w - l - r < 1) throw new Error(`${where}: cropping ${node.crop.join(', ')} leaves nothing of ${h}×${w}`);
      return { node, inShape, outShape: [h - t - b, w - l - r, c] };
    }
    case 'merge':
      return { node, inShape, outShape: broadcastShapes(where, inShapes) };
    case 'reshape':
      return { node, inShape, outShape: reshapeTarget(where, inShape, node.shape) };
    case 'lrn':
      spatial();
      return { node, inShape, outShape: inShape };
    case 'concat': {
      const maps = inShapes.map((s) => {
        if (s.length !== 3) throw new Error(`${where}: concat needs feature maps`);
        return s;
      });
      const [h, w] = maps[0];
      if (maps.some((s) => s[0] !== h || s[1] !== w)) {
        throw new Error(`${where}: concat inputs differ in size: ${maps.map((s) => s.join('×')).join(', ')}`);
      }
      return { node, inShape, outShape: [h, w, maps.reduce((sum, s) => sum + s[2], 0)] };
    }
    case 'flatten':
      return { node, inShape, outShape: [product(inShape)] };
    case 'globalpool':
      return { node, inShape, outShape: node.keepdims ? [1, 1, spatial()[2]] : [spatial()[2]] };
    case 'dense':
      if (inShape.length !== 1) {
        throw new Error(`${where}: dense needs a vector; add a flatten node (got ${inShape.join('×')})`);
      }
      return { node, inShape, outShape: [node.units] };
  }
}

/** Shapes an element-wise merge accepts: all equal, or 1×1 maps broadcast over H and W. */
function broadcastShapes(where: string, shapes: readonly Shape[]): Shape {
  const fail = (): never => {
    throw new Error(`${where}: cannot merge inputs of shapes ${shapes.map((s) => s.join('×')).join(', ')}`);
  };
  if (shapes.every((s) => s.length === 1)) return shapes.every((s) => s[0] === shapes[0][0]) ? shapes[0] : fail();
  if (!shapes.every((s) => s.length === 3)) return fail();
  const out = [0, 1, 2].map((axis) => {
    const sizes = new Set(shapes.map((s) => s[axis]).filter((d) => d !== 1));
    if (sizes.size > 1) fail();
    return sizes.size === 0 ? 1 : [...sizes][0];
  });
  if (shapes.some((s) => s[2] !== out[2])) fail(); // channels never broadcast
  return [out[0], out[1], out[2]];
}

function reshapeTarget(where: string, inShape: Shape, target: readonly number[]): Shape {
  const size = shapeSize(inShape);
  const known = product(target.filter((d) => d !== -1));
  const unknown = target.filter((d) => d === -1).length;
  const dims = target.map((d) => (d === -1 ? size / known : d));
  if (unknown > 1 || (target.length !== 1 && target.length !== 3) || dims.some((d) => !Number.isInteger(d) || d < 1) || shapeSize(dims as unknown as Shape) !== size) {
    throw new Error(`${where}: cannot reshape ${inShape.join('×')} to ${target.join('×')} (only [H, W, C] or [D] targets of the same size)`);
  }
  return dims.length === 1 ? [dims[0]] : [dims[0], dims[1], dims[2]];
}

/** TF's 'same' puts the odd pixel of padding at the end; 'valid' pads nothing. */
export function resolveConvPads(pad: Padding, size: Pair, kernel: Pair, stride: Pair, dilation: Pair = [1, 1]): Pads {
  if (pad === 'valid') return ZERO;
  if (pad !== 'same') return pad;
  const total = (i: 0 | 1) => {
    const effective = dilation[i] * (kernel[i] - 1) + 1;
    return Math.max((Math.ceil(size[i] / stride[i]) - 1) * stride[i] + effective - size[i], 0);
  };
  const th = total(0);
  const tw = total(1);
  return [Math.floor(th / 2), Math.floor(tw / 2), th - Math.floor(th / 2), tw - Math.floor(tw / 2)];
}

/**
 * Pooling geometry along one axis.
 * Caffe (ceil): out = ceil((H + 2p - k) / s) + 1, minus 1 when the last window would start
 * at or past H + p; the window may hang over the padded edge, and that overhang is never counted.
 * Floor mode is Keras/TF 'valid' (or explicit pads); TF 'same' padding is never counted either.
 */
export function poolGeometry(
  size: number,
  kernel: number,
  stride: number,
  pad: Padding,
  axis: 0 | 1,
  ceil: boolean,
): { out: number; counted: [number, number]; uncounted: [number, number] } {
  if (pad === 'same') {
    const [t, l, b, r] = resolveConvPads('same', [size, size], [kernel, kernel], [stride, stride]);
    const before = axis === 0 ? t : l;
    const after = axis === 0 ? b : r;
    return { out: Math.ceil(size / stride), counted: [0, 0], uncounted: [before, after] };
  }
  const explicit = pad === 'valid' ? ZERO : pad;
  const p0 = explicit[axis];
  const p1 = explicit[axis + 2];
  const span = size + p0 + p1 - kernel;
  let out = (ceil ? Math.ceil(span / stride) : Math.floor(span / stride)) + 1;
  if (ceil && (out - 1) * stride >= size + p0) out -= 1;
  const overhang = Math.max(0, (out - 1) * stride + kernel - (size + p0 + p1));
  return { out, counted: [p0, p1], uncounted: [0, overhang] };
}

export function shapeSize(shape: Shape): number {
  return product(shape);
}
