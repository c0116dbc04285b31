/**
 * Bounded and discreet with hostile files: every read has a hard byte cap that does not trust
 * the size a file reports, a long extract stops promptly on SIGTERM (saving what it did), and
 * nothing the tool prints or records quotes a file that is not an image, nor shows an image
 * other than the one extract accepted.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readErrorsTable } from '../src/cache/errors-table.ts';
import type { CodeSpec } from '../src/cache/code-spec.ts';
import { readImageFile } from '../src/extract/decode-image.ts';
import { computeMetrics } from '../src/evaluate/metrics.ts';
import { writeHtmlReport } from '../src/evaluate/report-html.ts';
import { BIN, runCli } from './helpers/cli.ts';
import { makeDataset, writeNoisePng } from './helpers/make-dataset.ts';

let tmp: string;
const TINY = ['--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'cpu'];
const SECRET = 'hunter2-do-not-print-me';

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-bounded-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('reads are capped by bytes read, not by the size a file reports', () => {
  it('a /proc file reports 0 bytes and still cannot be read past the cap', async () => {
    expect(statSync('/proc/self/environ').size).toBe(0);
    await expect(readImageFile('/proc/self/environ', { maxBytes: 16 })).rejects.toThrow(/is over the 16 bytes limit for one image/);
  });

  it('extract skips devices, pseudo-files and FIFOs listed in a manifest, quickly, and quotes none of them', async () => {
    const data = path.join(tmp, 'hostile');
    await makeDataset(data, { classes: ['a', 'b'], perClass: 2 });
    await symlink('/dev/zero', path.join(data, 'a', 'zero.jpg'));
    execFileSync('mkfifo', [path.join(data, 'b', 'pipe.png')]);
    await writeFile(path.join(data, 'b', 'dotenv.jpg'), `API_KEY=${SECRET}\n`);
    const manifest = path.join(data, 'list.csv');
    const rows = ['a/img0000.png,a', 'a/img0001.png,a', 'b/img0000.png,b', 'b/img0001.png,b', 'a/zero.jpg,a', 'b/pipe.png,b', 'b/dotenv.jpg,b', '/dev/urandom,a', '/proc/self/environ,b'];
    await writeFile(manifest, ['path,label', ...rows].join('\n'));
    const started = performance.now();
    const r = await runCli(['extract', manifest, ...TINY, '--cache', path.join(tmp, 'cache'), '--json'], { env: { MY_TOKEN: SECRET } });
    expect(performance.now() - started).toBeLessThan(60_000);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as { new: number; failed: number; path: string };
    expect(summary).toMatchObject({ new: 4, failed: 5 });
    const errors = await readErrorsTable(summary.path);
    const reasons = Object.fromEntries(errors.map((e) => [e.path, e.reason]));
    expect(reasons).toMatchObject({ 'a/zero.jpg': 'not-a-file', 'b/pipe.png': 'not-a-file', 'b/dotenv.jpg': 'not-an-image' });
    expect(['not-a-file', 'too-large', 'not-an-image']).toContain(reasons['../../../proc/self/environ'] ?? reasons[path.relative(data, '/proc/self/environ')]);
    const everything = `${r.stdout}${r.stderr}${JSON.stringify(errors)}${await readFile(path.join(summary.path, 'errors.arrow'), 'latin1')}`;
    expect(everything).not.toContain(SECRET);
    expect(everything).not.toContain('API_KEY');
  });
});

describe('a long extract stops promptly when asked', () => {
  it('SIGTERM mid-run: saved, unlocked and exited within seconds; the next run resumes', async () => {
    const data = path.join(tmp, 'many');
    await makeDataset(data, { classes: ['a', 'b'], perClass: 150, seed: 3 });
    const cache = path.join(tmp, 'cache-term');
    const args = ['extract', data, ...TINY, '--batch', '1', '--flush-seconds', '0', '--cache', cache, '--json'];
    const { code, stderr, seconds } = await new Promise<{ code: number | null; stderr: string; seconds: number }>((resolve) => {
      const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      let sentAt = 0;
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout.on('data', (d: Buffer) => {
        if (!sentAt && d.toString().includes('"event":"progress"')) {
          sentAt = performance.now();
          child.kill('SIGTERM');
        }
      });
      child.on('exit', (c) => resolve({ code: c, stderr: err, seconds: (performance.now() - sentAt) / 1000 }));
    });
    expect(code, stderr).toBe(130);
    expect(seconds).toBeLessThan(10);
    expect(stderr).toMatch(/interrupted: saving what is done/);
    const key = readdirSync(cache).find((d) => d.startsWith('tiny-vgg-random'))!;
    expect(readdirSync(path.join(cache, key)).filter((f) => f.startsWith('.lock') || f.endsWith('.tmp'))).toEqual([]);
    const resumed = await runCli(args);
    expect(resumed.code, resumed.stderr).toBe(0);
    const summary = JSON.parse(resumed.stdout.trim().split('\n').pop()!) as { new: number; reused: number };
    expect(summary.reused).toBeGreaterThan(0);
    expect(summary.new + summary.reused).toBe(300);
  });
});

describe('evaluate --report shows only the images extract accepted', () => {
  it('a file replaced since its code was extracted is not inlined', async () => {
    const dir = path.join(tmp, 'report-data');
    const kept = path.join(dir, 'kept.png');
    const swapped = path.join(dir, 'swapped.png');
    await writeNoisePng(kept, 1, 64);
    await writeNoisePng(swapped, 2, 64);
    const sha = async (f: string) => createHash('sha256').update(await readFile(f)).digest('hex');
    const rows = [
      { path: 'kept.png', file: kept, label: 'a', sha256: await sha(kept) },
      { path: 'swapped.png', file: swapped, label: 'a', sha256: await sha(swapped) },
    ];
    // After extraction the file was replaced: by a secret, then by another picture.
    await writeFile(swapped, `PASSWORD=${SECRET}\n`);
    const metrics = computeMetrics(['a', 'b'], rows, Float32Array.from([0.2, 0.8, 0.1, 0.9]));
    const spec = { backbone: 'x', layer: 'y', pool: null, preprocessing: { size: [8, 8] } } as unknown as CodeSpec;
    const report = { head: 'h', cacheKey: 'k', codeSpec: spec, source: 's', classes: ['a', 'b'], metrics, history: [], seconds: 0 };
    const html = await readFile((await writeHtmlReport(path.join(tmp, 'report'), report)).html, 'utf8');
    expect([...html.matchAll(/<img src="data:image\/jpeg/g)]).toHaveLength(1);
    expect(html).toContain('the file has changed since its code was extracted');
    expect(html).not.toContain(SECRET);
    await writeNoisePng(swapped, 3, 64);
    const again = await readFile((await writeHtmlReport(path.join(tmp, 'report2'), report)).html, 'utf8');
    expect([...again.matchAll(/<img src="data:image\/jpeg/g)]).toHaveLength(1);
  });
});
