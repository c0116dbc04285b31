/**
 * Folds inference-time batch normalisation into the convolution before it: BN(conv(x)) =
 * conv'(x) with each output channel's kernel scaled by gamma / sqrt(variance + epsilon) and its
 * bias shifted to match. The folded node takes the batch norm's name, so every reader and cut
 * sees the same value; engines then run one fused conv (+ bias + activation) instead of three
 * ops, and the ONNX engine's Winograd convs keep their channel-major layout through it.
 *
 * A conv is folded only when the batch norm is its one reader, it has no activation of its own,
 * and nothing names it (a wanted output or an alias): then no one can see the difference.
 */
import { planGraph, type GraphPlan } from './graph-plan.ts';
import type { LayerGraph, LayerNode } from './layer-graph.ts';
import type { WeightMap, WeightTensor } from './weights.ts';

export function foldBatchNorms(graph: LayerGraph, weights: WeightMap, keep: readonly string[]): { graph: LayerGraph; weights: WeightMap } {
  const readers = new Map<string, number>();
  for (const node of graph.nodes) for (const i of node.inputs) readers.set(i, (readers.get(i) ?? 0) + 1);
  const named = new Set([...keep, ...Object.values(graph.aliases ?? {})]);
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  const folded = new Map<string, LayerNode>();
  const dropped = new Set<string>();
  const out = new Map(weights);
  for (const bn of graph.nodes) {
    if (bn.op !== 'batchnorm') continue;
    const conv = byName.get(bn.inputs[0]);
    if (!conv || (conv.op !== 'conv2d' && conv.op !== 'separable_conv2d') || conv.activation !== 'linear') continue;
    if (readers.get(conv.name) !== 1 || named.has(conv.name) || folded.has(conv.name)) continue;
    const stat = (p: string) => weights.get(`${bn.name}.${p}`);
    const [gamma, beta, mean, variance] = ['gamma', 'beta', 'mean', 'variance'].map(stat);
    const kernelKey = conv.op === 'conv2d' ? `${conv.name}.weight` : `${conv.name}.pointwise`;
    const kernel = weights.get(kernelKey);
    const bias = weights.get(`${conv.name}.bias`);
    if (!gamma || !beta || !mean || !variance || !kernel || !bias) continue; // left for checkWeights to report
    const scale = Float32Array.from(gamma.data, (g, c) => g / Math.sqrt(variance.data[c] + bn.epsilon));
    const node: LayerNode = { ...conv, name: bn.name, useBias: true };
    folded.set(conv.name, node);
    dropped.add(bn.name);
    const param = kernelKey.slice(conv.name.length);
    out.set(`${bn.name}${param}`, scaleRows(kernel, scale));
    out.set(`${bn.name}.bias`, { shape: bias.shape, data: Float32Array.from(bias.data, (b, c) => (b - mean.data[c]) * scale[c] + beta.data[c]) });
    if (conv.op === 'separable_conv2d') out.set(`${bn.name}.depthwise`, weights.get(`${conv.name}.depthwise`)!);
    for (const p of ['gamma', 'beta', 'mean', 'variance']) out.delete(`${bn.name}.${p}`);
  }
  if (folded.size === 0) return { graph, weights };
  const nodes = graph.nodes.filter((n) => !dropped.has(n.name)).map((n) => folded.get(n.name) ?? n);
  for (const conv of folded.keys()) for (const p of ['weight', 'bias', 'depthwise', 'pointwise']) out.delete(`${conv}.${p}`);
  return { graph: { ...graph, nodes }, weights: out };
}

/** Multiplies row o (output channel o) of a [O, …] tensor by scale[o]. */
function scaleRows(t: WeightTensor, scale: Float32Array): WeightTensor {
  const per = t.data.length / t.shape[0];
  const data = new Float32Array(t.data.length);
  for (let i = 0; i < data.length; i++) data[i] = t.data[i] * scale[Math.floor(i / per)];
  return { shape: t.shape, data };
}

/** A checked plan with its batch norms folded (see foldBatchNorms), planned again for the same outputs. */
export function foldPlan(plan: GraphPlan, weights: WeightMap): { plan: GraphPlan; weights: WeightMap } {
  const folded = foldBatchNorms(plan.graph, weights, plan.outputs);
  if (folded.graph === plan.graph) return { plan, weights };
  return { plan: planGraph(folded.graph, plan.inputSize, plan.outputs), weights: folded.weights };
}
