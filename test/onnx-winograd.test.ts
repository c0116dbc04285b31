/**
 * Winograd convolution as ONNX ops: the transform matrices are exact, and models built with
 * it compute what direct convolution does, on odd sizes, every kind of padding, channel counts
 * that are multiples of nothing, CNHW maps flowing into pools, concat, flatten and dense.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { planCuts, type Cut } from '../src/backbones/cut.ts';
import type { LayerGraph, LayerNode, Padding } from '../src/backbones/layer-graph.ts';
import { seededWeights } from '../src/backbones/zoo/random-weights.ts';
import { mulberry32 } from '../src/util/numbers.ts';
import { tinyRandomBackbone } from '../src/backbones/zoo/tiny-random.ts';
import { buildOnnxModel, ONNX_INPUT, onnxOutputName, type OnnxModelSpec } from '../src/engines/onnx-model.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { WINOGRAD_POINTS, winogradEligible, winogradMatrices, winogradPays, type WinogradTile } from '../src/engines/onnx-winograd.ts';
import { relativeError } from './helpers/compare.ts';

const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'bottleneck-winograd-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

function images(count: number, h: number, w: number, c: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length: count * h * w * c }, () => (random() - 0.5) * 200);
}

async function runModel(model: Uint8Array, x: Float32Array, shape: number[], outputs: number): Promise<Float32Array[]> {
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 2 });
  const result = await session.run({ [ONNX_INPUT]: new ort.Tensor('float32', x, shape) });
  await session.release();
  return Array.from({ length: outputs }, (_, i) => result[onnxOutputName(i)].data as Float32Array);
}

/** Largest relative error of Winograd (every eligible conv) against direct, over all cuts. */
async function winogradError(spec: Omit<OnnxModelSpec, 'convAlgorithm' | 'winograd'>, tile: WinogradTile, x: Float32Array, shape: number[]): Promise<number> {
  const direct = await runModel(buildOnnxModel({ ...spec, convAlgorithm: 'direct' }), x, shape, spec.cuts.length);
  const winograd = await runModel(buildOnnxModel({ ...spec, convAlgorithm: 'winograd', winograd: { tile, everywhere: true } }), x, shape, spec.cuts.length);
  return Math.max(...direct.map((d, i) => relativeError(winograd[i], d)));
}

describe('Winograd transform matrices', () => {
  for (const tile of [2, 4] as const) {
    it(`F(${tile},3) computes a 1-D correlation exactly`, () => {
      const { AT, G, BT, n } = winogradMatrices(tile, 3, WINOGRAD_POINTS[tile]);
      const random = mulberry32(tile);
      for (let trial = 0; trial < 20; trial++) {
        const g = [random(), random(), random()].map((v) => v * 2 - 1);
        const d = Array.from({ length: n }, () => random() * 2 - 1);
        const gg = G.map((row) => row.reduce((s, v, k) => s + v * g[k], 0));
        const dd = BT.map((row) => row.reduce((s, v, k) => s + v * d[k], 0));
        const y = AT.map((row) => row.reduce((s, v, k) => s + v * gg[k] * dd[k], 0));
        const expected = Array.from({ length: tile }, (_, i) => g[0] * d[i] + g[1] * d[i + 1] + g[2] * d[i + 2]);
        y.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 12));
      }
    });
  }

  it('Lavin & Gray F(2,3): Bᵀ and Aᵀ up to the sign of rows', () => {
    const { AT, BT } = winogradMatrices(2, 3, WINOGRAD_POINTS[2]);
    expect(BT.map((row) => row.map(Math.abs))).toEqual([
      [1, 0, 1, 0],
      [0, 1, 1, 0],
      [0, 1, 1, 0],
      [0, 1, 0, 1],
    ]);
    expect(AT).toEqual([
      [1, 1, 1, 0],
      [0, 1, -1, 1],
    ]);
  });

  it('covers 3×3 stride-1 undilated convs, and pays from 128 → 128 channels', () => {
    expect(winogradEligible([3, 3], [1, 1], [1, 1])).toBe(true);
    expect(winogradEligible([3, 3], [2, 2], [1, 1])).toBe(false);
    expect(winogradEligible([3, 3], [1, 1], [2, 2])).toBe(false);
    expect(winogradEligible([5, 5], [1, 1], [1, 1])).toBe(false);
    expect(winogradPays(64, 64)).toBe(false);
    expect(winogradPays(64, 128)).toBe(false);
    expect(winogradPays(128, 128)).toBe(true);
    expect(winogradPays(128, 256)).toBe(true);
    expect(winogradPays(512, 512)).toBe(true);
  });
});

/** input → conv a → relu → conv b → maxpool, and a softmax conv on the side concatenated with b. */
function convGraph(cin: number, [ca, cb]: [number, number], pad: Padding, padB: Padding): LayerGraph {
  const conv = (name: string, input: string, filters: number, p: Padding, activation: 'relu' | 'linear' | 'softmax' = 'relu'): LayerNode => ({
    name,
    op: 'conv2d',
    inputs: [input],
    filters,
    kernel: [3, 3],
    stride: [1, 1],
    pad: p,
    dilation: [1, 1],
    activation,
  });
  return {
    name: 'conv-graph',
    nodes: [
      { name: 'input', op: 'input', inputs: [], channels: cin },
      conv('a', 'input', ca, pad, 'linear'),
      { name: 'a_relu', op: 'relu', inputs: ['a'] },
      conv('b', 'a_relu', cb, padB),
      { name: 'pool', op: 'maxpool', inputs: ['b'], kernel: [2, 2], stride: [2, 2], pad: 'valid', ceil: false },
      conv('side', 'a_relu', 5, padB, 'softmax'),
      { name: 'cat', op: 'concat', inputs: ['side', 'b'] },
    ],
  };
}

describe('Winograd ONNX models agree with direct convolution', () => {
  const cases: { size: [number, number]; cin: number; channels: [number, number]; pad: Padding; padB: Padding }[] = [
    { size: [8, 8], cin: 3, channels: [7, 5], pad: 'same', padB: 'same' },
    { size: [7, 9], cin: 5, channels: [13, 11], pad: 'same', padB: 'valid' },
    { size: [13, 6], cin: 1, channels: [6, 9], pad: 'valid', padB: [1, 0, 2, 1] },
    { size: [5, 11], cin: 17, channels: [3, 19], pad: [0, 2, 1, 0], padB: 'same' },
    { size: [3, 3], cin: 4, channels: [5, 6], pad: 'same', padB: 'same' },
    { size: [21, 18], cin: 9, channels: [10, 7], pad: [2, 1, 0, 2], padB: 'same' },
  ];
  for (const tile of [2, 4] as const) {
    it(`F(${tile}×${tile}, 3×3) on odd sizes and pads, through relu, pooling and concat`, async () => {
      let worst = 0;
      for (const [i, { size, cin, channels, pad, padB }] of cases.entries()) {
        const graph = convGraph(cin, channels, pad, padB);
        const cuts: Cut[] = [{ layer: 'a' }, { layer: 'pool' }, { layer: 'cat' }, { layer: 'b', pool: 'avg' }];
        const plan = planCuts(graph, size, cuts);
        const weights = seededWeights(graph, size, 10 + i);
        const x = images(2, size[0], size[1], cin, i);
        worst = Math.max(worst, await winogradError({ plan, cuts, weights }, tile, x, [2, size[0], size[1], cin]));
      }
      expect(worst).toBeLessThan(1e-5);
    });
  }

  it('on the tiny random VGG, up to its classifier', async () => {
    const backbone = tinyRandomBackbone(3);
    const cuts: Cut[] = [{ layer: 'block1_conv2' }, { layer: 'block2_pool' }, { layer: 'block2_pool', pool: 'max' }, { layer: 'fc1' }, { layer: 'predictions' }];
    const plan = planCuts(backbone.graph, backbone.preprocessing.size, cuts);
    const x = images(3, 32, 32, 3, 5);
    for (const tile of [2, 4] as const) {
      expect(await winogradError({ plan, cuts, weights: backbone.weights }, tile, x, [3, 32, 32, 3])).toBeLessThan(1e-5);
    }
  });

  it('leaves a model without Winograd convs exactly as direct writes it', () => {
    const backbone = tinyRandomBackbone(3);
    const cuts: Cut[] = [{ layer: 'block2_pool' }];
    const plan = planCuts(backbone.graph, backbone.preprocessing.size, cuts);
    // Its 8- and 16-channel convs are too narrow for Winograd to pay.
    const direct = buildOnnxModel({ plan, cuts, weights: backbone.weights, convAlgorithm: 'direct' });
    const winograd = buildOnnxModel({ plan, cuts, weights: backbone.weights, convAlgorithm: 'winograd' });
    expect(Buffer.from(winograd).equals(Buffer.from(direct))).toBe(true);
  });
});

describe('the onnx engine', () => {
  it('caches one model per conv algorithm, with the same codes', async () => {
    const backbone = tinyRandomBackbone(4);
    const cuts: Cut[] = [{ layer: 'block2_pool' }];
    const x = images(2, 32, 32, 3, 9);
    const codes: Float32Array[] = [];
    for (const convAlgorithm of ['direct', 'winograd'] as const) {
      const engine = await createOnnxEngine({ backbone, cuts, device: 'cpu', cacheDir, convAlgorithm, winograd: { everywhere: true } });
      codes.push((await engine.run(x, 2))[0]);
      await engine.dispose();
    }
    expect(readdirSync(path.join(cacheDir, 'onnx'))).toHaveLength(2);
    expect(relativeError(codes[1], codes[0])).toBeLessThan(1e-5);
  });
});
