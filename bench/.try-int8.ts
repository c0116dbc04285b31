import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { loadGraphBackbone } from '../src/backbones/zoo.ts';
const name = process.argv[2] ?? 'googlenet';
const backbone = await loadGraphBackbone(name, { weightsDir: '../shared/models', download: false });
const SIZE = backbone.preprocessing.size;
const batch = 8;
const input = new Float32Array(batch * SIZE[0] * SIZE[1] * 3);
for (let i = 0; i < input.length; i++) input[i] = ((i * 2654435761) % 255) - 120;
const source = { key: `try-${name}`, batches: async function* () { for (let k = 0; k < 4; k++) yield { images: input, count: batch, size: SIZE, sha256: Array.from({ length: batch }, (_, i) => `${k}-${i}`) }; } };
for (const precision of (process.argv[3] ?? 'fp32,int8').split(',') as ('fp32' | 'int8')[]) {
  const e = await createOnnxEngine({ backbone, cuts: [backbone.defaultCut], device: 'cpu', cacheDir: '/tmp/q/cache', precision, calibration: source });
  await e.run(input, batch);
  const t = performance.now(); let n = 0;
  while (performance.now() - t < 10000) { await e.run(input, batch); n++; }
  console.log(name, precision, 'img/s', (n * batch / ((performance.now() - t) / 1000)).toFixed(2));
  await e.dispose();
}
