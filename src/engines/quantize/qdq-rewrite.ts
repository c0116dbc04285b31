/**
 * Static int8 quantisation of a float32 ONNX model, written as QuantizeLinear/DequantizeLinear
 * (QDQ) pairs around the ops onnxruntime fuses into int8 kernels (QLinearConv, QGemm,
 * QLinearMatMul, QLinearAdd, QLinearConcat, QLinearAveragePool, int8 MaxPool):
 *   - weights of Conv, Gemm and MatMul: 7 bits in int8 (8 in depthwise convs; int8-math.ts says
 *     why), per output channel, symmetric; biases int32 at the input scale × the weight scale,
 *     as the int8 kernels accumulate; deep convs' weights offset by one on the 'gemm' path (below);
 *   - activations: uint8, asymmetric, from calibrated ranges; a Relu or ReLU6 (Clip) after a
 *     weighted op is absorbed by the Q that follows it (Q saturates where it would cut); the
 *     outputs of MatMul and Gemm stay float where no int8 op reads them (QdqAction says why);
 *   - MaxPool, Flatten, Reshape, Transpose, Squeeze and Unsqueeze keep their input's scale, so
 *     they run on the int8 values unchanged;
 *   - everything else (LRN, Softmax, LayerNorm, GELU …) stays float32 between a DQ and a Q.
 * onnxruntime's own Python quantiser writes the same pattern; it is not usable from Node, and
 * the layout of this one is what ORT's QDQ fusions need, no more.
 *
 * Two steps: planQdq finds which tensors need a calibrated range (and how each node is treated),
 * applyQdq writes the quantised model once the ranges are known.
 */
import onnxProto from 'onnx-proto';
import type { onnx as proto } from 'onnx-proto';
import { product } from '../../util/numbers.ts';
import { activationParams, DEPTHWISE_WEIGHT_MAX, quantizeBias, quantizeWeights, WEIGHT_MAX, type ActivationParams, type Range } from './int8-math.ts';

const { onnx } = onnxProto;
const T = onnx.TensorProto.DataType;

/** Ops that compute on int8 values with their input's scale (ORT drops the Q/DQ around them). */
const SAME_SCALE = new Set(['MaxPool', 'Flatten', 'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze']);
/** Ops with int8 kernels of their own, given every activation input quantised and an output range. */
const OWN_SCALE = new Set(['Add', 'Concat', 'AveragePool', 'GlobalAveragePool']);

/**
 * Which of onnxruntime's int8 conv kernels the model is written for. The codes are the same on
 * both (each is exact integer arithmetic; tested bit for bit): only the speed differs.
 *   - 'symmetric': conv weights with zero point 0, which onnxruntime runs as its symmetric
 *     indirect convolution (AVX2 or VNNI; it has no AMX kernel);
 *   - 'gemm': the weights of deep convs (GEMM_MIN_DEPTH) stored one higher with zero point 1
 *     (the same real values), which sends QLinearConv to im2col + QGEMM, onnxruntime's one int8
 *     path with AMX tiles. The offset keeps them within 64, so even the AVX2 GEMM's 16-bit pair
 *     sums (2 × 255 × 64) cannot saturate where such a model runs without AMX.
 * Depthwise convs stay symmetric: their 8-bit weights have no room for the offset, and
 * onnxruntime runs them with its depthwise kernel on either path.
 */
export type Int8ConvPath = 'symmetric' | 'gemm';

/**
 * The depth (input channels per group × kernel area) from which a conv runs faster on the gemm
 * path with AMX. Measured one conv at a time on 2 cores of a Xeon with AMX-INT8 at batch 8
 * (bench/int8-conv-paths.ts, two runs): depth 2048-4608 1.35-1.95× faster, 960-1152 0.99-1.23×,
 * 576 and below 0.73-1.50×, mostly slower (im2col and the packing cost what the tiles save).
 * Whole networks (bench:engines): VGG16 1.54×, resnet50 1.14×, the rest within 2%.
 */
export const GEMM_MIN_DEPTH = 1024;

/** How one node is quantised. */
export type QdqAction =
  | {
      readonly kind: 'weighted';
      readonly node: number;
      readonly axis: number;
      /**
       * The tensor whose Q hands int8 values on: the op's output, or its absorbed activation's.
       * Absent for a MatMul or Gemm that no int8 op reads: onnxruntime runs those as
       * MatMulIntegerToFloat or QGemm with a float output, and a Q and a DQ after them (before a
       * ViT's bias Add, LayerNorm or GELU, or a code) would only cost time and round the values.
       * A Conv always has one, since onnxruntime fuses a Conv into QLinearConv only with a Q after it.
       */
      readonly quantized?: string;
      /** The absorbed Relu or Clip. */
      readonly activation?: number;
    }
  | { readonly kind: 'same-scale'; readonly node: number }
  | { readonly kind: 'own-scale'; readonly node: number };

export interface QdqPlan {
  readonly actions: readonly QdqAction[];
  /** Activation tensors whose float range must be calibrated, in graph order. */
  readonly calibrate: readonly string[];
}

/** The nodes to quantise, in graph (topological) order, and the tensors that need ranges. */
export function planQdq(graph: proto.IGraphProto): QdqPlan {
  const nodes = graph.node ?? [];
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name!, t]));
  const consumers = consumersOf(nodes);
  const outputs = new Set((graph.output ?? []).map((o) => o.name!));
  const quantized = new Set<string>();
  const calibrate: string[] = [];
  const need = (t: string) => {
    if (!quantized.has(t)) calibrate.push(t);
    quantized.add(t);
  };
  const absorbed = new Set<number>();
  const actions: QdqAction[] = [];
  const feeding = feedsWeighted(nodes, inits);
  nodes.forEach((n, i) => {
    if (absorbed.has(i)) return;
    const op = n.opType ?? '';
    const ins = (n.input ?? []).filter(Boolean);
    const out = n.output?.[0];
    if (!out || (n.output ?? []).length !== 1 || n.domain) return;
    const axis = weightAxis(n, inits);
    if (axis !== null) {
      need(ins[0]);
      const activation = soleActivation(out, consumers, nodes, outputs, inits);
      const quantizedOut = activation === undefined ? out : nodes[activation].output![0];
      if (op !== 'Conv' && !feeding.has(quantizedOut)) {
        actions.push({ kind: 'weighted', node: i, axis });
        return;
      }
      if (activation !== undefined) absorbed.add(activation);
      need(quantizedOut);
      actions.push({ kind: 'weighted', node: i, axis, quantized: quantizedOut, ...(activation !== undefined ? { activation } : {}) });
    } else if (SAME_SCALE.has(op) && quantized.has(ins[0])) {
      quantized.add(out);
      actions.push({ kind: 'same-scale', node: i });
    } else if (OWN_SCALE.has(op) && feeding.has(out) && ins.length > 0 && ins.every((x) => quantized.has(x))) {
      // Only on the way to a weighted op: int8 there would just round a code (a pooled cut, say).
      need(out);
      actions.push({ kind: 'own-scale', node: i });
    }
  });
  return { actions, calibrate };
}

/**
 * Tensors on the way to a weighted op's input, through ops that keep int8 values: where an int8
 * Add, Concat or pool saves a requantisation. After the last weighted op, they run in float.
 */
function feedsWeighted(nodes: readonly proto.INodeProto[], inits: ReadonlyMap<string, proto.ITensorProto>): Set<string> {
  const constant = constantsOf(nodes, inits);
  const feeding = new Set<string>();
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    const out = n.output?.[0] ?? '';
    if (weightAxis(n, inits) !== null) feeding.add(n.input![0]);
    else if (passesInt8(n, constant) && feeding.has(out)) for (const x of n.input ?? []) feeding.add(x);
  }
  return feeding;
}

/**
 * Whether int8 values can flow through node n unrequantised (or requantised by its own int8
 * kernel). An Add or Concat with a constant input cannot: it would need that constant quantised,
 * which planQdq never does (a MatMul's bias Add, as torch exports a Linear on 3-D input).
 */
function passesInt8(n: proto.INodeProto, constant: ReadonlySet<string>): boolean {
  const op = n.opType ?? '';
  if (SAME_SCALE.has(op) || op === 'Relu') return true;
  return OWN_SCALE.has(op) && !(n.input ?? []).some((x) => constant.has(x));
}

/**
 * Initializers, and what Constant nodes or Identities of constants make: torch's exporter writes
 * some biases as an Identity of another layer's equal initializer.
 */
function constantsOf(nodes: readonly proto.INodeProto[], inits: ReadonlyMap<string, proto.ITensorProto>): Set<string> {
  const constant = new Set(inits.keys());
  for (const n of nodes) {
    if (n.opType === 'Constant' || (n.opType === 'Identity' && constant.has(n.input?.[0] ?? ''))) for (const o of n.output ?? []) constant.add(o);
  }
  return constant;
}

/**
 * The per-channel axis of a node's weight when it is a Conv, Gemm or MatMul whose weight is a
 * float32 initializer of the expected rank; null for anything else.
 */
function weightAxis(n: proto.INodeProto, inits: ReadonlyMap<string, proto.ITensorProto>): number | null {
  const w = inits.get(n.input?.[1] ?? '');
  if (!w || w.dataType !== T.FLOAT) return null;
  const rank = (w.dims ?? []).length;
  switch (n.opType) {
    case 'Conv':
      return rank >= 3 ? 0 : null;
    case 'Gemm': {
      const attr = (name: string) => (n.attribute ?? []).find((a) => a.name === name);
      // alpha/beta other than 1 and a transposed A are rare in backbones; they stay float.
      if (Number(attr('transA')?.i ?? 0) !== 0 || (attr('alpha')?.f ?? 1) !== 1 || (attr('beta')?.f ?? 1) !== 1) return null;
      return rank === 2 ? (Number(attr('transB')?.i ?? 0) === 1 ? 0 : 1) : null;
    }
    case 'MatMul':
      return rank === 2 ? 1 : null;
    default:
      return null;
  }
}

/**
 * The Relu, or Clip with constant bounds (ReLU6), that alone reads `tensor` (and whose output is
 * not a graph output), if any: the Q after it saturates exactly where it would cut, so it goes.
 * Quantising the raw conv output instead would spend the 256 levels on values it then discards.
 */
function soleActivation(
  tensor: string,
  consumers: ReadonlyMap<string, number[]>,
  nodes: readonly proto.INodeProto[],
  outputs: ReadonlySet<string>,
  inits: ReadonlyMap<string, proto.ITensorProto>,
): number | undefined {
  const readers = consumers.get(tensor) ?? [];
  if (readers.length !== 1 || outputs.has(tensor)) return undefined;
  const act = nodes[readers[0]];
  if (outputs.has(act.output![0])) return undefined;
  if (act.opType === 'Relu') return readers[0];
  const bounds = (act.input ?? []).slice(1).filter(Boolean);
  // Clip's bounds must be constants, and its floor at or below 0, which Q's range always holds.
  const floor = inits.get(act.input?.[1] ?? '');
  const constant = bounds.every((b) => inits.has(b)) && (act.attribute ?? []).length === 0;
  return act.opType === 'Clip' && constant && (!floor || inlineFloats(floor)[0] <= 0) ? readers[0] : undefined;
}

/** A float32 initializer's values held in the model itself (raw little-endian bytes or float_data). */
export function inlineFloats(t: proto.ITensorProto): Float32Array {
  // A copy: decoded protobuf bytes are Buffers, whose slice() is a view into a shared pool.
  if (t.rawData && t.rawData.length > 0) return new Float32Array(Uint8Array.from(t.rawData).buffer);
  return Float32Array.from(t.floatData ?? []);
}

function consumersOf(nodes: readonly proto.INodeProto[]): Map<string, number[]> {
  const map = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    for (const x of n.input ?? []) if (x) map.set(x, [...(map.get(x) ?? []), i]);
  });
  return map;
}

/** Reads a float32 initializer's values (raw, float_data, or external data through `external`). */
export type FloatReader = (t: proto.ITensorProto) => Float32Array;

/**
 * The plan applied: the same graph with int8 weights and Q/DQ pairs, every float weight the
 * quantised nodes read replaced (and dropped when nothing else reads it).
 */
export function applyQdq(model: proto.IModelProto, plan: QdqPlan, ranges: ReadonlyMap<string, Range>, readFloats: FloatReader, convPath: Int8ConvPath = 'symmetric', gemmMinDepth = GEMM_MIN_DEPTH): proto.IModelProto {
  const graph = model.graph!;
  const nodes = (graph.node ?? []).map((n) => ({ ...n, input: [...(n.input ?? [])] }));
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name!, t]));
  const added: proto.ITensorProto[] = [];
  const params = new Map<string, ActivationParams & { readonly dq: string }>();
  /** Q/DQ nodes to emit right after node i (-1: before every node). */
  const after = new Map<number, proto.INodeProto[]>();
  const removed = new Set<number>();
  const renamed = new Map<string, string>();
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => (n.output ?? []).forEach((o) => producer.set(o, i)));

  const constant = (name: string, dataType: number, dims: number[], raw: Uint8Array) => {
    added.push({ name, dataType, dims, rawData: raw });
    return name;
  };
  /** Q → DQ on `source` (computed by node `at`), read by `tensor`'s consumers; with `p` given, that scale. */
  const qdq = (tensor: string, source: string, at: number, p?: ActivationParams) => {
    if (params.has(tensor)) return params.get(tensor)!;
    const range = ranges.get(tensor);
    if (!p && !range) throw new Error(`no calibrated range for tensor '${tensor}'`);
    const q = p ?? activationParams(range!);
    const base = `bottleneck_q/${tensor}`;
    const scale = constant(`${base}/scale`, T.FLOAT, [], new Uint8Array(Float32Array.of(q.scale).buffer));
    const zp = constant(`${base}/zero_point`, T.UINT8, [], Uint8Array.of(q.zeroPoint));
    const dq = `${base}/dq`;
    const list = after.get(at) ?? [];
    list.push({ opType: 'QuantizeLinear', input: [source, scale, zp], output: [`${base}/q`], name: `${base}/q` });
    list.push({ opType: 'DequantizeLinear', input: [`${base}/q`, scale, zp], output: [dq], name: `${base}/dq` });
    after.set(at, list);
    renamed.set(tensor, dq);
    const entry = { ...q, dq };
    params.set(tensor, entry);
    return entry;
  };
  const ensure = (tensor: string) => qdq(tensor, tensor, producer.get(tensor) ?? -1);
  const weights = new Map<string, { dq: string; scales: Float32Array }>();
  /** Weight and bias DQs: constants, so they go first, which keeps the graph topologically sorted. */
  const front: proto.INodeProto[] = [];

  for (const action of plan.actions) {
    const n = nodes[action.node];
    const out = n.output![0];
    if (action.kind === 'same-scale') {
      qdq(out, out, action.node, ensure(n.input[0]));
      continue;
    }
    if (action.kind === 'own-scale') {
      for (const x of n.input) if (x) ensure(x);
      qdq(out, out, action.node);
      continue;
    }
    const x = ensure(n.input[0]);
    const w = weightDq(n, action.axis);
    n.input[1] = w.dq;
    const bias = n.input[2] ? inits.get(n.input[2]) : undefined;
    if (bias && bias.dataType === T.FLOAT && (bias.dims ?? []).length === 1 && Number(bias.dims![0]) === w.scales.length) {
      n.input[2] = biasDq(bias, x.scale, w.scales, action.node);
    }
    if (action.activation !== undefined) removed.add(action.activation);
    // With the activation absorbed, its output's consumers read the Q/DQ of the weighted op's output.
    if (action.quantized !== undefined) qdq(action.quantized, out, action.node);
  }

  /** int8 per-channel weight of node n and its DQ (once per initializer, however many nodes share it). */
  function weightDq(n: proto.INodeProto, axis: number): { dq: string; scales: Float32Array } {
    const name = n.input![1];
    const known = weights.get(name);
    if (known) return known;
    const t = inits.get(name)!;
    const dims = (t.dims ?? []).map(Number);
    // Depthwise: grouped, one input channel per group (weight [C_out, 1, kh, kw]).
    const depthwise = groupsOf(n) > 1 && dims[1] === 1;
    const q = quantizeWeights(readFloats(t), dims, axis, depthwise ? DEPTHWISE_WEIGHT_MAX : WEIGHT_MAX);
    const depth = product(dims.slice(1));
    const offset = convPath === 'gemm' && n.opType === 'Conv' && !depthwise && depth >= gemmMinDepth ? 1 : 0;
    if (offset) for (let i = 0; i < q.values.length; i++) q.values[i] += offset;
    const base = `bottleneck_q/${name}`;
    const scale = constant(`${base}/scale`, T.FLOAT, [q.scales.length], new Uint8Array(q.scales.buffer));
    const zp = constant(`${base}/zero_point`, T.INT8, [q.scales.length], new Uint8Array(q.scales.length).fill(offset));
    const values = constant(`${base}/int8`, T.INT8, dims, new Uint8Array(q.values.buffer));
    front.push({ opType: 'DequantizeLinear', input: [values, scale, zp], output: [`${base}/dq`], name: `${base}/dq`, attribute: [axisAttr(axis)] });
    const entry = { dq: `${base}/dq`, scales: q.scales };
    weights.set(name, entry);
    return entry;
  }

  /** int32 bias at the input scale × the weight scales, and its DQ (per node: the input scale is the node's). */
  function biasDq(bias: proto.ITensorProto, inputScale: number, weightScales: Float32Array, node: number): string {
    const b = quantizeBias(readFloats(bias), inputScale, weightScales);
    const base = `bottleneck_q/${bias.name}@${node}`;
    const scale = constant(`${base}/scale`, T.FLOAT, [b.scales.length], new Uint8Array(b.scales.buffer));
    const zp = constant(`${base}/zero_point`, T.INT32, [b.scales.length], new Uint8Array(b.scales.length * 4));
    const values = constant(`${base}/int32`, T.INT32, [b.scales.length], new Uint8Array(b.values.buffer));
    front.push({ opType: 'DequantizeLinear', input: [values, scale, zp], output: [`${base}/dq`], name: `${base}/dq`, attribute: [axisAttr(0)] });
    return `${base}/dq`;
  }

  after.set(-1, [...front, ...(after.get(-1) ?? [])]);
  return { ...model, graph: rebuiltGraph(graph, nodes, after, removed, renamed, added) };
}

/** A Conv's `group` attribute (1 for every other op). */
function groupsOf(n: proto.INodeProto): number {
  return n.opType === 'Conv' ? Number((n.attribute ?? []).find((a) => a.name === 'group')?.i ?? 1) : 1;
}

const axisAttr = (axis: number): proto.IAttributeProto => ({ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: axis });

function rebuiltGraph(
  graph: proto.IGraphProto,
  nodes: proto.INodeProto[],
  after: ReadonlyMap<number, proto.INodeProto[]>,
  removed: ReadonlySet<number>,
  renamed: ReadonlyMap<string, string>,
  added: proto.ITensorProto[],
): proto.IGraphProto {
  const qdqOutputs = new Set([...after.values()].flat().flatMap((n) => n.output ?? []));
  const ordered: proto.INodeProto[] = [...(after.get(-1) ?? [])];
  nodes.forEach((n, i) => {
    if (!removed.has(i)) ordered.push(n);
    ordered.push(...(after.get(i) ?? []));
  });
  for (const n of ordered) {
    // A Q reads the float tensor itself; every other reader gets its dequantised value.
    if (n.opType === 'QuantizeLinear' && qdqOutputs.has(n.output![0])) continue;
    n.input = (n.input ?? []).map((x) => renamed.get(x) ?? x);
  }
  const read = new Set(ordered.flatMap((n) => n.input ?? []));
  for (const o of graph.output ?? []) read.add(o.name!);
  const initializer = [...(graph.initializer ?? []).filter((t) => read.has(t.name!)), ...added];
  const inits = new Set(initializer.map((t) => t.name));
  const input = (graph.input ?? []).filter((i) => !(graph.initializer ?? []).some((t) => t.name === i.name) || inits.has(i.name));
  return { ...graph, node: ordered, initializer, input, valueInfo: [] };
}
