/**
 * Decodes any image sharp reads into 8-bit RGB at the network's input size.
 * EXIF orientation is applied; grey, CMYK, 16-bit and alpha all end as 8-bit sRGB, with
 * alpha flattened on `background`.
 */
import sharp from 'sharp';
import type { Pair } from '../backbones/layer-graph.ts';

/** squash: stretch to size (Keras' load_img); crop: centre crop; pad: letterbox. */
export type ResizeMode = 'squash' | 'crop' | 'pad';
export type Interpolation = 'nearest' | 'linear' | 'cubic' | 'lanczos3';

export interface DecodeOptions {
  readonly size: Pair;
  readonly resize?: ResizeMode;
  readonly interpolation?: Interpolation;
  /** Alpha is flattened on this colour, and pad mode fills with it. */
  readonly background?: { r: number; g: number; b: number };
}

export const DEFAULT_BACKGROUND = { r: 255, g: 255, b: 255 } as const;

export async function decodeImage(input: string | Buffer, opts: DecodeOptions): Promise<Uint8Array> {
  const [h, w] = opts.size;
  const background = opts.background ?? DEFAULT_BACKGROUND;
  const fit = opts.resize === 'crop' ? 'cover' : opts.resize === 'pad' ? 'contain' : 'fill';
  const { data, info } = await sharp(input, { failOn: 'error' })
    .rotate()
    .flatten({ background })
    .toColourspace('srgb')
    .resize(w, h, { fit, kernel: opts.interpolation ?? 'linear', background })
    .removeAlpha()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== w || info.height !== h || info.channels !== 3) {
    throw new Error(`decoded to ${info.width}×${info.height}×${info.channels}, expected ${w}×${h}×3`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
