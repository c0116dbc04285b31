/** Several cuts in one forward pass, each into its own key, and the sweep that ranks them. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyRandomBackbone } from '../src/backbones/zoo/tiny-random.ts';
import { FeatureCache } from '../src/cache/feature-cache.ts';
import { readRows } from './helpers/read-codes.ts';
import { loadDataset, type Dataset } from '../src/extract/dataset.ts';
import { runExtract } from '../src/extract/run-extract.ts';
import { formatSweep, runSweep } from '../src/sweep/sweep-command.ts';
import { TEST_EXTRACT_DEFAULTS } from './helpers/extract-options.ts';
import { makeDataset } from './helpers/make-dataset.ts';

let tmp: string;
let dataset: Dataset;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-sweep-'));
  await makeDataset(path.join(tmp, 'data'), { classes: ['a', 'b'], perClass: 10, splits: ['train', 'validation'] });
  dataset = await loadDataset(path.join(tmp, 'data'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

const CUTS = [{ layer: 'block1_pool', pool: 'avg' as const }, { layer: 'block2_pool' }, { layer: 'fc1' }];

async function extract(cacheRoot: string, cuts: typeof CUTS) {
  return runExtract({
    items: dataset.items,
    dataset,
    backbone: tinyRandomBackbone(),
    cut: cuts[0],
    moreCuts: cuts.slice(1),
    ...TEST_EXTRACT_DEFAULTS,
    cacheRoot,
  });
}

/** Every code of a key, by path, as bytes; no content stored twice. */
async function codesByPath(cacheRoot: string, key: string): Promise<Map<string, Buffer>> {
  const cache = await FeatureCache.open(cacheRoot, key);
  const seen = new Set<string>();
  for await (const { rows } of cache.shards()) {
    for (const sha of rows.sha256) {
      expect(seen.has(sha), `${sha} twice in ${key}`).toBe(false);
      seen.add(sha);
    }
  }
  const table = await readRows(cacheRoot, key);
  const out = new Map<string, Buffer>();
  table.paths.forEach((p, i) => out.set(p, Buffer.from(table.codes.buffer, table.codes.byteOffset + i * table.dim * 4, table.dim * 4)));
  return out;
}

describe('extract with several cuts', () => {
  it('computes each cut once per image in one pass, with the codes of separate single-cut runs', async () => {
    const together = path.join(tmp, 'together');
    const summary = await extract(together, CUTS);
    expect(summary.new).toBe(40);
    expect(summary.caches.map((c) => c.key.split('-').slice(0, -1).join('-'))).toEqual([
      'tiny-vgg-random-block1_pool-avg',
      'tiny-vgg-random-block2_pool',
      'tiny-vgg-random-fc1',
    ]);
    for (const [i, cut] of CUTS.entries()) {
      const alone = path.join(tmp, `alone-${i}`);
      const single = await extract(alone, [cut]);
      expect(single.key).toBe(summary.caches[i].key);
      const a = await codesByPath(together, single.key);
      const b = await codesByPath(alone, single.key);
      expect(a.size).toBe(40);
      for (const [p, code] of b) expect(code.equals(a.get(p)!), p).toBe(true);
    }
    const again = await extract(together, CUTS);
    expect(again.new).toBe(0);
    expect(again.reused).toBe(40);
  });

  it('adds a new cut to a partly cached sweep without duplicating rows of the cached one', async () => {
    const root = path.join(tmp, 'partial');
    await extract(root, [CUTS[1]]);
    const summary = await extract(root, [CUTS[1], CUTS[2]]);
    expect(summary.new).toBe(40);
    expect((await codesByPath(root, summary.caches[0].key)).size).toBe(40);
    expect((await codesByPath(root, summary.caches[1].key)).size).toBe(40);
  });
});

describe('sweep', () => {
  it('trains a head per cut and recommends the best by validation accuracy', async () => {
    const result = await runSweep({
      data: path.join(tmp, 'data'),
      backbone: 'tiny-vgg-random',
      layers: ['block1_pool', 'block2_pool', 'fc1'],
      pool: 'avg',
      cacheRoot: path.join(tmp, 'sweep-cache'),
      out: path.join(tmp, 'sweep-heads'),
      engine: 'onnx',
      device: 'cpu',
      batch: 8,
      concurrency: 2,
      hidden: [8],
      epochs: 3,
      seed: 0,
      val: 0.2,
      quiet: true,
    });
    expect(result.computed).toBe(40);
    expect(result.rows.map((r) => r.dim)).toEqual([8, 16, 32]);
    // fc1 is a vector: taken as it is, not pooled.
    expect(result.rows.map((r) => r.cut.pool ?? null)).toEqual(['avg', 'avg', null]);
    const bestAcc = Math.max(...result.rows.map((r) => r.valAcc));
    expect(result.best.valAcc).toBe(bestAcc);
    const table = formatSweep(result);
    expect(table).toMatch(/block1_pool:avg\s+8\s+\d+\.\d\d%/);
    expect(table.split('\n').filter((l) => l.includes('← best'))).toHaveLength(1);
  });
});
