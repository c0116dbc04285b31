/** The terminal form of an evaluation: headline numbers, per-class table, confusion matrix, worst mistakes. */
import type { EvaluationReport } from './evaluation-report.ts';

const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
const f3 = (v: number) => v.toFixed(3);

export function formatReport(report: EvaluationReport, opts: { readonly mistakes?: number } = {}): string {
  const { metrics: m, classes } = report;
  const out: string[] = [];
  out.push(`${report.head} on ${report.source}: ${m.n} images, ${classes.length} classes`);
  const topK = Object.entries(m.topK).map(([k, v]) => `top-${k} ${pct(v)}`);
  out.push(['accuracy ' + pct(m.accuracy), ...topK, `log loss ${m.logLoss.toFixed(4)}`].join('   '));
  for (const [label, count] of Object.entries(m.unseenLabels)) {
    out.push(`warning: ${count} image(s) labelled '${label}', a class the head never learnt (it knows ${classes.join(', ')}): not scored`);
  }

  out.push('');
  const width = Math.max(12, ...classes.map((c) => c.length));
  const row = (name: string, p: string, r: string, f: string, s: string) =>
    `${name.padEnd(width)}  ${p.padStart(9)}  ${r.padStart(6)}  ${f.padStart(6)}  ${s.padStart(7)}`;
  out.push(row('', 'precision', 'recall', 'f1', 'support'));
  for (const c of m.classes) out.push(row(c.label, f3(c.precision), f3(c.recall), f3(c.f1), String(c.support)));
  out.push(row('macro avg', f3(m.macro.precision), f3(m.macro.recall), f3(m.macro.f1), String(m.n)));
  out.push(row('weighted avg', f3(m.weighted.precision), f3(m.weighted.recall), f3(m.weighted.f1), String(m.n)));

  out.push('', 'confusion matrix (rows: true class, columns: predicted)');
  const cell = Math.max(5, ...m.confusion.flat().map((v) => String(v).length + 1), ...classes.map((c) => Math.min(c.length, 10) + 1));
  out.push(`${''.padEnd(width)}${classes.map((c) => c.slice(0, 10).padStart(cell)).join('')}`);
  m.confusion.forEach((counts, i) => out.push(`${classes[i].padEnd(width)}${counts.map((v) => String(v).padStart(cell)).join('')}`));

  const shown = m.mistakes.slice(0, opts.mistakes ?? 10);
  if (shown.length > 0) {
    out.push('', `worst mistakes (${shown.length} of ${m.mistakes.length}, lowest probability of the true class first)`);
    for (const x of shown) out.push(`  ${x.path}  ${x.label} → ${x.predicted} (${pct(x.probability)}; p(${x.label}) ${pct(x.trueProbability)})`);
  }
  out.push('', `${report.seconds.toFixed(1)} s`);
  return out.join('\n');
}
