/** cache verify finds damaged shards, cache repair recomputes exactly what they held, cache export writes Parquet DuckDB reads. */
import { readdir, readFile, rm, truncate, writeFile, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorruptShardError } from '../src/cache/shard-format.ts';
import { isHealthy, verifyKey } from '../src/cache/verify.ts';
import { runCli } from './helpers/cli.ts';
import { extractWithTinyBackbone } from './helpers/extract-options.ts';
import { makeDataset } from './helpers/make-dataset.ts';
import { readRows } from './helpers/read-codes.ts';


let tmp: string;
let root: string;
let key: string;
let before: Map<string, Buffer>;

const cli = (args: string[]) => runCli(args, { cwd: tmp });

/** "path|label" → code bytes, for the dataset as readers see it. */
async function codes(): Promise<Map<string, Buffer>> {
  const table = await readRows(root, key);
  const out = new Map<string, Buffer>();
  table.paths.forEach((p, i) => out.set(`${p}|${table.labels[i]}`, Buffer.from(table.codes.slice(i * table.dim, (i + 1) * table.dim).buffer)));
  return out;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-cachecmd-'));
  root = path.join(tmp, 'cache');
  await makeDataset(path.join(tmp, 'data'), { classes: ['ant', 'bee'], perClass: 12, splits: ['train', 'validation'] });
  // Small shards, so damage hits some rows and not others.
  const summary = await extractWithTinyBackbone(path.join(tmp, 'data'), root, { maxShardBytes: 1000 });
  key = summary.key;
  before = await codes();
}, 60_000);
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('cache export --format parquet', () => {
  it('writes hive-partitioned Parquet that DuckDB reads back row for row', async () => {
    const out = path.join(tmp, 'parquet');
    const r = await cli(['cache', 'export', key, '--cache', root, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['split=train', 'split=validation']);
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    const glob = path.join(out, '**', '*.parquet');
    const counts = (await c.runAndReadAll(`select split, label, count(*)::INTEGER as n from read_parquet('${glob}', hive_partitioning = true) group by all order by all`)).getRowObjectsJson();
    expect(counts).toEqual([
      { split: 'train', label: 'ant', n: 12 },
      { split: 'train', label: 'bee', n: 12 },
      { split: 'validation', label: 'ant', n: 12 },
      { split: 'validation', label: 'bee', n: 12 },
    ]);
    const row = (await c.runAndReadAll(`select path, label, code from read_parquet('${glob}', hive_partitioning = true) where path = 'validation/bee/img0003.png'`)).getRowObjectsJson()[0] as { path: string; label: string; code: number[] };
    const want = new Float32Array(new Uint8Array(before.get(`${row.path}|${row.label}`)!).buffer);
    expect(row.code).toHaveLength(want.length);
    row.code.forEach((v, i) => expect(Math.fround(v)).toBe(want[i]));
    const types = (await c.runAndReadAll(`select column_name, column_type from (describe select * from read_parquet('${glob}', hive_partitioning = true)) where column_name = 'code'`)).getRowObjectsJson();
    expect(types).toEqual([{ column_name: 'code', column_type: 'FLOAT[]' }]);
    c.closeSync();

    const again = await cli(['cache', 'export', key, '--cache', root, '--out', out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already exists/);
  });
});

describe('cache verify and repair', () => {
  it('names damaged shards, and repair restores exactly the lost rows', async () => {
    expect(isHealthy(await verifyKey(root, key))).toBe(true);
    const shards = (await readdir(path.join(root, key))).filter((f) => f.startsWith('codes-')).sort();
    expect(shards.length).toBeGreaterThanOrEqual(4);
    // One shard cut short, one with bytes flipped in the middle.
    const truncated = path.join(root, key, shards[1]);
    await truncate(truncated, Math.floor((await readFile(truncated)).length / 2));
    const flipped = path.join(root, key, shards[2]);
    const bytes = await readFile(flipped);
    for (let i = 0; i < 8; i++) bytes[Math.floor(bytes.length / 2) + i] ^= 0xff;
    await writeFile(flipped, bytes);

    await expect(readRows(root, key)).rejects.toThrow(CorruptShardError);
    await expect(readRows(root, key)).rejects.toThrow(new RegExp(shards[1].replace('.', '\\.')));

    const verify = await cli(['cache', 'verify', '--cache', root]);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toMatch(new RegExp(`DAMAGED ${key}`));
    expect(verify.stdout).toMatch(new RegExp(`${shards[1]}: not a readable Arrow file`));
    expect(verify.stdout).toMatch(new RegExp(`${shards[2]}: .*(checksum|not a readable)`));

    const repair = await cli(['cache', 'repair', '--cache', root, '--engine', 'onnx', '--device', 'cpu']);
    expect(repair.code, repair.stderr).toBe(0);
    expect(repair.stdout).toMatch(/2 shard\(s\) set aside, 0 duplicate row\(s\) removed, [1-9]\d* code\(s\) recomputed/);
    expect((await readdir(path.join(root, key, 'quarantine'))).sort()).toEqual([shards[1], shards[2]].sort());

    expect(isHealthy(await verifyKey(root, key))).toBe(true);
    const after = await codes();
    expect(after.size).toBe(before.size);
    for (const [id, code] of before) expect(after.get(id)?.equals(code), id).toBe(true);
    expect((await cli(['cache', 'verify', '--cache', root])).code).toBe(0);
  }, 60_000);
});
