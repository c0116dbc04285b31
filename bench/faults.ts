/**
 * bench/faults: SIGKILL `bottleneck extract` at random points, again and again, resuming each
 * time, and check that the end state is exactly that of one clean run: the same rows, each
 * once, byte-identical codes; no temporary file, no partial shard and no lock left behind.
 *
 *   node --import tsx bench/faults.ts                        # 20 kills, 400 images, seed 1
 *   node --import tsx bench/faults.ts --kills 50 --images 800 --seed 7
 *   node --import tsx bench/faults.ts --max-delay 1500       # kill within 1.5 s of the spawn
 *
 * Each attempt spawns the real CLI (`--flush-seconds 0`: a shard per batch) and SIGKILLs it
 * after a seeded random delay. Delays after the spawn alone mostly hit start-up (node, tsx, the
 * index and the hashing of every file take longer than the extraction of a few hundred tiny
 * images), and a resumed run races through what is left, so each attempt draws its anchor too:
 *   - spawn (30%): delay uniform in [0, the clean run's time to its first shard]: start-up, lock,
 *     sweeping, index reading, ONNX model, first batch;
 *   - shard (70%): once this run has written n new shards, n uniform in [1, 2 × shards still to
 *     come / (kills still to make + 1)], plus a delay uniform in [0, 20] ms: mid-extraction, often
 *     mid-write of a shard.
 * So kills spread over the whole extraction and the cache fills up around the last kill.
 * `--max-delay MS` makes every kill spawn-anchored, uniform in [0, MS].
 * An attempt that ends on its own before its kill is shown and not counted; attempts go on
 * until --kills kills have landed (at most 4 × --kills attempts). Then one run to completion.
 * Exit code 1 if the end state differs from the clean run's.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { contentId, rowCount } from '../src/cache/code-rows.ts';
import { readCodeTable } from '../src/cache/code-table.ts';
import { FeatureCache } from '../src/cache/feature-cache.ts';
import { decodeShard } from '../src/cache/shard-format.ts';
import { cacheKeys, isHealthy, verifyKey } from '../src/cache/verify.ts';
import { mulberry32 } from '../src/util/numbers.ts';
import { benchArgs } from './args.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = path.join(ROOT, 'bin', 'bottleneck');
const { values: args } = benchArgs({
  options: {
    kills: { type: 'string', default: '20' },
    images: { type: 'string', default: '400' },
    seed: { type: 'string', default: '1' },
    'max-delay': { type: 'string' },
    batch: { type: 'string', default: '8' },
    keep: { type: 'boolean', default: false },
  },
});
const KILLS = Number(args.kills);
const IMAGES = Number(args.images);
const SEED = Number(args.seed);
if (!(KILLS >= 0) || !(IMAGES >= 8)) throw new Error('--kills N (≥ 0) and --images N (≥ 8)');

/** `count` distinct images in 4 class folders, PNG and JPEG alternately, 24 to 40 px: the same bytes for the same seed. */
async function makeDataset(root: string, count: number, seed: number): Promise<void> {
  const jobs: (() => Promise<void>)[] = [];
  for (let i = 0; i < count; i++) {
    const label = `class${i % 4}`;
    const size = 24 + (i % 3) * 8;
    const jpeg = i % 2 === 1;
    const file = path.join(root, label, `img${String(i).padStart(5, '0')}.${jpeg ? 'jpg' : 'png'}`);
    jobs.push(async () => {
      const random = mulberry32(seed * 1_000_003 + i);
      const pixels = Buffer.alloc(size * size * 3);
      for (let k = 0; k < pixels.length; k++) pixels[k] = (random() * 256) | 0;
      const img = sharp(pixels, { raw: { width: size, height: size, channels: 3 } });
      await (jpeg ? img.jpeg({ quality: 90 }) : img.png()).toFile(file);
    });
  }
  for (let c = 0; c < 4; c++) await mkdir(path.join(root, `class${c}`), { recursive: true });
  for (let i = 0; i < jobs.length; i += 32) await Promise.all(jobs.slice(i, i + 32).map((j) => j()));
}

function extractArgs(data: string, cacheRoot: string): string[] {
  return ['extract', data, '--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'cpu', '--batch', args.batch!, '--flush-seconds', '0', '--json', '--cache', cacheRoot];
}

interface Outcome {
  readonly killed: boolean;
  readonly code: number | null;
  /** Spawn to exit. */
  readonly ms: number;
  /** Spawn to the first shard file this run wrote, if it wrote one. */
  readonly firstShardMs?: number;
  readonly stderr: string;
}

interface KillPoint {
  readonly anchor: 'spawn' | 'shard';
  /** With anchor 'shard': how many new shards this run writes before the delay starts. */
  readonly shards?: number;
  readonly delayMs: number;
}

const shardNames = (cacheRoot: string): string[] => {
  if (!existsSync(cacheRoot)) return [];
  return readdirSync(cacheRoot)
    .filter((d) => d.startsWith('tiny-vgg-random'))
    .flatMap((d) => readdirSync(path.join(cacheRoot, d)).filter((f) => /^codes-.*\.arrow$/.test(f)).map((f) => `${d}/${f}`));
};

/** Runs extract; SIGKILLs it at `kill` unless it has ended by then. */
function runExtract(data: string, cacheRoot: string, kill?: KillPoint): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const before = new Set(shardNames(cacheRoot));
    const started = performance.now();
    const child = spawn(BIN, extractArgs(data, cacheRoot), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let killed = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number) => {
      timer = setTimeout(() => {
        killed = child.kill('SIGKILL');
      }, ms);
    };
    let firstShardMs: number | undefined;
    const poll = setInterval(() => {
      if (timer || (firstShardMs !== undefined && kill?.anchor !== 'shard')) return;
      const fresh = shardNames(cacheRoot).filter((f) => !before.has(f)).length;
      if (fresh > 0) firstShardMs ??= performance.now() - started;
      if (kill?.anchor === 'shard' && fresh >= (kill.shards ?? 1)) arm(kill.delayMs);
    }, 2);
    if (kill?.anchor === 'spawn') arm(kill.delayMs);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      clearInterval(poll);
      resolve({ killed: killed && signal === 'SIGKILL', code, ms: performance.now() - started, firstShardMs, stderr });
    });
  });
}

/** Every file under `dir`, relative, recursively. */
async function walk(dir: string, rel = ''): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...(await walk(path.join(dir, e.name), r)));
    else out.push(r);
  }
  return out;
}

/** What the cache holds right now, read shard by shard (a shard that does not decode is counted, not thrown). */
async function onDisk(cacheRoot: string) {
  const files = await walk(cacheRoot);
  const shards = files.filter((f) => /codes-.*\.arrow$/.test(f));
  let rows = 0;
  let corrupt = 0;
  const ids = new Set<string>();
  let duplicates = 0;
  for (const f of shards) {
    try {
      const { rows: r } = decodeShard(await readFile(path.join(cacheRoot, f)), f);
      for (let i = 0; i < rowCount(r); i++) {
        rows++;
        const id = contentId(r.sha256[i], r.view?.[i] ?? 0);
        if (ids.has(id)) duplicates++;
        ids.add(id);
      }
    } catch {
      corrupt++;
    }
  }
  return {
    shards: shards.length,
    rows,
    duplicates,
    corrupt,
    tmp: files.filter((f) => f.endsWith('.tmp')),
    locks: files.filter((f) => /(^|\/)\.lock/.test(f)),
  };
}

/** path → "sha256 label split codes-hex" of every row, and the row count (to see a row stored twice). */
async function rowsByPath(cacheRoot: string): Promise<{ count: number; byPath: Map<string, string>; keys: string[] }> {
  const keys = await cacheKeys(cacheRoot);
  const byPath = new Map<string, string>();
  let count = 0;
  for (const key of keys) {
    const cache = await FeatureCache.open(cacheRoot, key);
    for (const dataset of await cache.datasets()) {
      const s = await readCodeTable(cache, dataset);
      s.paths.forEach((p, i) => {
        count++;
        const code = Buffer.from(s.codes.buffer, s.codes.byteOffset + i * s.dim * 4, s.dim * 4).toString('hex');
        byPath.set(`${key}:${dataset}:${p}`, `${s.sha256[i]} ${s.labels[i]} ${s.splits[i]} ${code}`);
      });
    }
  }
  return { count, byPath, keys };
}

const pad = (s: string | number, n: number) => String(s).padStart(n);

async function main(): Promise<number> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-faults-'));
  try {
    const data = path.join(tmp, 'data');
    const t0 = performance.now();
    await makeDataset(data, IMAGES, SEED);
    console.log(`dataset: ${IMAGES} images (PNG and JPEG, 24-40 px) in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${tmp}`);

    const cleanRoot = path.join(tmp, 'clean');
    const clean = await runExtract(data, cleanRoot);
    if (clean.code !== 0) throw new Error(`the clean run failed (exit ${clean.code}):\n${clean.stderr}`);
    const expected = await rowsByPath(cleanRoot);
    const startup = Math.round(clean.firstShardMs ?? clean.ms / 2);
    const fixed = args['max-delay'] ? Number(args['max-delay']) : undefined;
    const rowsPerShard = Number(args.batch);
    console.log(
      `clean run: ${expected.count} rows in ${clean.ms.toFixed(0)} ms, its first shard at ${startup} ms; kills: ` +
        (fixed === undefined ? `30% spawn + [0, ${startup}] ms, 70% new shard n + [0, 20] ms` : `spawn + [0, ${fixed}] ms`) +
        `, seed ${SEED}\n`,
    );

    const faultRoot = path.join(tmp, 'faults');
    const random = mulberry32(SEED);
    console.log(`${pad('#', 3)}  ${'kill point'.padEnd(16)} ${'outcome'.padEnd(22)} ${pad('shards', 6)} ${pad('rows on disk', 12)} ${pad('dup', 3)} ${pad('corrupt', 7)} ${pad('.tmp', 4)} ${pad('lock', 4)}`);
    let kills = 0;
    let attempt = 0;
    const problems: string[] = [];
    let lockRefusals = 0;
    let rowsNow = 0;
    while (kills < KILLS && attempt < 4 * KILLS) {
      attempt++;
      const toCome = Math.ceil((expected.count - rowsNow) / rowsPerShard);
      const kill: KillPoint =
        fixed !== undefined
          ? { anchor: 'spawn', delayMs: Math.round(random() * fixed) }
          : random() < 0.3 || toCome === 0 // a complete cache gets no new shard: kill it in start-up
            ? { anchor: 'spawn', delayMs: Math.round(random() * startup) }
            : { anchor: 'shard', shards: 1 + Math.floor(random() * Math.max(1, (2 * toCome) / (KILLS - kills + 1))), delayMs: Math.round(random() * 20) };
      const o = await runExtract(data, faultRoot, kill);
      if (o.killed) kills++;
      const outcome = o.killed ? `killed at ${o.ms.toFixed(0)} ms` : `exit ${o.code} at ${o.ms.toFixed(0)} ms`;
      if (!o.killed && o.code !== 0) {
        const line = o.stderr.trim().split('\n').pop() ?? '';
        if (/being written by/.test(line)) lockRefusals++;
        problems.push(`attempt ${attempt}: exit ${o.code}: ${line}`);
      }
      const d = await onDisk(faultRoot);
      rowsNow = d.rows;
      if (d.duplicates) problems.push(`attempt ${attempt}: ${d.duplicates} row(s) on disk twice`);
      if (d.corrupt) problems.push(`attempt ${attempt}: ${d.corrupt} shard(s) that do not decode`);
      console.log(
        `${pad(attempt, 3)}  ${(kill.anchor === 'spawn' ? `spawn + ${kill.delayMs}` : `shard ${kill.shards} + ${kill.delayMs}`).padEnd(16)} ${outcome.padEnd(22)} ${pad(d.shards, 6)} ${pad(d.rows, 12)} ${pad(d.duplicates, 3)} ${pad(d.corrupt, 7)} ${pad(d.tmp.length, 4)} ${pad(d.locks.length ? 'left' : '-', 4)}`,
      );
    }
    if (kills < KILLS) console.log(`note: only ${kills} of ${KILLS} kills landed in ${attempt} attempts`);

    const final = await runExtract(data, faultRoot);
    const summary = final.code === 0 ? 'exit 0' : `exit ${final.code}: ${final.stderr.trim().split('\n').pop()}`;
    console.log(`\nfinal run: ${summary} in ${final.ms.toFixed(0)} ms`);
    if (final.code !== 0) problems.push(`final run: ${summary}`);

    const actual = await rowsByPath(faultRoot);
    const after = await onDisk(faultRoot);
    if (actual.count !== expected.count) problems.push(`${actual.count} rows, the clean run has ${expected.count}`);
    if (actual.byPath.size !== actual.count) problems.push(`${actual.count - actual.byPath.size} row(s) stored more than once`);
    if (actual.keys.join() !== expected.keys.join()) problems.push(`keys ${actual.keys.join()} vs ${expected.keys.join()}`);
    let missing = 0;
    let differing = 0;
    for (const [p, want] of expected.byPath) {
      const got = actual.byPath.get(p);
      if (got === undefined) missing++;
      else if (got !== want) differing++;
    }
    const extra = [...actual.byPath.keys()].filter((p) => !expected.byPath.has(p)).length;
    if (missing || differing || extra) problems.push(`${missing} row(s) missing, ${extra} extra, ${differing} with other content or codes`);
    if (after.tmp.length) problems.push(`temporary files left: ${after.tmp.join(', ')}`);
    if (after.locks.length) problems.push(`lock files left: ${after.locks.join(', ')}`);
    for (const key of actual.keys) {
      const check = await verifyKey(faultRoot, key);
      if (!isHealthy(check)) problems.push(`cache verify ${key}: ${[...check.problems, ...check.shards.filter((s) => s.problem).map((s) => `${path.basename(s.file)}: ${s.problem}`)].join('; ')}`);
    }
    const shardBytes = (await Promise.all((await walk(faultRoot)).filter((f) => f.endsWith('.arrow')).map((f) => stat(path.join(faultRoot, f))))).reduce((a, s) => a + s.size, 0);
    console.log(`end state: ${actual.count} rows (clean: ${expected.count}) in ${after.shards} shards, ${(shardBytes / 1024).toFixed(0)} KiB; ${missing} missing, ${extra} extra, ${differing} differing; ${after.tmp.length} .tmp, ${after.locks.length} lock(s)`);
    if (lockRefusals) console.log(`note: ${lockRefusals} attempt(s) refused by a lock a killed run left half-written`);
    for (const p of problems) console.log(`problem: ${p}`);
    // A run refused by a half-written lock is a finding, not a wrong end state: it is listed above.
    const identical = problems.filter((p) => !/being written by/.test(p)).length === 0;
    console.log(`faults: ${kills} kills, end state identical to a clean run: ${identical ? 'yes' : 'no'}`);
    return identical ? 0 : 1;
  } finally {
    if (args.keep) console.log(`kept ${tmp}`);
    else await rm(tmp, { recursive: true, force: true });
  }
}

process.exitCode = await main();
