/**
 * Real weights through the ONNX-file path: the built-in squeezenet1_1 (and the Caffe GoogLeNet in
 * ../shared/models), written by `export --backbone NAME --format onnx` without a head and loaded
 * back as ONNX backbones, give the built-in backbones' codes: same preprocessing (read from the
 * export's preprocessing.json) and codes within 1e-6.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOnnxBackbone } from '../src/backbones/onnx-file/onnx-backbone.ts';
import { preprocessInto } from '../src/backbones/preprocess.ts';
import { loadGraphBackbone } from '../src/backbones/zoo.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { createEngine } from '../src/engines/select-engine.ts';
import { decodeImage } from '../src/extract/decode-image.ts';
import { runCli } from './helpers/cli.ts';
import { relativeError } from './helpers/compare.ts';
import { makeDataset } from './helpers/make-dataset.ts';
import { hasSharedModels, NEEDS_SHARED_MODELS, SHARED_MODELS } from './helpers/shared.ts';

let tmp: string;
let files: string[];
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-roundtrip-'));
  files = (await makeDataset(path.join(tmp, 'data'), { classes: ['a'], perClass: 3, seed: 9 })).map((m) => m.file);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const cases = [
  { name: 'squeezenet1_1', layer: undefined, needs: '' },
  { name: 'googlenet', layer: 'inception_4e/output', needs: NEEDS_SHARED_MODELS },
] as const;

describe('export --backbone, loaded back as an ONNX backbone', () => {
  for (const c of cases) {
    it(`${c.name}${c.layer ? ` at ${c.layer}` : ''}: the same preprocessing, and codes within 1e-6 of the built-in backbone's${c.needs}`, { timeout: 120_000 }, async ({ skip }) => {
      if (c.needs && !hasSharedModels) skip();
      const out = path.join(tmp, c.name);
      const env = { BOTTLENECK_WEIGHTS: SHARED_MODELS };
      const exported = await runCli(['export', '--backbone', c.name, ...(c.layer ? ['--layer', c.layer, '--pool', 'avg'] : []), '--format', 'onnx', '--out', out], { env });
      expect(exported.code, exported.stderr).toBe(0);

      const builtIn = await loadGraphBackbone(c.name, { weightsDir: SHARED_MODELS, download: false });
      const loaded = await loadOnnxBackbone(out);
      expect(loaded.preprocessing).toEqual({ ...builtIn.preprocessing, mean: [...builtIn.preprocessing.mean], std: [...builtIn.preprocessing.std] });
      expect(loaded.defaultCut).toEqual({ layer: 'code' });

      const [h, w] = builtIn.preprocessing.size;
      const batch = new Float32Array(files.length * h * w * 3);
      for (const [i, f] of files.entries()) preprocessInto(await decodeImage(f, { size: [h, w] }), builtIn.preprocessing, batch, i * h * w * 3);
      const cut = c.layer ? { layer: c.layer, pool: 'avg' as const } : builtIn.defaultCut;
      // Direct convolutions, as the export writes them (the CPU engine's default Winograd convs differ by about 1e-6).
      const reference = await createOnnxEngine({ backbone: builtIn, cuts: [cut], device: 'cpu', cacheDir: path.join(tmp, 'cache'), convAlgorithm: 'direct' });
      const onnxFile = await createEngine({ engine: 'auto', backbone: loaded, cuts: [loaded.defaultCut], device: 'cpu', cacheDir: path.join(tmp, 'cache') });
      const [[a], [b]] = [await reference.run(batch, files.length), await onnxFile.run(batch, files.length)];
      await Promise.all([reference.dispose(), onnxFile.dispose()]);
      const error = relativeError(b, a);
      console.log(`${c.name}: ${a.length / files.length}-d codes, max relative difference ${error.toExponential(2)}`);
      expect(error).toBeLessThan(1e-6);
    });
  }
});
