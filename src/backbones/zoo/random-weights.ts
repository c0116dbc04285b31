/**
 * Seeded random weights for any graph: for unit tests and for benchmarks, where the cost of
 * a forward pass does not depend on the values.
 */
import type { Pair } from '../layer-graph.ts';
import { biasName, hasWeights, weightName, type LayerGraph } from '../layer-graph.ts';
import { planGraph } from '../graph-plan.ts';
import type { WeightTensor } from '../weights.ts';

/** Weights for every weighted node up to `outputs` (default: the whole graph). */
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
    const inChannels = step.inShape[step.inShape.length - 1];
    const shape = node.op === 'conv2d' ? [node.filters, inChannels, ...node.kernel] : [node.units, inChannels];
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    // He-uniform, so activations neither vanish nor explode through the ReLUs.
    const limit = Math.sqrt(6 / fanIn);
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = (random() * 2 - 1) * limit;
    const bias = new Float32Array(shape[0]);
    for (let i = 0; i < bias.length; i++) bias[i] = (random() - 0.5) * 0.1;
    weights.set(weightName(node), { shape, data });
    weights.set(biasName(node), { shape: [shape[0]], data: bias });
  }
  return weights;
}

/** A small, fast, seedable PRNG; Math.random cannot be seeded. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
