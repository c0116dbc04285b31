/**
 * The two photos torch_onnx_backbones.py runs, decoded by bottleneck's own decoder and normalised
 * as torchvision does, so the reference and bottleneck see the same floats:
 *
 *   node --import tsx test/reference/onnx-backbones/make_inputs.ts
 *
 * Writes inputs.f32 (float32 little-endian, [2, 3, 224, 224] NCHW) and inputs.json beside this file.
 * The photos come from ../shared/datasets (never copied into the repository).
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeImage } from '../../../src/extract/decode-image.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../../..');
const DATASETS = path.resolve(ROOT, '../shared/datasets');
const IMAGES = ['dogs-vs-cats/validation/cats/cat.4001.jpg', 'dogs-vs-cats/validation/dogs/dog.4001.jpg'] as const;
const SIZE = 224;
const MEAN = [0.485, 0.456, 0.406] as const;
const STD = [0.229, 0.224, 0.225] as const;
const COMMAND = 'node --import tsx test/reference/onnx-backbones/make_inputs.ts';

const plane = SIZE * SIZE;
const out = new Float32Array(IMAGES.length * 3 * plane);
for (const [n, image] of IMAGES.entries()) {
  const hwc = await decodeImage(path.join(DATASETS, image), { size: [SIZE, SIZE], resize: 'squash', interpolation: 'linear' });
  if (hwc.length !== plane * 3) throw new Error(`${image}: decoded ${hwc.length} bytes, expected ${plane * 3}`);
  for (let c = 0; c < 3; c++) {
    const base = (n * 3 + c) * plane;
    for (let p = 0; p < plane; p++) out[base + p] = (hwc[p * 3 + c] / 255 - MEAN[c]) / STD[c];
  }
}

// Float32Array is little-endian on every platform Node runs on; check rather than assume.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('big-endian host: inputs.f32 must be little-endian');
await writeFile(path.join(HERE, 'inputs.f32'), new Uint8Array(out.buffer));
const meta = {
  images: IMAGES,
  shape: [IMAGES.length, 3, SIZE, SIZE],
  layout: 'nchw',
  dtype: 'float32',
  mean: MEAN,
  std: STD,
  resize: 'squash',
  interpolation: 'linear',
  command: COMMAND,
};
await writeFile(path.join(HERE, 'inputs.json'), `${JSON.stringify(meta, null, 2)}\n`);
console.log(`wrote inputs.f32 (${out.byteLength} bytes) and inputs.json`);
