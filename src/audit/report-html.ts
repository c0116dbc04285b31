/**
 * `audit --report DIR`: one self-contained audit.html (inline CSS, thumbnails as data: URIs,
 * a content-security policy that forbids every fetch), like evaluate's report: it can be
 * mailed, archived or opened offline. Duplicate groups, leak pairs and suspected mislabels
 * each get thumbnails, leaks first.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { thumbnailHtml } from '../evaluate/thumbnail-html.ts';
import { escapeHtml as esc } from '../util/html.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import type { AuditResult, ExactFinding, LabelFinding, Member, NearFinding } from './audit.ts';
import type { AuditHeader } from './format-audit.ts';

const THUMB = 112;
/** Enough to review by eye; the JSON output has every finding. */
export const REPORT_LIMITS = { groups: 100, pairs: 150, issues: 100 } as const;

export async function writeAuditReport(dir: string, header: AuditHeader, r: AuditResult): Promise<string> {
  await mkdir(dir, { recursive: true });
  const thumbs = new Map<string, Promise<string>>();
  const thumb = (m: Member) => {
    const key = m.file ?? `\u0000${m.path}`;
    if (!thumbs.has(key)) thumbs.set(key, thumbnailHtml(m.file, m.sha256, m.path, THUMB));
    return thumbs.get(key)!;
  };
  const exact = await Promise.all(r.exact.slice(0, REPORT_LIMITS.groups).map((g) => exactFigure(g, thumb)));
  const near = 'skipped' in r.near ? [] : await Promise.all(r.near.pairs.slice(0, REPORT_LIMITS.pairs).map((p) => nearFigure(p, thumb)));
  const issues = await Promise.all(r.labels.issues.slice(0, REPORT_LIMITS.issues).map((i, n) => issueFigure(i, n, thumb)));
  const file = path.join(dir, 'audit.html');
  await writeFileAtomic(file, page(header, r, exact, near, issues));
  return file;
}

function page(h: AuditHeader, r: AuditResult, exact: readonly string[], near: readonly string[], issues: readonly string[]): string {
  const leaks = r.exact.filter((g) => g.leak).length + ('skipped' in r.near ? 0 : r.near.pairs.filter((p) => p.leak).length);
  const cards: [string, string | number][] = [
    ['rows', r.rows],
    ['distinct images', r.contents],
    ['exact-duplicate groups', r.exact.length],
    ['with conflicting labels', r.exact.filter((g) => g.conflict).length],
    ['near-duplicate pairs', 'skipped' in r.near ? '–' : r.near.pairs.length],
    ['leaks across splits', leaks],
    ['suspected label errors', r.labels.issues.length],
  ];
  const nearNote =
    'skipped' in r.near
      ? `<p class="note">Skipped: ${esc(r.near.skipped)}</p>`
      : `<p class="note">Cosine ≥ ${r.near.threshold} among each image's ${r.near.neighbours} nearest (exact search). Threshold: ${esc(r.near.thresholdSource)}. Leaks across splits first.</p>`;
  const thresholds = Object.entries(r.labels.thresholds).map(([c, t]) => `<code>${esc(c)}</code> ${t === null ? '–' : t.toFixed(3)}`).join(', ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Audit: ${esc(h.data)}</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>Audit of ${esc(h.data)}</h1><dl class="meta">${meta(h, r)}</dl></header>
<section><h2>Summary</h2><div class="cards">${cards.map(([l, v]) => `<div class="card"><div class="value">${v}</div><div class="label">${esc(l)}</div></div>`).join('')}</div></section>
<section id="exact"><h2>Exact duplicates${shown(exact.length, r.exact.length)}</h2><p class="note">The same bytes under several paths. A leak spans splits; a conflict carries several labels.</p>${exact.length ? `<div class="groups">${exact.join('\n')}</div>` : '<p class="note">None.</p>'}</section>
<section id="near"><h2>Near-duplicates${'skipped' in r.near ? '' : shown(near.length, r.near.pairs.length)}</h2>${nearNote}${near.length ? `<div class="pairs">${near.join('\n')}</div>` : 'skipped' in r.near ? '' : '<p class="note">None.</p>'}</section>
<section id="labels"><h2>Suspected label errors${shown(issues.length, r.labels.issues.length)}</h2><p class="note">${esc(r.labels.rule)}. Thresholds t<sub>j</sub>: ${thresholds}. Out-of-fold heads: ${r.labels.folds} folds, ${esc(r.labels.head)}; out-of-fold accuracy ${(100 * r.labels.outOfFoldAccuracy).toFixed(1)}%.</p>${issues.length ? `<div class="mistakes">${issues.join('\n')}</div>` : '<p class="note">None.</p>'}</section>
</body>
</html>
`;
}

function meta(h: AuditHeader, r: AuditResult): string {
  const c = r.splitCounts;
  const rows: [string, string][] = [
    ['cache key', h.key],
    ['cut', `${h.cut} (${h.dim}-d)`],
    ['classes', r.classes.join(', ')],
    ['splits', `${r.splitSource === 'folders' ? 'as listed' : `content hash (--val ${r.fractions.val} --test ${r.fractions.test})`}: ${c.train} train, ${c.validation} validation, ${c.test} test, ${c.none} none`],
  ];
  return rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('');
}

const shown = (n: number, total: number) => (n < total ? ` (the first ${n} of ${total})` : total > 0 ? ` (${total})` : '');

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222; background: #fafafa; margin: 0 auto; max-width: 1080px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 8px; word-break: break-all; }
h2 { font-size: 17px; margin: 0 0 10px; }
section, header { background: white; border: 1px solid #e3e3e3; border-radius: 6px; padding: 16px 20px; margin-bottom: 16px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.meta dt { color: #666; } dl.meta dd { margin: 0; word-break: break-all; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #e3e3e3; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .label { color: #666; font-size: 12px; }
.note { color: #666; margin: 0 0 10px; }
.groups, .pairs { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.mistakes { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; }
figure { margin: 0; border: 1px solid #e3e3e3; border-radius: 6px; padding: 6px; font-size: 12px; }
figure.leak { border-color: #d33; border-width: 2px; }
.row { display: flex; gap: 8px; justify-content: center; }
.thumb { width: ${THUMB}px; height: ${THUMB}px; display: flex; align-items: center; justify-content: center; margin: 0 auto 4px; background: #f0f0f0; flex: none; }
.thumb img { max-width: ${THUMB}px; max-height: ${THUMB}px; }
.placeholder { color: #a33; font-size: 11px; text-align: center; padding: 6px; word-break: break-word; overflow: hidden; }
.path { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 11px; word-break: break-all; color: #444; }
ul.members { margin: 4px 0 0; padding-left: 16px; }
.tag { display: inline-block; border-radius: 3px; padding: 0 5px; margin-right: 4px; font-size: 11px; font-weight: 600; color: white; background: #888; }
.tag.leak { background: #c22; } .tag.conflict { background: #d80; }
.bad { color: #b00; }
`;

function tags(leak: boolean, conflict: boolean, conflictWord = 'conflict'): string {
  return `${leak ? '<span class="tag leak">leak</span>' : ''}${conflict ? `<span class="tag conflict">${conflictWord}</span>` : ''}`;
}

function memberLine(m: Member): string {
  return `<li><span class="path">${esc(m.path)}</span> · ${esc(m.label ?? 'no label')} · ${esc(m.split ?? 'no split')}</li>`;
}

async function exactFigure(g: ExactFinding, thumb: (m: Member) => Promise<string>): Promise<string> {
  // Byte-identical: one picture shows them all.
  const shownMember = g.members.find((m) => m.file !== null) ?? g.members[0];
  return `<figure class="exact${g.leak ? ' leak' : ''}"><div class="thumb">${await thumb(shownMember)}</div><figcaption>${tags(g.leak, g.conflict)}${g.members.length} copies, sha256 <span class="path">${g.sha256.slice(0, 12)}…</span><ul class="members">${g.members.map(memberLine).join('')}</ul></figcaption></figure>`;
}

async function nearFigure(p: NearFinding, thumb: (m: Member) => Promise<string>): Promise<string> {
  const side = async (members: readonly Member[]) => `<div><div class="thumb">${await thumb(members[0])}</div></div>`;
  return `<figure class="near${p.leak ? ' leak' : ''}"><div class="row">${await side(p.a)}${await side(p.b)}</div><figcaption>${tags(p.leak, p.labelsDiffer, 'labels differ')}cosine ${p.similarity.toFixed(4)}<ul class="members">${[...p.a, ...p.b].map(memberLine).join('')}</ul></figcaption></figure>`;
}

async function issueFigure(i: LabelFinding, n: number, thumb: (m: Member) => Promise<string>): Promise<string> {
  return `<figure class="issue"><div class="thumb">${await thumb(i.member)}</div><figcaption><div class="path">${n + 1}. ${esc(i.member.path)}</div><div>given: <strong>${esc(i.given)}</strong> (p=${i.selfConfidence.toFixed(3)})</div><div class="bad">suggested: <strong>${esc(i.suggested)}</strong> (p=${i.suggestedProbability.toFixed(3)})</div><div>${esc(i.member.split ?? 'no split')}</div></figcaption></figure>`;
}

