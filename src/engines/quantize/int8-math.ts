/**
 * The arithmetic of int8 quantisation, as ONNX's QuantizeLinear defines it:
 * q = saturate(round_half_even(x / scale) + zero_point).
 */

/** A calibrated float range of an activation tensor: [low, high], with low ≤ 0 ≤ high. */
export type Range = readonly [number, number];

export interface ActivationParams {
  readonly scale: number;
  /** uint8 */
  readonly zeroPoint: number;
}

/**
 * uint8, asymmetric: the range is widened to hold 0 exactly (zero padding and Relu's floor must
 * be representable), and a range of a single value gets scale 1 rather than 0.
 */
export function activationParams([low, high]: Range): ActivationParams {
  const lo = Math.min(low, 0);
  const hi = Math.max(high, 0);
  const scale = hi > lo ? (hi - lo) / 255 : 1;
  const zeroPoint = Math.min(255, Math.max(0, Math.round(-lo / scale)));
  return { scale: Math.fround(scale), zeroPoint };
}

/**
 * Weights take 7 bits, not 8. onnxruntime's u8×s8 kernel for CPUs without VNNI
 * (AVX2, and AVX-512 before VNNI) multiplies with vpmaddubsw, which adds each pair of products in
 * a saturating 16-bit sum: 2 × 255 × 127 = 64770 overflows it, and on such a CPU 8-bit weights
 * gave codes with a cosine of only 0.80-0.96 to fp32's (bench:int8-accuracy, AMD EPYC, AVX2).
 * With |w| ≤ 63 no pair can overflow (2 × 255 × 63 = 32130), VNNI and AMX sum in 32 bits anyway,
 * so every CPU computes the same exact integer sums, and one int8 key holds the same codes
 * whichever machine wrote them. onnxruntime's own quantiser calls this reduce_range.
 *
 * Depthwise convs keep 8 bits: their kernel adds no pairs in 16 bits (exact at the largest
 * products on AVX2, tested), and with 9 weights a channel they lose the most from a bit less
 * (Teachable Machine's MobileNetV2 on flowers: mean cosine to fp32 0.896 with 7 bits everywhere,
 * 0.969 with 8 in its depthwise convs).
 */
export const WEIGHT_MAX = 63;
export const DEPTHWISE_WEIGHT_MAX = 127;

/**
 * Symmetric per channel along `axis`: scale = max|w| / max, zero point 0, int8 storage. A channel
 * of zeros gets scale 1 (all its values are 0 either way).
 */
export function quantizeWeights(w: Float32Array, dims: readonly number[], axis: number, max = WEIGHT_MAX): { values: Int8Array; scales: Float32Array } {
  const channels = dims[axis];
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channelOf = (i: number) => Math.floor(i / inner) % channels;
  const maxAbs = new Float32Array(channels);
  for (let i = 0; i < w.length; i++) {
    const c = channelOf(i);
    const a = Math.abs(w[i]);
    if (a > maxAbs[c]) maxAbs[c] = a;
  }
  const scales = maxAbs.map((m) => (m > 0 ? m / max : 1));
  const values = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) values[i] = clamp(roundHalfEven(w[i] / scales[channelOf(i)]), -max, max);
  return { values, scales };
}

/** int32 biases at scale input × weight (what int8 kernels accumulate in), zero point 0. */
export function quantizeBias(b: Float32Array, inputScale: number, weightScales: Float32Array): { values: Int32Array; scales: Float32Array } {
  const scales = weightScales.map((s) => inputScale * s);
  const values = new Int32Array(b.length);
  for (let i = 0; i < b.length; i++) values[i] = clamp(roundHalfEven(b[i] / scales[i]), -(2 ** 31) + 1, 2 ** 31 - 1);
  return { values, scales };
}

export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds halves up; ONNX rounds them to even.
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}
