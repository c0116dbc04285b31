/**
 * Near-duplicates: pairs of different contents whose codes have a cosine similarity (of
 * power-normalised codes, see similarityVectors) at or above a calibrated threshold: resized,
 * re-encoded or slightly cropped copies of one photo. Search runs once per content, not per
 * row, so exact copies never take each other's neighbour slots; each content's k nearest
 * others are candidates, and every pair above the threshold is kept.
 */
import { groupContents, SPLIT_ORDER, type AuditRows, type Contents, type Split } from './audit-rows.ts';
import { nearestNeighbours, similarityVectors, type KnnOptions } from './knn.ts';

export interface NearPair {
  /** Rows of the two contents (each one or more rows, when a content is listed twice). */
  readonly rowsA: readonly number[];
  readonly rowsB: readonly number[];
  readonly similarity: number;
  /** Some row of one side and some row of the other sit in different splits. */
  readonly leak: boolean;
  /** The two sides carry different labels. */
  readonly labelsDiffer: boolean;
}

export interface NearDuplicates {
  readonly threshold: number;
  readonly k: number;
  /** Leaks first, then by similarity, highest first. */
  readonly pairs: readonly NearPair[];
  /**
   * Contents whose k-th neighbour is still above the threshold: they may have more near-copies
   * than the k searched (their groups are still joined through the copies' own neighbours).
   */
  readonly saturated: number;
  /** A group id per row: rows joined by exact or near duplication share one (for grouped folds). */
  readonly groupOfRow: Int32Array;
  readonly contents: number;
  readonly seconds: number;
}

export interface NearDuplicateOptions extends KnnOptions {
  readonly threshold: number;
  /** Neighbours searched per content (default 10). */
  readonly k?: number;
}

export async function findNearDuplicates(rows: AuditRows, opts: NearDuplicateOptions): Promise<NearDuplicates> {
  const started = performance.now();
  const contents = groupContents(rows.sha256);
  const { dim } = rows;
  const k = Math.max(1, Math.min(opts.k ?? 10, contents.count - 1));
  const nb = await nearestNeighbours(similarityVectors(rows.codes, rows.n, dim, contents.first), contents.count, dim, k, opts);

  const seen = new Set<number>();
  const found: [number, number, number][] = [];
  let saturated = 0;
  for (let a = 0; a < contents.count; a++) {
    for (let t = 0; t < k; t++) {
      const b = nb.indices[a * k + t];
      const sim = nb.similarities[a * k + t];
      if (b < 0 || sim < opts.threshold) break;
      if (t === k - 1) saturated++;
      const [lo, hi] = a < b ? [a, b] : [b, a];
      if (seen.has(lo * contents.count + hi)) continue;
      seen.add(lo * contents.count + hi);
      found.push([lo, hi, sim]);
    }
  }
  const pairs = found.map(([a, b, sim]) => describePair(rows, contents, a, b, sim));
  pairs.sort((p, q) => Number(q.leak) - Number(p.leak) || q.similarity - p.similarity || p.rowsA[0] - q.rowsA[0]);
  return {
    threshold: opts.threshold,
    k,
    pairs,
    saturated,
    groupOfRow: groupRows(contents, found),
    contents: contents.count,
    seconds: (performance.now() - started) / 1000,
  };
}

function describePair(rows: AuditRows, contents: Contents, a: number, b: number, similarity: number): NearPair {
  const splitsOf = (c: number) => new Set(contents.rowsOf[c].map((r) => rows.splits[r]).filter((s): s is Split => s !== null));
  const labelsOf = (c: number) => new Set(contents.rowsOf[c].map((r) => rows.labels[r]));
  const [sa, sb] = [splitsOf(a), splitsOf(b)];
  const leak = [...sa].some((x) => [...sb].some((y) => x !== y));
  const [la, lb] = [labelsOf(a), labelsOf(b)];
  const labelsDiffer = la.size !== lb.size || [...la].some((l) => !lb.has(l));
  // The side in the earlier split (train before validation before test) comes first.
  const order = (s: Set<Split>) => Math.min(3, ...[...s].map((x) => SPLIT_ORDER[x]));
  const swap = order(sb) < order(sa);
  const [first, second] = swap ? [b, a] : [a, b];
  return { rowsA: contents.rowsOf[first], rowsB: contents.rowsOf[second], similarity, leak, labelsDiffer };
}

/** Connected components over contents joined by near pairs, as a group id per row (union–find). */
function groupRows(contents: Contents, pairs: readonly [number, number, number][]): Int32Array {
  const parent = Int32Array.from({ length: contents.count }, (_, i) => i);
  const root = (c: number): number => {
    while (parent[c] !== c) {
      parent[c] = parent[parent[c]];
      c = parent[c];
    }
    return c;
  };
  for (const [a, b] of pairs) {
    const [ra, rb] = [root(a), root(b)];
    if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb);
  }
  return Int32Array.from(contents.contentOf, (c) => root(c));
}
