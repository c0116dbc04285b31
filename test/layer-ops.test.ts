/**
 * Every op the layer graph gained for modern CNNs, in one small graph, through both engines and
 * through the TF.js exporter into tfjs-layers (tf.loadLayersModel over 127.0.0.1 HTTP): grouped,
 * depthwise (multiplier 2) and separable convolutions, batch norm, ReLU with max_value,
 * negative_slope and threshold, ELU (alpha 1 and 0.5), every activation, every merge (a squeeze-and-excitation
 * broadcast Multiply among them), Rescaling, Normalization, Reshape, Cropping2D and global pooling
 * with keepdims. Ops tfjs-layers lacks (a ReLU threshold, ELU's alpha ≠ 1, hard_swish) sit on a side branch the
 * export does not need, and the exporter refuses them in one line.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backbone } from '../src/backbones/backbone.ts';
import { toTfjsLayersModel } from '../src/backbones/keras-topology-writer.ts';
import type { Activation, LayerGraph, LayerNode } from '../src/backbones/layer-graph.ts';
import { seededWeights } from '../src/backbones/zoo/random-weights.ts';
import { mulberry32 } from '../src/util/numbers.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { createTfjsEngine } from '../src/engines/tfjs-engine.ts';
import { exportTfjs } from '../src/predict/export-tfjs.ts';
import { relativeError } from './helpers/compare.ts';
import { serveFolder, type StaticServer } from './helpers/static-server.ts';

const SIZE = [12, 12] as const;
const conv = (name: string, input: string, filters: number, extra: Partial<Extract<LayerNode, { op: 'conv2d' }>> = {}): LayerNode => ({
  name, op: 'conv2d', inputs: [input], filters, kernel: [3, 3], stride: [1, 1], pad: 'same', dilation: [1, 1], activation: 'linear', ...extra,
});
const act = (name: string, input: string, fn: Activation, alpha?: number): LayerNode => ({ name, op: 'activation', inputs: [input], fn, ...(alpha !== undefined && { alpha }) });

function kitchenSink(): LayerGraph {
  const nodes: LayerNode[] = [
    { name: 'in', op: 'input', inputs: [], channels: 4 },
    { name: 'scaled', op: 'rescale', inputs: ['in'], scale: [0.5, 1, 2, 0.25], offset: -0.1 },
    { name: 'normed', op: 'normalize', inputs: ['scaled'] },
    conv('grouped', 'normed', 6, { groups: 2, activation: 'relu' }),
    { name: 'grouped_bn', op: 'batchnorm', inputs: ['grouped'], epsilon: 1e-3 },
    conv('dw', 'grouped_bn', 12, { groups: 6, depthwise: true, stride: [2, 2], activation: 'relu6', useBias: false }),
    { name: 'dw_bn', op: 'batchnorm', inputs: ['dw'], epsilon: 1e-5, scale: false },
    { name: 'capped', op: 'relu', inputs: ['dw_bn'], maxValue: 4 },
    { name: 'sep', op: 'separable_conv2d', inputs: ['capped'], filters: 8, multiplier: 1, kernel: [3, 3], stride: [1, 1], pad: 'same', dilation: [1, 1], activation: 'swish' },
    { name: 'leaky', op: 'relu', inputs: ['sep'], negativeSlope: 0.2 },
    act('elu', 'sep', 'elu'),
    act('sig', 'sep', 'sigmoid'),
    act('tanh', 'sep', 'tanh'),
    act('gelu', 'sep', 'gelu'),
    act('selu', 'sep', 'selu'),
    act('softplus', 'sep', 'softplus'),
    act('hsig', 'sep', 'hard_sigmoid'),
    { name: 'sum', op: 'merge', inputs: ['leaky', 'elu', 'sig'], mode: 'add' },
    { name: 'diff', op: 'merge', inputs: ['tanh', 'gelu'], mode: 'subtract' },
    { name: 'mean', op: 'merge', inputs: ['selu', 'softplus'], mode: 'average' },
    { name: 'hi', op: 'merge', inputs: ['sum', 'diff'], mode: 'maximum' },
    { name: 'lo', op: 'merge', inputs: ['mean', 'hsig'], mode: 'minimum' },
    { name: 'both', op: 'concat', inputs: ['hi', 'lo'] },
    // Squeeze and excitation: a 1×1×C gate broadcast over H and W.
    { name: 'squeeze', op: 'globalpool', inputs: ['both'], mode: 'avg', keepdims: true },
    conv('excite', 'squeeze', 16, { kernel: [1, 1], activation: 'sigmoid' }),
    { name: 'gated', op: 'merge', inputs: ['both', 'excite'], mode: 'multiply' },
    { name: 'cropped', op: 'crop', inputs: ['gated'], crop: [1, 0, 0, 2] },
    { name: 'flat', op: 'reshape', inputs: ['cropped'], shape: [-1] },
    { name: 'unflat', op: 'reshape', inputs: ['flat'], shape: [5, 4, 16] },
    { name: 'pooled', op: 'globalpool', inputs: ['unflat'], mode: 'max' },
    { name: 'final', op: 'dense', inputs: ['pooled'], units: 5, activation: 'softmax' },
    // What tfjs-layers cannot express, off the exported path.
    { name: 'thresholded', op: 'relu', inputs: ['sep'], threshold: 0.3, negativeSlope: 0.1, maxValue: 2 },
    act('elu_half', 'thresholded', 'elu', 0.5),
    act('side', 'elu_half', 'hard_swish'),
  ];
  return { name: 'kitchen_sink', nodes };
}

let root: string;
let server: StaticServer;
beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-layer-ops-'));
  server = await serveFolder(root);
});
afterAll(async () => {
  await server?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('the layer graph\'s new ops', () => {
  const graph = kitchenSink();
  const backbone: Backbone = {
    id: 'kitchen-sink',
    graph,
    weights: seededWeights(graph, SIZE, 8, ['final', 'side']),
    preprocessing: { size: SIZE, channels: 'rgb', mean: [0, 0, 0], std: [1, 1, 1] },
    defaultCut: { layer: 'final' },
    namedCuts: [],
    weightsId: 'kitchen-sink-seed-8',
    weightsFrom: 'seeded',
  };
  const count = 3;
  const random = mulberry32(2);
  const input = Float32Array.from({ length: count * SIZE[0] * SIZE[1] * 4 }, () => random() * 4 - 2);
  const cuts = [{ layer: 'final' }, { layer: 'gated' }, { layer: 'side' }, { layer: 'squeeze' }];

  it('both engines agree on every output', async () => {
    const results: Float32Array[][] = [];
    for (const create of [createOnnxEngine, createTfjsEngine]) {
      const engine = await create({ backbone, cuts, device: 'cpu', cacheDir: path.join(root, 'cache') });
      expect(engine.outputs.map((o) => o.shape)).toEqual([[5], [6, 6, 16], [6, 6, 8], [1, 1, 16]]);
      results.push(await engine.run(input, count));
      await engine.dispose();
    }
    results[0].forEach((codes, i) => expect(relativeError(results[1][i], codes), cuts[i].layer).toBeLessThan(1e-5));
    // The softmax is not saturated, so the comparison means something.
    expect(Math.max(...results[0][0])).toBeLessThan(0.99);
  });

  it('tfjs-layers computes what the ONNX engine computes, from the exported model', async () => {
    await exportTfjs(backbone, 'final', path.join(root, 'sink'));
    const model = await tf.loadLayersModel(`${server.url}/sink/model.json`);
    const y = tf.tidy(() => model.predict(tf.tensor4d(input, [count, SIZE[0], SIZE[1], 4])) as tf.Tensor);
    const actual = (await y.data()) as Float32Array;
    y.dispose();
    model.dispose();
    const engine = await createOnnxEngine({ backbone, cuts: [{ layer: 'final' }], device: 'cpu', cacheDir: path.join(root, 'cache') });
    const [expected] = await engine.run(input, count);
    await engine.dispose();
    expect(relativeError(actual, expected)).toBeLessThan(1e-5);
  });

  it('the exporter refuses in one line what tfjs-layers has no layer for', () => {
    expect(() => toTfjsLayersModel(graph, backbone.weights, SIZE, 'side')).toThrow(/cannot export layer 'thresholded' \(relu\).*threshold.*--format onnx/);
  });
});
