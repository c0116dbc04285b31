/**
 * bench/fp16-cpu: does float16 pay on this CPU? The same network as a float32 and a float16
 * ONNX file (bench/reference/to_fp16.py makes the second), through bottleneck's ONNX-file
 * engine on the CPU provider, in alternating rounds so that the machine's drift hits both alike.
 *
 *   npm run bench:fp16 -- [--models resnet50,vit_small_patch16_224] [--batch 8] [--seconds 6] [--rounds 3]
 *
 * Reads fixtures/generated/onnx-backbones/NAME.onnx and NAME.fp16.onnx. Prints img/s per
 * round, the median of each, their ratio, and the cosine of the fp16 codes to the fp32 ones.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadBackbone } from '../src/backbones/zoo.ts';
import { createEngine } from '../src/engines/select-engine.ts';
import type { FeatureEngine } from '../src/engines/engine.ts';
import { machineLine } from './machine.ts';
import { cosine } from '../test/helpers/compare.ts';
import { benchArgs } from './args.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const { values: args } = benchArgs({
  options: {
    models: { type: 'string', default: 'resnet50,vit_small_patch16_224' },
    batch: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '6' },
    rounds: { type: 'string', default: '3' },
  },
});

async function engineFor(file: string): Promise<FeatureEngine> {
  const backbone = await loadBackbone(file);
  return createEngine({ engine: 'onnx', backbone, cuts: [backbone.defaultCut], device: 'cpu', cacheDir: path.join(os.tmpdir(), 'bench-fp16-cache') });
}

async function rate(engine: FeatureEngine, input: Float32Array, batch: number, seconds: number): Promise<number> {
  let images = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    await engine.run(input, batch);
    images += batch;
  }
  return images / ((performance.now() - start) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function main(): Promise<void> {
  console.log(machineLine());
  const batch = Number(args.batch);
  console.log('| model | fp32 img/s (rounds) | fp16 img/s (rounds) | fp16 / fp32 | cosine fp16 vs fp32 codes |');
  console.log('|---|---|---|---|---|');
  for (const name of args.models!.split(',')) {
    const [fp32File, fp16File] = ['', '.fp16'].map((s) => path.join(ROOT, 'fixtures', 'generated', 'onnx-backbones', `${name}${s}.onnx`));
    if (!existsSync(fp32File) || !existsSync(fp16File)) {
      console.error(`${name} skipped: needs ${fp32File} (test/reference/onnx-backbones/torch_onnx_backbones.py) and ${fp16File} (bench/reference/to_fp16.py)`);
      continue;
    }
    const engines = [await engineFor(fp32File), await engineFor(fp16File)];
    const [h, w] = engines[0].inputSize;
    const input = new Float32Array(batch * h * w * 3);
    for (let i = 0; i < input.length; i++) input[i] = (((i * 2654435761) % 255) - 120) / 60;
    const codes = await Promise.all(engines.map(async (e) => (await e.run(input, batch))[0]));
    const rates: [number[], number[]] = [[], []];
    for (let r = 0; r < Number(args.rounds); r++) {
      for (const k of [0, 1] as const) rates[k].push(await rate(engines[k], input, batch, Number(args.seconds)));
    }
    const [a, b] = rates.map(median);
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
    console.log(`| ${name} | ${a.toFixed(2)} (${fmt(rates[0])}) | ${b.toFixed(2)} (${fmt(rates[1])}) | ${(b / a).toFixed(2)}× | ${cosine(codes[0], codes[1]).toFixed(5)} |`);
    for (const e of engines) await e.dispose();
  }
}

await main();
