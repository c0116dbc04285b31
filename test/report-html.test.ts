import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CodeSpec } from '../src/cache/code-spec.ts';
import type { EvaluationReport } from '../src/evaluate/evaluation-report.ts';
import { computeMetrics, type ScoredRow } from '../src/evaluate/metrics.ts';
import { writeHtmlReport } from '../src/evaluate/report-html.ts';
import type { EpochStats } from '../src/train-head/fit.ts';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
const CLASSES = ['cat', 'dog', 'a<b&c', 'bird'] as const;

const codeSpec: CodeSpec = {
  backbone: 'vgg16',
  weights: 'f'.repeat(64),
  layer: 'block5_pool',
  pool: 'avg',
  shape: [512],
  dtype: 'float32',
  preprocessing: {
    size: [224, 224],
    resize: 'squash',
    interpolation: 'linear',
    background: [255, 255, 255],
    channels: 'bgr',
    mean: [103.939, 116.779, 123.68],
    std: [1, 1, 1],
  },
  augment: null,
};

const history: EpochStats[] = [1, 2, 3, 4, 5].map((epoch) => ({
  epoch,
  loss: 1.2 / epoch,
  acc: 0.5 + 0.08 * epoch,
  valLoss: 1.3 / epoch + 0.05,
  valAcc: 0.45 + 0.07 * epoch,
  seconds: 0.4,
}));

let tmp: string;
let report: EvaluationReport;
/** Mistakes whose image cannot be shown: a missing file and a null file. */
const UNSHOWABLE = 2;

/**
 * 12 real images of assorted formats and shapes (an RGBA PNG, a tall JPEG, a WebP) with made-up
 * probabilities: one image of each class (a different format each) is wrong, plus a mistake on a missing file, a
 * mistake with no file at all and a row whose label the head never saw.
 */
async function buildReport(root: string): Promise<EvaluationReport> {
  const rows: ScoredRow[] = [];
  const predicted: number[] = [];
  const colours = ['#d62728', '#2ca02c', '#9467bd', '#17becf'];
  for (const [c, label] of CLASSES.entries()) {
    for (let i = 0; i < 3; i++) {
      const ext = ['png', 'jpg', 'webp'][i];
      const rel = `${label}/img${i}.${ext}`;
      const file = path.join(root, 'images', `class${c}`, `img${i}.${ext}`);
      const [width, height] = [
        [200, 150],
        [90, 240],
        [64, 64],
      ][i];
      await sharp({ create: { width, height, channels: i === 0 ? 4 : 3, background: i === 0 ? { r: 30, g: 30, b: 200, alpha: 0.5 } : colours[c] } })
        .composite([{ input: Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><circle cx="${width / 2}" cy="${height / 2}" r="${Math.min(width, height) / 3}" fill="${colours[(c + 1) % 4]}"/></svg>`) }])
        .toFormat(ext === 'jpg' ? 'jpeg' : (ext as 'png' | 'webp'))
        .toFile(await ensureDir(file));
      rows.push({ path: rel, file, label, sha256: createHash('sha256').update(await readFile(file)).digest('hex') });
      predicted.push(i === c % 3 ? (c + 1) % CLASSES.length : c);
    }
  }
  rows.push({ path: 'dog/gone.jpg', file: path.join(root, 'images', 'does-not-exist.jpg'), label: 'dog', sha256: '' });
  predicted.push(0);
  rows.push({ path: 'bird/remote.jpg', file: null, label: 'bird', sha256: '' });
  predicted.push(2);
  rows.push({ path: 'zebra/z0.jpg', file: null, label: 'zebra', sha256: '' });
  predicted.push(0);

  const c = CLASSES.length;
  const probs = new Float32Array(rows.length * c);
  predicted.forEach((p, r) => {
    for (let j = 0; j < c; j++) probs[r * c + j] = j === p ? 0.55 + 0.03 * (r % 10) : (0.45 - 0.03 * (r % 10)) / (c - 1);
  });
  const metrics = computeMetrics(CLASSES, rows, probs);
  return { head: path.join(root, 'heads', 'vgg16-head'), cacheKey: 'vgg16-block5_pool-avg-0123456789abcdef', codeSpec, source: 'test split', classes: CLASSES, metrics, history, seconds: 1.25 };
}

async function ensureDir(file: string): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  return file;
}

function between(html: string, start: string, end: string): string {
  const from = html.indexOf(start);
  expect(from).toBeGreaterThanOrEqual(0);
  return html.slice(from, html.indexOf(end, from));
}

describe('writeHtmlReport', () => {
  let html: string;
  let out: { html: string; pngs: string[] };

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'report-html-'));
    report = await buildReport(tmp);
    out = await writeHtmlReport(path.join(tmp, 'report', 'nested'), report);
    html = await readFile(out.html, 'utf8');
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('the fixture has mistakes, an unseen label and every kind of unshowable image', () => {
    expect(report.metrics.unseenLabels).toEqual({ zebra: 1 });
    expect(report.metrics.mistakes.length).toBe(CLASSES.length + UNSHOWABLE);
    expect(report.metrics.mistakes.some((m) => m.file === null)).toBe(true);
  });

  it('is one self-contained file: nothing but the SVG namespace names a URL, nothing is fetched', () => {
    expect(html.replaceAll('http://www.w3.org/2000/svg', '')).not.toMatch(/https?:\/\//i);
    expect(html).not.toMatch(/<link\b|<script\b|@import|url\(/i);
    for (const [, src] of html.matchAll(/\bsrc="([^"]*)"/g)) expect(src).toMatch(/^data:image\/jpeg;base64,/);
    expect(html).toContain("default-src 'none'");
  });

  it('shows the header and headline numbers', () => {
    for (const s of ['vgg16-head', report.cacheKey, 'vgg16 / block5_pool / avg', 'test split', `${report.metrics.n} scored of ${report.metrics.n + 1}`, 'log loss', 'macro F1', 'weighted recall', 'top-3 accuracy']) {
      expect(html).toContain(s);
    }
    expect(html).toContain(`${(100 * report.metrics.accuracy).toFixed(1)}%`);
  });

  it('draws a classes² heatmap with the counts in the cells', () => {
    const svg = between(html, '<div class="plot" id="confusion">', '</svg>');
    expect(svg.match(/<rect class="cell"/g)?.length).toBe(CLASSES.length ** 2);
    const counts = [...svg.matchAll(/<text [^>]*font-size="\d+" fill="[^"]+">(\d+)<\/text>/g)].map((m) => Number(m[1]));
    expect(counts).toEqual(report.metrics.confusion.flat());
  });

  it('warns about labels the head never saw', () => {
    const box = between(html, 'id="unseen-labels"', '</div>');
    expect(box).toContain('never saw');
    expect(box).toContain('not scored');
    expect(box).toContain('<code>zebra</code>: 1');
  });

  it('escapes labels and paths from the data', () => {
    expect(html).not.toContain('a<b&c');
    expect(html).toContain('a&lt;b&amp;c');
    expect(html).toContain('<td>a&lt;b&amp;c</td>');
  });

  it('inlines a thumbnail per readable mistake and a placeholder with the reason for the rest', () => {
    const images = [...html.matchAll(/<img src="data:image\/jpeg;base64,([^"]+)" width="(\d+)" height="(\d+)"/g)];
    expect(images.length).toBe(report.metrics.mistakes.length - UNSHOWABLE);
    for (const [, , w, h] of images) expect(Math.max(Number(w), Number(h))).toBe(128);
    expect(html.match(/<div class="placeholder">/g)?.length).toBe(UNSHOWABLE);
    expect(html).toContain('image file not available');
    expect(html).toMatch(/<div class="placeholder">cannot read image: [^<]*does not exist/i);
    // Worst first, as metrics.mistakes orders them.
    const captions = [...html.matchAll(/<div class="path">([^<]*)<\/div>/g)].map((m) => m[1]);
    expect(captions).toEqual(report.metrics.mistakes.map((m) => m.path.replace('&', '&amp;').replace('<', '&lt;')));
  });

  it('writes PNGs of the confusion matrix, per-class bars and training curves that decode', async () => {
    expect(out.pngs.map((p) => path.basename(p))).toEqual(['confusion.png', 'per-class.png', 'history.png']);
    for (const file of out.pngs) {
      const meta = await sharp(file).metadata();
      expect(meta.format).toBe('png');
      expect(meta.width).toBeGreaterThan(200);
      expect(meta.height).toBeGreaterThan(150);
    }
  });

  it('omits the training curves with a note when there is no history', async () => {
    const dir = path.join(tmp, 'no-history');
    const result = await writeHtmlReport(dir, { ...report, history: [] });
    expect(result.pngs.map((p) => path.basename(p))).toEqual(['confusion.png', 'per-class.png']);
    expect(existsSync(path.join(dir, 'history.png'))).toBe(false);
    const text = await readFile(result.html, 'utf8');
    expect(text).toContain('No training history');
    expect(text).not.toContain('id="history"');
  });

  it.skipIf(!hasChromium)(`opens in Chromium with no errors, no requests and every image decoded${hasChromium ? '' : ` [skipped: ${CHROMIUM} is absent]`}`, async () => {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const errors: string[] = [];
      const requests: string[] = [];
      page.on('console', (msg) => {
        if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
      });
      page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
      page.on('request', (request) => {
        if (!/^(file|data):/.test(request.url())) requests.push(request.url());
      });
      await page.goto(pathToFileURL(out.html).href, { waitUntil: 'load' });

      const images = await page.$$eval('img', (imgs) => imgs.map((img) => ({ complete: img.complete, width: img.naturalWidth, height: img.naturalHeight })));
      expect(images.length).toBe(report.metrics.mistakes.length - UNSHOWABLE);
      for (const img of images) {
        expect(img.complete).toBe(true);
        expect(img.width).toBeGreaterThan(0);
        expect(img.height).toBeGreaterThan(0);
      }
      const heatmap = await page.locator('#confusion svg').boundingBox();
      expect(heatmap?.width).toBeGreaterThan(100);
      expect(heatmap?.height).toBeGreaterThan(100);
      expect(await page.locator('#confusion svg rect.cell').count()).toBe(CLASSES.length ** 2);
      expect(await page.locator('#unseen-labels').isVisible()).toBe(true);
      // The page must not be wider than the viewport: nothing overflows sideways.
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(1200);

      const shot = path.join(path.dirname(out.html), 'screenshot.png');
      await page.screenshot({ path: shot, fullPage: true });
      const meta = await sharp(shot).metadata();
      expect(meta.format).toBe('png');
      expect(meta.width).toBe(1200);
      expect(meta.height).toBeGreaterThan(1500);
      expect((await stat(shot)).size).toBeGreaterThan(50_000);
      if (process.env.REPORT_HTML_KEEP) await sharp(shot).toFile(process.env.REPORT_HTML_KEEP);

      expect(errors).toEqual([]);
      expect(requests).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
