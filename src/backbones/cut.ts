/**
 * A cut point: where the frozen backbone stops and the codes come out.
 * Like timm's feature extraction, one naming works for every backbone: any node name (or
 * alias) of a layer graph, any tensor name of an ONNX file, optionally pooled.
 */
import { planGraph, type GraphPlan, type Shape } from './graph-plan.ts';
import { UsageError } from '../util/errors.ts';
import { resolveLayer, type LayerGraph } from './layer-graph.ts';

/** avg and max pool a spatial map; cls, mean and mean-patch pool a token sequence (ViT). */
export type CutPool = 'avg' | 'max' | 'cls' | 'mean' | 'mean-patch';
export const CUT_POOLS = ['avg', 'max', 'cls', 'mean', 'mean-patch'] as const satisfies readonly CutPool[];
export const SPATIAL_POOLS: readonly CutPool[] = ['avg', 'max'];
export const TOKEN_POOLS: readonly CutPool[] = ['cls', 'mean', 'mean-patch'];

/** How an ONNX tensor's axes are read, when its shape does not tell (see onnx-model-file.ts). */
export type FeatureLayout = 'nchw' | 'nhwc' | 'tokens';
export const FEATURE_LAYOUTS = ['nchw', 'nhwc', 'tokens'] as const satisfies readonly FeatureLayout[];

export interface Cut {
  /** Node name or alias as the user wrote it, e.g. `block5_pool`, `relu6`, `fire9/concat`. */
  readonly layer: string;
  readonly pool?: CutPool;
  /** ONNX backbones only: the user's reading of the tensor's axes, over the detected one. */
  readonly layout?: FeatureLayout;
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
  spatialPool(cut.pool, cut.layer);
  return [shape[2]];
}

export function planCuts(graph: LayerGraph, inputSize: readonly [number, number], cuts: readonly Cut[]): GraphPlan {
  return planGraph(graph, inputSize, cuts.map((c) => c.layer));
}

/** A layer graph's pooling (its cuts are spatial maps or vectors; codeShape has refused token pools). */
export function spatialPool(pool: CutPool, layer: string): 'avg' | 'max' {
  if (pool === 'avg' || pool === 'max') return pool;
  throw new UsageError(`--pool ${pool} is for token sequences (ViT); '${layer}' is a spatial map: use avg or max`);
}
