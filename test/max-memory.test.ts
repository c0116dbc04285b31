/** train-head --max-memory: codes bigger than the budget train from disk, batch by batch, to the very same head. */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTrainHead, type TrainHeadCommand } from '../src/train-head/train-command.ts';
import { extractWithTinyBackbone } from './helpers/extract-options.ts';
import { makeDataset } from './helpers/make-dataset.ts';

let tmp: string;
let cacheRoot: string;
let imagesKey: string;
let viewsKey: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-maxmem-'));
  cacheRoot = path.join(tmp, 'cache');
  await makeDataset(path.join(tmp, 'data'), { classes: ['a', 'b', 'c'], perClass: 10 });
  // Unpooled block2_pool: 8×8×16 = 1024 floats per image, 4 KB a row.
  const summary = await extractWithTinyBackbone(path.join(tmp, 'data'), cacheRoot, { cut: { layer: 'block2_pool' }, augment: { views: 2, seed: 1 }, maxShardBytes: 40_000 });
  imagesKey = summary.path;
  viewsKey = summary.caches[0].views!.path;
}, 60_000);
afterAll(() => rm(tmp, { recursive: true, force: true }));

const BASE: Omit<TrainHeadCommand, 'codes' | 'out'> = {
  cacheRoot: '',
  hidden: [16],
  dropout: 0.5,
  optimizer: 'adam',
  momentum: 0,
  batch: 8,
  epochs: 3,
  l2: 1e-4,
  classWeights: 'balanced',
  seed: 4,
  patience: null,
  val: 0.3,
  test: 0,
  trainer: 'onnx',
  standardize: true,
  json: true,
  quiet: true,
};

describe('train-head --max-memory', () => {
  for (const [name, key] of [
    ['images', () => imagesKey],
    ['images and augmented views', () => viewsKey],
  ] as const) {
    it(`trains ${name} from disk to the same weights as in memory`, async () => {
      const inMemory = path.join(tmp, `${name}-memory`);
      const onDisk = path.join(tmp, `${name}-disk`);
      const a = await runTrainHead({ ...BASE, cacheRoot, codes: key(), out: inMemory });
      // 10 KB: far below the ~100 KB of codes, so every batch is read from the scratch file.
      const b = await runTrainHead({ ...BASE, cacheRoot, codes: key(), out: onDisk, maxMemory: 10_000 });
      expect(a.storage).toBe('memory');
      expect(b.storage).toMatch(/\.scratch/);
      expect(b.config.training.splits).toEqual(a.config.training.splits);
      expect(b.history.map((h) => [h.loss, h.acc, h.valLoss])).toEqual(a.history.map((h) => [h.loss, h.acc, h.valLoss]));
      const weights = (dir: string) => readFile(path.join(dir, 'weights.safetensors'));
      expect((await weights(onDisk)).equals(await weights(inMemory))).toBe(true);
      // The scratch files are gone.
      const scratch = path.join(cacheRoot, '.scratch');
      expect(existsSync(scratch) ? await readdir(scratch) : []).toEqual([]);
    });
  }
});
