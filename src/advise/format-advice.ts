/**
 * The terminal form of an Advice: the case and what to run first, then every number the
 * decision used next to the threshold it was compared with.
 */
import { BORDERLINE_FACTOR, type CountStats } from './dataset-size.ts';
import type { Advice, AdviceCommand } from './transfer-case.ts';

const f2 = (v: number) => v.toFixed(2);
const pct = (v: number) => `${Math.round(v * 100)}%`;
const num = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1));

export function formatAdvice(a: Advice): string {
  const out: string[] = [];
  const { size, similarity: sim } = a;
  const m = sim.metrics;
  const t = sim.thresholds;

  out.push(`${a.dataset} with ${a.backbone}: case ${a.case} of 4`);
  out.push(`  ${a.title}`);

  out.push('', `Size: ${size.classes} classes, ${size.all.total} images${size.splits.length ? ` (${size.splits.map((s) => `${s.split} ${s.stats.total}`).join(', ')})` : ''}`);
  const rows: [string, CountStats][] = size.splits.length ? size.splits.map((s) => [s.split, s.stats]) : [['all', size.all]];
  for (const [name, st] of rows) out.push(`  ${`${name}:`.padEnd(12)} per class min ${num(st.min)}, median ${num(st.median)}, max ${num(st.max)}`);
  out.push(
    `  → ${size.verdict}: median ${num(size.perClass)} ${size.basis === 'train' ? 'training images' : 'images'} per class ${size.verdict === 'small' ? '<' : '≥'} ${size.threshold}` +
      (size.borderline ? ` (borderline, within ×${BORDERLINE_FACTOR})` : ''),
  );
  out.push(`    (below ~${size.threshold} images per class, fine-tuning conv blocks tends to memorise the data; a head on frozen codes has far fewer weights to fit)`);

  const sampled = Object.values(sim.sample.perClass);
  out.push(
    '',
    `Similarity to ImageNet: ${a.backbone}'s own ${m.outputs}-way classifier (${sim.classifier}) on ${m.images} images` +
      ` (${Math.min(...sampled) === Math.max(...sampled) ? Math.min(...sampled) : `${Math.min(...sampled)}–${Math.max(...sampled)}`} per class, chosen by path hash, seed ${sim.sample.seed})`,
  );
  out.push(`  mean top-1 probability     ${f2(m.meanTop1)}   (for context; moves with the entropy)`);
  out.push(`  mean normalised entropy    ${f2(m.meanEntropy)}   ${sim.passes.entropy ? 'ok' : 'too flat'}: similar needs ≤ ${f2(t.maxEntropy)}`);
  if (m.classOverlap === null) out.push('  class overlap              n/a    only one class was sampled');
  else {
    out.push(`  class overlap              ${f2(m.classOverlap)}   ${sim.passes.overlap ? 'ok' : 'too alike'}: similar needs ≤ ${f2(t.maxOverlap)}`);
    out.push(
      `    (how alike the ImageNet predictions of two images of different classes are, 0–1${m.withinOverlap === null ? '' : `; ${f2(m.withinOverlap)} within a class`}:` +
        ' on unfamiliar images the network sees the same few catch-all classes everywhere)',
    );
  }
  out.push(`  → ${sim.verdict}${sim.borderline ? ' (borderline: a number is within 0.03 of its threshold)' : ''}`);
  if (sim.sourceSize) {
    out.push(`  images: median ${sim.sourceSize.width}×${sim.sourceSize.height}, network input ${sim.inputSize.width}×${sim.inputSize.height}`);
  }
  if (sim.perClass.length) {
    out.push('  what the network sees, per class (ImageNet top-1, share of sampled images):');
    const shown = sim.perClass.slice(0, 12);
    const width = Math.max(...shown.map((c) => c.label.length));
    for (const c of shown) out.push(`    ${c.label.padEnd(width)}  ${c.top.map((x) => `${x.imagenet} ${pct(x.share)}`).join(', ')}`);
    if (sim.perClass.length > shown.length) out.push(`    … and ${sim.perClass.length - shown.length} more classes`);
  }

  out.push('', 'Why:');
  for (const w of a.why) out.push(`  ${w}`);
  out.push(`  case ${a.case}: ${size.verdict} data, ${sim.verdict} ${sim.verdict === 'similar' ? 'to' : 'from'} ImageNet`);

  out.push('', 'Run:');
  out.push(...commandLines(a.commands, true));
  if (a.alternatives.length) out.push('', 'Also worth a try:', ...commandLines(a.alternatives, false));
  if (a.notes.length) {
    out.push('', 'Notes:');
    for (const n of a.notes) out.push(`  - ${n}`);
  }
  if ([...a.commands, ...a.alternatives].some((c) => c.upcoming)) out.push('', '(*) fine-tune is being added alongside advise; if your bottleneck lacks it, see bottleneck --help');
  return out.join('\n');
}

function commandLines(commands: readonly AdviceCommand[], numbered: boolean): string[] {
  return commands.flatMap((c, i) => [`  ${numbered ? `${i + 1}. ` : '- '}${c.command}${c.upcoming ? '   (*)' : ''}`, `       ${c.why}`]);
}
