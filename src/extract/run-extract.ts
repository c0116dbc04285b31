/**
 * The extract stage: every image of a dataset once through the frozen backbone, codes into
 * the cache. Data flows one way, in named steps:
 *   open the targets (lock each key, read what it holds)
 *   → prepare each image (read + hash, decode only what a key lacks; p-queue, in input order)
 *   → batch runner (batch → engine → shard writers, decoding k+1 while k runs)
 *   → record (the dataset's membership, the failures) → summary.
 * Codes are content-addressed: an image whose content the cache holds, under any name, costs a
 * read and a hash, never a forward pass.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Backbone } from '../backbones/backbone.ts';
import type { Cut } from '../backbones/cut.ts';
import type { Pair } from '../backbones/layer-graph.ts';
import { calibrationKey, type CodeDtype, type Interpolation, type ResizeMode } from '../cache/code-spec.ts';
import { writeErrorsTable, type FailedImage } from '../cache/errors-table.ts';
import { datasetDir, recordedSource, writeMembership, type DatasetSource, type Member } from '../cache/membership.ts';
import type { DeviceChoice, EngineChoice, FeatureEngine, Precision } from '../engines/engine.ts';
import { calibrationSource } from './calibration-sample.ts';
import { checkKeyCalibrations, recordKeyCalibrations } from './calibration-guard.ts';
import { checkNumber, WHOLE_POSITIVE } from '../util/number-rules.ts';
import { UsageError } from '../util/errors.ts';
import { TOOL_VERSION } from '../util/version.ts';
import { BatchRunner } from './batch-runner.ts';
import type { DatasetItem } from './dataset.ts';
import { keysLacking, openTargets, type KeyTarget, type Target } from './extract-targets.ts';
import { orderedPool } from './ordered-pool.ts';
import { prepareImage, type PrepareContext } from './prepare-image.ts';

export { codeSpecFor } from './extract-targets.ts';

export interface ExtractOptions {
  readonly items: readonly DatasetItem[];
  /**
   * The dataset the items are, when they are one: a complete run records its membership under
   * this name (what train-head, evaluate and the rest read as "the dataset"). Without it (a
   * folder to evaluate or predict once) only codes are cached.
   */
  readonly dataset?: DatasetSource;
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
  /** With resize crop: the share of the shorter side kept (an ONNX model's crop_pct). */
  readonly cropFraction?: number;
  readonly background: readonly [number, number, number];
  readonly dtype: CodeDtype;
  /** Default fp32; int8 calibrates on a sample of `items` (calibration-sample.ts) unless the cache holds a calibration. */
  readonly precision?: Precision;
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
  /** Things worth telling the user (a dataset found at a new place, say). */
  readonly onNote?: (note: string) => void;
  /** Called once every key is locked and read, before the first image: the run will go ahead. */
  readonly onStart?: () => void;
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
  /** Images whose content was already cached, or met earlier in this run. */
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
  /** The images that now have codes (this process's part of them, in a sharded run). */
  readonly members: readonly Member[];
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

/** The writer id (in shard and errors-table names) of one process of a sharded run. */
export function shardWriterId(shard: { readonly index: number; readonly count: number } | undefined): string {
  return shard ? `s${shard.index}of${shard.count}` : 'w';
}

/** Which of `count` parts an image belongs to, from its content hash alone. */
export function shardOf(sha256: string, count: number): number {
  return parseInt(sha256.slice(0, 12), 16) % count;
}

/** What the CLI checks per flag, checked again for callers of the API. */
function checkOptions(opts: ExtractOptions): void {
  checkNumber('batch', opts.batch, WHOLE_POSITIVE);
  checkNumber('concurrency', opts.concurrency, WHOLE_POSITIVE);
  if (opts.flushSeconds !== undefined) checkNumber('flush-seconds', opts.flushSeconds, { min: 0 });
  if (opts.waitForLockSeconds !== undefined) checkNumber('wait', opts.waitForLockSeconds, { min: 0 });
  if (opts.augment) checkNumber('augment', opts.augment.views, { integer: true, min: 0, max: 100 });
  if (opts.dataset && (typeof opts.dataset.name !== 'string' || !opts.dataset.name)) throw new UsageError('extract: the dataset needs a name (and its root and source), as loadDataset gives them');
}

export async function runExtract(opts: ExtractOptions): Promise<ExtractSummary> {
  const started = performance.now();
  checkOptions(opts);
  if (opts.dataset) await claimDatasetName(opts.cacheRoot, opts.dataset, opts.onNote);
  const writerId = shardWriterId(opts.shard);
  const opened = await openTargets({ ...opts, writerId, sharded: opts.shard !== undefined, waitSeconds: opts.waitForLockSeconds });
  const { targets } = opened;
  opts.onStart?.();
  const size = targets[0].cache.spec.preprocessing.size;
  const decode = decodeOptions(opts, size);
  const int8 = opts.precision === 'int8' ? { key: calibrationKey(targets[0].cache.spec), dirs: opened.keys.map((k) => k.cache.dir) } : undefined;
  if (int8) await checkKeyCalibrations(int8.dirs, opts.cacheRoot, int8.key).catch(async (err: unknown) => {
    await opened.release();
    throw err;
  });
  const runner = new BatchRunner(
    {
      backbone: opts.backbone,
      cuts: targets.map((t) => t.cut),
      size,
      batch: opts.batch,
      engine: opts.engine,
      device: opts.device,
      cacheDir: opts.cacheRoot,
      ...(int8 ? { precision: 'int8' as const, calibration: calibrationSource({ key: int8.key, items: opts.items, decode, preprocessing: opts.backbone.preprocessing, size, signal: opts.signal }) } : {}),
      flushSeconds: opts.flushSeconds ?? 30,
      onEngine: opts.onEngine,
    },
    targets,
  );
  try {
    const tally = await runAll(opts, targets, runner, decode, started);
    await runner.finish();
    if (int8) await recordKeyCalibrations(int8.dirs, opts.cacheRoot, int8.key);
    const interrupted = opts.signal?.aborted ?? false;
    if (!interrupted) await record(opts, opened.keys, tally, writerId);
    const seconds = (performance.now() - started) / 1000;
    return {
      images: opts.items.length,
      new: runner.images,
      views: runner.views,
      reused: tally.members.length - runner.images,
      failed: tally.failures.length,
      otherShards: tally.elsewhere,
      seconds,
      imgPerSec: (runner.images + runner.views) / seconds,
      key: targets[0].cache.key,
      path: targets[0].cache.dir,
      caches: targets.map((t) => ({
        cut: t.cut,
        key: t.cache.key,
        path: t.cache.dir,
        ...(t.views ? { views: { key: t.views.cache.key, path: t.views.cache.dir } } : {}),
      })),
      engine: runner.engineLabel,
      members: tally.members,
      failures: tally.failures,
      interrupted,
    };
  } finally {
    await runner.dispose();
    await opened.release();
  }
}

interface Tally {
  readonly members: Member[];
  readonly failures: FailedImage[];
  elsewhere: number;
}

/** Every image through prepare and into the runner, in input order. */
function decodeOptions(opts: ExtractOptions, size: Pair): PrepareContext['decode'] {
  return { size, resize: opts.resize, interpolation: opts.interpolation, ...(opts.cropFraction ? { cropFraction: opts.cropFraction } : {}), background: { r: opts.background[0], g: opts.background[1], b: opts.background[2] } };
}

async function runAll(opts: ExtractOptions, targets: readonly Target[], runner: BatchRunner, decode: PrepareContext['decode'], started: number): Promise<Tally> {
  const tally: Tally = { members: [], failures: [], elsewhere: 0 };
  const ctx: PrepareContext = {
    decode,
    viewCount: (item) => (opts.augment && item.split !== 'validation' && item.split !== 'test' ? opts.augment.views : 0),
    augmentSeed: opts.augment?.seed ?? 0,
    needs: (sha256, view) => keysLacking(targets, sha256, view).length > 0,
    mine: (sha256) => !opts.shard || shardOf(sha256, opts.shard.count) === opts.shard.index,
    signal: opts.signal,
  };
  let done = 0;
  const report = () =>
    opts.onProgress?.({
      done,
      total: opts.items.length,
      computed: runner.images,
      reused: tally.members.length - runner.images,
      failed: tally.failures.length,
      seconds: (performance.now() - started) / 1000,
    });
  for await (const prepared of orderedPool(opts.items, (item) => prepareImage(item, ctx), { concurrency: opts.concurrency, window: opts.concurrency + opts.batch })) {
    if (opts.signal?.aborted) break;
    done++;
    if (prepared.kind === 'failed') tally.failures.push(prepared.failure);
    else if (prepared.kind === 'elsewhere') tally.elsewhere++;
    else {
      tally.members.push(prepared.member);
      for (const input of prepared.inputs) {
        const job = { sha256: prepared.member.sha256, view: input.view };
        await runner.add(job, input.pixels, keysLacking(targets, job.sha256, job.view));
      }
    }
    report();
  }
  return tally;
}

/**
 * The end of a complete run: each key's failures table, the dataset's membership (this
 * process's part of it, in a sharded run), and, in every key, that the dataset was extracted.
 */
async function record(opts: ExtractOptions, keys: readonly KeyTarget[], tally: Tally, writerId: string): Promise<void> {
  for (const k of keys) await writeErrorsTable(k.cache.dir, tally.failures, writerId);
  if (!opts.dataset) return;
  await writeMembership(opts.cacheRoot, opts.dataset, opts.shard ?? { index: 0, count: 1 }, tally.members, TOOL_VERSION);
  for (const k of keys) await k.writer.recordDataset(opts.dataset.name);
}

/**
 * Two different folders with the same name are two datasets: the name cannot silently take
 * another folder's images. A dataset whose folder or manifest is gone has moved, and its name
 * follows it.
 */
async function claimDatasetName(cacheRoot: string, dataset: DatasetSource, onNote?: (note: string) => void): Promise<void> {
  const recorded = await recordedSource(cacheRoot, dataset.name);
  if (!recorded || path.resolve(recorded.source) === path.resolve(dataset.source)) return;
  if (existsSync(recorded.source)) {
    throw new UsageError(
      `${dataset.source}: the cache already holds a dataset named '${dataset.name}' read from ${recorded.source}; give this one another name with --name (or delete ${datasetDir(cacheRoot, dataset.name)} to forget the other)`,
    );
  }
  onNote?.(`dataset '${dataset.name}' was read from ${recorded.source}, which is gone: it is now ${dataset.source}`);
}
