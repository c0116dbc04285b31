/**
 * `export --format tfjs`: the exported folder, served over real HTTP, loads with
 * `tf.loadLayersModel` and computes what the ONNX engine computes from the same graph.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GraphBackbone } from '../src/backbones/backbone.ts';
import type { Cut } from '../src/backbones/cut.ts';
import { toTfjsLayersModel } from '../src/backbones/keras-topology-writer.ts';
import type { LayerGraph } from '../src/backbones/layer-graph.ts';
import { loadGraphBackbone } from '../src/backbones/zoo.ts';
import { seededWeights } from '../src/backbones/zoo/random-weights.ts';
import { mulberry32 } from '../src/util/numbers.ts';
import { cacheKey } from '../src/cache/code-spec.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { codeSpecFor } from '../src/extract/run-extract.ts';
import { exportTfjs } from '../src/predict/export-tfjs.ts';
import { PROBABILITIES, stitchHead } from '../src/predict/stitch-head.ts';
import { HEAD_FORMAT, type Head, type HeadConfig } from '../src/train-head/head-folder.ts';
import { initHeadParams } from '../src/train-head/head-init.ts';
import { UsageError } from '../src/util/errors.ts';
import { relativeError } from './helpers/compare.ts';
import { TEST_EXTRACT_DEFAULTS } from './helpers/extract-options.ts';
import { hasSharedModels, NEEDS_SHARED_MODELS, SHARED_MODELS } from './helpers/shared.ts';

let root: string;
let server: http.Server;
let baseUrl: string;

beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-export-tfjs-'));
  // A plain static file server over the export folders, as a web page would fetch them.
  server = http.createServer((req, res) => {
    const file = path.join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    if (!file.startsWith(root + path.sep)) {
      res.writeHead(403).end();
      return;
    }
    readFile(file).then(
      (body) => res.writeHead(200, { 'content-type': file.endsWith('.json') ? 'application/json' : 'application/octet-stream' }).end(body),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  if (root) await rm(root, { recursive: true, force: true });
});

/**
 * A head as train-head would save it, with seeded initial weights. stitchHead reads only the
 * architecture, the code spec and the class names, so the training record is left out.
 * `scale` shrinks the weights so the softmax stays far from saturation, where it would hide
 * differences in the codes.
 */
function headFor(backbone: GraphBackbone, cut: Cut, hidden: readonly number[], classes: number, scale = 1): Head {
  const spec = codeSpecFor({ backbone, cut, ...TEST_EXTRACT_DEFAULTS });
  const architecture = { inputDim: spec.shape.reduce((a, b) => a * b, 1), hidden, dropout: 0.5, classes };
  const params = initHeadParams(architecture, 7).map(({ weight, bias }) => ({
    weight: weight.map((v) => v * scale),
    bias: bias.map((_, i) => 0.01 * i),
  }));
  const config: Pick<HeadConfig, 'format' | 'architecture' | 'classes' | 'cacheKey' | 'codeSpec'> = {
    format: HEAD_FORMAT,
    architecture,
    classes: Array.from({ length: classes }, (_, i) => `class_${i}`),
    cacheKey: cacheKey(spec),
    codeSpec: spec,
  };
  return { dir: '(test head)', config: config as HeadConfig, params };
}

function randomImages(count: number, [h, w]: readonly [number, number], seed: number, amplitude: number): Float32Array {
  const random = mulberry32(seed);
  const data = new Float32Array(count * h * w * 3);
  for (let i = 0; i < data.length; i++) data[i] = (random() * 2 - 1) * amplitude;
  return data;
}

interface Comparison {
  readonly error: number;
  readonly expected: Float32Array;
  readonly actual: Float32Array;
}

/** Exports `output` of `backbone`, loads it over HTTP, and runs both it and the ONNX engine on the same images. */
async function exportAndCompare(backbone: GraphBackbone, output: string, folder: string, images: Float32Array, count: number): Promise<Comparison> {
  const written = await exportTfjs(backbone, output, path.join(root, folder));
  expect(written.files.map((f) => path.basename(f))).toEqual(['group1-shard1of1.bin', 'model.json']);
  const model = await tf.loadLayersModel(`${baseUrl}/${folder}/model.json`);
  const engine = await createOnnxEngine({ backbone, cuts: [{ layer: output }], device: 'cpu', cacheDir: path.join(root, 'onnx-cache') });
  try {
    const [h, w] = backbone.preprocessing.size;
    const [expected] = await engine.run(images, count);
    const actual = tf.tidy(() => {
      const y = model.predict(tf.tensor4d(images, [count, h, w, 3])) as tf.Tensor;
      return y.reshape([count, -1]);
    });
    const data = (await actual.data()) as Float32Array;
    actual.dispose();
    return { error: relativeError(data, expected), expected, actual: data };
  } finally {
    await engine.dispose();
    model.dispose();
  }
}

describe('export --format tfjs', () => {
  it("tiny-vgg-random: a head on block2_pool, flattened (Keras 'same' convs, valid pools)", async () => {
    const backbone = await loadGraphBackbone('tiny-vgg-random');
    const stitched = stitchHead(backbone, headFor(backbone, { layer: 'block2_pool' }, [24], 5, 0.2));
    const images = randomImages(4, backbone.preprocessing.size, 1, 128);
    const { error, actual, expected } = await exportAndCompare(stitched, PROBABILITIES, 'tiny', images, 4);
    expect(actual.length).toBe(4 * 5);
    expect(error).toBeLessThan(1e-4);

    // The project's own TF.js reader takes the folder back as a backbone that computes the same.
    const reloaded = await loadGraphBackbone(path.join(root, 'tiny', 'model.json'));
    expect(reloaded.graph.nodes.map((n) => n.name)).toEqual(stitched.graph.nodes.map((n) => n.name));
    const engine = await createOnnxEngine({ backbone: reloaded, cuts: [{ layer: PROBABILITIES }], device: 'cpu', cacheDir: path.join(root, 'onnx-cache') });
    try {
      const [again] = await engine.run(images, 4);
      expect(relativeError(again, expected)).toBeLessThan(1e-6);
    } finally {
      await engine.dispose();
    }
  });

  it('tiny-vgg-random: a head on block2_conv2, average-pooled', async () => {
    const backbone = await loadGraphBackbone('tiny-vgg-random');
    const stitched = stitchHead(backbone, headFor(backbone, { layer: 'block2_conv2', pool: 'avg' }, [12], 3));
    const images = randomImages(4, backbone.preprocessing.size, 2, 128);
    const { error, actual } = await exportAndCompare(stitched, PROBABILITIES, 'tiny-pooled', images, 4);
    expect(actual.length).toBe(4 * 3);
    expect(error).toBeLessThan(1e-4);
  });

  it('writes a manifest whose weights tfjs-layers binds by name, under sanitised layer names', async () => {
    const backbone = await loadGraphBackbone('tiny-vgg-random');
    const graph: LayerGraph = {
      ...backbone.graph,
      nodes: backbone.graph.nodes.map((n) => ({ ...n, name: n.name.replace('block1_', 'block1/'), inputs: n.inputs.map((i) => i.replace('block1_', 'block1/')) })),
    };
    const weights = new Map([...backbone.weights].map(([k, v]) => [k.replace('block1_', 'block1/'), v]));
    const { modelTopology, weightSpecs, weightData } = toTfjsLayersModel(graph, weights, [32, 32], 'block2_conv1');
    const names = modelTopology.model_config.config.layers.map((l) => l.name);
    expect(names).toEqual(['input_1', 'block1_conv1', 'block1_conv2', 'block1_pool', 'block2_conv1']);
    expect(weightSpecs.map((w) => w.name)).toEqual([
      'block1_conv1/kernel',
      'block1_conv1/bias',
      'block1_conv2/kernel',
      'block1_conv2/bias',
      'block2_conv1/kernel',
      'block2_conv1/bias',
    ]);
    expect(weightSpecs[0].shape).toEqual([3, 3, 3, 8]);
    expect(weightData.byteLength).toBe(weightSpecs.reduce((n, w) => n + 4 * w.shape.reduce((a, b) => a * b, 1), 0));
  });
});

/**
 * Geometry Keras has no one-layer name for: explicit pads (ZeroPadding2D + 'valid'), Caffe's
 * counted average-pool pads, ceil-mode overhang that equals 'same', a concat, Caffe's C, H, W
 * flatten, and a max pool padded with zeros after a ReLU. Small enough for 2 cores.
 */
describe('export --format tfjs: padding and pooling that need more than one Keras layer', () => {
  const graph: LayerGraph = {
    name: 'pads',
    nodes: [
      { name: 'data', op: 'input', inputs: [], channels: 3 },
      // 7×7 stride 2 pad 3 on 20: Keras 'same' would pad 2 before, 3 after, so ZeroPadding2D.
      { name: 'conv/a', op: 'conv2d', inputs: ['data'], filters: 6, kernel: [7, 7], stride: [2, 2], pad: [3, 3, 3, 3], dilation: [1, 1], activation: 'relu' },
      // 10 → ceil((10-3)/2)+1 = 5 with a 1-cell overhang, which equals Keras 'same' here.
      { name: 'pool/ceil', op: 'maxpool', inputs: ['conv/a'], kernel: [3, 3], stride: [2, 2], pad: 'valid', ceil: true },
      // Pads of 2 on a 3×3 window: not 'same', so zeros around a non-negative input.
      { name: 'pool/zero', op: 'maxpool', inputs: ['conv/a'], kernel: [3, 3], stride: [2, 2], pad: [2, 2, 2, 2], ceil: false },
      { name: 'conv/b', op: 'conv2d', inputs: ['pool/ceil'], filters: 4, kernel: [1, 1], stride: [1, 1], pad: 'valid', dilation: [1, 1], activation: 'linear' },
      // Caffe average pool with pad 1: the padding counts in the divisor.
      { name: 'avg/counted', op: 'avgpool', inputs: ['conv/b'], kernel: [3, 3], stride: [1, 1], pad: [1, 1, 1, 1], ceil: true },
      { name: 'zp', op: 'zeropad', inputs: ['pool/zero'], pad: [0, 0, 0, 0] },
      { name: 'pool/zero_crop', op: 'maxpool', inputs: ['zp'], kernel: [2, 2], stride: [1, 1], pad: 'valid', ceil: false },
      { name: 'drop', op: 'dropout', inputs: ['avg/counted'], rate: 0.5 },
      { name: 'cat', op: 'concat', inputs: ['drop', 'pool/zero_crop'] },
      { name: 'cat_relu', op: 'relu', inputs: ['cat'] },
      { name: 'flat', op: 'flatten', inputs: ['cat_relu'], order: 'chw' },
      { name: 'fc', op: 'dense', inputs: ['flat'], units: 7, activation: 'linear' },
      { name: 'prob', op: 'softmax', inputs: ['fc'] },
      // 6 → ceil((6-3)/2)+1 = 3, a 1-cell overhang left out of the divisor: Keras 'same' on 6.
      { name: 'avg/ceil', op: 'avgpool', inputs: ['pool/zero'], kernel: [3, 3], stride: [2, 2], pad: 'valid', ceil: true },
      // Counted pad 1, then 8 → ceil((8-3)/2)+1 = 4 with an uncounted overhang: zeros, then 'same' on 8.
      { name: 'avg/both', op: 'avgpool', inputs: ['pool/zero'], kernel: [3, 3], stride: [2, 2], pad: [1, 1, 1, 1], ceil: true },
    ],
  };
  const size = [20, 20] as const;
  const backbone: GraphBackbone = {
    id: 'pads',
    graph,
    weights: seededWeights(graph, size, 3, ['prob', 'avg/ceil', 'avg/both']),
    preprocessing: { size, channels: 'rgb', mean: [0, 0, 0], std: [1, 1, 1] },
    defaultCut: { layer: 'prob' },
    namedCuts: [],
    weightsId: 'seed 3',
    weightsFrom: 'seed 3',
  };

  it.each(['cat', 'prob', 'avg/ceil', 'avg/both'])('matches the ONNX engine at %s', async (output) => {
    const images = randomImages(3, size, 4, 1);
    const { error } = await exportAndCompare(backbone, output, `pads-${output.replace('/', '-')}`, images, 3);
    expect(error).toBeLessThan(1e-4);
  });

  it('maps each node to the Keras layers the comments promise', () => {
    const { modelTopology } = toTfjsLayersModel(graph, backbone.weights, size, 'prob');
    const layers = modelTopology.model_config.config.layers.map((l) => `${l.class_name}:${l.name}:${String(l.config.padding ?? '')}`);
    expect(layers).toEqual([
      'InputLayer:data:',
      'ZeroPadding2D:conv_a_pad:3,3,3,3',
      'Conv2D:conv_a:valid',
      'MaxPooling2D:pool_ceil:same',
      'ZeroPadding2D:pool_zero_pad:2,2,2,2',
      'MaxPooling2D:pool_zero:valid',
      'Conv2D:conv_b:valid',
      'ZeroPadding2D:avg_counted_pad:1,1,1,1',
      'AveragePooling2D:avg_counted:valid',
      'ZeroPadding2D:zp:0,0,0,0',
      'MaxPooling2D:pool_zero_crop:valid',
      'Dropout:drop:',
      'Concatenate:cat:',
      'Activation:cat_relu:',
      'Permute:flat_permute:',
      'Flatten:flat:',
      'Dense:fc:',
      'Activation:prob:',
    ]);
    const tail = (output: string) =>
      toTfjsLayersModel(graph, backbone.weights, size, output)
        .modelTopology.model_config.config.layers.slice(-2)
        .map((l) => `${l.class_name}:${l.name}:${String(l.config.padding ?? '')}`);
    expect(tail('avg/ceil')).toEqual(['MaxPooling2D:pool_zero:valid', 'AveragePooling2D:avg_ceil:same']);
    expect(tail('avg/both')).toEqual(['ZeroPadding2D:avg_both_pad:1,1,1,1', 'AveragePooling2D:avg_both:same']);
  });

  it('refuses pads that are exact only on non-negative input, and average pools with uncounted overhang', () => {
    const maxOnLinear: LayerGraph = {
      ...graph,
      // conv/b is linear, so its values may be negative; pad 2 on a 3×3 stride-1 pool is not 'same'.
      nodes: [...graph.nodes.slice(0, 5), { name: 'bad', op: 'maxpool', inputs: ['conv/b'], kernel: [3, 3], stride: [1, 1], pad: [2, 2, 2, 2], ceil: false }],
    };
    expect(() => toTfjsLayersModel(maxOnLinear, backbone.weights, size, 'bad')).toThrow(UsageError);
    expect(() => toTfjsLayersModel(maxOnLinear, backbone.weights, size, 'bad')).toThrow(/'bad'.*non-negative/);
    // conv/b is 5×5: a 4×4 stride-2 ceil-mode pool gives 2 outputs with a 1-cell overhang, while
    // 'same' would give 3, so no Keras padding leaves exactly the overhang out of the divisor.
    const avgOverhang: LayerGraph = {
      ...graph,
      nodes: [...graph.nodes.slice(0, 5), { name: 'bad', op: 'avgpool', inputs: ['conv/b'], kernel: [4, 4], stride: [2, 2], pad: 'valid', ceil: true }],
    };
    expect(() => toTfjsLayersModel(avgOverhang, backbone.weights, size, 'bad')).toThrow(/'bad' \(avgpool\).*--format onnx/);
  });
});

describe('export --format tfjs: the built-in squeezenet1_1 (real Caffe weights, no ../shared needed)', () => {
  it("squeezenet1_1: a head on fire9/concat:avg (ceil-mode max pools, fire concats)", async () => {
    const backbone = await loadGraphBackbone('squeezenet1_1', { weightsDir: path.join(root, 'no-weights'), download: false });
    const stitched = stitchHead(backbone, headFor(backbone, { layer: 'fire9/concat', pool: 'avg' }, [16], 4));
    const images = randomImages(2, backbone.preprocessing.size, 5, 128);
    const { error, actual } = await exportAndCompare(stitched, PROBABILITIES, 'squeezenet', images, 2);
    console.log(`squeezenet1_1 head probabilities: ${[...actual].map((p) => p.toFixed(3)).join(' ')}, relative error ${error.toExponential(2)}`);
    expect(Math.max(...actual)).toBeLessThan(0.99); // not saturated, so code differences would show
    expect(error).toBeLessThan(1e-4);
    // And the codes themselves, 14×14×512 of them, straight from the backbone.
    const codes = await exportAndCompare(backbone, 'fire9/concat', 'squeezenet-codes', images, 2);
    expect(codes.actual.length).toBe(2 * 14 * 14 * 512);
    expect(codes.error).toBeLessThan(1e-4);
  });

});

describe.skipIf(!hasSharedModels)(`export --format tfjs: real Caffe backbones${NEEDS_SHARED_MODELS}`, () => {
  it('googlenet: LRN has no tfjs-layers counterpart, a one-line usage error pointing at ONNX', async () => {
    const backbone = await loadGraphBackbone('googlenet', { weightsDir: SHARED_MODELS, download: false });
    const stitched = stitchHead(backbone, headFor(backbone, { layer: 'pool5/7x7_s1' }, [], 3));
    const run = exportTfjs(stitched, PROBABILITIES, path.join(root, 'googlenet'));
    await expect(run).rejects.toThrow(UsageError);
    await expect(run).rejects.toThrow(/^cannot export layer 'pool1\/norm1' \(lrn\).*--format onnx/);
    const error = await run.catch((e: Error) => e);
    expect(String((error as Error).message)).not.toContain('\n');
  });
});
