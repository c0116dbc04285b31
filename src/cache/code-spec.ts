/**
 * Everything that determines the value of a code, and the cache key derived from it.
 * Two extractions share a key exactly when they would compute the same codes, so a change of
 * weights, layer, pooling, size or any preprocessing choice gives a new key, never stale codes.
 * The engine is not part of it: both engines agree within 1e-4 (it is recorded, not keyed).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { product } from '../util/numbers.ts';
import { CUT_POOLS, FEATURE_LAYOUTS, type CutPool, type FeatureLayout } from '../backbones/cut.ts';

export type CodeDtype = 'float32' | 'float16';

/** squash: stretch to size (Keras' load_img); crop: shorter side to size, centre crop; pad: letterbox. */
export type ResizeMode = 'squash' | 'crop' | 'pad';
export const RESIZE_MODES = ['squash', 'crop', 'pad'] as const satisfies readonly ResizeMode[];

/**
 * sharp kernels; cubic is Catmull-Rom and lanczos3 is Lanczos a=3, as in PIL. 'nearest' point-
 * samples, except that JPEGs shrunk 4× or more are first averaged by the decoder's DCT scaling.
 */
export type Interpolation = 'nearest' | 'linear' | 'cubic' | 'lanczos3';
export const INTERPOLATIONS = ['nearest', 'linear', 'cubic', 'lanczos3'] as const satisfies readonly Interpolation[];

export interface CodeSpec {
  readonly backbone: string;
  /** sha256 of the weight files. */
  readonly weights: string;
  /** The resolved node name (aliases such as relu6 resolve to fc1). */
  readonly layer: string;
  readonly pool: CutPool | null;
  /** ONNX backbones: how the cut tensor's axes were read (detected, or --feature-layout). */
  readonly layout?: FeatureLayout | 'vector' | 'other';
  /** Per image, e.g. [7, 7, 512] (H, W, C order) or [4096]. */
  readonly shape: readonly number[];
  readonly dtype: CodeDtype;
  /** int8 codes (see engines/quantize/); absent for fp32, so keys made before int8 existed stay valid. */
  readonly precision?: 'int8';
  /** With int8: the calibration's range method (its ranges are kept under calibrationKey). */
  readonly calibration?: string;
  /**
   * With int8: the format of the Q/DQ rewrite that made the int8 model (QDQ_FORMAT in
   * engines/quantize/int8-model.ts): another rewrite computes other codes, so it is another key.
   * Keys from before format 5 (8-bit weights everywhere) lack it; 6 keeps MatMul and Gemm outputs float;
   * 7, for ONNX files only, quantises their graph with its attention fused (int8KeyFormat).
   */
  readonly qdq?: number;
  readonly preprocessing: {
    readonly size: readonly [number, number];
    readonly resize: ResizeMode;
    readonly interpolation: Interpolation;
    /** With resize crop: the share of the shorter side kept (absent: all of it). */
    readonly cropFraction?: number;
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

// Bumped when the shard layout changes, so old shards are never misread: 2 added the dataset
// column; 3 made shards content-addressed (sha256 → code), with membership kept per dataset.
export const CODE_SPEC_VERSION = 3;

const rgb = z.tuple([z.number(), z.number(), z.number()]);

/** What spec.json, a shard's metadata and head.json must hold; checked wherever one is read. */
export const codeSpecSchema = z.object({
  backbone: z.string().min(1),
  weights: z.string().min(1),
  layer: z.string().min(1),
  pool: z.enum(CUT_POOLS).nullable(),
  layout: z.enum([...FEATURE_LAYOUTS, 'vector', 'other']).optional(),
  shape: z.array(z.number().int().positive()).min(1),
  dtype: z.enum(['float32', 'float16']),
  precision: z.literal('int8').optional(),
  calibration: z.string().optional(),
  qdq: z.number().int().positive().optional(),
  preprocessing: z.object({
    size: z.tuple([z.number().int().positive(), z.number().int().positive()]),
    resize: z.enum(RESIZE_MODES),
    interpolation: z.enum(INTERPOLATIONS),
    cropFraction: z.number().gt(0).lt(1).optional(),
    background: rgb,
    channels: z.enum(['rgb', 'bgr']),
    mean: z.array(z.number()),
    std: z.array(z.number()),
  }),
  augment: z.object({ views: z.number().int().positive(), seed: z.number(), recipe: z.string() }).nullable(),
}) satisfies z.ZodType<CodeSpec>;

/** Floats per code. */
export function codeDim(spec: Pick<CodeSpec, 'shape'>): number {
  return product(spec.shape);
}

/** `<backbone>-<layer>[-<pool>]-<16 hex>`: readable in `ls cache/`, unique by the hash. */
export function cacheKey(spec: CodeSpec): string {
  const hash = createHash('sha256').update(canonicalJson({ v: CODE_SPEC_VERSION, ...spec })).digest('hex').slice(0, 16);
  return [backboneSlug(spec.backbone), slug(spec.layer), spec.pool, hash].filter(Boolean).join('-');
}

const slug = (s: string) => s.replace(/[^A-Za-z0-9_.-]+/g, '_').replace(/^_+|_+$/g, '');
const backboneSlug = (backbone: string) => slug(backbone.split(/[\\/]/).filter(Boolean).slice(-2).join('_')).slice(0, 40);

/**
 * The key an int8 calibration is kept under: what decides the values of the backbone's tensors
 * (weights, input size, preprocessing), not the cut, its pooling or storage. Every cut of one
 * backbone shares one calibration, so a layer sweep and single extractions quantise alike.
 */
export function calibrationKey(spec: CodeSpec): string {
  const { backbone, weights, preprocessing, precision, calibration } = spec;
  const hash = createHash('sha256').update(canonicalJson({ v: CODE_SPEC_VERSION, backbone, weights, preprocessing, precision, calibration })).digest('hex').slice(0, 16);
  return `${backboneSlug(backbone)}-${hash}`;
}

/** JSON with sorted keys, so equal specs hash equally whatever order they were built in. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/** The extract settings that produce a spec's codes: what a stage re-extracting for a head or a key passes on. */
export interface SpecSettings {
  readonly cut: { readonly layer: string; readonly pool?: CutPool; readonly layout?: FeatureLayout };
  readonly size: readonly [number, number];
  readonly resize: ResizeMode;
  readonly interpolation: Interpolation;
  readonly cropFraction?: number;
  readonly background: readonly [number, number, number];
  readonly dtype: CodeDtype;
  readonly precision?: 'int8';
  readonly augment?: { readonly views: number; readonly seed: number };
}

export function settingsOfSpec(spec: CodeSpec): SpecSettings {
  const p = spec.preprocessing;
  return {
    cut: { layer: spec.layer, ...(spec.pool ? { pool: spec.pool } : {}), ...(spec.layout && spec.layout !== 'vector' && spec.layout !== 'other' ? { layout: spec.layout } : {}) },
    size: p.size,
    resize: p.resize,
    interpolation: p.interpolation,
    ...(p.cropFraction ? { cropFraction: p.cropFraction } : {}),
    background: p.background,
    dtype: spec.dtype,
    ...(spec.precision ? { precision: spec.precision } : {}),
    ...(spec.augment ? { augment: { views: spec.augment.views, seed: spec.augment.seed } } : {}),
  };
}
