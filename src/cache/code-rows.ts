/**
 * Rows of codes as they move between the extractor, the shard writer and the readers. A code
 * belongs to content, not to a file name: rows are keyed by the image's sha256 (and, in a key
 * of augmented views, the view index). Which paths, labels and splits a dataset gives that
 * content is its membership (membership.ts), kept apart so that a moved, renamed or relabelled
 * image needs no new code and leaves no stale row behind.
 */
import { createHash } from 'node:crypto';

export type Split = 'train' | 'validation' | 'test';

export interface CodeRows {
  readonly sha256: readonly string[];
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

/** What a row's code is of: the content, and which of its views (0: the image itself). */
export function contentId(sha256: string, view = 0): string {
  return view === 0 ? sha256 : `${sha256}#${view}`;
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
  for (let i = 0; i < rows.sha256.length; i++) hash.update(`${contentId(rows.sha256[i], rows.view?.[i] ?? 0)}\u0001`);
  hash.update(storedCodes);
  return hash.digest('hex');
}
