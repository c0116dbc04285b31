/**
 * The one place audit touches the cache: a data folder or manifest is extracted first (only
 * what the key lacks is computed) and its current rows are read back; a cache key folder is
 * read as it is. Everything after this works on plain AuditRows.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Cut, CutPool } from '../backbones/cut.ts';
import { loadBackbone } from '../backbones/zoo.ts';
import type { CodeSpec } from '../cache/code-spec.ts';
import type { FeatureCache } from '../cache/feature-cache.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { loadDataset } from '../extract/dataset.ts';
import type { Interpolation, ResizeMode } from '../extract/decode-image.ts';
import { cutsFor, parseBackground, parseSize } from '../extract/extract-command.ts';
import { runExtract, type ExtractProgress } from '../extract/run-extract.ts';
import { openCodes, readCodeTable } from '../train-head/train-command.ts';
import { UsageError } from '../util/errors.ts';
import type { AuditRows } from './audit-rows.ts';

export interface AuditSourceOptions {
  /** A folder of class subfolders, a .csv/.jsonl manifest, or a cache key folder (or key). */
  readonly data: string;
  readonly cacheRoot: string;
  readonly backbone: string;
  readonly weights?: string;
  readonly layer?: string;
  readonly pool?: CutPool;
  readonly size?: string;
  readonly resize: ResizeMode;
  readonly interpolation: Interpolation;
  readonly background: string;
  readonly float16: boolean;
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
    const cache = await openCodes(opts.data, cacheRoot);
    if (cache.spec.augment) throw new UsageError(`${cache.dir} holds augmented views; audit the images' own key (extract prints both)`);
    return readRows(cache, opts.dataset, null, null);
  }
  const dataset = await loadDataset(opts.data);
  const size = opts.size ? parseSize(opts.size) : undefined;
  const backbone = await loadBackbone(opts.backbone, { weights: opts.weights, cuts: opts.layer ? [{ layer: opts.layer }] : undefined });
  const [cut]: Cut[] = cutsFor(backbone, opts.layer ? [opts.layer] : undefined, opts.pool, size);
  const name = opts.dataset ?? dataset.name;
  const summary = await runExtract({
    items: dataset.items,
    dataset: name,
    datasetRoot: dataset.root,
    backbone,
    cut,
    size,
    resize: opts.resize,
    interpolation: opts.interpolation,
    background: parseBackground(opts.background),
    dtype: opts.float16 ? 'float16' : 'float32',
    batch: opts.batch,
    concurrency: opts.concurrency,
    engine: opts.engine,
    device: opts.device,
    cacheRoot,
    waitForLockSeconds: opts.wait,
    onProgress: opts.onProgress,
  });
  const cache = await openCodes(summary.path, cacheRoot);
  // The dataset's name may hold rows of files since removed from the folder: audit what is listed now.
  const listed = new Set(dataset.items.map((i) => i.path));
  return readRows(cache, name, listed, { new: summary.new, reused: summary.reused, failed: summary.failed, seconds: summary.seconds });
}

async function readRows(cache: FeatureCache, dataset: string | undefined, listed: ReadonlySet<string> | null, extracted: AuditSource['extracted']): Promise<AuditSource> {
  const table = await readCodeTable(cache, dataset);
  const keep = [...table.paths.keys()].filter((r) => listed === null || listed.has(table.paths[r]));
  // Path order: the same data gives the same audit however the shards were written.
  keep.sort((a, b) => (table.paths[a] < table.paths[b] ? -1 : table.paths[a] > table.paths[b] ? 1 : table.labels[a] < table.labels[b] ? -1 : 1));
  const dim = table.dim;
  const codes = new Float32Array(keep.length * dim);
  keep.forEach((r, i) => codes.set(table.codes.subarray(r * dim, (r + 1) * dim), i * dim));
  const root = table.dataset === null ? undefined : (await cache.datasetRoots())[table.dataset];
  const files = keep.map((r) => {
    const file = root ? path.join(root, table.paths[r]) : null;
    return file && existsSync(file) ? file : null;
  });
  return {
    rows: {
      n: keep.length,
      dim,
      codes,
      sha256: keep.map((r) => table.sha256[r]),
      paths: keep.map((r) => table.paths[r]),
      labels: keep.map((r) => table.labels[r]),
      splits: keep.map((r) => table.splits[r]),
    },
    files,
    key: cache.key,
    cacheDir: cache.dir,
    spec: cache.spec,
    dataset: table.dataset,
    extracted,
  };
}
