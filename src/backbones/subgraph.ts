/**
 * The part of a backbone above one of its nodes, as a GraphBackbone of its own: its input node is
 * that node (same name, its channel count), fed with the node's output as NHWC floats, which
 * is exactly how the cache stores a spatial code (H, W, C order). Every engine and exporter
 * then runs the upper layers on cached codes, without recomputing the frozen layers below.
 */
import type { GraphBackbone } from './backbone.ts';
import { planGraph } from './graph-plan.ts';
import { resolveLayer, validateGraph, type LayerGraph, type LayerNode, type Pair } from './layer-graph.ts';
import type { WeightTensor } from './weights.ts';

export interface Subgraph extends GraphBackbone {
  /** The node whose output is this sub-graph's input (also the input node's name). */
  readonly from: string;
  /** The backbone's own input size that gives the input shape below. */
  readonly imageSize: Pair;
}

/**
 * Nodes after `fromNode` (in topological order) that can be computed from its output alone;
 * nodes that also read anything below it, and everything that depends on them, are left out.
 * `imageSize` is the backbone input size the codes were computed at (default: the backbone's).
 * Preprocessing is the identity (mean 0, std 1): inputs are the codes themselves.
 */
export function subgraphFrom(backbone: GraphBackbone, fromNode: string, imageSize: Pair = backbone.preprocessing.size): Subgraph {
  const from = resolveLayer(backbone.graph, fromNode);
  const plan = planGraph(backbone.graph, imageSize, [from.name]);
  const shape = plan.shapes.get(from.name)!;
  if (shape.length !== 3) throw new Error(`${backbone.graph.name}: cannot start a sub-graph at '${from.name}': its output is a vector of ${shape[0]}, not a feature map`);
  const [h, w, c] = shape;

  const at = backbone.graph.nodes.indexOf(from);
  const kept = new Set<string>([from.name]);
  const nodes: LayerNode[] = [{ op: 'input', name: from.name, inputs: [], channels: c }];
  for (const node of backbone.graph.nodes.slice(at + 1)) {
    if (node.inputs.length > 0 && node.inputs.every((i) => kept.has(i))) {
      kept.add(node.name);
      nodes.push(node);
    }
  }
  const aliases = Object.fromEntries(Object.entries(backbone.graph.aliases ?? {}).filter(([, target]) => kept.has(target) && target !== from.name));
  const graph: LayerGraph = { name: `${backbone.graph.name}@${from.name}`, nodes, aliases };
  validateGraph(graph);
  const weights = new Map<string, WeightTensor>(
    [...backbone.weights].filter(([key]) => {
      const node = key.slice(0, key.lastIndexOf('.'));
      return kept.has(node) && node !== from.name;
    }),
  );
  const last = nodes[nodes.length - 1].name;
  const defaultLayer = kept.has(resolveLayer(backbone.graph, backbone.defaultCut.layer).name) ? backbone.defaultCut : { layer: last };
  return {
    ...backbone,
    id: `${backbone.id}@${from.name}`,
    graph,
    weights,
    preprocessing: { size: [h, w], channels: 'rgb', mean: [0, 0, 0], std: [1, 1, 1] },
    defaultCut: defaultLayer,
    namedCuts: backbone.namedCuts.filter((n) => kept.has(aliases[n] ?? n) && (aliases[n] ?? n) !== from.name),
    classifier: backbone.classifier && kept.has(backbone.classifier) ? backbone.classifier : undefined,
    from: from.name,
    imageSize: [imageSize[0], imageSize[1]],
  };
}
