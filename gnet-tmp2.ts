import ort from 'onnxruntime-node';
import { planCuts } from './src/backbones/cut.ts';
import { loadBackbone } from './src/backbones/zoo.ts';
import { buildOnnxModel, ONNX_INPUT, onnxOutputName } from './src/engines/onnx-model.ts';
const name = process.argv[2] ?? 'googlenet';
const threads = Number(process.argv[3] ?? 1);
const backbone = await loadBackbone(name, { weightsDir: '/work/shared/models', download: false });
const cuts = [backbone.defaultCut];
const size = backbone.preprocessing.size;
const plan = planCuts(backbone.graph, size, cuts);
const batch = 8;
const x = new Float32Array(batch * size[0] * size[1] * 3);
for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.001) * 60 + Math.sin(i * 12.9898) * 40;
const feed = { [ONNX_INPUT]: new ort.Tensor('float32', x, [batch, size[0], size[1], 3]) };
const variants: Record<string, [Record<string, string>, any]> = {
  direct: [{}, { convAlgorithm: 'direct' }],
  'h80': [{ WINO_H: '80' }, { convAlgorithm: 'winograd' }],
  'h80-min14': [{ WINO_H: '80', WINO_MIN_SIZE: '14' }, { convAlgorithm: 'winograd' }],
  'h128': [{ WINO_H: '128' }, { convAlgorithm: 'winograd' }],
};
const models: Record<string, Uint8Array> = {};
for (const [v, [env, spec]] of Object.entries(variants)) {
  delete process.env.WINO_H; delete process.env.WINO_MIN_SIZE;
  Object.assign(process.env, env);
  models[v] = buildOnnxModel({ plan, cuts, weights: backbone.weights, ...spec });
}
const cpu: Record<string, number[]> = {};
const wall: Record<string, number[]> = {};
for (let round = 0; round < 4; round++) for (const v of Object.keys(variants)) {
  const s = await ort.InferenceSession.create(models[v], { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1 });
  await s.run(feed);
  const c = process.cpuUsage(); const t = performance.now();
  for (let r = 0; r < 4; r++) await s.run(feed);
  const u = process.cpuUsage(c);
  (wall[v] ??= []).push((4 * batch * 1000) / (performance.now() - t));
  (cpu[v] ??= []).push((u.user + u.system) / 1000 / 4);
  await s.release();
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const v of Object.keys(variants)) console.log(name, v.padEnd(10), 'img/s med', med(wall[v]).toFixed(1), 'best', Math.max(...wall[v]).toFixed(1), 'CPU ms/batch med', med(cpu[v]).toFixed(0));
