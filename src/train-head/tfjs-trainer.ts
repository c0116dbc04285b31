/**
 * The TF.js head trainer: the head's dense layers as tf.Variables, trained by one of TF.js'
 * own optimisers on whatever backend tfBackend() picked (tfjs-node(-gpu), wasm or cpu).
 *
 * The ONNX trainer must reproduce these updates exactly, so here is what tfjs-core 4.22's
 * optimisers do (dist/optimizers/*.js). Per variable θ with gradient g of the total loss
 * (L2 term included); every constant below is a float32 scalar on the backend:
 *
 *   adam (AdamOptimizer; step t = 1, 2, …; m, v start at 0):
 *     m ← β1·m + (1−β1)·g
 *     v ← β2·v + (1−β2)·g²
 *     θ ← θ − lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)
 *   where β^t is a float32 variable that starts at β and is multiplied by β after each step
 *   (so float32 repeated products, not pow), and ε is added *after* the sqrt of the
 *   bias-corrected v (Keras' "epsilon hat" form differs in where ε sits).
 *
 *   rmsprop (RMSPropOptimizer, centered = false, momentum = 0; ms, mom start at 0):
 *     ms  ← ρ·ms + (1−ρ)·g²
 *     mom ← 0·mom + lr·g / sqrt(ms + ε)
 *     θ   ← θ − mom
 *   ε is *inside* the sqrt here, unlike Keras/TF's g / (sqrt(ms) + ε).
 *
 *   sgd (MomentumOptimizer, useNesterov = false; acc starts at 0):
 *     acc ← μ·acc + g
 *     θ   ← θ + (−lr)·acc
 *   which equals Keras' v ← μ·v − lr·g; θ ← θ + v while lr is constant. μ = 0 is plain SGD.
 *
 * Keras' (and this trainer's) loss is Σ_i w_i·CE_i / n + l2·Σ_kernels ΣW², so the L2
 * gradient 2·l2·W is part of g before any of the above.
 */
import type { GradSaveFunc, Optimizer, Rank, Scalar, Tensor, Tensor1D, Tensor2D, Variable } from '@tensorflow/tfjs';
import type { DeviceChoice } from '../engines/engine.ts';
import { tfBackend, type Tf } from '../engines/tfjs-backend.ts';
import { checkHeadParams, denseShapes, type DenseShape } from './head-init.ts';
import type {
  DenseParams,
  HeadArchitecture,
  HeadTrainer,
  OptimizerConfig,
  TrainBatch,
  TrainerOptions,
} from './trainer.ts';

export interface TfjsTrainerOptions extends TrainerOptions {
  /** Which TF.js backend to prefer; TF.js keeps one per process, so the first caller's wins. */
  readonly device?: DeviceChoice;
}

/** A dense layer's trainable state, kernel in TF's [in, out] layout. */
interface DenseVariables {
  readonly shape: DenseShape;
  readonly kernel: Variable<Rank.R2>;
  readonly bias: Variable<Rank.R1>;
}

/** One step's inputs on the backend; disposed after the step. */
interface BatchTensors {
  readonly x: Tensor2D;
  readonly oneHot: Tensor2D;
  readonly weight: Tensor1D;
  /** One [n, hidden[i]] pre-scaled dropout mask per hidden layer. */
  readonly masks: readonly Tensor2D[];
}

export async function createTfjsTrainer(opts: TfjsTrainerOptions): Promise<HeadTrainer> {
  const arch = opts.architecture;
  // Check everything the caller handed us before loading TF.js, so mistakes fail fast.
  checkHeadParams(arch, opts.initial);
  checkOptimizerConfig(opts.training.optimizer);
  if (!(opts.training.l2 >= 0)) throw new Error(`tfjs trainer: l2 must be ≥ 0, got ${opts.training.l2}`);

  const { tf, provider } = await tfBackend(opts.device ?? 'auto');
  const layers = denseShapes(arch).map((shape, i) => createLayer(tf, shape, opts.initial[i]));
  // minimize() without a list would train every trainable variable in the process,
  // including another trainer's; this one must only ever touch its own.
  const variables: Variable[] = layers.flatMap((l) => [l.kernel, l.bias]);
  const optimizer = createOptimizer(tf, opts.training.optimizer);
  const l2 = opts.training.l2;
  let disposed = false;

  const live = (method: string): void => {
    if (disposed) throw new Error(`tfjs trainer: ${method}() after dispose()`);
  };

  return {
    name: 'tfjs',
    provider: `tfjs ${provider}`,

    async step(batch) {
      live('step');
      const inputs = uploadBatch(tf, arch, batch);
      try {
        // returnCost = true hands back the loss computed on the pre-update weights.
        const cost = optimizer.minimize(() => headLoss(tf, layers, inputs, l2), true, variables);
        if (!cost) throw new Error('tfjs trainer: optimizer returned no loss');
        try {
          return (await cost.data())[0];
        } finally {
          cost.dispose();
        }
      } finally {
        tf.dispose([inputs.x, inputs.oneHot, inputs.weight, ...inputs.masks]);
      }
    },

    async predict(x, n) {
      live('predict');
      checkRows('predict', n, 0);
      checkLength('predict', 'x', x, n * arch.inputDim);
      if (n === 0) return new Float32Array(0);
      const probabilities = tf.tidy(() => {
        const input = tf.tensor2d(x.subarray(0, n * arch.inputDim), [n, arch.inputDim]);
        return tf.softmax(inferLogits(tf, layers, input));
      });
      try {
        // A fresh copy: the cpu backend's data() is its own storage.
        return Float32Array.from(await probabilities.data());
      } finally {
        probabilities.dispose();
      }
    },

    async getParams() {
      live('getParams');
      return Promise.all(layers.map(readLayer));
    },

    async setParams(params) {
      live('setParams');
      checkHeadParams(arch, params);
      // The optimiser's moments are kept, as with Keras' set_weights(); the fit loop only
      // sets weights to restore its best epoch, after training has ended.
      layers.forEach((layer, i) => {
        const { inputs, outputs } = layer.shape;
        tf.tidy(() => {
          layer.kernel.assign(tf.tensor2d(transpose(params[i].weight, outputs, inputs), [inputs, outputs]));
          layer.bias.assign(tf.tensor1d(Float32Array.from(params[i].bias)));
        });
      });
    },

    async dispose() {
      if (disposed) return;
      disposed = true;
      disposeOptimizer(tf, optimizer, opts.training.optimizer.kind);
      tf.dispose(variables);
    },
  };
}

function createLayer(tf: Tf, shape: DenseShape, params: DenseParams): DenseVariables {
  const { inputs, outputs } = shape;
  // tf.variable() shares the initial tensor's storage and adds a reference; dropping the
  // initial tensor's own reference leaves the variable as the only owner.
  const kernelInit = tf.tensor2d(transpose(params.weight, outputs, inputs), [inputs, outputs]);
  const biasInit = tf.tensor1d(Float32Array.from(params.bias));
  const layer = { shape, kernel: tf.variable(kernelInit), bias: tf.variable(biasInit) };
  tf.dispose([kernelInit, biasInit]);
  return layer;
}

async function readLayer(layer: DenseVariables): Promise<DenseParams> {
  const { inputs, outputs } = layer.shape;
  const [kernel, bias] = await Promise.all([layer.kernel.data<'float32'>(), layer.bias.data<'float32'>()]);
  return { weight: transpose(kernel, inputs, outputs), bias: Float32Array.from(bias) };
}

/**
 * Σ_i w_i·CE_i / n + l2·Σ ΣW², with the caller's dropout masks applied after each hidden
 * ReLU. Cross-entropy comes from an explicit log-softmax: tf.losses.softmaxCrossEntropy
 * divides by the sum of weights (or the count of non-zero ones), not by n as Keras does.
 */
function headLoss(tf: Tf, layers: readonly DenseVariables[], inputs: BatchTensors, l2: number): Scalar {
  let h: Tensor2D = inputs.x;
  layers.forEach((layer, i) => {
    // Only hidden activations need ∂loss/∂input; the codes are constants.
    const z = dense(tf, h, layer, i > 0);
    h = i < layers.length - 1 ? tf.mul<Tensor2D>(tf.relu(z), inputs.masks[i]) : z;
  });
  const crossEntropy = tf.neg(tf.sum(tf.mul(inputs.oneHot, tf.logSoftmax(h)), 1));
  const dataLoss = tf.div<Scalar>(tf.sum(tf.mul(inputs.weight, crossEntropy)), inputs.x.shape[0]);
  if (l2 === 0) return dataLoss;
  const penalty = tf.addN(layers.map((l) => tf.sum(tf.square(l.kernel))));
  return tf.add<Scalar>(dataLoss, tf.mul(penalty, l2));
}

/**
 * x·W + b, with a gradient built from untransposed matMuls only. TF.js' own MatMul gradient
 * asks for xᵀ·dz and dz·Wᵀ through matMul's transpose flags, which the wasm backend runs
 * 10–15× slower than an explicit tf.transpose followed by a plain matMul (4096-d, batch 32:
 * 146 ms against 9 ms); for the first layer that one product was most of a training step.
 * ∂/∂x is skipped when x needs none (the codes), which also saves a product as large as the
 * forward one. Same arithmetic either way, so the update formulas are unaffected.
 */
function dense(tf: Tf, x: Tensor2D, layer: DenseVariables, inputGradient: boolean): Tensor2D {
  const { kernel, bias } = layer;
  // The forward pass runs inside a tidy that frees every intermediate (hidden activations
  // included) before the backward pass; only tensors handed to save() survive until then.
  const op = (...args: (Tensor | GradSaveFunc)[]) => {
    saveFunction(args)([x, kernel]);
    return {
      value: tf.add<Tensor2D>(tf.matMul(x, kernel), bias),
      gradFunc: (dz: Tensor2D, [input, weight]: Tensor[]): Tensor[] => {
        const grads = [tf.matMul(tf.transpose(input), dz), tf.sum(dz, 0)];
        return inputGradient ? [tf.matMul(dz, tf.transpose(weight)), ...grads] : grads;
      },
    };
  };
  // The arguments declare which tensors the gradient flows to, in gradFunc's order.
  return inputGradient ? tf.customGrad(op)(x, kernel, bias) : tf.customGrad(op)(kernel, bias);
}

/** customGrad passes its save function after the tensor arguments. */
function saveFunction(args: readonly (Tensor | GradSaveFunc)[]): GradSaveFunc {
  const save = args[args.length - 1];
  if (typeof save !== 'function') throw new Error('tfjs trainer: customGrad passed no save function');
  return save;
}

/** Logits with dropout off. No gradient is taken here, so the fused matMul+bias+ReLU kernel can run. */
function inferLogits(tf: Tf, layers: readonly DenseVariables[], x: Tensor2D): Tensor {
  let h: Tensor = x;
  layers.forEach((layer, i) => {
    const activation = i < layers.length - 1 ? 'relu' : 'linear';
    h = tf.fused.matMul({ a: h, b: layer.kernel, bias: layer.bias, activation });
  });
  return h;
}

function uploadBatch(tf: Tf, arch: HeadArchitecture, batch: TrainBatch): BatchTensors {
  const { n } = batch;
  checkRows('step', n, 1);
  checkLength('step', 'x', batch.x, n * arch.inputDim);
  checkLength('step', 'y', batch.y, n);
  checkLength('step', 'weight', batch.weight, n);
  if (batch.masks.length !== arch.hidden.length) {
    throw new Error(`tfjs trainer: step() needs ${arch.hidden.length} dropout masks, got ${batch.masks.length}`);
  }
  batch.masks.forEach((mask, i) => checkLength('step', `masks[${i}]`, mask, n * arch.hidden[i]));
  // Callers reuse full-batch buffers for a short last batch, so read only the first n rows.
  return {
    x: tf.tensor2d(batch.x.subarray(0, n * arch.inputDim), [n, arch.inputDim]),
    oneHot: tf.tensor2d(oneHot(batch.y, n, arch.classes), [n, arch.classes]),
    weight: tf.tensor1d(batch.weight.subarray(0, n)),
    masks: batch.masks.map((mask, i) => tf.tensor2d(mask.subarray(0, n * arch.hidden[i]), [n, arch.hidden[i]])),
  };
}

/** Built here rather than with tf.oneHot, which silently yields a zero row for a bad label. */
function oneHot(y: Int32Array, n: number, classes: number): Float32Array {
  const out = new Float32Array(n * classes);
  for (let i = 0; i < n; i++) {
    const label = y[i];
    if (!(label >= 0 && label < classes)) {
      throw new Error(`tfjs trainer: label ${label} in row ${i} is outside 0..${classes - 1}`);
    }
    out[i * classes + label] = 1;
  }
  return out;
}

function createOptimizer(tf: Tf, config: OptimizerConfig): Optimizer {
  switch (config.kind) {
    case 'adam':
      return tf.train.adam(config.lr, config.beta1, config.beta2, config.epsilon);
    case 'rmsprop':
      // Keras' RMSprop defaults: no momentum, not centered.
      return tf.train.rmsprop(config.lr, config.rho, 0, config.epsilon, false);
    case 'sgd':
      return tf.train.momentum(config.lr, config.momentum, false);
  }
}

function disposeOptimizer(tf: Tf, optimizer: Optimizer, kind: OptimizerConfig['kind']): void {
  optimizer.dispose();
  // tfjs-core 4.22's MomentumOptimizer.dispose() overrides SGDOptimizer's without calling
  // it, leaking the −lr scalar that SGDOptimizer's constructor kept; free it the same way.
  // (The kind, not instanceof: Optimizer's Symbol.hasInstance accepts any optimiser.)
  if (kind === 'sgd') tf.SGDOptimizer.prototype.dispose.call(optimizer);
}

function checkOptimizerConfig(config: OptimizerConfig): void {
  const values: Record<string, number> =
    config.kind === 'adam'
      ? { lr: config.lr, beta1: config.beta1, beta2: config.beta2, epsilon: config.epsilon }
      : config.kind === 'rmsprop'
        ? { lr: config.lr, rho: config.rho, epsilon: config.epsilon }
        : { lr: config.lr, momentum: config.momentum };
  for (const [key, value] of Object.entries(values)) {
    if (!Number.isFinite(value) || value < 0) {
      throw new Error(`tfjs trainer: ${config.kind} ${key} must be a finite number ≥ 0, got ${value}`);
    }
  }
}

function checkRows(method: string, n: number, min: number): void {
  if (!Number.isInteger(n) || n < min) throw new Error(`tfjs trainer: ${method}() needs an integer n ≥ ${min}, got ${n}`);
}

/** Longer is fine (reused buffers); shorter would read garbage or throw deep inside TF.js. */
function checkLength(method: string, what: string, values: ArrayLike<number>, needed: number): void {
  if (values.length < needed) {
    throw new Error(`tfjs trainer: ${method}() ${what} needs ${needed} values, got ${values.length}`);
  }
}

/** rows × cols row-major → cols × rows row-major: converts between [out, in] and TF's [in, out]. */
export function transpose(values: ArrayLike<number>, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = values[base + c];
  }
  return out;
}
