/** Rows of codes as they move between the extractor, the shard writer and the reader. */
import { createHash } from 'node:crypto';

export type Split = 'train' | 'validation' | 'test';

export interface CodeRows {
  readonly sha256: readonly string[];
  /** Which dataset listed the image (the data folder's or manifest's name): one key can serve several. */
  readonly dataset: readonly string[];
  readonly path: readonly string[];
  readonly label: readonly string[];
  readonly split: readonly (Split | null)[];
  /**
   * Augmented-view index per row (1..K), for keys of cached augmentations; absent means every
   * row is the image itself (view 0).
   */
  readonly view?: readonly number[];
  /** rows × dim floats, row-major. */
  readonly codes: Float32Array;
}

export function rowCount(rows: CodeRows): number {
  return rows.sha256.length;
}

/**
 * Identity of a row: the same content listed by the same dataset under the same path, label
 * and split (and, for an augmented view, the same view index).
 */
export function rowIdentity(sha256: string, dataset: string, path: string, label: string, split: Split | null, view = 0): string {
  const base = `${sha256}\u0000${dataset}\u0000${path}\u0000${label}\u0000${split ?? ''}`;
  return view === 0 ? base : `${base}\u0000${view}`;
}

export function concatRows(parts: readonly CodeRows[], dim: number): CodeRows {
  const total = parts.reduce((n, p) => n + rowCount(p), 0);
  const codes = new Float32Array(total * dim);
  let offset = 0;
  for (const p of parts) {
    codes.set(p.codes.subarray(0, rowCount(p) * dim), offset);
    offset += rowCount(p) * dim;
  }
  return {
    sha256: parts.flatMap((p) => p.sha256),
    dataset: parts.flatMap((p) => p.dataset),
    path: parts.flatMap((p) => p.path),
    label: parts.flatMap((p) => p.label),
    split: parts.flatMap((p) => p.split),
    ...(parts.some((p) => p.view) ? { view: parts.flatMap((p) => p.view ?? p.sha256.map(() => 0)) } : {}),
    codes,
  };
}

/**
 * A checksum over every value of the rows (codes as stored), written into each shard's
 * metadata. Arrow's own framing catches truncation, not a flipped byte inside a float.
 */
export function rowsChecksum(rows: CodeRows, storedCodes: Uint8Array): string {
  const hash = createHash('sha256');
  for (let i = 0; i < rows.sha256.length; i++) {
    hash.update(`${rowIdentity(rows.sha256[i], rows.dataset[i], rows.path[i], rows.label[i], rows.split[i], rows.view?.[i] ?? 0)}\u0001`);
  }
  hash.update(storedCodes);
  return hash.digest('hex');
}
