/**
 * bench/extract: end-to-end `bottleneck extract` (decode + forward + write) on real JPEGs,
 * against the bare forward pass and a PyTorch reference pipeline, in one run on one machine.
 *
 *   npm run bench:extract                 # ../shared/datasets/dogs-vs-cats/validation, 800 images
 *   npm run bench:extract -- --limit 80   # quicker
 *
 * VGG16 runs at 224² on seeded random weights written as a Keras notop h5 (the cost does not
 * depend on the values), through the real CLI in a child process, so startup and weight loading
 * count. The PyTorch reference is bench/reference/torch_extract.py: PyTorch 2.x (the venv of
 * bench/reference/README.md, or --python) in each --torch-configs configuration, one process each.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { toKerasLayers, writeKerasH5 } from '../src/backbones/weights/keras-h5-writer.ts';
import { KERAS_VGG16_FILES } from '../src/backbones/zoo.ts';
import { seededWeights } from '../src/backbones/zoo/random-weights.ts';
import { vgg16Graph } from '../src/backbones/zoo/vgg16.ts';
import { cpuFlags, machineLine } from './machine.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    data: { type: 'string', default: path.resolve(ROOT, '..', 'shared', 'datasets', 'dogs-vs-cats', 'validation') },
    limit: { type: 'string', default: '0' },
    batch: { type: 'string', default: '8' },
    'skip-torch': { type: 'boolean', default: false },
    /** A Python with PyTorch 2.x and torchvision (see bench/reference/README.md). */
    python: { type: 'string', default: process.env.BOTTLENECK_TORCH_PYTHON ?? (existsSync('/work/venv-torch/bin/python') ? '/work/venv-torch/bin/python' : '/usr/bin/python3') },
    /** PyTorch configurations, each run in its own process (see torch_extract.py --config). */
    'torch-configs': { type: 'string', default: `eager,channels_last,compile${cpuFlags().includes('avx512_bf16') || cpuFlags().includes('amx_bf16') ? ',bf16' : ''}` },
  },
});

interface Measured {
  readonly name: string;
  readonly imgPerSec: number;
  readonly peakRssMb: number;
  readonly note: string;
  /** PyTorch rows: which configuration (eager, channels_last, compile, bf16). */
  readonly torchConfig?: string;
}

/** `/usr/bin/time -f %M` reports the child's peak RSS in KiB on its last stderr line. */
async function timed(cmd: string, argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; peakRssMb: number }> {
  const { stdout, stderr } = await run('/usr/bin/time', ['-f', '%M', cmd, ...argv], {
    env: { ...process.env, ...env },
    maxBuffer: 64 << 20,
  });
  const kib = Number(stderr.trim().split('\n').pop());
  return { stdout, peakRssMb: kib / 1024 };
}

async function writeRandomVgg16(dir: string): Promise<string> {
  const graph = vgg16Graph();
  const file = path.join(dir, KERAS_VGG16_FILES.notop.file);
  await writeKerasH5(file, toKerasLayers(graph, seededWeights(graph, [224, 224], 1, ['block5_pool']), 'block5_pool'));
  return file;
}

/** The images, optionally the first N, as a manifest both pipelines read. */
async function imageList(dir: string, limit: number, tmp: string): Promise<{ manifest: string; folder: string; count: number }> {
  const { loadDataset } = await import('../src/extract/dataset.ts');
  const dataset = await loadDataset(dir);
  const items = limit > 0 ? dataset.items.filter((_, i) => i % Math.ceil(dataset.items.length / limit) === 0).slice(0, limit) : dataset.items;
  const manifest = path.join(tmp, 'images.csv');
  await writeFile(manifest, ['path,label', ...items.map((i) => `${i.file},${i.label}`)].join('\n'));
  // The PyTorch script walks a folder; give it the same files through symlinks.
  const folder = path.join(tmp, 'images');
  const { mkdir, symlink } = await import('node:fs/promises');
  await mkdir(folder);
  await Promise.all(items.map((it, i) => symlink(it.file, path.join(folder, `${String(i).padStart(5, '0')}${path.extname(it.file)}`))));
  return { manifest, folder, count: items.length };
}

async function main(): Promise<void> {
  if (!existsSync(args.data!)) {
    console.error(`skipped: ${args.data} is absent (bench/extract reads ../shared/datasets)`);
    return;
  }
  console.log(machineLine());
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'bench-extract-'));
  const batch = Number(args.batch);
  try {
    const weights = await writeRandomVgg16(tmp);
    const { manifest, folder, count } = await imageList(args.data!, Number(args.limit), tmp);
    console.error(`${count} images from ${args.data}; vgg16 block5_pool at 224², batch ${batch}, ${os.availableParallelism()} cores`);
    const rows: Measured[] = [];

    // 1. The bare forward pass: same engine, same weights, no decoding and no cache.
    const bare = await timed(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'forward-only.ts'), weights, String(batch), String(Math.max(3, Math.min(12, Math.ceil(count / batch / 4))))]);
    const forward = JSON.parse(bare.stdout) as { imgPerSec: number; engine: string };
    rows.push({ name: `bare forward pass (${forward.engine})`, imgPerSec: forward.imgPerSec, peakRssMb: bare.peakRssMb, note: 'no decode, no cache' });

    // 2. The real CLI, end to end, into a fresh cache.
    const cli = await timed(path.join(ROOT, 'bin', 'bottleneck'), ['extract', manifest, '--backbone', 'vgg16', '--weights', weights, '--batch', String(batch), '--cache', path.join(tmp, 'cache'), '--json']);
    const summary = JSON.parse(cli.stdout.trim().split('\n').pop()!) as { imgPerSec: number; new: number; seconds: number; engine: string };
    rows.push({ name: `bottleneck extract (${summary.engine})`, imgPerSec: summary.new / summary.seconds, peakRssMb: cli.peakRssMb, note: `${summary.new} images in ${summary.seconds.toFixed(1)} s` });

    // 3. PyTorch: DataLoader + PIL decode, VGG16 features, same threads, each configuration.
    for (const config of args['skip-torch'] ? [] : args['torch-configs']!.split(',')) {
      try {
        const torch = await timed(args.python!, [path.join(ROOT, 'bench', 'reference', 'torch_extract.py'), folder, '--batch', String(batch), '--threads', String(os.availableParallelism()), '--config', config, '--json']);
        const t = JSON.parse(torch.stdout.trim().split('\n').pop()!) as { img_per_s: number; forward_img_per_s: number; torch_version: string; blas: string; cpu_capability?: string };
        const isa = t.cpu_capability ? `ISA ${t.cpu_capability}; ` : '';
        rows.push({ name: `PyTorch ${t.torch_version} ${config} DataLoader+PIL`, imgPerSec: t.img_per_s, peakRssMb: torch.peakRssMb, note: `forward alone ${t.forward_img_per_s.toFixed(2)} img/s; ${isa}${path.basename(t.blas)}`, torchConfig: config });
      } catch (err) {
        console.error(`PyTorch ${config} skipped: ${(err as Error).message.split('\n')[0]} (see bench/reference/README.md)`);
      }
    }
    printTable(rows);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

function printTable(rows: Measured[]): void {
  const [bare, ours] = rows;
  const fp32 = rows.filter((r) => r.torchConfig && r.torchConfig !== 'bf16');
  const best = fp32.sort((a, b) => b.imgPerSec - a.imgPerSec)[0];
  const bf16 = rows.find((r) => r.torchConfig === 'bf16');
  console.log('| pipeline | img/s | peak RSS (MB) | notes |');
  console.log('|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.name} | ${r.imgPerSec.toFixed(2)} | ${r.peakRssMb.toFixed(0)} | ${r.note} |`);
  const e2e = ours.imgPerSec / bare.imgPerSec;
  console.log(`\nend-to-end / bare forward: ${e2e.toFixed(3)} (target ≥ 0.9: ${e2e >= 0.9 ? 'met' : 'NOT met'})`);
  if (best) {
    const vsTorch = ours.imgPerSec / best.imgPerSec;
    console.log(`bottleneck fp32 / best PyTorch fp32 (${best.torchConfig}): ${vsTorch.toFixed(2)}× (target ≥ 1.2×: ${vsTorch >= 1.2 ? 'met' : 'NOT met'})`);
  }
  if (bf16) console.log(`bottleneck fp32 / PyTorch bf16 autocast: ${(ours.imgPerSec / bf16.imgPerSec).toFixed(2)}×`);
}

await main();
