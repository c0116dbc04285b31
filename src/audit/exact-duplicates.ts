/**
 * Exact duplicates: one content hash listed under several paths. A group that spans splits is
 * a leak (the same image is trained on and scored); one that carries several labels is a
 * conflict (at least one of its labels is wrong, or the classes overlap).
 */
import { groupContents, SPLIT_ORDER, type AuditRows, type Split } from './audit-rows.ts';

export interface ExactGroup {
  readonly sha256: string;
  /** Row indices, in row order. */
  readonly rows: readonly number[];
  /** Distinct labels, sorted. */
  readonly labels: readonly string[];
  /** Distinct splits, train first. */
  readonly splits: readonly Split[];
  /** Spans two or more splits (train and validation, train and test, or validation and test). */
  readonly leak: boolean;
  /** Carries two or more labels. */
  readonly conflict: boolean;
}

/** Groups of two or more rows with one content hash: leaks and conflicts first, then by size. */
export function findExactDuplicates(rows: Pick<AuditRows, 'sha256' | 'labels' | 'splits' | 'paths'>): ExactGroup[] {
  const contents = groupContents(rows.sha256);
  const groups: ExactGroup[] = [];
  for (const members of contents.rowsOf) {
    if (members.length < 2) continue;
    const labels = [...new Set(members.map((r) => rows.labels[r]).filter((l): l is string => l !== null))].sort();
    const splits = [...new Set(members.map((r) => rows.splits[r]).filter((s): s is Split => s !== null))].sort((a, b) => SPLIT_ORDER[a] - SPLIT_ORDER[b]);
    groups.push({ sha256: rows.sha256[members[0]], rows: members, labels, splits, leak: splits.length > 1, conflict: labels.length > 1 });
  }
  const rank = (g: ExactGroup) => (g.leak ? 2 : 0) + (g.conflict ? 1 : 0);
  const firstPath = (g: ExactGroup) => rows.paths[g.rows[0]];
  return groups.sort((a, b) => rank(b) - rank(a) || b.rows.length - a.rows.length || (firstPath(a) < firstPath(b) ? -1 : 1));
}
