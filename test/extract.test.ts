/** extract: inputs, the cache it writes, incremental re-runs, duplicates, locks and bad input. */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preprocessInto } from '../src/backbones/preprocess.ts';
import { tinyRandomBackbone } from '../src/backbones/zoo/tiny-random.ts';
import { acquireCacheLock } from '../src/cache/cache-lock.ts';
import { readErrorsTable } from '../src/cache/errors-table.ts';
import { FeatureCache } from '../src/cache/feature-cache.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { loadDataset } from '../src/extract/dataset.ts';
import { decodeImage } from '../src/extract/decode-image.ts';
import { runExtract, type ExtractOptions } from '../src/extract/run-extract.ts';
import { TEST_EXTRACT_DEFAULTS } from './helpers/extract-options.ts';
import { makeDataset, writeNoisePng } from './helpers/make-dataset.ts';
import { codeAt, readRows, rowsOfSplit } from './helpers/read-codes.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-extract-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

const backbone = tinyRandomBackbone(3);

async function extract(data: string, cacheRoot: string, extra: Partial<ExtractOptions> = {}) {
  const dataset = await loadDataset(data);
  return runExtract({
    items: dataset.items,
    dataset,
    backbone,
    cut: { layer: 'block2_pool', pool: 'avg' },
    ...TEST_EXTRACT_DEFAULTS,
    batch: 4,
    concurrency: 3,
    cacheRoot,
    ...extra,
  });
}

describe('extract', () => {
  it('reads split/class folders and writes one row per image, with codes equal to a direct engine call', async () => {
    const data = path.join(tmp, 'splits');
    const made = await makeDataset(data, { classes: ['cats', 'dogs'], perClass: 5, splits: ['train', 'val'] });
    const cacheRoot = path.join(tmp, 'cache-splits');
    const summary = await extract(data, cacheRoot);
    expect(summary).toMatchObject({ images: 20, new: 20, reused: 0, failed: 0 });

    const cache = await FeatureCache.open(cacheRoot, summary.key);
    expect(cache.spec).toMatchObject({ backbone: 'tiny-vgg-random', layer: 'block2_pool', pool: 'avg', shape: [16], dtype: 'float32' });
    const all = await readRows(cacheRoot, summary.key);
    expect([...new Set(all.splits)].sort()).toEqual(['train', 'validation']);
    const train = rowsOfSplit(all, 'train');
    expect(train).toHaveLength(10);
    expect(new Set(train.map((i) => all.labels[i]))).toEqual(new Set(['cats', 'dogs']));

    // The code of one image equals running the engine on that image directly.
    const image = made.find((m) => m.split === 'train' && m.label === 'dogs')!;
    const engine = await createOnnxEngine({ backbone, cuts: [{ layer: 'block2_pool', pool: 'avg' }], device: 'cpu', cacheDir: cacheRoot });
    const input = new Float32Array(32 * 32 * 3);
    preprocessInto(await decodeImage(image.file, { size: [32, 32] }), backbone.preprocessing, input);
    const [direct] = await engine.run(input, 1);
    await engine.dispose();
    expect(codeAt(all, image.path)).toEqual([...direct]);
  });

  it('reads CSV and JSONL manifests', async () => {
    const data = path.join(tmp, 'manifest');
    const made = await makeDataset(data, { classes: ['a', 'b'], perClass: 3 });
    await writeFile(path.join(data, 'list.csv'), ['path,label,split', ...made.map((m, i) => `${m.path},${m.label},${i % 2 ? 'test' : 'train'}`)].join('\n'));
    await writeFile(path.join(data, 'list.jsonl'), made.map((m) => JSON.stringify({ path: m.path, label: `x${m.label}` })).join('\n'));
    const csv = await loadDataset(path.join(data, 'list.csv'));
    expect(csv.items.map((i) => i.split)).toEqual(['train', 'test', 'train', 'test', 'train', 'test']);
    const jsonl = await loadDataset(path.join(data, 'list.jsonl'));
    expect(jsonl.classes).toEqual(['xa', 'xb']);
    const summary = await extract(path.join(data, 'list.csv'), path.join(tmp, 'cache-manifest'));
    expect(summary).toMatchObject({ images: 6, new: 6, failed: 0 });
  });

  it('computes only what is new on a re-run, and a new preprocessing gets a new key', async () => {
    const data = path.join(tmp, 'incremental');
    await makeDataset(data, { classes: ['a', 'b'], perClass: 10 });
    const cacheRoot = path.join(tmp, 'cache-incremental');
    const first = await extract(data, cacheRoot);
    expect(first).toMatchObject({ new: 20, reused: 0 });
    for (let i = 0; i < 3; i++) await writeNoisePng(path.join(data, 'b', `extra${i}.png`), 1000 + i);
    const second = await extract(data, cacheRoot);
    expect(second).toMatchObject({ images: 23, new: 3, reused: 20, key: first.key });
    const third = await extract(data, cacheRoot);
    expect(third).toMatchObject({ new: 0, reused: 23, engine: null });
    const rows = await readRows(cacheRoot, first.key);
    expect(rows.paths).toHaveLength(23);
    expect(new Set(rows.paths).size).toBe(23);

    const cropped = await extract(data, cacheRoot, { resize: 'crop' });
    expect(cropped.key).not.toBe(first.key);
    expect(cropped.new).toBe(23);
  });

  it('computes the same bytes once and lists them under every path and label', async () => {
    const data = path.join(tmp, 'dupes');
    await makeDataset(data, { classes: ['roses', 'tulips'], perClass: 3 });
    await copyFile(path.join(data, 'roses', 'img0000.png'), path.join(data, 'tulips', 'same.png'));
    await copyFile(path.join(data, 'roses', 'img0000.png'), path.join(data, 'roses', 'same-again.png'));
    const cacheRoot = path.join(tmp, 'cache-dupes');
    const summary = await extract(data, cacheRoot);
    expect(summary).toMatchObject({ images: 8, new: 6, reused: 2 });
    const rows = await readRows(cacheRoot, summary.key);
    expect(codeAt(rows, 'tulips/same.png')).toEqual(codeAt(rows, 'roses/img0000.png'));
    expect(rows.labels[rows.paths.indexOf('tulips/same.png')]).toBe('tulips');
    // A later copy of cached content is also served from the cache.
    await copyFile(path.join(data, 'roses', 'img0001.png'), path.join(data, 'tulips', 'later.png'));
    expect(await extract(data, cacheRoot)).toMatchObject({ new: 0, reused: 9 });
  });

  it('skips bad files into the errors table and still extracts every good one', async () => {
    const data = path.join(tmp, 'bad');
    await makeDataset(data, { classes: ['a', 'b'], perClass: 2 });
    await writeFile(path.join(data, 'a', 'empty.jpg'), '');
    await writeFile(path.join(data, 'a', 'notes.png'), 'this is not an image');
    const good = await readFile(path.join(data, 'b', 'img0000.png'));
    await writeFile(path.join(data, 'b', 'truncated.png'), good.subarray(0, Math.floor(good.length / 2)));
    const summary = await extract(data, path.join(tmp, 'cache-bad'));
    expect(summary).toMatchObject({ images: 7, new: 4, failed: 3 });
    const errors = await readErrorsTable(summary.path);
    expect(errors.map((e) => e.path).sort()).toEqual(['a/empty.jpg', 'a/notes.png', 'b/truncated.png']);
    for (const e of errors) expect(e.message).toContain(e.path.split('/')[1]);
  });

  it('refuses a cache that another live extract holds, and takes over a stale lock', async () => {
    const data = path.join(tmp, 'locked');
    await makeDataset(data, { classes: ['a', 'b'], perClass: 2 });
    const cacheRoot = path.join(tmp, 'cache-locked');
    const first = await extract(data, cacheRoot);
    const held = await acquireCacheLock(first.path);
    await expect(extract(data, cacheRoot)).rejects.toThrow(/is being written by .*process \d+/);
    await held.release();

    // A lock left by a process that no longer exists.
    await writeFile(path.join(first.path, '.lock'), JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname(), since: 'then' }));
    expect(await extract(data, cacheRoot)).toMatchObject({ reused: 4 });
  });

  it('keeps two datasets that share a key apart', async () => {
    const cacheRoot = path.join(tmp, 'cache-two');
    await makeDataset(path.join(tmp, 'first'), { classes: ['a', 'b'], perClass: 2, seed: 500 });
    await makeDataset(path.join(tmp, 'second'), { classes: ['x', 'y', 'z'], perClass: 2, seed: 600 });
    const one = await extract(path.join(tmp, 'first'), cacheRoot);
    const two = await extract(path.join(tmp, 'second'), cacheRoot);
    expect(two.key).toBe(one.key);
    const cache = await FeatureCache.open(cacheRoot, one.key);
    expect((await cache.datasets()).sort()).toEqual(['first', 'second']);
    expect((await readRows(cacheRoot, one.key, 'second')).labels).toEqual(['x', 'x', 'y', 'y', 'z', 'z']);
  });

  it('rejects a missing folder, an empty one and a single class', async () => {
    await expect(loadDataset(path.join(tmp, 'nope'))).rejects.toThrow(/no such folder or manifest/);
    await mkdir(path.join(tmp, 'empty', 'a'), { recursive: true });
    await expect(loadDataset(path.join(tmp, 'empty'))).rejects.toThrow(/no images found/);
    await makeDataset(path.join(tmp, 'single'), { classes: ['only'], perClass: 2 });
    await expect(loadDataset(path.join(tmp, 'single'))).rejects.toThrow(/only one class \(only\)/);
  });
});
