/** Small numeric helpers several stages share. */

/** Elements in a tensor of this shape (1 for a scalar). */
export function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** A fraction as a percentage for people: `pct(0.9812)` is "98.12%", null is "-". */
export function pct(v: number | null, digits = 2): string {
  return v === null ? '-' : `${(v * 100).toFixed(digits)}%`;
}

/** A small, fast, seedable PRNG (mulberry32); Math.random cannot be seeded. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
