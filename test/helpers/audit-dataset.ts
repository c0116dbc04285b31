/**
 * A small labelled set with one planted problem of each kind audit looks for: class a is red,
 * class b blue (random shapes on top, so every image differs), in train/ and validation/.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { mulberry32 } from '../../src/util/numbers.ts';

export const PLANTED = {
  /** Byte-identical to train/a/a0.png, in validation: an exact-duplicate leak. */
  exactLeak: ['train/a/a0.png', 'validation/a/copy-of-a0.png'],
  /** Byte-identical to train/a/a1.png, under label b: a conflict. */
  conflict: ['train/a/a1.png', 'train/b/conflict-a1.png'],
  /** train/b/b2.png resized to 56 px and re-encoded as JPEG, in validation: a near-duplicate leak. */
  nearLeak: ['train/b/b2.png', 'validation/b/near-b2.jpg'],
  /** A red (class a) image filed under b. */
  mislabelled: 'train/b/wrong.png',
} as const;

async function shapeImage(file: string, red: boolean, random: () => number): Promise<void> {
  const byte = (lo: number, span: number) => lo + Math.floor(random() * span);
  const background = red ? { r: byte(200, 55), g: byte(0, 80), b: byte(0, 80) } : { r: byte(0, 80), g: byte(0, 80), b: byte(200, 55) };
  const circle = `<circle cx="${10 + random() * 44}" cy="${10 + random() * 44}" r="${6 + random() * 12}" fill="rgb(${byte(0, 255)},${byte(0, 255)},${byte(0, 255)})"/>`;
  const rect = `<rect x="${random() * 40}" y="${random() * 40}" width="14" height="9" fill="rgb(${byte(0, 255)},200,40)"/>`;
  await mkdir(path.dirname(file), { recursive: true });
  await sharp({ create: { width: 64, height: 64, channels: 3, background } })
    .composite([{ input: Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">${circle}${rect}</svg>`) }])
    .png()
    .toFile(file);
}

/** 30 + 10 images per class in train/ and validation/, plus the PLANTED ones: 84 rows. */
export async function makeAuditDataset(root: string): Promise<void> {
  const random = mulberry32(42);
  for (const split of ['train', 'validation']) {
    for (const cls of ['a', 'b']) {
      for (let i = 0; i < (split === 'train' ? 30 : 10); i++) await shapeImage(path.join(root, split, cls, `${cls}${i}.png`), cls === 'a', random);
    }
  }
  await copyFile(path.join(root, PLANTED.exactLeak[0]), path.join(root, PLANTED.exactLeak[1]));
  await copyFile(path.join(root, PLANTED.conflict[0]), path.join(root, PLANTED.conflict[1]));
  await sharp(path.join(root, PLANTED.nearLeak[0])).resize(56, 56).jpeg({ quality: 90 }).toFile(path.join(root, PLANTED.nearLeak[1]));
  await shapeImage(path.join(root, PLANTED.mislabelled), true, random);
}
