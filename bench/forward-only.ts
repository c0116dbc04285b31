/**
 * The bare forward pass of bench/extract, in its own process so its peak RSS is its own:
 *   node --import tsx bench/forward-only.ts WEIGHTS.h5 BATCH RUNS [fp32|int8]
 * Prints {"imgPerSec": …, "engine": …, "macsPerImage": …}. int8 calibrates on the synthetic
 * input itself: its ranges do not change the speed.
 */
import os from 'node:os';
import path from 'node:path';
import { loadBackbone } from '../src/backbones/zoo.ts';
import { planCuts } from '../src/backbones/cut.ts';
import { requireGraph } from '../src/backbones/backbone.ts';
import { createEngine } from '../src/engines/select-engine.ts';
import { macsPerImage } from './peak.ts';

const [weights, batchArg, runsArg, precisionArg] = process.argv.slice(2);
const batch = Number(batchArg);
const runs = Number(runsArg);
const precision = precisionArg === 'int8' ? 'int8' : 'fp32';
const backbone = await loadBackbone('vgg16', { weights });
const input = new Float32Array(batch * 224 * 224 * 3);
for (let i = 0; i < input.length; i++) input[i] = ((i * 2654435761) % 255) - 120;
const calibration = {
  key: `bench-forward-${path.basename(weights)}`,
  batches: async function* () {
    yield { images: input, count: batch, size: [224, 224] as const, sha256: Array.from({ length: batch }, (_, i) => String(i)) };
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
const macs = macsPerImage(planCuts(requireGraph(backbone, 'bench').graph, [224, 224], [backbone.defaultCut]));
console.log(JSON.stringify({ imgPerSec: (runs * batch) / seconds, engine: `${engine.name}/${engine.provider}`, macsPerImage: macs }));
await engine.dispose();
