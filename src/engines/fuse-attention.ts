/**
 * Multi-head attention, as torch's ONNX exporter writes timm's ViT blocks, fused into
 * onnxruntime's one-kernel `com.microsoft.MultiHeadAttention`. Neither onnxruntime's own graph
 * optimiser nor its Python transformer optimiser recognises this pattern, and the unfused graph
 * (a Reshape and Transpose of the packed qkv projection, a Split, two scale Muls, a Transpose of
 * k, two batched MatMuls, a Softmax, a Transpose and a Reshape per block) costs the int8 ViT-S/16
 * about an eighth of its forward pass (README, Results). Written by hand because no library
 * does this rewrite for the torch export.
 *
 * The pattern, per block (B batch, S tokens, N heads of H, D = N·H):
 *
 *   A [B,S,3D] → Reshape [B,S,3,N,H] → Transpose (2,0,3,1,4) → Split axis 0 + Squeeze, or Gather 0/1/2
 *     q → Mul(√scale)?            ┐
 *     k → Transpose (0,1,3,2) → Mul(√scale)? ┴→ MatMul → Softmax(−1) → MatMul(·, v) → Transpose (0,2,1,3) → Reshape [B,S,D] = Y
 *
 * becomes three Slices of A (q, k and v, [B,S,D] each) and MultiHeadAttention(q, k, v) = Y, with
 * num_heads N and the product of the scales. A scale is a constant, or the exporter's chain for
 * SDPA's default, √(1/√H) computed from q's shape. Anything else (another layout, a mask, a
 * tensor inside the block that something else reads, such as a cut at the attention map) leaves
 * the block as it is. Only onnxruntime runs the fused op, so this is for the engine's own cached
 * models, never for a plain `export`.
 */
import onnxProto from 'onnx-proto';
import type { onnx as proto } from 'onnx-proto';
import { attr } from '../util/onnx-graph.ts';

const { onnx } = onnxProto;
const T = onnx.TensorProto.DataType;
export const MS_DOMAIN = 'com.microsoft';

interface Block {
  /** The packed qkv projection, [B, S, 3D]. */
  readonly packed: string;
  readonly heads: number;
  readonly headSize: number;
  readonly scale: number;
  /** The block's output, [B, S, D]. */
  readonly output: string;
  /** Every node the fused op replaces. */
  readonly nodes: ReadonlySet<proto.INodeProto>;
}

/** A tensor's shape per image (without the batch axis), where known: the probe's. */
export type DimsOf = (tensor: string) => readonly number[] | undefined;

/**
 * The model with each recognised attention block fused, and how many were. With `dimsOf`, a
 * block is fused only if its packed projection is [S, 3D] and its output [S, D] per image, as
 * the fused op needs; the graph alone says so only by its Reshapes.
 */
export function fuseAttention(model: proto.IModelProto, dimsOf?: DimsOf): { model: proto.IModelProto; fused: number } {
  const graph = model.graph!;
  const index = new GraphIndex(graph);
  const fits = (b: Block) => !dimsOf || tokensOf(dimsOf(b.packed), 3 * b.heads * b.headSize) === tokensOf(dimsOf(b.output), b.heads * b.headSize);
  const blocks = (graph.node ?? []).filter((n) => n.opType === 'Softmax').map((s) => matchBlock(s, index)).filter((b): b is Block => b !== undefined && fits(b));
  if (blocks.length === 0) return { model, fused: 0 };
  const replaced = new Set(blocks.flatMap((b) => [...b.nodes]));
  const initializer = [...(graph.initializer ?? [])];
  const fusedNodes = new Map<proto.INodeProto, proto.INodeProto[]>();
  blocks.forEach((b, i) => {
    // Put where the block's last node was: everything it reads is computed by then.
    const last = [...b.nodes].find((n) => n.output?.[0] === b.output)!;
    fusedNodes.set(last, fusedBlock(b, `bottleneck_mha${i}`, initializer));
  });
  const node = pruneUnread((graph.node ?? []).flatMap((n) => fusedNodes.get(n) ?? (replaced.has(n) ? [] : [n])), graph);
  // The shape constants of the removed chains go too, unless a subgraph body (which may read outer ones) is left.
  const keepAll = node.some(hasSubgraph);
  const read = new Set(node.flatMap((n) => n.input ?? []));
  const opsetImport = (model.opsetImport ?? []).some((o) => o.domain === MS_DOMAIN) ? model.opsetImport : [...(model.opsetImport ?? []), { domain: MS_DOMAIN, version: 1 }];
  return { model: { ...model, opsetImport, graph: { ...graph, node, initializer: initializer.filter((t) => keepAll || read.has(t.name!)) } }, fused: blocks.length };
}

/** S of a [S, width] tensor, else NaN (which equals nothing). */
function tokensOf(dims: readonly number[] | undefined, width: number): number {
  return dims?.length === 2 && dims[1] === width ? dims[0] : NaN;
}

function fusedBlock(b: Block, name: string, initializer: proto.ITensorProto[]): proto.INodeProto[] {
  const D = b.heads * b.headSize;
  const int64 = (suffix: string, value: number) => {
    initializer.push({ name: `${name}/${suffix}`, dims: [1], dataType: T.INT64, int64Data: [value] });
    return `${name}/${suffix}`;
  };
  const axis = int64('axis', -1);
  // Slice: its form is the same from opset 10 on, whatever opset the user's model declares.
  const slices = ['q', 'k', 'v'].map((part, j) => ({
    opType: 'Slice',
    input: [b.packed, int64(`${part}_start`, j * D), int64(`${part}_end`, (j + 1) * D), axis],
    output: [`${name}/${part}`],
    name: `${name}/${part}`,
  }));
  const mha: proto.INodeProto = {
    opType: 'MultiHeadAttention',
    domain: MS_DOMAIN,
    input: slices.map((s) => s.output[0]),
    output: [b.output],
    name,
    attribute: [attr.int('num_heads', b.heads), attr.float('scale', b.scale)],
  };
  return [...slices, mha];
}

/** The block around this Softmax, if it is one of the pattern's and nothing outside reads its insides. */
function matchBlock(softmax: proto.INodeProto, g: GraphIndex): Block | undefined {
  const nodes = new Set<proto.INodeProto>([softmax]);
  const take = (n: proto.INodeProto | undefined, op: string): n is proto.INodeProto => {
    if (n?.opType !== op) return false;
    nodes.add(n);
    return true;
  };
  if (![-1, 3].includes(g.intAttr(softmax, 'axis', -1))) return undefined;
  const scores = g.producer(softmax.input![0]);
  const context = g.soleReader(softmax.output![0]);
  if (!take(scores, 'MatMul') || !take(context, 'MatMul') || context.input![0] !== softmax.output![0]) return undefined;
  const q = unscale(scores.input![0], g, nodes);
  const kScaled = unscale(scores.input![1], g, nodes);
  const kT = g.producer(kScaled?.tensor ?? '');
  if (!q || !kScaled || !take(kT, 'Transpose') || !g.isPerm(kT, [0, 1, 3, 2])) return undefined;
  const heads = headSplit([q.tensor, kT.input![0], context.input![1]], g, nodes);
  const back = g.soleReader(context.output![0]);
  const merged = g.soleReader(back?.output?.[0] ?? '');
  if (!heads || !take(back, 'Transpose') || !g.isPerm(back, [0, 2, 1, 3]) || !take(merged, 'Reshape')) return undefined;
  const width = g.shapeTail(merged.input![1], 1)?.[0];
  if (width !== heads.heads * heads.headSize && width !== -1) return undefined;
  const scale = scaleOf(q, heads.headSize) * scaleOf(kScaled, heads.headSize);
  const block: Block = { ...heads, scale, output: merged.output![0], nodes };
  return insidesUnshared(block, g) && Number.isFinite(scale) ? block : undefined;
}

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

/** q, k and v as heads [B,N,S,H] of one packed projection, split as the exporter writes timm's `qkv.unbind(0)`. */
function headSplit(parts: readonly string[], g: GraphIndex, nodes: Set<proto.INodeProto>): Pick<Block, 'packed' | 'heads' | 'headSize'> | undefined {
  const sources = parts.map((t, j) => partOf(t, j, g));
  if (sources.some((s) => !s) || new Set(sources.map((s) => s!.heads)).size !== 1) return undefined;
  for (const s of sources) for (const n of s!.nodes) nodes.add(n);
  const transpose = g.producer(sources[0]!.heads);
  const reshape = g.producer(transpose?.input?.[0] ?? '');
  if (transpose?.opType !== 'Transpose' || !g.isPerm(transpose, [2, 0, 3, 1, 4]) || reshape?.opType !== 'Reshape') return undefined;
  const shape = g.shapeTail(reshape.input![1], 3);
  if (!shape || shape[0] !== 3 || shape[1] <= 0 || shape[2] <= 0) return undefined;
  nodes.add(transpose).add(reshape);
  return { packed: reshape.input![0], heads: shape[1], headSize: shape[2] };
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

/** Whether only the block's own nodes read what its nodes compute (its output aside). */
function insidesUnshared(b: Block, g: GraphIndex): boolean {
  for (const n of b.nodes) {
    for (const out of n.output ?? []) {
      if (out === b.output) continue;
      if (g.isGraphOutput(out) || g.readers(out).some((r) => !b.nodes.has(r))) return false;
    }
  }
  return true;
}

/** Drops the nodes nothing reads any more (the shape and scale chains the fused blocks left behind). */
function pruneUnread(nodes: proto.INodeProto[], graph: proto.IGraphProto): proto.INodeProto[] {
  const outputs = new Set((graph.output ?? []).map((o) => o.name!));
  let kept = nodes;
  for (;;) {
    const read = new Set(kept.flatMap((n) => n.input ?? []));
    const next = kept.filter((n) => (n.output ?? []).some((o) => read.has(o) || outputs.has(o)) || hasSubgraph(n));
    if (next.length === kept.length) return kept;
    kept = next;
  }
}

const hasSubgraph = (n: proto.INodeProto) => (n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length > 0);

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
      for (const i of n.input ?? []) if (i) this.readersOf.set(i, [...(this.readersOf.get(i) ?? []), n]);
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

  soleReader(tensor: string): proto.INodeProto | undefined {
    const r = this.readers(tensor);
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
    if (!t || (t.dataLocation ?? 0) !== 0) return undefined;
    const raw = t.rawData && t.rawData.length > 0 ? Uint8Array.from(t.rawData) : undefined;
    if (t.dataType === T.FLOAT) return raw ? [...new Float32Array(raw.buffer)] : [...(t.floatData ?? [])];
    if (t.dataType === T.INT64) return raw ? [...new BigInt64Array(raw.buffer)].map(Number) : (t.int64Data ?? []).map(Number);
    return undefined;
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
