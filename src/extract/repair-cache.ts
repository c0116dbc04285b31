/**
 * `cache repair`: what verify found damaged is set aside (src/cache/repair-shards.ts), and the
 * rows lost with it are recomputed by extracting the key's datasets again from where their
 * membership says they were read, which computes only the codes the key now lacks.
 */
import { loadSpecBackbone } from '../backbones/zoo.ts';
import { settingsOfSpec, type CodeSpec } from '../cache/code-spec.ts';
import { FeatureCache } from '../cache/feature-cache.ts';
import { readMembership } from '../cache/membership.ts';
import { repairShards } from '../cache/repair-shards.ts';
import { isHealthy, verifyKey } from '../cache/verify.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { UsageError } from '../util/errors.ts';
import { AUGMENT_RECIPE } from './augment.ts';
import { loadDataset } from './dataset.ts';
import { runExtract } from './run-extract.ts';

export interface RepairOptions {
  readonly root: string;
  readonly weights?: string;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  readonly batch: number;
  readonly concurrency: number;
  readonly log: (line: string) => void;
}

export interface RepairResult {
  readonly key: string;
  readonly healthy: boolean;
  readonly quarantined: readonly string[];
  /** Rows removed because an earlier shard holds their content. */
  readonly deduplicated: number;
  /** Forward passes run to restore what was lost. */
  readonly computed: number;
}

export async function repairKey(key: string, opts: RepairOptions): Promise<RepairResult> {
  const check = await verifyKey(opts.root, key);
  if (!check.spec) throw new UsageError(`${check.dir}: ${check.problems.join('; ')}; this key cannot be repaired: delete it and extract again`);
  if (isHealthy(check)) return { key, healthy: true, quarantined: [], deduplicated: 0, computed: 0 };
  const cache = await FeatureCache.open(opts.root, key);
  const fixed = await repairShards(cache, check, opts.log);
  let computed = 0;
  for (const dataset of await cache.datasets()) computed += await reextract(cache.spec, dataset, opts);
  return { key, healthy: false, quarantined: fixed.quarantined, deduplicated: fixed.deduplicated, computed };
}

async function reextract(spec: CodeSpec, dataset: string, opts: RepairOptions): Promise<number> {
  if (spec.augment && spec.augment.recipe !== AUGMENT_RECIPE) {
    throw new UsageError(`its views were made with augmentation recipe ${spec.augment.recipe}, not this version's ${AUGMENT_RECIPE}: they cannot be recomputed`);
  }
  const { source } = await readMembership(opts.root, dataset);
  const settings = settingsOfSpec(spec);
  const backbone = await loadSpecBackbone(spec, { weights: opts.weights });
  if (backbone.weightsId !== spec.weights) {
    throw new UsageError(`the key was computed with other ${spec.backbone} weights than ${backbone.weightsFrom}: pass the original with --weights`);
  }
  const data = await loadDataset(source);
  const summary = await runExtract({
    items: data.items,
    dataset: { name: dataset, root: data.root, source: data.source },
    backbone,
    ...settings,
    batch: opts.batch,
    concurrency: opts.concurrency,
    engine: opts.engine,
    device: opts.device,
    cacheRoot: opts.root,
  });
  opts.log(`${dataset}: re-extracted from ${source} (${summary.new + summary.views} forward passes)`);
  return summary.new + summary.views;
}
