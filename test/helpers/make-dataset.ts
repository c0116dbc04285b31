/** Small labelled image folders made on the fly: each image a distinct, deterministic PNG. */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';

export interface MadeImage {
  readonly file: string;
  /** Relative to the dataset root, '/'-separated. */
  readonly path: string;
  readonly label: string;
  readonly split: string | null;
}

/** A w×h PNG whose pixels depend on `seed`, so every image has distinct content. */
export async function writeNoisePng(file: string, seed: number, size = 24): Promise<void> {
  const pixels = Buffer.alloc(size * size * 3);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < pixels.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    pixels[i] = (x >>> 0) & 0xff;
  }
  await mkdir(path.dirname(file), { recursive: true });
  await sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).png().toFile(file);
}

export async function makeDataset(
  root: string,
  opts: { classes: readonly string[]; perClass: number; splits?: readonly string[]; seed?: number },
): Promise<MadeImage[]> {
  const made: MadeImage[] = [];
  let seed = opts.seed ?? 1;
  for (const split of opts.splits ?? [null]) {
    for (const label of opts.classes) {
      for (let i = 0; i < opts.perClass; i++) {
        const rel = [split, label, `img${String(i).padStart(4, '0')}.png`].filter(Boolean).join('/');
        const file = path.join(root, rel);
        await writeNoisePng(file, seed++);
        made.push({ file, path: rel, label, split });
      }
    }
  }
  return made;
}
