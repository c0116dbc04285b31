/**
 * `evaluate --report DIR`: one self-contained report.html (inline CSS and SVG, thumbnails as
 * data: URIs, a CSP that forbids every fetch) so it can be mailed, archived or opened offline,
 * plus PNG copies of the plots for slides and READMEs.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { historyPlotSvg, renderPng } from '../train-head/history-plot.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { escapeHtml as esc } from '../util/html.ts';
import type { EvaluationReport } from './evaluation-report.ts';
import { thumbnailHtml } from './thumbnail-html.ts';
import type { ClassMetrics, Metrics, Mistake } from './metrics.ts';
import { pct } from '../util/numbers.ts';

const MAX_MISTAKES = 24;
const THUMB = 128;
/** Longer class names are cut in the plots (the full name stays in a tooltip and the table). */
const MAX_LABEL_CHARS = 18;
/** Rough advance of an 11px sans-serif character, to size plot margins without measuring text. */
const CHAR_W = 6.6;
const BAR_COLORS = { precision: '#1f77b4', recall: '#ff7f0e', f1: '#2ca02c' } as const;

export async function writeHtmlReport(dir: string, report: EvaluationReport): Promise<{ html: string; pngs: string[] }> {
  await mkdir(dir, { recursive: true });
  const plots: { name: string; svg: string }[] = [
    { name: 'confusion', svg: confusionSvg(report.classes, report.metrics.confusion) },
    { name: 'per-class', svg: perClassSvg(report.metrics.classes) },
  ];
  const history = report.history.length > 0 ? historyPlotSvg(report.history, `${specLine(report)} → head`) : null;
  if (history) plots.push({ name: 'history', svg: history });

  const pngs: string[] = [];
  for (const plot of plots) {
    const file = path.join(dir, `${plot.name}.png`);
    await writeFileAtomic(file, await renderPng(plot.svg));
    pngs.push(file);
  }
  const thumbnails = await Promise.all(report.metrics.mistakes.slice(0, MAX_MISTAKES).map(mistakeFigure));
  const html = page(report, plots[0].svg, plots[1].svg, history, thumbnails);
  const htmlFile = path.join(dir, 'report.html');
  await writeFileAtomic(htmlFile, html);
  return { html: htmlFile, pngs };
}

function page(report: EvaluationReport, confusion: string, perClass: string, history: string | null, thumbnails: readonly string[]): string {
  const m = report.metrics;
  const shown = thumbnails.length < m.mistakes.length ? ` (the ${thumbnails.length} worst of ${m.mistakes.length})` : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation: ${esc(path.basename(report.head))}</title>
<style>${STYLE}</style>
</head>
<body>
${header(report)}
${unseenWarning(m.unseenLabels)}
<section><h2>Headline</h2>${headline(m)}</section>
<section><h2>Confusion matrix</h2><p class="note">Rows are true labels, columns predictions; colour is the share of the row, the number the count.</p><div class="plot" id="confusion">${confusion}</div></section>
<section><h2>Training curves</h2>${history ? `<div class="plot" id="history">${history}</div>` : '<p class="note">No training history was recorded for this head.</p>'}</section>
<section><h2>Per class</h2><div class="plot" id="per-class">${perClass}</div>${classTable(m.classes)}</section>
<section><h2>Worst mistakes${shown}</h2>${thumbnails.length > 0 ? `<p class="note">Ordered by the probability given to the true label, lowest first.</p><div class="mistakes">${thumbnails.join('\n')}</div>` : '<p class="note">No mistakes.</p>'}</section>
</body>
</html>
`;
}

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
.warning { background: #fff4e5; border: 1px solid #f0a020; border-left: 6px solid #f0a020; border-radius: 6px; padding: 12px 18px; margin-bottom: 16px; }
.warning ul { margin: 6px 0 0; }
.note { color: #666; margin: 0 0 10px; }
.plot { overflow-x: auto; } .plot svg { display: block; }
table { border-collapse: collapse; margin-top: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 12px; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; word-break: break-all; max-width: 360px; }
.mistakes { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; }
figure { margin: 0; border: 1px solid #e3e3e3; border-radius: 6px; padding: 6px; font-size: 12px; }
figure .thumb { width: ${THUMB}px; height: ${THUMB}px; display: flex; align-items: center; justify-content: center; margin: 0 auto 4px; background: #f0f0f0; }
figure .thumb img { max-width: ${THUMB}px; max-height: ${THUMB}px; }
.placeholder { color: #a33; font-size: 11px; text-align: center; padding: 6px; word-break: break-word; overflow: hidden; }
figcaption .path { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 11px; word-break: break-all; color: #444; }
.bad { color: #b00; }
`;

function header(r: EvaluationReport): string {
  const total = r.metrics.n + Object.values(r.metrics.unseenLabels).reduce((a, b) => a + b, 0);
  const rows: [string, string][] = [
    ['head', r.head],
    ['cache key', r.cacheKey],
    ['backbone / layer / pool', `${r.codeSpec.backbone} / ${r.codeSpec.layer} / ${r.codeSpec.pool ?? 'none'}`],
    ['source', r.source],
    ['rows', total === r.metrics.n ? String(r.metrics.n) : `${r.metrics.n} scored of ${total}`],
    ['seconds', r.seconds.toFixed(1)],
  ];
  return `<header><h1>Evaluation of ${esc(path.basename(r.head))}</h1><dl class="meta">${rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl></header>`;
}

function unseenWarning(unseen: Metrics['unseenLabels']): string {
  const entries = Object.entries(unseen).sort(([, a], [, b]) => b - a);
  if (entries.length === 0) return '';
  const rows = entries.reduce((a, [, n]) => a + n, 0);
  return `<div class="warning" id="unseen-labels"><strong>⚠ ${rows} row${rows === 1 ? '' : 's'} with labels the head never saw: not scored.</strong> They are left out of every number below.<ul>${entries
    .map(([label, n]) => `<li><code>${esc(label)}</code>: ${n}</li>`)
    .join('')}</ul></div>`;
}

function headline(m: Metrics): string {
  const cards: [string, string][] = [
    ['accuracy', pct(m.accuracy, 1)],
    ...Object.entries(m.topK).map(([k, v]): [string, string] => [`top-${k} accuracy`, pct(v, 1)]),
    ['log loss', m.logLoss.toFixed(4)],
    ['macro precision', fix(m.macro.precision)],
    ['macro recall', fix(m.macro.recall)],
    ['macro F1', fix(m.macro.f1)],
    ['weighted precision', fix(m.weighted.precision)],
    ['weighted recall', fix(m.weighted.recall)],
    ['weighted F1', fix(m.weighted.f1)],
  ];
  return `<div class="cards">${cards.map(([label, value]) => `<div class="card"><div class="value">${value}</div><div class="label">${esc(label)}</div></div>`).join('')}</div>`;
}

function classTable(classes: readonly ClassMetrics[]): string {
  const rows = classes.map((c) => `<tr><td>${esc(c.label)}</td><td>${fix(c.precision)}</td><td>${fix(c.recall)}</td><td>${fix(c.f1)}</td><td>${c.support}</td></tr>`);
  return `<table id="class-table"><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

/** Cells share the row's colour scale, so a rare class's errors stand out as much as a common one's. */
function confusionSvg(classes: readonly string[], confusion: Metrics['confusion']): string {
  const c = classes.length;
  const cell = Math.max(22, Math.min(48, Math.floor(640 / Math.max(c, 1))));
  const labelW = Math.ceil(Math.max(0, ...classes.map((l) => short(l).length)) * CHAR_W);
  const left = labelW + 34;
  // Column labels are rotated 45°, so they need about 0.71 of their length in height.
  const top = Math.ceil(labelW * 0.71) + 34;
  // The last column's label leans out to the right of the grid by the same amount.
  const w = left + c * cell + Math.max(12, Math.ceil(labelW * 0.71 - cell / 2) + 16);
  const h = top + c * cell + 12;
  const fontSize = Math.min(13, Math.round(cell * 0.38));
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left + (c * cell) / 2}" y="14" text-anchor="middle" font-size="12" fill="#555">predicted</text>`,
    `<text transform="translate(14,${top + (c * cell) / 2}) rotate(-90)" text-anchor="middle" font-size="12" fill="#555">true</text>`,
  ];
  classes.forEach((label, i) => {
    const mid = i * cell + cell / 2;
    parts.push(`<text x="${left - 6}" y="${top + mid + 4}" text-anchor="end"><title>${esc(label)}</title>${esc(short(label))}</text>`);
    parts.push(`<text transform="translate(${left + mid + 4},${top - 6}) rotate(-45)"><title>${esc(label)}</title>${esc(short(label))}</text>`);
  });
  confusion.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((count, j) => {
      const share = total > 0 ? count / total : 0;
      const x = left + j * cell;
      const y = top + i * cell;
      const ink = share > 0.5 ? 'white' : count === 0 ? '#bbb' : '#222';
      parts.push(
        `<rect class="cell" x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${blues(share)}" stroke="${i === j ? '#333' : '#e6e6e6'}"><title>${esc(classes[i])} → ${esc(classes[j])}: ${count} (${pct(share, 1)} of row)</title></rect>`,
        `<text x="${x + cell / 2}" y="${y + cell / 2 + fontSize * 0.35}" text-anchor="middle" font-size="${fontSize}" fill="${ink}">${count}</text>`,
      );
    });
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Horizontal bars, so class names read left to right however many classes there are. */
function perClassSvg(classes: readonly ClassMetrics[]): string {
  const bar = 7;
  const group = 3 * bar + 12;
  const left = Math.ceil(Math.max(0, ...classes.map((m) => short(m.label).length)) * CHAR_W) + 16;
  const plotW = 480;
  const top = 34;
  const w = left + plotW + 60;
  const h = top + classes.length * group + 28;
  const x = (v: number) => left + plotW * v;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...(['precision', 'recall', 'f1'] as const).map(
      (name, k) => `<rect x="${left + k * 100}" y="8" width="10" height="10" fill="${BAR_COLORS[name]}"/><text x="${left + k * 100 + 14}" y="17">${name === 'f1' ? 'F1' : name}</text>`,
    ),
    ...[0, 0.25, 0.5, 0.75, 1].map(
      (t) =>
        `<line x1="${x(t)}" y1="${top - 4}" x2="${x(t)}" y2="${h - 24}" stroke="#e3e3e3"/><text x="${x(t)}" y="${h - 10}" text-anchor="middle" fill="#555">${t.toFixed(2)}</text>`,
    ),
  ];
  classes.forEach((m, i) => {
    const y0 = top + i * group;
    parts.push(`<text x="${left - 6}" y="${y0 + (3 * bar) / 2 + 4}" text-anchor="end"><title>${esc(m.label)}</title>${esc(short(m.label))}</text>`);
    (['precision', 'recall', 'f1'] as const).forEach((name, k) => {
      parts.push(
        `<rect x="${left}" y="${y0 + k * bar}" width="${(plotW * m[name]).toFixed(1)}" height="${bar - 1}" fill="${BAR_COLORS[name]}"><title>${esc(m.label)} ${name}: ${fix(m[name])}</title></rect>`,
      );
    });
    parts.push(`<text x="${x(1) + 6}" y="${y0 + (3 * bar) / 2 + 4}" fill="#555">F1 ${fix(m.f1)}</text>`);
  });
  parts.push(`<line x1="${left}" y1="${top - 4}" x2="${left}" y2="${h - 24}" stroke="#444"/>`, '</svg>');
  return parts.join('\n');
}

/** A figure for one mistake; an unreadable image becomes a placeholder saying why, never an error. */
async function mistakeFigure(m: Mistake): Promise<string> {
  const thumb = await thumbnailHtml(m.file, m.sha256, m.path, THUMB);
  return `<figure><div class="thumb">${thumb}</div><figcaption><div class="path">${esc(m.path)}</div><div>true: <strong>${esc(m.label)}</strong> (p=${fix(m.trueProbability)})</div><div class="bad">predicted: <strong>${esc(m.predicted)}</strong> (p=${fix(m.probability)})</div></figcaption></figure>`;
}


function specLine(r: EvaluationReport): string {
  return `${r.codeSpec.backbone} ${r.codeSpec.layer}${r.codeSpec.pool ? `:${r.codeSpec.pool}` : ''}`;
}

/** White to dark blue (matplotlib's Blues, three stops), by a share in [0, 1]. */
function blues(share: number): string {
  const stops = [
    [247, 251, 255],
    [107, 174, 214],
    [8, 48, 107],
  ] as const;
  const t = Math.min(Math.max(share, 0), 1) * 2;
  const k = Math.min(Math.floor(t), 1);
  const f = t - k;
  const rgb = stops[k].map((a, i) => Math.round(a + (stops[k + 1][i] - a) * f));
  return `rgb(${rgb.join(',')})`;
}

function short(label: string): string {
  return label.length > MAX_LABEL_CHARS ? `${label.slice(0, MAX_LABEL_CHARS - 1)}…` : label;
}

/** Safe in HTML text, HTML attributes and XML (the SVGs are also rendered alone by librsvg). */

function fix(v: number): string {
  return v.toFixed(3);
}

