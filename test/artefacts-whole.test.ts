/**
 * Every artefact the tool writes is whole or absent, and every loader checks what it reads:
 * head folders replaced in one rename (a killed or disk-full re-train leaves the old head),
 * heads and keys checked against their own files, exports loaded back before success is
 * reported, a damaged generated model rebuilt, and what killed runs leave behind swept.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, statfsSync, writeFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, runCli } from './helpers/cli.ts';
import { makeDataset, writeNoisePng } from './helpers/make-dataset.ts';

let tmp: string;
let data: string;
let cache: string;
let key: string;
let head: string;
const TINY = ['--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'cpu'];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-whole-'));
  data = path.join(tmp, 'data');
  cache = path.join(tmp, 'cache');
  await makeDataset(data, { classes: ['a', 'b'], perClass: 8 });
  // Unpooled block2_pool: 1024-d codes, so a 4096-wide head takes a while to write.
  const r = await runCli(['extract', data, ...TINY, '--layer', 'block2_pool', '--cache', cache, '--json']);
  expect(r.code, r.stderr).toBe(0);
  key = (JSON.parse(r.stdout.trim().split('\n').pop()!) as { key: string }).key;
  head = path.join(tmp, 'head');
  const t = await runCli(['train-head', key, '--cache', cache, '--epochs', '2', '--hidden', '16', '--out', head]);
  expect(t.code, t.stderr).toBe(0);
}, 120_000);
afterAll(() => rm(tmp, { recursive: true, force: true }));

const headFiles = async (dir: string) => Object.fromEntries(await Promise.all((await readdir(dir)).sort().map(async (f) => [f, (await readFile(path.join(dir, f))).toString('base64')])));

/** Re-trains into `out` and SIGKILLs the process the moment its staging folder appears. */
function retrainAndKillMidSave(out: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(BIN, ['train-head', key, '--cache', cache, '--epochs', '1', '--hidden', '4096', '--out', out], { stdio: 'ignore' });
    const parent = path.dirname(out);
    const poll = setInterval(() => {
      if (readdirSync(parent).some((n) => n.startsWith(`${path.basename(out)}.staging.`))) child.kill('SIGKILL');
    }, 1);
    child.on('exit', (_code, signal) => {
      clearInterval(poll);
      resolve(signal === 'SIGKILL');
    });
  });
}

describe('head folders are whole or absent', () => {
  it('a re-train killed while saving leaves the old head exactly as it was, and evaluate still works', async () => {
    const before = await headFiles(head);
    let killed = false;
    for (let attempt = 0; attempt < 5 && !killed; attempt++) killed = await retrainAndKillMidSave(head);
    expect(killed, 'the kill never landed while the head was being saved').toBe(true);
    expect(await headFiles(head)).toEqual(before);
    const evaluated = await runCli(['evaluate', head, '--cache', cache]);
    expect(evaluated.code, evaluated.stderr).toBe(0);
    // The killed run's staging folder is swept by the next writer.
    const again = await runCli(['train-head', key, '--cache', cache, '--epochs', '1', '--hidden', '16', '--out', head]);
    expect(again.code, again.stderr).toBe(0);
    expect(readdirSync(tmp).filter((n) => n.startsWith('head.'))).toEqual([]);
  });

  it('a re-train that runs out of disk says so in one line and leaves the old head whole', async () => {
    const disk = path.join(tmp, 'disk');
    await mkdir(disk);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', disk], { stdio: 'pipe' });
    } catch {
      console.warn('skipped: cannot mount a tmpfs here (needs root)');
      return;
    }
    try {
      const small = path.join(disk, 'head');
      await cp(head, small, { recursive: true });
      const before = await headFiles(small);
      // 1024 × 4096 float32 weights: 16 MB, on a 2 MB disk.
      const r = await runCli(['train-head', key, '--cache', cache, '--epochs', '1', '--hidden', '4096', '--out', small]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n').pop()).toMatch(/^bottleneck: no space left on the disk holding .*disk\/head/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(await headFiles(small)).toEqual(before);
      expect(readdirSync(disk).sort()).toEqual(['head']);

      // --max-memory's scratch copy of the codes, on a disk with no room for it.
      const full = path.join(disk, 'cache');
      await cp(cache, full, { recursive: true });
      const free = statfsSync(disk).bavail * statfsSync(disk).bsize;
      writeFileSync(path.join(disk, 'filler'), Buffer.alloc(Math.max(0, free - 8192)));
      const mm = await runCli(['train-head', key, '--cache', full, '--epochs', '1', '--max-memory', '1KB', '--out', path.join(tmp, 'h-full')]);
      expect(mm.code).toBe(2);
      expect(mm.stderr.trim().split('\n').pop()).toMatch(/^bottleneck: no space left on the disk holding .*\.scratch/);
      expect(mm.stderr).not.toMatch(/^\s+at /m);
      expect(readdirSync(path.join(full, '.scratch'))).toEqual([]);
    } finally {
      execFileSync('umount', [disk]);
    }
  });

  it('evaluate, predict and export refuse a head whose weights disagree with head.json', async () => {
    const bad = path.join(tmp, 'bad-head');
    await cp(head, bad, { recursive: true });
    const other = path.join(tmp, 'other-head');
    const t = await runCli(['train-head', key, '--cache', cache, '--epochs', '1', '--hidden', '8', '--out', other]);
    expect(t.code, t.stderr).toBe(0);
    await cp(path.join(other, 'weights.safetensors'), path.join(bad, 'weights.safetensors'));
    for (const args of [['evaluate', bad, '--cache', cache], ['predict', '--head', bad, path.join(data, 'a')], ['export', bad, '--format', 'onnx', '--out', path.join(tmp, 'never')]]) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim()).toMatch(/weights\.safetensors: dense_0 is \[8,1024\] \+ \[8\], head\.json needs \[16,1024\] \+ \[16\]$/);
    }
    expect(existsSync(path.join(tmp, 'never'))).toBe(false);
  });
});

describe('keys are checked against their own files', () => {
  it('a deleted shard is named by readers and by cache verify', async () => {
    const copy = path.join(tmp, 'cache-deleted');
    await cp(cache, copy, { recursive: true });
    const shard = (await readdir(path.join(copy, key))).find((f) => f.startsWith('codes-'))!;
    await rm(path.join(copy, key, shard));
    const train = await runCli(['train-head', key, '--cache', copy, '--epochs', '1', '--out', path.join(tmp, 'h2')]);
    expect(train.code).toBe(2);
    expect(train.stderr.trim()).toMatch(new RegExp(`1 listed shard\\(s\\) are missing \\(${shard.replace('.', '\\.')}\\): run \`bottleneck cache repair`));
    const verify = await runCli(['cache', 'verify', '--cache', copy]);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toMatch(new RegExp(`${shard.replace('.', '\\.')}: listed, but the file is missing`));
    const repair = await runCli(['cache', 'repair', '--cache', copy, '--engine', 'onnx', '--device', 'cpu']);
    expect(repair.code, repair.stderr).toBe(0);
    expect((await runCli(['cache', 'verify', '--cache', copy])).code).toBe(0);
  });

  it('a spec.json edited by hand is named', async () => {
    const copy = path.join(tmp, 'cache-mixed');
    await cp(cache, copy, { recursive: true });
    const spec = JSON.parse(await readFile(path.join(copy, key, 'spec.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(path.join(copy, key, 'spec.json'), JSON.stringify({ ...spec, layer: 'block1_pool' }));
    const r = await runCli(['train-head', key, '--cache', copy, '--epochs', '1']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/spec\.json: describes key .*, not the folder's .*\(edited, or copied from another key\?\)$/);
  });
});

describe('exports are loaded back before they are reported', () => {
  it('writes a folder that loads, replaces an earlier export whole, and never leaves a half-written one', async () => {
    const out = path.join(tmp, 'exported');
    const first = await runCli(['export', head, '--format', 'onnx', '--out', out]);
    expect(first.code, first.stderr).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['model.onnx', 'preprocessing.json']);
    const again = await runCli(['export', head, '--format', 'tfjs', '--out', out]);
    expect(again.code, again.stderr).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['group1-shard1of1.bin', 'model.json', 'preprocessing.json']);
    expect(readdirSync(tmp).filter((n) => n.startsWith('exported.'))).toEqual([]);
  });
});

describe('a damaged generated model is rebuilt', () => {
  it('extract runs again after cache/onnx/*.onnx was cut short', async () => {
    const copy = path.join(tmp, 'cache-onnx');
    await cp(cache, copy, { recursive: true });
    for (const f of await readdir(path.join(copy, 'onnx'))) await truncate(path.join(copy, 'onnx', f), 100);
    await writeNoisePng(path.join(data, 'b', 'new.png'), 4242);
    try {
      const r = await runCli(['extract', data, ...TINY, '--layer', 'block2_pool', '--cache', copy, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toMatchObject({ new: 1, engine: 'onnx/cpu' });
    } finally {
      await rm(path.join(data, 'b', 'new.png'));
    }
  });
});

describe('interrupted runs leave nothing behind', () => {
  it('a killed --max-memory scratch folder and cache export staging folder are swept by the next run', async () => {
    // What a SIGKILLed run leaves: folders named with a pid that no longer runs.
    const deadPid = 2 ** 22 + 4321;
    const scratch = path.join(cache, '.scratch', `train-head.${deadPid}.0badc0de.tmp`);
    await mkdir(scratch, { recursive: true });
    await writeFile(path.join(scratch, 'train.f32'), Buffer.alloc(1024));
    const t = await runCli(['train-head', key, '--cache', cache, '--epochs', '1', '--max-memory', '1KB', '--out', path.join(tmp, 'h-mm')]);
    expect(t.code, t.stderr).toBe(0);
    expect(await readdir(path.join(cache, '.scratch'))).toEqual([]);

    const out = path.join(tmp, 'parquet');
    const staging = `${out}.staging.${deadPid}.0badc0de.tmp`;
    await mkdir(staging);
    const e = await runCli(['cache', 'export', key, '--cache', cache, '--out', out]);
    expect(e.code, e.stderr).toBe(0);
    expect(existsSync(staging)).toBe(false);
  });

  it('`extract --json | head -1` stops quietly and leaves no lock', async () => {
    const more = path.join(tmp, 'more');
    await makeDataset(more, { classes: ['a', 'b'], perClass: 40, seed: 77 });
    const piped = path.join(tmp, 'cache-piped');
    const stderr = await new Promise<string>((resolve) => {
      const child = spawn(BIN, ['extract', more, ...TINY, '--batch', '2', '--flush-seconds', '0', '--cache', piped, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      // Like `head -1`: read the first line, then close the pipe.
      child.stdout.once('data', () => child.stdout.destroy());
      child.on('exit', () => resolve(err));
    });
    expect(stderr).not.toMatch(/^\s+at /m);
    expect(stderr).not.toMatch(/EPIPE/);
    const keyDir = readdirSync(piped).find((d) => d.startsWith('tiny-vgg-random'))!;
    expect(readdirSync(path.join(piped, keyDir)).filter((f) => f.startsWith('.lock') || f.endsWith('.tmp'))).toEqual([]);
    const resumed = await runCli(['extract', more, ...TINY, '--cache', piped, '--json']);
    expect(resumed.code, resumed.stderr).toBe(0);
  });
});
