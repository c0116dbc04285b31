/**
 * A tiny VGG-shaped backbone with seeded random weights. It exists so unit tests can push
 * real images through every code path in milliseconds; its codes mean nothing, and it is
 * never a default.
 */
import { createHash } from 'node:crypto';
import type { Backbone } from '../backbone.ts';
import { planGraph } from '../graph-plan.ts';
import { biasName, hasWeights, weightName } from '../layer-graph.ts';
import type { WeightTensor } from '../weights.ts';
import { vggGraph } from './vgg16.ts';

export const TINY_RANDOM_ID = 'tiny-vgg-random';

export function tinyRandomBackbone(seed = 1): Backbone {
  const graph = vggGraph(TINY_RANDOM_ID, [[2, 8], [2, 16]], [32], 10);
  const size = [32, 32] as const;
  const plan = planGraph(graph, size, ['predictions']);
  const random = mulberry32(seed);
  const weights = new Map<string, WeightTensor>();
  for (const step of plan.steps) {
    const node = step.node;
    if (!hasWeights(node)) continue;
    const inChannels = step.inShape[step.inShape.length - 1];
    const shape = node.op === 'conv2d' ? [node.filters, inChannels, ...node.kernel] : [node.units, inChannels];
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    const count = shape.reduce((a, b) => a * b, 1);
    // He-uniform, so activations neither vanish nor explode through the ReLUs.
    const limit = Math.sqrt(6 / fanIn);
    const data = Float32Array.from({ length: count }, () => (random() * 2 - 1) * limit);
    const outs = shape[0];
    weights.set(weightName(node), { shape, data });
    weights.set(biasName(node), { shape: [outs], data: Float32Array.from({ length: outs }, () => (random() - 0.5) * 0.1) });
  }
  return {
    id: TINY_RANDOM_ID,
    graph,
    weights,
    preprocessing: { size, channels: 'bgr', mean: [103.939, 116.779, 123.68], std: [1, 1, 1] },
    defaultCut: { layer: 'block2_pool' },
    namedCuts: ['block1_pool', 'block2_pool', 'fc1'],
    classifier: 'predictions',
    weightsId: createHash('sha256').update(`${TINY_RANDOM_ID}:seed=${seed}`).digest('hex'),
    weightsFrom: `seeded random (seed ${seed})`,
  };
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
