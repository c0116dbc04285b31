/**
 * The extract stage: every image of a dataset once through the frozen backbone, codes into
 * the cache. Data flows one way: dataset → read + hash → decode (p-queue, sharp on libuv's
 * threads) → batch → engine → shard writer. While batch k runs in the engine, batch k+1 is
 * being decoded. Only images whose content the cache lacks reach the engine.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Backbone } from '../backbones/backbone.ts';
import { codeShape, cutLabel, planCuts, type Cut } from '../backbones/cut.ts';
import type { Pair } from '../backbones/layer-graph.ts';
import { resolveLayer } from '../backbones/layer-graph.ts';
import { preprocessInto } from '../backbones/preprocess.ts';
import { acquireCacheLock, type CacheLock } from '../cache/cache-lock.ts';
import type { CodeDtype, CodeSpec } from '../cache/code-spec.ts';
import { rowIdentity, type CodeRows } from '../cache/code-rows.ts';
import { writeErrorsTable, type FailedImage } from '../cache/errors-table.ts';
import { FeatureCache, type CacheIndex, type ShardWriter } from '../cache/feature-cache.ts';
import type { DeviceChoice, EngineChoice, FeatureEngine } from '../engines/engine.ts';
import { createEngine } from '../engines/select-engine.ts';
import { UsageError } from '../util/errors.ts';
import { TOOL_VERSION } from '../util/version.ts';
import type { DatasetItem } from './dataset.ts';
import { DecodeError, decodeImage, readImageFile, type Interpolation, type ResizeMode } from './decode-image.ts';
import { orderedPool } from './ordered-pool.ts';

export interface ExtractOptions {
  readonly items: readonly DatasetItem[];
  /** Recorded on every row, so one cache key can hold several datasets apart. */
  readonly dataset: string;
  /** The folder or manifest's folder that item paths are relative to, recorded in the cache. */
  readonly datasetRoot?: string;
  readonly backbone: Backbone;
  readonly cut: Cut;
  /**
   * Further cuts computed in the same forward pass (a layer sweep): each goes to its own cache
   * key, for the cost of one pass.
   */
  readonly moreCuts?: readonly Cut[];
  /** Network input size; defaults to the backbone's own. */
  readonly size?: Pair;
  readonly resize: ResizeMode;
  readonly interpolation: Interpolation;
  readonly background: readonly [number, number, number];
  readonly dtype: CodeDtype;
  readonly batch: number;
  readonly concurrency: number;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  readonly cacheRoot: string;
  readonly waitForLockSeconds?: number;
  readonly maxShardBytes?: number;
  /** Buffered rows are flushed to a shard at least this often, bounding what a crash can lose. */
  readonly flushSeconds?: number;
  readonly onProgress?: (progress: ExtractProgress) => void;
  /** Stops cleanly (buffered rows are flushed, the lock released) when aborted. */
  readonly signal?: AbortSignal;
  /** Called once the engine is running, e.g. to print which one `auto` chose. */
  readonly onEngine?: (engine: FeatureEngine) => void;
}

export interface ExtractProgress {
  readonly done: number;
  readonly total: number;
  readonly computed: number;
  readonly reused: number;
  readonly failed: number;
  readonly seconds: number;
}

export interface ExtractSummary {
  readonly images: number;
  /** Forward passes run: new content. */
  readonly new: number;
  /** Rows already cached, or whose content was already cached or computed in this run. */
  readonly reused: number;
  readonly failed: number;
  readonly seconds: number;
  readonly imgPerSec: number;
  /** The first cut's cache key and folder. */
  readonly key: string;
  readonly path: string;
  /** Every cut's key and folder, in request order. */
  readonly caches: readonly { readonly cut: Cut; readonly key: string; readonly path: string }[];
  readonly engine: string | null;
  readonly failures: readonly FailedImage[];
  readonly interrupted: boolean;
}

type Prepared =
  | { readonly kind: 'cached'; readonly item: DatasetItem }
  | { readonly kind: 'copy'; readonly item: DatasetItem; readonly sha256: string }
  | { readonly kind: 'decoded'; readonly item: DatasetItem; readonly sha256: string; readonly pixels: Uint8Array }
  | { readonly kind: 'failed'; readonly failure: FailedImage };

/** The spec (hence the cache key) that extracting with these options produces. */
export function codeSpecFor(opts: Pick<ExtractOptions, 'backbone' | 'cut' | 'size' | 'resize' | 'interpolation' | 'background' | 'dtype'>): CodeSpec {
  const { backbone, cut } = opts;
  const size = opts.size ?? backbone.preprocessing.size;
  const plan = planCuts(backbone.graph, size, [cut]);
  const p = backbone.preprocessing;
  return {
    backbone: backbone.id,
    weights: backbone.weightsId,
    layer: resolveLayer(backbone.graph, cut.layer).name,
    pool: cut.pool ?? null,
    shape: [...codeShape(plan, cut)],
    dtype: opts.dtype,
    preprocessing: {
      size: [size[0], size[1]],
      resize: opts.resize,
      interpolation: opts.interpolation,
      background: opts.background,
      channels: p.channels,
      mean: p.mean,
      std: p.std,
    },
    augment: null,
  };
}

/** One cut's share of a run: its cache key, lock, what it already holds, and its writer. */
interface Target {
  readonly cut: Cut;
  readonly cache: FeatureCache;
  readonly lock: CacheLock;
  readonly index: CacheIndex;
  writer?: ShardWriter;
  /** Rows whose content this cache already holds: their codes are copied, never recomputed. */
  readonly copies: { item: DatasetItem; sha256: string }[];
}

export async function runExtract(opts: ExtractOptions): Promise<ExtractSummary> {
  const started = performance.now();
  const cuts = [opts.cut, ...(opts.moreCuts ?? [])];
  const targets: Target[] = [];
  let engine: FeatureEngine | undefined;
  let engineLabel: string | null = null;
  try {
    // Every cut's key is locked before any work: two runs sharing one key never interleave.
    for (const cut of cuts) {
      const cache = await FeatureCache.forSpec(opts.cacheRoot, codeSpecFor({ ...opts, cut }));
      if (targets.some((t) => t.cache.key === cache.key)) throw new UsageError(`--layer lists ${cutLabel(cut)} twice`);
      const lock = await acquireCacheLock(cache.dir, { waitSeconds: opts.waitForLockSeconds });
      try {
        await cache.removeOrphans();
        if (opts.datasetRoot) await cache.recordDatasetRoot(opts.dataset, path.resolve(opts.datasetRoot));
        targets.push({ cut, cache, lock, index: await cache.index(), copies: [] });
      } catch (err) {
        await lock.release();
        throw err;
      }
    }
    const size = targets[0].cache.spec.preprocessing.size;
    const [h, w] = size;
    const prep = { ...opts.backbone.preprocessing, size };
    const decodeOpts = {
      size,
      resize: opts.resize,
      interpolation: opts.interpolation,
      background: { r: opts.background[0], g: opts.background[1], b: opts.background[2] },
    };

    const prepare = async (item: DatasetItem): Promise<Prepared> => {
      try {
        // Read once: the same bytes are hashed and decoded.
        const bytes = await readImageFile(item.file);
        const sha256 = createHash('sha256').update(bytes).digest('hex');
        const identity = rowIdentity(sha256, opts.dataset, item.path, item.label, item.split);
        const missing = targets.filter((t) => !t.index.rows.has(identity));
        if (missing.length === 0) return { kind: 'cached', item };
        if (missing.every((t) => t.index.contents.has(sha256))) return { kind: 'copy', item, sha256 };
        return { kind: 'decoded', item, sha256, pixels: await decodeImage(bytes, { ...decodeOpts, source: item.path }) };
      } catch (err) {
        const reason = err instanceof DecodeError ? err.reason : 'error';
        const message = err instanceof Error ? err.message : String(err);
        return { kind: 'failed', failure: { path: item.path, label: item.label, split: item.split, reason, message } };
      }
    };
    /** The targets that lack this row (all of them, for content new to every cut). */
    const lacking = (x: { item: DatasetItem; sha256: string }) =>
      targets.filter((t) => !t.index.rows.has(rowIdentity(x.sha256, opts.dataset, x.item.path, x.item.label, x.item.split)));

    for (const t of targets) {
      t.writer = await t.cache.writer({ writerId: 'w', engine: 'pending', toolVersion: TOOL_VERSION, maxShardBytes: opts.maxShardBytes });
    }
    const failures: FailedImage[] = [];
    const computedThisRun = new Map<string, true>();
    let reused = 0;
    let copied = 0;
    let computed = 0;
    let done = 0;
    let lastFlush = performance.now();
    const report = () =>
      opts.onProgress?.({ done, total: opts.items.length, computed, reused: reused + copied, failed: failures.length, seconds: (performance.now() - started) / 1000 });
    const queueCopy = (x: { item: DatasetItem; sha256: string }) => {
      copied++;
      for (const t of lacking(x)) t.copies.push(x);
    };

    // Two input buffers: one is being filled while the engine reads the other.
    const buffers = [new Float32Array(opts.batch * h * w * 3), new Float32Array(opts.batch * h * w * 3)];
    let current = 0;
    let batch: { item: DatasetItem; sha256: string }[] = [];
    let running: Promise<void> = Promise.resolve();
    // Writing (Arrow encoding, fsync) runs behind the engine, never between two forward passes.
    let writing: Promise<void> = Promise.resolve();
    let writeError: unknown;

    const forward = async (items: { item: DatasetItem; sha256: string }[], input: Float32Array): Promise<void> => {
      if (!engine) {
        // One engine, one forward pass, an output per cut.
        engine = await createEngine({ engine: opts.engine, backbone: opts.backbone, cuts, inputSize: size, device: opts.device, cacheDir: opts.cacheRoot });
        engineLabel = `${engine.name}/${engine.provider}`;
        for (const t of targets) t.writer!.engine = engineLabel;
        opts.onEngine?.(engine);
      }
      const outputs = await engine.run(input, items.length);
      computed += items.length;
      writing = writing
        .then(async () => {
          for (const [k, t] of targets.entries()) {
            const dim = t.cache.dim;
            const keep = items.map((x, i) => [x, i] as const).filter(([x]) => lacking(x).includes(t));
            if (keep.length === 0) continue;
            const codes = keep.length === items.length ? outputs[k] : gatherRows(outputs[k], keep.map(([, i]) => i), dim);
            await t.writer!.append(rowsOf(opts.dataset, keep.map(([x]) => x), codes));
          }
          if (performance.now() - lastFlush > (opts.flushSeconds ?? 30) * 1000) {
            for (const t of targets) await t.writer!.flush();
            lastFlush = performance.now();
          }
        })
        .catch((err: unknown) => {
          writeError ??= err;
        });
    };

    const launch = async () => {
      await running;
      // Surface a failed write (a full disk) now, not after the whole dataset.
      if (writeError) throw writeError;
      const items = batch;
      const input = buffers[current];
      current = 1 - current;
      batch = [];
      running = forward(items, input);
    };

    for await (const prepared of orderedPool(opts.items, prepare, { concurrency: opts.concurrency, window: opts.concurrency + opts.batch })) {
      if (opts.signal?.aborted) break;
      done++;
      switch (prepared.kind) {
        case 'failed':
          failures.push(prepared.failure);
          break;
        case 'cached':
          reused++;
          break;
        case 'copy':
          queueCopy(prepared);
          break;
        case 'decoded':
          if (computedThisRun.has(prepared.sha256)) {
            queueCopy(prepared);
            break;
          }
          computedThisRun.set(prepared.sha256, true);
          preprocessInto(prepared.pixels, prep, buffers[current], batch.length * h * w * 3);
          batch.push(prepared);
          if (batch.length === opts.batch) await launch();
          break;
      }
      report();
    }
    if (batch.length > 0) await launch();
    await running;
    await writing;
    if (writeError) throw writeError;
    for (const t of targets) await t.writer!.flush();

    if (!opts.signal?.aborted) {
      for (const t of targets) {
        // Same content under another path or label: its code is copied, never recomputed.
        if (t.copies.length > 0) {
          const sources = new Map<string, string>();
          for (const { sha256 } of t.copies) sources.set(sha256, t.index.contents.get(sha256) ?? t.writer!.located.get(sha256)!);
          const codes = await t.cache.codesFor(sources);
          const dim = t.cache.dim;
          const all = new Float32Array(t.copies.length * dim);
          t.copies.forEach((c, i) => all.set(codes.get(c.sha256)!, i * dim));
          await t.writer!.append(rowsOf(opts.dataset, t.copies, all));
          await t.writer!.flush();
        }
        await writeErrorsTable(t.cache.dir, failures);
      }
    }

    const seconds = (performance.now() - started) / 1000;
    return {
      images: opts.items.length,
      new: computed,
      reused: reused + copied,
      failed: failures.length,
      seconds,
      imgPerSec: computed / seconds,
      key: targets[0].cache.key,
      path: targets[0].cache.dir,
      caches: targets.map((t) => ({ cut: t.cut, key: t.cache.key, path: t.cache.dir })),
      engine: engineLabel,
      failures,
      interrupted: opts.signal?.aborted ?? false,
    };
  } finally {
    await engine?.dispose();
    for (const t of targets) await t.lock.release();
  }
}

/** Rows `rows` of a row-major n × dim array, as one new array. */
function gatherRows(all: Float32Array, rows: readonly number[], dim: number): Float32Array {
  const out = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => out.set(all.subarray(r * dim, (r + 1) * dim), i * dim));
  return out;
}

function rowsOf(dataset: string, items: readonly { item: DatasetItem; sha256: string }[], codes: Float32Array): CodeRows {
  return {
    sha256: items.map((i) => i.sha256),
    dataset: items.map(() => dataset),
    path: items.map((i) => i.item.path),
    label: items.map((i) => i.item.label),
    split: items.map((i) => i.item.split),
    codes,
  };
}
