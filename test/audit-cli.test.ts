/**
 * `bottleneck audit` as users run it, on a generated set with one planted problem of each kind
 * (test/helpers/audit-dataset.ts): each is found, the cleaned manifest drops what it should and
 * extract accepts it, and the HTML report opens in Debian's chromium with nothing fetched.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseCsv } from 'csv-parse/sync';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeAuditDataset, PLANTED } from './helpers/audit-dataset.ts';
import { runCli } from './helpers/cli.ts';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);

interface JsonMember {
  path: string;
  label: string;
  split: string | null;
}
interface JsonAudit {
  rows: number;
  contents: number;
  key: string;
  splitSource: string;
  exact: { members: JsonMember[]; leak: boolean; conflict: boolean; labels: string[] }[];
  near: { threshold: number; thresholdSource: string; pairs: { similarity: number; a: JsonMember[]; b: JsonMember[]; leak: boolean }[] } | { skipped: string };
  labels: { rule: string; thresholds: Record<string, number>; issues: { member: JsonMember; given: string; suggested: string; selfConfidence: number }[] };
}

let tmp: string;
let data: string;
let cache: string;
/** The planted near copy scores 0.997 here; the closest distinct images 0.973. */
const THRESHOLD = '0.99';
const common = () => ['--backbone', 'tiny-vgg-random', '--cache', cache, '--threshold', THRESHOLD];
let audit: JsonAudit;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-audit-'));
  data = path.join(tmp, 'data');
  cache = path.join(tmp, 'cache');
  await makeAuditDataset(data);
  const r = await runCli(['audit', data, ...common(), '--json']);
  expect(r.code, r.stderr).toBe(0);
  audit = JSON.parse(r.stdout) as JsonAudit;
}, 120_000);
afterAll(() => rm(tmp, { recursive: true, force: true }));

const paths = (members: readonly JsonMember[]) => members.map((m) => m.path).sort();

describe('bottleneck audit', () => {
  it('extracts first and audits every listed image', () => {
    expect(audit.rows).toBe(84);
    expect(audit.contents).toBe(82);
    expect(audit.splitSource).toBe('folders');
  });

  it('finds the exact duplicates: a leak across splits and a label conflict, nothing else', () => {
    expect(audit.exact).toHaveLength(2);
    const leak = audit.exact.find((g) => g.leak)!;
    expect(paths(leak.members)).toEqual([...PLANTED.exactLeak].sort());
    expect(leak.conflict).toBe(false);
    const conflict = audit.exact.find((g) => g.conflict)!;
    expect(paths(conflict.members)).toEqual([...PLANTED.conflict].sort());
    expect(conflict.labels).toEqual(['a', 'b']);
    expect(conflict.leak).toBe(false);
  });

  it('finds the resized, re-encoded copy as a near-duplicate leak, train side first, and no other pair', () => {
    if ('skipped' in audit.near) throw new Error(audit.near.skipped);
    expect(audit.near.threshold).toBe(Number(THRESHOLD));
    expect(audit.near.thresholdSource).toBe('--threshold');
    expect(audit.near.pairs).toHaveLength(1);
    const [pair] = audit.near.pairs;
    expect([pair.a[0].path, pair.b[0].path]).toEqual([...PLANTED.nearLeak]);
    expect(pair.leak).toBe(true);
    expect(pair.similarity).toBeGreaterThan(0.99);
  });

  it('ranks the planted mislabelled image and the conflicting copy first among label errors, and says the rule', () => {
    const top = audit.labels.issues.slice(0, 2).map((i) => i.member.path).sort();
    expect(top).toEqual([PLANTED.mislabelled, PLANTED.conflict[1]].sort());
    const wrong = audit.labels.issues.find((i) => i.member.path === PLANTED.mislabelled)!;
    expect([wrong.given, wrong.suggested]).toEqual(['b', 'a']);
    expect(wrong.selfConfidence).toBeLessThan(0.1);
    expect(audit.labels.rule).toMatch(/mean out-of-fold p\(j\)/);
    expect(Object.keys(audit.labels.thresholds)).toEqual(['a', 'b']);
  });

  it('prints a summary with the threshold and its source, leaks first, and the label-error rule', async () => {
    const r = await runCli(['audit', data, ...common()]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Exact duplicates .*: 2 group\(s\), 1 leak\(s\) across splits, 1 with conflicting labels/);
    expect(r.stdout).toMatch(/^ {2}LEAK train\/a\/a0\.png \[a, train\] {2}= {2}validation\/a\/copy-of-a0\.png \[a, validation\]$/m);
    expect(r.stdout).toMatch(/threshold: 0\.99, --threshold/);
    expect(r.stdout).toMatch(/LEAK 0\.99\d\d {2}train\/b\/b2\.png \[b, train\] {2}~ {2}validation\/b\/near-b2\.jpg/);
    expect(r.stdout).toMatch(/rule: confident learning/);
    expect(r.stdout).toMatch(/thresholds t_j: a 0\.\d{3}, b 0\.\d{3}/);
  });

  it('audits a cache key folder the same way, without extracting', async () => {
    const r = await runCli(['audit', path.join(cache, audit.key), ...common(), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/extract:/);
    const again = JSON.parse(r.stdout) as JsonAudit;
    expect(again.exact).toEqual(audit.exact);
    expect({ ...again.near, seconds: 0 }).toEqual({ ...audit.near, seconds: 0 });
    expect(again.labels.issues).toEqual(audit.labels.issues);
  });

  it('skips near-duplicates, saying why, for a cut with no calibrated threshold', async () => {
    const r = await runCli(['audit', data, '--backbone', 'tiny-vgg-random', '--cache', cache]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Near-duplicates: skipped: no calibrated threshold for tiny-vgg-random block2_pool with these weights; pass --threshold/);
    expect(r.stdout).toMatch(/Likely label errors/);
  });

  it('writes a cleaned manifest that drops the leaked copies and the conflict, and extract and audit accept it', async () => {
    const manifest = path.join(tmp, 'clean', 'clean.csv');
    const r = await runCli(['audit', data, ...common(), '--write-manifest', manifest]);
    expect(r.code, r.stderr).toBe(0);
    const rows = parseCsv(await readFile(manifest), { columns: true }) as { path: string; label: string; split: string }[];
    const listed = new Set(rows.map((row) => path.relative(data, path.resolve(path.dirname(manifest), row.path)).split(path.sep).join('/')));
    for (const gone of [PLANTED.exactLeak[1], ...PLANTED.conflict, PLANTED.nearLeak[1]]) expect(listed.has(gone), gone).toBe(false);
    for (const kept of [PLANTED.exactLeak[0], PLANTED.nearLeak[0], PLANTED.mislabelled]) expect(listed.has(kept), kept).toBe(true);
    expect(rows).toHaveLength(84 - 4);
    expect(rows.find((row) => row.path.endsWith('b/b3.png'))?.split).toBe('train');
    expect(r.stderr).toMatch(/80 rows kept, 4 dropped/);
    expect(r.stderr).toMatch(/dropped validation\/b\/near-b2\.jpg: leak: near-duplicate \(cosine 0\.99\d\d\) of train image train\/b\/b2\.png/);

    const extract = await runCli(['extract', manifest, '--backbone', 'tiny-vgg-random', '--cache', cache, '--json']);
    expect(extract.code, extract.stderr).toBe(0);
    expect(JSON.parse(extract.stdout.trim().split('\n').at(-1)!)).toMatchObject({ event: 'summary', images: 80, new: 0, failed: 0 });
    const clean = await runCli(['audit', manifest, ...common(), '--json']);
    expect(clean.code, clean.stderr).toBe(0);
    const after = JSON.parse(clean.stdout) as JsonAudit;
    expect(after.rows).toBe(80);
    expect(after.exact).toEqual([]);
    expect('skipped' in after.near ? after.near.skipped : after.near.pairs).toEqual([]);
  });

  it('drops the suspected label errors too with --drop-mislabelled', async () => {
    const manifest = path.join(tmp, 'clean', 'strict.csv');
    const r = await runCli(['audit', data, ...common(), '--write-manifest', manifest, '--drop-mislabelled']);
    expect(r.code, r.stderr).toBe(0);
    const text = await readFile(manifest, 'utf8');
    expect(text).not.toMatch(/wrong\.png/);
    const dropped = new Set<string>([PLANTED.exactLeak[1], ...PLANTED.conflict, PLANTED.nearLeak[1], ...audit.labels.issues.map((i) => i.member.path)]);
    expect(text.trim().split('\n')).toHaveLength(1 + 84 - dropped.size);
  });

  it('fails in one line with exit code 2 on bad input', async () => {
    const missing = await runCli(['audit', path.join(tmp, 'nowhere'), '--backbone', 'tiny-vgg-random', '--cache', cache]);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim()).toMatch(/^bottleneck: .*nowhere: no such folder or manifest$/);
    const folds = await runCli(['audit', data, ...common(), '--folds', '1']);
    expect(folds.code).toBe(2);
    expect(folds.stderr.trim()).toBe('bottleneck: --folds 1: must be a whole number ≥ 2');
    const threshold = await runCli(['audit', data, '--backbone', 'tiny-vgg-random', '--cache', cache, '--threshold', '1.5']);
    expect(threshold.code).toBe(2);
    expect(threshold.stderr.trim().split('\n').at(-1)).toBe('bottleneck: --threshold 1.5: must be a number in (0, 1]');
  });

  it.skipIf(!hasChromium)(`writes an HTML report that opens in chromium with thumbnails of every finding and no requests${hasChromium ? '' : ` [skipped: ${CHROMIUM} is absent]`}`, async () => {
    const dir = path.join(tmp, 'report');
    const r = await runCli(['audit', data, ...common(), '--report', dir]);
    expect(r.code, r.stderr).toBe(0);
    const file = path.join(dir, 'audit.html');
    const html = await readFile(file, 'utf8');
    expect(html).toContain("default-src 'none'");
    expect(html).not.toMatch(/<link\b|<script\b|@import|url\(/i);
    for (const [, src] of html.matchAll(/\bsrc="([^"]*)"/g)) expect(src).toMatch(/^data:image\/jpeg;base64,/);

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const errors: string[] = [];
      const requests: string[] = [];
      page.on('console', (msg) => {
        if (msg.type() === 'error') errors.push(msg.text());
      });
      page.on('pageerror', (error) => errors.push(error.message));
      page.on('request', (request) => {
        if (!/^(file|data):/.test(request.url())) requests.push(request.url());
      });
      await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
      expect(await page.locator('#exact figure').count()).toBe(2);
      expect(await page.locator('#near figure').count()).toBe(1);
      expect(await page.locator('#near figure.leak img').count()).toBe(2);
      expect(await page.locator('#labels figure').count()).toBe(audit.labels.issues.length);
      const images = await page.$$eval('img', (imgs) => imgs.map((img) => ({ complete: img.complete, width: img.naturalWidth })));
      expect(images.length).toBe(2 + 2 + audit.labels.issues.length);
      for (const img of images) {
        expect(img.complete).toBe(true);
        expect(img.width).toBeGreaterThan(0);
      }
      expect(await page.locator('#labels').innerText()).toContain('wrong.png');
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(1200);
      expect(errors).toEqual([]);
      expect(requests).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
