/**
 * Decoding of the element types weight files use into float32, the only type the engines take.
 * Byte buffers are little-endian, as every format here stores them.
 */
import { product } from '../../util/numbers.ts';

export function elementCount(shape: readonly number[]): number {
  return product(shape);
}

/** True for a shape of non-negative integer dimensions (rank 0 included). */
export function isShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((d) => Number.isSafeInteger(d) && d >= 0);
}

/** Reinterprets little-endian bytes as u16 values, copying only when the view is misaligned. */
function u16View(bytes: Uint8Array): Uint16Array {
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 1);
  return new Uint16Array(bytes.slice().buffer, 0, bytes.byteLength >> 1);
}

/** IEEE 754 binary16 (as in safetensors F16, TF.js float16 quantization, h5 '<f2'). */
export function decodeFloat16(bytes: Uint8Array): Float32Array {
  const half = u16View(bytes);
  const out = new Float32Array(half.length);
  for (let i = 0; i < half.length; i++) out[i] = halfToFloat(half[i]);
  return out;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero and subnormals
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** bfloat16 is the top half of a float32, so widening is a shift. */
export function decodeBFloat16(bytes: Uint8Array): Float32Array {
  const half = u16View(bytes);
  const bits = new Uint32Array(half.length);
  for (let i = 0; i < half.length; i++) bits[i] = half[i] << 16;
  return new Float32Array(bits.buffer);
}

export function decodeFloat64(bytes: Uint8Array): Float32Array {
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  return Float32Array.from(new Float64Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >> 3));
}

/** A float32 view of little-endian bytes, copying only when the view is misaligned. */
export function decodeFloat32(bytes: Uint8Array): Float32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >> 2);
}
