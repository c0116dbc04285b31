/**
 * Head parameters in the onnx graphs' stored layout: canonical [out, in] kernels transposed to
 * [rows ≥ in, out] (see planLayout), padding rows zero. Shared by the trainer and the predictor.
 */
import type ort from 'onnxruntime-node';
import { paramName, type DenseLayout } from './onnx-train-graph.ts';
import type { DenseParams, HeadParams } from './trainer.ts';

/** Parameter (and state) tensors by graph input name. */
export type TensorSet = Map<string, ort.Tensor>;

export function tensorData(set: TensorSet, name: string): Float32Array {
  return set.get(name)!.data as Float32Array;
}

/** Canonical [out, in] kernels → stored [rows ≥ in, out]; padding rows stay zero. */
export function writeParams(set: TensorSet, layout: readonly DenseLayout[], params: HeadParams): void {
  if (params.length !== layout.length) throw new Error(`onnx trainer: expected ${layout.length} layers, got ${params.length}`);
  layout.forEach((lay, l) => {
    const { weight, bias } = params[l];
    if (weight.length !== lay.inputs * lay.outputs || bias.length !== lay.outputs) {
      throw new Error(`onnx trainer: layer ${l} expects a ${lay.outputs}×${lay.inputs} kernel and ${lay.outputs} biases`);
    }
    transpose(weight, lay.outputs, lay.inputs, tensorData(set, paramName(l, 'kernel')));
    tensorData(set, paramName(l, 'bias')).set(bias);
  });
}

export function readParams(set: TensorSet, layout: readonly DenseLayout[]): DenseParams[] {
  return layout.map((lay, l) => {
    const weight = new Float32Array(lay.inputs * lay.outputs);
    transpose(tensorData(set, paramName(l, 'kernel')), lay.inputs, lay.outputs, weight);
    return { weight, bias: tensorData(set, paramName(l, 'bias')).slice() };
  });
}

/** dst[c, r] = src[r, c] for a rows × cols src, in cache-sized tiles (kernels can be 25088×256). */
function transpose(src: Float32Array, rowCount: number, cols: number, dst: Float32Array): void {
  const TILE = 32;
  for (let r0 = 0; r0 < rowCount; r0 += TILE) {
    const r1 = Math.min(r0 + TILE, rowCount);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(c0 + TILE, cols);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) dst[c * rowCount + r] = src[r * cols + c];
      }
    }
  }
}
