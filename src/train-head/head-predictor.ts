/**
 * A trained head on its own, codes in, probabilities out: the predict graph of the onnx trainer
 * with the parameters loaded once. This is how evaluate scores cached codes.
 */
import os from 'node:os';
import ort from '../util/onnxruntime.ts';
import { writeParams, type TensorSet } from './onnx-head-params.ts';
import { buildPredictModel, paramName, planLayout, PROBS, X } from './onnx-train-graph.ts';
import type { HeadArchitecture, HeadParams } from './trainer.ts';
import { product } from '../util/numbers.ts';

export interface HeadPredictor {
  /** Softmax probabilities, n × classes, for n × inputDim codes. */
  predict(codes: Float32Array, n: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

export async function createHeadPredictor(architecture: HeadArchitecture, params: HeadParams): Promise<HeadPredictor> {
  const layout = planLayout(architecture);
  const session = await ort.InferenceSession.create(buildPredictModel({ architecture, layout }), {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: os.availableParallelism(),
  });
  const set: TensorSet = new Map(
    layout.flatMap((lay, l) => [
      [paramName(l, 'kernel'), new ort.Tensor('float32', new Float32Array(product(lay.kernelDims)), lay.kernelDims)],
      [paramName(l, 'bias'), new ort.Tensor('float32', new Float32Array(lay.outputs), [lay.outputs])],
    ]),
  );
  writeParams(set, layout, params);
  const dim = architecture.inputDim;
  // Bounded runs keep onnxruntime's intermediate buffers small for any number of rows.
  const ROWS_PER_RUN = 1024;
  return {
    async predict(codes, n) {
      if (codes.length < n * dim) throw new Error(`head predictor: expected ${n}×${dim} floats, got ${codes.length}`);
      const out = new Float32Array(n * architecture.classes);
      for (let start = 0; start < n; start += ROWS_PER_RUN) {
        const rows = Math.min(ROWS_PER_RUN, n - start);
        const x = new ort.Tensor('float32', codes.subarray(start * dim, (start + rows) * dim), [rows, dim]);
        const result = await session.run({ [X]: x, ...Object.fromEntries(set) }, [PROBS]);
        out.set(result[PROBS].data as Float32Array, start * architecture.classes);
      }
      return out;
    },
    async dispose() {
      await session.release();
    },
  };
}
