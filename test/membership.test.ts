/**
 * The cache describes the dataset as it is now. Users delete, move and rewrite images between
 * extracts; every reader (train-head, evaluate, cache export) must see the latest listing, with
 * no code computed twice and no stale row left over.
 */
import { copyFile, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { makeDataset, writeNoisePng } from './helpers/make-dataset.ts';
import { readRows } from './helpers/read-codes.ts';

let tmp: string;
const TINY = ['--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'cpu'];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-membership-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

interface Summary {
  readonly key: string;
  readonly new: number;
  readonly reused: number;
}

async function extract(data: string, cache: string, ...extra: string[]): Promise<Summary> {
  const r = await runCli(['extract', data, ...TINY, '--cache', cache, '--json', ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Summary;
}

describe('the cache follows the dataset', () => {
  it('after a delete, a move to another class and three rewrites, every reader sees the folder as it is', async () => {
    const data = path.join(tmp, 'photos');
    await makeDataset(data, { classes: ['cat', 'dog'], perClass: 5 });
    const cache = path.join(tmp, 'cache');
    const first = await extract(data, cache);
    expect(first.new).toBe(10);

    await rm(path.join(data, 'cat', 'img0000.png'));
    await rename(path.join(data, 'cat', 'img0001.png'), path.join(data, 'dog', 'moved.png'));
    for (let i = 0; i < 3; i++) {
      await writeNoisePng(path.join(data, 'dog', 'img0004.png'), 900 + i);
      await extract(data, cache);
    }
    const after = await extract(data, cache);
    expect(after).toMatchObject({ key: first.key, new: 0 });

    const rows = await readRows(cache, first.key);
    expect(rows.paths).toEqual(['cat/img0002.png', 'cat/img0003.png', 'cat/img0004.png', 'dog/img0000.png', 'dog/img0001.png', 'dog/img0002.png', 'dog/img0003.png', 'dog/img0004.png', 'dog/moved.png']);
    // The moved photo is a dog only, and the rewritten one is there once, with its latest bytes.
    expect(rows.labels[rows.paths.indexOf('dog/moved.png')]).toBe('dog');
    expect(rows.labels.filter((l) => l === 'cat')).toHaveLength(3);

    // train-head trains on exactly those rows (its summary counts them), evaluate scores among them.
    const head = path.join(tmp, 'head');
    const trained = await runCli(['train-head', path.join(cache, first.key), '--epochs', '1', '--val', '0.4', '--out', head, '--json']);
    expect(trained.code, trained.stderr).toBe(0);
    const config = JSON.parse(await (await import('node:fs/promises')).readFile(path.join(head, 'head.json'), 'utf8')) as { training: { splits: { train: number; validation: number } } };
    expect(config.training.splits.train + config.training.splits.validation).toBe(9);

    // cache export writes the same nine rows, none of the deleted or superseded ones.
    const out = path.join(tmp, 'parquet');
    const exported = await runCli(['cache', 'export', first.key, '--cache', cache, '--out', out]);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toMatch(/^9 rows in/);
  });

  it('a photo moved to another class folder costs no forward pass', async () => {
    const data = path.join(tmp, 'moves');
    await makeDataset(data, { classes: ['a', 'b'], perClass: 3 });
    const cache = path.join(tmp, 'cache-moves');
    await extract(data, cache);
    await rename(path.join(data, 'a', 'img0000.png'), path.join(data, 'b', 'was-a.png'));
    expect(await extract(data, cache)).toMatchObject({ new: 0, reused: 6 });
  });

  it('two folders with the same name are not merged: the second is refused until it is given its own name', async () => {
    const one = path.join(tmp, 'A', 'photos');
    const two = path.join(tmp, 'B', 'photos');
    await makeDataset(one, { classes: ['x', 'y'], perClass: 2, seed: 10 });
    await makeDataset(two, { classes: ['p', 'q'], perClass: 2, seed: 20 });
    const cache = path.join(tmp, 'cache-names');
    const first = await extract(one, cache);

    const refused = await runCli(['extract', two, ...TINY, '--cache', cache]);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim()).toMatch(/^bottleneck: .*B\/photos: the cache already holds a dataset named 'photos' read from .*A\/photos; give this one another name with --name/);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);

    await extract(two, cache, '--name', 'photos-b');
    expect((await readRows(cache, first.key, 'photos')).labels).toEqual(['x', 'x', 'y', 'y']);
    expect((await readRows(cache, first.key, 'photos-b')).labels).toEqual(['p', 'p', 'q', 'q']);

    // A dataset whose folder is gone has moved: its name follows it, with a note.
    const moved = path.join(tmp, 'C', 'photos');
    await mkdir(path.dirname(moved), { recursive: true });
    await rename(one, moved);
    const r = await runCli(['extract', moved, ...TINY, '--cache', cache]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/note: dataset 'photos' was read from .*A\/photos, which is gone: it is now .*C\/photos/);
  });

  it('a path listed twice in a manifest is one image, with a warning', async () => {
    const data = path.join(tmp, 'listed');
    await makeDataset(data, { classes: ['a', 'b'], perClass: 2 });
    const manifest = path.join(data, 'list.csv');
    await writeFile(manifest, ['path,label', 'a/img0000.png,a', 'a/img0001.png,a', 'a/img0000.png,a', 'b/img0000.png,b'].join('\n'));
    const r = await runCli(['extract', manifest, ...TINY, '--cache', path.join(tmp, 'cache-listed'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: .*list\.csv: a\/img0000\.png is listed 2 times \(lines 2, 4\); it is one image/);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as Summary & { images: number };
    expect(summary.images).toBe(3);
    expect((await readRows(path.join(tmp, 'cache-listed'), summary.key)).paths).toEqual(['a/img0000.png', 'a/img0001.png', 'b/img0000.png']);
  });

  it('the same bytes under two names stay two rows of one code', async () => {
    const data = path.join(tmp, 'copies');
    await makeDataset(data, { classes: ['roses', 'tulips'], perClass: 2 });
    await copyFile(path.join(data, 'roses', 'img0000.png'), path.join(data, 'tulips', 'same.png'));
    const cache = path.join(tmp, 'cache-copies');
    const s = await extract(data, cache);
    expect(s.new).toBe(4);
    const rows = await readRows(cache, s.key);
    expect(rows.paths).toHaveLength(5);
    expect(rows.sha256[rows.paths.indexOf('tulips/same.png')]).toBe(rows.sha256[rows.paths.indexOf('roses/img0000.png')]);
  });
});
