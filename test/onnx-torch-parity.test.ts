/**
 * ONNX backbones against PyTorch, the implementation timm and torchvision users would otherwise
 * run: resnet50, convnext_tiny, efficientnet_b0 (torchvision), vit_small_patch16_224 and a
 * DINOv2 ViT-S/14 (timm), exported with torch.onnx.export by
 * test/reference/onnx-backbones/torch_onnx_backbones.py, which saved PyTorch's own outputs at two
 * cuts per model for the same two preprocessed photos. The .onnx files are regenerated, not
 * committed (400 MB): without them these tests skip, saying so.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadOnnxBackbone } from '../src/backbones/onnx-file/onnx-backbone.ts';
import { preprocessInto } from '../src/backbones/preprocess.ts';
import { createEngine } from '../src/engines/select-engine.ts';
import { decodeImage } from '../src/extract/decode-image.ts';
import { parseJson } from '../src/util/json-file.ts';
import { relativeError } from './helpers/compare.ts';
import { hasSharedDatasets, NEEDS_SHARED_DATASETS, REPO_ROOT, SHARED_DATASETS } from './helpers/shared.ts';

const HERE = path.join(REPO_ROOT, 'test', 'reference', 'onnx-backbones');
const manifestSchema = z.object({
  command: z.string(),
  models: z.array(
    z.object({
      name: z.string(),
      onnx: z.string(),
      cuts: z.array(z.object({ label: z.string(), tensor: z.string(), shape: z.array(z.number()), layout: z.enum(['nchw', 'tokens', 'vector']), file: z.string() })),
    }),
  ),
});
const manifest = parseJson(await readFile(path.join(HERE, 'manifest.json'), 'utf8'), manifestSchema, 'manifest.json', 'the reference manifest');
const inputsMeta = z.object({ images: z.array(z.string()), shape: z.tuple([z.number(), z.number(), z.number(), z.number()]), mean: z.array(z.number()), std: z.array(z.number()) });
const inputs = parseJson(await readFile(path.join(HERE, 'inputs.json'), 'utf8'), inputsMeta, 'inputs.json', 'the reference inputs');
const [N, C, H, W] = inputs.shape;

async function floats(file: string): Promise<Float32Array> {
  const bytes = await readFile(path.join(HERE, file));
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** NCHW → NHWC, what bottleneck's engines take. */
function toNhwc(nchw: Float32Array): Float32Array {
  const out = new Float32Array(nchw.length);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let p = 0; p < H * W; p++) out[(n * H * W + p) * C + c] = nchw[(n * C + c) * H * W + p];
  return out;
}

/** PyTorch's tensor as bottleneck stores codes: spatial maps in H, W, C order, the rest as they are. */
function asCodes(ref: Float32Array, shape: readonly number[], layout: string): Float32Array {
  if (layout !== 'nchw') return ref;
  const [n, c, h, w] = shape;
  const out = new Float32Array(ref.length);
  for (let i = 0; i < n; i++) for (let ch = 0; ch < c; ch++) for (let p = 0; p < h * w; p++) out[(i * h * w + p) * c + ch] = ref[(i * c + ch) * h * w + p];
  return out;
}

describe('ONNX backbones match PyTorch at their cuts', () => {
  it(`the committed inputs are what this project's decoder and ImageNet normalisation give for the two photos${NEEDS_SHARED_DATASETS}`, async ({ skip }) => {
    if (!hasSharedDatasets) skip();
    const committed = await floats('inputs.f32');
    const plane = H * W;
    for (const [n, image] of inputs.images.entries()) {
      const hwc = await decodeImage(path.join(SHARED_DATASETS, image), { size: [H, W], resize: 'squash', interpolation: 'linear' });
      const nhwc = new Float32Array(plane * 3);
      preprocessInto(hwc, { size: [H, W], channels: 'rgb', mean: [0.485 * 255, 0.456 * 255, 0.406 * 255], std: [0.229 * 255, 0.224 * 255, 0.225 * 255] }, nhwc);
      let err = 0;
      for (let c = 0; c < 3; c++) for (let p = 0; p < plane; p++) err = Math.max(err, Math.abs(nhwc[p * 3 + c] - committed[(n * 3 + c) * plane + p]));
      expect(err, image).toBeLessThan(1e-5);
    }
  });

  for (const model of manifest.models) {
    const file = path.join(REPO_ROOT, model.onnx);
    const missing = existsSync(file) ? '' : ` [skipped: ${model.onnx} absent; regenerate with ${manifest.command}]`;
    it(`${model.name}: ${model.cuts.map((c) => c.label).join(' and ')} within 1e-4 of PyTorch${missing}`, { timeout: 180_000 }, async ({ skip }) => {
      if (missing) skip();
      const backbone = await loadOnnxBackbone(file, { size: [H, W] });
      const cuts = model.cuts.map((c) => ({ layer: c.tensor }));
      const engine = await createEngine({ engine: 'onnx', device: 'cpu', backbone, cuts, cacheDir: path.join(os.tmpdir(), 'bottleneck-torch-parity') });
      try {
        const codes = await engine.run(toNhwc(await floats('inputs.f32')), N);
        for (const [i, cut] of model.cuts.entries()) {
          const ref = asCodes(await floats(cut.file), cut.shape, cut.layout);
          const error = relativeError(codes[i], ref);
          console.log(`${model.name} ${cut.label} (${cut.tensor}): relative error ${error.toExponential(2)}`);
          expect(error, cut.label).toBeLessThan(1e-4);
        }
      } finally {
        await engine.dispose();
      }
    });
  }
});
