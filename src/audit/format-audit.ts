/** The terminal summary of an audit: counts first, then the top findings of each kind. */
import type { AuditResult, ExactFinding, Member, NearFinding } from './audit.ts';
import { pct } from '../util/numbers.ts';

export interface AuditHeader {
  readonly data: string;
  readonly key: string;
  readonly cut: string;
  readonly dim: number;
}

export function formatAudit(header: AuditHeader, r: AuditResult, show: number): string {
  const out: string[] = [];
  const c = r.splitCounts;
  const splitWords = (['train', 'validation', 'test', 'none'] as const).filter((s) => c[s] > 0).map((s) => `${c[s]} ${s === 'none' ? 'without a split' : s}`);
  out.push(`audit of ${header.data}: ${header.key} (${header.cut}, ${header.dim}-d)`);
  out.push(`${r.rows} rows, ${r.contents} distinct images, ${r.classes.length} classes; splits ${r.splitSource === 'folders' ? 'as listed' : `by content hash as train-head makes them (--val ${r.fractions.val} --test ${r.fractions.test})`}: ${splitWords.join(', ')}`);

  const leaks = r.exact.filter((g) => g.leak).length;
  const conflicts = r.exact.filter((g) => g.conflict).length;
  out.push('', `Exact duplicates (same content hash): ${r.exact.length} group(s), ${leaks} leak(s) across splits, ${conflicts} with conflicting labels`);
  for (const g of r.exact.slice(0, show)) out.push(`  ${tag(g)} ${g.members.map(describe).join('  =  ')}`);
  more(out, r.exact.length, show);

  if ('skipped' in r.near) out.push('', `Near-duplicates: skipped: ${r.near.skipped}`);
  else {
    const n = r.near;
    const leakPairs = n.pairs.filter((p) => p.leak).length;
    out.push('', `Near-duplicates (cosine ≥ ${n.threshold} among each image's ${n.neighbours} nearest, ${n.seconds.toFixed(1)} s): ${n.pairs.length} pair(s), ${leakPairs} leak(s) across splits`);
    out.push(`  threshold: ${n.threshold}, ${n.thresholdSource}`);
    if (n.saturated > 0) out.push(`  note: ${n.saturated} image(s) have ${n.neighbours} or more near-copies; raise --neighbours to list every pair`);
    for (const p of n.pairs.slice(0, show)) out.push(`  ${pairTag(p)} ${p.similarity.toFixed(4)}  ${describe(p.a[0])}  ~  ${describe(p.b[0])}`);
    more(out, n.pairs.length, show);
  }

  const l = r.labels;
  out.push('', `Likely label errors: ${l.issues.length} of ${r.rows} rows (${l.folds}-fold out-of-fold probabilities, out-of-fold accuracy ${pct(l.outOfFoldAccuracy, 1)}, ${l.seconds.toFixed(1)} s)`);
  out.push(`  head: ${l.head}`);
  out.push(`  rule: ${l.rule}`);
  out.push(`  thresholds t_j: ${Object.entries(l.thresholds).map(([k, t]) => `${k} ${t === null ? '-' : t.toFixed(3)}`).join(', ')}`);
  l.issues.slice(0, show).forEach((i, n) => {
    out.push(`  ${String(n + 1).padStart(3)}. ${i.member.path}  ${i.member.split ?? ''}  given ${i.given} (p ${i.selfConfidence.toFixed(4)}) → ${i.suggested} (p ${i.suggestedProbability.toFixed(4)})`);
  });
  more(out, l.issues.length, show);
  return out.join('\n');
}

function tag(g: ExactFinding): string {
  return [g.leak ? 'LEAK' : '', g.conflict ? 'CONFLICT' : '', !g.leak && !g.conflict ? 'copy' : ''].filter(Boolean).join('+');
}

function pairTag(p: NearFinding): string {
  return p.leak ? 'LEAK' : p.labelsDiffer ? 'labels differ' : 'pair';
}

function describe(m: Member): string {
  return `${m.path} [${[m.label, m.split].filter(Boolean).join(', ')}]`;
}

function more(out: string[], total: number, show: number): void {
  if (total > show) out.push(`  … and ${total - show} more (--show N, --json or --report DIR for all)`);
}

