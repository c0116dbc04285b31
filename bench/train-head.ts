/**
 * bench/train-head: the Keras-blog head (Dense(256, relu) → Dropout(0.5) → Dense(2)), Adam,
 * batch 32, on 2000 rows of random codes, against the PyTorch reference script, in one run.
 *
 *   npm run bench:train-head                        # 50 epochs at 4096-d and 25,088-d
 *   npm run bench:train-head -- --epochs 5 --skip-tfjs
 *   npm run bench:train-head -- --dims 4096 --skip-tfjs --skip-torch --also-optimizers sgd,momentum
 *   npm run bench:train-head -- --no-onnx-only       # without the row that turns the native update off
 *
 * Random codes are fine: the cost does not depend on the values.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import { mulberry32 } from '../src/util/numbers.ts';
import { fit } from '../src/train-head/fit.ts';
import { initHeadParams } from '../src/train-head/head-init.ts';
import { createOnnxTrainer } from '../src/train-head/onnx-trainer.ts';
import { createTfjsTrainer } from '../src/train-head/tfjs-trainer.ts';
import type { HeadArchitecture, HeadTrainer, OptimizerConfig, TrainerOptions } from '../src/train-head/trainer.ts';
import { machineLine } from './machine.ts';
import { benchArgs } from './args.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const { values: args } = benchArgs({
  options: {
    epochs: { type: 'string', default: '50' },
    dims: { type: 'string', default: '4096,25088' },
    rows: { type: 'string', default: '2000' },
    /** TF.js on wasm takes minutes per 25,088-d epoch set; it runs this many epochs and is scaled. */
    'tfjs-epochs': { type: 'string', default: '1' },
    'skip-tfjs': { type: 'boolean', default: false },
    'skip-torch': { type: 'boolean', default: false },
    /** Also time the onnx trainer with the native first-kernel update off (its ONNX-only path). */
    'onnx-only': { type: 'boolean', default: true },
    /** Also time the onnx trainer with these optimizers (the comparison is Adam's). */
    'also-optimizers': { type: 'string', default: '' },
    /** A Python with PyTorch 2.x (see bench/reference/README.md). */
    python: { type: 'string', default: process.env.BOTTLENECK_TORCH_PYTHON ?? (existsSync('/work/venv-torch/bin/python') ? '/work/venv-torch/bin/python' : '/usr/bin/python3') },
  },
  allowNegative: true,
});

const OPTIMIZERS: Record<string, OptimizerConfig> = {
  adam: { kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 },
  sgd: { kind: 'sgd', lr: 1e-2, momentum: 0 },
  momentum: { kind: 'sgd', lr: 1e-2, momentum: 0.9 },
  rmsprop: { kind: 'rmsprop', lr: 1e-3, rho: 0.9, epsilon: 1e-7 },
};

interface Row {
  readonly dim: number;
  readonly name: string;
  readonly secondsPerEpoch: number;
  readonly epochs: number;
}

const onnxOnly = (o: TrainerOptions) => createOnnxTrainer(o, { native: 'off' });

async function ours(
  create: (o: TrainerOptions) => Promise<HeadTrainer>,
  dim: number,
  rows: number,
  epochs: number,
  optimizer: OptimizerConfig = OPTIMIZERS.adam,
): Promise<{ perEpoch: number; name: string }> {
  const architecture: HeadArchitecture = { inputDim: dim, hidden: [256], dropout: 0.5, classes: 2 };
  const random = mulberry32(1);
  const x = Float32Array.from({ length: rows * dim }, () => random());
  const y = Int32Array.from({ length: rows }, () => (random() < 0.5 ? 0 : 1));
  const trainer = await create({
    architecture,
    training: { optimizer, l2: 0 },
    initial: initHeadParams(architecture, 1),
    maxBatch: 256,
  });
  try {
    // Training time only, as the PyTorch script measures: no per-epoch evaluation.
    const started = performance.now();
    await fit({ trainer, architecture, train: { x, y, n: rows }, epochs, batch: 32, seed: 1, classWeights: null, patience: null, keep: 'last', evaluate: false });
    return { perEpoch: (performance.now() - started) / 1000 / epochs, name: `${trainer.name} (${trainer.provider})` };
  } finally {
    await trainer.dispose();
  }
}

async function torch(dim: number, rows: number, epochs: number): Promise<{ secondsPerEpoch: number; label: string }> {
  const { stdout } = await run(args.python!, [
    path.join(ROOT, 'bench', 'reference', 'torch_head.py'),
    ...['--rows', String(rows), '--dim', String(dim), '--classes', '2', '--epochs', String(epochs), '--batch', '32'],
    ...['--threads', String(os.availableParallelism()), '--json'],
  ]);
  const r = TorchHeadResult.parse(JSON.parse(stdout.trim().split('\n').pop()!));
  return { secondsPerEpoch: r.seconds_per_epoch, label: `PyTorch ${r.torch_version ?? ''} ${r.blas ? path.basename(r.blas) : ''}`.trim() };
}

/** torch_head.py --json's last line. */
const TorchHeadResult = z.object({ seconds_per_epoch: z.number().positive(), torch_version: z.string().nullish(), blas: z.string().nullish() });

const results: Row[] = [];
const epochs = Number(args.epochs);
const rows = Number(args.rows);
for (const dim of args.dims!.split(',').map(Number)) {
  const onnx = await ours(createOnnxTrainer, dim, rows, epochs);
  results.push({ dim, name: onnx.name, secondsPerEpoch: onnx.perEpoch, epochs });
  for (const opt of args['also-optimizers']!.split(',').filter(Boolean)) {
    if (!OPTIMIZERS[opt]) throw new Error(`--also-optimizers: unknown '${opt}' (${Object.keys(OPTIMIZERS).join(', ')})`);
    const other = await ours(createOnnxTrainer, dim, rows, epochs, OPTIMIZERS[opt]);
    results.push({ dim, name: `${other.name}, ${opt}`, secondsPerEpoch: other.perEpoch, epochs });
  }
  if (args['onnx-only'] && onnx.name.includes('+ native update')) {
    const plain = await ours(onnxOnly, dim, rows, epochs);
    results.push({ dim, name: `${plain.name}, native update off`, secondsPerEpoch: plain.perEpoch, epochs });
  }
  if (!args['skip-tfjs']) {
    const tfjsEpochs = Number(args['tfjs-epochs']);
    const tfjs = await ours(createTfjsTrainer, dim, rows, tfjsEpochs);
    results.push({ dim, name: tfjs.name, secondsPerEpoch: tfjs.perEpoch, epochs: tfjsEpochs });
  }
  if (!args['skip-torch']) {
    try {
      const t = await torch(dim, rows, epochs);
      results.push({ dim, name: `${t.label} (torch_head.py)`, secondsPerEpoch: t.secondsPerEpoch, epochs });
    } catch (err) {
      console.error(`PyTorch reference skipped: ${(err as Error).message.split('\n')[0]}`);
    }
  }
}

console.log(`${machineLine()}\n${rows} rows, batch 32, Dense(256) head, Adam`);
console.log('| codes | trainer | epochs run | s/epoch | 50 epochs (s) | speed vs PyTorch |');
console.log('|---|---|---|---|---|---|');
for (const r of results) {
  const ref = results.find((o) => o.dim === r.dim && o.name.startsWith('PyTorch'));
  const ratio = ref ? `${(ref.secondsPerEpoch / r.secondsPerEpoch).toFixed(2)}×` : '-';
  console.log(`| ${r.dim}-d | ${r.name} | ${r.epochs} | ${r.secondsPerEpoch.toFixed(3)} | ${(r.secondsPerEpoch * 50).toFixed(1)} | ${r.name.startsWith('PyTorch') ? '1.00×' : ratio} |`);
}
const isAdamOnnx = (r: Row) => r.name.startsWith('onnx') && !r.name.includes(', ');
const onnx4096 = results.find((r) => r.dim === 4096 && isAdamOnnx(r));
const onnxBig = results.find((r) => r.dim === 25088 && isAdamOnnx(r));
const torchBig = results.find((r) => r.dim === 25088 && r.name.startsWith('PyTorch'));
if (onnx4096) console.log(`\n4096-d, 50 epochs: ${(onnx4096.secondsPerEpoch * 50).toFixed(1)} s (target ≤ 10 s: ${onnx4096.secondsPerEpoch * 50 <= 10 ? 'met' : 'NOT met'})`);
if (onnxBig && torchBig) {
  const ratio = torchBig.secondsPerEpoch / onnxBig.secondsPerEpoch;
  console.log(`25,088-d: ${ratio.toFixed(2)}× PyTorch (target ≥ 2×: ${ratio >= 2 ? 'met' : 'NOT met'})`);
}
