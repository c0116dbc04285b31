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
import { augmentedView, augmentSpec } from './augment.ts';
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
  /**
   * Also cache `views` augmented views of every training image (and of images without a split,
   * whose split train-head decides later), each into a views key beside each cut's key.
   */
  readonly augment?: { readonly views: number; readonly seed: number };
  /**
   * Take only the `index`-th of `count` parts of the images, by content hash (`--shard K/N`).
   * N processes with K = 0..N-1 fill one cache with exactly the rows of a single run: each
   * writes its own shard files under its own lock, and identical content lands in one part.
   */
  readonly shard?: { readonly index: number; readonly count: number };
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
  /** Forward passes run for augmented views. */
  readonly views: number;
  /** Rows already cached, or whose content was already cached or computed in this run. */
  readonly reused: number;
  readonly failed: number;
  /** Images left to the other processes of a sharded run. */
  readonly otherShards: number;
  readonly seconds: number;
  readonly imgPerSec: number;
  /** The first cut's cache key and folder. */
  readonly key: string;
  readonly path: string;
  /** Every cut's key and folder, in request order. */
  readonly caches: readonly {
    readonly cut: Cut;
    readonly key: string;
    readonly path: string;
    /** The key of the cut's augmented views, with --augment. */
    readonly views?: { readonly key: string; readonly path: string };
  }[];
  readonly engine: string | null;
  readonly failures: readonly FailedImage[];
  readonly interrupted: boolean;
}

/**
 * The decoding and storage every command uses unless told otherwise (extract's flag defaults),
 * for commands that extract on the user's behalf (demo, sweep).
 */
export const DEFAULT_EXTRACT_SETTINGS = {
  resize: 'squash',
  interpolation: 'linear',
  background: [255, 255, 255],
  dtype: 'float32',
} as const satisfies Pick<ExtractOptions, 'resize' | 'interpolation' | 'background' | 'dtype'>;

/** One forward pass's worth of input: an image (view 0) or one of its augmented views. */
interface Job {
  readonly item: DatasetItem;
  readonly sha256: string;
  readonly view: number;
}

/** Views a training image still needs, decoded. Validation and test images are never augmented. */
type Views = readonly { readonly view: number; readonly pixels: Uint8Array }[];

type Prepared =
  | { readonly kind: 'cached'; readonly item: DatasetItem; readonly sha256: string; readonly views: Views }
  | { readonly kind: 'copy'; readonly item: DatasetItem; readonly sha256: string; readonly views: Views }
  | { readonly kind: 'decoded'; readonly item: DatasetItem; readonly sha256: string; readonly pixels: Uint8Array; readonly views: Views }
  | { readonly kind: 'failed'; readonly failure: FailedImage }
  | { readonly kind: 'elsewhere' };

/** The writer id (in shard and errors-table names) of one process of a sharded run. */
export function shardWriterId(shard: { readonly index: number; readonly count: number } | undefined): string {
  return shard ? `s${shard.index}of${shard.count}` : 'w';
}

/** Which of `count` parts an image belongs to, from its content hash alone. */
export function shardOf(sha256: string, count: number): number {
  return parseInt(sha256.slice(0, 12), 16) % count;
}

/** The spec (hence the cache key) that extracting with these options produces. */
export function codeSpecFor(opts: Pick<ExtractOptions, 'backbone' | 'cut' | 'size' | 'resize' | 'interpolation' | 'background' | 'dtype' | 'augment'>): CodeSpec {
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
    augment: opts.augment ? augmentSpec(opts.augment.views, opts.augment.seed) : null,
  };
}

/** One cache key's share of a run: its lock, what it already holds, and its writer. */
interface KeyTarget {
  readonly cache: FeatureCache;
  readonly lock: CacheLock;
  readonly index: CacheIndex;
  writer?: ShardWriter;
  /** Rows whose content this cache already holds: their codes are copied, never recomputed. */
  readonly copies: Job[];
}

/** One cut: the key of the images' codes and, with augmentation, the key of their views' codes. */
interface Target extends KeyTarget {
  readonly cut: Cut;
  readonly views?: KeyTarget;
}

export async function runExtract(opts: ExtractOptions): Promise<ExtractSummary> {
  const started = performance.now();
  const cuts = [opts.cut, ...(opts.moreCuts ?? [])];
  const targets: Target[] = [];
  const locks: CacheLock[] = [];
  let engine: FeatureEngine | undefined;
  let engineLabel: string | null = null;
  const writerId = shardWriterId(opts.shard);
  /** Locks the key and reads what it holds; every key is locked before any work. */
  const openKey = async (spec: CodeSpec): Promise<KeyTarget> => {
    const cache = await FeatureCache.forSpec(opts.cacheRoot, spec);
    const lock = await acquireCacheLock(cache.dir, { waitSeconds: opts.waitForLockSeconds, writer: opts.shard ? writerId : undefined });
    locks.push(lock);
    await cache.removeOrphans(opts.shard ? writerId : undefined);
    if (opts.datasetRoot) await cache.recordDatasetRoot(opts.dataset, path.resolve(opts.datasetRoot));
    return { cache, lock, index: await cache.index(), copies: [] };
  };
  try {
    for (const cut of cuts) {
      const spec = codeSpecFor({ ...opts, cut, augment: undefined });
      if (targets.some((t) => t.cache.spec.layer === spec.layer && t.cache.spec.pool === spec.pool)) throw new UsageError(`--layer lists ${cutLabel(cut)} twice`);
      const plain = await openKey(spec);
      const views = opts.augment ? await openKey(codeSpecFor({ ...opts, cut })) : undefined;
      targets.push({ ...plain, cut, views });
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
    const identity = (j: Job) => rowIdentity(j.sha256, opts.dataset, j.item.path, j.item.label, j.item.split, j.view);
    /** The keys a job's row must still go to: images to the plain keys, views to the views keys. */
    const lacking = (j: Job): KeyTarget[] =>
      targets.flatMap((t) => (j.view === 0 ? [t] : t.views ? [t.views] : [])).filter((k) => !k.index.rows.has(identity(j)));
    const viewCount = (item: DatasetItem) => (opts.augment && item.split !== 'validation' && item.split !== 'test' ? opts.augment.views : 0);

    const prepare = async (item: DatasetItem): Promise<Prepared> => {
      try {
        // Read once: the same bytes are hashed and decoded.
        const bytes = await readImageFile(item.file);
        const sha256 = createHash('sha256').update(bytes).digest('hex');
        if (opts.shard && shardOf(sha256, opts.shard.count) !== opts.shard.index) return { kind: 'elsewhere' };
        const source = { ...decodeOpts, source: item.path };
        const views: { view: number; pixels: Uint8Array }[] = [];
        for (let view = 1; view <= viewCount(item); view++) {
          if (lacking({ item, sha256, view }).length === 0) continue;
          views.push({ view, pixels: await augmentedView(bytes, sha256, view, opts.augment!.seed, source) });
        }
        const missing = lacking({ item, sha256, view: 0 });
        if (missing.length === 0) return { kind: 'cached', item, sha256, views };
        if (missing.every((t) => t.index.contents.has(sha256))) return { kind: 'copy', item, sha256, views };
        return { kind: 'decoded', item, sha256, pixels: await decodeImage(bytes, source), views };
      } catch (err) {
        const reason = err instanceof DecodeError ? err.reason : 'error';
        const message = err instanceof Error ? err.message : String(err);
        return { kind: 'failed', failure: { path: item.path, label: item.label, split: item.split, reason, message } };
      }
    };

    const keys = targets.flatMap((t) => (t.views ? [t, t.views] : [t]));
    for (const k of keys) {
      k.writer = await k.cache.writer({ writerId, engine: 'pending', toolVersion: TOOL_VERSION, maxShardBytes: opts.maxShardBytes });
    }
    const failures: FailedImage[] = [];
    const computedThisRun = new Map<string, true>();
    let reused = 0;
    let copied = 0;
    let computed = 0;
    let viewsComputed = 0;
    let elsewhere = 0;
    let done = 0;
    let lastFlush = performance.now();
    const report = () =>
      opts.onProgress?.({ done, total: opts.items.length, computed, reused: reused + copied, failed: failures.length, seconds: (performance.now() - started) / 1000 });
    const queueCopy = (j: Job) => {
      copied++;
      for (const k of lacking(j)) k.copies.push(j);
    };

    // Two input buffers: one is being filled while the engine reads the other.
    const buffers = [new Float32Array(opts.batch * h * w * 3), new Float32Array(opts.batch * h * w * 3)];
    let current = 0;
    let batch: Job[] = [];
    let running: Promise<void> = Promise.resolve();
    // Writing (Arrow encoding, fsync) runs behind the engine, never between two forward passes.
    let writing: Promise<void> = Promise.resolve();
    let writeError: unknown;

    const forward = async (jobs: Job[], input: Float32Array): Promise<void> => {
      if (!engine) {
        // One engine, one forward pass, an output per cut.
        engine = await createEngine({ engine: opts.engine, backbone: opts.backbone, cuts, inputSize: size, device: opts.device, cacheDir: opts.cacheRoot });
        engineLabel = `${engine.name}/${engine.provider}`;
        for (const k of keys) k.writer!.engine = engineLabel;
        opts.onEngine?.(engine);
      }
      const outputs = await engine.run(input, jobs.length);
      for (const j of jobs) {
        if (j.view === 0) computed++;
        else viewsComputed++;
      }
      writing = writing
        .then(async () => {
          for (const [c, t] of targets.entries()) {
            for (const k of t.views ? [t, t.views] : [t]) {
              const keep = jobs.map((j, i) => [j, i] as const).filter(([j]) => lacking(j).includes(k));
              if (keep.length === 0) continue;
              const codes = keep.length === jobs.length ? outputs[c] : gatherRows(outputs[c], keep.map(([, i]) => i), t.cache.dim);
              await k.writer!.append(rowsOf(opts.dataset, keep.map(([j]) => j), codes));
            }
          }
          if (performance.now() - lastFlush > (opts.flushSeconds ?? 30) * 1000) {
            for (const k of keys) await k.writer!.flush();
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
      const jobs = batch;
      const input = buffers[current];
      current = 1 - current;
      batch = [];
      running = forward(jobs, input);
    };
    const enqueue = async (job: Job, pixels: Uint8Array) => {
      preprocessInto(pixels, prep, buffers[current], batch.length * h * w * 3);
      batch.push(job);
      if (batch.length === opts.batch) await launch();
    };

    for await (const prepared of orderedPool(opts.items, prepare, { concurrency: opts.concurrency, window: opts.concurrency + opts.batch })) {
      if (opts.signal?.aborted) break;
      done++;
      if (prepared.kind === 'failed' || prepared.kind === 'elsewhere') {
        if (prepared.kind === 'failed') failures.push(prepared.failure);
        else elsewhere++;
        report();
        continue;
      }
      const job: Job = { item: prepared.item, sha256: prepared.sha256, view: 0 };
      switch (prepared.kind) {
        case 'cached':
          reused++;
          break;
        case 'copy':
          queueCopy(job);
          break;
        case 'decoded':
          if (computedThisRun.has(prepared.sha256)) {
            queueCopy(job);
            break;
          }
          computedThisRun.set(prepared.sha256, true);
          await enqueue(job, prepared.pixels);
          break;
      }
      for (const v of prepared.views) await enqueue({ ...job, view: v.view }, v.pixels);
      report();
    }
    if (batch.length > 0) await launch();
    await running;
    await writing;
    if (writeError) throw writeError;
    for (const k of keys) await k.writer!.flush();

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
      }
      for (const k of keys) await writeErrorsTable(k.cache.dir, failures, writerId);
    }

    const seconds = (performance.now() - started) / 1000;
    return {
      images: opts.items.length,
      new: computed,
      views: viewsComputed,
      reused: reused + copied,
      failed: failures.length,
      otherShards: elsewhere,
      seconds,
      imgPerSec: (computed + viewsComputed) / seconds,
      key: targets[0].cache.key,
      path: targets[0].cache.dir,
      caches: targets.map((t) => ({
        cut: t.cut,
        key: t.cache.key,
        path: t.cache.dir,
        ...(t.views ? { views: { key: t.views.cache.key, path: t.views.cache.dir } } : {}),
      })),
      engine: engineLabel,
      failures,
      interrupted: opts.signal?.aborted ?? false,
    };
  } finally {
    await engine?.dispose();
    for (const lock of locks) await lock.release();
  }
}

/** Rows `rows` of a row-major n × dim array, as one new array. */
function gatherRows(all: Float32Array, rows: readonly number[], dim: number): Float32Array {
  const out = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => out.set(all.subarray(r * dim, (r + 1) * dim), i * dim));
  return out;
}

function rowsOf(dataset: string, jobs: readonly Job[], codes: Float32Array): CodeRows {
  return {
    sha256: jobs.map((j) => j.sha256),
    dataset: jobs.map(() => dataset),
    path: jobs.map((j) => j.item.path),
    label: jobs.map((j) => j.item.label),
    split: jobs.map((j) => j.item.split),
    // A views key's rows are all views; an image key's rows never carry the column.
    ...(jobs.some((j) => j.view > 0) ? { view: jobs.map((j) => j.view) } : {}),
    codes,
  };
}
