/**
 * What every audit algorithm takes: one row per listed image, codes row-major. Plain arrays,
 * so the algorithms know nothing of the cache that produced them.
 */
import type { Split } from '../cache/code-rows.ts';

export type { Split };

export interface AuditRows {
  readonly n: number;
  readonly dim: number;
  /** n × dim, row-major. */
  readonly codes: Float32Array;
  readonly sha256: readonly string[];
  /** Relative to the dataset root, '/'-separated, as the cache records them. */
  readonly paths: readonly string[];
  /** null: an unlabelled row (never a label error candidate). */
  readonly labels: readonly (string | null)[];
  /** The split each row is used in (given or derived, see audit.ts); null when unknown. */
  readonly splits: readonly (Split | null)[];
}

/** Rows grouped by content: `first[c]` is a row of content c, `rowsOf[c]` all of them, `contentOf[row]` its content. */
export interface Contents {
  readonly count: number;
  readonly first: Int32Array;
  readonly rowsOf: readonly (readonly number[])[];
  readonly contentOf: Int32Array;
}

/** Contents in order of first appearance, so results follow the rows' order. */
export function groupContents(sha256: readonly string[]): Contents {
  const index = new Map<string, number>();
  const rowsOf: number[][] = [];
  const contentOf = new Int32Array(sha256.length);
  sha256.forEach((sha, row) => {
    let c = index.get(sha);
    if (c === undefined) {
      c = rowsOf.length;
      index.set(sha, c);
      rowsOf.push([]);
    }
    rowsOf[c].push(row);
    contentOf[row] = c;
  });
  return { count: rowsOf.length, first: Int32Array.from(rowsOf, (r) => r[0]), rowsOf, contentOf };
}

/** Held-out splits rank after train: a pair spanning train and validation/test leaks. */
export const SPLIT_ORDER: Readonly<Record<Split, number>> = { train: 0, validation: 1, test: 2 };
