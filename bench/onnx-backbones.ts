/**
 * bench/onnx-backbones: bare forward img/s of ONNX-file backbones (torch.onnx.export of
 * torchvision's resnet50, convnext_tiny, efficientnet_b0 and timm's ViT-S/16 and DINOv2 ViT-S/14)
 * in bottleneck (onnxruntime, through the graph rewritten to the default cut) against PyTorch
 * eager running the same architectures, in one run, model by model, on the same machine.
 *
 *   npm run bench:onnx-backbones                              # batch 8, 10 s per model and side
 *   npm run bench:onnx-backbones -- --batch 16 --seconds 5 --models resnet50,vit_small_patch16_224
 *   npm run bench:onnx-backbones -- --no-int8                  # fp32 only
 *
 * Needs the .onnx files of test/reference/onnx-backbones (regenerate: see its README) and a
 * Python with torch, torchvision and timm (--python, default $BOTTLENECK_TORCH_PYTHON or
 * /work/venv-torch/bin/python). Targets (issue 14): at least PyTorch's speed for each CNN,
 * within 10% of it for the ViTs.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadOnnxBackbone } from '../src/backbones/onnx-file/onnx-backbone.ts';
import { createEngine } from '../src/engines/select-engine.ts';
import { machineLine } from './machine.ts';
import { DEFAULT_TORCH_PYTHON, torchForward } from './torch-forward.ts';
import { benchArgs } from './args.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const { values: args } = benchArgs({
  // --no-int8 turns the boolean off.
  allowNegative: true,
  options: {
    models: { type: 'string', default: 'resnet50,convnext_tiny,efficientnet_b0,vit_small_patch16_224,vit_small_patch14_dinov2' },
    batch: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '10' },
    python: { type: 'string', default: DEFAULT_TORCH_PYTHON },
    /** Also time each model with --precision int8 (Q/DQ, calibrated on the synthetic batch). */
    int8: { type: 'boolean', default: true },
  },
});
const batch = Number(args.batch);
const seconds = Number(args.seconds);
const VITS = new Set(['vit_small_patch16_224', 'vit_small_patch14_dinov2']);

async function bottleneckImgPerSec(file: string, precision: 'fp32' | 'int8'): Promise<{ imgPerSec: number; cut: string }> {
  const backbone = await loadOnnxBackbone(file);
  const [h, w] = backbone.preprocessing.size;
  const input = new Float32Array(batch * h * w * 3);
  for (let i = 0; i < input.length; i++) input[i] = (((i * 2654435761) % 255) - 120) / 60;
  // int8 calibrates on the synthetic batch itself: its ranges do not change the speed.
  const calibration = { key: `bench-${path.basename(file)}`, batches: async function* () { yield { images: input, count: batch, size: [h, w] as const, sha256: [] }; } };
  const engine = await createEngine({ engine: 'onnx', device: 'auto', backbone, cuts: [backbone.defaultCut], cacheDir: path.join(ROOT, 'cache'), precision, calibration });
  for (let i = 0; i < 2; i++) await engine.run(input, batch);
  let runs = 0;
  const start = performance.now();
  while (runs < 2 || performance.now() - start < seconds * 1000) {
    await engine.run(input, batch);
    runs++;
  }
  const imgPerSec = (runs * batch * 1000) / (performance.now() - start);
  await engine.dispose();
  return { imgPerSec, cut: backbone.defaultCut.layer };
}

async function main(): Promise<void> {
  console.log(machineLine());
  console.log(`batch ${batch}, ${seconds} s per model and side, ${os.availableParallelism()} threads each\n`);
  if (!existsSync(args.python!)) throw new Error(`no Python at ${args.python}: pass --python or set BOTTLENECK_TORCH_PYTHON (see test/reference/onnx-backbones/README.md)`);
  const manifest = JSON.parse(await readFile(path.join(ROOT, 'test', 'reference', 'onnx-backbones', 'manifest.json'), 'utf8')) as { models: { name: string; onnx: string }[] };
  const rows: string[][] = [];
  let torchVersion = '';
  const unknown = args.models!.split(',').filter((name) => !manifest.models.some((m) => m.name === name));
  if (unknown.length > 0) {
    console.error(`bench/onnx-backbones: --models ${unknown.join(',')}: use any of ${manifest.models.map((m) => m.name).join(', ')}`);
    process.exit(2);
  }
  for (const name of args.models!.split(',')) {
    const entry = manifest.models.find((m) => m.name === name);
    const file = entry && path.join(ROOT, entry.onnx);
    if (!file || !existsSync(file)) {
      console.error(`skip ${name}: ${entry ? `${entry.onnx} is absent` : 'not in the manifest'}`);
      continue;
    }
    const ours = await bottleneckImgPerSec(file, 'fp32');
    const int8 = args.int8 ? await bottleneckImgPerSec(file, 'int8') : undefined;
    const torch = await torchForward(args.python!, name, batch, seconds);
    torchVersion = torch.torch;
    const ratio = ours.imgPerSec / torch.imgPerSec;
    const target = VITS.has(name) ? 0.9 : 1.0;
    const int8Cells = int8 ? [int8.imgPerSec.toFixed(2), `${(int8.imgPerSec / ours.imgPerSec).toFixed(2)}×`, `${(int8.imgPerSec / torch.imgPerSec).toFixed(2)}×`] : ['-', '-', '-'];
    rows.push([name, ours.cut, ours.imgPerSec.toFixed(2), torch.imgPerSec.toFixed(2), `${ratio.toFixed(2)}×`, `≥ ${target.toFixed(1)}×: ${ratio >= target ? 'met' : 'NOT met'}`, ...int8Cells]);
    console.error(`${name}: bottleneck ${ours.imgPerSec.toFixed(2)} img/s${int8 ? ` (int8 ${int8.imgPerSec.toFixed(2)})` : ''}, torch ${torch.imgPerSec.toFixed(2)} img/s`);
  }
  const header = ['model', 'cut (default)', 'bottleneck fp32 img/s', `torch ${torchVersion} eager img/s`, 'fp32 ratio', 'target', 'bottleneck int8 img/s', 'int8 / our fp32', 'int8 / torch'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(fmt(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(fmt(r));
}

// PyTorch is this bench's anchor: without it there is no result, so one line and exit 1.
await main().catch((err: Error) => {
  console.error(`bench:onnx-backbones: ${err.message}`);
  process.exit(1);
});
