import type { Preprocessing } from './backbone.ts';

/**
 * Writes one decoded RGB image (HWC, 8-bit, already at the network size) into `out` at
 * `offset`, as float32 NHWC in the model's own colour convention.
 */
export function preprocessInto(rgb: Uint8Array, prep: Preprocessing, out: Float32Array, offset = 0): void {
  const [h, w] = prep.size;
  const pixels = h * w;
  if (rgb.length !== pixels * 3) {
    throw new Error(`preprocess: expected ${h}×${w}×3 = ${pixels * 3} bytes, got ${rgb.length}`);
  }
  // Channel c of the model reads source channel src[c]: BGR models read R from index 2.
  const src = prep.channels === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  const [m0, m1, m2] = prep.mean;
  const [s0, s1, s2] = [1 / prep.std[0], 1 / prep.std[1], 1 / prep.std[2]];
  for (let p = 0, i = 0, o = offset; p < pixels; p++, i += 3, o += 3) {
    out[o] = (rgb[i + src[0]] - m0) * s0;
    out[o + 1] = (rgb[i + src[1]] - m1) * s1;
    out[o + 2] = (rgb[i + src[2]] - m2) * s2;
  }
}
