/**
 * VGG16 at full size, loaded the way users have it: a Keras h5 file in the weights folder.
 * Both engines agree on one image, and fc1 sees block5_pool in Keras' H, W, C order.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GraphBackbone } from '../src/backbones/backbone.ts';
import type { WeightTensor } from '../src/backbones/weights.ts';
import { toKerasLayers, writeKerasH5, type KerasH5Layer } from '../src/backbones/weights/keras-h5-writer.ts';
import { KERAS_VGG16_FILES, loadGraphBackbone } from '../src/backbones/zoo.ts';
import { seededWeights } from '../src/backbones/zoo/random-weights.ts';
import { vgg16Graph } from '../src/backbones/zoo/vgg16.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { createTfjsEngine } from '../src/engines/tfjs-engine.ts';
import { relativeError } from './helpers/compare.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'bottleneck-vgg16-'));
const fullDir = path.join(tmp, 'full');
const notopDir = path.join(tmp, 'notop');

describe('vgg16 from Keras h5 files', () => {
  let canonical: Map<string, WeightTensor>;
  let fullLayers: KerasH5Layer[];

  beforeAll(async () => {
    canonical = seededWeights(vgg16Graph(), [224, 224], 16);
    fullLayers = toKerasLayers(vgg16Graph(), canonical);
    await import('node:fs/promises').then((fs) => Promise.all([fs.mkdir(fullDir), fs.mkdir(notopDir)]));
    await writeKerasH5(path.join(fullDir, KERAS_VGG16_FILES.full.file), fullLayers);
    await writeKerasH5(path.join(notopDir, KERAS_VGG16_FILES.notop.file), toKerasLayers(vgg16Graph(), canonical, 'block5_pool'));
  }, 300_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('runs full size on both engines, which agree within 1e-4, with fc1 in Keras order', async () => {
    const cuts = [{ layer: 'block5_pool' }, { layer: 'relu6' }, { layer: 'fc2' }];
    const backbone: GraphBackbone = await loadGraphBackbone('vgg16', { weightsDir: fullDir, cuts, download: false });
    const image = new Float32Array(224 * 224 * 3);
    for (let i = 0; i < image.length; i++) image[i] = ((i * 7919) % 256) - 120;

    const opts = { backbone, cuts, device: 'cpu' as const, cacheDir: path.join(tmp, 'cache') };
    const onnx = await createOnnxEngine(opts);
    const [pool5, relu6, fc2] = await onnx.run(image, 1);
    await onnx.dispose();
    const tfjs = await createTfjsEngine(opts);
    const fromTfjs = await tfjs.run(image, 1);
    await tfjs.dispose();

    expect(pool5).toHaveLength(7 * 7 * 512);
    expect(relu6).toHaveLength(4096);
    expect(relativeError(fromTfjs[0], pool5)).toBeLessThan(1e-4);
    expect(relativeError(fromTfjs[1], relu6)).toBeLessThan(1e-4);
    expect(relativeError(fromTfjs[2], fc2)).toBeLessThan(1e-4);

    // fc1 by hand with the Keras kernel exactly as stored ([25088, 4096], rows in H, W, C order).
    const fc1 = fullLayers.find((l) => l.name === 'fc1')!;
    const expected = new Float32Array(4096);
    for (let o = 0; o < 4096; o++) {
      let sum = fc1.bias!.data[o];
      for (let i = 0; i < 25088; i++) sum += pool5[i] * fc1.kernel!.data[i * 4096 + o];
      expected[o] = Math.max(0, sum);
    }
    expect(relativeError(relu6, expected)).toBeLessThan(1e-4);
  });

  it('reads the notop file for block5_pool, and asks for the full file past it', async () => {
    const backbone = await loadGraphBackbone('vgg16', { weightsDir: notopDir, download: false });
    expect(backbone.weightsFrom).toContain(KERAS_VGG16_FILES.notop.file);
    expect(backbone.weights.has('block5_conv3.weight')).toBe(true);
    expect(backbone.weights.has('fc1.weight')).toBe(false);
    await expect(loadGraphBackbone('vgg16', { weightsDir: notopDir, cuts: [{ layer: 'relu6' }], download: false })).rejects.toThrow(
      new RegExp(`put ${KERAS_VGG16_FILES.full.file} \\(md5 ${KERAS_VGG16_FILES.full.md5}\\) in ${notopDir}`),
    );
  });
});
