/** Cached augmentation: deterministic views, their own key, training rows only, and train-head using them. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { membershipIndex, viewsIndex } from '../src/cache/code-table.ts';
import { FeatureCache } from '../src/cache/feature-cache.ts';
import { runEvaluate } from '../src/evaluate/evaluate-command.ts';
import { augmentedView, viewParams } from '../src/extract/augment.ts';
import { decodeImage } from '../src/extract/decode-image.ts';
import { runTrainHead, type TrainHeadCommand } from '../src/train-head/train-command.ts';
import { extractWithTinyBackbone } from './helpers/extract-options.ts';
import { makeDataset } from './helpers/make-dataset.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-augment-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

const DECODE = { size: [32, 32] as const, resize: 'squash' as const, interpolation: 'linear' as const, background: { r: 255, g: 255, b: 255 } };

async function photo(): Promise<Buffer> {
  // An asymmetric picture, so a flip, a rotation or a crop changes the pixels.
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="96" height="64"><rect width="96" height="64" fill="#3a6"/><circle cx="20" cy="20" r="14" fill="#e33"/><rect x="60" y="30" width="30" height="30" fill="#22c"/></svg>`;
  return sharp(Buffer.from(svg)).jpeg({ quality: 95 }).toBuffer();
}

const HEAD: Omit<TrainHeadCommand, 'codes' | 'cacheRoot' | 'out'> = {
  hidden: [8],
  dropout: 0,
  optimizer: 'adam',
  momentum: 0,
  batch: 8,
  epochs: 2,
  l2: 0,
  classWeights: 'none',
  seed: 1,
  patience: null,
  val: 0.3,
  test: 0,
  trainer: 'onnx',
  standardize: false,
  json: true,
  quiet: true,
};

describe('augmented views', () => {
  it('are a function of seed, content and view index alone', async () => {
    expect(viewParams(7, 'abc', 1)).toEqual(viewParams(7, 'abc', 1));
    expect(viewParams(7, 'abc', 1)).not.toEqual(viewParams(7, 'abc', 2));
    expect(viewParams(7, 'abc', 1)).not.toEqual(viewParams(8, 'abc', 1));
    const bytes = await photo();
    const a = await augmentedView(bytes, 'abc', 1, 7, DECODE);
    const b = await augmentedView(bytes, 'abc', 1, 7, DECODE);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(a.length).toBe(32 * 32 * 3);
    const plain = await decodeImage(bytes, DECODE);
    const views = await Promise.all([1, 2, 3].map((v) => augmentedView(bytes, 'abc', v, 7, DECODE)));
    for (const v of views) expect(Buffer.from(v).equals(Buffer.from(plain))).toBe(false);
    // Still the same picture: flips, small rotations, crops and ±20% jitter keep its mean colour near.
    const meanColour = (x: Uint8Array) => [0, 1, 2].map((c) => x.filter((_, i) => i % 3 === c).reduce((s, v) => s + v, 0) / (x.length / 3));
    for (const v of views) meanColour(v).forEach((m, c) => expect(Math.abs(m - meanColour(plain)[c])).toBeLessThan(45));
  });

  it('go to their own key, for training images only, and are never computed twice', async () => {
    const data = path.join(tmp, 'folders');
    await makeDataset(data, { classes: ['a', 'b'], perClass: 6, splits: ['train', 'validation'] });
    const cacheRoot = path.join(tmp, 'cache-folders');
    const run = () =>
      extractWithTinyBackbone(data, cacheRoot, { augment: { views: 2, seed: 3 } });
    const first = await run();
    expect(first.new).toBe(24);
    expect(first.views).toBe(2 * 12);
    const viewsKey = first.caches[0].views!;
    expect(viewsKey.key).not.toBe(first.key);

    const views = await FeatureCache.open(cacheRoot, viewsKey.key);
    expect(views.spec.augment).toMatchObject({ views: 2, seed: 3 });
    // Views of the training images only: 12 images × 2 views, no validation image among them.
    const images = await membershipIndex(await FeatureCache.open(cacheRoot, first.key), 'folders');
    const all = await viewsIndex(views, images, [...images.paths.keys()]);
    expect(new Set(all.splits)).toEqual(new Set(['train']));
    expect([...all.views].sort()).toEqual([...Array(12).fill(1), ...Array(12).fill(2)]);

    // The images' own key is exactly what a run without --augment writes.
    const plain = await extractWithTinyBackbone(data, cacheRoot);
    expect(plain.key).toBe(first.key);
    expect(plain.new).toBe(0);

    const again = await run();
    expect(again.new + again.views).toBe(0);

    const head = path.join(tmp, 'head-folders');
    const { config } = await runTrainHead({ ...HEAD, codes: viewsKey.path, cacheRoot, out: head });
    // The head is on the images' key (predict and evaluate use it), trained on 12 images + 24 views.
    expect(config.cacheKey).toBe(first.key);
    expect(config.training.splits.train).toBe(12);
    expect(config.training.augmented).toMatchObject({ key: viewsKey.key, views: 2, seed: 3, rows: 24 });
    const report = await runEvaluate({ head, cacheRoot, batch: 8, concurrency: 2, engine: 'onnx', device: 'cpu' });
    expect(report.metrics.n).toBe(12);
  });

  it('of images without split folders are used only for the rows the hash split puts in train', async () => {
    const data = path.join(tmp, 'flat');
    await makeDataset(data, { classes: ['a', 'b'], perClass: 10, seed: 500 });
    const cacheRoot = path.join(tmp, 'cache-flat');
    const summary = await extractWithTinyBackbone(data, cacheRoot, { augment: { views: 1, seed: 0 } });
    expect(summary.views).toBe(20);
    const { config } = await runTrainHead({ ...HEAD, codes: summary.caches[0].views!.path, cacheRoot, out: path.join(tmp, 'head-flat') });
    expect(config.training.splits.train + config.training.splits.validation).toBe(20);
    expect(config.training.augmented!.rows).toBe(config.training.splits.train);
  });
});
