/**
 * `export --format onnx|tfjs` for every keras.applications backbone: a head stitched at the
 * default cut, exported, then run by onnxruntime and by tfjs-layers (tf.loadLayersModel over
 * 127.0.0.1 HTTP), gives the probabilities `predict` gives (backbone engine + head) on the same
 * input. At 64×64 (96×96 for inception_v3 and xception, whose valid convs need more than 64) with
 * seeded weights, so TF.js' plain-JS cpu backend stays quick; the graphs and every op are those
 * of the default size.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GraphBackbone } from '../src/backbones/backbone.ts';
import { KERAS_APPLICATIONS, kerasPreprocessing, type KerasApplicationName } from '../src/backbones/zoo/keras-applications.ts';
import { seededWeights } from '../src/backbones/zoo/random-weights.ts';
import { mulberry32 } from '../src/util/numbers.ts';
import { cacheKey } from '../src/cache/code-spec.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { codeSpecFor } from '../src/extract/run-extract.ts';
import { headClassifier } from '../src/predict/classifier.ts';
import { EXPORTED_OUTPUT, exportOnnx } from '../src/predict/export-onnx.ts';
import { exportTfjs } from '../src/predict/export-tfjs.ts';
import { PROBABILITIES, stitchHead } from '../src/predict/stitch-head.ts';
import { HEAD_FORMAT, type Head, type HeadConfig } from '../src/train-head/head-folder.ts';
import { initHeadParams } from '../src/train-head/head-init.ts';
import { relativeError } from './helpers/compare.ts';
import { TEST_EXTRACT_DEFAULTS } from './helpers/extract-options.ts';
import { serveFolder, type StaticServer } from './helpers/static-server.ts';

/** Small enough for the cpu backend; inception_v3 and xception need more than 64 pixels for their valid convs. */
const sizeFor = (name: KerasApplicationName): readonly [number, number] => (name === 'inception_v3' || name === 'xception' ? [96, 96] : [64, 64]);
const NAMES = Object.keys(KERAS_APPLICATIONS) as KerasApplicationName[];

let root: string;
let server: StaticServer;
beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-export-keras-'));
  server = await serveFolder(root);
});
afterAll(async () => {
  await server?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

function seededBackbone(name: KerasApplicationName, size: readonly [number, number]): GraphBackbone {
  const spec = KERAS_APPLICATIONS[name];
  const graph = spec.graph();
  return {
    id: name,
    graph,
    weights: seededWeights(graph, size, 21, [spec.defaultCut.layer]),
    preprocessing: kerasPreprocessing(spec.mode, size),
    defaultCut: spec.defaultCut,
    namedCuts: [],
    weightsId: `export-test-seed-21-${name}`,
    weightsFrom: 'seeded',
  };
}

/** A head whose first layer is scaled to the codes' magnitude, so its softmax stays far from saturation (where it would hide differences). */
function headOn(backbone: GraphBackbone, codeScale: number, size: readonly [number, number]): Head {
  const spec = codeSpecFor({ backbone, cut: backbone.defaultCut, ...TEST_EXTRACT_DEFAULTS, size });
  const architecture = { inputDim: spec.shape.reduce((a, b) => a * b, 1), hidden: [32], dropout: 0.5, classes: 4 };
  const params = initHeadParams(architecture, 9).map((p, i) => (i === 0 ? { weight: p.weight.map((v) => v / codeScale), bias: p.bias } : p));
  const config = { format: HEAD_FORMAT, architecture, classes: ['a', 'b', 'c', 'd'], cacheKey: cacheKey(spec), codeSpec: spec };
  return { dir: '(test head)', config: config as unknown as HeadConfig, params };
}

describe('export --format onnx and tfjs for every keras.applications backbone', () => {
  it.each(NAMES)('%s: both exports give what predict gives, within 1e-4', async (name) => {
    const size = sizeFor(name);
    const backbone = seededBackbone(name, size);
    const count = 2;
    const random = mulberry32(4);
    const images = Float32Array.from({ length: count * size[0] * size[1] * 3 }, () => random() * 4 - 2);
    const probe = await createOnnxEngine({ backbone, cuts: [backbone.defaultCut], inputSize: size, device: 'cpu', cacheDir: path.join(root, 'cache') });
    const [codes] = await probe.run(images, count).finally(() => probe.dispose());
    const head = headOn(backbone, codes.reduce((m, v) => Math.max(m, Math.abs(v)), 0), size);

    const classifier = await headClassifier(backbone, head, { engine: 'onnx', device: 'cpu', cacheDir: path.join(root, 'cache') });
    const expected = await classifier.run(images, count).finally(() => classifier.dispose());
    expect(Math.max(...expected), 'an unsaturated softmax').toBeLessThan(0.99);

    const stitched = stitchHead(backbone, head);
    const onnxFile = path.join(root, name, 'model.onnx');
    await exportOnnx(stitched, onnxFile);
    const session = await ort.InferenceSession.create(onnxFile);
    const result = await session.run({ images: new ort.Tensor('float32', images, [count, size[0], size[1], 3]) });
    const onnx = result[EXPORTED_OUTPUT].data as Float32Array;
    await session.release();

    await exportTfjs(stitched, PROBABILITIES, path.join(root, name, 'tfjs'));
    const model = await tf.loadLayersModel(`${server.url}/${name}/tfjs/model.json`);
    const y = tf.tidy(() => model.predict(tf.tensor4d(images, [count, size[0], size[1], 3])) as tf.Tensor);
    const tfjs = (await y.data()) as Float32Array;
    y.dispose();
    model.dispose();

    const errors = { onnx: relativeError(onnx, expected), tfjs: relativeError(tfjs, expected) };
    console.log(`${name}: export vs predict, relative error onnx ${errors.onnx.toExponential(2)}, tfjs ${errors.tfjs.toExponential(2)}`);
    expect(errors.onnx).toBeLessThan(1e-4);
    expect(errors.tfjs).toBeLessThan(1e-4);
  });
});
