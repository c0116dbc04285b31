/**
 * A tiny VGG-shaped backbone with seeded random weights. It exists so unit tests can push
 * real images through every code path in milliseconds; its codes mean nothing, and it is
 * never a default.
 */
import { createHash } from 'node:crypto';
import type { GraphBackbone } from '../backbone.ts';
import { seededWeights } from './random-weights.ts';
import { VGG16_PREPROCESSING, vggGraph } from './vgg16.ts';

export const TINY_RANDOM_ID = 'tiny-vgg-random';

export function tinyRandomBackbone(seed = 1): GraphBackbone {
  const graph = vggGraph(TINY_RANDOM_ID, [[2, 8], [2, 16]], [32], 10);
  const size = [32, 32] as const;
  return {
    id: TINY_RANDOM_ID,
    graph,
    weights: seededWeights(graph, size, seed),
    preprocessing: { ...VGG16_PREPROCESSING, size },
    defaultCut: { layer: 'block2_pool' },
    namedCuts: ['block1_pool', 'block2_pool', 'fc1'],
    classifier: 'predictions',
    weightsId: createHash('sha256').update(`${TINY_RANDOM_ID}:seed=${seed}`).digest('hex'),
    weightsFrom: `seeded random (seed ${seed})`,
  };
}
