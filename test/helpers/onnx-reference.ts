/**
 * What onnxruntime computes on an original ONNX test model (NCHW `pixel_values`, SIDE × SIDE),
 * with `tensors` added as outputs, for images prepared exactly as extract prepares them: the
 * reference that extract's codes at those tensors must equal.
 */
import { readFile } from 'node:fs/promises';
import onnxProto from 'onnx-proto';
import { loadOnnxBackbone } from '../../src/backbones/onnx-file/onnx-backbone.ts';
import { preprocessInto } from '../../src/backbones/preprocess.ts';
import { decodeImage } from '../../src/extract/decode-image.ts';
import ort from '../../src/util/onnxruntime.ts';
import { SIDE } from './onnx-models.ts';

const { onnx } = onnxProto;

export async function onnxReference(modelFile: string, tensors: readonly string[], files: readonly string[]): Promise<Map<string, { data: Float32Array; dims: readonly number[] }>> {
  const backbone = await loadOnnxBackbone(modelFile);
  const model = onnx.ModelProto.decode(await readFile(modelFile));
  model.graph!.output!.push(...tensors.map((name) => onnx.ValueInfoProto.create({ name })));
  const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish());
  const nhwc = new Float32Array(files.length * SIDE * SIDE * 3);
  for (const [i, f] of files.entries()) preprocessInto(await decodeImage(f, { size: [SIDE, SIDE] }), backbone.preprocessing, nhwc, i * SIDE * SIDE * 3);
  const nchw = new Float32Array(nhwc.length);
  for (let n = 0; n < files.length; n++) {
    for (let p = 0; p < SIDE * SIDE; p++) for (let c = 0; c < 3; c++) nchw[((n * 3 + c) * SIDE * SIDE) + p] = nhwc[(n * SIDE * SIDE + p) * 3 + c];
  }
  const out = await session.run({ pixel_values: new ort.Tensor('float32', nchw, [files.length, 3, SIDE, SIDE]) });
  await session.release();
  return new Map(tensors.map((t) => [t, { data: out[t].data as Float32Array, dims: out[t].dims }]));
}

