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
  const { stdout } = await promisify(execFile)(python, argv, { maxBuffer: 1 << 20 }).catch((err: Error & { stderr?: string }) => {
    throw new Error(`${python} ${path.basename(SCRIPT)} --models ${model} failed: ${(err.stderr?.trim().split('\n').at(-1) ?? err.message)}`);
  });
  const last = stdout.trim().split('\n').at(-1) ?? '';
  const line = lineSchema.safeParse(last.startsWith('{') ? JSON.parse(last) : undefined);
  if (!line.success) throw new Error(`${python} ${path.basename(SCRIPT)} --models ${model} printed no result line (got ${JSON.stringify(last.slice(0, 80))})`);
  return { imgPerSec: line.data.img_per_s, runs: line.data.runs, torch: line.data.torch };
}
