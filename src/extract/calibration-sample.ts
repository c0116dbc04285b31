/**
 * The images an int8 model is calibrated on: a fixed sample of the user's own training images,
 * chosen by content hash, so that the same dataset always gives the same sample whatever its
 * file names or order. They are decoded and preprocessed exactly as extract feeds the engine.
 *
 * Candidates are the training images (and images without a split), else all; a dataset larger
 * than CANDIDATES is thinned evenly along its listing first, so that choosing costs a read and a
 * hash of at most CANDIDATES files, not of millions.
 */
import { createHash } from 'node:crypto';
import type { Preprocessing } from '../backbones/backbone.ts';
import { preprocessInto } from '../backbones/preprocess.ts';
import type { Pair } from '../backbones/layer-graph.ts';
import type { CalibrationBatch, CalibrationSource } from '../engines/quantize/calibration.ts';
import type { DatasetItem } from './dataset.ts';
import { decodeImage, readImageFile, type DecodeOptions } from './decode-image.ts';

/** Images in a calibration sample (fewer when the dataset has fewer). */
export const CALIBRATION_IMAGES = 128;
const CANDIDATES = 4096;
const BATCH = 8;

export interface SampleOptions {
  readonly key: string;
  readonly items: readonly DatasetItem[];
  readonly decode: Omit<DecodeOptions, 'source'>;
  readonly preprocessing: Preprocessing;
  readonly size: Pair;
  readonly images?: number;
  readonly signal?: AbortSignal;
}

/** The source an engine calibrates from; nothing is read until it asks (a cached calibration never does). */
export function calibrationSource(opts: SampleOptions): CalibrationSource {
  return { key: opts.key, batches: () => sampleBatches(opts) };
}

async function* sampleBatches(opts: SampleOptions): AsyncIterable<CalibrationBatch> {
  const chosen = await chooseSample(opts.items, opts.images ?? CALIBRATION_IMAGES, opts.signal);
  const [h, w] = opts.size;
  const perImage = h * w * 3;
  for (let start = 0; start < chosen.length; start += BATCH) {
    const part = chosen.slice(start, start + BATCH);
    const images = new Float32Array(part.length * perImage);
    part.forEach((c, i) => preprocessInto(c.pixels, { ...opts.preprocessing, size: opts.size }, images, i * perImage));
    yield { images, count: part.length, size: opts.size, sha256: part.map((c) => c.sha256) };
  }

  async function chooseSample(items: readonly DatasetItem[], count: number, signal?: AbortSignal) {
    const training = items.filter((i) => i.split === 'train' || i.split === null);
    const pool = thin(training.length > 0 ? training : items, CANDIDATES);
    const hashed: { item: DatasetItem; sha256: string; bytes: Buffer }[] = [];
    for (const item of pool) {
      // An unreadable image is extract's to report; the sample just does without it.
      const bytes = await readImageFile(item.file, { signal }).catch(() => undefined);
      if (bytes) hashed.push({ item, sha256: createHash('sha256').update(bytes).digest('hex'), bytes });
      // Keep only the lowest hashes seen so far (twice the count, for images that fail to decode).
      if (hashed.length > 4 * count) trim(hashed, 2 * count);
    }
    trim(hashed, count * 2);
    const decoded: { sha256: string; pixels: Uint8Array }[] = [];
    for (const h of hashed.sort((a, b) => (a.sha256 < b.sha256 ? -1 : 1))) {
      if (decoded.length === count) break;
      // Identical content counts once.
      if (decoded.some((d) => d.sha256 === h.sha256)) continue;
      const pixels = await decodeImage(h.bytes, { ...opts.decode, source: h.item.path }).catch(() => undefined);
      if (pixels) decoded.push({ sha256: h.sha256, pixels });
    }
    return decoded;
  }
}

function trim<T extends { sha256: string }>(list: T[], keep: number): void {
  list.sort((a, b) => (a.sha256 < b.sha256 ? -1 : 1));
  list.length = Math.min(list.length, keep);
}

/** At most `n` items, evenly spaced along the list. */
function thin<T>(items: readonly T[], n: number): readonly T[] {
  if (items.length <= n) return items;
  return Array.from({ length: n }, (_, i) => items[Math.floor((i * items.length) / n)]);
}
