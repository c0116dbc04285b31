/** extract on real photos from ../shared/datasets, with real weights from ../shared/models. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBackbone } from '../src/backbones/zoo.ts';
import { indexOfMembers, readCodes } from '../src/cache/code-table.ts';
import { FeatureCache } from '../src/cache/feature-cache.ts';
import { readRows } from './helpers/read-codes.ts';
import { loadDataset } from '../src/extract/dataset.ts';
import { runExtract } from '../src/extract/run-extract.ts';
import { TEST_EXTRACT_DEFAULTS } from './helpers/extract-options.ts';
import { hasSharedDatasets, hasSharedModels, NEEDS_SHARED_DATASETS, NEEDS_SHARED_MODELS, SHARED_DATASETS, SHARED_MODELS } from './helpers/shared.ts';

const ready = hasSharedDatasets && hasSharedModels;
let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-real-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe.skipIf(!ready)(`extract on real images${NEEDS_SHARED_DATASETS}${NEEDS_SHARED_MODELS}`, () => {
  it('upsamples CIFAR 32×32 images to the network size', async () => {
    const backbone = await loadBackbone('squeezenet1_1', { weightsDir: SHARED_MODELS });
    const dataset = await loadDataset(path.join(SHARED_DATASETS, 'cifar10-mini'));
    const items = dataset.items.filter((_, i) => i % 100 === 0); // 2 per class
    const summary = await runExtract({
      items,
      dataset,
      backbone,
      cut: backbone.defaultCut,
      ...TEST_EXTRACT_DEFAULTS,
      dtype: 'float16',
      concurrency: 4,
      cacheRoot: tmp,
    });
    expect(summary).toMatchObject({ images: 20, new: 20, failed: 0 });
    const cache = await FeatureCache.open(tmp, summary.key);
    expect(cache.spec.preprocessing.size).toEqual([227, 227]);
    expect(cache.spec.dtype).toBe('float16');
    const rows = await readCodes(cache, indexOfMembers(summary.members, { dataset: 'cifar10-mini', root: dataset.root, dim: cache.dim }));
    expect(rows.codes).toHaveLength(20 * 512);
    // Real features: non-negative (post-ReLU average), not constant across images.
    expect(Math.min(...rows.codes)).toBeGreaterThanOrEqual(0);
    expect(new Set(rows.codes.subarray(0, 512)).size).toBeGreaterThan(100);
  });

  it('computes the flowers image filed under both roses and tulips once, and lists it under both', async () => {
    const backbone = await loadBackbone('squeezenet1_1', { weightsDir: SHARED_MODELS });
    const flowers = path.join(SHARED_DATASETS, 'flowers');
    const name = '15922772266_1167a06620.jpg';
    const manifest = path.join(tmp, 'flowers.csv');
    await writeFile(
      manifest,
      ['path,label', `${flowers}/roses/${name},roses`, `${flowers}/tulips/${name},tulips`, `${flowers}/daisy/${(await loadDataset(flowers)).items[0].path.split('/')[1]},daisy`].join('\n'),
    );
    const listed = await loadDataset(manifest);
    const summary = await runExtract({
      items: listed.items,
      dataset: listed,
      backbone,
      cut: backbone.defaultCut,
      ...TEST_EXTRACT_DEFAULTS,
      cacheRoot: path.join(tmp, 'flowers-cache'),
    });
    expect(summary).toMatchObject({ images: 3, new: 2, reused: 1 });
    const rows = await readRows(path.join(tmp, 'flowers-cache'), summary.key);
    expect(rows.labels.slice().sort()).toEqual(['daisy', 'roses', 'tulips']);
    const roses = rows.labels.indexOf('roses');
    const tulips = rows.labels.indexOf('tulips');
    expect(rows.sha256[roses]).toBe(rows.sha256[tulips]);
    expect([...rows.codes.subarray(roses * 512, roses * 512 + 512)]).toEqual([...rows.codes.subarray(tulips * 512, tulips * 512 + 512)]);
  });
});
