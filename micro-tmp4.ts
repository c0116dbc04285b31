import onnxProto from 'onnx-proto';
import ort from 'onnxruntime-node';
const { onnx } = onnxProto;
const ints = (name: string, v: number[]): any => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v });
const int = (name: string, i: number): any => ({ name, type: onnx.AttributeProto.AttributeType.INT, i });
function tensor(name: string, dims: number[]) { const n = dims.reduce((a, b) => a * b, 1); const d = Float32Array.from({ length: n }, (_, i) => Math.sin(i)); return { name, dims, dataType: 1, rawData: new Uint8Array(d.buffer) }; }
function i64(name: string, v: number[]) { const d = new BigInt64Array(v.map(BigInt)); return { name, dims: [v.length], dataType: 7, rawData: new Uint8Array(d.buffer) }; }
const vi = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
async function bench(label: string, inShape: number[], nodes: any[], inits: any[], threads = Number(process.env.T ?? 1), reps = 5) {
  const model = onnx.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }], graph: { name: 'g', node: nodes, initializer: inits, input: [vi('x', inShape)], output: [{ name: 'y' }] } }).finish();
  const s = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1 });
  const n = inShape.reduce((a, b) => a * b, 1);
  const x = new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => (i % 97) - 48), inShape);
  await s.run({ x });
  const times: number[] = []; const walls: number[] = [];
  for (let r = 0; r < reps; r++) { const c = process.cpuUsage(); const t = performance.now(); await s.run({ x }); walls.push(performance.now() - t); const u = process.cpuUsage(c); times.push((u.user + u.system) / 1000); }
  times.sort((a, b) => a - b); walls.sort((a, b) => a - b);
  console.log(`${label.padEnd(64)} ${times[0].toFixed(1)} ms CPU (min), wall min ${walls[0].toFixed(1)}`);
  await s.release();
}
const N = 8, C = 256, H = 56, k = 36;
await bench('Conv3D dense transform', [1, 1, N * C, H, H], [{ opType: 'Conv', input: ['x', 'w'], output: ['y'], attribute: [ints('strides', [1, 4, 4]), ints('pads', [0, 1, 1, 0, 3, 3])] }], [tensor('w', [k, 1, 1, 6, 6])]);
await bench('Conv3D separable rows then cols', [1, 1, N * C, H, H], [
  { opType: 'Conv', input: ['x', 'w1'], output: ['r'], attribute: [ints('strides', [1, 4, 1]), ints('pads', [0, 1, 1, 0, 3, 1])] },
  { opType: 'Reshape', input: ['r', 'sh'], output: ['r2'] },
  { opType: 'Conv', input: ['r2', 'w2'], output: ['y'], attribute: [ints('strides', [1, 1, 4])] },
], [tensor('w1', [6, 1, 1, 6, 1]), tensor('w2', [6, 1, 1, 1, 6]), i64('sh', [1, 1, -1, 14, 58])]);
await bench('Conv3D rows only', [1, 1, N * C, H, H], [{ opType: 'Conv', input: ['x', 'w1'], output: ['y'], attribute: [ints('strides', [1, 4, 1]), ints('pads', [0, 1, 1, 0, 3, 1])] }], [tensor('w1', [6, 1, 1, 6, 1])]);
await bench('Conv2D [NC,1,H,W] generic? group trick', [1, N * C, H, H], [{ opType: 'Conv', input: ['x', 'w'], output: ['y'], attribute: [ints('strides', [4, 4]), ints('pads', [1, 1, 3, 3]), int('group', N * C)] }], [tensor('w', [N * C * k, 1, 6, 6])]);
await bench('MatMul U[36,Co,C] x V[36,C,NT]', [k, C, N * 196], [{ opType: 'MatMul', input: ['u', 'x'], output: ['y'] }], [tensor('u', [k, 256, C])]);
await bench('Gemm-ish: MatMul V^T [36,NT,C] x U[36,C,Co]', [k, N * 196, C], [{ opType: 'MatMul', input: ['x', 'u'], output: ['y'] }], [tensor('u', [k, C, 256])]);
await bench('Add bias + Relu [Co, N*H*W]', [256, N * H * H], [{ opType: 'Add', input: ['x', 'b'], output: ['t'] }, { opType: 'Relu', input: ['t'], output: ['y'] }], [tensor('b', [256, 1])]);
await bench('Copy-ish: Relu only', [256, N * H * H], [{ opType: 'Relu', input: ['x'], output: ['y'] }], []);
