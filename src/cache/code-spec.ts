/**
 * Everything that determines the value of a code, and the cache key derived from it.
 * Two extractions share a key exactly when they would compute the same codes, so a change of
 * weights, layer, pooling, size or any preprocessing choice gives a new key, never stale codes.
 * The engine is not part of it: both engines agree within 1e-4 (it is recorded, not keyed).
 */
import { createHash } from 'node:crypto';

export type CodeDtype = 'float32' | 'float16';

export interface CodeSpec {
  readonly backbone: string;
  /** sha256 of the weight files. */
  readonly weights: string;
  /** The resolved node name (aliases such as relu6 resolve to fc1). */
  readonly layer: string;
  readonly pool: 'avg' | 'max' | null;
  /** Per image, e.g. [7, 7, 512] (H, W, C order) or [4096]. */
  readonly shape: readonly number[];
  readonly dtype: CodeDtype;
  readonly preprocessing: {
    readonly size: readonly [number, number];
    readonly resize: 'squash' | 'crop' | 'pad';
    readonly interpolation: string;
    readonly background: readonly [number, number, number];
    readonly channels: 'rgb' | 'bgr';
    readonly mean: readonly number[];
    readonly std: readonly number[];
  };
  /**
   * For a key of cached augmented views: how they were made. null for the images themselves.
   * A key with views holds only views; the images' own codes are in the key with augment null.
   */
  readonly augment: AugmentSpec | null;
}

export interface AugmentSpec {
  /** Views per image: rows carry view indices 1..views. */
  readonly views: number;
  readonly seed: number;
  /** Names the transformations and their ranges (see src/extract/augment.ts); a new recipe, a new key. */
  readonly recipe: string;
}

// Bumped when the shard layout changes (2: the dataset column), so old shards are never misread.
export const CODE_SPEC_VERSION = 2;

/** `<backbone>-<layer>[-<pool>]-<16 hex>`: readable in `ls cache/`, unique by the hash. */
export function cacheKey(spec: CodeSpec): string {
  const hash = createHash('sha256').update(canonicalJson({ v: CODE_SPEC_VERSION, ...spec })).digest('hex').slice(0, 16);
  const slug = (s: string) => s.replace(/[^A-Za-z0-9_.-]+/g, '_').replace(/^_+|_+$/g, '');
  const backbone = slug(spec.backbone.split(/[\\/]/).filter(Boolean).slice(-2).join('_')).slice(0, 40);
  return [backbone, slug(spec.layer), spec.pool, hash].filter(Boolean).join('-');
}

/** JSON with sorted keys, so equal specs hash equally whatever order they were built in. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}
