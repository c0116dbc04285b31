/**
 * bench/model-pair: two ONNX files that take the same input, run in alternation on one batch, so
 * that a graph change (the engine's cached model before and after a rewrite, say) is measured as
 * a pair: these machines drift by 20% and more between runs, and the median of per-pair ratios
 * drifts far less. Prints each file's median ms per batch and the median per-pair speedup.
 *
 *   npm run bench:model-pair -- before/model.onnx after/model.onnx            # NHWC images, 8 × 224² × 3
 *   npm run bench:model-pair -- a.onnx b.onnx --seconds 60 --batch 16 --size 224
 */
import { existsSync } from 'node:fs';
import ort from '../src/util/onnxruntime.ts';
import { benchArgs } from './args.ts';
import { machineLine } from './machine.ts';

const { values: args, positionals: files } = benchArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '40' },
    batch: { type: 'string', default: '8' },
    size: { type: 'string', default: '224' },
    threads: { type: 'string', default: '2' },
  },
});

function fail(message: string): never {
  console.error(`bench:model-pair: ${message}`);
  process.exit(2);
}

const positive = (k: 'seconds' | 'batch' | 'size' | 'threads', integer: boolean) => {
  const v = Number(args[k]);
  return Number.isFinite(v) && v > 0 && (!integer || Number.isInteger(v)) ? v : fail(`--${k} must be a positive ${integer ? 'whole ' : ''}number, not ${args[k]}`);
};
const seconds = positive('seconds', false);
const [batch, size, threads] = (['batch', 'size', 'threads'] as const).map((k) => positive(k, true));
if (files.length !== 2) fail(`takes two ONNX files, not ${files.length}`);
for (const f of files) if (!existsSync(f)) fail(`${f}: no such file`);

const sessions = await Promise.all(files.map(async (f) => {
  try {
    return await ort.InferenceSession.create(f, { intraOpNumThreads: threads, graphOptimizationLevel: 'all' });
  } catch (err) {
    return fail(`${f}: onnxruntime cannot load it (${(err as Error).message.split('\n')[0]})`);
  }
}));
// A fixed, non-constant input: what the engines feed, NHWC float32 images.
const x = new ort.Tensor('float32', Float32Array.from({ length: batch * size * size * 3 }, (_, i) => Math.sin(i) * 2), [batch, size, size, 3]);
const run = (i: number) => sessions[i].run({ [sessions[i].inputNames[0]]: x });
const first = await Promise.all([0, 1].map(async (i) => (await run(i))[sessions[i].outputNames[0]].data as Float32Array));
const maxDiff = first[0].reduce((m, v, j) => Math.max(m, Math.abs(v - first[1][j])), 0);

const times: number[][] = [[], []];
const end = performance.now() + seconds * 1000;
while (performance.now() < end) {
  for (const i of [0, 1]) {
    const t = performance.now();
    await run(i);
    times[i].push(performance.now() - t);
  }
}
const median = (v: readonly number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const pairs = times[0].map((t, j) => t / times[1][j]);

console.log(machineLine());
console.log(`batch ${batch} × ${size}² × 3, ${threads} threads, ${times[0].length} pairs in ${seconds} s; first outputs differ by at most ${maxDiff.toExponential(2)}`);
console.log('| model | ms per batch (median) | img/s |');
console.log('|---|---|---|');
files.forEach((f, i) => console.log(`| ${f} | ${median(times[i]).toFixed(1)} | ${((batch * 1000) / median(times[i])).toFixed(2)} |`));
console.log(`\nsecond / first, median of per-pair speedups: ${median(pairs).toFixed(3)}×`);
