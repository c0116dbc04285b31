/** Small conversions between the layer plan's shapes and pads and TF.js' arguments (NHWC). */
import type { Shape } from '../backbones/graph-plan.ts';
import type { Pads, Pair } from '../backbones/layer-graph.ts';

export type SpatialPadding = [[number, number], [number, number], [number, number], [number, number]];

/** [top, left, bottom, right] → TF's per-axis [before, after] for NHWC. */
export function spatialPadding([top, left, bottom, right]: Pads): SpatialPadding {
  return [[0, 0], [top, bottom], [left, right], [0, 0]];
}

export function addPads(a: Pads, b: Pads): Pads {
  return [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]];
}

export function pair(p: Pair): [number, number] {
  return [p[0], p[1]];
}

export function spatialSize(shape: Shape): [number, number] {
  if (shape.length !== 3) throw new Error(`expected a feature map, got a vector of ${shape[0]}`);
  return [shape[0], shape[1]];
}
