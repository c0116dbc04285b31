import ort from 'onnxruntime-node';
import { planCuts } from './src/backbones/cut.ts';
import { seededWeights } from './src/backbones/zoo/random-weights.ts';
import { vgg16Graph } from './src/backbones/zoo/vgg16.ts';
import { buildOnnxModel, ONNX_INPUT, onnxOutputName } from './src/engines/onnx-model.ts';
const graph = vgg16Graph();
const cuts = [{ layer: 'block5_pool' }];
const plan = planCuts(graph, [224, 224], cuts);
const weights = seededWeights(graph, [224, 224], 1, ['block5_pool']);
const batch = 2;
const input = new Float32Array(batch * 224 * 224 * 3);
for (let i = 0; i < input.length; i++) input[i] = Math.sin(i * 12.9898) * 120;
const feed = { [ONNX_INPUT]: new ort.Tensor('float32', input, [batch, 224, 224, 3]) };
async function run(spec: any) {
  const s = await ort.InferenceSession.create(buildOnnxModel({ plan, cuts, weights, ...spec }), { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 2 });
  const out = (await s.run(feed))[onnxOutputName(0)].data as Float32Array;
  await s.release();
  return out;
}
const ref = await run({ convAlgorithm: 'direct' });
const rel = (a: Float32Array) => { let d = 0, m = 0; for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - ref[i])); m = Math.max(m, Math.abs(ref[i])); } return d / m; };
const sets: Record<string, any> = JSON.parse(process.argv[2]);
for (const [name, w] of Object.entries(sets)) console.log(name, rel(await run({ convAlgorithm: 'winograd', winograd: w })).toExponential(2));
