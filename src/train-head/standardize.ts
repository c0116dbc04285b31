/**
 * Per-feature standardisation of codes, z = (x − μ) / σ with μ and σ from the training rows,
 * which logistic regression needs to converge in a few epochs on raw CNN features.
 *
 * It is folded into the first dense layer after training (W' = W / σ, b' = b − W' · μ), so a
 * saved head stays a plain network on raw codes: predict, evaluate and export need no extra step.
 */
import type { DenseParams, HeadParams } from './trainer.ts';

export interface Standardizer {
  readonly mean: Float32Array;
  readonly std: Float32Array;
}

export function fitStandardizer(x: Float32Array, n: number, dim: number): Standardizer {
  return fitStandardizerFrom([x.subarray(0, n * dim)], dim);
}

/** The same, from the rows in consecutive chunks (codes read from disk a chunk at a time). */
export function fitStandardizerFrom(chunks: Iterable<Float32Array>, dim: number): Standardizer {
  const mean = new Float64Array(dim);
  const sq = new Float64Array(dim);
  let n = 0;
  for (const x of chunks) {
    const rows = x.length / dim;
    for (let i = 0; i < rows; i++) {
      for (let d = 0; d < dim; d++) {
        const v = x[i * dim + d];
        mean[d] += v;
        sq[d] += v * v;
      }
    }
    n += rows;
  }
  const std = new Float32Array(dim);
  for (let d = 0; d < dim; d++) {
    mean[d] /= Math.max(n, 1);
    const variance = sq[d] / Math.max(n, 1) - mean[d] * mean[d];
    // A constant feature (often all-zero after ReLU) carries no signal; leave it unscaled.
    std[d] = variance > 1e-12 ? Math.sqrt(variance) : 1;
  }
  return { mean: Float32Array.from(mean), std };
}

export function standardize(s: Standardizer, x: Float32Array, n: number): Float32Array {
  const dim = s.mean.length;
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < dim; d++) out[i * dim + d] = (x[i * dim + d] - s.mean[d]) / s.std[d];
  }
  return out;
}

/** The same head on raw codes: the standardisation moved into the first layer's weights. */
export function foldStandardizer(s: Standardizer, params: HeadParams): HeadParams {
  const [first, ...rest] = params;
  const inputs = s.mean.length;
  const outputs = first.bias.length;
  const weight = new Float32Array(first.weight.length);
  const bias = Float32Array.from(first.bias);
  for (let o = 0; o < outputs; o++) {
    let shift = 0;
    for (let i = 0; i < inputs; i++) {
      const w = first.weight[o * inputs + i] / s.std[i];
      weight[o * inputs + i] = w;
      shift += w * s.mean[i];
    }
    bias[o] -= shift;
  }
  const folded: DenseParams = { weight, bias };
  return [folded, ...rest];
}
