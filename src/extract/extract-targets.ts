/**
 * The cache keys one extract writes: a key per cut (and, with augmentation, a key of views
 * beside each), every one locked before any work, with what it already holds and its writer.
 */
import { isOnnxBackbone, type Backbone } from '../backbones/backbone.ts';
import { cutLabel, type Cut } from '../backbones/cut.ts';
import { resolveCuts } from '../backbones/cut-shape.ts';
import type { Pair } from '../backbones/layer-graph.ts';
import { acquireCacheLock, type CacheLock } from '../cache/cache-lock.ts';
import { contentId } from '../cache/code-rows.ts';
import type { CodeDtype, CodeSpec, Interpolation, ResizeMode } from '../cache/code-spec.ts';
import { FeatureCache, type ShardWriter } from '../cache/feature-cache.ts';
import type { Precision } from '../engines/engine.ts';
import { CALIBRATION_METHOD } from '../engines/quantize/calibration.ts';
import { int8KeyFormat } from '../engines/quantize/int8-model.ts';
import { UsageError } from '../util/errors.ts';
import { TOOL_VERSION } from '../util/version.ts';
import { augmentSpec } from './augment.ts';

/** One cache key's share of a run. */
export interface KeyTarget {
  readonly cache: FeatureCache;
  /** contentIds the key holds: what it held at the start, plus what this run has sent to its writer. */
  readonly held: Set<string>;
  readonly writer: ShardWriter;
}

/** One cut: the key of the images' codes and, with augmentation, the key of their views' codes. */
export interface Target extends KeyTarget {
  readonly cut: Cut;
  readonly views?: KeyTarget;
}

export interface SpecOptions {
  readonly backbone: Backbone;
  readonly cut: Cut;
  /** Network input size; defaults to the backbone's own. */
  readonly size?: Pair;
  readonly resize: ResizeMode;
  readonly interpolation: Interpolation;
  /** With resize crop: the share of the shorter side kept. */
  readonly cropFraction?: number;
  readonly background: readonly [number, number, number];
  readonly dtype: CodeDtype;
  /** Default fp32. */
  readonly precision?: Precision;
  readonly augment?: { readonly views: number; readonly seed: number };
}

/** The spec (hence the cache key) that extracting with these options produces. */
export function codeSpecFor(opts: SpecOptions): CodeSpec {
  const { backbone, cut } = opts;
  const size = opts.size ?? backbone.preprocessing.size;
  const [resolved] = resolveCuts(backbone, size, [cut]);
  const p = backbone.preprocessing;
  const cropFraction = opts.resize === 'crop' && opts.cropFraction !== undefined && opts.cropFraction < 1 ? opts.cropFraction : undefined;
  return {
    backbone: backbone.id,
    weights: backbone.weightsId,
    layer: resolved.layer,
    pool: cut.pool ?? null,
    ...(resolved.layout ? { layout: resolved.layout } : {}),
    shape: [...resolved.shape],
    dtype: opts.dtype,
    ...(opts.precision === 'int8' ? { precision: 'int8' as const, calibration: CALIBRATION_METHOD, qdq: int8KeyFormat(isOnnxBackbone(backbone) ? 'onnx' : 'graph') } : {}),
    preprocessing: {
      size: [size[0], size[1]],
      resize: opts.resize,
      interpolation: opts.interpolation,
      ...(cropFraction ? { cropFraction } : {}),
      background: opts.background,
      channels: p.channels,
      mean: p.mean,
      std: p.std,
    },
    augment: opts.augment ? augmentSpec(opts.augment.views, opts.augment.seed) : null,
  };
}

export interface OpenedTargets {
  readonly targets: readonly Target[];
  /** Every key, images' and views' alike. */
  readonly keys: readonly KeyTarget[];
  release(): Promise<void>;
}

/**
 * Locks every key the cuts need and reads what each holds. A sharded run's process locks and
 * writes as its own writer (`sKofN`), so the N processes fill one key side by side.
 */
export async function openTargets(
  opts: SpecOptions & { readonly moreCuts?: readonly Cut[]; readonly cacheRoot: string; readonly writerId: string; readonly sharded: boolean; readonly waitSeconds?: number; readonly maxShardBytes?: number },
): Promise<OpenedTargets> {
  const locks: CacheLock[] = [];
  const release = async () => {
    for (const lock of locks.splice(0)) await lock.release();
  };
  const openKey = async (spec: CodeSpec): Promise<KeyTarget> => {
    const cache = await FeatureCache.forSpec(opts.cacheRoot, spec);
    locks.push(await acquireCacheLock(cache.dir, { waitSeconds: opts.waitSeconds, writer: opts.sharded ? opts.writerId : undefined }));
    await cache.removeOrphans(opts.sharded ? opts.writerId : undefined);
    // The writer first: it lists the shards a killed run of it finished but never listed, so
    // what they hold counts as held and is not computed again.
    const writer = await cache.writer({ writerId: opts.writerId, engine: 'pending', toolVersion: TOOL_VERSION, maxShardBytes: opts.maxShardBytes });
    const held = new Set((await cache.contents()).keys());
    return { cache, held, writer };
  };
  try {
    const targets: Target[] = [];
    for (const cut of [opts.cut, ...(opts.moreCuts ?? [])]) {
      const spec = codeSpecFor({ ...opts, cut, augment: undefined });
      if (targets.some((t) => t.cache.spec.layer === spec.layer && t.cache.spec.pool === spec.pool)) throw new UsageError(`--layer lists ${cutLabel(cut)} twice`);
      const plain = await openKey(spec);
      const views = opts.augment ? await openKey(codeSpecFor({ ...opts, cut })) : undefined;
      targets.push({ ...plain, cut, views });
    }
    return { targets, keys: targets.flatMap((t) => (t.views ? [t, t.views] : [t])), release };
  } catch (err) {
    await release();
    throw err;
  }
}

/** The keys that still lack a job's code: an image's go to the plain keys, a view's to the views keys. */
export function keysLacking(targets: readonly Target[], sha256: string, view: number): KeyTarget[] {
  const id = contentId(sha256, view);
  return targets.flatMap((t) => (view === 0 ? [t] : t.views ? [t.views] : [])).filter((k) => !k.held.has(id));
}
