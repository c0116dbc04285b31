/**
 * One onnxruntime session on the best provider that starts: CUDA, then WebGPU, then the CPU.
 * Both ONNX engines (the layer graphs' and users' ONNX files') start theirs here, in the
 * worker thread of onnx-worker-session.ts, so that the event loop runs beside the forward pass.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import ort from '../util/onnxruntime.ts';
import { UserError } from '../util/errors.ts';
import type { DeviceChoice } from './engine.ts';
import { startWorkerSession, warmOnnxWorker, type OnnxRunner } from './onnx-worker-session.ts';

export type OnnxProvider = 'cuda' | 'webgpu' | 'cpu';

const NO_GPU =
  '--device gpu: no GPU provider for onnxruntime-node here (CUDA needs `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` and CUDA 12; WebGPU needs a GPU and a Vulkan driver); use --device cpu or auto';

/**
 * Providers to try, best first. Only providers that can plausibly start are tried, because a
 * failing one prints native warnings: CUDA needs the provider library that
 * `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` fetches; WebGPU needs a GPU
 * device node and a Vulkan driver.
 */
export function providerCandidates(device: DeviceChoice): OnnxProvider[] {
  if (device === 'cpu') return ['cpu'];
  const gpus: OnnxProvider[] = [];
  if (existsSync(path.join(ortBinaryDir(), 'libonnxruntime_providers_cuda.so'))) gpus.push('cuda');
  const hasGpuDevice = ['/dev/dri', '/dev/nvidiactl'].some((p) => existsSync(p));
  if (hasGpuDevice && ort.listSupportedBackends().some((b) => b.name === 'webgpu')) gpus.push('webgpu');
  return device === 'gpu' ? gpus : [...gpus, 'cpu'];
}

export function assertGpuProvider(device: DeviceChoice): void {
  if (device === 'gpu' && providerCandidates('gpu').length === 0) throw new UserError(NO_GPU);
}

function ortBinaryDir(): string {
  const entry = createRequire(import.meta.url).resolve('onnxruntime-node');
  return path.join(path.dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

export interface StartedSession {
  readonly session: OnnxRunner;
  readonly provider: OnnxProvider;
  /** Why better providers were not used. */
  readonly notes: readonly string[];
}

/** A model in the cache: reused, or written by this call. */
export interface CachedModel {
  readonly file: string;
  readonly reused: boolean;
  /** What quantising measured, to tell the user once (int8 only, and only when it calibrated). */
  readonly note?: string;
}

/**
 * `modelFor` writes (or finds) the model file a provider runs. A cached model that no longer
 * loads (cut short by a full disk, damaged on disk) is asked for again with `rebuild`; if the
 * fresh one fails too, it is the provider that cannot start.
 */
export async function startOnnxSession(opts: {
  readonly device: DeviceChoice;
  readonly threads?: number;
  readonly modelFor: (provider: OnnxProvider, rebuild: boolean) => Promise<CachedModel>;
}): Promise<StartedSession> {
  const candidates = providerCandidates(opts.device);
  if (candidates.length === 0) throw new UserError(NO_GPU);
  const threads = opts.threads ?? os.availableParallelism();
  const notes: string[] = [];
  // It boots while modelFor writes or finds the model.
  warmOnnxWorker();
  const start = (file: string, provider: OnnxProvider) =>
    startWorkerSession(file, {
      executionProviders: [provider],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
    });
  for (const provider of candidates) {
    const cached = await opts.modelFor(provider, false);
    try {
      const session = await start(cached.file, provider).catch(async (err: unknown) => {
        if (!cached.reused) throw err;
        return start((await opts.modelFor(provider, true)).file, provider);
      });
      return { session, provider, notes };
    } catch (err) {
      notes.push(`onnxruntime ${provider} provider unavailable (${(err instanceof Error ? err.message : String(err)).split('\n')[0]})`);
    }
  }
  const message = `onnxruntime could not start any provider: ${notes.join('; ')}`;
  throw opts.device === 'gpu' ? new UserError(`--device gpu: ${message}`) : new Error(message);
}
