import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
const { onnx } = onnxProto;
const F = onnx.TensorProto.DataType.FLOAT, I = onnx.TensorProto.DataType.INT64;
const vi = (name: string, t: number, dims: number[]) => onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: t, shape: { dim: dims.map(d => ({ dimValue: d })) } } } });
const n = 4;
const node = onnx.NodeProto.create({ opType: 'Adam', domain: 'ai.onnx.preview.training', input: ['R', 'T', 'X', 'G', 'V', 'H'], output: ['X2', 'V2', 'H2'],
  attribute: [{ name: 'alpha', f: 0.9, type: onnx.AttributeProto.AttributeType.FLOAT }, { name: 'beta', f: 0.999, type: onnx.AttributeProto.AttributeType.FLOAT }, { name: 'epsilon', f: 1e-7, type: onnx.AttributeProto.AttributeType.FLOAT }] });
const graph = onnx.GraphProto.create({ name: 'g', node: [node], input: [vi('R', F, []), vi('T', I, []), vi('X', F, [n]), vi('G', F, [n]), vi('V', F, [n]), vi('H', F, [n])], output: [vi('X2', F, [n]), vi('V2', F, [n]), vi('H2', F, [n])] });
const model = onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }, { domain: 'ai.onnx.preview.training', version: 1 }], graph });
const bytes = onnx.ModelProto.encode(model).finish();
try {
  const s = await ort.InferenceSession.create(bytes);
  const t = (a: number[]) => new ort.Tensor('float32', Float32Array.from(a), [n]);
  const r = await s.run({ R: new ort.Tensor('float32', Float32Array.from([0.1]), []), T: new ort.Tensor('int64', BigInt64Array.from([0n]), []), X: t([1, 2, 3, 4]), G: t([1, 1, 1, 1]), V: t([0, 0, 0, 0]), H: t([0, 0, 0, 0]) });
  console.log(r.X2.data);
} catch (e) { console.log('ERR', (e as Error).message); }
