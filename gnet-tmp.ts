import ort from 'onnxruntime-node';
import { planCuts } from './src/backbones/cut.ts';
import { loadBackbone } from './src/backbones/zoo.ts';
import { buildOnnxModel, ONNX_INPUT, onnxOutputName } from './src/engines/onnx-model.ts';
for (const name of ['googlenet', 'squeezenet1_1']) {
  const backbone = await loadBackbone(name, { weightsDir: '/work/shared/models', download: false });
  const cuts = [backbone.defaultCut];
  const size = backbone.preprocessing.size;
  const plan = planCuts(backbone.graph, size, cuts);
  const batch = 8;
  const x = new Float32Array(batch * size[0] * size[1] * 3);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.001) * 60 + Math.sin(i * 12.9898) * 40;
  const feed = { [ONNX_INPUT]: new ort.Tensor('float32', x, [batch, size[0], size[1], 3]) };
  const variants: Record<string, any> = { direct: { convAlgorithm: 'direct' }, winograd: { convAlgorithm: 'winograd' }, 'winograd-everywhere': { convAlgorithm: 'winograd', winograd: { everywhere: true } } };
  const outs: Record<string, Float32Array> = {};
  const times: Record<string, number[]> = {};
  for (let round = 0; round < 3; round++) for (const [v, spec] of Object.entries(variants)) {
    const s = await ort.InferenceSession.create(buildOnnxModel({ plan, cuts, weights: backbone.weights, ...spec }), { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 2, interOpNumThreads: 1 });
    outs[v] = (await s.run(feed))[onnxOutputName(0)].data as Float32Array;
    const t = performance.now();
    for (let r = 0; r < 3; r++) await s.run(feed);
    (times[v] ??= []).push((3 * batch * 1000) / (performance.now() - t));
    await s.release();
  }
  const rel = (a: Float32Array, b: Float32Array) => { let d = 0, m = 0; for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); } return d / m; };
  for (const v of Object.keys(variants)) console.log(name, v, 'img/s', times[v].map((t) => t.toFixed(1)).join(' '), 'rel err', rel(outs[v], outs.direct).toExponential(2));
}
