/**
 * A full disk under the cache: extract stops with a one-line error that says so and names the
 * cache (no stack trace, no hang), the shards already there stay byte-identical, nothing
 * temporary or locked is left, `cache verify` passes, and once there is room again the next run
 * resumes from what was saved.
 *
 * The disk is a 1 MB tmpfs mounted for the test, so it needs root (or CAP_SYS_ADMIN) on Linux;
 * elsewhere the tests skip, saying so in their titles.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, statfsSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCodeTable } from '../src/cache/code-table.ts';
import { FeatureCache } from '../src/cache/feature-cache.ts';
import { makeDataset } from './helpers/make-dataset.ts';
import { REPO_ROOT } from './helpers/shared.ts';

const BIN = path.join(REPO_ROOT, 'bin', 'bottleneck');
const SMALL = 3 * 20;
const BIG = 4 * 75;

/** Whether this process can mount a tmpfs: tried once on a throwaway folder. */
function canMountTmpfs(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not root';
  let probe: string | undefined;
  try {
    probe = execFileSync('mktemp', ['-d', path.join(os.tmpdir(), 'bottleneck-mount-probe-XXXXXX')], { encoding: 'utf8' }).trim();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'pipe' });
    execFileSync('umount', [probe], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return `mount -t tmpfs failed: ${(err as Error).message.split('\n')[0]}`;
  } finally {
    if (probe) execFileSync('rm', ['-rf', probe]);
  }
}

const cannotMount = canMountTmpfs();
const SKIP_NOTE = cannotMount ? ` [skipped: needs a tmpfs mount (${cannotMount})]` : '';

let tmp: string;
let disk: string;
let cacheRoot: string;
let small: string;
let big: string;
let mounted = false;
/** The first run's files, byte for byte. */
const firstShards = new Map<string, Buffer>();

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly hung: boolean;
}

/** Runs the CLI; a run that takes over `timeoutMs` is killed and reported as hung. */
function cli(args: string[], timeoutMs = 90_000): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let hung = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, hung });
    });
  });
}

const extract = (data: string, ...more: string[]) =>
  cli(['extract', data, '--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'cpu', '--batch', '8', '--flush-seconds', '0', '--json', '--cache', cacheRoot, ...more]);

const keyDir = () => path.join(cacheRoot, readdirSync(cacheRoot).find((d) => d.startsWith('tiny-vgg-random'))!);

/** Every file under `dir`, relative, recursively. */
async function walk(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...(await walk(path.join(dir, e.name), path.join(rel, e.name))));
    else out.push(path.join(rel, e.name));
  }
  return out;
}

/** What a clean failure looks like: a one-line `bottleneck: …` message that names the full disk and the cache. */
function expectCleanDiskFullError(run: Run): void {
  expect(run.hung, 'extract hung on a full disk').toBe(false);
  expect(run.code).not.toBe(0);
  const lines = run.stderr.trim().split('\n');
  const stack = lines.filter((l) => /^\s+at .+:\d+:\d+\)?$/.test(l) || /^\s*(errno|code|syscall):/.test(l));
  expect(stack, `stderr has a stack trace or an error object dump:\n${run.stderr}`).toEqual([]);
  const last = lines.at(-1)!;
  expect(last, `stderr:\n${run.stderr}`).toMatch(/^bottleneck: /);
  expect(last).toMatch(/no space|ENOSPC/i);
  expect(last).toContain(cacheRoot);
}

async function expectFirstShardsIntact(): Promise<void> {
  for (const [file, bytes] of firstShards) {
    expect(existsSync(file), `${file} was removed`).toBe(true);
    expect((await readFile(file)).equals(bytes), `${path.basename(file)} changed`).toBe(true);
  }
}

async function expectNoLeftovers(): Promise<void> {
  const files = await walk(cacheRoot);
  expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
  expect(files.filter((f) => path.basename(f).startsWith('.lock'))).toEqual([]);
}

async function expectVerifyOk(): Promise<void> {
  const verify = await cli(['cache', 'verify', '--cache', cacheRoot]);
  expect(verify.code, `cache verify:\n${verify.stdout}${verify.stderr}`).toBe(0);
  expect(verify.stdout).toMatch(/^ok\s/m);
}

describe.skipIf(cannotMount !== undefined)(`extract on a full disk${SKIP_NOTE}`, () => {
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-full-disk-'));
    disk = path.join(tmp, 'disk');
    await mkdir(disk);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', disk]);
    mounted = true;
    cacheRoot = path.join(disk, 'cache');
    small = path.join(tmp, 'small');
    big = path.join(tmp, 'big');
    await makeDataset(small, { classes: ['a', 'b', 'c'], perClass: SMALL / 3, seed: 1 });
    await makeDataset(big, { classes: ['a', 'b', 'c', 'd'], perClass: BIG / 4, seed: 100_001 });
  });

  afterAll(async () => {
    if (mounted) {
      try {
        execFileSync('umount', [disk], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', disk], { stdio: 'pipe' });
      }
    }
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('a first dataset that fits is cached', async () => {
    const run = await extract(small);
    expect(run.code, run.stderr).toBe(0);
    for (const f of readdirSync(keyDir())) {
      if (/^codes-.*\.arrow$/.test(f)) firstShards.set(path.join(keyDir(), f), await readFile(path.join(keyDir(), f)));
    }
    expect(firstShards.size).toBeGreaterThan(1);
  });

  it('a dataset that does not fit stops with a one-line error naming the full disk and the cache, no stack trace', async () => {
    // About 35 KB a shard, 1.3 MB in all, with about 0.7 MB free: the disk fills mid-run.
    expectCleanDiskFullError(await extract(big));
  });

  it('afterwards the first shards are byte-identical, nothing temporary or locked is left, and cache verify passes', async () => {
    await expectFirstShardsIntact();
    await expectNoLeftovers();
    await expectVerifyOk();
  });

  let fullDiskRun: Run;
  it('with the disk entirely full (no room even for the lock file), the same clean error', async () => {
    try {
      writeFileSync(path.join(disk, 'filler'), Buffer.alloc(2 ** 21));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    expect(statfsSync(disk).bavail).toBe(0);
    fullDiskRun = await extract(big);
    expectCleanDiskFullError(fullDiskRun);
  });

  it('… and leaves no lock behind (an empty one would refuse the next run for 5 s), the first shards intact, cache verify ok', async () => {
    expect(fullDiskRun.hung).toBe(false);
    await expectFirstShardsIntact();
    await expectNoLeftovers();
    await expectVerifyOk();
  });

  it('once there is room, the next run resumes from what was saved: every row once, the first shards unchanged', async () => {
    await rm(path.join(disk, 'filler'), { force: true });
    execFileSync('mount', ['-o', 'remount,size=16m', disk]);
    // --wait: an empty lock left by the full-disk run (the bug the previous test reports) is taken over after 5 s.
    const run = await extract(big, '--wait', '10');
    expect(run.code, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout.trim().split('\n').pop()!) as { new: number; reused: number };
    expect(summary.reused).toBeGreaterThan(0); // the rows written before the disk filled
    expect(summary.new + summary.reused).toBe(BIG);

    const key = path.basename(keyDir());
    // Both datasets' rows: the small one extracted before the disk filled, the big one resumed.
    const cache = await FeatureCache.open(cacheRoot, key);
    const tables = await Promise.all((await cache.datasets()).map((d) => readCodeTable(cache, d)));
    expect(tables.reduce((n, t) => n + t.paths.length, 0)).toBe(SMALL + BIG);
    expect(new Set(tables.flatMap((t) => t.sha256)).size).toBe(SMALL + BIG);
    await expectFirstShardsIntact();
    await expectNoLeftovers();
    await expectVerifyOk();
  });
});
