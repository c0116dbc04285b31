/**
 * A backbone: what computes the codes, its weights' fingerprint, and the preprocessing it was
 * trained with. Two kinds: a layer graph (the zoo, Keras and TF.js models), which every engine
 * runs and fine-tune can train, and a user's ONNX file, which only onnxruntime runs.
 */
import type { Interpolation, ResizeMode } from '../cache/code-spec.ts';
import type { Cut } from './cut.ts';
import type { LayerGraph, Pair } from './layer-graph.ts';
import type { OnnxModel } from './onnx-file/onnx-model-file.ts';
import type { WeightMap } from './weights.ts';
import { UserError } from '../util/errors.ts';

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

interface BackboneBase {
  /** Zoo name (`vgg16`) or the model file's path. */
  readonly id: string;
  readonly preprocessing: Preprocessing;
  readonly defaultCut: Cut;
  /** Cuts worth naming in help text, e.g. block5_pool, relu6, fc2. */
  readonly namedCuts: readonly string[];
  /** Node that gives ImageNet (or the model's own) class scores, when it has one. */
  readonly classifier?: string;
  /** The classifier's class names, when the model file names them (a Teachable Machine export's labels). */
  readonly classNames?: readonly string[];
  /** How the model's own pipeline fits images to its input, where that is known ('crop': Teachable Machine's centre square). */
  readonly inputResize?: ResizeMode;
  /** The resampling kernel of the model's own pipeline (a preprocessor_config.json's resample). */
  readonly inputInterpolation?: Interpolation;
  /** With crop: the share of the shorter side kept (timm's crop_pct, 224/256 for most). */
  readonly inputCropFraction?: number;
  /** Fingerprint of the weights (sha256 of the files or of the seed), for cache keys. */
  readonly weightsId: string;
  /** Where the weights came from, for humans. */
  readonly weightsFrom: string;
}

export interface GraphBackbone extends BackboneBase {
  readonly kind?: 'graph';
  readonly graph: LayerGraph;
  readonly weights: WeightMap;
}

export interface OnnxBackbone extends BackboneBase {
  readonly kind: 'onnx';
  readonly model: OnnxModel;
  /** Which file (or default) the preprocessing came from, for messages. */
  readonly preprocessingFrom: string;
}

export type Backbone = GraphBackbone | OnnxBackbone;

export function isOnnxBackbone(b: Backbone): b is OnnxBackbone {
  return b.kind === 'onnx';
}

/** For what works on layer graphs only: an ONNX file is refused in one line saying what to do instead. */
export function requireGraph(b: Backbone, what: string, instead = ''): GraphBackbone {
  if (isOnnxBackbone(b)) throw new UserError(`${what} needs a layer-graph backbone (the zoo, Keras or TF.js models); ${b.id} is an ONNX file, which only onnxruntime runs${instead ? `: ${instead}` : ''}`);
  return b;
}

/** A short name for messages: the graph's own name, or the ONNX file's. */
/**
 * Whether the backbone has grouped or depthwise convolutions (MobileNet, EfficientNet, Xception):
 * onnxruntime's int8 kernels run those slower than its fp32 ones (bench:engines).
 */
export function hasGroupedConvs(b: Backbone): boolean {
  if (isOnnxBackbone(b)) return b.model.groupedConvs;
  return b.graph.nodes.some((n) => n.op === 'separable_conv2d' || (n.op === 'conv2d' && (n.groups ?? 1) > 1));
}

export function backboneName(b: Backbone): string {
  return isOnnxBackbone(b) ? b.model.file.split(/[\\/]/).slice(-2).join('/') : b.graph.name;
}
