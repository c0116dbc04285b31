/** The two engines on the tiny random VGG: same codes at every kind of cut, batch after batch. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Cut } from '../src/backbones/cut.ts';
import { tinyRandomBackbone } from '../src/backbones/zoo/tiny-random.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { createEngine } from '../src/engines/select-engine.ts';
import { createTfjsEngine } from '../src/engines/tfjs-engine.ts';
import { relativeError } from './helpers/compare.ts';

const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'bottleneck-parity-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

function images(count: number, size: number, seed: number): Float32Array {
  const x = new Float32Array(count * size * size * 3);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 12.9898 + seed) * 120;
  return x;
}

describe('onnx and tfjs engines agree (tiny random VGG)', () => {
  const backbone = tinyRandomBackbone(7);
  const cuts: Cut[] = [
    { layer: 'block1_conv2' },
    { layer: 'block1_pool', pool: 'avg' },
    { layer: 'block2_pool' },
    { layer: 'block2_pool', pool: 'max' },
    { layer: 'relu6' },
    { layer: 'predictions' },
  ];

  it('at the native size and at another one, batch after batch', async () => {
    for (const inputSize of [undefined, [48, 40] as const]) {
      // The dense layers only fit the native size; the conv base runs at any size.
      const sized = inputSize ? cuts.filter((c) => c.layer !== 'relu6' && c.layer !== 'predictions') : cuts;
      const opts = { backbone, cuts: sized, inputSize, device: 'cpu' as const, cacheDir };
      const onnx = await createOnnxEngine(opts);
      const tfjs = await createTfjsEngine(opts);
      const [h, w] = onnx.inputSize;
      expect(tfjs.outputs).toEqual(onnx.outputs);
      for (const [count, seed] of [[3, 1], [1, 2]]) {
        const x = images(count, h, seed).subarray(0, count * h * w * 3);
        const a = await onnx.run(x, count);
        const b = await tfjs.run(x, count);
        a.forEach((codes, i) => {
          expect(codes).toHaveLength(count * onnx.outputs[i].size);
          expect(relativeError(b[i], codes)).toBeLessThan(1e-4);
        });
      }
      await onnx.dispose();
      await tfjs.dispose();
    }
  });

  it('reports code shapes in H, W, C order', async () => {
    const onnx = await createOnnxEngine({ backbone, cuts, device: 'cpu', cacheDir });
    expect(onnx.outputs.map((o) => o.shape)).toEqual([[32, 32, 8], [8], [8, 8, 16], [16], [32], [10]]);
    await onnx.dispose();
  });

  it('auto picks onnx on a CPU machine and says which provider runs', async () => {
    const engine = await createEngine({ engine: 'auto', backbone, cuts, device: 'auto', cacheDir });
    expect(`${engine.name}/${engine.provider}`).toBe('onnx/cpu');
    await engine.dispose();
  });

  it('refuses an unknown layer with the list of known ones', async () => {
    await expect(createOnnxEngine({ backbone, cuts: [{ layer: 'block9_pool' }], device: 'cpu', cacheDir })).rejects.toThrow(
      /unknown layer 'block9_pool' in tiny-vgg-random; layers are: input_1, block1_conv1/,
    );
  });
});
