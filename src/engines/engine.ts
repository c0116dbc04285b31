/** The one interface both engines implement: a batch of preprocessed images in, Float32 codes out. */
import type { Backbone, GraphBackbone } from '../backbones/backbone.ts';
import type { Cut } from '../backbones/cut.ts';
import type { Pair } from '../backbones/layer-graph.ts';
import type { CalibrationSource } from './quantize/calibration.ts';
import type { Int8ConvPath } from './quantize/qdq-rewrite.ts';

export type EngineName = 'onnx' | 'tfjs';
export type EngineChoice = EngineName | 'auto';
export type DeviceChoice = 'auto' | 'cpu' | 'gpu';
/** fp32, or int8 with Q/DQ pairs (quantize/): different codes, so part of the code spec. */
export type Precision = 'fp32' | 'int8';
export const PRECISIONS = ['fp32', 'int8'] as const satisfies readonly Precision[];

export interface EngineOptions {
  readonly backbone: Backbone;
  readonly cuts: readonly Cut[];
  /** Defaults to the backbone's own input size. */
  readonly inputSize?: Pair;
  readonly device: DeviceChoice;
  /** Where engines may keep generated artefacts (the ONNX engine keeps its .onnx model). */
  readonly cacheDir: string;
  /** Threads for CPU execution; defaults to the number of cores. */
  readonly threads?: number;
  /** Default fp32. int8 needs `calibration`. */
  readonly precision?: Precision;
  /** The sample an int8 model is calibrated on, and the key its ranges are kept under. */
  readonly calibration?: CalibrationSource;
  /** Which onnxruntime int8 conv kernel the int8 model is written for (same codes either way); default: this CPU's fastest. */
  readonly int8ConvPath?: Int8ConvPath;
}

/** What the layer-graph engines (onnx-engine.ts, tfjs-engine.ts) take. */
export interface GraphEngineOptions extends EngineOptions {
  readonly backbone: GraphBackbone;
}

export interface CodeSpec {
  readonly cut: Cut;
  /** [H, W, C] (codes flattened in H, W, C order, as Keras' Flatten), [tokens, D] or [D]. */
  readonly shape: readonly number[];
  /** Floats per image. */
  readonly size: number;
}

export interface FeatureEngine {
  readonly name: EngineName;
  /** What actually runs: 'cpu', 'cuda', 'webgpu', 'tensorflow-gpu', 'tensorflow', 'wasm'. */
  readonly provider: string;
  readonly inputSize: Pair;
  /** One entry per requested cut, in request order. */
  readonly outputs: readonly CodeSpec[];
  /** Notes worth telling the user once, e.g. why the GPU was not used. */
  readonly notes: readonly string[];
  /**
   * `images` holds `count` images as NHWC float32, preprocessed (see preprocessInto).
   * Returns one Float32Array of count × spec.size per cut.
   */
  run(images: Float32Array, count: number): Promise<Float32Array[]>;
  dispose(): Promise<void>;
}
