/**
 * A cut point: where the frozen backbone stops and the codes come out.
 * Like timm's feature extraction, one naming works for every backbone: any node name
 * (or alias), optionally globally pooled.
 */
import { planGraph, type GraphPlan, type Shape } from './graph-plan.ts';
import { UsageError } from '../util/errors.ts';
import { resolveLayer, type LayerGraph } from './layer-graph.ts';

export type CutPool = 'avg' | 'max';

export interface Cut {
  /** Node name or alias as the user wrote it, e.g. `block5_pool`, `relu6`, `fire9/concat`. */
  readonly layer: string;
  readonly pool?: CutPool;
}

export function cutLabel(cut: Cut): string {
  return cut.pool ? `${cut.layer}:${cut.pool}` : cut.layer;
}

/** The shape of one code: the cut node's shape, or [C] once globally pooled. */
export function codeShape(plan: GraphPlan, cut: Cut): Shape {
  const node = resolveLayer(plan.graph, cut.layer);
  const shape = plan.shapes.get(node.name);
  if (!shape) throw new Error(`cut '${cut.layer}' is not part of this plan`);
  if (!cut.pool) return shape;
  if (shape.length !== 3) throw new UsageError(`cannot --pool ${cut.pool} at '${cut.layer}': it is already a vector of ${shape[0]}`);
  return [shape[2]];
}

export function planCuts(graph: LayerGraph, inputSize: readonly [number, number], cuts: readonly Cut[]): GraphPlan {
  return planGraph(graph, inputSize, cuts.map((c) => c.layer));
}
