/**
 * The one place audit touches the cache: a data folder or manifest is extracted first (only
 * what the key lacks is computed) and its current rows are read back; a cache key folder is
 * read as it is. Everything after this works on plain AuditRows.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { CodeSpec } from '../cache/code-spec.ts';
import { readCodeTable, resolveDataset } from '../cache/code-table.ts';
import { FeatureCache } from '../cache/feature-cache.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { loadDataset } from '../extract/dataset.ts';
import { planExtract, type ExtractSettingsFlags } from '../extract/extract-plan.ts';
import { runExtract, type ExtractProgress } from '../extract/run-extract.ts';
import { UsageError } from '../util/errors.ts';
import type { AuditRows } from './audit-rows.ts';

export interface AuditSourceOptions extends ExtractSettingsFlags {
  /** A folder of class subfolders, a .csv/.jsonl manifest, or a cache key folder (or key). */
  readonly data: string;
  readonly cacheRoot: string;
  readonly batch: number;
  readonly concurrency: number;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  /** The dataset in the key (default: the folder's name, or the key's only dataset). */
  readonly dataset?: string;
  readonly wait: number;
  readonly onProgress?: (p: ExtractProgress) => void;
}

export interface AuditSource {
  /** Rows with the splits they were listed under (null: none). */
  readonly rows: AuditRows;
  /** Absolute image file per row, where it still exists (thumbnails, the cleaned manifest). */
  readonly files: readonly (string | null)[];
  readonly key: string;
  readonly cacheDir: string;
  readonly spec: CodeSpec;
  readonly dataset: string | null;
  /** What extract did first, when audit was given images: counts, seconds, failures. */
  readonly extracted: { readonly new: number; readonly reused: number; readonly failed: number; readonly seconds: number } | null;
}

export function isCacheKey(data: string, cacheRoot: string): boolean {
  return existsSync(path.join(data, 'spec.json')) || (!existsSync(data) && existsSync(path.join(cacheRoot, data, 'spec.json')));
}

export async function loadAuditSource(opts: AuditSourceOptions): Promise<AuditSource> {
  const cacheRoot = path.resolve(opts.cacheRoot);
  if (isCacheKey(opts.data, cacheRoot)) {
    const cache = await FeatureCache.locate(opts.data, cacheRoot);
    await cache.waitForWriters(opts.wait);
    if (cache.spec.augment) throw new UsageError(`${cache.dir} holds augmented views; audit the images' own key (extract prints both)`);
    return readRows(cache, await resolveDataset(cache, opts.dataset), null);
  }
  const dataset = await loadDataset(opts.data);
  const plan = await planExtract({ ...opts, layer: opts.layer?.split(',')[0] });
  const name = opts.dataset ?? dataset.name;
  const summary = await runExtract({
    items: dataset.items,
    dataset: { name, root: dataset.root, source: dataset.source },
    ...plan,
    cut: plan.cuts[0],
    batch: opts.batch,
    concurrency: opts.concurrency,
    engine: opts.engine,
    device: opts.device,
    cacheRoot,
    waitForLockSeconds: opts.wait,
    onProgress: opts.onProgress,
  });
  const cache = await FeatureCache.open(cacheRoot, summary.key);
  return readRows(cache, name, { new: summary.new, reused: summary.reused, failed: summary.failed, seconds: summary.seconds });
}

/** The dataset's rows as its latest membership lists them, in path order, with their codes. */
async function readRows(cache: FeatureCache, dataset: string, extracted: AuditSource['extracted']): Promise<AuditSource> {
  const table = await readCodeTable(cache, dataset);
  const files = table.paths.map((p) => {
    const file = path.join(table.root, p);
    return existsSync(file) ? file : null;
  });
  return {
    rows: { n: table.paths.length, dim: table.dim, codes: table.codes, sha256: table.sha256, paths: table.paths, labels: table.labels, splits: table.splits },
    files,
    key: cache.key,
    cacheDir: cache.dir,
    spec: cache.spec,
    dataset: table.dataset,
    extracted,
  };
}
