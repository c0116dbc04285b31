/**
 * Weight tensors, and binding them to a LayerGraph in its canonical layout
 * (conv OIHW, dense [out, in]) whatever format they were stored in.
 */
import { UserError } from '../util/errors.ts';
import { groupsOf, hasWeights, type LayerGraph, type WeightedNode } from './layer-graph.ts';
import type { GraphPlan } from './graph-plan.ts';
import { canonicalSlots, weightSlots, type WeightSlot } from './weight-slots.ts';
import { product } from '../util/numbers.ts';

export interface WeightTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Canonical tensors keyed `<node>.weight` / `<node>.bias`. */
export type WeightMap = ReadonlyMap<string, WeightTensor>;

/**
 * Tensors as a file holds them.
 * - 'keras': `<layer>/kernel` (conv HWIO, dense [in, out]) and `<layer>/bias`: h5 files and TF.js folders.
 * - 'canonical': `<layer>.weight` (OIHW, [out, in]) and `<layer>.bias`: Caffe/PyTorch exports as safetensors.
 */
export interface WeightSource {
  readonly convention: 'keras' | 'canonical';
  readonly tensors: ReadonlyMap<string, WeightTensor>;
  /** Files the tensors came from, for messages and for the weights' fingerprint. */
  readonly files: readonly string[];
}

export class WeightsError extends UserError {}

/** Converts a source to the canonical layout, for every weighted node of the graph. */
export function bindWeights(graph: LayerGraph, source: WeightSource): WeightMap {
  const out = new Map<string, WeightTensor>();
  const from = source.files[0] ?? 'weights';
  for (const node of graph.nodes) {
    if (!hasWeights(node)) continue;
    const keras = source.convention === 'keras';
    const lookup = (slot: WeightSlot) =>
      keras ? [slot.keras, ...(slot.kerasAliases ?? [])].map((v) => source.tensors.get(`${node.name}/${v}`)).find((t) => t !== undefined) : source.tensors.get(slot.key!);
    const channels = keras ? inChannelsOf(node, lookup) : source.tensors.has(canonicalSlots(node, 1)[0].key) ? canonicalInChannels(node, source.tensors) : 0;
    const slots = canonicalSlots(node, channels);
    for (const slot of slots) {
      const stored = lookup(slot);
      if (stored) {
        out.set(slot.key, keras ? slot.fromKeras(stored) : stored);
      } else if (slot.fill !== undefined) {
        out.set(slot.key, { shape: slot.shape, data: new Float32Array(product(slot.shape)).fill(slot.fill) });
      } else {
        const name = keras ? `${node.name}/${slot.keras}` : slot.key;
        throw new WeightsError(`${from}: no tensor '${name}' for layer '${node.name}' of ${graph.name}`);
      }
    }
  }
  return out;
}

/**
 * The input channels of a weighted node, read off its first stored tensor in Keras layout
 * (`kerasTensor` gives it for a slot, or undefined): conv kernels [kh, kw, C/g, F], depthwise
 * kernels [kh, kw, C, m], dense kernels [in, units], per-channel statistics [C].
 */
function inChannelsOf(node: WeightedNode, kerasTensor: (slot: WeightSlot) => WeightTensor | undefined): number {
  const probe = weightSlots(node, 1)[node.op === 'batchnorm' ? 2 : 0];
  const t = kerasTensor(probe);
  if (!t) return 0; // reported as the missing tensor it is
  switch (node.op) {
    case 'conv2d':
      return node.depthwise ? t.shape[2] : t.shape[2] * groupsOf(node);
    case 'separable_conv2d':
      return t.shape[2];
    case 'dense':
      return t.shape[0];
    case 'batchnorm':
    case 'normalize':
      return t.data.length;
  }
}

/** The input channels of a weighted node from its canonical tensors (the inverse of the slots' shapes). */
export function canonicalInChannels(node: WeightedNode, weights: WeightMap): number {
  const first = weights.get(canonicalSlots(node, 1)[0].key);
  if (!first) throw new WeightsError(`no weights for layer '${node.name}'`);
  switch (node.op) {
    case 'conv2d':
      return node.depthwise ? first.shape[0] / (node.filters / groupsOf(node)) : first.shape[1] * groupsOf(node);
    case 'separable_conv2d':
      return first.shape[0] / node.multiplier;
    case 'dense':
      return first.shape[1];
    case 'batchnorm':
    case 'normalize':
      return first.shape[0];
  }
}

/**
 * Checks that every weighted node of a plan has tensors of exactly the shape it needs,
 * so a wrong file fails here with a message, not deep inside an engine.
 */
export function checkWeights(plan: GraphPlan, weights: WeightMap): void {
  for (const step of plan.steps) {
    const node = step.node;
    if (!hasWeights(node)) continue;
    const inShape = step.inShape;
    for (const slot of canonicalSlots(node, inShape[inShape.length - 1])) {
      const t = weights.get(slot.key);
      if (!t) throw new WeightsError(`${plan.graph.name}: missing weights for layer '${node.name}' (${slot.key})`);
      if (t.shape.join() !== slot.shape.join()) {
        const layout = node.op === 'conv2d' || node.op === 'separable_conv2d' ? ' (OIHW)' : node.op === 'dense' ? ' ([out, in])' : '';
        throw new WeightsError(`${plan.graph.name}: layer '${node.name}' needs ${slot.key} of shape [${slot.shape}]${layout}, got [${t.shape}]`);
      }
    }
  }
}

/** Permutes the axes of a dense row-major tensor: out axis i is input axis perm[i]. */
export function transpose(t: WeightTensor, perm: readonly number[]): WeightTensor {
  const rank = t.shape.length;
  if (perm.length !== rank) throw new Error(`transpose: perm [${perm}] does not fit shape [${t.shape}]`);
  const outShape = perm.map((p) => t.shape[p]);
  const inStrides = new Array<number>(rank);
  for (let i = rank - 1, s = 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= t.shape[i];
  }
  const strides = perm.map((p) => inStrides[p]);
  const out = new Float32Array(t.data.length);
  const src = t.data;
  // Walk the output in order, with the innermost axis unrolled: the big VGG16 fc1 (102M floats)
  // transposes in about a second this way.
  const inner = outShape[rank - 1] ?? 1;
  const innerStride = strides[rank - 1] ?? 1;
  const index = new Array<number>(Math.max(rank - 1, 0)).fill(0);
  let o = 0;
  const outer = out.length / Math.max(inner, 1);
  for (let block = 0; block < outer; block++) {
    let base = 0;
    for (let i = 0; i < rank - 1; i++) base += index[i] * strides[i];
    for (let j = 0; j < inner; j++) out[o++] = src[base + j * innerStride];
    for (let i = rank - 2; i >= 0; i--) {
      if (++index[i] < outShape[i]) break;
      index[i] = 0;
    }
  }
  return { shape: outShape, data: out };
}
