/**
 * What a probe learnt about a model (every tensor's shape and layout at one input size), kept
 * on disk by the model's weights id, so that each command after the first skips the probe: a
 * whole forward pass with every tensor as an output, seconds and gigabytes for a ViT.
 * `$BOTTLENECK_PROBE_CACHE`, default ~/.cache/bottleneck/onnx-probes. A cache that cannot be read
 * or written is only slower: the probe runs again.
 */
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../util/atomic-file.ts';
import { readJsonFile } from '../../util/json-file.ts';
import type { Pair } from '../layer-graph.ts';
import type { TensorInfo } from './onnx-model-file.ts';

/** Bumped when what a probe records (or how layouts are read) changes. */
const PROBE_FORMAT = 1;

const probeSchema = z.object({
  format: z.literal(PROBE_FORMAT),
  dynamicBatch: z.boolean(),
  tensors: z.array(
    z.object({
      name: z.string(),
      op: z.string(),
      dims: z.array(z.number().int().positive()),
      float16: z.boolean(),
      layout: z.enum(['nchw', 'nhwc', 'tokens', 'vector', 'other']),
    }),
  ),
});

export interface ProbeResult {
  readonly tensors: Map<string, TensorInfo>;
  readonly dynamicBatch: boolean;
}

function probeFile(weightsId: string, size: Pair, layout: string): string {
  const dir = process.env.BOTTLENECK_PROBE_CACHE || path.join(os.homedir(), '.cache', 'bottleneck', 'onnx-probes');
  return path.join(dir, `${weightsId.slice(0, 32)}-${size[0]}x${size[1]}-${layout}.json`);
}

export async function cachedProbe(weightsId: string, size: Pair, layout: string, probe: () => Promise<ProbeResult>): Promise<ProbeResult> {
  const file = probeFile(weightsId, size, layout);
  const known = await readJsonFile(file, probeSchema, 'a probe of an ONNX model').catch(() => undefined);
  if (known) return { dynamicBatch: known.dynamicBatch, tensors: new Map(known.tensors.map((t) => [t.name, t])) };
  const result = await probe();
  const record = { format: PROBE_FORMAT, dynamicBatch: result.dynamicBatch, tensors: [...result.tensors.values()] };
  await writeFileAtomic(file, JSON.stringify(record)).catch(() => undefined);
  return result;
}
