/**
 * The onnx head trainer: runs the generated training-step graph (onnx-train-graph.ts) on
 * onnxruntime-node's CPU provider.
 *
 * Parameters and optimizer state live in two preallocated sets of Float32Arrays. Each step feeds
 * one set and has onnxruntime write the next values straight into the other (preallocated
 * fetches), then the two swap. Inputs, the batch included, are wrapped without copying.
 *
 * Outputs are not free, though: onnxruntime-node 1.30 writes a preallocated fetch in place but
 * still memcpy's every output into a fresh ArrayBuffer for the result it returns
 * (OrtValueToNapiValue, "TODO: optimize memory"), which this trainer drops. That costs about
 * 0.4 ms per MB of parameters and state per step (page faults on the new buffers, the copy,
 * garbage collection): for Adam on a 25088×256 kernel, 77 MB and roughly a third of the step.
 * Letting onnxruntime allocate the outputs and adopting the returned arrays measured the same,
 * so the ping-pong buffers stay: they keep the state in stable memory.
 *
 * That per-run copy is why stepMany() exists: it runs k same-size batches through one Scan over
 * the same step graph in a single session.run, so the outputs are copied once per k steps
 * (bench/train-head: about 1.7× faster per epoch than one run per step).
 *
 * With the native addon (native-dense-update.ts) and a large first kernel, that kernel leaves
 * the graph: the graph reads it and returns dz at its output, and the addon applies the fused
 * gradient-and-optimizer update in place. The outputs left are small, so each step is one run
 * and stepMany() is a loop.
 */
import os from 'node:os';
import ort from '../util/onnxruntime.ts';
import {
  buildPredictModel,
  buildTrainManyModel,
  buildTrainStepModel,
  gradientScale,
  KERNEL0_DZ,
  kernel0Tensors,
  carryInName,
  carryOutName,
  DEFAULT_CHUNK_ELEMENTS,
  LOSS,
  LOSSES,
  maskName,
  nextName,
  paramName,
  planLayout,
  PROBS,
  ROW_WEIGHT,
  scalarSchedule,
  seqName,
  stateTensorNames,
  storedTensors,
  X,
  Y,
} from './onnx-train-graph.ts';
import { readParams, writeParams, type TensorSet } from './onnx-head-params.ts';
import { nativeDenseUpdateStatus, nativeKernelUpdater } from './native-dense-update.ts';
import type { HeadParams, HeadTrainer, TrainBatch, TrainerOptions } from './trainer.ts';
import { product } from '../util/numbers.ts';

export interface OnnxTrainerTuning {
  /** Elements per chunk of a kernel's update (see DEFAULT_CHUNK_ELEMENTS); tests make it tiny. */
  readonly chunkElements?: number;
  /** onnxruntime intra-op threads (and the native update's); default os.availableParallelism(). */
  readonly threads?: number;
  /**
   * The native first-kernel update: 'auto' (default) where the addon is loaded and layer 0's
   * kernel has at least NATIVE_MIN_ELEMENTS weights; 'on' wherever the addon is loaded; 'off'.
   */
  readonly native?: 'auto' | 'on' | 'off';
}

/**
 * Smallest first kernel for which 'auto' takes the native update. Below it the graph's own
 * update is cheap and the many-step Scan (one run per chunk of batches) wins. Measured with
 * bench/train-head (Dense(256), Adam, s/epoch native vs graph): 64-d 0.087 vs 0.042, 512-d
 * 0.070 vs 0.098, 1024-d 0.108 vs 0.119, 25,088-d 1.67 vs 2.93.
 */
export const NATIVE_MIN_ELEMENTS = 512 * 256;

export async function createOnnxTrainer(opts: TrainerOptions, tuning: OnnxTrainerTuning = {}): Promise<HeadTrainer> {
  const { architecture: arch, training, maxBatch } = opts;
  const threads = tuning.threads ?? os.availableParallelism();
  const firstWidth = arch.hidden[0] ?? arch.classes;
  const wantNative = tuning.native === 'on' || ((tuning.native ?? 'auto') === 'auto' && arch.inputDim * firstWidth >= NATIVE_MIN_ELEMENTS);
  const nativeUpdate = wantNative ? nativeKernelUpdater(training.optimizer, gradientScale(training.optimizer), training.l2, threads) : null;
  const external = nativeUpdate !== null;
  const layout = planLayout(arch, tuning.chunkElements ?? DEFAULT_CHUNK_ELEMENTS, external);
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    // A step is over a thousand small ops (the chunked updates). On a loaded 2-core machine,
    // workers spinning between them were preempted and made 2-thread steps up to 3× slower than
    // 1 thread; without spinning, 2 threads stayed within noise of 1 (idle machines: unmeasured).
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
  const stepSession = await ort.InferenceSession.create(buildTrainStepModel({ architecture: arch, training, layout, externalKernel0: external }), sessionOptions);
  const predictSession = await ort.InferenceSession.create(buildPredictModel({ architecture: arch, layout }), sessionOptions);

  const stored = storedTensors(layout, training.optimizer, external);
  const newTensor = (dims: readonly number[]) => new ort.Tensor('float32', new Float32Array(size(dims)), dims);
  const makeSet = (): TensorSet => new Map([...stored].map(([name, dims]) => [name, newTensor(dims)]));
  // Optimizer state starts at zero, as in tfjs; only the parameters are initialised.
  const sets: [TensorSet, TensorSet] = [makeSet(), makeSet()];
  let current = 0;
  // An external first kernel and its states live once, outside the ping-pong sets: the addon updates them in place.
  const kernel0 = kernel0Tensors(training.optimizer);
  const outside = external ? { kernel: newTensor(layout[0].kernelDims), states: kernel0.states.map(() => new Float32Array(size(layout[0].kernelDims))) } : null;
  /** A set with the external kernel added back, for code that reads or writes every parameter. */
  const whole = (set: TensorSet): TensorSet => (outside ? new Map([...set, [kernel0.kernel, outside.kernel]]) : set);
  writeParams(whole(sets[0]), layout, opts.initial);

  // Each set's fetches name the other set's buffers; the loss (and dz₀) are small and left to onnxruntime.
  const fetches: ort.InferenceSession.NullableOnnxValueMapType[] = sets.map((_, i) =>
    Object.fromEntries([[LOSS, null], ...(outside ? [[KERNEL0_DZ, null]] : []), ...[...sets[1 - i]].map(([name, t]) => [nextName(name), t] as const)]),
  );

  const stateNames = stateTensorNames(layout, training.optimizer, external);
  let stepsSinceFlush = 0;
  /** Called after each run: every FLUSH_EVERY steps, zeroes the subnormal optimizer state (see flushSubnormals). */
  const ranSteps = (k: number) => {
    stepsSinceFlush += k;
    if (stepsSinceFlush < FLUSH_EVERY) return;
    stepsSinceFlush = 0;
    for (const name of stateNames) flushSubnormals(sets[current].get(name)!.data as Float32Array);
  };

  const schedule = scalarSchedule(training.optimizer);
  const scalars = schedule.names.map((name) => ({ name, tensor: new ort.Tensor('float32', new Float32Array(1), []) }));
  const oneHot = new Float32Array(maxBatch * arch.classes);

  // The many-step session (K steps per run: one output copy per run instead of per step), built
  // on first use, with feeds and fetches naming the same ping-pong buffers as the step session.
  let many:
    | { session: ort.InferenceSession; feeds: Record<string, ort.Tensor>[]; fetches: ort.InferenceSession.NullableOnnxValueMapType[] }
    | undefined;
  const getMany = async () => {
    if (!many) {
      const session = await ort.InferenceSession.create(buildTrainManyModel({ architecture: arch, training, layout }), sessionOptions);
      many = {
        session,
        feeds: sets.map((set) => Object.fromEntries([...set].map(([name, t]) => [carryInName(name), t]))),
        fetches: sets.map((_, i) => Object.fromEntries([[LOSSES, null], ...[...sets[1 - i]].map(([name, t]) => [carryOutName(name), t] as const)])),
      };
    }
    return many;
  };
  const scratch = new Map<string, Float32Array>();
  /** The k arrays' first `len` floats as one [k·len] array: a view when they already lie back to back, else a copy. */
  const stacked = (key: string, arrays: readonly Float32Array[], len: number): Float32Array => {
    const first = arrays[0];
    if (arrays.every((a, k) => a.buffer === first.buffer && a.byteOffset === first.byteOffset + k * len * 4 && a.length >= len)) {
      if (first.byteOffset + arrays.length * len * 4 <= first.buffer.byteLength) return new Float32Array(first.buffer, first.byteOffset, arrays.length * len);
    }
    let buf = scratch.get(key);
    if (!buf || buf.length < arrays.length * len) scratch.set(key, (buf = new Float32Array(arrays.length * len)));
    arrays.forEach((a, k) => {
      if (a.length < len) throw new Error(`onnx trainer: expected ${len} floats, got ${a.length}`);
      buf.set(a.subarray(0, len), k * len);
    });
    return buf.subarray(0, arrays.length * len);
  };

  /** K steps over batches of the same n, in one run. */
  const runMany = async (batches: readonly TrainBatch[]): Promise<number[]> => {
    const { session, feeds: carried, fetches: carriedFetches } = await getMany();
    const k = batches.length;
    const { n } = batches[0];
    if (n < 1 || n > maxBatch) throw new Error(`onnx trainer: batch of ${n} rows, expected 1..${maxBatch}`);
    const c = arch.classes;
    let hot = scratch.get('onehot');
    if (!hot || hot.length < k * n * c) scratch.set('onehot', (hot = new Float32Array(k * n * c)));
    hot.fill(0, 0, k * n * c);
    batches.forEach((batch, b) => {
      for (let i = 0; i < n; i++) {
        const label = batch.y[i];
        if (!(label >= 0 && label < c)) throw new Error(`onnx trainer: label ${label} outside 0..${c - 1}`);
        hot[(b * n + i) * c + label] = 1;
      }
    });
    const feeds: Record<string, ort.Tensor> = {
      ...carried[current],
      [seqName(X)]: new ort.Tensor('float32', stacked('x', batches.map((b) => b.x), n * arch.inputDim), [k, n, arch.inputDim]),
      [seqName(Y)]: new ort.Tensor('float32', hot.subarray(0, k * n * c), [k, n, c]),
      [seqName(ROW_WEIGHT)]: new ort.Tensor('float32', stacked('w', batches.map((b) => b.weight), n), [k, n]),
    };
    arch.hidden.forEach((h, i) => {
      feeds[seqName(maskName(i))] = new ort.Tensor('float32', stacked(`mask${i}`, batches.map((b) => b.masks[i]), n * h), [k, n, h]);
    });
    const values = schedule.names.map(() => new Float32Array(k));
    for (let b = 0; b < k; b++) schedule.next().forEach((v, i) => (values[i][b] = v));
    schedule.names.forEach((name, i) => (feeds[seqName(name)] = new ort.Tensor('float32', values[i], [k])));
    const result = await session.run(feeds, carriedFetches[current]);
    current = 1 - current;
    ranSteps(k);
    return Array.from(result[LOSSES].data as Float32Array);
  };

  const trainer: HeadTrainer = {
    name: 'onnx',
    provider: providerName(external, wantNative),

    async step(batch: TrainBatch): Promise<number> {
      const { n } = batch;
      if (n < 1 || n > maxBatch) throw new Error(`onnx trainer: batch of ${n} rows, expected 1..${maxBatch}`);
      const c = arch.classes;
      oneHot.fill(0, 0, n * c);
      for (let i = 0; i < n; i++) {
        const label = batch.y[i];
        if (!(label >= 0 && label < c)) throw new Error(`onnx trainer: label ${label} outside 0..${c - 1}`);
        oneHot[i * c + label] = 1;
      }
      // Batch arrays may be longer than n rows (views of the caller's preallocated buffers): wrap the first n.
      const feeds: Record<string, ort.Tensor> = {
        [X]: rows(batch.x, n, arch.inputDim),
        [Y]: rows(oneHot, n, c),
        [ROW_WEIGHT]: new ort.Tensor('float32', batch.weight.subarray(0, n), [n]),
      };
      arch.hidden.forEach((h, i) => (feeds[maskName(i)] = rows(batch.masks[i], n, h)));
      for (const [name, t] of sets[current]) feeds[name] = t;
      if (outside) feeds[kernel0.kernel] = outside.kernel;
      const values = schedule.next();
      scalars.forEach(({ name, tensor }, i) => {
        (tensor.data as Float32Array)[0] = values[i];
        feeds[name] = tensor;
      });
      const result = await stepSession.run(feeds, fetches[current]);
      current = 1 - current;
      ranSteps(1);
      const loss = (result[LOSS].data as Float32Array)[0];
      if (!outside || !nativeUpdate) return loss;
      const lay = layout[0];
      const dz = result[KERNEL0_DZ].data as Float32Array;
      const sumSquares = nativeUpdate(batch.x, n, dz, outside.kernel.data as Float32Array, outside.states, lay.inputs, lay.outputs, { lr: values[0], eps: values[1] });
      return loss + training.l2 * sumSquares;
    },

    /** Runs of two or more batches with the same n go through the many-step graph, the rest through step(). */
    async stepMany(batches: readonly TrainBatch[]): Promise<number[]> {
      const losses: number[] = [];
      if (outside) {
        for (const batch of batches) losses.push(await trainer.step(batch));
        return losses;
      }
      for (let i = 0; i < batches.length; ) {
        let j = i + 1;
        while (j < batches.length && batches[j].n === batches[i].n) j++;
        if (j - i === 1) losses.push(await trainer.step(batches[i]));
        else losses.push(...(await runMany(batches.slice(i, j))));
        i = j;
      }
      return losses;
    },

    async predict(x: Float32Array, n: number): Promise<Float32Array> {
      const feeds: Record<string, ort.Tensor> = { [X]: rows(x, n, arch.inputDim) };
      const params = whole(sets[current]);
      layout.forEach((_, l) => {
        for (const kind of ['kernel', 'bias'] as const) feeds[paramName(l, kind)] = params.get(paramName(l, kind))!;
      });
      const result = await predictSession.run(feeds, [PROBS]);
      return result[PROBS].data as Float32Array;
    },

    async getParams(): Promise<HeadParams> {
      return readParams(whole(sets[current]), layout);
    },

    /** Replaces the parameters only: the optimizer state (moments, step count) is kept. */
    async setParams(params: HeadParams): Promise<void> {
      writeParams(whole(sets[current]), layout, params);
    },

    async dispose(): Promise<void> {
      await stepSession.release();
      await predictSession.release();
      await many?.session.release();
    },
  };
  return trainer;
}

const size = product;

/** Steps between two flushes of subnormal optimizer state. */
const FLUSH_EVERY = 32;
const FLT_MIN = 2 ** -126;

/**
 * Sets subnormal entries to zero, as FTZ would. Where a gradient stays zero (a dead ReLU unit's
 * column), a state that decays by 0.9 per step (Adam's m, momentum, RMSProp) shrinks into the
 * subnormals and sticks at the smallest one (0.9 × it rounds back to it); every op on a subnormal
 * then takes a microcode assist, and 4096-d Adam epochs ran 4-5× slower from about the 14th on
 * (bench/train-head). Once zero, such an entry stays zero, so an occasional pass is enough; in
 * the graph it cost three more elementwise passes per step. Values this small move no weight.
 * (The native update runs with FTZ/DAZ instead.)
 */
function flushSubnormals(a: Float32Array): void {
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (v !== 0 && v < FLT_MIN && v > -FLT_MIN) a[i] = 0;
  }
}

/** The trainer's name for its line: with the native update's build, or why a head that wanted it runs without. */
function providerName(external: boolean, wanted: boolean): string {
  const status = nativeDenseUpdateStatus();
  if (status.loaded) return external ? `onnxruntime cpu + native update (${status.isa})` : 'onnxruntime cpu';
  return wanted ? `onnxruntime cpu, without the native update: ${status.reason}` : 'onnxruntime cpu';
}

function rows(data: Float32Array, n: number, width: number): ort.Tensor {
  if (data.length < n * width) throw new Error(`onnx trainer: expected ${n}×${width} floats, got ${data.length}`);
  return new ort.Tensor('float32', data.subarray(0, n * width), [n, width]);
}
