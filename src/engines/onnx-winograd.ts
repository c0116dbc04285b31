/**
 * Winograd convolution for 3×3 stride-1 convs, written as plain ONNX ops so that ONNX Runtime
 * runs it with its own Conv / MatMul kernels.
 *
 * Why: onnxruntime's CPU provider convolves directly, and on a VGG conv base its NCHWc kernels
 * already run at ~95% of the FMA peak, so only doing fewer multiplies makes it faster.
 * Winograd F(m×m, 3×3) computes an m×m output block from an n×n input tile (n = m + 2) with
 * n² multiplies per input/output channel pair instead of 9m²: 16 instead of 36 (2.25× fewer)
 * for F(2×2, 3×3), 36 instead of 144 (4× fewer) for F(4×4, 3×3). The transforms around the
 * products cost additions and, above all, memory traffic: the transformed tiles are n²/m²
 * times the size of the maps (4× for F(2,3), 2.25× for F(4,3)). They pay off once C_in·C_out
 * per tile is large next to C_in + C_out (see winogradPays), and F(4,3) beats F(2,3) on every
 * VGG layer (bench/winograd.ts).
 *
 * Per conv, for x [C, N, H, W] (channel-major: see below) and filters w [Co, C, 3, 3]:
 *   1. V = Bᵀ d B for every n×n tile d (stride m, the conv's padding folded in): one 3-D Conv
 *      with a fixed [n², 1, 1, n, n] kernel over the C·N planes as the depth of a single
 *      one-channel volume. Its output channels are the n² tile positions, so V comes out as
 *      [n², C, N·T] (T = tiles per plane) with no transpose.
 *   2. U = G g Gᵀ, computed here at build time from the OIHW weights: [n², Co, C].
 *   3. M[k] = U[k] · V[k], k < n²: one batched MatMul → [n², Co, N·T].
 *   4. Y = Aᵀ M A for every tile: one MatMul with Aᵀ⊗Aᵀ [m², n²] → [m², Co·N·T], i.e. the
 *      m×m output blocks as m² planes; bias; DepthToSpace (DCR) interleaves them back into
 *      [Co, N, m·th, m·tw]; the overhang past the output size is cropped.
 * Keeping maps channel-major (CNHW) is what makes steps 1 and 4 transpose-free; the model
 * builder keeps them so between consecutive Winograd convs (ReLU and pooling do not care) and
 * transposes back to NCHW only where something else reads them.
 */
import type { Pads, Pair } from '../backbones/layer-graph.ts';
import type { WeightTensor } from '../backbones/weights.ts';
import { attr, type OnnxGraph } from '../util/onnx-graph.ts';


/** Transform matrices of Winograd F(m, r): y = Aᵀ[(G g) ⊙ (Bᵀ d)] for a 1-D correlation. */
export interface WinogradMatrices {
  readonly m: number;
  readonly r: number;
  /** Tile size, m + r - 1. */
  readonly n: number;
  /** m × n */
  readonly AT: readonly (readonly number[])[];
  /** n × r */
  readonly G: readonly (readonly number[])[];
  /** n × n */
  readonly BT: readonly (readonly number[])[];
}

/**
 * Toom-Cook construction from n - 1 finite interpolation points plus the point at infinity.
 * The linear convolution s = g * h (deg g = r-1, deg h = m-1) is evaluated at the points,
 * (E_g g) ⊙ (E_h h), and interpolated back (Lagrange, plus M(x) = Π(x - aⱼ) for infinity);
 * the correlation a conv layer computes is its transpose in the data: y = E_hᵀ[(E_g g) ⊙ (Cᵀ d)].
 * The Lagrange denominators go into G, so that Bᵀ and Aᵀ keep small, exactly representable entries.
 */
export function winogradMatrices(m: number, r: number, points: readonly number[]): WinogradMatrices {
  const n = m + r - 1;
  if (points.length !== n - 1) throw new Error(`F(${m},${r}) needs ${n - 1} points, got ${points.length}`);
  if (new Set(points).size !== points.length) throw new Error('interpolation points must differ');
  const mul = (p: number[], q: number[]) => {
    const out = new Array<number>(p.length + q.length - 1).fill(0);
    p.forEach((a, i) => q.forEach((b, j) => (out[i + j] += a * b)));
    return out;
  };
  /** Π (x - aₗ) over all points but the skipped one, as coefficients (constant term first). */
  const poly = (skip: number) => points.reduce((p, a, l) => (l === skip ? p : mul(p, [-a, 1])), [1]);
  const evaluate = (p: number[], x: number) => p.reduceRight((acc, c) => acc * x + c, 0);
  const padded = (p: number[]) => [...p, ...new Array<number>(n - p.length).fill(0)];

  const BT = [...points.map((_, j) => padded(poly(j))), poly(-1)];
  const G = [
    ...points.map((a, j) => {
      const denominator = evaluate(poly(j), a);
      return Array.from({ length: r }, (_, k) => a ** k / denominator);
    }),
    Array.from({ length: r }, (_, k) => (k === r - 1 ? 1 : 0)),
  ];
  const AT = Array.from({ length: m }, (_, i) => [...points.map((a) => a ** i), i === m - 1 ? 1 : 0]);
  return { m, r, n, AT, G, BT };
}

/**
 * Interpolation points per output tile size. F(2,3) uses Lavin & Gray's 0, ±1. For F(4,3),
 * 0, ±1, 2, -1/2 measured less error than their 0, ±1, ±2 at the same speed (relative to
 * direct convolution: about half on single 128-512-channel convs, 1.8e-6 vs 2.4e-6 at VGG16's
 * block5_pool).
 */
export const WINOGRAD_POINTS: Readonly<Record<WinogradTile, readonly number[]>> = {
  2: [0, 1, -1],
  4: [0, 1, -1, 2, -0.5],
};

export type WinogradTile = 2 | 4;

export interface WinogradOptions {
  /** Output tile size m of F(m×m, 3×3); default 4. */
  readonly tile?: WinogradTile;
  /** Every eligible conv, not only those where it pays (winogradPays): for tests. */
  readonly everywhere?: boolean;
}

/** Whether winogradConv computes this convolution: 3×3, stride 1, not dilated. */
export function winogradEligible(kernel: Pair, stride: Pair, dilation: Pair): boolean {
  return kernel[0] === 3 && kernel[1] === 3 && stride[0] === 1 && stride[1] === 1 && dilation[0] === 1 && dilation[1] === 1;
}

/**
 * Whether Winograd is faster than onnxruntime's direct conv for these channel counts. The
 * products save work ∝ C·Co per pixel; the transforms and the larger tensors cost ∝ C + Co.
 * Measured per VGG layer (F(4,3), batch 8, 1 thread, bench/winograd.ts --layer): 64→64 0.65×,
 * 64→128 0.9×, 128→128 ~1× (a few % faster in the whole net on 2 threads), 128→256 1.3×,
 * 256→256 1.4×, 256→512 1.75×, 512→512 1.5-1.9×: it pays from C·Co / (C + Co) = 64 up.
 * GoogLeNet's inception 3×3s (96-192 → 128-384 channels on 28² to 7²) come out even.
 */
export function winogradPays(inChannels: number, outChannels: number): boolean {
  return inChannels * outChannels >= 64 * (inChannels + outChannels);
}

/** U = G g Gᵀ for every filter pair, as [n², Co, C] (k = i·n + j), computed in double. */
export function winogradFilters(w: WeightTensor, mats: WinogradMatrices): WeightTensor {
  const [co, ci, kh, kw] = w.shape;
  const { n, G, r } = mats;
  if (kh !== r || kw !== r) throw new Error(`winograd filters need ${r}×${r} kernels, got ${kh}×${kw}`);
  const out = new Float32Array(n * n * co * ci);
  const gg = new Float64Array(n * r);
  for (let o = 0; o < co; o++) {
    for (let c = 0; c < ci; c++) {
      const base = (o * ci + c) * r * r;
      for (let i = 0; i < n; i++) {
        for (let v = 0; v < r; v++) {
          let s = 0;
          for (let u = 0; u < r; u++) s += G[i][u] * w.data[base + u * r + v];
          gg[i * r + v] = s;
        }
      }
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let v = 0; v < r; v++) s += gg[i * r + v] * G[j][v];
          out[((i * n + j) * co + o) * ci + c] = s;
        }
      }
    }
  }
  return { shape: [n * n, co, ci], data: out };
}

/** Bᵀ ⊗ Bᵀ as a 3-D conv kernel [n², 1, 1, n, n]: output channel i·n + j is (Bᵀ d B)[i][j]. */
function inputKernel({ n, BT }: WinogradMatrices): WeightTensor {
  const data = new Float32Array(n ** 4);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      for (let u = 0; u < n; u++) {
        for (let v = 0; v < n; v++) data[((i * n + j) * n + u) * n + v] = BT[i][u] * BT[j][v];
      }
    }
  }
  return { shape: [n * n, 1, 1, n, n], data };
}

/** Aᵀ ⊗ Aᵀ as [m², n²]: row a·m + b (output pixel), column i·n + j (tile position). */
function outputMatrix({ n, m, AT }: WinogradMatrices): WeightTensor {
  const data = new Float32Array(m * m * n * n);
  for (let a = 0; a < m; a++) {
    for (let b = 0; b < m; b++) {
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) data[(a * m + b) * n * n + i * n + j] = AT[a][i] * AT[b][j];
      }
    }
  }
  return { shape: [m * m, n * n], data };
}

export interface WinogradConvSpec {
  /** The input map, NCHW or (cnhw) [C, N, H, W]. */
  readonly x: string;
  readonly cnhw: boolean;
  /** Base for the names of the values it adds. */
  readonly name: string;
  /** [H, W, C] of the input and [Ho, Wo, Co] of the output, as planned. */
  readonly inShape: readonly number[];
  readonly outShape: readonly number[];
  readonly pads: Pads;
  /** OIHW, 3×3. */
  readonly weight: WeightTensor;
  readonly bias: WeightTensor;
}

/** Adds the convolution, bias included and activation not, as Winograd ops; returns its [Co, N, Ho, Wo] output. */
export function winogradConv(g: OnnxGraph, spec: WinogradConvSpec, tile: WinogradTile = 4): string {
  const { name, pads, weight, bias } = spec;
  const [h, w, c] = spec.inShape;
  const [ho, wo, co] = spec.outShape;
  const mats = winogradMatrices(tile, 3, WINOGRAD_POINTS[tile]);
  const { m, n } = mats;
  const th = Math.ceil(ho / m);
  const tw = Math.ceil(wo / m);
  const fresh = (what: string) => g.fresh(`${name}_${what}`);
  const reshape = (x: string, dims: readonly number[], what: string) => g.op('Reshape', [x, g.int64s(dims)], fresh(what));

  const cn = spec.cnhw ? spec.x : g.op('Transpose', [spec.x], fresh('cnhw'), [attr.ints('perm', [1, 0, 2, 3])]);
  // 1. The C·N planes as the depth of one volume: [1, 1, C·N, H, W] → [1, n², C·N, th, tw].
  //    The bottom/right padding grows to whole tiles; the extra outputs are cropped at the end.
  const volume = reshape(cn, [1, 1, -1, h, w], 'planes');
  const v = g.op('Conv', [volume, g.floats(fresh('bt'), inputKernel(mats))], fresh('v'), [
    attr.ints('kernel_shape', [1, n, n]),
    attr.ints('strides', [1, m, m]),
    attr.ints('pads', [0, pads[0], pads[1], 0, (th - 1) * m + n - h - pads[0], (tw - 1) * m + n - w - pads[1]]),
  ]);
  // 2, 3. [n², Co, C] · [n², C, N·T] → [n², Co, N·T]
  const product = g.op('MatMul', [g.floats(fresh('u'), winogradFilters(weight, mats)), reshape(v, [n * n, c, -1], 'v3')], fresh('m'));
  // 4. [m², n²] · [n², Co·N·T] → [m², Co·N·T], + bias, blocks interleaved: [Co, N, m·th, m·tw].
  const y = g.op('MatMul', [g.floats(fresh('at'), outputMatrix(mats)), reshape(product, [n * n, -1], 'm2')], fresh('y'));
  const biased = g.op('Add', [reshape(y, [m * m, co, -1], 'y3'), g.floats(fresh('b'), { shape: [co, 1], data: bias.data })], fresh('yb'));
  const planes = g.op('DepthToSpace', [reshape(biased, [1, -1, th, tw], 'blocks')], fresh('d2s'), [attr.int('blocksize', m)]);
  const out = reshape(planes, [co, -1, m * th, m * tw], 'out');
  if (m * th === ho && m * tw === wo) return out;
  return g.op('Slice', [out, g.int64s([0, 0]), g.int64s([ho, wo]), g.int64s([2, 3])], fresh('crop'));
}
