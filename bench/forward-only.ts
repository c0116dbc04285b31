/**
 * The bare forward pass of bench/extract, in its own process so its peak RSS is its own:
 *   node --import tsx bench/forward-only.ts WEIGHTS.h5 BATCH RUNS
 * Prints {"imgPerSec": …, "engine": …}.
 */
import os from 'node:os';
import path from 'node:path';
import { loadBackbone } from '../src/backbones/zoo.ts';
import { createEngine } from '../src/engines/select-engine.ts';

const [weights, batchArg, runsArg] = process.argv.slice(2);
const batch = Number(batchArg);
const runs = Number(runsArg);
const backbone = await loadBackbone('vgg16', { weights });
const engine = await createEngine({
  engine: 'auto',
  backbone,
  cuts: [backbone.defaultCut],
  device: 'auto',
  cacheDir: path.join(os.tmpdir(), 'bench-forward-cache'),
});
const input = new Float32Array(batch * 224 * 224 * 3);
for (let i = 0; i < input.length; i++) input[i] = ((i * 2654435761) % 255) - 120;
await engine.run(input, batch);
const start = performance.now();
for (let r = 0; r < runs; r++) await engine.run(input, batch);
const seconds = (performance.now() - start) / 1000;
console.log(JSON.stringify({ imgPerSec: (runs * batch) / seconds, engine: `${engine.name}/${engine.provider}` }));
await engine.dispose();
