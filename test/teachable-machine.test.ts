/**
 * The real Teachable Machine export (../shared/models/teachable-machine, a MobileNetV2 0.35 with
 * genuine ImageNet weights) and tinyvgg against tfjs-layers, the reference for TF.js models:
 * `tf.loadLayersModel` over 127.0.0.1 HTTP, then `predict`, on the same input tensor as both
 * engines, at the default cut and at the model's own output.
 */
import path from 'node:path';
import os from 'node:os';
import { rm } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GraphBackbone } from '../src/backbones/backbone.ts';
import { preprocessInto } from '../src/backbones/preprocess.ts';
import { loadGraphBackbone } from '../src/backbones/zoo.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { createTfjsEngine } from '../src/engines/tfjs-engine.ts';
import { decodeImage } from '../src/extract/decode-image.ts';
import { relativeError } from './helpers/compare.ts';
import { hasSharedDatasets, hasSharedModels, NEEDS_SHARED_MODELS, SHARED_DATASETS, SHARED_MODELS } from './helpers/shared.ts';
import { serveFolder, type StaticServer } from './helpers/static-server.ts';

const TM = path.join(SHARED_MODELS, 'teachable-machine');
const cacheDir = path.join(os.tmpdir(), `bottleneck-tm-test-${process.pid}`);

/** Two real photos: flowers when ../shared/datasets is there, else tinyvgg's samples. */
function photos(): string[] {
  if (hasSharedDatasets) return ['daisy/100080576_f52e8ee070_n.jpg', 'roses/10090824183_d02c613f10_m.jpg'].map((f) => path.join(SHARED_DATASETS, 'flowers', f));
  return ['boat_1.jpeg', 'bug_1.jpeg'].map((f) => path.join(SHARED_MODELS, 'tinyvgg', 'img', f));
}

async function inputOf(backbone: GraphBackbone, files: readonly string[]): Promise<Float32Array> {
  const [h, w] = backbone.preprocessing.size;
  const input = new Float32Array(files.length * h * w * 3);
  for (const [i, file] of files.entries()) preprocessInto(await decodeImage(file, { size: [h, w], resize: 'crop' }), backbone.preprocessing, input, i * h * w * 3);
  return input;
}

/** Codes of both engines at `layer`, and the relative error of each against `reference`. */
async function engineErrors(backbone: GraphBackbone, layer: string, input: Float32Array, count: number, reference: Float32Array): Promise<{ onnx: number; tfjs: number }> {
  const opts = { backbone, cuts: [{ layer }], device: 'cpu' as const, cacheDir };
  const errors: number[] = [];
  for (const create of [createOnnxEngine, createTfjsEngine]) {
    const engine = await create(opts);
    try {
      const [codes] = await engine.run(input, count);
      errors.push(relativeError(codes, reference));
    } finally {
      await engine.dispose();
    }
  }
  return { onnx: errors[0], tfjs: errors[1] };
}

async function layersPredict(model: tf.LayersModel | tf.layers.Layer, input: Float32Array, [h, w]: readonly [number, number], count: number): Promise<Float32Array> {
  const y = tf.tidy(() => {
    const x = tf.tensor4d(input, [count, h, w, 3]);
    const out = 'predict' in model ? (model.predict(x) as tf.Tensor) : (model.apply(x) as tf.Tensor);
    return out.reshape([count, -1]);
  });
  const data = (await y.data()) as Float32Array;
  y.dispose();
  return data;
}

describe.skipIf(!hasSharedModels)(`TF.js models against tfjs-layers${NEEDS_SHARED_MODELS}`, () => {
  let server: StaticServer;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    server = await serveFolder(SHARED_MODELS);
  });
  afterAll(async () => {
    await server?.close();
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('the Teachable Machine export: its base is the backbone, its head the classifier, its labels the class names', async () => {
    const backbone = await loadGraphBackbone(path.join(TM, 'model.json'));
    expect(backbone.defaultCut).toEqual({ layer: 'global_average_pooling2d_GlobalAveragePooling2D3' });
    expect(backbone.classifier).toBe('dense_Dense4');
    expect(backbone.classNames).toEqual(['가위', '주먹']);
    expect(backbone.preprocessing).toMatchObject({ size: [224, 224], channels: 'rgb', mean: [127, 127, 127], std: [127, 127, 127] });
    expect(backbone.graph.aliases).toMatchObject({ sequential_8: 'global_average_pooling2d_GlobalAveragePooling2D3', model3: 'out_relu', sequential_10: 'dense_Dense4' });
    expect(backbone.namedCuts).not.toContain('dense_Dense3');
    const ops = new Set(backbone.graph.nodes.map((n) => n.op));
    for (const op of ['batchnorm', 'conv2d', 'relu', 'merge', 'zeropad', 'globalpool', 'dense']) expect(ops).toContain(op);
  });

  it.each([
    ['the base output (the default cut, 1280-d)', 'global_average_pooling2d_GlobalAveragePooling2D3'],
    ['out_relu, the 7×7×1280 map inside the nested Functional', 'out_relu'],
    ["the export's own output (its head's softmax)", 'dense_Dense4'],
  ])('Teachable Machine MobileNetV2, %s: both engines within 1e-4 of tfjs-layers', async (_, layer) => {
    const backbone = await loadGraphBackbone(path.join(TM, 'model.json'));
    const files = photos();
    const input = await inputOf(backbone, files);
    const model = await tf.loadLayersModel(`${server.url}/teachable-machine/model.json`);
    try {
      const base = model.layers[0] as tf.Sequential;
      const target = layer === 'out_relu' ? base.layers[0] : layer === 'dense_Dense4' ? model : base;
      const reference = await layersPredict(target as tf.LayersModel, input, backbone.preprocessing.size, files.length);
      const errors = await engineErrors(backbone, layer, input, files.length, reference);
      console.log(`teachable-machine ${layer}: relative error onnx ${errors.onnx.toExponential(2)}, tfjs ${errors.tfjs.toExponential(2)} (${reference.length / files.length} values per image)`);
      expect(errors.onnx).toBeLessThan(1e-4);
      expect(errors.tfjs).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });

  it.each([
    ['max_pool_2 (its default cut)', 'max_pool_2'],
    ['its own output', 'output'],
  ])('tinyvgg, %s: both engines within 1e-4 of tfjs-layers', async (_, layer) => {
    const backbone = await loadGraphBackbone(path.join(SHARED_MODELS, 'tinyvgg', 'model.json'));
    const files = photos();
    const input = await inputOf(backbone, files);
    const model = await tf.loadLayersModel(`${server.url}/tinyvgg/model.json`);
    try {
      const cut = layer === 'output' ? model : tf.model({ inputs: model.inputs, outputs: model.getLayer(layer).output as tf.SymbolicTensor });
      const reference = await layersPredict(cut, input, backbone.preprocessing.size, files.length);
      const errors = await engineErrors(backbone, layer, input, files.length, reference);
      console.log(`tinyvgg ${layer}: relative error onnx ${errors.onnx.toExponential(2)}, tfjs ${errors.tfjs.toExponential(2)}`);
      expect(errors.onnx).toBeLessThan(1e-4);
      expect(errors.tfjs).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });
});
