/**
 * Training curves as a small, dependency-free SVG (loss and accuracy side by side, train and
 * validation), rendered to PNG by sharp's SVG reader.
 */
import sharp from 'sharp';
import type { EpochStats } from './fit.ts';

const W = 360;
const H = 240;
const PAD = { left: 48, right: 12, top: 28, bottom: 36 };
const COLORS = { train: '#1f77b4', validation: '#ff7f0e' } as const;

interface Series {
  readonly name: keyof typeof COLORS;
  readonly values: readonly (number | null)[];
}

export function historyPlotSvg(history: readonly EpochStats[], title: string): string {
  const loss = panel('loss', [
    { name: 'train', values: history.map((h) => h.loss) },
    { name: 'validation', values: history.map((h) => h.valLoss) },
  ]);
  const acc = panel('accuracy', [
    { name: 'train', values: history.map((h) => h.acc) },
    { name: 'validation', values: history.map((h) => h.valAcc) },
  ]);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H + 24}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W}" y="16" text-anchor="middle" font-size="13">${escapeXml(title)}</text>`,
    `<g transform="translate(0,24)">${loss}</g>`,
    `<g transform="translate(${W},24)">${acc}</g>`,
    `</svg>`,
  ].join('\n');
}

function panel(label: string, series: readonly Series[]): string {
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  const epochs = Math.max(...series.map((s) => s.values.length), 1);
  let lo = Math.min(...all, label === 'accuracy' ? 1 : Infinity);
  let hi = Math.max(...all, label === 'accuracy' ? 0 : -Infinity);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  if (hi - lo < 1e-9) [lo, hi] = [lo - 0.5, hi + 0.5];
  const x = (i: number) => PAD.left + ((W - PAD.left - PAD.right) * i) / Math.max(epochs - 1, 1);
  const y = (v: number) => PAD.top + ((H - PAD.top - PAD.bottom) * (hi - v)) / (hi - lo);
  const ticks = [lo, (lo + hi) / 2, hi];
  const parts = [
    `<text x="${PAD.left}" y="16">${label}</text>`,
    `<line x1="${PAD.left}" y1="${H - PAD.bottom}" x2="${W - PAD.right}" y2="${H - PAD.bottom}" stroke="#444"/>`,
    `<line x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${H - PAD.bottom}" stroke="#444"/>`,
    ...ticks.map((t) => `<text x="${PAD.left - 4}" y="${y(t) + 4}" text-anchor="end">${t.toFixed(3)}</text>`),
    `<text x="${(W + PAD.left) / 2}" y="${H - 8}" text-anchor="middle">epoch (1–${epochs})</text>`,
  ];
  series.forEach((s, k) => {
    const points = s.values.flatMap((v, i) => (v === null || !Number.isFinite(v) ? [] : [`${x(i).toFixed(1)},${y(v).toFixed(1)}`]));
    if (points.length > 0) parts.push(`<polyline fill="none" stroke="${COLORS[s.name]}" stroke-width="1.5" points="${points.join(' ')}"/>`);
    // The legend sits in the header row, beside the panel label: inside the plot it hid the curves.
    parts.push(`<text x="${W - PAD.right - 150 + 70 * k}" y="16" fill="${COLORS[s.name]}">■ ${s.name}</text>`);
  });
  return parts.join('\n');
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

export async function renderPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg), { density: 144 }).png().toBuffer();
}
