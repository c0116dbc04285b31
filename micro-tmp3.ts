import onnxProto from 'onnx-proto';
import ort from 'onnxruntime-node';
const { onnx } = onnxProto;
const ints = (name: string, v: number[]): any => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v });
const int = (name: string, i: number): any => ({ name, type: onnx.AttributeProto.AttributeType.INT, i });
function tensor(name: string, dims: number[]) { const n = dims.reduce((a, b) => a * b, 1); const d = Float32Array.from({ length: n }, (_, i) => Math.sin(i)); return { name, dims, dataType: 1, rawData: new Uint8Array(d.buffer) }; }
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
const N = 8, C = 256, H = 56, Co = 256, k = 36, T = 196;
await bench('Conv3D transform [1,1,NC,56,56] -> [1,36,NC,14,14]', [1, 1, N * C, H, H], [{ opType: 'Conv', input: ['x', 'w'], output: ['y'], attribute: [ints('strides', [1, 4, 4]), ints('pads', [0, 1, 1, 0, 3, 3])] }], [tensor('w', [k, 1, 1, 6, 6])]);
await bench('Conv2D planes transform (nchwc+reorder)', [N * C, 1, H, H], [{ opType: 'Conv', input: ['x', 'w'], output: ['y'], attribute: [ints('strides', [4, 4]), ints('pads', [1, 1, 3, 3])] }], [tensor('w', [k, 1, 6, 6])]);
await bench('MatMul U[36,Co,C] x V[36,C,NT]', [k, C, N * T], [{ opType: 'MatMul', input: ['u', 'x'], output: ['y'] }], [tensor('u', [k, Co, C])]);
await bench('MatMul U[36,1,Co,C] x V[36,N,C,T]', [k, N, C, T], [{ opType: 'MatMul', input: ['u', 'x'], output: ['y'] }], [tensor('u', [k, 1, Co, C])]);
await bench('AA MatMul [16,36] x [36, N*Co*T]', [k, N * Co * T], [{ opType: 'MatMul', input: ['a', 'x'], output: ['y'] }], [tensor('a', [16, k])]);
await bench('D2S DCR [1, 16*N*Co, 14, 14]', [1, 16 * N * Co, 14, 14], [{ opType: 'DepthToSpace', input: ['x'], output: ['y'], attribute: [int('blocksize', 4)] }], []);
await bench('ConvTranspose3D [1,36,NCo,14,14] -> [1,1,NCo,56,56]', [1, k, N * Co, 14, 14], [{ opType: 'ConvTranspose', input: ['x', 'w'], output: ['y'], attribute: [ints('strides', [1, 4, 4])] }], [tensor('w', [k, 1, 1, 4, 4])]);
await bench('Transpose [Co,N,H,W]->[N,Co,H,W]', [Co, N, H, H], [{ opType: 'Transpose', input: ['x'], output: ['y'], attribute: [ints('perm', [1, 0, 2, 3])] }], []);
await bench('direct Conv', [N, C, H, H], [{ opType: 'Conv', input: ['x', 'w'], output: ['y'], attribute: [ints('pads', [1, 1, 1, 1])] }], [tensor('w', [Co, C, 3, 3])]);
