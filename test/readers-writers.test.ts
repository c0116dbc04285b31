/**
 * Readers and writers of a key respect each other: train-head and friends refuse (or, with
 * --wait, wait for) a key an extract is writing; a plain extract and a sharded one never write
 * one key at once; and content stored twice is reported by verify and removed by repair.
 */
import { readdirSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireCacheLock } from '../src/cache/cache-lock.ts';
import { readShardList, writeShardList } from '../src/cache/shard-list.ts';
import { runCli } from './helpers/cli.ts';
import { makeDataset } from './helpers/make-dataset.ts';

let tmp: string;
let data: string;
const TINY = ['--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'cpu'];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-rw-'));
  data = path.join(tmp, 'data');
  await makeDataset(data, { classes: ['a', 'b'], perClass: 60 });
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

const keyOf = (cache: string) => readdirSync(cache).find((d) => d.startsWith('tiny-vgg-random'))!;

describe('readers and writers of one key', () => {
  // A writer's lock is held here, through the same API extract uses, so the test does not race
  // an extract that may finish before the command under test starts.
  it('train-head refuses a key that an extract is writing, and waits for it with --wait', async () => {
    const cache = path.join(tmp, 'cache-live');
    expect((await runCli(['extract', data, ...TINY, '--cache', cache])).code).toBe(0);
    const dir = path.join(cache, keyOf(cache));
    const lock = await acquireCacheLock(dir);
    const refused = await runCli(['train-head', keyOf(cache), '--cache', cache, '--epochs', '1', '--out', path.join(tmp, 'h1')]);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim()).toMatch(/^bottleneck: .* is being written by .*process \d+ .*: wait for it to finish, or pass --wait SECONDS/);
    setTimeout(() => void lock.release(), 3000);
    const waited = await runCli(['train-head', keyOf(cache), '--cache', cache, '--epochs', '1', '--wait', '60', '--out', path.join(tmp, 'h2')]);
    expect(waited.code, waited.stderr).toBe(0);
    for (const args of [['evaluate', path.join(tmp, 'h2'), '--cache', cache], ['cache', 'export', keyOf(cache), '--cache', cache, '--out', path.join(tmp, 'pq')]]) {
      const held = await acquireCacheLock(dir);
      const r = await runCli(args);
      await held.release();
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/is being written by/);
    }
  });

  it('a plain and a sharded extract never write one key at once', async () => {
    const cache = path.join(tmp, 'cache-mixed');
    expect((await runCli(['extract', data, ...TINY, '--cache', cache, '--shard', '1/2'])).code).toBe(0);
    const dir = path.join(cache, keyOf(cache));
    const plain = await acquireCacheLock(dir);
    const sharded = await runCli(['extract', data, ...TINY, '--cache', cache, '--shard', '0/2']);
    await plain.release();
    expect(sharded.code).toBe(2);
    expect(sharded.stderr.trim()).toMatch(/is being written by/);

    const part = await acquireCacheLock(dir, { writer: 's0of2' });
    const other = await runCli(['extract', data, ...TINY, '--cache', cache]);
    const otherSplit = await runCli(['extract', data, ...TINY, '--cache', cache, '--shard', '0/3']);
    // Processes of one sharded run do work side by side; one that splits the data otherwise does not.
    const sibling = await runCli(['extract', data, ...TINY, '--cache', cache, '--shard', '1/2']);
    await part.release();
    expect(other.code).toBe(2);
    expect(otherSplit.code).toBe(2);
    expect(otherSplit.stderr).toMatch(/is being written by/);
    expect(sibling.code, sibling.stderr).toBe(0);

    // Two real processes of one run, side by side, then verify.
    const [a, b] = await Promise.all([runCli(['extract', data, ...TINY, '--cache', cache, '--shard', '0/2']), runCli(['extract', data, ...TINY, '--cache', cache, '--shard', '1/2'])]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const verify = await runCli(['cache', 'verify', '--cache', cache]);
    expect(verify.code, verify.stdout).toBe(0);
  });

  it('content stored twice is reported by verify and removed by repair', async () => {
    const cache = path.join(tmp, 'cache-dupes');
    expect((await runCli(['extract', data, ...TINY, '--cache', cache, '--flush-seconds', '0', '--batch', '30'])).code).toBe(0);
    const dir = path.join(cache, keyOf(cache));
    // As if another writer had stored the same contents again: a second writer's shard, listed.
    const [first] = (await readdir(dir)).filter((f) => f.startsWith('codes-w-')).sort();
    await copyFile(path.join(dir, first), path.join(dir, 'codes-x-000000.arrow'));
    const list = await readShardList(dir, 'w');
    await writeShardList(dir, { ...list, writer: 'x', shards: [{ file: 'codes-x-000000.arrow', rows: list.shards[0].rows }], datasets: {} });

    const verify = await runCli(['cache', 'verify', '--cache', cache]);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toMatch(/30 content\(s\) stored twice/);
    const repair = await runCli(['cache', 'repair', '--cache', cache, '--engine', 'onnx', '--device', 'cpu']);
    expect(repair.code, repair.stderr).toBe(0);
    expect(repair.stdout).toMatch(/30 duplicate row\(s\) removed, 0 code\(s\) recomputed/);
    const after = await runCli(['cache', 'verify', '--cache', cache]);
    expect(after.code, after.stdout).toBe(0);
  });
});
