/**
 * Runs bench/reference/torch_forward.py for one model: PyTorch eager's bare forward img/s on this
 * machine, with as many threads as bottleneck gets, for the benches that set it beside ours.
 */
import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';

const SCRIPT = path.resolve(import.meta.dirname, 'reference', 'torch_forward.py');
export const DEFAULT_TORCH_PYTHON = process.env.BOTTLENECK_TORCH_PYTHON ?? '/work/venv-torch/bin/python';

const lineSchema = z.object({ img_per_s: z.number(), runs: z.number(), torch: z.string() });

export async function torchForward(python: string, model: string, batch: number, seconds: number): Promise<{ imgPerSec: number; runs: number; torch: string }> {
  const argv = [SCRIPT, '--models', model, '--batch', String(batch), '--seconds', String(seconds), '--threads', String(os.availableParallelism())];
  const { stdout } = await promisify(execFile)(python, argv, { maxBuffer: 1 << 20 });
  const line = lineSchema.parse(JSON.parse(stdout.trim().split('\n').at(-1)!));
  return { imgPerSec: line.img_per_s, runs: line.runs, torch: line.torch };
}
