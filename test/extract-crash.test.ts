/**
 * A killed extract loses nothing and duplicates nothing: SIGKILL mid-run, resume, and the cache
 * holds exactly the rows of one clean run, with byte-identical codes.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeDataset } from './helpers/make-dataset.ts';
import { readRows } from './helpers/read-codes.ts';
import { REPO_ROOT } from './helpers/shared.ts';

const BIN = path.join(REPO_ROOT, 'bin', 'bottleneck');
let tmp: string;
let data: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-crash-'));
  data = path.join(tmp, 'data');
  await makeDataset(data, { classes: ['a', 'b', 'c'], perClass: 60 });
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

function extractArgs(cacheRoot: string): string[] {
  return ['extract', data, '--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'cpu', '--batch', '4', '--flush-seconds', '0', '--json', '--cache', cacheRoot];
}

function runToEnd(cacheRoot: string): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(BIN, extractArgs(cacheRoot), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout }));
  });
}

/** Starts an extract and SIGKILLs it once `shards` shard files exist in its key folder. */
function runAndKill(cacheRoot: string, shards: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, extractArgs(cacheRoot), { stdio: 'ignore' });
    const timer = setInterval(() => {
      const keyDir = existsSync(cacheRoot) ? readdirSync(cacheRoot).find((d) => d.startsWith('tiny-vgg-random')) : undefined;
      const count = keyDir ? readdirSync(path.join(cacheRoot, keyDir)).filter((f) => /^codes-.*\.arrow$/.test(f)).length : 0;
      if (count >= shards) child.kill('SIGKILL');
    }, 5);
    child.on('exit', (code, signal) => {
      clearInterval(timer);
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`extract finished (code ${code}) before it could be killed`));
    });
  });
}

async function rowsOf(cacheRoot: string) {
  const key = readdirSync(cacheRoot).find((d) => d.startsWith('tiny-vgg-random'))!;
  const rows = await readRows(cacheRoot, key);
  const byPath = new Map<string, string>();
  rows.paths.forEach((p, i) => byPath.set(p, Buffer.from(rows.codes.slice(i * rows.dim, (i + 1) * rows.dim).buffer).toString('hex')));
  return { count: rows.paths.length, byPath };
}

describe('extract survives SIGKILL', () => {
  it('resumes after being killed three times, ending with exactly the rows of a clean run', async () => {
    const clean = path.join(tmp, 'clean');
    expect((await runToEnd(clean)).code).toBe(0);
    const expected = await rowsOf(clean);
    expect(expected.count).toBe(180);

    const killed = path.join(tmp, 'killed');
    for (const shards of [2, 8, 20]) await runAndKill(killed, shards);
    const resumed = await runToEnd(killed);
    expect(resumed.code).toBe(0);
    const summary = JSON.parse(resumed.stdout.trim().split('\n').pop()!) as { new: number; reused: number };
    expect(summary.reused).toBeGreaterThan(0);
    expect(summary.new + summary.reused).toBe(180);

    const actual = await rowsOf(killed);
    expect(actual.count).toBe(180); // each row once
    expect(actual.byPath).toEqual(expected.byPath); // the same rows, byte-identical codes
    const keyDir = readdirSync(killed).find((d) => d.startsWith('tiny-vgg-random'))!;
    expect(readdirSync(path.join(killed, keyDir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
