/** `extract --shard K/N`: N processes, one cache, exactly the rows and codes of a single run. */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FeatureCache } from '../src/cache/feature-cache.ts';
import { readRows } from './helpers/read-codes.ts';
import { shardOf } from '../src/extract/run-extract.ts';
import { makeDataset } from './helpers/make-dataset.ts';
import { REPO_ROOT } from './helpers/shared.ts';

const run = promisify(execFile);
const BIN = path.join(REPO_ROOT, 'bin', 'bottleneck');

let tmp: string;
let data: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-shard-'));
  data = path.join(tmp, 'data');
  const made = await makeDataset(data, { classes: ['a', 'b', 'c'], perClass: 8 });
  // The same bytes under two labels: both rows must come from the one part that owns the content.
  await copyFile(made[0].file, path.join(data, 'c', 'dup-of-a0.png'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

const extract = (cache: string, extra: string[] = []) =>
  run(BIN, ['extract', data, '--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'cpu', '--cache', cache, '--json', ...extra], { cwd: tmp });

/** "path|label" → code bytes (hex), for the dataset as the cache now reads it; no content stored twice. */
async function contents(cacheRoot: string): Promise<Map<string, string>> {
  const [key] = (await readdir(cacheRoot)).filter((d) => d.startsWith('tiny-vgg-random'));
  const cache = await FeatureCache.open(cacheRoot, key);
  const seen = new Set<string>();
  for await (const { rows: r } of cache.shards()) {
    for (const sha of r.sha256) {
      expect(seen.has(sha), `${sha} stored twice`).toBe(false);
      seen.add(sha);
    }
  }
  const table = await readRows(cacheRoot, key);
  const rows = new Map<string, string>();
  table.paths.forEach((p, i) => rows.set(`${p}|${table.labels[i]}`, Buffer.from(table.codes.buffer, table.codes.byteOffset + i * table.dim * 4, table.dim * 4).toString('hex')));
  return rows;
}

describe('extract --shard K/N', () => {
  it('splits by content hash into N disjoint parts covering everything', () => {
    const hashes = Array.from({ length: 300 }, (_, i) => createHash('sha256').update(String(i)).digest('hex'));
    const counts = [0, 0, 0];
    for (const h of hashes) counts[shardOf(h, 3)]++;
    expect(counts.reduce((a, b) => a + b)).toBe(300);
    for (const c of counts) expect(c).toBeGreaterThan(0);
  });

  it('three concurrent processes give exactly the rows and codes of one run', async () => {
    const single = path.join(tmp, 'single');
    await extract(single);
    const sharded = path.join(tmp, 'sharded');
    const outs = await Promise.all([0, 1, 2].map((k) => extract(sharded, ['--shard', `${k}/3`])));
    const summaries = outs.map((o) => JSON.parse(o.stdout.trim().split('\n').pop()!) as { new: number; otherShards: number; images: number });
    // 25 files, 24 distinct contents: each computed once, in exactly one process.
    expect(summaries.reduce((s, x) => s + x.new, 0)).toBe(24);
    for (const s of summaries) expect(s.new + s.otherShards).toBeLessThanOrEqual(25);

    const a = await contents(single);
    const b = await contents(sharded);
    expect(a.size).toBe(25);
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [id, code] of a) expect(b.get(id) === code, id).toBe(true);

    const [key] = (await readdir(sharded)).filter((d) => d.startsWith('tiny-vgg-random'));
    const files = await readdir(path.join(sharded, key));
    expect(files.filter((f) => f.endsWith('.arrow') && f.startsWith('codes-')).map((f) => f.split('-')[1]).sort()).toEqual(
      expect.arrayContaining(['s0of3', 's1of3', 's2of3']),
    );
    expect(files.filter((f) => f.startsWith('.lock'))).toEqual([]);

    const again = await extract(sharded, ['--shard', '1/3']);
    expect((JSON.parse(again.stdout.trim().split('\n').pop()!) as { new: number }).new).toBe(0);
  }, 120_000);

  it('refuses a malformed K/N in one line', async () => {
    const err = await extract(path.join(tmp, 'bad'), ['--shard', '3/3']).catch((e: { code: number; stderr: string }) => e);
    expect((err as { code: number }).code).toBe(2);
    expect((err as { stderr: string }).stderr.trim()).toMatch(/^bottleneck: --shard 3\/3: use K\/N/);
  });
});
