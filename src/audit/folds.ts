/**
 * k folds for out-of-fold predictions, stratified by label and grouped: rows that are copies of
 * one another (exact or near duplicates) always share a fold, or a copy in the training folds
 * would vouch for its twin's label. Deterministic: a fold depends on the seed and the group's
 * content hash, not on row order.
 */
import { createHash } from 'node:crypto';

/** A fold (0..k-1) per row; -1 for unlabelled rows, which no fold holds. */
export function assignFolds(
  rows: { readonly sha256: readonly string[]; readonly labels: readonly (string | null)[] },
  groupOfRow: Int32Array,
  k: number,
  seed: number,
): Int32Array {
  // Each group is dealt under the label of its first labelled row.
  const groupLabel = new Map<number, { label: string; key: string }>();
  rows.labels.forEach((label, r) => {
    if (label === null || groupLabel.has(groupOfRow[r])) return;
    groupLabel.set(groupOfRow[r], { label, key: createHash('sha256').update(`${seed}\u0000${rows.sha256[r]}`).digest('hex') });
  });
  const byLabel = new Map<string, { group: number; key: string }[]>();
  for (const [group, { label, key }] of groupLabel) byLabel.set(label, [...(byLabel.get(label) ?? []), { group, key }]);
  // Classes continue the deal where the previous one stopped, so small classes do not all start at fold 0.
  const foldOfGroup = new Map<number, number>();
  let next = 0;
  for (const label of [...byLabel.keys()].sort()) {
    for (const { group } of byLabel.get(label)!.sort((a, b) => (a.key < b.key ? -1 : 1))) foldOfGroup.set(group, next++ % k);
  }
  return Int32Array.from(rows.labels, (label, r) => (label === null ? -1 : foldOfGroup.get(groupOfRow[r])!));
}
