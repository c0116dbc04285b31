/**
 * Winograd convolution for 3×3 stride-1 convs, written as plain ONNX ops so that ONNX Runtime
 * runs it with its own fast Conv / MatMul kernels.
 *
 * Why: on CPUs without a Winograd kernel in the runtime (onnxruntime's CPU provider convolves
 * directly), a VGG conv base is bound by its multiplies. Winograd F(m×m, 3×3) computes an
 * m×m output block from an n×n input tile (n = m + 2) with n² multiplies per input/output
 * channel pair instead of 9m²: 16 vs 36 (2.25× fewer) for F(2×2, 3×3), 36 vs 144 (4× fewer)
 * for F(4×4, 3×3). The transforms around them cost additions and memory traffic, which the
 * channel-to-channel products (Cin·Cout per tile) pay for once channels are wide.
 *
 * Per conv, for input x [N, C, H, W] and filters w [Co, C, 3, 3]:
 *   1. V = Bᵀ d B for every tile d (n×n, stride m, padding folded in): one Conv with a fixed
 *      n²×n×n kernel on x viewed as N·C one-channel images → [N·C, n², th, tw].
 *   2. U = G g Gᵀ, computed here at build time from the OIHW weights → [n², Co, C].
 *   3. M[k] = U[k] · V[k] for each of the n² tile positions k: one batched MatMul over
 *      [n², C, N·th·tw] (a transpose puts k outermost first).
 *   4. Y = Aᵀ M A back to m×m output blocks, placed side by side: a ConvTranspose with an
 *      m×m kernel and stride m (its output blocks do not overlap), which also adds the bias;
 *      a transpose first puts the n² values of each tile next to each other again. Then the
 *      padding overhang is cropped.
 */
import onnxProto from 'onnx-proto';
import type { onnx as proto } from 'onnx-proto';
import type { Pads } from '../backbones/layer-graph.ts';
import type { WeightTensor } from '../backbones/weights.ts';

const { onnx } = onnxProto;

/** What winogradConv needs from the model builder (onnx-model.ts's GraphBuilder). */
export interface OnnxGraphSink {
  fresh(base: string): string;
  add(opType: string, inputs: string[], output: string, attribute?: proto.IAttributeProto[], domain?: string): string;
  floats(name: string, t: WeightTensor): string;
  int64s(name: string, values: readonly number[]): string;
}

const ints = (name: string, v: readonly number[]): proto.IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: [...v] });
const int = (name: string, i: number): proto.IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INT, i });

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
 * Linear convolution s = g * h (deg g = r-1, deg h = m-1) is evaluated at the points
 * (E_g g ⊙ E_h h), then interpolated (Lagrange, plus M(x) = Π(x - aⱼ) for infinity); the
 * correlation a conv layer computes is its transpose in the data: y = E_hᵀ[(E_g g) ⊙ (Cᵀ d)].
 * The Lagrange denominators go into G so that Bᵀ and Aᵀ keep small integer entries.
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
  const poly = (skip: number) => points.reduce((p, a, j) => (j === skip ? p : mul(p, [-a, 1])), [1]);
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

/** Interpolation points per output tile size; 0, ±1, ±2 … are Lavin & Gray's. */
export const WINOGRAD_POINTS: Readonly<Record<number, readonly number[]>> = {
  2: [0, 1, -1],
  3: [0, 1, -1, 2],
  4: [0, 1, -1, 2, -2],
  6: [0, 1, -1, 2, -2, 0.5, -0.5],
};

export interface WinogradConvOptions {
  /** Output tile size m of F(m×m, 3×3). */
  readonly tile: number;
  readonly points?: readonly number[];
  /** Layout of the batched product: [n², C, N·T] (one big GEMM per k) or [n², N, C, T]. */
  readonly layout?: 'cnt' | 'nct' | 'tb' | '3d';
  /** Output transform as one grouped ConvTranspose (with bias) or one over N·Co single channels. */
  readonly output?: 'grouped' | 'batched';
}

/** U = G g Gᵀ for every filter pair, as [n², Co, C] (k = i·n + j). */
export function winogradFilters(w: WeightTensor, mats: WinogradMatrices): WeightTensor {
  const [co, ci, kh, kw] = w.shape;
  const { n, G, r } = mats;
  if (kh !== r || kw !== r) throw new Error(`winograd filters need ${r}×${r} kernels, got ${kh}×${kw}`);
  const out = new Float32Array(n * n * co * ci);
  const gg = new Float64Array(n * r);
  for (let o = 0; o < co; o++) {
    for (let c = 0; c < ci; c++) {
      const base = (o * ci + c) * r * r;
      // gg = G g (n × r), then U = gg Gᵀ (n × n), in double.
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

export interface WinogradConvSpec {
  /** NCHW input value ('3d' also takes CNHW). */
  readonly x: string;
  /** Layout of x; '3d' returns CNHW. */
  readonly layout?: 'nchw' | 'cnhw';
  readonly name: string;
  /** [H, W, C] of the input and [Ho, Wo, Co] of the output, as planned. */
  readonly inShape: readonly number[];
  readonly outShape: readonly number[];
  readonly pads: Pads;
  /** OIHW, 3×3. */
  readonly weight: WeightTensor;
  readonly bias: WeightTensor;
}

/** Whether winogradConv can compute this convolution. */
export function winogradEligible(kernel: readonly number[], stride: readonly number[], dilation: readonly number[]): boolean {
  return kernel[0] === 3 && kernel[1] === 3 && stride.every((s) => s === 1) && dilation.every((d) => d === 1);
}

/** Emits the conv (with bias, before activation) as Winograd ops; returns the NCHW output value. */
export function winogradConv(g: OnnxGraphSink, spec: WinogradConvSpec, opts: WinogradConvOptions): string {
  const { x, name, pads, weight, bias } = spec;
  const [h, w, c] = spec.inShape;
  const [ho, wo, co] = spec.outShape;
  const m = opts.tile;
  const mats = winogradMatrices(m, 3, opts.points ?? WINOGRAD_POINTS[m]);
  const n = mats.n;
  const nn = n * n;
  const th = Math.ceil(ho / m);
  const tw = Math.ceil(wo / m);
  const tiles = th * tw;
  const layout = opts.layout ?? 'cnt';
  const output = opts.output ?? 'grouped';
  const shape = (values: readonly number[]) => g.int64s(g.fresh(`${name}_shape`), values);

  if (layout === 'tb') return winogradConvTb(g, spec, mats, shape);
  if (layout === '3d') return winogradConv3d(g, spec, mats, shape);
  // 1. Input transform: every channel of every image as its own one-channel image.
  const inKernel = new Float32Array(nn * n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      for (let u = 0; u < n; u++) {
        for (let v = 0; v < n; v++) inKernel[((i * n + j) * n + u) * n + v] = mats.BT[i][u] * mats.BT[j][v];
      }
    }
  }
  const planes = g.add('Reshape', [x, shape([-1, 1, h, w])], g.fresh(`${name}_planes`));
  const tilePads = [pads[0], pads[1], (th - 1) * m + n - h - pads[0], (tw - 1) * m + n - w - pads[1]];
  const v = g.add('Conv', [planes, g.floats(g.fresh(`${name}_bt`), { shape: [nn, 1, n, n], data: inKernel })], g.fresh(`${name}_v`), [
    ints('kernel_shape', [n, n]),
    ints('strides', [m, m]),
    ints('pads', tilePads),
  ]);

  // 2 + 3. Filter transform and the n² products.
  const u = winogradFilters(weight, mats);
  const vByK = g.add('Reshape', [v, shape([-1, c, nn, tiles])], g.fresh(`${name}_vr`));
  let product: string;
  if (layout === 'cnt') {
    const vt = g.add('Transpose', [vByK], g.fresh(`${name}_vt`), [ints('perm', [2, 1, 0, 3])]); // [n², C, N, T]
    const vm = g.add('Reshape', [vt, shape([nn, c, -1])], g.fresh(`${name}_vm`));
    const mm = g.add('MatMul', [g.floats(g.fresh(`${name}_u`), u), vm], g.fresh(`${name}_m`)); // [n², Co, N·T]
    const mr = g.add('Reshape', [mm, shape([nn, co, -1, tiles])], g.fresh(`${name}_mr`));
    product = g.add('Transpose', [mr], g.fresh(`${name}_mt`), [ints('perm', [2, 1, 0, 3])]); // [N, Co, n², T]
  } else {
    const vt = g.add('Transpose', [vByK], g.fresh(`${name}_vt`), [ints('perm', [2, 0, 1, 3])]); // [n², N, C, T]
    const mm = g.add('MatMul', [g.floats(g.fresh(`${name}_u`), { shape: [nn, 1, co, c], data: u.data }), vt], g.fresh(`${name}_m`)); // [n², N, Co, T]
    product = g.add('Transpose', [mm], g.fresh(`${name}_mt`), [ints('perm', [1, 2, 0, 3])]); // [N, Co, n², T]
  }

  // 4. Output transform, bias, crop.
  const outKernel = new Float32Array(nn * m * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      for (let a = 0; a < m; a++) {
        for (let b = 0; b < m; b++) outKernel[((i * n + j) * m + a) * m + b] = mats.AT[a][i] * mats.AT[b][j];
      }
    }
  }
  const crop = m * th !== ho || m * tw !== wo;
  let y: string;
  if (output === 'grouped') {
    const grouped = new Float32Array(co * outKernel.length);
    for (let o = 0; o < co; o++) grouped.set(outKernel, o * outKernel.length);
    const pr = g.add('Reshape', [product, shape([-1, co * nn, th, tw])], g.fresh(`${name}_pr`));
    y = g.add(
      'ConvTranspose',
      [pr, g.floats(g.fresh(`${name}_at`), { shape: [co * nn, 1, m, m], data: grouped }), g.floats(g.fresh(`${name}_b`), bias)],
      g.fresh(`${name}_y`),
      [ints('kernel_shape', [m, m]), ints('strides', [m, m]), int('group', co)],
    );
  } else {
    const pr = g.add('Reshape', [product, shape([-1, nn, th, tw])], g.fresh(`${name}_pr`));
    const yt = g.add('ConvTranspose', [pr, g.floats(g.fresh(`${name}_at`), { shape: [nn, 1, m, m], data: outKernel })], g.fresh(`${name}_yt`), [
      ints('kernel_shape', [m, m]),
      ints('strides', [m, m]),
    ]);
    const yr = g.add('Reshape', [yt, shape([-1, co, m * th, m * tw])], g.fresh(`${name}_yr`));
    y = g.add('Add', [yr, g.floats(g.fresh(`${name}_b`), { shape: [co, 1, 1], data: bias.data })], g.fresh(`${name}_y`));
  }
  if (crop) {
    y = g.add('Slice', [y, g.int64s(g.fresh(`${name}_s`), [0, 0]), g.int64s(g.fresh(`${name}_e`), [ho, wo]), g.int64s(g.fresh(`${name}_a`), [2, 3])], g.fresh(`${name}_crop`));
  }
  return y;
}

function inputKernel(mats: WinogradMatrices): WeightTensor {
  const { n } = mats;
  const data = new Float32Array(n ** 4);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      for (let u = 0; u < n; u++) {
        for (let v = 0; v < n; v++) data[((i * n + j) * n + u) * n + v] = mats.BT[i][u] * mats.BT[j][v];
      }
    }
  }
  return { shape: [n * n, 1, n, n], data };
}

/** Aᵀ ⊗ Aᵀ as [m², n²]: row a·m + b, column i·n + j. */
function outputMatrix(mats: WinogradMatrices): WeightTensor {
  const { n, m } = mats;
  const data = new Float32Array(m * m * n * n);
  for (let a = 0; a < m; a++) {
    for (let b = 0; b < m; b++) {
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) data[(a * m + b) * n * n + i * n + j] = mats.AT[a][i] * mats.AT[b][j];
      }
    }
  }
  return { shape: [m * m, n * n], data };
}

function winogradConvTb(g: OnnxGraphSink, spec: WinogradConvSpec, mats: WinogradMatrices, shape: (v: readonly number[]) => string): string {
  const { x, name, pads, weight, bias } = spec;
  const [h, w, c] = spec.inShape;
  const [ho, wo, co] = spec.outShape;
  const { m, n } = mats;
  const nn = n * n;
  const th = Math.ceil(ho / m);
  const tw = Math.ceil(wo / m);
  const tiles = th * tw;
  const fresh = (what: string) => g.fresh(`${name}_${what}`);

  // Channel-major planes, so that the transformed tiles come out as [C, N, n², T].
  const cn = g.add('Transpose', [x], fresh('cn'), [ints('perm', [1, 0, 2, 3])]);
  const planes = g.add('Reshape', [cn, shape([-1, 1, h, w])], fresh('planes'));
  const tilePads = [pads[0], pads[1], (th - 1) * m + n - h - pads[0], (tw - 1) * m + n - w - pads[1]];
  const v = g.add('Conv', [planes, g.floats(fresh('bt'), inputKernel(mats))], fresh('v'), [
    ints('kernel_shape', [n, n]),
    ints('strides', [m, m]),
    ints('pads', tilePads),
  ]);
  const vr = g.add('Reshape', [v, shape([c, -1, nn, tiles])], fresh('vr'));
  // transBatchB reads [C, N, n², T] as [N, n², C, T] in place: no transpose.
  const u = winogradFilters(weight, mats);
  const mm = g.add('FusedMatMul', [g.floats(fresh('u'), { shape: [1, nn, co, c], data: u.data }), vr], fresh('m'), [int('transBatchB', 1)], 'com.microsoft');
  const mr = g.add('Reshape', [mm, shape([-1, nn, co * tiles])], fresh('mr'));
  const y = g.add('MatMul', [g.floats(fresh('at'), outputMatrix(mats)), mr], fresh('y')); // [N, m², Co·T]
  const yr = g.add('Reshape', [y, shape([-1, m * m, co, tiles])], fresh('yr'));
  const yb = g.add('Add', [yr, g.floats(fresh('b'), { shape: [co, 1], data: bias.data })], fresh('yb'));
  const blocks = g.add('Reshape', [yb, shape([-1, m * m * co, th, tw])], fresh('blocks'));
  let out = g.add('DepthToSpace', [blocks], fresh('d2s'), [int('blocksize', m)]);
  if (m * th !== ho || m * tw !== wo) {
    out = g.add('Slice', [out, g.int64s(fresh('s'), [0, 0]), g.int64s(fresh('e'), [ho, wo]), g.int64s(fresh('a'), [2, 3])], fresh('crop'));
  }
  return out;
}

/** Returns CNHW. */
function winogradConv3d(g: OnnxGraphSink, spec: WinogradConvSpec, mats: WinogradMatrices, shape: (v: readonly number[]) => string): string {
  const { x, name, pads, weight, bias } = spec;
  const [h, w, c] = spec.inShape;
  const [ho, wo, co] = spec.outShape;
  const { m, n } = mats;
  const nn = n * n;
  const th = Math.ceil(ho / m);
  const tw = Math.ceil(wo / m);
  const tiles = th * tw;
  const fresh = (what: string) => g.fresh(`${name}_${what}`);

  const cn = spec.layout === 'cnhw' ? x : g.add('Transpose', [x], fresh('cn'), [ints('perm', [1, 0, 2, 3])]);
  // All C·N planes as the depth of one 3-D image, so that the n² transformed values come out as channels: [1, n², C·N, th, tw].
  const planes = g.add('Reshape', [cn, shape([1, 1, -1, h, w])], fresh('planes'));
  const bt = inputKernel(mats);
  const v = g.add('Conv', [planes, g.floats(fresh('bt'), { shape: [nn, 1, 1, n, n], data: bt.data })], fresh('v'), [
    ints('kernel_shape', [1, n, n]),
    ints('strides', [1, m, m]),
    ints('pads', [0, pads[0], pads[1], 0, (th - 1) * m + n - h - pads[0], (tw - 1) * m + n - w - pads[1]]),
  ]);
  const vr = g.add('Reshape', [v, shape([nn, c, -1])], fresh('vr')); // [n², C, N·T]
  const u = winogradFilters(weight, mats);
  const mm = g.add('MatMul', [g.floats(fresh('u'), u), vr], fresh('m')); // [n², Co, N·T]
  const mr = g.add('Reshape', [mm, shape([nn, -1])], fresh('mr'));
  const y = g.add('MatMul', [g.floats(fresh('at'), outputMatrix(mats)), mr], fresh('y')); // [m², Co·N·T]
  const yr = g.add('Reshape', [y, shape([m * m, co, -1])], fresh('yr'));
  const yb = g.add('Add', [yr, g.floats(fresh('b'), { shape: [co, 1], data: bias.data })], fresh('yb'));
  const blocks = g.add('Reshape', [yb, shape([1, -1, th, tw])], fresh('blocks'));
  const d2s = g.add('DepthToSpace', [blocks], fresh('d2s'), [int('blocksize', m)]); // [1, Co·N, m·th, m·tw]
  let out = g.add('Reshape', [d2s, shape([co, -1, m * th, m * tw])], fresh('cnhw'));
  if (m * th !== ho || m * tw !== wo) {
    out = g.add('Slice', [out, g.int64s(fresh('s'), [0, 0]), g.int64s(fresh('e'), [ho, wo]), g.int64s(fresh('a'), [2, 3])], fresh('crop'));
  }
  return out;
}
