/** The demo's generated image set: layout, determinism, pixels, idempotence and the loader's view of it. */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateShapesDataset, SHAPE_CLASSES, SHAPES_GENERATOR_VERSION } from '../src/demo/shapes-dataset.ts';
import { loadDataset } from '../src/extract/dataset.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-shapes-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

const SMALL = { size: 64, perClass: { train: 3, validation: 2, test: 1 } };
const SPLITS = ['train', 'validation', 'test'] as const;

/** Every file under `dir`, relative with '/' separators, sorted. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/'))
    .sort();
}

async function mtimes(dir: string): Promise<Map<string, number>> {
  const files = await listFiles(dir);
  return new Map(await Promise.all(files.map(async (f) => [f, (await stat(path.join(dir, f))).mtimeMs] as const)));
}

describe('generateShapesDataset', () => {
  it('writes split/class folders with the requested number of images each, and dataset.json', async () => {
    const dir = path.join(tmp, 'counts');
    const result = await generateShapesDataset(dir, SMALL);
    expect(result).toEqual({ dir: path.resolve(dir), images: 18, generated: true });
    expect(SHAPE_CLASSES.length).toBe(3);

    const files = await listFiles(dir);
    const expected = ['dataset.json'];
    for (const split of SPLITS) {
      for (const cls of SHAPE_CLASSES) {
        for (let i = 0; i < SMALL.perClass[split]; i++) expected.push(`${split}/${cls}/${cls}-${String(i).padStart(3, '0')}.jpg`);
      }
    }
    expect(files).toEqual(expected.sort());

    const manifest = JSON.parse(await readFile(path.join(dir, 'dataset.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest).toMatchObject({ version: SHAPES_GENERATOR_VERSION, seed: 1, size: 64, perClass: SMALL.perClass, classes: [...SHAPE_CLASSES], images: 18 });
  });

  it('is deterministic: the same seed gives identical bytes, another seed different images', async () => {
    const a = path.join(tmp, 'seed7-a');
    const b = path.join(tmp, 'seed7-b');
    const c = path.join(tmp, 'seed8');
    await generateShapesDataset(a, { ...SMALL, seed: 7 });
    await generateShapesDataset(b, { ...SMALL, seed: 7 });
    await generateShapesDataset(c, { ...SMALL, seed: 8 });
    const files = await listFiles(a);
    expect(await listFiles(b)).toEqual(files);
    expect(await listFiles(c)).toEqual(files);
    for (const f of files) {
      const bytes = await readFile(path.join(a, f));
      expect(Buffer.compare(bytes, await readFile(path.join(b, f))), f).toBe(0);
      if (f.endsWith('.jpg')) expect(Buffer.compare(bytes, await readFile(path.join(c, f))), f).not.toBe(0);
    }
    // Within one set no two images are the same either.
    const images = files.filter((f) => f.endsWith('.jpg'));
    const distinct = new Set(await Promise.all(images.map(async (f) => (await readFile(path.join(a, f))).toString('base64'))));
    expect(distinct.size).toBe(images.length);
  });

  it('writes JPEGs that decode at the requested size and are not blank (default size 224)', async () => {
    const dir = path.join(tmp, 'pixels');
    await generateShapesDataset(dir, { perClass: { train: 2, validation: 1, test: 1 } });
    const images = (await listFiles(dir)).filter((f) => f.endsWith('.jpg'));
    expect(images).toHaveLength(12);
    for (const f of images) {
      const image = sharp(path.join(dir, f));
      const meta = await image.metadata();
      expect(meta, f).toMatchObject({ format: 'jpeg', width: 224, height: 224, channels: 3 });
      // Shrunk to 16×16, pixel noise averages out (a noise-only image measures ~1) while a shape
      // that contrasts with its background still spreads at least one channel widely (~27 and up).
      const { data } = await image.resize(16, 16).raw().toBuffer({ resolveWithObject: true });
      const stats = await sharp(data, { raw: { width: 16, height: 16, channels: 3 } }).stats();
      expect(Math.max(...stats.channels.map((ch) => ch.stdev)), f).toBeGreaterThan(10);
    }
  });

  it('returns generated:false and touches nothing when the set is already complete', async () => {
    const dir = path.join(tmp, 'idempotent');
    await generateShapesDataset(dir, SMALL);
    const before = await mtimes(dir);
    // Coarse file-system timestamps would hide a rewrite made within the same tick.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const again = await generateShapesDataset(dir, SMALL);
    expect(again).toEqual({ dir: path.resolve(dir), images: 18, generated: false });
    expect(await mtimes(dir)).toEqual(before);
  });

  it('regenerates when parameters differ, leaving no image from the old set', async () => {
    const dir = path.join(tmp, 'changed');
    await generateShapesDataset(dir, { size: 48, perClass: { train: 4, validation: 2, test: 2 } });
    const result = await generateShapesDataset(dir, { size: 48, perClass: { train: 2, validation: 1, test: 1 } });
    expect(result).toMatchObject({ images: 12, generated: true });
    expect((await listFiles(dir)).filter((f) => f.endsWith('.jpg'))).toHaveLength(12);
    expect(existsSync(path.join(dir, 'train', 'circle', 'circle-003.jpg'))).toBe(false);

    const resized = await generateShapesDataset(dir, { size: 40, perClass: { train: 2, validation: 1, test: 1 } });
    expect(resized.generated).toBe(true);
    expect(await sharp(path.join(dir, 'test', 'square', 'square-000.jpg')).metadata()).toMatchObject({ width: 40, height: 40 });
  });

  it('regenerates a set with a missing image, or one interrupted before its dataset.json', async () => {
    const dir = path.join(tmp, 'damaged');
    await generateShapesDataset(dir, SMALL);
    const reference = await readFile(path.join(dir, 'train', 'triangle', 'triangle-001.jpg'));

    await rm(path.join(dir, 'train', 'triangle', 'triangle-001.jpg'));
    expect(await generateShapesDataset(dir, SMALL)).toMatchObject({ generated: true });
    expect(Buffer.compare(await readFile(path.join(dir, 'train', 'triangle', 'triangle-001.jpg')), reference)).toBe(0);

    // What a crash mid-generation leaves: images and the in-progress marker, no dataset.json.
    await rm(path.join(dir, 'dataset.json'));
    await writeFile(path.join(dir, '.generating'), '');
    expect(await generateShapesDataset(dir, SMALL)).toMatchObject({ generated: true });
    expect(existsSync(path.join(dir, 'dataset.json'))).toBe(true);
    expect(existsSync(path.join(dir, '.generating'))).toBe(false);
  });

  it("refuses to overwrite a folder that holds someone else's images", async () => {
    const dir = path.join(tmp, 'foreign');
    await mkdir(path.join(dir, 'train', 'cats'), { recursive: true });
    await writeFile(path.join(dir, 'train', 'cats', 'tom.jpg'), 'precious');
    await expect(generateShapesDataset(dir, SMALL)).rejects.toThrow(/refusing to overwrite/);
    expect(await readFile(path.join(dir, 'train', 'cats', 'tom.jpg'), 'utf8')).toBe('precious');
  });

  it('rejects parameters that cannot make a usable set', async () => {
    const dir = path.join(tmp, 'invalid');
    await expect(generateShapesDataset(dir, { size: 8 })).rejects.toThrow(/size/);
    await expect(generateShapesDataset(dir, { seed: -1 })).rejects.toThrow(/seed/);
    await expect(generateShapesDataset(dir, { perClass: { train: 1.5, validation: 1, test: 1 } })).rejects.toThrow(/train/);
    await expect(generateShapesDataset(dir, { perClass: { train: 0, validation: 0, test: 0 } })).rejects.toThrow(/0 images/);
    expect(existsSync(dir)).toBe(false);
  });

  it('is read by loadDataset with the right labels and splits', async () => {
    const dir = path.join(tmp, 'counts');
    await generateShapesDataset(dir, SMALL);
    const dataset = await loadDataset(dir);
    expect(dataset.classes).toEqual([...SHAPE_CLASSES].sort());
    expect(dataset.items).toHaveLength(18);
    expect(dataset.unlisted).toEqual([]);
    for (const item of dataset.items) {
      const [split, label, name] = item.path.split('/');
      expect(item.split).toBe(split);
      expect(item.label).toBe(label);
      expect(name.startsWith(`${label}-`)).toBe(true);
    }
    for (const split of SPLITS) {
      for (const cls of SHAPE_CLASSES) {
        expect(dataset.items.filter((i) => i.split === split && i.label === cls)).toHaveLength(SMALL.perClass[split]);
      }
    }
  });
});
