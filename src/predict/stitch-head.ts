/**
 * Stitches a trained head onto its backbone as one LayerGraph: backbone up to the cut, the
 * cut's global pooling, a flatten, then the head's dense layers ending in softmax. Every engine
 * and exporter already speaks LayerGraph, so predict, `export --format onnx` and
 * `export --format tfjs` all run the same stitched graph rather than three re-implementations.
 */
import { createHash } from 'node:crypto';
import type { Backbone, GraphBackbone } from '../backbones/backbone.ts';
import { planCuts, spatialPool } from '../backbones/cut.ts';
import { biasName, resolveLayer, validateGraph, weightName, type LayerGraph, type LayerNode } from '../backbones/layer-graph.ts';
import type { WeightTensor } from '../backbones/weights.ts';
import type { Head } from '../train-head/head-folder.ts';
import { UsageError } from '../util/errors.ts';

/** The stitched graph's output node: class probabilities in the head's class order. */
export const PROBABILITIES = 'head_probabilities';

/** Backbone nodes keep their names; the head's are prefixed so they never collide. */
const headDense = (i: number) => `head_dense_${i}`;

/** A head only fits the backbone, with the very weights, whose codes it was trained on. */
export function checkHeadBackbone(backbone: Backbone, head: Head): void {
  const spec = head.config.codeSpec;
  if (backbone.id !== spec.backbone) {
    throw new UsageError(`head ${head.dir} was trained on ${spec.backbone} codes, not ${backbone.id}`);
  }
  if (backbone.weightsId !== spec.weights) {
    throw new UsageError(
      `head ${head.dir} was trained on ${spec.backbone} codes from other weights (sha256 ${spec.weights.slice(0, 12)}…) than ${backbone.weightsFrom} (${backbone.weightsId.slice(0, 12)}…)`,
    );
  }
}

export function stitchHead(backbone: GraphBackbone, head: Head): GraphBackbone {
  checkHeadBackbone(backbone, head);
  const spec = head.config.codeSpec;
  const cutNode = resolveLayer(backbone.graph, spec.layer);
  const plan = planCuts(backbone.graph, spec.preprocessing.size, [{ layer: cutNode.name }]);
  // Only what the cut needs: a graph stitched after block5_pool has no fc1 to carry around.
  const kept = new Set(plan.steps.map((s) => s.node.name));
  const nodes: LayerNode[] = backbone.graph.nodes.filter((n) => kept.has(n.name));

  let last = cutNode.name;
  const push = (node: LayerNode) => {
    nodes.push(node);
    last = node.name;
  };
  if (spec.pool) push({ op: 'globalpool', name: 'head_pool', inputs: [last], mode: spatialPool(spec.pool, spec.layer) });
  else if (plan.shapes.get(cutNode.name)!.length === 3) push({ op: 'flatten', name: 'head_flatten', inputs: [last], order: 'hwc' });

  const { params } = head;
  const { architecture } = head.config;
  const weights = new Map<string, WeightTensor>([...backbone.weights].filter(([name]) => kept.has(name.slice(0, name.lastIndexOf('.')))));
  const widths = [architecture.inputDim, ...architecture.hidden, architecture.classes];
  params.forEach((layer, i) => {
    const isLast = i === params.length - 1;
    const node: LayerNode = {
      op: 'dense',
      name: isLast ? PROBABILITIES : headDense(i),
      inputs: [last],
      units: widths[i + 1],
      activation: isLast ? 'softmax' : 'relu',
    };
    weights.set(weightName(node), { shape: [widths[i + 1], widths[i]], data: layer.weight });
    weights.set(biasName(node), { shape: [widths[i + 1]], data: layer.bias });
    push(node);
  });

  const graph: LayerGraph = { name: `${backbone.graph.name}+head`, nodes };
  validateGraph(graph);
  return {
    ...backbone,
    graph,
    weights,
    preprocessing: { ...backbone.preprocessing, size: spec.preprocessing.size },
    defaultCut: { layer: PROBABILITIES },
    namedCuts: [PROBABILITIES],
    classifier: PROBABILITIES,
    // Engines key generated models by weightsId: a stitched graph's weights include the head's.
    weightsId: createHash('sha256').update(backbone.weightsId).update(headDigest(head)).digest('hex'),
  };
}

function headDigest(head: Head): string {
  const hash = createHash('sha256');
  for (const layer of head.params) {
    for (const t of [layer.weight, layer.bias]) hash.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  }
  return hash.digest('hex');
}
