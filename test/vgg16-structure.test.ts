import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { planGraph } from '../src/backbones/graph-plan.ts';
import { graphFromKerasTopology } from '../src/backbones/keras-topology.ts';
import { hasWeights } from '../src/backbones/layer-graph.ts';
import { vgg16Graph } from '../src/backbones/zoo/vgg16.ts';
import { hasSharedModels, NEEDS_SHARED_MODELS, SHARED_MODELS } from './helpers/shared.ts';

interface Manifest {
  modelTopology: unknown;
  weightsManifest: { weights: { name: string; shape: number[] }[] }[];
}

describe.skipIf(!hasSharedModels)(`vgg16 is exactly Keras' VGG16${NEEDS_SHARED_MODELS}`, () => {
  const manifest = () => JSON.parse(readFileSync(path.join(SHARED_MODELS, 'keras-vgg16', 'model.json'), 'utf8')) as Manifest;

  it('has the Keras weight tensors: names, shapes and order', () => {
    const plan = planGraph(vgg16Graph(), [224, 224], ['predictions']);
    const ours = plan.steps.flatMap(({ node, inShape }) => {
      if (!hasWeights(node) || (node.op !== 'conv2d' && node.op !== 'dense')) return [];
      const inC = inShape[inShape.length - 1];
      const kernel = node.op === 'conv2d' ? [...node.kernel, inC, node.filters] : [inC, node.units];
      const outs = node.op === 'conv2d' ? node.filters : node.units;
      return [`${node.name}/kernel ${kernel}`, `${node.name}/bias ${outs}`];
    });
    const keras = manifest().weightsManifest.flatMap((g) => g.weights.map((w) => `${w.name} ${w.shape}`));
    expect(ours).toEqual(keras);
    expect(keras).toHaveLength(32);
  });

  it('has the Keras layer names and the bottleneck shapes', () => {
    const ours = vgg16Graph();
    const { graph: fromKeras } = graphFromKerasTopology(manifest().modelTopology);
    expect(ours.nodes.map((n) => n.name)).toEqual(fromKeras.nodes.map((n) => n.name));
    // The converted Keras topology and the hand-written graph describe the same network.
    expect(ours.nodes.slice(1)).toEqual(fromKeras.nodes.slice(1));
    const plan = planGraph(ours, [224, 224], ['block5_pool', 'relu6', 'fc2']);
    expect(plan.shapes.get('block5_pool')).toEqual([7, 7, 512]);
    expect(plan.shapes.get('flatten')).toEqual([25088]);
    expect(plan.shapes.get('fc1')).toEqual([4096]);
    expect(plan.outputs).toEqual(['block5_pool', 'fc1', 'fc2']);
  });
});
