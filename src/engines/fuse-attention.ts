/**
 * Multi-head attention, as torch's ONNX exporter writes the ViT blocks of timm and of Hugging
 * Face transformers, fused into onnxruntime's one-kernel `com.microsoft.MultiHeadAttention`.
 * Neither onnxruntime's own graph optimiser nor its Python transformer optimiser recognises these
 * exports, and the unfused graph (Reshapes and Transposes into heads, scale Muls, two batched
 * MatMuls, a Softmax, a Transpose and a Reshape back per block) costs the int8 ViT-S/16 up to a
 * seventh of its forward pass (README, Results). Written by hand because no library does this
 * rewrite for the torch export.
 *
 * The pattern, per block (B batch, S tokens, N heads of H, D = N·H):
 *
 *   q, kᵀ, v heads → Mul(√scale)? on q and kᵀ → MatMul → Mul|Div(scale)? → Softmax(−1) → Cast(float)*
 *     → MatMul(·, v) → Reshape to itself? → Transpose (0,2,1,3) → Reshape [B,S,D] = Y
 *
 * where the heads come from one packed projection A [B,S,3D] (timm: Reshape [B,S,3,N,H],
 * Transpose (2,0,3,1,4), Split + Squeeze or Gather; kᵀ a Transpose (0,1,3,2) of k), or from three
 * projections [B,S,D] (Hugging Face ViT, DINOv2, CLIP vision, SDPA or eager: each Reshaped to
 * [B,S,N or −1,H] and transposed (0,2,1,3); kᵀ transposed (0,2,3,1) directly). It becomes
 * MultiHeadAttention(q, k, v) = Y on the projections (three Slices of A for timm), with num_heads
 * N and the product of the scales. A scale is a constant, or the exporter's chain for SDPA's
 * default, √(1/√H) computed from q's shape. What only the probe's shapes can tell (a head count
 * of −1, a Reshape that changes nothing, that the projections are [S, D] per image) is fused
 * only with them. Anything else (another layout, a mask, a tensor inside the block that
 * something else reads, such as a cut at the attention map) leaves the block as it is. Only
 * onnxruntime runs the fused op, so this is for the engine's own cached models, never for a
 * plain `export`.
 */
import onnxProto from 'onnx-proto';
import type { onnx as proto } from 'onnx-proto';
import { pruneGraph } from '../backbones/onnx-file/onnx-rewrite.ts';
import { attr } from '../util/onnx-graph.ts';
import { inlineFloats } from './quantize/qdq-rewrite.ts';

const { onnx } = onnxProto;
const T = onnx.TensorProto.DataType;
export const MS_DOMAIN = 'com.microsoft';

/** Where q, k and v come from: one packed projection [B, S, 3D] (timm), or three [B, S, D] (Hugging Face). */
type Projections = { readonly packed: string } | { readonly q: string; readonly k: string; readonly v: string };

interface Block {
  readonly projections: Projections;
  readonly heads: number;
  readonly headSize: number;
  readonly scale: number;
  /** The block's output, [B, S, D]. */
  readonly output: string;
  /** Every node the fused op replaces (matching adds to it). */
  readonly nodes: Set<proto.INodeProto>;
}

/** A tensor's shape per image (without the batch axis), where known: the probe's. */
export type DimsOf = (tensor: string) => readonly number[] | undefined;

/**
 * The model with each recognised attention block fused, and how many were. With `dimsOf`, a
 * block is fused only if its projections are [S, 3D] (packed) or [S, D] each and its output
 * [S, D] per image, as the fused op needs (the graph alone says so only by its Reshapes); blocks
 * that need the shapes to be recognised at all (a head count of −1) are fused only with them.
 */
export function fuseAttention(model: proto.IModelProto, dimsOf?: DimsOf): { model: proto.IModelProto; fused: number } {
  const graph = model.graph!;
  const index = new GraphIndex(graph);
  const blocks = (graph.node ?? []).filter((n) => n.opType === 'Softmax').map((s) => matchBlock(s, index, dimsOf)).filter((b): b is Block => b !== undefined && fits(b, dimsOf));
  if (blocks.length === 0) return { model, fused: 0 };
  const replaced = new Set(blocks.flatMap((b) => [...b.nodes]));
  const initializer = [...(graph.initializer ?? [])];
  const fusedNodes = new Map<proto.INodeProto, proto.INodeProto[]>();
  blocks.forEach((b, i) => {
    // Put where the block's last node was: everything it reads is computed by then.
    const last = [...b.nodes].find((n) => n.output?.[0] === b.output)!;
    fusedNodes.set(last, fusedBlock(b, `bottleneck_mha${i}`, initializer));
  });
  const node = (graph.node ?? []).flatMap((n) => fusedNodes.get(n) ?? (replaced.has(n) ? [] : [n]));
  const opsetImport = (model.opsetImport ?? []).some((o) => o.domain === MS_DOMAIN) ? model.opsetImport : [...(model.opsetImport ?? []), { domain: MS_DOMAIN, version: 1 }];
  // The shape and scale chains the fused blocks leave unread, and their constants, go.
  return { model: { ...model, opsetImport, graph: pruneGraph({ ...graph, node, initializer }) }, fused: blocks.length };
}

/** Whether the probe's shapes, where known, say the fused op's inputs and output are [S, D]-wide as it needs. */
function fits(b: Block, dimsOf: DimsOf | undefined): boolean {
  if (!dimsOf) return true;
  const D = b.heads * b.headSize;
  const tokens = tokensOf(dimsOf(b.output), D);
  const p = b.projections;
  return 'packed' in p ? tokensOf(dimsOf(p.packed), 3 * D) === tokens : [p.q, p.k, p.v].every((t) => tokensOf(dimsOf(t), D) === tokens);
}

/** S of a [S, width] tensor, else NaN (which equals nothing). */
function tokensOf(dims: readonly number[] | undefined, width: number): number {
  return dims?.length === 2 && dims[1] === width ? dims[0] : NaN;
}

function fusedBlock(b: Block, name: string, initializer: proto.ITensorProto[]): proto.INodeProto[] {
  const p = b.projections;
  const slices = 'packed' in p ? packedSlices(p.packed, b.heads * b.headSize, name, initializer) : [];
  const mha: proto.INodeProto = {
    opType: 'MultiHeadAttention',
    domain: MS_DOMAIN,
    input: 'packed' in p ? slices.map((n) => n.output![0]) : [p.q, p.k, p.v],
    output: [b.output],
    name,
    attribute: [attr.int('num_heads', b.heads), attr.float('scale', b.scale)],
  };
  return [...slices, mha];
}

/** q, k and v, [B, S, D] each, as Slices of the packed [B, S, 3D] (Slice's form is the same from opset 10 on, whatever the model declares). */
function packedSlices(packed: string, D: number, name: string, initializer: proto.ITensorProto[]): proto.INodeProto[] {
  const int64 = (suffix: string, value: number) => {
    initializer.push({ name: `${name}/${suffix}`, dims: [1], dataType: T.INT64, int64Data: [value] });
    return `${name}/${suffix}`;
  };
  const axis = int64('axis', -1);
  return ['q', 'k', 'v'].map((part, j) => ({
    opType: 'Slice',
    input: [packed, int64(`${part}_start`, j * D), int64(`${part}_end`, (j + 1) * D), axis],
    output: [`${name}/${part}`],
    name: `${name}/${part}`,
  }));
}

/** The block around this Softmax, if it is one of the pattern's and nothing outside reads its insides. */
function matchBlock(softmax: proto.INodeProto, g: GraphIndex, dimsOf: DimsOf | undefined): Block | undefined {
  const nodes = new Set<proto.INodeProto>([softmax]);
  if (![-1, 3].includes(g.intAttr(softmax, 'axis', -1))) return undefined;
  const scaled = scoreScale(softmax.input![0], g, nodes);
  const scores = g.producer(scaled.tensor);
  const probs = floatCast(softmax.output![0], g, nodes);
  const context = g.soleReader(probs);
  if (scores?.opType !== 'MatMul' || context?.opType !== 'MatMul' || context.input![0] !== probs) return undefined;
  nodes.add(scores).add(context);
  const q = unscale(scores.input![0], g, nodes);
  const k = unscale(scores.input![1], g, nodes);
  const heads = q && k ? packedHeads(q.tensor, k.tensor, context.input![1], g, nodes) ?? separateHeads(q.tensor, k.tensor, context.input![1], g, nodes, dimsOf) : undefined;
  const output = mergedHeads(context.output![0], g, nodes, dimsOf);
  if (!q || !k || !heads || !output) return undefined;
  const width = g.shapeTail(g.producer(output)!.input![1], 1)?.[0];
  if (width !== heads.heads * heads.headSize && width !== -1) return undefined;
  const scale = scaleOf(q, heads.headSize) * scaleOf(k, heads.headSize) * scaled.factor;
  const block: Block = { ...heads, scale, output, nodes };
  if (!Number.isFinite(scale) || scale <= 0 || !insidesUnshared(block, g)) return undefined;
  // What the fused op reads must outlive the nodes it replaces.
  const p = block.projections;
  return ('packed' in p ? [p.packed] : [p.q, p.k, p.v]).every((t) => !nodes.has(g.producer(t)!)) ? block : undefined;
}

/** The tensor after the Casts to float32 that alone read it (Hugging Face's eager softmax casts to float32 and back to the query's type). */
function floatCast(tensor: string, g: GraphIndex, nodes: Set<proto.INodeProto>): string {
  const cast = g.soleReader(tensor);
  if (cast?.opType !== 'Cast' || g.intAttr(cast, 'to', 0) !== T.FLOAT) return tensor;
  nodes.add(cast);
  return floatCast(cast.output![0], g, nodes);
}

/** The scores before a constant Mul or Div between them and the Softmax (Hugging Face's eager attention), and its factor. */
function scoreScale(tensor: string, g: GraphIndex, nodes: Set<proto.INodeProto>): { tensor: string; factor: number } {
  const n = g.producer(tensor);
  const c = n && (n.opType === 'Mul' || n.opType === 'Div') ? g.scalar(n.input![1]) : undefined;
  if (!n || c === undefined) return { tensor, factor: 1 };
  nodes.add(n);
  return { tensor: n.input![0], factor: n.opType === 'Mul' ? c : 1 / c };
}

/**
 * The context [B,N,S,H] merged back to [B,S,D]: Transpose (0,2,1,3) then Reshape, with at most
 * one Reshape before them that the probe's shapes show to change nothing (torch's export of
 * SDPA in Hugging Face models writes one). The merged tensor, or undefined.
 */
function mergedHeads(context: string, g: GraphIndex, nodes: Set<proto.INodeProto>, dimsOf: DimsOf | undefined): string | undefined {
  // A Shape beside the one real reader computes that Reshape's target; insidesUnshared takes it in.
  let back = g.soleReader(context, 'Shape');
  if (back?.opType === 'Reshape' && dimsOf && sameDims(dimsOf(context), dimsOf(back.output![0]))) {
    nodes.add(back);
    back = g.soleReader(back.output![0], 'Shape');
  }
  const merged = g.soleReader(back?.output?.[0] ?? '', 'Shape');
  if (back?.opType !== 'Transpose' || !g.isPerm(back, [0, 2, 1, 3]) || merged?.opType !== 'Reshape') return undefined;
  nodes.add(back).add(merged);
  return merged.output![0];
}

const sameDims = (a: readonly number[] | undefined, b: readonly number[] | undefined) => !!a && !!b && a.length === b.length && a.every((d, i) => d === b[i]);

/** A tensor and the constant (or SDPA-default) factor a Mul applied to it, if one did. */
interface Scaled {
  readonly tensor: string;
  readonly factor: number | 'sdpa-default' | 1;
}

function unscale(tensor: string, g: GraphIndex, nodes: Set<proto.INodeProto>): Scaled | undefined {
  const mul = g.producer(tensor);
  if (mul?.opType !== 'Mul') return { tensor, factor: 1 };
  const [x, s] = mul.input!;
  const value = g.scalar(s);
  nodes.add(mul);
  if (value !== undefined) return { tensor: x, factor: value };
  const chain = sdpaDefaultScale(s, g);
  if (!chain) return undefined;
  for (const n of chain) nodes.add(n);
  return { tensor: x, factor: 'sdpa-default' };
}

function scaleOf(s: Scaled, headSize: number): number {
  return s.factor === 'sdpa-default' ? Math.sqrt(1 / Math.sqrt(headSize)) : s.factor;
}

/**
 * torch's exporter writes SDPA's default scale, applied as √scale to q and to kᵀ, as
 * Sqrt(Cast(Div(1, Sqrt(Cast(Slice(Shape(q), −1)))))): that chain's nodes, if `tensor` is one.
 * Only its form is checked: its value is √(1/√H) whatever tensor's last axis it reads, as both
 * q's and k's are H.
 */
function sdpaDefaultScale(tensor: string, g: GraphIndex): proto.INodeProto[] | undefined {
  const chain: proto.INodeProto[] = [];
  const from = (t: string, op: string) => {
    let n = g.producer(t);
    if (n?.opType === 'Cast') {
      chain.push(n);
      n = g.producer(n.input![0]);
    }
    if (n?.opType !== op) return undefined;
    chain.push(n);
    return n;
  };
  const div = from(from(tensor, 'Sqrt')?.input?.[0] ?? '', 'Div');
  if (!div || g.scalar(div.input![0]) !== 1) return undefined;
  const slice = from(from(div.input![1], 'Sqrt')?.input?.[0] ?? '', 'Slice');
  if (!slice || g.scalar(slice.input![1]) !== -1 || !from(slice.input![0], 'Shape')) return undefined;
  return chain;
}

type Heads = Pick<Block, 'projections' | 'heads' | 'headSize'>;

/** q, kᵀ and v as heads [B,N,S,H] (kᵀ [B,N,H,S]) of one packed projection, split as the exporter writes timm's `qkv.unbind(0)`. */
function packedHeads(q: string, kT: string, v: string, g: GraphIndex, nodes: Set<proto.INodeProto>): Heads | undefined {
  const t = g.producer(kT);
  if (t?.opType !== 'Transpose' || !g.isPerm(t, [0, 1, 3, 2])) return undefined;
  const sources = [q, t.input![0], v].map((x, j) => partOf(x, j, g));
  if (sources.some((s) => !s) || new Set(sources.map((s) => s!.heads)).size !== 1) return undefined;
  const transpose = g.producer(sources[0]!.heads);
  const reshape = g.producer(transpose?.input?.[0] ?? '');
  if (transpose?.opType !== 'Transpose' || !g.isPerm(transpose, [2, 0, 3, 1, 4]) || reshape?.opType !== 'Reshape') return undefined;
  const shape = g.shapeTail(reshape.input![1], 3);
  if (!shape || shape[0] !== 3 || shape[1] <= 0 || shape[2] <= 0) return undefined;
  for (const n of [t, transpose, reshape, ...sources.flatMap((s) => s!.nodes)]) nodes.add(n);
  return { projections: { packed: reshape.input![0] }, heads: shape[1], headSize: shape[2] };
}

/**
 * q, kᵀ and v as heads of three projections [B,S,D], as Hugging Face's ViT, DINOv2 and CLIP
 * attention writes them: each Reshape to [B,S,N,H] (N often −1, then read from the probe's D)
 * and Transpose (0,2,1,3); kᵀ as Transpose (0,2,3,1) of its Reshape, or (0,1,3,2) of its heads.
 */
function separateHeads(q: string, kT: string, v: string, g: GraphIndex, nodes: Set<proto.INodeProto>, dimsOf: DimsOf | undefined): Heads | undefined {
  const t = g.producer(kT);
  const direct = t?.opType === 'Transpose' && g.isPerm(t, [0, 2, 3, 1]);
  const viaHeads = t?.opType === 'Transpose' && g.isPerm(t, [0, 1, 3, 2]);
  if (!t || (!direct && !viaHeads)) return undefined;
  const views = [viewOf(q, [0, 2, 1, 3], g), direct ? viewOf(kT, [0, 2, 3, 1], g) : viewOf(t.input![0], [0, 2, 1, 3], g), viewOf(v, [0, 2, 1, 3], g)];
  if (views.some((w) => !w) || new Set(views.map((w) => w!.headSize)).size !== 1) return undefined;
  const headSize = views[0]!.headSize;
  const D = dimsOf?.(views[0]!.projection)?.[1];
  const declared = views.map((w) => w!.heads).find((n) => n > 0);
  const heads = declared ?? (D !== undefined && D % headSize === 0 ? D / headSize : undefined);
  if (!heads || views.some((w) => w!.heads > 0 && w!.heads !== heads)) return undefined;
  for (const n of [t, ...views.flatMap((w) => w!.nodes)]) nodes.add(n);
  const [pq, pk, pv] = views.map((w) => w!.projection);
  return { projections: { q: pq, k: pk, v: pv }, heads, headSize };
}

/** A [B,S,D] projection viewed as heads: Transpose(perm) of Reshape(x, [.., .., N or −1, H]). */
function viewOf(tensor: string, perm: readonly number[], g: GraphIndex): { projection: string; heads: number; headSize: number; nodes: proto.INodeProto[] } | undefined {
  const t = g.producer(tensor);
  const r = g.producer(t?.input?.[0] ?? '');
  if (t?.opType !== 'Transpose' || !g.isPerm(t, perm) || r?.opType !== 'Reshape') return undefined;
  const shape = g.shapeTail(r.input![1], 2);
  if (!shape || shape[1] <= 0 || (shape[0] <= 0 && shape[0] !== -1)) return undefined;
  return { projection: r.input![0], heads: shape[0], headSize: shape[1], nodes: [t, r] };
}

/** Where part j (0 q, 1 k, 2 v) came from: Squeeze(Split(x, axis 0)[j], 0) or Gather(x, j, axis 0). */
function partOf(tensor: string, j: number, g: GraphIndex): { heads: string; nodes: proto.INodeProto[] } | undefined {
  const n = g.producer(tensor);
  if (n?.opType === 'Gather' && g.intAttr(n, 'axis', 0) === 0 && g.scalar(n.input![1]) === j) return { heads: n.input![0], nodes: [n] };
  if (n?.opType !== 'Squeeze') return undefined;
  const split = g.producer(n.input![0]);
  const axes = n.input?.[1] ? g.numbers(n.input[1]) : (n.attribute ?? []).find((a) => a.name === 'axes')?.ints?.map(Number);
  if (split?.opType !== 'Split' || g.intAttr(split, 'axis', 0) !== 0 || split.output?.[j] !== n.input![0] || axes?.length !== 1 || axes[0] !== 0) return undefined;
  return { heads: split.input![0], nodes: [n, split] };
}

/**
 * Whether only the block's own nodes read what its nodes compute (its output aside). A shape
 * computation that reads them (Shape, then Gather, Unsqueeze, Concat …) counts as the block's
 * when it feeds nothing but the block: the exporter computes the block's Reshape targets so.
 */
function insidesUnshared(b: Block, g: GraphIndex): boolean {
  const nodes = b.nodes;
  for (const n of [...nodes]) {
    for (const out of n.output ?? []) {
      if (out === b.output) continue;
      if (g.isGraphOutput(out)) return false;
      for (const r of g.readers(out)) if (!nodes.has(r) && !(r.opType === 'Shape' && absorbShapeChain(r, nodes, g))) return false;
    }
  }
  return true;
}

// Sqrt and Div: the exporter's chain for SDPA's default scale.
const SHAPE_OPS = new Set(['Shape', 'Gather', 'Unsqueeze', 'Squeeze', 'Concat', 'Cast', 'Slice', 'Sqrt', 'Div']);

/** Adds a shape computation to the block if everything it feeds is the block's; says whether it did. */
function absorbShapeChain(start: proto.INodeProto, nodes: Set<proto.INodeProto>, g: GraphIndex): boolean {
  const chain = new Set<proto.INodeProto>();
  const feedsOnlyBlock = (n: proto.INodeProto): boolean => {
    if (nodes.has(n) || chain.has(n)) return true;
    if (!SHAPE_OPS.has(n.opType ?? '') || (n.output ?? []).some((o) => g.isGraphOutput(o))) return false;
    chain.add(n);
    return (n.output ?? []).every((o) => g.readers(o).every(feedsOnlyBlock));
  };
  if (!feedsOnlyBlock(start)) return false;
  for (const n of chain) nodes.add(n);
  return true;
}

/** Producers, readers and small inline constants of one graph. */
class GraphIndex {
  private readonly producers = new Map<string, proto.INodeProto>();
  private readonly readersOf = new Map<string, proto.INodeProto[]>();
  private readonly constants = new Map<string, proto.ITensorProto>();
  private readonly outputs: Set<string>;

  constructor(graph: proto.IGraphProto) {
    for (const t of graph.initializer ?? []) this.constants.set(t.name!, t);
    for (const n of graph.node ?? []) {
      for (const o of n.output ?? []) this.producers.set(o, n);
      for (const i of n.input ?? []) {
        if (!i) continue;
        const readers = this.readersOf.get(i);
        if (readers) readers.push(n);
        else this.readersOf.set(i, [n]);
      }
      const value = (n.attribute ?? []).find((a) => a.name === 'value')?.t;
      if (n.opType === 'Constant' && value) this.constants.set(n.output![0], value);
    }
    this.outputs = new Set((graph.output ?? []).map((o) => o.name!));
  }

  producer(tensor: string): proto.INodeProto | undefined {
    return this.producers.get(tensor);
  }

  readers(tensor: string): proto.INodeProto[] {
    return this.readersOf.get(tensor) ?? [];
  }

  /** The one reader of a tensor, not counting readers of type `ignoring`. */
  soleReader(tensor: string, ignoring?: string): proto.INodeProto | undefined {
    const r = this.readers(tensor).filter((n) => n.opType !== ignoring);
    return r.length === 1 ? r[0] : undefined;
  }

  isGraphOutput(tensor: string): boolean {
    return this.outputs.has(tensor);
  }

  intAttr(n: proto.INodeProto, name: string, fallback: number): number {
    const a = (n.attribute ?? []).find((x) => x.name === name);
    return a?.i !== undefined && a.i !== null ? Number(a.i) : fallback;
  }

  isPerm(n: proto.INodeProto, perm: readonly number[]): boolean {
    const p = (n.attribute ?? []).find((a) => a.name === 'perm')?.ints?.map(Number) ?? [];
    return p.length === perm.length && p.every((v, i) => v === perm[i]);
  }

  /** A constant's values, if it is a small inline float32 or int64 tensor. */
  numbers(tensor: string): number[] | undefined {
    const t = this.constants.get(tensor);
    // Shapes and scales only: a weight is never decoded here.
    if (!t || (t.dataLocation ?? 0) !== 0 || (t.dims ?? []).reduce((a, d) => a * Number(d), 1) > 16) return undefined;
    if (t.dataType === T.FLOAT) return [...inlineFloats(t)];
    if (t.dataType !== T.INT64) return undefined;
    // A copy: decoded protobuf bytes are views into a shared pool, not aligned for 64-bit reads.
    return t.rawData && t.rawData.length > 0 ? [...new BigInt64Array(Uint8Array.from(t.rawData).buffer)].map(Number) : (t.int64Data ?? []).map(Number);
  }

  scalar(tensor: string): number | undefined {
    const v = this.numbers(tensor);
    return v?.length === 1 ? v[0] : undefined;
  }

  /** The last `count` entries of a Reshape's target shape, where they are constants (a constant vector, or a Concat ending in constants). */
  shapeTail(tensor: string, count: number): number[] | undefined {
    const whole = this.numbers(tensor);
    if (whole) return whole.length >= count ? whole.slice(-count) : undefined;
    const concat = this.producer(tensor);
    if (concat?.opType !== 'Concat') return undefined;
    const parts = (concat.input ?? []).map((i) => this.numbers(i));
    const tail = parts.slice(-count);
    return tail.length === count && tail.every((p) => p?.length === 1) ? tail.map((p) => p![0]) : undefined;
  }
}
