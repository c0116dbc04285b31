/**
 * Generates the two ONNX models the onnx head trainer runs on onnxruntime:
 *
 * - a training step: forward pass, loss, a hand-written backward pass and the optimizer update,
 *   taking parameters and optimizer state as inputs and returning their next values, so the
 *   runner owns all state and onnxruntime needs no training build;
 * - a predict graph: codes → softmax probabilities, dropout off.
 *
 * Layout. Dense kernels are stored [in, out] (Keras' layout, the transpose of HeadParams'
 * canonical [out, in]): the kernel gradient is then aᵀ·dz with aᵀ split into row chunks, and
 * each chunk of the gradient is one small GEMM against the whole (tiny) dz. Large kernels are
 * stored as [chunks, chunkRows, out] and updated by a Scan over the chunks, so the gradient and
 * the optimizer's intermediates for one chunk stay in cache: onnxruntime runs every elementwise
 * op as its own pass over memory, and on a 25088×256 kernel the dozen passes of an Adam update
 * cost more than the GEMMs (chunking measured about 20% faster per epoch). Padding rows (when chunks × chunkRows > in) are zero, get zero
 * gradient and so stay zero under every optimizer here.
 */
import type { onnx as proto } from 'onnx-proto';
import { attr, encodeModel, FLOAT, OnnxGraph, valueInfo } from '../util/onnx-graph.ts';
import type { HeadArchitecture, OptimizerConfig, TrainingConfig } from './trainer.ts';

/**
 * Target elements per chunk (2 MiB of floats per tensor); kernels under about 1.5× this are
 * updated in one piece. Measured on the 2-core dev machine (Dense(256) head, Adam, batch 32,
 * 3 epochs): 2^16 gave 2.42 / 0.50 s per epoch at 25,088-d / 4096-d, 2^18 1.96 / 0.36,
 * 2^19 1.80 / 0.31, 2^20 1.70 / 0.37. Fewer, larger chunks cost less per-iteration overhead in
 * the Scan than they lose in cache misses.
 */
export const DEFAULT_CHUNK_ELEMENTS = 1 << 19;

// ---------------------------------------------------------------------------------------------
// Names of the models' inputs and outputs.

export const X = 'x';
/** One-hot labels, n × classes. */
export const Y = 'y';
/** Per-row loss weights, n. */
export const ROW_WEIGHT = 'w';
export const LOSS = 'loss';
/**
 * With an external first kernel: dz at layer 0's output times the optimizer's gradient scale,
 * [n, outputs₀], from which the caller computes and applies layer 0's kernel update itself.
 */
export const KERNEL0_DZ = 'dz0';
export const PROBS = 'probs';
export const maskName = (hiddenLayer: number): string => `mask${hiddenLayer}`;
export type ParamKind = 'kernel' | 'bias';
export const paramName = (layer: number, kind: ParamKind): string => `${kind}${layer}`;
export const stateName = (state: string, layer: number, kind: ParamKind): string => `${state}.${paramName(layer, kind)}`;
/** The step graph's output holding the next value of the input `name`. */
export const nextName = (name: string): string => `${name}.next`;

// ---------------------------------------------------------------------------------------------
// Kernel layout.

export interface DenseLayout {
  readonly inputs: number;
  readonly outputs: number;
  /** 1 when the kernel is updated in one piece. */
  readonly chunks: number;
  readonly chunkRows: number;
  /** Stored kernel rows: chunks × chunkRows ≥ inputs; rows past `inputs` are zero padding. */
  readonly rows: number;
  /** Dims of the stored kernel: [inputs, outputs], or [chunks, chunkRows, outputs] when chunked. */
  readonly kernelDims: readonly number[];
}

/** `wholeFirst`: layer 0 unchunked, as an external first kernel needs. */
export function planLayout(arch: HeadArchitecture, chunkElements = DEFAULT_CHUNK_ELEMENTS, wholeFirst = false): DenseLayout[] {
  const widths = [arch.inputDim, ...arch.hidden, arch.classes];
  return widths.slice(1).map((outputs, i) => {
    const inputs = widths[i];
    const chunks = wholeFirst && i === 0 ? 1 : Math.min(inputs, Math.max(1, Math.round((inputs * outputs) / chunkElements)));
    if (chunks === 1) return { inputs, outputs, chunks, chunkRows: inputs, rows: inputs, kernelDims: [inputs, outputs] };
    const chunkRows = Math.ceil(inputs / chunks);
    return { inputs, outputs, chunks, chunkRows, rows: chunks * chunkRows, kernelDims: [chunks, chunkRows, outputs] };
  });
}

// ---------------------------------------------------------------------------------------------
// Optimizers. Each matches the TF.js optimizer (tfjs-core 4.x, dist/optimizers/*) the tfjs
// trainer uses, up to float32 rounding: the algebra is rearranged to save elementwise passes.
// G is the gradient as the graph produces it, G = gradScale · g, where scaling the (tiny) dz
// makes the scale free; scalar inputs are computed per step by `scalarSchedule`.

interface OptimizerPlan {
  /** State tensors kept per parameter, in input order. */
  readonly states: readonly string[];
  /** Scalar float inputs, fed fresh each step. */
  readonly scalars: readonly string[];
  readonly gradScale: number;
  /** Emits the update of one parameter, its results named `u.out`. */
  emit(g: OnnxGraph, u: UpdateValues): void;
}

interface UpdateValues {
  readonly grad: string;
  readonly param: string;
  readonly states: readonly string[];
  /** Names to give the results (graph or Scan-body outputs). */
  readonly out: { readonly param: string; readonly states: readonly string[] };
}

function optimizerPlan(opt: OptimizerConfig): OptimizerPlan {
  switch (opt.kind) {
    case 'adam':
      // tfjs AdamOptimizer, with accβ1 = β1^t and accβ2 = β2^t tracked as float32 products:
      //   m ← β1·m + (1−β1)·g
      //   v ← β2·v + (1−β2)·g²
      //   W ← W − lr · (m/(1−accβ1)) / (sqrt(v/(1−accβ2)) + ε)       (ε outside the sqrt)
      // computed as G = (1−β1)·g, m ← β1·m + G, v ← β2·v + κ·G² with κ = (1−β2)/(1−β1)², and
      //   W ← W − lr_t · m / (sqrt(v) + ε_t),  lr_t = lr·sqrt(1−accβ2)/(1−accβ1), ε_t = ε·sqrt(1−accβ2).
      return {
        states: ['m', 'v'],
        scalars: ['lr_t', 'eps_t'],
        gradScale: 1 - opt.beta1,
        emit(g, { grad, param, states: [m, v], out }) {
          const m1 = g.op('Add', [g.op('Mul', [m, g.scalar(opt.beta1)]), grad], out.states[0]);
          const g2 = g.op('Mul', [g.op('Mul', [grad, grad]), g.scalar((1 - opt.beta2) / (1 - opt.beta1) ** 2)]);
          const v1 = g.op('Add', [g.op('Mul', [v, g.scalar(opt.beta2)]), g2], out.states[1]);
          const denom = g.op('Add', [g.op('Sqrt', [v1]), 'eps_t']);
          g.op('Sub', [param, g.op('Mul', [g.op('Div', [m1, denom]), 'lr_t'])], out.param);
        },
      };
    case 'rmsprop':
      // tfjs RMSPropOptimizer with momentum 0 and centered false:
      //   ms  ← ρ·ms + (1−ρ)·g²
      //   mom ← 0·mom + lr·g / sqrt(ms + ε)                          (ε inside the sqrt)
      //   W   ← W − mom
      // mom is just this step's update, so it is not kept. Computed as G = sqrt(1−ρ)·g,
      // ms ← ρ·ms + G², W ← W − lr_t·G/sqrt(ms + ε) with lr_t = lr/sqrt(1−ρ).
      return {
        states: ['ms'],
        scalars: ['lr_t'],
        gradScale: Math.sqrt(1 - opt.rho),
        emit(g, { grad, param, states: [ms], out }) {
          const ms1 = g.op('Add', [g.op('Mul', [ms, g.scalar(opt.rho)]), g.op('Mul', [grad, grad])], out.states[0]);
          const denom = g.op('Sqrt', [g.op('Add', [ms1, g.scalar(opt.epsilon)])]);
          g.op('Sub', [param, g.op('Mul', [g.op('Div', [grad, denom]), 'lr_t'])], out.param);
        },
      };
    case 'sgd':
      if (opt.momentum === 0) {
        // tfjs SGDOptimizer (and MomentumOptimizer with μ = 0, which is the same): W ← W − lr·g.
        return {
          states: [],
          scalars: ['lr'],
          gradScale: 1,
          emit(g, { grad, param, out }) {
            g.op('Sub', [param, g.op('Mul', [grad, 'lr'])], out.param);
          },
        };
      }
      // tfjs MomentumOptimizer (useNesterov false): accum ← μ·accum + g;  W ← W − lr·accum.
      return {
        states: ['accum'],
        scalars: ['lr'],
        gradScale: 1,
        emit(g, { grad, param, states: [accum], out }) {
          const accum1 = g.op('Add', [g.op('Mul', [accum, g.scalar(opt.momentum)]), grad], out.states[0]);
          g.op('Sub', [param, g.op('Mul', [accum1, 'lr'])], out.param);
        },
      };
  }
}

/** The factor the step graph applies to gradients before the optimizer (see OptimizerPlan). */
export const gradientScale = (opt: OptimizerConfig): number => optimizerPlan(opt).gradScale;

/** Layer 0's kernel and its optimizer-state tensors, by name: what an external first kernel leaves out of the graph. */
export function kernel0Tensors(opt: OptimizerConfig): { readonly kernel: string; readonly states: readonly string[] } {
  return { kernel: paramName(0, 'kernel'), states: optimizerPlan(opt).states.map((s) => stateName(s, 0, 'kernel')) };
}

/** The optimizer-state tensors among storedTensors (kernel and bias copies of each state). */
export function stateTensorNames(layout: readonly DenseLayout[], opt: OptimizerConfig, externalKernel0 = false): string[] {
  const stored = storedTensors(layout, opt, externalKernel0);
  const states = optimizerPlan(opt).states;
  return layout.flatMap((_, l) => states.flatMap((st) => [stateName(st, l, 'kernel'), stateName(st, l, 'bias')])).filter((n) => stored.has(n));
}

/**
 * Every parameter and optimizer-state tensor the step graph takes and returns, with its stored
 * dims, in input order: per layer the kernel and bias, then per state its kernel and bias copy.
 * With `externalKernel0`, layer 0's kernel and its states are not among them.
 */
export function storedTensors(layout: readonly DenseLayout[], opt: OptimizerConfig, externalKernel0 = false): ReadonlyMap<string, readonly number[]> {
  if (externalKernel0) {
    const left = kernel0Tensors(opt);
    const all = storedTensors(layout, opt);
    return new Map([...all].filter(([name]) => name !== left.kernel && !left.states.includes(name)));
  }
  const states = optimizerPlan(opt).states;
  const params = layout.flatMap((lay, l): [string, readonly number[]][] => [
    [paramName(l, 'kernel'), lay.kernelDims],
    [paramName(l, 'bias'), [lay.outputs]],
  ]);
  const stateTensors = layout.flatMap((lay, l) =>
    states.flatMap((s): [string, readonly number[]][] => [
      [stateName(s, l, 'kernel'), lay.kernelDims],
      [stateName(s, l, 'bias'), [lay.outputs]],
    ]),
  );
  return new Map([...params, ...stateTensors]);
}

export interface ScalarSchedule {
  readonly names: readonly string[];
  /** The scalar inputs for the next step, in `names` order; advances the step count. */
  next(): number[];
}

/** Per-step scalar inputs; Adam's β powers are float32 products, exactly as tfjs accumulates them. */
export function scalarSchedule(opt: OptimizerConfig): ScalarSchedule {
  const names = optimizerPlan(opt).scalars;
  switch (opt.kind) {
    case 'adam': {
      const f = Math.fround;
      let accBeta1 = f(opt.beta1);
      let accBeta2 = f(opt.beta2);
      return {
        names,
        next() {
          const c1 = f(1 - accBeta1);
          const c2 = f(1 - accBeta2);
          accBeta1 = f(accBeta1 * f(opt.beta1));
          accBeta2 = f(accBeta2 * f(opt.beta2));
          return [(opt.lr * Math.sqrt(c2)) / c1, opt.epsilon * Math.sqrt(c2)];
        },
      };
    }
    case 'rmsprop':
      return { names, next: () => [opt.lr / Math.sqrt(1 - opt.rho)] };
    case 'sgd':
      return { names, next: () => [opt.lr] };
  }
}

// ---------------------------------------------------------------------------------------------
// Models.

export interface TrainGraphSpec {
  readonly architecture: HeadArchitecture;
  readonly training: TrainingConfig;
  readonly layout: readonly DenseLayout[];
  /**
   * Layer 0's kernel is an input the graph reads but does not update (its states are not
   * inputs at all); the graph outputs KERNEL0_DZ instead, and its loss leaves out that kernel's
   * L2 term (l2·Σ W₀²), which the caller adds. Needs layer 0 unchunked (planLayout wholeFirst).
   */
  readonly externalKernel0?: boolean;
}

/**
 * Inputs: x [n, D], y one-hot [n, C], w [n], mask_i [n, h_i] (pre-scaled), every kernel, bias and
 * optimizer state tensor, and the optimizer's scalars. Outputs: the mean loss before the step
 * (Σ w·CE / n + l2·Σ W²) and the next value of every parameter and state tensor.
 * (See TrainGraphSpec.externalKernel0 for what changes with an external first kernel.)
 */
export function buildTrainStepModel(spec: TrainGraphSpec): Uint8Array {
  const { architecture: arch, training, layout } = spec;
  const external = spec.externalKernel0 === true;
  if (external && layout[0].chunks !== 1) throw new Error('onnx train graph: an external first kernel must be unchunked');
  const g = new OnnxGraph();
  const plan = optimizerPlan(training.optimizer);
  emitTrainStep(g, spec);
  const stored = [...storedTensors(layout, training.optimizer, external)];
  const inputs = [
    valueInfo(X, ['n', arch.inputDim]),
    valueInfo(Y, ['n', arch.classes]),
    valueInfo(ROW_WEIGHT, ['n']),
    ...arch.hidden.map((h, i) => valueInfo(maskName(i), ['n', h])),
    ...(external ? [valueInfo(paramName(0, 'kernel'), layout[0].kernelDims)] : []),
    ...stored.map(([name, dims]) => valueInfo(name, dims)),
    ...plan.scalars.map((s) => valueInfo(s, [])),
  ];
  const outputs = [
    valueInfo(LOSS, []),
    ...(external ? [valueInfo(KERNEL0_DZ, ['n', layout[0].outputs])] : []),
    ...stored.map(([name, dims]) => valueInfo(nextName(name), dims)),
  ];
  return encodeModel(g, 'head_train_step', inputs, outputs);
}

/** The stacked input of the many-step graph for the step graph's input `name`: one slice per step. */
export const seqName = (name: string): string => `${name}.seq`;
/** The many-step graph's input holding the initial value of a parameter or state tensor. */
export const carryInName = (name: string): string => `${name}.in`;
/** The many-step graph's output holding the final value of a parameter or state tensor. */
export const carryOutName = (name: string): string => `${name}.out`;
/** The many-step graph's per-step losses, [k]. */
export const LOSSES = 'losses';

/**
 * K training steps in one run: a Scan whose body is the step graph, with the parameters and
 * optimizer state loop-carried and the batches and per-step scalars scanned.
 * Inputs: x.seq [k, n, D], y.seq [k, n, C], w.seq [k, n], mask_i.seq [k, n, h_i], the initial
 * value `name.in` of every parameter and state tensor, and each scalar `s.seq` [k].
 * Outputs: losses [k] (each step's loss before its update) and `name.out`, the final values.
 */
export function buildTrainManyModel(spec: TrainGraphSpec): Uint8Array {
  const { architecture: arch, training, layout } = spec;
  if (spec.externalKernel0) throw new Error('onnx train graph: the many-step graph has no external first kernel');
  const g = new OnnxGraph();
  const plan = optimizerPlan(training.optimizer);
  const body = g.subgraph();
  emitTrainStep(body, spec);
  const stored = [...storedTensors(layout, training.optimizer)];
  const sliced: [string, (number | string)[]][] = [
    [X, ['n', arch.inputDim]],
    [Y, ['n', arch.classes]],
    [ROW_WEIGHT, ['n']],
    ...arch.hidden.map((h, i): [string, (number | string)[]] => [maskName(i), ['n', h]]),
    ...plan.scalars.map((s): [string, (number | string)[]] => [s, []]),
  ];
  const bodyGraph: proto.IGraphProto = {
    name: g.fresh('train_step'),
    node: body.nodes,
    input: [...stored.map(([name, dims]) => valueInfo(name, dims)), ...sliced.map(([name, dims]) => valueInfo(name, dims))],
    output: [...stored.map(([name, dims]) => valueInfo(nextName(name), dims)), valueInfo(LOSS, [])],
  };
  g.node(
    'Scan',
    [...stored.map(([name]) => carryInName(name)), ...sliced.map(([name]) => seqName(name))],
    [...stored.map(([name]) => carryOutName(name)), LOSSES],
    [attr.int('num_scan_inputs', sliced.length), attr.graph('body', bodyGraph)],
  );
  const inputs = [
    ...stored.map(([name, dims]) => valueInfo(carryInName(name), dims)),
    ...sliced.map(([name, dims]) => valueInfo(seqName(name), ['k', ...dims])),
  ];
  const outputs = [valueInfo(LOSSES, ['k']), ...stored.map(([name, dims]) => valueInfo(carryOutName(name), dims))];
  return encodeModel(g, 'head_train_many', inputs, outputs);
}

/** Adds one training step's nodes to `g`, reading the step graph's inputs and writing its outputs. */
function emitTrainStep(g: OnnxGraph, { training, layout, externalKernel0 }: TrainGraphSpec): void {
  const plan = optimizerPlan(training.optimizer);
  const { l2 } = training;
  const last = layout.length - 1;

  // Forward. With gate = mask where z > 0, else 0: a = relu(z)·mask = z·gate, and dz = da·gate.
  const padded: string[] = [];
  const gates: string[] = [];
  let a = X;
  for (let l = 0; l <= last; l++) {
    padded.push(padRows(g, a, layout[l]));
    const z = dense(g, padded[l], l, layout[l]);
    if (l === last) {
      a = z;
    } else {
      const gate = g.op('Where', [g.op('Greater', [z, g.scalar(0)]), maskName(l), g.scalar(0)]);
      gates.push(gate);
      a = g.op('Mul', [z, gate]);
    }
  }

  // Loss Σ w·CE / n and dlogits = (softmax − onehot)·w/n.
  const logProbs = g.op('LogSoftmax', [a], undefined, [attr.int('axis', 1)]);
  const rows = g.op('Cast', [g.op('Shape', [X], undefined, [attr.int('start', 0), attr.int('end', 1)])], undefined, [attr.int('to', FLOAT)]);
  const wOverN = g.op('Unsqueeze', [g.op('Div', [ROW_WEIGHT, rows]), g.int64s([1])]);
  const target = g.op('Mul', [Y, wOverN]);
  const dataLoss = g.op('Neg', [g.op('ReduceSum', [g.op('Mul', [target, logProbs])], undefined, [attr.int('keepdims', 0)])]);
  let dz = g.op('Sub', [g.op('Mul', [g.op('Exp', [logProbs]), wOverN]), target]);

  // Backward and update, last layer first. Every op reads the kernels' input values, i.e. the
  // weights before the step, whatever order onnxruntime runs them in.
  const squares: string[] = [];
  for (let l = last; l >= 0; l--) {
    const dzScaled = plan.gradScale === 1 ? dz : g.op('Mul', [dz, g.scalar(plan.gradScale)]);
    if (l === 0 && externalKernel0) {
      g.op('Identity', [dzScaled], KERNEL0_DZ);
    } else {
      const sumSquares = updateKernel(g, plan, l2, padded[l], dzScaled, l, layout[l]);
      if (sumSquares) squares.push(sumSquares);
    }
    const bias = paramName(l, 'bias');
    const biasStates = plan.states.map((s) => stateName(s, l, 'bias'));
    const biasGrad = g.op('ReduceSum', [dzScaled, g.int64s([0])], undefined, [attr.int('keepdims', 0)]);
    plan.emit(g, { grad: biasGrad, param: bias, states: biasStates, out: nextNames(bias, biasStates) });
    // No gradient with respect to x.
    if (l > 0) dz = g.op('Mul', [inputGrad(g, dz, l, layout[l]), gates[l - 1]]);
  }
  if (squares.length > 0) g.op('Add', [dataLoss, g.op('Mul', [g.op('Sum', squares), g.scalar(l2)])], LOSS);
  else g.op('Identity', [dataLoss], LOSS);
}

/** Inputs: x [n, D] and every kernel and bias. Output: softmax probabilities [n, C]. */
export function buildPredictModel({ architecture: arch, layout }: Omit<TrainGraphSpec, 'training'>): Uint8Array {
  const g = new OnnxGraph();
  let a = X;
  layout.forEach((lay, l) => {
    const z = dense(g, padRows(g, a, lay), l, lay);
    a = l === layout.length - 1 ? z : g.op('Relu', [z]);
  });
  g.op('Softmax', [a], PROBS, [attr.int('axis', 1)]);
  const inputs = [
    valueInfo(X, ['n', arch.inputDim]),
    ...layout.flatMap((lay, l) => [valueInfo(paramName(l, 'kernel'), lay.kernelDims), valueInfo(paramName(l, 'bias'), [lay.outputs])]),
  ];
  return encodeModel(g, 'head_predict', inputs, [valueInfo(PROBS, ['n', arch.classes])]);
}

// ---------------------------------------------------------------------------------------------
// Pieces of the graphs.

/** Zero-pads activations [n, inputs] to [n, rows] to match a padded kernel. */
function padRows(g: OnnxGraph, a: string, lay: DenseLayout): string {
  if (lay.rows === lay.inputs) return a;
  return g.op('Pad', [a, g.int64s([0, 0, 0, lay.rows - lay.inputs])]);
}

function kernel2d(g: OnnxGraph, l: number, lay: DenseLayout): string {
  const kernel = paramName(l, 'kernel');
  // Reshape aliases its input in onnxruntime: no copy.
  return lay.chunks === 1 ? kernel : g.op('Reshape', [kernel, g.int64s([lay.rows, lay.outputs])]);
}

function dense(g: OnnxGraph, aPadded: string, l: number, lay: DenseLayout): string {
  return g.op('Gemm', [aPadded, kernel2d(g, l, lay), paramName(l, 'bias')]);
}

/** da = dz·Wᵀ, the gradient with respect to the layer's (unpadded) input. */
function inputGrad(g: OnnxGraph, dz: string, l: number, lay: DenseLayout): string {
  const da = g.op('Gemm', [dz, kernel2d(g, l, lay)], undefined, [attr.int('transB', 1)]);
  if (lay.rows === lay.inputs) return da;
  return g.op('Slice', [da, g.int64s([0]), g.int64s([lay.inputs]), g.int64s([1])]);
}

function nextNames(param: string, states: readonly string[]): UpdateValues['out'] {
  return { param: nextName(param), states: states.map(nextName) };
}

/**
 * G = aᵀ·dzScaled + 2·l2·gradScale·W, then the optimizer update, chunk by chunk when the kernel
 * is chunked. Returns the name of Σ W² (before the step) when l2 > 0.
 */
function updateKernel(
  g: OnnxGraph,
  plan: OptimizerPlan,
  l2: number,
  aPadded: string,
  dzScaled: string,
  l: number,
  lay: DenseLayout,
): string | undefined {
  const kernel = paramName(l, 'kernel');
  const states = plan.states.map((s) => stateName(s, l, 'kernel'));

  // One chunk (or the whole kernel): the gradient is one GEMM, with the L2 term folded in as C.
  const emitChunk = (b: OnnxGraph, act: string, transA: boolean, w: string, st: readonly string[], out: UpdateValues['out']) => {
    const grad =
      l2 > 0
        ? b.op('Gemm', [act, dzScaled, w], undefined, [attr.int('transA', transA ? 1 : 0), attr.float('beta', 2 * l2 * plan.gradScale)])
        : b.op('Gemm', [act, dzScaled], undefined, [attr.int('transA', transA ? 1 : 0)]);
    plan.emit(b, { grad, param: w, states: st, out });
    return l2 > 0 ? b.op('ReduceSumSquare', [w], undefined, [attr.int('keepdims', 0)]) : undefined;
  };

  if (lay.chunks === 1) return emitChunk(g, aPadded, true, kernel, states, nextNames(kernel, states));

  // Scan over chunks of aᵀ [chunks, chunkRows, n], the kernel and its states, all sliced on axis 0.
  const actT = g.op('Reshape', [g.op('Transpose', [aPadded], undefined, [attr.ints('perm', [1, 0])]), g.int64s([lay.chunks, lay.chunkRows, -1])]);
  const body = g.subgraph();
  const chunkDims = [lay.chunkRows, lay.outputs];
  const bodyIn = { act: body.fresh('act_chunk'), kernel: body.fresh('kernel_chunk'), states: states.map((s) => body.fresh(`${s}_chunk`)) };
  const bodyOut = { param: body.fresh('kernel_next_chunk'), states: states.map((s) => body.fresh(`${s}_next_chunk`)) };
  const square = emitChunk(body, bodyIn.act, false, bodyIn.kernel, bodyIn.states, bodyOut);
  const bodyGraph: proto.IGraphProto = {
    name: g.fresh('update_chunk'),
    node: body.nodes,
    input: [valueInfo(bodyIn.act, [lay.chunkRows, 'n']), valueInfo(bodyIn.kernel, chunkDims), ...bodyIn.states.map((s) => valueInfo(s, chunkDims))],
    output: [
      valueInfo(bodyOut.param, chunkDims),
      ...bodyOut.states.map((s) => valueInfo(s, chunkDims)),
      ...(square ? [valueInfo(square, [])] : []),
    ],
  };
  const squares = square ? g.fresh('kernel_squares') : undefined;
  g.node('Scan', [actT, kernel, ...states], [nextName(kernel), ...states.map(nextName), ...(squares ? [squares] : [])], [
    attr.int('num_scan_inputs', 2 + states.length),
    attr.graph('body', bodyGraph),
  ]);
  return squares && g.op('ReduceSum', [squares], undefined, [attr.int('keepdims', 0)]);
}


