/**
 * bench/winograd: direct vs Winograd convolution in the ONNX engine's models, VGG16 conv base
 * (block5_pool) on seeded random weights, 224×224, alternating variants round by round so
 * that load from other processes hits them all alike.
 *
 *   node --import tsx bench/winograd.ts                          # direct, F(2,3), F(4,3)
 *   node --import tsx bench/winograd.ts --rounds 4 --batch 8 --threads 2
 *   node --import tsx bench/winograd.ts --variants '{"f4-all":{"tile":4,"everywhere":true}}'
 *   node --import tsx bench/winograd.ts --layer 256,56,256 --threads 1  # one conv, 256 → 256 channels, 56²
 *   node --import tsx bench/winograd.ts --profile                # per-op-type times per variant
 *
 * Prints img/s per variant (median over rounds) and the relative error (max |Δ| / max |ref|)
 * of each variant's block5_pool codes against direct convolution.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import ort from 'onnxruntime-node';
import { planCuts } from '../src/backbones/cut.ts';
import type { LayerGraph } from '../src/backbones/layer-graph.ts';
import { seededWeights } from '../src/backbones/zoo/random-weights.ts';
import { vgg16Graph } from '../src/backbones/zoo/vgg16.ts';
import { buildOnnxModel, ONNX_INPUT, onnxOutputName, type OnnxModelSpec } from '../src/engines/onnx-model.ts';
import { benchArgs } from './args.ts';

const { values: args } = benchArgs({
  options: {
    batch: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    runs: { type: 'string', default: '2' },
    size: { type: 'string', default: '224' },
    variants: { type: 'string' },
    profile: { type: 'boolean', default: false },
    /** One conv layer instead of VGG16: `C,H,Co` (C → Co channels, 3×3 'same', H×H input). */
    layer: { type: 'string' },
  },
});

type Variant = Pick<OnnxModelSpec, 'convAlgorithm' | 'winograd'>;
const DEFAULT_VARIANTS: Record<string, Variant> = {
  direct: { convAlgorithm: 'direct' },
  'winograd-f4': { convAlgorithm: 'winograd', winograd: { tile: 4 } },
  'winograd-f2': { convAlgorithm: 'winograd', winograd: { tile: 2 } },
};
const variants: Record<string, Variant> = args.variants
  ? Object.fromEntries(
      Object.entries(JSON.parse(args.variants) as Record<string, Variant['winograd'] | 'direct'>).map(([k, v]) => [
        k,
        v === 'direct' ? { convAlgorithm: 'direct' } : { convAlgorithm: 'winograd', winograd: v },
      ]),
    )
  : DEFAULT_VARIANTS;
if (!('direct' in variants)) variants.direct = { convAlgorithm: 'direct' };

const batch = Number(args.batch);
const [layerC, layerH, layerCo] = (args.layer ?? '').split(',').map(Number);
const size = args.layer ? layerH : Number(args.size);
const graph: LayerGraph = args.layer
  ? {
      name: 'one-conv',
      nodes: [
        { name: 'input', op: 'input', inputs: [], channels: layerC },
        { name: 'conv', op: 'conv2d', inputs: ['input'], filters: layerCo, kernel: [3, 3], stride: [1, 1], pad: 'same', dilation: [1, 1], activation: 'relu' },
      ],
    }
  : vgg16Graph();
const cuts = [{ layer: args.layer ? 'conv' : 'block5_pool' }];
const plan = planCuts(graph, [size, size], cuts);
const weights = seededWeights(graph, [size, size], 1, [cuts[0].layer]);
const channels = plan.inputChannels;

const input = new Float32Array(batch * size * size * channels);
for (let i = 0; i < input.length; i++) input[i] = ((i * 2654435761) % 255) - 120;
const feed = { [ONNX_INPUT]: new ort.Tensor('float32', input, [batch, size, size, channels]) };

function options(profile: boolean): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: Number(args.threads),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    enableProfiling: profile,
    profileFilePrefix: path.join(profileDir, 'profile'),
  };
}

const profileDir = mkdtempSync(path.join(os.tmpdir(), 'winograd-profile-'));
const names = Object.keys(variants);
const models = new Map<string, Uint8Array>();
for (const name of names) {
  const t = performance.now();
  models.set(name, buildOnnxModel({ plan, cuts, weights, ...variants[name] }));
  console.error(`built ${name} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
}

console.log(`machine: ${os.cpus()[0]?.model}, ${os.availableParallelism()} cores, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log(`${args.layer ? `one conv ${args.layer}` : 'vgg16 → block5_pool'}, ${size}², batch ${batch}, ${args.threads} threads, ${args.rounds} rounds × ${args.runs} runs`);

const outputs = new Map<string, Float32Array>();
const rates = new Map<string, number[]>(names.map((n) => [n, []]));
const cpuTimes = new Map<string, number[]>(names.map((n) => [n, []]));
for (let round = 0; round < Number(args.rounds); round++) {
  for (const name of names) {
    const session = await ort.InferenceSession.create(models.get(name)!, options(false));
    const first = await session.run(feed);
    if (round === 0) outputs.set(name, first[onnxOutputName(0)].data as Float32Array);
    const start = performance.now();
    const cpu = process.cpuUsage();
    for (let r = 0; r < Number(args.runs); r++) await session.run(feed);
    const rate = (Number(args.runs) * batch * 1000) / (performance.now() - start);
    const used = process.cpuUsage(cpu);
    const cpuMs = (used.user + used.system) / 1000 / Number(args.runs);
    rates.get(name)!.push(rate);
    cpuTimes.get(name)!.push(cpuMs);
    console.error(`round ${round} ${name}: ${rate.toFixed(2)} img/s, ${cpuMs.toFixed(0)} ms CPU per batch`);
    await session.release();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ref = outputs.get('direct')!;
const directRate = median(rates.get('direct')!);
const directCpu = median(cpuTimes.get('direct')!);
console.log('| variant | img/s (median) | best | all rounds | vs direct | CPU ms/batch (median) | CPU vs direct | rel. error vs direct |');
console.log('|---|---|---|---|---|---|---|---|');
for (const name of names) {
  const rs = rates.get(name)!;
  const cs = cpuTimes.get(name)!;
  console.log(
    `| ${name} | ${median(rs).toFixed(2)} | ${Math.max(...rs).toFixed(2)} | ${rs.map((r) => r.toFixed(2)).join(', ')} | ${(median(rs) / directRate).toFixed(2)}× | ${median(cs).toFixed(0)} | ${(directCpu / median(cs)).toFixed(2)}× | ${relErr(outputs.get(name)!, ref).toExponential(2)} |`,
  );
}
console.log(`load after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

if (args.profile) {
  for (const name of names) {
    const session = await ort.InferenceSession.create(models.get(name)!, options(true));
    await session.run(feed);
    await session.run(feed);
    session.endProfiling();
    await session.release();
    for (const file of readdirSync(profileDir)) {
      summarize(name, path.join(profileDir, file));
      rmSync(path.join(profileDir, file));
    }
  }
}
rmSync(profileDir, { recursive: true, force: true });

function relErr(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** Per-op-type and per-node times of the last run in an ORT profile. */
function summarize(name: string, file: string): void {
  type Event = { cat: string; name: string; dur: number; args?: { op_name?: string } };
  const events = JSON.parse(readFileSync(file, 'utf8')) as Event[];
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  const perRun = nodes.length / Math.max(runs.length, 1);
  const last = nodes.slice(nodes.length - perRun);
  const byOp = new Map<string, number>();
  for (const e of last) byOp.set(e.args?.op_name ?? '?', (byOp.get(e.args?.op_name ?? '?') ?? 0) + e.dur);
  const total = last.reduce((s, e) => s + e.dur, 0);
  console.log(`\nprofile ${name}: ${(total / 1000).toFixed(0)} ms in kernels per batch`);
  for (const [op, dur] of [...byOp].sort((a, b) => b[1] - a[1])) console.log(`  ${op.padEnd(22)} ${(dur / 1000).toFixed(1).padStart(8)} ms`);
  if (process.env.PROFILE_NODES) {
    for (const e of last) console.log(`    ${e.name.replace('_kernel_time', '').padEnd(48)} ${(e.dur / 1000).toFixed(1).padStart(8)} ms`);
  }
}
