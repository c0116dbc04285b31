/**
 * `export --format teachable-machine`: the folder loads over 127.0.0.1 HTTP with
 * `tf.loadLayersModel` plus its metadata.json (and with the real `@teachablemachine/image`
 * package's `load(modelURL, metadataURL)` where it is installed; see test/reference/README.md),
 * and fed Teachable Machine's own input (x / 127 − 1 of the same pixels) gives the
 * probabilities bottleneck computes with the backbone's own preprocessing.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GraphBackbone } from '../src/backbones/backbone.ts';
import type { Cut } from '../src/backbones/cut.ts';
import { preprocessInto } from '../src/backbones/preprocess.ts';
import { teachableMachinePreprocessing } from '../src/backbones/teachable-machine.ts';
import { loadGraphBackbone } from '../src/backbones/zoo.ts';
import { mulberry32 } from '../src/util/numbers.ts';
import { cacheKey } from '../src/cache/code-spec.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { codeSpecFor } from '../src/extract/run-extract.ts';
import { exportTeachableMachine, TM_ADAPTER } from '../src/predict/export-teachable-machine.ts';
import { PROBABILITIES, stitchHead } from '../src/predict/stitch-head.ts';
import { HEAD_FORMAT, type Head, type HeadConfig } from '../src/train-head/head-folder.ts';
import { initHeadParams } from '../src/train-head/head-init.ts';
import { relativeError } from './helpers/compare.ts';
import { TEST_EXTRACT_DEFAULTS } from './helpers/extract-options.ts';
import { hasSharedModels, NEEDS_SHARED_MODELS, SHARED_MODELS } from './helpers/shared.ts';
import { serveFolder, type StaticServer } from './helpers/static-server.ts';

/** The real package, when installed somewhere (it pins @tensorflow/tfjs 1.3.1 as a peer, so it is not a dependency here). */
const TM_PACKAGE = process.env.BOTTLENECK_TM_PACKAGE;

let root: string;
let server: StaticServer;
beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-export-tm-'));
  server = await serveFolder(root);
});
afterAll(async () => {
  await server?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

function headFor(backbone: GraphBackbone, cut: Cut, classes: readonly string[]): Head {
  const spec = codeSpecFor({ backbone, cut, ...TEST_EXTRACT_DEFAULTS });
  const architecture = { inputDim: spec.shape.reduce((a, b) => a * b, 1), hidden: [16], dropout: 0.5, classes: classes.length };
  const params = initHeadParams(architecture, 3).map(({ weight, bias }) => ({ weight: weight.map((v) => v * 0.3), bias: bias.map((_, i) => 0.02 * i) }));
  const config = { format: HEAD_FORMAT, architecture, classes, cacheKey: cacheKey(spec), codeSpec: spec } as Pick<HeadConfig, 'format' | 'architecture' | 'classes' | 'cacheKey' | 'codeSpec'>;
  return { dir: '(test head)', config: config as HeadConfig, params };
}

function randomPixels(count: number, [h, w]: readonly [number, number], seed: number): Uint8Array {
  const random = mulberry32(seed);
  return Uint8Array.from({ length: count * h * w * 3 }, () => Math.floor(random() * 256));
}

function preprocessAll(pixels: Uint8Array, count: number, prep: GraphBackbone['preprocessing']): Float32Array {
  const [h, w] = prep.size;
  const out = new Float32Array(count * h * w * 3);
  for (let i = 0; i < count; i++) preprocessInto(pixels.subarray(i * h * w * 3, (i + 1) * h * w * 3), prep, out, i * h * w * 3);
  return out;
}

/** Exports, then checks the folder against bottleneck's own probabilities on the same pixels. */
async function exportAndCompare(backbone: GraphBackbone, cut: Cut, folder: string, count: number): Promise<{ error: number; modelJson: { modelTopology: unknown }; labels: string[] }> {
  const labels = ['가위', 'rock', 'paper'];
  const stitched = stitchHead(backbone, headFor(backbone, cut, labels));
  const out = path.join(root, folder);
  const written = await exportTeachableMachine(stitched, PROBABILITIES, labels, out);
  expect(written.files.map((f) => path.basename(f))).toEqual(['weights.bin', 'metadata.json', 'model.json']);
  const size = stitched.preprocessing.size;
  const pixels = randomPixels(count, size, 5);
  const engine = await createOnnxEngine({ backbone: stitched, cuts: [{ layer: PROBABILITIES }], device: 'cpu', cacheDir: path.join(root, 'onnx-cache') });
  const [expected] = await engine.run(preprocessAll(pixels, count, stitched.preprocessing), count);
  await engine.dispose();

  const metadata = (await (await fetch(`${server.url}/${folder}/metadata.json`)).json()) as { labels: string[]; imageSize: number; packageName: string };
  expect(metadata).toMatchObject({ labels, imageSize: size[0], packageName: '@teachablemachine/image' });
  const model = await tf.loadLayersModel(`${server.url}/${folder}/model.json`);
  const tmInput = preprocessAll(pixels, count, teachableMachinePreprocessing(size));
  const y = tf.tidy(() => model.predict(tf.tensor4d(tmInput, [count, size[0], size[1], 3])) as tf.Tensor);
  const actual = (await y.data()) as Float32Array;
  y.dispose();
  model.dispose();
  const modelJson = JSON.parse(await readFile(path.join(out, 'model.json'), 'utf8')) as { modelTopology: unknown };
  return { error: relativeError(actual, expected), modelJson, labels: metadata.labels };
}

describe('export --format teachable-machine', () => {
  it('tiny-vgg-random (BGR minus the mean): a 1×1 adapter turns Teachable Machine input into the backbone\'s, within 1e-4', async () => {
    const backbone = await loadGraphBackbone('tiny-vgg-random');
    const { error, modelJson } = await exportAndCompare(backbone, { layer: 'block2_pool' }, 'tiny', 3);
    expect(JSON.stringify(modelJson.modelTopology)).toContain(TM_ADAPTER);
    expect(error).toBeLessThan(1e-4);
  });

  it.skipIf(!hasSharedModels)(`a head on the Teachable Machine MobileNet takes its input as it is${NEEDS_SHARED_MODELS}`, async () => {
    const backbone = await loadGraphBackbone(path.join(SHARED_MODELS, 'teachable-machine', 'model.json'));
    const { error, modelJson } = await exportAndCompare(backbone, backbone.defaultCut, 'tm', 2);
    expect(JSON.stringify(modelJson.modelTopology)).not.toContain(TM_ADAPTER);
    expect(error).toBeLessThan(1e-4);
    // The folder is itself a Teachable Machine export to bottleneck: its base, head and labels.
    const again = await loadGraphBackbone(path.join(root, 'tm', 'model.json'));
    expect(again.classNames).toEqual(['가위', 'rock', 'paper']);
  });

  it.skipIf(!TM_PACKAGE)(`loads with the real @teachablemachine/image load(modelURL, metadataURL)${TM_PACKAGE ? '' : ' [skipped: set BOTTLENECK_TM_PACKAGE to an installed @teachablemachine/image]'}`, async () => {
    const backbone = await loadGraphBackbone('tiny-vgg-random');
    await exportAndCompare(backbone, { layer: 'block2_pool' }, 'tiny-real', 2);
    const tmImage = createRequire(import.meta.url)(TM_PACKAGE!) as {
      load(model: string, metadata: string): Promise<{ model: tf.LayersModel; getClassLabels(): string[]; getTotalClasses(): number }>;
    };
    const loaded = await tmImage.load(`${server.url}/tiny-real/model.json`, `${server.url}/tiny-real/metadata.json`);
    expect(loaded.getClassLabels()).toEqual(['가위', 'rock', 'paper']);
    expect(loaded.getTotalClasses()).toBe(3);
    const size = backbone.preprocessing.size;
    const pixels = randomPixels(2, size, 5);
    const stitched = stitchHead(backbone, headFor(backbone, { layer: 'block2_pool' }, ['가위', 'rock', 'paper']));
    const engine = await createOnnxEngine({ backbone: stitched, cuts: [{ layer: PROBABILITIES }], device: 'cpu', cacheDir: path.join(root, 'onnx-cache') });
    const [expected] = await engine.run(preprocessAll(pixels, 2, stitched.preprocessing), 2);
    await engine.dispose();
    const y = loaded.model.predict(tf.tensor4d(preprocessAll(pixels, 2, teachableMachinePreprocessing(size)), [2, size[0], size[1], 3])) as tf.Tensor;
    expect(relativeError((await y.data()) as Float32Array, expected)).toBeLessThan(1e-4);
  });
});
