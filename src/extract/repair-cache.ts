/**
 * `cache repair`: damaged shards are moved into the key's `quarantine/` folder (kept for
 * inspection, never read again) and the rows they held are recomputed by extracting the key's
 * recorded datasets again, which computes only the rows the key now lacks.
 */
import { mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { loadBackbone } from '../backbones/zoo.ts';
import { acquireCacheLock } from '../cache/cache-lock.ts';
import type { CodeSpec } from '../cache/code-spec.ts';
import { FeatureCache } from '../cache/feature-cache.ts';
import { verifyKey } from '../cache/verify.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { UsageError } from '../util/errors.ts';
import { AUGMENT_RECIPE } from './augment.ts';
import { loadDataset } from './dataset.ts';
import type { Interpolation, ResizeMode } from './decode-image.ts';
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
  readonly quarantined: readonly string[];
  /** Rows the key holds again that it lacked once the damaged shards were set aside. */
  readonly restoredRows: number;
  /** Forward passes that took (the rest were copies of content still cached). */
  readonly computed: number;
}

export async function repairKey(key: string, opts: RepairOptions): Promise<RepairResult> {
  const check = await verifyKey(opts.root, key);
  if (!check.spec) throw new UsageError(`${check.dir}: ${check.problems.join('; ')}; this key cannot be repaired, delete it and extract again`);
  const damaged = check.shards.filter((s) => s.problem);
  if (damaged.length === 0) return { key, quarantined: [], restoredRows: 0, computed: 0 };
  const rowsLeft = check.shards.reduce((n, s) => n + (s.rows ?? 0), 0);

  const quarantine = path.join(check.dir, 'quarantine');
  const lock = await acquireCacheLock(check.dir);
  try {
    await mkdir(quarantine, { recursive: true });
    for (const s of damaged) {
      await rename(s.file, path.join(quarantine, path.basename(s.file)));
      opts.log(`${path.basename(s.file)}: ${s.problem}; moved to ${quarantine}`);
    }
  } finally {
    await lock.release();
  }

  const cache = await FeatureCache.open(opts.root, key);
  const roots = await cache.datasetRoots();
  if (Object.keys(roots).length === 0) {
    throw new UsageError(`${check.dir} records no dataset folder to recompute from: extract the dataset into it again`);
  }
  let computed = 0;
  for (const [dataset, root] of Object.entries(roots)) computed += await reextract(check.spec, dataset, root, opts);
  const after = await verifyKey(opts.root, key);
  const restoredRows = after.shards.reduce((n, s) => n + (s.rows ?? 0), 0) - rowsLeft;
  return { key, quarantined: damaged.map((s) => path.join(quarantine, path.basename(s.file))), restoredRows, computed };
}

async function reextract(spec: CodeSpec, dataset: string, root: string, opts: RepairOptions): Promise<number> {
  if (spec.augment && spec.augment.recipe !== AUGMENT_RECIPE) {
    throw new UsageError(`its views were made with augmentation recipe ${spec.augment.recipe}, not this version's ${AUGMENT_RECIPE}: they cannot be recomputed`);
  }
  const cut = { layer: spec.layer, ...(spec.pool ? { pool: spec.pool } : {}) };
  const backbone = await loadBackbone(spec.backbone, { weights: opts.weights, cuts: [cut] });
  if (backbone.weightsId !== spec.weights) {
    throw new UsageError(`the key was computed with other ${spec.backbone} weights than ${backbone.weightsFrom}: pass the original with --weights`);
  }
  const data = await loadDataset(root);
  const summary = await runExtract({
    items: data.items,
    dataset,
    datasetRoot: root,
    backbone,
    cut,
    size: spec.preprocessing.size,
    resize: spec.preprocessing.resize as ResizeMode,
    interpolation: spec.preprocessing.interpolation as Interpolation,
    background: spec.preprocessing.background,
    dtype: spec.dtype,
    ...(spec.augment ? { augment: { views: spec.augment.views, seed: spec.augment.seed } } : {}),
    batch: opts.batch,
    concurrency: opts.concurrency,
    engine: opts.engine,
    device: opts.device,
    cacheRoot: opts.root,
  });
  opts.log(`${dataset}: re-extracted from ${root} (${summary.new + summary.views} forward passes)`);
  return summary.new + summary.views;
}
