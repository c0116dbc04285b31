/**
 * Graph surgery on a user's ONNX model, so that any tensor in it can be a cut: the requested
 * tensors become the outputs (pooled or flattened as codes), every node that no output needs is
 * pruned (an early cut costs less than the whole network), the batch dimension is dynamic, and
 * the input is always what bottleneck's engines feed: NHWC float32 images, preprocessed. A
 * transpose (for NCHW models) and a cast (for float16 models) are put in front; float16 cuts are
 * cast back to float32.
 *
 * Nodes appended here use only operators whose form has not changed from opset 10 to the newest
 * (Transpose, Cast, Flatten, Gather, Slice, GlobalAveragePool, GlobalMaxPool, Gemm, Relu, and
 * Softmax on 2-D input), so they are valid under whatever opset the model declares.
 */
import onnxProto from 'onnx-proto';
import type { onnx as proto } from 'onnx-proto';
import { UserError } from '../../util/errors.ts';
import { attr } from '../../util/onnx-graph.ts';
import type { CutPool } from '../cut.ts';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const FLOAT16 = onnx.TensorProto.DataType.FLOAT16;
const INT64 = onnx.TensorProto.DataType.INT64;

export type TensorLayout = 'nchw' | 'nhwc' | 'tokens' | 'vector' | 'other';

/** The one image input of a model, as found in its graph. */
export interface ImageInput {
  readonly name: string;
  readonly layout: 'nchw' | 'nhwc';
  readonly elemType: 'float32' | 'float16';
  /** [height, width] when the model fixes them, else null. */
  readonly size: readonly [number, number] | null;
}

export interface CutRequest {
  readonly tensor: string;
  readonly layout: TensorLayout;
  readonly pool: CutPool | null;
  /** Whether the tensor is float16 (cast to float32 first). */
  readonly float16: boolean;
}

const IMAGES = 'images';

/**
 * The rewritten model's input: `images`, as every model bottleneck writes, unless the model's own
 * input has that name and needs converting (NCHW or float16) first.
 */
export function feedName(input: ImageInput): string {
  return input.name === IMAGES && needsConversion(input) ? `${IMAGES}_nhwc` : IMAGES;
}

const needsConversion = (input: ImageInput) => input.layout === 'nchw' || input.elemType === 'float16';
// Prefixed: a user's graph may well have a tensor named code0.
export const codeOutput = (i: number): string => `bottleneck_code${i}`;

export function decodeModel(bytes: Uint8Array, file: string): proto.ModelProto {
  let model: proto.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch {
    throw new UserError(`${file}: not an ONNX model (it does not decode as an ONNX ModelProto)`);
  }
  if (!model.graph || (model.graph.node ?? []).length === 0) throw new UserError(`${file}: not an ONNX model (no graph, or a graph with no nodes)`);
  return model;
}

/** The model's single image input: 4-D, 3 channels, float. Anything else is refused by name. */
export function imageInput(model: proto.IModelProto, file: string, layoutOverride?: 'nchw' | 'nhwc'): ImageInput {
  const graph = model.graph!;
  const initialised = new Set((graph.initializer ?? []).map((t) => t.name));
  const inputs = (graph.input ?? []).filter((i) => !initialised.has(i.name));
  const describe = (i: proto.IValueInfoProto) => `${i.name} [${dimsOf(i).map((d) => d ?? '?').join(', ')}]`;
  if (inputs.length !== 1) throw new UserError(`${file}: has ${inputs.length} inputs (${inputs.map(describe).join(', ')}); a backbone takes one image input`);
  const input = inputs[0];
  const dims = dimsOf(input);
  const elem = input.type?.tensorType?.elemType;
  if (elem !== FLOAT && elem !== FLOAT16) throw new UserError(`${file}: its input ${describe(input)} is not a float tensor (an already-quantized input is not an image)`);
  if (dims.length !== 4) throw new UserError(`${file}: its input ${describe(input)} is not a 4-D batch of images`);
  const layout = layoutOverride ?? (dims[1] === 3 ? 'nchw' : dims[3] === 3 ? 'nhwc' : null);
  if (!layout) throw new UserError(`${file}: its input ${describe(input)} has no 3-channel axis (NCHW or NHWC); pass --layout nchw or nhwc if it is one`);
  const channels = layout === 'nchw' ? dims[1] : dims[3];
  if (channels !== null && channels !== 3) throw new UserError(`${file}: its input ${describe(input)} has ${channels} channels on the ${layout} channel axis, not 3 (RGB)`);
  const [h, w] = layout === 'nchw' ? [dims[2], dims[3]] : [dims[1], dims[2]];
  return { name: input.name!, layout, elemType: elem === FLOAT16 ? 'float16' : 'float32', size: h && w ? [h, w] : null };
}

function dimsOf(v: proto.IValueInfoProto): (number | null)[] {
  return (v.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimValue !== undefined && d.dimValue !== null && Number(d.dimValue) > 0 ? Number(d.dimValue) : null));
}

/** Every tensor a node produces, in graph order, with the producing op. */
export function producedTensors(model: proto.IModelProto): { name: string; op: string }[] {
  return (model.graph!.node ?? []).flatMap((n) => (n.output ?? []).filter(Boolean).map((name) => ({ name, op: n.opType ?? '?' })));
}

/**
 * A model computing only the requested cuts as `code0`, `code1`, … ([batch, D] float32 each),
 * from `images` ([batch, H, W, 3] float32).
 */
export function rewriteForCuts(model: proto.IModelProto, input: ImageInput & { readonly size: readonly [number, number] }, cuts: readonly CutRequest[]): proto.IModelProto {
  const size = input.size;
  const added: proto.INodeProto[] = [];
  const initializers: proto.ITensorProto[] = [];
  const outputs = cuts.map((cut, i) => {
    const out = codeOutput(i);
    emitCode(cut, out, added, initializers);
    return valueInfo(out, ['batch', 'code'], FLOAT);
  });
  return rewritten(model, input, size, added, initializers, outputs);
}

/** One dense layer of a head: weight [outputs, inputs] row-major, bias [outputs]. */
export interface DenseLayer {
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly inputs: number;
  readonly outputs: number;
}

/**
 * For export: one cut's code, then (with a head) its dense layers, ReLU between them and a
 * softmax, as the single output `output` ([batch, classes], or [batch, D] without a head).
 */
export function rewriteForExport(
  model: proto.IModelProto,
  input: ImageInput & { readonly size: readonly [number, number] },
  cut: CutRequest,
  head: readonly DenseLayer[],
  output: string,
): Uint8Array {
  const added: proto.INodeProto[] = [];
  const initializers: proto.ITensorProto[] = [];
  const code = head.length === 0 ? output : codeOutput(0);
  emitCode(cut, code, added, initializers);
  const dense = denseHeadNodes(code, head, output);
  return encodeRewritten(model, input, input.size, [...added, ...dense.nodes], [...initializers, ...dense.initializers], [valueInfo(output, ['batch', head.at(-1)?.outputs ?? 'code'], FLOAT)]);
}

/**
 * A codes model (output `code`, [batch, D]) with a head on it: its dense layers, ReLU between
 * them and a softmax, in float32, as the model's only output `output` ([batch, classes]; with
 * no head, the code itself under that name).
 */
export function appendDenseHead(model: proto.IModelProto, code: string, head: readonly DenseLayer[], output: string): proto.IModelProto {
  const graph = model.graph!;
  if (!(graph.output ?? []).some((o) => o.name === code)) throw new Error(`appendDenseHead: the model has no output '${code}'`);
  const dense = head.length > 0 ? denseHeadNodes(code, head, output) : { nodes: [{ opType: 'Identity', input: [code], output: [output], name: output }], initializers: [] };
  return {
    ...model,
    graph: {
      ...graph,
      node: [...(graph.node ?? []), ...dense.nodes],
      initializer: [...(graph.initializer ?? []), ...dense.initializers],
      output: [valueInfo(output, ['batch', head.at(-1)?.outputs ?? 'code'], FLOAT)],
    },
  };
}

function denseHeadNodes(code: string, head: readonly DenseLayer[], output: string): { nodes: proto.INodeProto[]; initializers: proto.ITensorProto[] } {
  const nodes: proto.INodeProto[] = [];
  const initializers: proto.ITensorProto[] = [];
  let x = code;
  head.forEach((layer, i) => {
    const last = i === head.length - 1;
    const w = `head_dense_${i}.weight`;
    const b = `head_dense_${i}.bias`;
    initializers.push({ name: w, dims: [layer.outputs, layer.inputs], dataType: FLOAT, rawData: bytesOf(layer.weight) });
    initializers.push({ name: b, dims: [layer.outputs], dataType: FLOAT, rawData: bytesOf(layer.bias) });
    const dense = `head_dense_${i}`;
    nodes.push({ opType: 'Gemm', input: [x, w, b], output: [dense], name: dense, attribute: [attr.int('transB', 1)] });
    x = last ? output : `head_relu_${i}`;
    nodes.push(last ? { opType: 'Softmax', input: [dense], output: [x], name: x, attribute: [attr.int('axis', 1)] } : { opType: 'Relu', input: [dense], output: [x], name: x });
  });
  return { nodes, initializers };
}

/** The model with every float tensor as an output, as it is (for learning their shapes). */
export function rewriteForProbe(model: proto.IModelProto, input: ImageInput, size: readonly [number, number]): Uint8Array {
  const outputs = producedTensors(model).map((t) => ({ name: t.name }));
  return encodeRewritten(model, input, size, [], [], outputs);
}

function encodeRewritten(...args: Parameters<typeof rewritten>): Uint8Array {
  return onnx.ModelProto.encode(rewritten(...args)).finish();
}

function rewritten(
  model: proto.IModelProto,
  input: ImageInput,
  size: readonly [number, number],
  added: proto.INodeProto[],
  initializers: proto.ITensorProto[],
  outputs: proto.IValueInfoProto[],
): proto.IModelProto {
  const graph = model.graph!;
  const front = frontNodes(input);
  const nodes = prune([...front, ...(graph.node ?? []), ...added], outputs.map((o) => o.name!));
  const needed = new Set(nodes.flatMap((n) => [...(n.input ?? []), ...subgraphNames(n)]));
  return {
    ...model,
    graph: {
      ...graph,
      node: nodes,
      initializer: [...(graph.initializer ?? []).filter((t) => needed.has(t.name!)), ...initializers],
      input: [valueInfo(feedName(input), ['batch', size[0], size[1], 3], FLOAT), ...(graph.input ?? []).filter((i) => i.name !== input.name && needed.has(i.name!))],
      output: outputs,
      // Shape hints of the original (a fixed batch of 1, say) would contradict a dynamic batch.
      valueInfo: [],
    },
  };
}

/**
 * The graph with only the nodes its outputs need and the initializers those read (for a pass
 * that replaced nodes, such as the engine's attention fusion, to drop what it left behind).
 */
export function pruneGraph(graph: proto.IGraphProto): proto.IGraphProto {
  const node = prune(graph.node ?? [], (graph.output ?? []).map((o) => o.name!));
  const needed = new Set(node.flatMap((n) => [...(n.input ?? []), ...subgraphNames(n)]));
  return { ...graph, node, initializer: (graph.initializer ?? []).filter((t) => needed.has(t.name!)) };
}

/** images (NHWC float32) → the model's input, by its original name. */
function frontNodes(input: ImageInput): proto.INodeProto[] {
  const steps: proto.INodeProto[] = [];
  let x = feedName(input);
  if (x === input.name) return steps;
  const next = (opType: string, attribute: proto.IAttributeProto[], last: boolean) => {
    const out = last ? input.name : `${IMAGES}__${opType.toLowerCase()}`;
    steps.push({ opType, input: [x], output: [out], name: out, attribute });
    x = out;
  };
  const transpose = input.layout === 'nchw';
  const cast = input.elemType === 'float16';
  if (transpose) next('Transpose', [attr.ints('perm', [0, 3, 1, 2])], !cast);
  if (cast) next('Cast', [attr.int('to', FLOAT16)], true);
  if (!transpose && !cast) next('Identity', [], true);
  return steps;
}

/** The nodes that turn one cut's tensor into its code, [batch, D] float32; resolveCuts has checked the pooling fits. */
function emitCode(cut: CutRequest, out: string, nodes: proto.INodeProto[], inits: proto.ITensorProto[]): void {
  let x = cut.tensor;
  const step = (opType: string, inputs: string[], attribute: proto.IAttributeProto[] = [], name = `${out}__${nodes.length}`) => {
    nodes.push({ opType, input: [x, ...inputs], output: [name], name, attribute });
    x = name;
  };
  const int64 = (values: number[]) => {
    const name = `${out}__const${inits.length}`;
    inits.push({ name, dims: [values.length], dataType: INT64, int64Data: values });
    return name;
  };
  if (cut.float16) step('Cast', [], [attr.int('to', FLOAT)]);
  const { layout, pool } = cut;
  if (layout === 'nchw' || layout === 'nhwc') {
    if (pool === 'avg' || pool === 'max') {
      if (layout === 'nhwc') step('Transpose', [], [attr.ints('perm', [0, 3, 1, 2])]);
      step(pool === 'avg' ? 'GlobalAveragePool' : 'GlobalMaxPool', []);
    } else if (layout === 'nchw') {
      // Codes are flattened in H, W, C order, as Keras' Flatten and every other backbone here.
      step('Transpose', [], [attr.ints('perm', [0, 2, 3, 1])]);
    }
  } else if (layout === 'tokens') {
    if (pool === 'cls') {
      const index: proto.ITensorProto = { name: `${out}__cls`, dims: [], dataType: INT64, int64Data: [0] };
      inits.push(index);
      step('Gather', [index.name!], [attr.int('axis', 1)]);
    } else if (pool === 'mean' || pool === 'mean-patch') {
      if (pool === 'mean-patch') step('Slice', [int64([1]), int64([2 ** 62]), int64([1])]);
      // [N, T, D] → [N, D, T]: GlobalAveragePool averages the last axis, in any opset.
      step('Transpose', [], [attr.ints('perm', [0, 2, 1])]);
      step('GlobalAveragePool', []);
    }
  }
  step('Flatten', [], [attr.int('axis', 1)], out);
}

/** The nodes some output needs, in their original order; subgraph bodies' outer references count. */
function prune(nodes: readonly proto.INodeProto[], outputs: readonly string[]): proto.INodeProto[] {
  const needed = new Set(outputs);
  const keep = new Array<boolean>(nodes.length).fill(false);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    if (!(n.output ?? []).some((o) => needed.has(o))) continue;
    keep[i] = true;
    for (const name of [...(n.input ?? []), ...subgraphNames(n)]) if (name) needed.add(name);
  }
  return nodes.filter((_, i) => keep[i]);
}

/** Names a node's subgraphs (If, Loop, Scan bodies) read from the enclosing graph. */
function subgraphNames(node: proto.INodeProto): string[] {
  const names: string[] = [];
  const visit = (g: proto.IGraphProto) => {
    for (const n of g.node ?? []) {
      names.push(...(n.input ?? []));
      for (const a of n.attribute ?? []) {
        if (a.g) visit(a.g);
        for (const sub of a.graphs ?? []) visit(sub);
      }
    }
  };
  for (const a of node.attribute ?? []) {
    if (a.g) visit(a.g);
    for (const sub of a.graphs ?? []) visit(sub);
  }
  return names;
}

/** ONNX raw data is little-endian, as every platform Node runs on. */
function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function valueInfo(name: string, dims: readonly (number | string)[], elemType: number): proto.IValueInfoProto {
  return { name, type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } };
}
