/**
 * The backbone a head runs on: the zoo backbone its codes came from, or, for a fine-tuned head,
 * that backbone with the fine-tuned tensors (`backbone.safetensors` beside head.json) in place.
 * predict, export and evaluate --data all load a head's backbone through here.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { requireGraph, type Backbone, type GraphBackbone } from '../backbones/backbone.ts';
import { readSafetensors } from '../backbones/weights/safetensors.ts';
import type { WeightTensor } from '../backbones/weights.ts';
import { loadSpecBackbone, type LoadBackboneOptions } from '../backbones/zoo.ts';
import { FINETUNE_WEIGHTS_FILE, type Head } from './head-folder.ts';
import { UsageError } from '../util/errors.ts';

export async function loadHeadBackbone(head: Head, opts: Pick<LoadBackboneOptions, 'weights' | 'weightsDir'> = {}): Promise<Backbone> {
  const spec = head.config.codeSpec;
  const loaded = await loadSpecBackbone(spec, opts);
  const ft = head.config.finetune;
  if (!ft) return loaded;
  const base = requireGraph(loaded, `head ${head.dir} (fine-tuned)`);
  if (base.weightsId !== ft.baseWeights) {
    throw new UsageError(
      `head ${head.dir} was fine-tuned from ${spec.backbone} weights (sha256 ${ft.baseWeights.slice(0, 12)}…) other than ${base.weightsFrom} (${base.weightsId.slice(0, 12)}…)`,
    );
  }
  const file = path.join(head.dir, FINETUNE_WEIGHTS_FILE);
  const { source } = await readSafetensors(file);
  const tuned = withTensors(base, source.tensors, file);
  if (tuned.weightsId !== spec.weights) {
    throw new UsageError(`${file}: these tensors are not the ones head ${head.dir} was fine-tuned to (weights ${tuned.weightsId.slice(0, 12)}…, head.json says ${spec.weights.slice(0, 12)}…)`);
  }
  return tuned;
}

/**
 * `base` with some canonical tensors replaced. Its weightsId is derived from the base's and the
 * new tensors' bytes, so codes (and cache keys, and generated engine models) of a fine-tuned
 * backbone never mix with the base's.
 */
export function withTensors(base: GraphBackbone, tensors: ReadonlyMap<string, WeightTensor>, from = 'fine-tuned weights'): GraphBackbone {
  const weights = new Map(base.weights);
  for (const [name, t] of tensors) {
    const old = base.weights.get(name);
    if (!old) throw new UsageError(`${from}: tensor '${name}' is not a weight of ${base.graph.name}`);
    if (old.shape.join() !== t.shape.join()) throw new UsageError(`${from}: tensor '${name}' is [${t.shape}], ${base.graph.name} needs [${old.shape}]`);
    weights.set(name, t);
  }
  return { ...base, weights, weightsId: fineTunedWeightsId(base.weightsId, tensors), weightsFrom: `${base.weightsFrom} + ${from}` };
}

/** sha256 over the base weights' id and every replaced tensor (name, shape, bytes), in name order. */
export function fineTunedWeightsId(baseId: string, tensors: ReadonlyMap<string, WeightTensor>): string {
  const hash = createHash('sha256').update(`${baseId}\u0000finetune`);
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name)!;
    hash.update(`\u0000${name}\u0000${t.shape.join(',')}\u0000`);
    hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return hash.digest('hex');
}
