/**
 * Weight tensors, and binding them to a LayerGraph in its canonical layout
 * (conv OIHW, dense [out, in]) whatever format they were stored in.
 */
import { UserError } from '../util/errors.ts';
import { biasName, hasWeights, weightName, type LayerGraph } from './layer-graph.ts';
import type { GraphPlan } from './graph-plan.ts';

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
    const kernelKey = source.convention === 'keras' ? `${node.name}/kernel` : `${node.name}.weight`;
    const biasKey = source.convention === 'keras' ? `${node.name}/bias` : `${node.name}.bias`;
    const kernel = source.tensors.get(kernelKey);
    if (!kernel) {
      throw new WeightsError(`${from}: no tensor '${kernelKey}' for layer '${node.name}' of ${graph.name}`);
    }
    let canonical = kernel;
    if (source.convention === 'keras') {
      canonical = node.op === 'conv2d' ? transpose(kernel, [3, 2, 0, 1]) : transpose(kernel, [1, 0]);
    }
    out.set(weightName(node), canonical);
    const bias = source.tensors.get(biasKey);
    out.set(biasName(node), bias ?? { shape: [canonical.shape[0]], data: new Float32Array(canonical.shape[0]) });
  }
  return out;
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
    const expected =
      node.op === 'conv2d'
        ? [node.filters, inShape[inShape.length - 1], node.kernel[0], node.kernel[1]]
        : [node.units, inShape[0]];
    const w = weights.get(weightName(node));
    const b = weights.get(biasName(node));
    if (!w || !b) throw new WeightsError(`${plan.graph.name}: missing weights for layer '${node.name}'`);
    if (w.shape.join() !== expected.join()) {
      throw new WeightsError(
        `${plan.graph.name}: layer '${node.name}' needs a weight of shape [${expected}] (OIHW / [out, in]), got [${w.shape}]`,
      );
    }
    if (b.shape.length !== 1 || b.shape[0] !== expected[0]) {
      throw new WeightsError(`${plan.graph.name}: layer '${node.name}' needs a bias of [${expected[0]}], got [${b.shape}]`);
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
