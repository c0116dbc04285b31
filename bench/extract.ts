/**
 * bench/extract: end-to-end `bottleneck extract` (decode + forward + write) on real JPEGs,
 * against the bare forward pass and a PyTorch reference pipeline, in one run on one machine.
 *
 *   npm run bench:extract                 # ../shared/datasets/dogs-vs-cats/validation, 800 images
 *   npm run bench:extract -- --limit 80   # quicker
 *   npm run bench:extract -- --model resnet50               # torchvision's resnet50, from its ONNX export
 *   npm run bench:extract -- --model vit_small_patch16_224  # timm's ViT-S/16, likewise
 *
 * VGG16 runs at 224² on seeded random weights written as a Keras notop h5 (the cost does not
 * depend on the values), through the real CLI in a child process, so startup and weight loading
 * count. resnet50 and vit_small_patch16_224 are the ONNX exports of test/reference/onnx-backbones
 * (fixtures/generated/onnx-backbones, made by its torch_onnx_backbones.py), at their default cut
 * (the pooled code), beside the very PyTorch modules they were exported from. The PyTorch
 * reference is bench/reference/torch_extract.py: PyTorch 2.x (the venv of
 * bench/reference/README.md, or --python) in each --torch-configs configuration, one process each.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { toKerasLayers, writeKerasH5 } from '../src/backbones/weights/keras-h5-writer.ts';
import { KERAS_VGG16_FILES } from '../src/backbones/zoo.ts';
import { seededWeights } from '../src/backbones/zoo/random-weights.ts';
import { vgg16Graph } from '../src/backbones/zoo/vgg16.ts';
import { cpuFlags, machineLine } from './machine.ts';
import { peak } from './peak.ts';
import { benchArgs } from './args.ts';

const run = promisify(execFile);
/** The networks both sides build (see --model). */
const MODELS = ['vgg16', 'resnet50', 'vit_small_patch16_224'];
const ROOT = path.resolve(import.meta.dirname, '..');
const { values: args } = benchArgs({
  options: {
    data: { type: 'string', default: path.resolve(ROOT, '..', 'shared', 'datasets', 'dogs-vs-cats', 'validation') },
    limit: { type: 'string', default: '0' },
    batch: { type: 'string', default: '8' },
    'skip-torch': { type: 'boolean', default: false },
    model: { type: 'string', default: 'vgg16' },
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
  readonly role: 'bare-fp32' | 'bare-int8' | 'decode' | 'ours-fp32' | 'ours-int8-first' | 'ours-int8' | 'torch';
}

interface ForwardOnly {
  readonly imgPerSec: number;
  readonly engine: string;
  /** null for an ONNX file, whose operations are not counted here. */
  readonly macsPerImage: number | null;
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
  const model = args.model!;
  if (!MODELS.includes(model)) {
    console.error(`bench/extract: --model ${model}: use one of ${MODELS.join(', ')}`);
    process.exitCode = 2;
    return;
  }
  const onnxFile = path.join(ROOT, 'fixtures', 'generated', 'onnx-backbones', `${model}.onnx`);
  if (model !== 'vgg16' && !existsSync(onnxFile)) {
    console.error(`skipped: ${onnxFile} is absent (made by test/reference/onnx-backbones/torch_onnx_backbones.py)`);
    return;
  }
  console.log(machineLine());
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'bench-extract-'));
  const batch = Number(args.batch);
  try {
    const weights = model === 'vgg16' ? await writeRandomVgg16(tmp) : onnxFile;
    const backboneArgs = model === 'vgg16' ? ['--backbone', 'vgg16', '--weights', weights] : ['--backbone', onnxFile];
    const { manifest, folder, count } = await imageList(args.data!, Number(args.limit), tmp);
    console.error(`${count} images from ${args.data}; ${model === 'vgg16' ? 'vgg16 block5_pool' : `${model} (ONNX export, pooled code)`} at 224², batch ${batch}, ${os.availableParallelism()} cores`);
    const rows: Measured[] = [];

    // 1. The bare forward pass: same engine, same weights, no decoding and no cache.
    const forwardRuns = String(Math.max(3, Math.min(12, Math.ceil(count / batch / 4))));
    const forward: Record<'fp32' | 'int8', ForwardOnly> = { fp32: undefined!, int8: undefined! };
    for (const precision of ['fp32', 'int8'] as const) {
      const bare = await timed(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'forward-only.ts'), weights, String(batch), forwardRuns, precision]);
      forward[precision] = JSON.parse(bare.stdout) as ForwardOnly;
      rows.push({ name: `bare forward pass ${precision} (${forward[precision].engine})`, imgPerSec: forward[precision].imgPerSec, peakRssMb: bare.peakRssMb, note: 'no decode, no cache', role: `bare-${precision}` });
    }

    // 2. Decoding alone, as extract decodes (sharp, --concurrency 4 on libuv's threads).
    const decodeRate = await decodeOnly(manifest);
    rows.push({ name: 'decode + resize alone (sharp)', imgPerSec: decodeRate, peakRssMb: NaN, note: 'no forward pass', role: 'decode' });

    // 3. The real CLI, end to end, into a fresh cache: fp32, int8 calibrating, int8 calibrated.
    const cache = path.join(tmp, 'cache');
    const extract = async (name: string, role: Measured['role'], extra: string[]) => {
      const cli = await timed(path.join(ROOT, 'bin', 'bottleneck'), ['extract', manifest, ...backboneArgs, '--batch', String(batch), '--cache', cache, '--json', ...extra]);
      const summary = JSON.parse(cli.stdout.trim().split('\n').pop()!) as { imgPerSec: number; new: number; seconds: number; engine: string; path: string };
      rows.push({ name: `${name} (${summary.engine})`, imgPerSec: summary.new / summary.seconds, peakRssMb: cli.peakRssMb, note: `${summary.new} images in ${summary.seconds.toFixed(1)} s`, role });
      return summary;
    };
    await extract('bottleneck extract fp32', 'ours-fp32', []);
    const first = await extract('bottleneck extract int8, first run (calibrates on 128 images)', 'ours-int8-first', ['--precision', 'int8']);
    // The codes go, the calibration and the int8 model stay: what every later extraction costs.
    await rm(first.path, { recursive: true, force: true });
    await rm(path.join(cache, 'datasets'), { recursive: true, force: true });
    await extract('bottleneck extract int8, calibration cached', 'ours-int8', ['--precision', 'int8']);

    // 4. PyTorch: DataLoader + PIL decode, the same network, same threads, each configuration.
    for (const config of args['skip-torch'] ? [] : args['torch-configs']!.split(',')) {
      try {
        const torch = await timed(args.python!, [path.join(ROOT, 'bench', 'reference', 'torch_extract.py'), folder, '--model', model, '--batch', String(batch), '--threads', String(os.availableParallelism()), '--config', config, '--json']);
        const t = JSON.parse(torch.stdout.trim().split('\n').pop()!) as { img_per_s: number; forward_img_per_s: number; torch_version: string; blas: string; cpu_capability?: string };
        const isa = t.cpu_capability ? `ISA ${t.cpu_capability}; ` : '';
        rows.push({ name: `PyTorch ${t.torch_version} ${config} DataLoader+PIL`, imgPerSec: t.img_per_s, peakRssMb: torch.peakRssMb, note: `forward alone ${t.forward_img_per_s.toFixed(2)} img/s; ${isa}${path.basename(t.blas)}`, torchConfig: config, role: 'torch' });
      } catch (err) {
        console.error(`PyTorch ${config} skipped: ${(err as Error).message.split('\n')[0]} (see bench/reference/README.md)`);
      }
    }
    printTable(rows, forward, model);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

function printTable(rows: Measured[], forward: Record<'fp32' | 'int8', ForwardOnly>, model: string): void {
  // The issue's targets are set for VGG16; the other models print their ratios alone.
  const at = (x: number) => (model === 'vgg16' ? { at: x } : undefined);
  const role = (r: Measured['role']) => rows.find((x) => x.role === r)!;
  const [ours, int8, bare, bareInt8, decode] = [role('ours-fp32'), role('ours-int8'), role('bare-fp32'), role('bare-int8'), role('decode')];
  const fp32 = rows.filter((r) => r.torchConfig && r.torchConfig !== 'bf16');
  const best = [...fp32].sort((a, b) => b.imgPerSec - a.imgPerSec)[0];
  const bestAny = rows.filter((r) => r.torchConfig).sort((a, b) => b.imgPerSec - a.imgPerSec)[0];
  const bf16 = rows.find((r) => r.torchConfig === 'bf16');
  console.log('| pipeline | img/s | peak RSS (MB) | notes |');
  console.log('|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.name} | ${r.imgPerSec.toFixed(2)} | ${Number.isNaN(r.peakRssMb) ? '—' : r.peakRssMb.toFixed(0)} | ${r.note} |`);
  const ratio = (label: string, x: number, target?: { at: number }) => console.log(`${label}: ${x.toFixed(2)}×${target ? ` (target ≥ ${target.at}×: ${x >= target.at ? 'met' : 'NOT met'})` : ''}`);
  console.log('');
  ratio('end-to-end / bare forward, fp32', ours.imgPerSec / bare.imgPerSec, at(0.9));
  ratio('end-to-end / bare forward, int8', int8.imgPerSec / bareInt8.imgPerSec);
  const vnni = (['avx512_vnni', 'avx_vnni', 'amx_int8'] as const).some((f) => cpuFlags().includes(f));
  ratio(`bottleneck int8 / bottleneck fp32, end to end (${vnni ? 'VNNI/AMX' : 'AVX2 only'})`, int8.imgPerSec / ours.imgPerSec, at(vnni ? 3 : 1.5));
  if (best) ratio(`bottleneck fp32 / best PyTorch fp32 (${best.torchConfig})`, ours.imgPerSec / best.imgPerSec, at(1.2));
  if (bf16) ratio('bottleneck fp32 / PyTorch bf16 autocast', ours.imgPerSec / bf16.imgPerSec);
  if (bestAny) ratio(`bottleneck int8 / best PyTorch (${bestAny.torchConfig})`, int8.imgPerSec / bestAny.imgPerSec, at(1));

  // Where the time goes, per image, at the rates each stage reaches alone with all cores.
  const ms = (rate: number) => (1000 / rate).toFixed(1);
  console.log(`\nper image: decode ${ms(decode.imgPerSec)} ms alone; forward ${ms(bare.imgPerSec)} ms fp32, ${ms(bareInt8.imgPerSec)} ms int8; end to end ${ms(ours.imgPerSec)} ms fp32, ${ms(int8.imgPerSec)} ms int8 (decode and forward share the cores; writing runs behind the engine)`);
  if (forward.fp32.macsPerImage === null || forward.int8.macsPerImage === null) return;
  const p = peak();
  const gops = (f: ForwardOnly) => (2 * f.macsPerImage! * f.imgPerSec) / 1e9;
  console.log(`engine vs peak (${(forward.fp32.macsPerImage / 1e9).toFixed(2)} GMAC per image; peak ${p.how}):`);
  console.log(`  fp32 ${gops(forward.fp32).toFixed(0)} GFLOP/s of ${(p.fp32 / 1e9).toFixed(0)} (${((100 * gops(forward.fp32) * 1e9) / p.fp32).toFixed(0)}%; Winograd convs do fewer FLOPs than counted, so this can pass 100%)`);
  console.log(`  int8 ${gops(forward.int8).toFixed(0)} GOP/s of ${(p.int8 / 1e9).toFixed(0)} (${((100 * gops(forward.int8) * 1e9) / p.int8).toFixed(0)}%)`);
}

/** Images per second through decodeImage alone, with extract's default concurrency. */
async function decodeOnly(manifest: string): Promise<number> {
  const { loadDataset } = await import('../src/extract/dataset.ts');
  const { decodeImage } = await import('../src/extract/decode-image.ts');
  const items = (await loadDataset(manifest)).items;
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < items.length) await decodeImage(items[next++].file, { size: [224, 224] });
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return items.length / ((performance.now() - started) / 1000);
}

await main();
