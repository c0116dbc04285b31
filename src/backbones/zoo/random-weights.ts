/**
 * Seeded random weights for any graph: for unit tests and for benchmarks, where the cost of
 * a forward pass does not depend on the values.
 */
import type { Pair } from '../layer-graph.ts';
import { hasWeights, type LayerGraph } from '../layer-graph.ts';
import { canonicalSlots } from '../weight-slots.ts';
import { planGraph } from '../graph-plan.ts';
import type { WeightTensor } from '../weights.ts';
import { mulberry32, product } from '../../util/numbers.ts';

/**
 * Weights for every weighted node up to `outputs` (default: the whole graph): He-uniform
 * kernels, so activations neither vanish nor explode through the ReLUs; small biases;
 * batch-norm statistics near the identity (gamma 0.6–1, mean ±0.1, variance 0.75–1.25), so
 * deep residual stacks stay in range.
 */
export function seededWeights(
  graph: LayerGraph,
  inputSize: Pair,
  seed: number,
  outputs: readonly string[] = [graph.nodes[graph.nodes.length - 1].name],
): Map<string, WeightTensor> {
  const plan = planGraph(graph, inputSize, outputs);
  const random = mulberry32(seed);
  const weights = new Map<string, WeightTensor>();
  for (const step of plan.steps) {
    const node = step.node;
    if (!hasWeights(node)) continue;
    for (const slot of canonicalSlots(node, step.inShape[step.inShape.length - 1])) {
      const data = new Float32Array(product(slot.shape));
      const param = slot.key.slice(slot.key.lastIndexOf('.') + 1);
      const value = SEEDED[param] ?? heUniform(slot.shape);
      for (let i = 0; i < data.length; i++) data[i] = value(random());
      // A bias the layer does not have (use_bias=False) is zero, a missing gamma one: drawn and
      // then overwritten, so every other tensor keeps the values it has with the layer's own.
      if (!slot.inKeras && slot.fill !== undefined) data.fill(slot.fill);
      weights.set(slot.key, { shape: slot.shape, data });
    }
  }
  return weights;
}

/** Value of one element from a uniform [0, 1) draw, by canonical parameter name. */
const SEEDED: Record<string, ((r: number) => number) | undefined> = {
  bias: (r) => (r - 0.5) * 0.1,
  gamma: (r) => 0.6 + 0.4 * r,
  beta: (r) => (r - 0.5) * 0.2,
  mean: (r) => (r - 0.5) * 0.2,
  variance: (r) => 0.75 + 0.5 * r,
};

function heUniform(shape: readonly number[]): (r: number) => number {
  const fanIn = product(shape.slice(1));
  const limit = Math.sqrt(6 / fanIn);
  return (r) => (r * 2 - 1) * limit;
}

