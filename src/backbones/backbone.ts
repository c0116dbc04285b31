/** A backbone: a layer graph, its canonical weights, and the preprocessing it was trained with. */
import type { Cut } from './cut.ts';
import type { LayerGraph, Pair } from './layer-graph.ts';
import type { WeightMap } from './weights.ts';

/**
 * Per-pixel: x = (v - mean[c]) / std[c], with v in 0..255, after reordering to `channels`.
 * Keras "caffe" mode is channels 'bgr', mean [103.939, 116.779, 123.68], std [1, 1, 1].
 */
export interface Preprocessing {
  readonly size: Pair;
  readonly channels: 'rgb' | 'bgr';
  /** In the model's channel order, 0..255 units. */
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
}

export interface Backbone {
  /** Zoo name (`vgg16`) or the model.json path it was loaded from. */
  readonly id: string;
  readonly graph: LayerGraph;
  readonly weights: WeightMap;
  readonly preprocessing: Preprocessing;
  readonly defaultCut: Cut;
  /** Cuts worth naming in help text, e.g. block5_pool, relu6, fc2. */
  readonly namedCuts: readonly string[];
  /** Node that gives ImageNet (or the model's own) class scores, when it has one. */
  readonly classifier?: string;
  /** The classifier's class names, when the model file names them (a Teachable Machine export's labels). */
  readonly classNames?: readonly string[];
  /** How the model's own pipeline fits images to its input, where that is known ('crop': Teachable Machine's centre square). */
  readonly inputResize?: 'crop' | 'squash' | 'pad';
  /** Fingerprint of the weights (sha256 of the files or of the seed), for cache keys. */
  readonly weightsId: string;
  /** Where the weights came from, for humans. */
  readonly weightsFrom: string;
}
