/**
 * The interface both head trainers implement (onnx: a generated training-step graph on
 * onnxruntime; tfjs: TF.js on tfjs-node(-gpu) or wasm). The training loop, splits, early
 * stopping and saving live above this, and treat trainers as interchangeable.
 *
 * Everything random (initial weights, batch order, dropout masks) is decided by the caller
 * from a seed, so both trainers given the same inputs compute the same weights.
 */

/** Flatten → [Dense(h, relu) → Dropout(p)]* → Dense(classes) → softmax. `hidden: []` is logistic regression. */
export interface HeadArchitecture {
  readonly inputDim: number;
  readonly hidden: readonly number[];
  readonly dropout: number;
  readonly classes: number;
}

/** Keras semantics for the formulas; see each trainer for the exact update it runs. */
export type OptimizerConfig =
  | { readonly kind: 'adam'; readonly lr: number; readonly beta1: number; readonly beta2: number; readonly epsilon: number }
  | { readonly kind: 'rmsprop'; readonly lr: number; readonly rho: number; readonly epsilon: number }
  | { readonly kind: 'sgd'; readonly lr: number; readonly momentum: number };

export interface TrainingConfig {
  readonly optimizer: OptimizerConfig;
  /** Adds l2 · Σ W² over dense kernels (not biases) to the loss, as Keras' kernel_regularizer=l2(l2). */
  readonly l2: number;
}

/** One dense layer in canonical layout: weight [out, in] row-major, bias [out]. */
export interface DenseParams {
  readonly weight: Float32Array;
  readonly bias: Float32Array;
}

/** Layers in order: hidden layers, then the output layer. */
export type HeadParams = readonly DenseParams[];

export interface TrainBatch {
  /** n × inputDim codes. */
  readonly x: Float32Array;
  /** Class index per row. */
  readonly y: Int32Array;
  /** Per-row loss weight (class weights); the loss is Σ w·CE / n. */
  readonly weight: Float32Array;
  /**
   * One n × hidden[i] mask per hidden layer, already scaled (0 or 1/(1-p), inverted dropout).
   * All ones when dropout is off.
   */
  readonly masks: readonly Float32Array[];
  readonly n: number;
}

export interface HeadTrainer {
  readonly name: 'onnx' | 'tfjs';
  /** e.g. 'onnxruntime cpu', 'tfjs wasm'. */
  readonly provider: string;
  /** One optimiser step; returns the batch's mean loss (including the L2 term) before the step. */
  step(batch: TrainBatch): Promise<number>;
  /**
   * Optional: the same as calling step() on each batch in order (up to float32 rounding), in
   * fewer runs; returns each batch's loss.
   */
  stepMany?(batches: readonly TrainBatch[]): Promise<number[]>;
  /** Softmax probabilities, n × classes, with dropout off. */
  predict(x: Float32Array, n: number): Promise<Float32Array>;
  getParams(): Promise<HeadParams>;
  setParams(params: HeadParams): Promise<void>;
  dispose(): Promise<void>;
}

export interface TrainerOptions {
  readonly architecture: HeadArchitecture;
  readonly training: TrainingConfig;
  readonly initial: HeadParams;
  /** Largest n that step() and predict() will be given. */
  readonly maxBatch: number;
}
