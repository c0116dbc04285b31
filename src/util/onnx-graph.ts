/**
 * The one ONNX graph builder every generated model uses (the backbone models, Winograd convs,
 * the head's training step, audit's block kNN): unique value names across a graph and its
 * subgraphs (Scan bodies), initializers, de-duplicated small constants, the attribute helpers,
 * and the model's encoding. onnx-proto's types are generated and loose; this keeps their use in
 * one place.
 */
import onnxProto from 'onnx-proto';
import type { onnx as proto } from 'onnx-proto';
/** A float32 tensor: row-major data and its shape. */
export interface FloatTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

// onnx-proto is CommonJS; its namespace is only reachable through the default export.
const { onnx } = onnxProto;

export const OPSET = 17;
export const FLOAT = onnx.TensorProto.DataType.FLOAT;
export const INT64 = onnx.TensorProto.DataType.INT64;

export type Attr = proto.IAttributeProto;
const type = onnx.AttributeProto.AttributeType;

export const attr = {
  int: (name: string, i: number): Attr => ({ name, type: type.INT, i }),
  ints: (name: string, ints: readonly number[]): Attr => ({ name, type: type.INTS, ints: [...ints] }),
  float: (name: string, f: number): Attr => ({ name, type: type.FLOAT, f }),
  graph: (name: string, g: proto.IGraphProto): Attr => ({ name, type: type.GRAPH, g }),
};

interface Shared {
  /** Per base name, so that a value's name does not depend on what else the graph holds (calibrated ranges are kept by name). */
  readonly counters: Map<string, number>;
  readonly initializers: proto.ITensorProto[];
  readonly constants: Map<string, string>;
}

export class OnnxGraph {
  readonly nodes: proto.INodeProto[] = [];
  private readonly shared: Shared;

  constructor(shared?: Shared) {
    this.shared = shared ?? { counters: new Map(), initializers: [], constants: new Map() };
  }

  get initializers(): readonly proto.ITensorProto[] {
    return this.shared.initializers;
  }

  /** A builder for a subgraph (a Scan body): its nodes are its own, names and constants are shared. */
  subgraph(): OnnxGraph {
    return new OnnxGraph(this.shared);
  }

  fresh(base: string): string {
    const n = this.shared.counters.get(base) ?? 0;
    this.shared.counters.set(base, n + 1);
    return `${base}__${n}`;
  }

  node(opType: string, inputs: readonly string[], outputs: readonly string[], attribute: Attr[] = []): void {
    this.nodes.push({ opType, input: [...inputs], output: [...outputs], name: outputs[0], attribute });
  }

  /** A single-output node; its output is `output`, or a fresh name. */
  op(opType: string, inputs: readonly string[], output?: string, attribute: Attr[] = []): string {
    const name = output ?? this.fresh(opType.toLowerCase());
    this.node(opType, inputs, [name], attribute);
    return name;
  }

  /** A float32 tensor initializer under its own name (weights). */
  floats(name: string, t: FloatTensor): string {
    const raw = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    this.shared.initializers.push({ name, dims: [...t.shape], dataType: FLOAT, rawData: raw });
    return name;
  }

  /** A float32 constant of the given shape ([] for a scalar), under a fresh name. */
  constant(base: string, values: readonly number[], dims: readonly number[]): string {
    return this.floats(this.fresh(base), { shape: dims, data: Float32Array.from(values) });
  }

  /** A float32 scalar (one initializer per distinct value). */
  scalar(value: number): string {
    return this.sharedConstant(`f${value}`, () => ({ dims: [], dataType: FLOAT, floatData: [value] }));
  }

  /** An int64 vector (shapes, axes, pads; one initializer per distinct value). */
  int64s(values: readonly number[]): string {
    return this.sharedConstant(`i${values.join(',')}`, () => ({ dims: [values.length], dataType: INT64, int64Data: [...values] }));
  }

  private sharedConstant(key: string, make: () => proto.ITensorProto): string {
    let name = this.shared.constants.get(key);
    if (!name) {
      name = this.fresh('const');
      this.shared.initializers.push({ ...make(), name });
      this.shared.constants.set(key, name);
    }
    return name;
  }
}

/** A graph input or output: float32 by default; a string dimension is symbolic (`batch`). */
export function valueInfo(name: string, dims: readonly (number | string)[], elemType: number = FLOAT): proto.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/** The model, before encoding (for passes over it, such as int8 quantisation). */
export function modelProto(g: OnnxGraph, name: string, input: proto.IValueInfoProto[], output: proto.IValueInfoProto[]): proto.IModelProto {
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: OPSET }],
    producerName: 'bottleneck',
    graph: { name, node: g.nodes, initializer: [...g.initializers], input, output },
  };
}

/** The model file's bytes. */
export function encodeModel(g: OnnxGraph, name: string, input: proto.IValueInfoProto[], output: proto.IValueInfoProto[]): Uint8Array {
  return encodeProto(modelProto(g, name, input, output));
}

export function encodeProto(model: proto.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}
