/** Blocked kNN on onnxruntime against a brute-force loop, across block edges. */
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../src/util/numbers.ts';
import { nearestNeighbours, normalizeRows, similarityVectors } from '../src/audit/knn.ts';

function randomCodes(n: number, dim: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length: n * dim }, () => random() * 2 - 1);
}

/** Every other row ranked by inner product, best first (ties: lower index), in float64. */
function bruteForce(x: Float32Array, n: number, dim: number, k: number): { indices: number[][]; sims: number[][] } {
  const indices: number[][] = [];
  const sims: number[][] = [];
  for (let r = 0; r < n; r++) {
    const scored: [number, number][] = [];
    for (let o = 0; o < n; o++) {
      if (o === r) continue;
      let s = 0;
      for (let d = 0; d < dim; d++) s += x[r * dim + d] * x[o * dim + d];
      scored.push([s, o]);
    }
    scored.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    indices.push(scored.slice(0, k).map(([, o]) => o));
    sims.push(scored.slice(0, k).map(([s]) => s));
  }
  return { indices, sims };
}

describe('nearestNeighbours', () => {
  it('finds exactly the brute-force neighbours, with blocks that do not divide n', async () => {
    const [n, dim, k] = [301, 24, 5];
    const x = normalizeRows(randomCodes(n, dim, 7), n, dim);
    const expected = bruteForce(x, n, dim, k);
    for (const block of [64, 100, 1000]) {
      const got = await nearestNeighbours(x, n, dim, k, { block, threads: 1 });
      for (let r = 0; r < n; r++) {
        expect([...got.indices.subarray(r * k, (r + 1) * k)], `row ${r}, block ${block}`).toEqual(expected.indices[r]);
        for (let t = 0; t < k; t++) expect(got.similarities[r * k + t]).toBeCloseTo(expected.sims[r][t], 5);
      }
    }
  });

  it('finds a planted near-copy as the first neighbour, never the row itself', async () => {
    const [n, dim] = [130, 16];
    const codes = randomCodes(n, dim, 3);
    // Row 120 is row 5 plus a little noise, in another block than row 5.
    for (let d = 0; d < dim; d++) codes[120 * dim + d] = codes[5 * dim + d] * 1.7 + 0.001 * Math.sin(d);
    const got = await nearestNeighbours(normalizeRows(codes, n, dim), n, dim, 3, { block: 32, threads: 1 });
    expect(got.indices[5 * 3]).toBe(120);
    expect(got.indices[120 * 3]).toBe(5);
    expect(got.similarities[5 * 3]).toBeGreaterThan(0.9999);
    for (let r = 0; r < n; r++) expect([...got.indices.subarray(r * 3, r * 3 + 3)]).not.toContain(r);
  });

  it('pads with -1 when there are fewer than k other rows', async () => {
    const x = normalizeRows(randomCodes(3, 4, 1), 3, 4);
    const got = await nearestNeighbours(x, 3, 4, 4, { block: 2, threads: 1 });
    for (let r = 0; r < 3; r++) {
      expect([...got.indices.subarray(r * 4, r * 4 + 4)].filter((i) => i >= 0).sort()).toEqual([0, 1, 2].filter((o) => o !== r));
      expect(got.indices[r * 4 + 3]).toBe(-1);
    }
  });

  it('normalises rows to unit length and leaves an all-zero row at zero', () => {
    const x = normalizeRows(Float32Array.of(3, 4, 0, 0), 2, 2);
    expect([...x]).toEqual([0.6, 0.8, 0, 0].map((v) => Math.fround(v)));
  });

  it('compares signed square roots of the codes, at unit length, of the rows asked for', () => {
    const codes = Float32Array.of(9, 16, 0, 0, -4, 0);
    const v = similarityVectors(codes, 3, 2);
    expect([...v]).toEqual([3 / 5, 4 / 5, 0, 0, -1, 0].map((x) => expect.closeTo(x, 6)));
    expect([...similarityVectors(codes, 3, 2, [2, 0])]).toEqual([-1, 0, 3 / 5, 4 / 5].map((x) => expect.closeTo(x, 6)));
  });
});
