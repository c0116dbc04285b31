/**
 * bench/int8-conv-paths: one int8 conv at a time, as written for each of onnxruntime's int8 conv
 * kernels (qdq-rewrite.ts, Int8ConvPath): 'symmetric' (zero-point-0 weights: its indirect
 * convolution) and 'gemm' with every conv offset (im2col + QGEMM, AMX where the CPU has it).
 * The shapes are convs of squeezenet1_1, MobileNetV2's pointwise convs, VGG16 and resnet50, at
 * batch 8 on 2 threads; medians of 1.5 s of runs each. Each time includes quantising the input
 * and dequantising the output (a one-conv model), which dominates the shallow wide convs. What
 * GEMM_MIN_DEPTH was chosen from.
 *
 *   npm run bench:int8-conv-paths
 */
import onnxProto from 'onnx-proto';
import { applyQdq, GEMM_MIN_DEPTH, planQdq } from '../src/engines/quantize/qdq-rewrite.ts';
import { floatReader } from '../src/engines/quantize/int8-model.ts';
import { attr, encodeModel, OnnxGraph, valueInfo } from '../src/util/onnx-graph.ts';
import ort from '../src/util/onnxruntime.ts';
import { benchArgs } from './args.ts';
import { machineLine } from './machine.ts';
const { onnx } = onnxProto;
// No options: refuses any, in one line.
benchArgs({ options: {} });
const B = 8;
const shapes: [string, number, number, number, number][] = [
  // name, input channels, output channels, kernel, height = width
  ['sq fire2 squeeze 1x1', 64, 16, 1, 55], ['sq fire2 expand 1x1', 16, 64, 1, 55], ['sq fire2 expand 3x3', 16, 64, 3, 55],
  ['sq fire5 squeeze', 256, 32, 1, 27], ['sq fire5 expand3', 32, 128, 3, 27], ['sq fire9 squeeze', 512, 64, 1, 13], ['sq fire9 expand1', 64, 256, 1, 13], ['sq fire9 expand3', 64, 256, 3, 13],
  ['mb pw 16->96', 16, 96, 1, 112], ['mb pw 96->24', 96, 24, 1, 56], ['mb pw 24->144', 24, 144, 1, 56], ['mb pw 192->32', 192, 32, 1, 28], ['mb pw 96->576', 96, 576, 1, 14], ['mb pw 960->160', 960, 160, 1, 7], ['mb pw 320->1280', 320, 1280, 1, 7],
  ['vgg 3->64', 3, 64, 3, 224], ['vgg 64->64', 64, 64, 3, 224], ['vgg 128', 128, 128, 3, 112], ['vgg 256', 256, 256, 3, 56], ['vgg 512@28', 512, 512, 3, 28], ['vgg 512@14', 512, 512, 3, 14],
  ['rn 64->64 1x1', 64, 64, 1, 56], ['rn 64->64 3x3', 64, 64, 3, 56], ['rn 64->256', 64, 256, 1, 56], ['rn 256->64', 256, 64, 1, 56], ['rn 1024->256', 1024, 256, 1, 14], ['rn 2048->512', 2048, 512, 1, 7], ['rn 512 3x3@7', 512, 512, 3, 7],
];
async function time(bytes: Uint8Array, feed: Record<string, InstanceType<typeof ort.Tensor>>): Promise<number> {
  const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 2 });
  await s.run(feed);
  const ts: number[] = [];
  const end = performance.now() + 1500;
  while (performance.now() < end || ts.length < 5) { const t = performance.now(); await s.run(feed); ts.push(performance.now() - t); }
  ts.sort((a, b) => a - b);
  await s.release();
  return ts[Math.floor(ts.length / 2)];
}
console.log(machineLine());
console.log(`| conv | Cin | Cout | k | H×W | depth | symmetric ms | gemm ms | gemm speedup | depth ≥ ${GEMM_MIN_DEPTH}: gemm |`);
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const [name, cin, cout, k, h] of shapes) {
  const g = new OnnxGraph();
  const w = g.floats('w', { shape: [cout, cin, k, k], data: Float32Array.from({ length: cout * cin * k * k }, (_, i) => Math.sin(i * 0.7)) });
  const conv = g.op('Conv', ['x', w, g.floats('b', { shape: [cout], data: new Float32Array(cout) })], 'conv', [attr.ints('pads', k === 3 ? [1, 1, 1, 1] : [0, 0, 0, 0])]);
  g.op('Relu', [conv], 'y');
  const model = onnx.ModelProto.decode(encodeModel(g, 'c', [valueInfo('x', [B, cin, h, h])], [valueInfo('y', [B, cout, h, h])]));
  const plan = planQdq(model.graph!);
  const ranges = new Map(plan.calibrate.map((t): [string, readonly [number, number]] => [t, t === 'x' ? [0, 1] : [0, 10]]));
  const feed = { x: new ort.Tensor('float32', Float32Array.from({ length: B * cin * h * h }, (_, i) => (i % 251) / 251), [B, cin, h, h]) };
  const sym = await time(onnx.ModelProto.encode(applyQdq(model, plan, ranges, floatReader(), 'symmetric')).finish(), feed);
  // Every conv offset, whatever its depth: the threshold is what this measures.
  const gem = await time(onnx.ModelProto.encode(applyQdq(model, plan, ranges, floatReader(), 'gemm', 0)).finish(), feed);
  console.log(`| ${name} | ${cin} | ${cout} | ${k} | ${h} | ${cin * k * k} | ${sym.toFixed(2)} | ${gem.toFixed(2)} | ${(sym / gem).toFixed(2)}× | ${cin * k * k >= GEMM_MIN_DEPTH ? 'yes' : 'no'} |`);
}
