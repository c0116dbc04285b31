import ort from 'onnxruntime-node';
const file = '/tmp/bncache/onnx/vgg16-2240ab6de4b0b6feb26f6545.onnx';
const batch = 8;
const x = new ort.Tensor('float32', new Float32Array(batch*224*224*3).fill(3), [batch,224,224,3]);
async function trial(name: string, opts: ort.InferenceSession.SessionOptions) {
  const s = await ort.InferenceSession.create(file, opts);
  await s.run({ images: x });
  const t = performance.now();
  for (let i = 0; i < 3; i++) await s.run({ images: x });
  console.log(name, (3*batch*1000/(performance.now()-t)).toFixed(2), 'img/s');
  await s.release();
}
const base = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 2, interOpNumThreads: 1, executionMode: 'sequential' } as const;
await trial('base', base);
await trial('nospin', { ...base, extra: { session: { intra_op: { allow_spinning: '0' } } } });
await trial('extended', { ...base, graphOptimizationLevel: 'extended' });
await trial('threads0', { ...base, intraOpNumThreads: 0 });
await trial('base again', base);
