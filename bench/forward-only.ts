/**
 * The bare forward pass of bench/extract, in its own process so its peak RSS is its own:
 *   node --import tsx bench/forward-only.ts WEIGHTS.h5|MODEL.onnx BATCH RUNS [fp32|int8]
 * VGG16 from a Keras h5, or an ONNX file at its default cut. Prints {"imgPerSec": …,
 * "engine": …, "macsPerImage": …} (macsPerImage null for an ONNX file). int8 calibrates on
 * the synthetic input itself: its ranges do not change the speed.
 */
import os from 'node:os';
import path from 'node:path';
import { loadBackbone } from '../src/backbones/zoo.ts';
import { planCuts } from '../src/backbones/cut.ts';
import { isOnnxBackbone, requireGraph } from '../src/backbones/backbone.ts';
import { createEngine } from '../src/engines/select-engine.ts';
import { macsPerImage } from './peak.ts';

const [weights, batchArg, runsArg, precisionArg] = process.argv.slice(2);
const batch = Number(batchArg);
const runs = Number(runsArg);
const precision = precisionArg === 'int8' ? 'int8' : 'fp32';
const backbone = weights.endsWith('.onnx') ? await loadBackbone(weights) : await loadBackbone('vgg16', { weights });
const [h, w] = backbone.preprocessing.size;
const input = new Float32Array(batch * h * w * 3);
// Pixels minus a mean for VGG16's Caffe preprocessing, about unit scale for ImageNet mean/std.
const scale = isOnnxBackbone(backbone) ? 1 / 60 : 1;
for (let i = 0; i < input.length; i++) input[i] = (((i * 2654435761) % 255) - 120) * scale;
const calibration = {
  key: `bench-forward-${path.basename(weights)}`,
  batches: async function* () {
    yield { images: input, count: batch, size: [h, w] as const, sha256: Array.from({ length: batch }, (_, i) => String(i)) };
  },
};
const engine = await createEngine({
  engine: 'auto',
  backbone,
  cuts: [backbone.defaultCut],
  device: 'auto',
  cacheDir: path.join(os.tmpdir(), 'bench-forward-cache'),
  precision,
  calibration,
});
await engine.run(input, batch);
const start = performance.now();
for (let r = 0; r < runs; r++) await engine.run(input, batch);
const seconds = (performance.now() - start) / 1000;
const macs = isOnnxBackbone(backbone) ? null : macsPerImage(planCuts(requireGraph(backbone, 'bench').graph, [h, w], [backbone.defaultCut]));
console.log(JSON.stringify({ imgPerSec: (runs * batch) / seconds, engine: `${engine.name}/${engine.provider}`, macsPerImage: macs }));
await engine.dispose();
