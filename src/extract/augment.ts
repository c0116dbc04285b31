/**
 * Cached augmentation: K random views of an image, each a deterministic function of
 * (seed, image content, view index), so a resumed or repeated extract recomputes exactly the
 * same views and the cache can hold their codes like any other. Keras' ImageDataGenerator and
 * retrain.py draw fresh views every epoch and so cannot cache; a fixed set of K views per image
 * trades some variety for never running the backbone twice.
 *
 * The recipe, in this order: horizontal flip (p = 0.5), rotation by up to ±15° (corners filled
 * with the background colour), a crop of 80–100% of each side at a random position (zoom and
 * shift), and colour jitter (brightness and saturation ×0.8–1.2). The view then goes through the
 * same resize as the image itself.
 */
import { createHash } from 'node:crypto';
import sharp, { type OutputInfo } from 'sharp';
import type { AugmentSpec } from '../cache/code-spec.ts';
import { mulberry32 } from '../util/numbers.ts';
import { DecodeError, DEFAULT_MAX_PIXELS, resizeRawImage, type DecodeOptions } from './decode-image.ts';

/** Bump with any change to the transformations below: it is part of the cache key. */
export const AUGMENT_RECIPE = 'flip0.5-rot15-crop0.8-jitter0.2/v1';

export function augmentSpec(views: number, seed: number): AugmentSpec {
  return { views, seed, recipe: AUGMENT_RECIPE };
}

export interface ViewParams {
  readonly flip: boolean;
  /** Degrees, clockwise. */
  readonly angle: number;
  /** Crop size as a fraction of each side, and the crop's position as a fraction of the slack. */
  readonly scale: number;
  readonly offsetX: number;
  readonly offsetY: number;
  readonly brightness: number;
  readonly saturation: number;
}

/** The random choices of one view, from (seed, content hash, view index) alone. */
export function viewParams(seed: number, sha256: string, view: number): ViewParams {
  const digest = createHash('sha256').update(`${seed}\u0000${sha256}\u0000${view}`).digest();
  const random = mulberry32(digest.readUInt32LE(0));
  const between = (lo: number, hi: number) => lo + (hi - lo) * random();
  return {
    flip: random() < 0.5,
    angle: between(-15, 15),
    scale: between(0.8, 1),
    offsetX: random(),
    offsetY: random(),
    brightness: between(0.8, 1.2),
    saturation: between(0.8, 1.2),
  };
}

/** View `view` (≥ 1) of the image in `bytes`, as H×W×3 bytes at the network size. */
export async function augmentedView(bytes: Buffer, sha256: string, view: number, seed: number, opts: DecodeOptions): Promise<Uint8Array> {
  const p = viewParams(seed, sha256, view);
  const background = opts.background ?? { r: 255, g: 255, b: 255 };
  let turned: { data: Buffer; info: OutputInfo };
  try {
    let image = sharp(bytes, { failOn: 'error', autoOrient: true, limitInputPixels: opts.maxPixels ?? DEFAULT_MAX_PIXELS, pages: 1 }).flatten({ background });
    if (p.flip) image = image.flop();
    turned = await image.rotate(p.angle, { background }).raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new DecodeError('corrupt', opts.source, `cannot make augmented view ${view}: ${(err as Error).message}`);
  }
  const { width, height, channels } = turned.info;
  const w = Math.max(1, Math.round(width * p.scale));
  const h = Math.max(1, Math.round(height * p.scale));
  const left = Math.round((width - w) * p.offsetX);
  const top = Math.round((height - h) * p.offsetY);
  const pixels = await sharp(turned.data, { raw: { width, height, channels } })
    .extract({ left, top, width: w, height: h })
    .modulate({ brightness: p.brightness, saturation: p.saturation })
    .raw()
    .toBuffer({ resolveWithObject: true });
  // The same final resize as the image itself gets, straight from the pixels.
  return resizeRawImage(pixels.data, { width: pixels.info.width, height: pixels.info.height, channels: pixels.info.channels === 4 ? 4 : 3 }, opts);
}
