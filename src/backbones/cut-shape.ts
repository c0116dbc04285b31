/**
 * What a cut gives on any backbone: the tensor it resolves to, the shape of its code and
 * whether it is spatial (so --pool applies). The one place extract, sweep and the specs ask,
 * whether the backbone is a layer graph or an ONNX file.
 */
import type { Backbone } from './backbone.ts';
import { codeShape, planCuts, SPATIAL_POOLS, TOKEN_POOLS, type Cut, type CutPool } from './cut.ts';
import { resolveLayer, type Pair } from './layer-graph.ts';
import { tensorOf, type TensorInfo } from './onnx-file/onnx-model-file.ts';
import type { TensorLayout } from './onnx-file/onnx-rewrite.ts';
import { UsageError } from '../util/errors.ts';

export interface ResolvedCut {
  /** The node or tensor the cut names (aliases such as relu6 resolve to fc1). */
  readonly layer: string;
  /** Per image: [H, W, C] (flattened in that order), [tokens, D], or [D]. */
  readonly shape: readonly number[];
  /** A map or sequence that --pool can reduce. */
  readonly poolable: boolean;
  /** ONNX backbones: how the tensor's axes are read. */
  readonly layout?: TensorLayout;
}

export function resolveCuts(backbone: Backbone, size: Pair, cuts: readonly Cut[]): ResolvedCut[] {
  if (backbone.kind !== 'onnx') {
    const plan = planCuts(backbone.graph, size, cuts);
    return cuts.map((cut) => {
      if (cut.layout) throw new UsageError(`--feature-layout is for ONNX backbones; ${backbone.id}'s layers have known layouts`);
      const layer = resolveLayer(backbone.graph, cut.layer).name;
      return { layer, shape: codeShape(plan, cut), poolable: plan.shapes.get(layer)!.length === 3 };
    });
  }
  const { model } = backbone;
  if (model.size[0] !== size[0] || model.size[1] !== size[1]) throw new Error(`${model.file} was probed at ${model.size.join('×')}, not ${size.join('×')}: load it with that size`);
  return cuts.map((cut) => {
    const t = tensorOf(model, cut.layer);
    const layout = readLayout(t, cut);
    return { layer: t.name, shape: onnxCodeShape(t, layout, cut), poolable: layout !== 'vector' && layout !== 'other', layout };
  });
}

function readLayout(t: TensorInfo, cut: Cut): TensorLayout {
  if (!cut.layout) return t.layout;
  const rank = cut.layout === 'tokens' ? 2 : 3;
  if (t.dims.length !== rank) throw new UsageError(`--feature-layout ${cut.layout}: '${t.name}' is [${t.dims.join(', ')}] per image, not ${rank}-D`);
  return cut.layout;
}

function onnxCodeShape(t: TensorInfo, layout: TensorLayout, cut: Cut): number[] {
  const { dims } = t;
  const pool = cut.pool;
  if (layout === 'nchw' || layout === 'nhwc') {
    const [h, w, c] = layout === 'nchw' ? [dims[1], dims[2], dims[0]] : [dims[0], dims[1], dims[2]];
    if (!pool) return [h, w, c];
    if (!SPATIAL_POOLS.includes(pool)) throw new UsageError(`--pool ${pool} is for token sequences; '${t.name}' is a spatial map [${dims.join(', ')}] (${layout}): use avg or max`);
    return [c];
  }
  if (layout === 'tokens') {
    if (!pool) return [...dims];
    if (!TOKEN_POOLS.includes(pool)) throw new UsageError(`--pool ${pool} is for spatial maps; '${t.name}' is a token sequence [${dims.join(', ')}]: use cls, mean or mean-patch`);
    if (pool === 'mean-patch' && dims[0] < 2) throw new UsageError(`--pool mean-patch: '${t.name}' has ${dims[0]} token, no patch tokens after the first`);
    return [dims[1]];
  }
  if (pool) throw new UsageError(`cannot --pool ${pool} at '${t.name}': it is [${dims.join(', ')}] per image, not a spatial map or token sequence`);
  return [...dims];
}

/**
 * The pooling a sweep or a multi-layer extract gives one cut: the requested pooling where it
 * fits the tensor, else that kind's usual one (avg for maps, cls for tokens); vectors as they are.
 */
export function poolFitting(resolved: ResolvedCut, pool: CutPool | undefined): CutPool | undefined {
  if (!resolved.poolable || !pool) return undefined;
  const tokens = resolved.layout === 'tokens';
  if (tokens) return TOKEN_POOLS.includes(pool) ? pool : 'cls';
  return SPATIAL_POOLS.includes(pool) ? pool : 'avg';
}
