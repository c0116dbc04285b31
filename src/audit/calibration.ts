/**
 * Calibrated near-duplicate thresholds, one JSON file per backbone and cut, written by
 * bench/audit-calibrate.ts with the evidence behind the number (recall on altered copies of
 * real photos, false pairs among distinct ones). A cut without one needs --threshold.
 */
import { assetPath } from '../util/assets.ts';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Cut } from '../backbones/cut.ts';

export interface Calibration {
  readonly backbone: string;
  /** sha256 of the weights the threshold was measured with. */
  readonly weights: string;
  readonly layer: string;
  readonly pool: string | null;
  /** What is compared: see similarityVectors. */
  readonly similarity: string;
  readonly threshold: number;
  readonly rule: string;
  readonly command: string;
  readonly measured: string;
  readonly copies: { readonly perDataset: number; readonly datasets: readonly string[]; readonly alterations: readonly string[] };
  /** Per alteration: pairs, recall at the threshold (overall and per dataset), min and median cosine. */
  readonly recall: Readonly<Record<string, { readonly pairs: number; readonly recall: number; readonly min: number; readonly median: number; readonly byDataset: Readonly<Record<string, number>> }>>;
  readonly recallAll: number;
  readonly recallByDataset: Readonly<Record<string, number>>;
  readonly distinct: {
    readonly images: number;
    readonly pairs: number;
    readonly falsePairs: number;
    readonly falseRate: number;
    readonly saturated: number;
    readonly byDataset: Readonly<Record<string, { readonly images: number; readonly pairs: number; readonly falsePairs: number }>>;
    readonly top: readonly { readonly a: string; readonly b: string; readonly cosine: number }[];
  };
  readonly grid: readonly { readonly threshold: number; readonly recall: number; readonly falsePairs: number }[];
  /** The same rule on plain cosine of the codes, for comparison. */
  readonly plainCosine: { readonly threshold: number; readonly recallAll: number; readonly falsePairs: number; readonly recall: Readonly<Record<string, number>> };
}

const DIR = assetPath('calibration');

/** Where a cut's calibration lives: `<backbone>-<layer>[-<pool>].json`, '/' in names as '_'. */
export function calibrationFile(backbone: string, cut: Pick<Cut, 'layer' | 'pool'>): string {
  return path.join(DIR, `${[backbone, cut.layer, cut.pool].filter(Boolean).join('-').replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}

/**
 * The calibration for this backbone, weights and cut, or null. Weights matter: the same
 * architecture with other weights has other codes, so a calibration is only used for its own.
 */
export async function findCalibration(spec: { readonly backbone: string; readonly weights: string; readonly layer: string; readonly pool: string | null }): Promise<Calibration | null> {
  const file = calibrationFile(spec.backbone, { layer: spec.layer, pool: spec.pool === 'avg' || spec.pool === 'max' ? spec.pool : undefined });
  if (!existsSync(file)) return null;
  const c = checkCalibration(JSON.parse(await readFile(file, 'utf8')), file);
  return c.weights === spec.weights && c.layer === spec.layer && c.pool === spec.pool ? c : null;
}

function checkCalibration(value: unknown, file: string): Calibration {
  const c = value as Partial<Calibration> | null;
  const ok =
    c !== null &&
    typeof c === 'object' &&
    typeof c.backbone === 'string' &&
    typeof c.weights === 'string' &&
    typeof c.layer === 'string' &&
    (c.pool === null || typeof c.pool === 'string') &&
    typeof c.threshold === 'number' &&
    c.threshold > 0 &&
    c.threshold <= 1 &&
    typeof c.rule === 'string' &&
    typeof c.recallAll === 'number' &&
    typeof c.distinct === 'object' &&
    typeof c.distinct?.falseRate === 'number';
  if (!ok) throw new Error(`${file}: not a calibration file (rerun bench/audit-calibrate.ts)`);
  return c as Calibration;
}
