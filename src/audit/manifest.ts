/**
 * `audit --write-manifest FILE`: the rows minus what the audit found, as a `path,label,split`
 * CSV that `bottleneck extract` reads, so a clean re-run is one command. What is dropped:
 *
 * - every row of an exact-duplicate group with conflicting labels (which label is right is
 *   unknown);
 * - of any other exact-duplicate group, all but one row: the first (by path) of the earliest
 *   split (train, then validation, then test), so a leaked copy leaves the held-out split;
 * - of a near-duplicate pair that leaks, the rows of a side in a later split than the other
 *   side's earliest one (a copy of a training image leaves validation or test);
 * - with `dropMislabelled`, the suspected label errors.
 *
 * The split column is what the rows were listed with (empty when none): rows without split
 * folders keep being split by content hash, and removing a row never moves another.
 */
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { UsageError } from '../util/errors.ts';
import { SPLIT_ORDER, type Split } from './audit-rows.ts';
import type { AuditResult, Member } from './audit.ts';

export interface ManifestRow {
  readonly path: string;
  readonly label: string | null;
  /** As listed, not as derived by hash. */
  readonly split: Split | null;
  readonly file: string | null;
}

export interface Dropped {
  readonly row: number;
  readonly reason: string;
}

export function rowsToDrop(result: AuditResult, opts: { readonly dropMislabelled: boolean }): Dropped[] {
  const dropped = new Map<number, string>();
  const drop = (row: number, reason: string) => {
    if (!dropped.has(row)) dropped.set(row, reason);
  };
  const order = (m: Member) => (m.split === null ? 3 : SPLIT_ORDER[m.split]);
  for (const g of result.exact) {
    if (g.conflict) {
      for (const m of g.members) drop(m.row, `byte-identical copies carry labels ${g.labels.join(', ')}`);
      continue;
    }
    const [kept, ...rest] = [...g.members].sort((a, b) => order(a) - order(b) || (a.path < b.path ? -1 : 1));
    for (const m of rest) drop(m.row, `${m.split !== kept.split ? `leak: byte-identical to ${kept.split} image` : 'byte-identical to'} ${kept.path}`);
  }
  if (!('skipped' in result.near)) {
    for (const p of result.near.pairs.filter((q) => q.leak)) {
      for (const [side, other] of [
        [p.a, p.b],
        [p.b, p.a],
      ] as const) {
        const earliest = Math.min(...other.map(order));
        const anchor = other.find((m) => order(m) === earliest)!;
        for (const m of side) if (order(m) > earliest && order(m) < 3) drop(m.row, `leak: near-duplicate (cosine ${p.similarity.toFixed(4)}) of ${anchor.split} image ${anchor.path}`);
      }
    }
  }
  if (opts.dropMislabelled) {
    for (const i of result.labels.issues) drop(i.member.row, `suspected label error: ${i.given} → ${i.suggested} (p(${i.given}) = ${i.selfConfidence.toFixed(4)})`);
  }
  return [...dropped].map(([row, reason]) => ({ row, reason })).sort((a, b) => a.row - b.row);
}

/** RFC 4180 quoting; csv-parse (what extract reads manifests with) reads it back. */
function csvField(value: string): string {
  return /[",\r\n]/.test(value) || value !== value.trim() ? `"${value.replaceAll('"', '""')}"` : value;
}

export async function writeCleanManifest(file: string, rows: readonly ManifestRow[], dropped: readonly Dropped[]): Promise<{ written: number; dropped: number }> {
  const gone = new Set(dropped.map((d) => d.row));
  const dir = path.dirname(path.resolve(file));
  const lines = ['path,label,split'];
  let written = 0;
  for (const [row, r] of rows.entries()) {
    if (gone.has(row)) continue;
    if (r.file === null) throw new UsageError(`${file}: cannot write a manifest: the image behind ${r.path} is not where the cache says it was read from`);
    if (r.label === null) continue;
    lines.push([path.relative(dir, r.file).split(path.sep).join('/'), r.label, r.split ?? ''].map(csvField).join(','));
    written++;
  }
  await writeFileAtomic(file, `${lines.join('\n')}\n`);
  return { written, dropped: gone.size };
}
