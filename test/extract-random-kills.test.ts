/**
 * The CI cut of bench/faults.ts: SIGKILL extract at 5 seeded random points, resume, and end with
 * exactly the rows of a clean run. Every kill is anchored to something the test observes, never
 * to a wall-clock offset from the spawn (which a fast machine finishes before): two in start-up
 * (once the lock file exists; once the engine has started), three mid-extraction (after a random
 * number of this run's new shards, up to half of those still to come), each plus a random
 * 0-20 ms, so often mid-write. So every kill lands while work remains. Complements
 * extract-crash.test.ts, whose kills land at fixed shard counts. BOTTLENECK_FAULTS_SEED=N
 * replays another sequence of kill points.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentId, rowCount } from '../src/cache/code-rows.ts';
import { decodeShard } from '../src/cache/shard-format.ts';
import { makeDataset } from './helpers/make-dataset.ts';
import { readRows } from './helpers/read-codes.ts';
import { REPO_ROOT } from './helpers/shared.ts';
import { mulberry32 } from '../src/util/numbers.ts';

const BIN = path.join(REPO_ROOT, 'bin', 'bottleneck');
const IMAGES = 60;
const SEED = Number(process.env.BOTTLENECK_FAULTS_SEED ?? 1);
let tmp: string;
let data: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-kills-'));
  data = path.join(tmp, 'data');
  await makeDataset(data, { classes: ['a', 'b', 'c'], perClass: IMAGES / 3, seed: 7 });
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

const args = (cacheRoot: string) => ['extract', data, '--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'cpu', '--batch', '2', '--flush-seconds', '0', '--json', '--cache', cacheRoot];

const shardFiles = (cacheRoot: string): string[] => {
  if (!existsSync(cacheRoot)) return [];
  return readdirSync(cacheRoot)
    .filter((d) => d.startsWith('tiny-vgg-random'))
    .flatMap((d) => readdirSync(path.join(cacheRoot, d)).filter((f) => /^codes-.*\.arrow$/.test(f)).map((f) => path.join(cacheRoot, d, f)));
};

interface Attempt {
  readonly killed: boolean;
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

type Kill = { readonly anchor: 'lock' | 'engine'; readonly delayMs: number } | { readonly anchor: 'shard'; readonly shards: number; readonly delayMs: number };

/** Runs extract; with `kill`, SIGKILLs it `delayMs` after its anchor: the lock file, the engine's start, or its `shards`-th new shard. */
function run(cacheRoot: string, kill?: Kill): Promise<Attempt> {
  return new Promise((resolve) => {
    const before = new Set(shardFiles(cacheRoot));
    const child = spawn(BIN, args(cacheRoot), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    let killed = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number) => (timer ??= setTimeout(() => (killed = child.kill('SIGKILL')), ms));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (kill?.anchor === 'engine' && /^engine: /m.test(stderr)) arm(kill.delayMs);
    });
    const poll = setInterval(() => {
      if (!kill || timer) return;
      if (kill.anchor === 'lock' && lockFiles(cacheRoot).length > 0) arm(kill.delayMs);
      if (kill.anchor === 'shard' && shardFiles(cacheRoot).filter((f) => !before.has(f)).length >= kill.shards) arm(kill.delayMs);
    }, 2);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      clearInterval(poll);
      resolve({ killed: killed && signal === 'SIGKILL', code, stdout, stderr });
    });
  });
}

const lockFiles = (cacheRoot: string): string[] =>
  existsSync(cacheRoot) ? readdirSync(cacheRoot).filter((d) => d.startsWith('tiny-vgg-random')).flatMap((d) => readdirSync(path.join(cacheRoot, d)).filter((f) => f.startsWith('.lock'))) : [];

/** Rows on disk right now, shard by shard: every shard must decode, no content twice. */
async function rowsOnDisk(cacheRoot: string): Promise<{ rows: number; unique: number }> {
  const ids = new Set<string>();
  let rows = 0;
  for (const file of shardFiles(cacheRoot)) {
    const { rows: r } = decodeShard(await readFile(file), file);
    for (let i = 0; i < rowCount(r); i++, rows++) ids.add(contentId(r.sha256[i], r.view?.[i] ?? 0));
  }
  return { rows, unique: ids.size };
}

async function codesByPath(cacheRoot: string): Promise<{ count: number; byPath: Map<string, string> }> {
  const key = readdirSync(cacheRoot).find((d) => d.startsWith('tiny-vgg-random'))!;
  const rows = await readRows(cacheRoot, key);
  const byPath = new Map<string, string>();
  rows.paths.forEach((p, i) => byPath.set(p, `${rows.sha256[i]} ${rows.labels[i]} ${Buffer.from(rows.codes.slice(i * rows.dim, (i + 1) * rows.dim).buffer).toString('hex')}`));
  return { count: rows.paths.length, byPath };
}

describe('extract survives SIGKILL at random points', () => {
  it(`resumes after 5 kills at seeded random points (seed ${SEED}), ending with exactly the rows of a clean run`, async () => {
    const clean = path.join(tmp, 'clean');
    const first = await run(clean);
    expect(first.code, first.stderr).toBe(0);
    const expected = await codesByPath(clean);
    expect(expected.count).toBe(IMAGES);

    const random = mulberry32(SEED);
    const killed = path.join(tmp, 'killed');
    const log: string[] = [];
    let kills = 0;
    let rows = 0;
    for (let i = 0; i < 5; i++) {
      // Kills 2 and 4 in start-up (after the lock: sweep, index, ONNX model; after the engine's
      // start: the first batches), the others mid-extraction.
      const toCome = (IMAGES - rows) / 2; // shards, at --batch 2
      const delayMs = Math.round(random() * 20);
      const kill: Kill =
        i === 1 ? { anchor: 'lock', delayMs } : i === 3 ? { anchor: 'engine', delayMs } : { anchor: 'shard', shards: 1 + Math.floor(random() * Math.max(1, toCome / 2)), delayMs };
      const label = kill.anchor === 'shard' ? `shard ${kill.shards} + ${kill.delayMs} ms` : `${kill.anchor} + ${kill.delayMs} ms`;
      const attempt = await run(killed, kill);
      // Every kill lands while work remains: a finished run (or a lock refusal, a crash) is a failure.
      expect(attempt.killed, `${label}: exit ${attempt.code}\n${attempt.stderr}`).toBe(true);
      kills++;
      const onDisk = await rowsOnDisk(killed);
      expect(onDisk.unique, 'a row stored twice after a kill').toBe(onDisk.rows);
      rows = onDisk.rows;
      log.push(`${label}: ${attempt.killed ? 'killed' : 'finished'}, ${onDisk.rows} rows on disk`);
    }
    expect(kills, log.join('\n')).toBe(5);

    const resumed = await run(killed);
    expect(resumed.code, resumed.stderr).toBe(0);
    const actual = await codesByPath(killed);
    expect(actual.count).toBe(IMAGES); // each row once
    expect(actual.byPath).toEqual(expected.byPath); // the same rows, byte-identical codes
    const keyDir = path.dirname(shardFiles(killed)[0]);
    expect(readdirSync(keyDir).filter((f) => f.endsWith('.tmp') || f.startsWith('.lock'))).toEqual([]);
  }, 60_000);
});
