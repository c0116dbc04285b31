/**
 * The shapes of a head's dense layers and their initial values. Both trainers start from
 * what this computes (the caller owns the seed), so they begin from identical weights.
 */
import { mulberry32 } from '../util/numbers.ts';
import type { DenseParams, HeadArchitecture, HeadParams } from './trainer.ts';

/** One dense layer's geometry; its weight is [outputs, inputs] in the canonical layout. */
export interface DenseShape {
  readonly inputs: number;
  readonly outputs: number;
}

/** Hidden layers, then the output layer, as HeadParams lists them. */
export function denseShapes(arch: HeadArchitecture): DenseShape[] {
  const widths = [arch.inputDim, ...arch.hidden, arch.classes];
  for (const width of widths) {
    if (!Number.isInteger(width) || width < 1) {
      throw new Error(`head: layer widths must be positive integers, got ${widths.join(' → ')}`);
    }
  }
  return widths.slice(1).map((outputs, i) => ({ inputs: widths[i], outputs }));
}

/**
 * Keras' Dense defaults: glorot_uniform kernels, U(-limit, limit) with
 * limit = sqrt(6 / (fan_in + fan_out)), and zero biases. Keras draws from its own generator,
 * so the values differ from Keras'; the distribution is the same, and a seed fixes them.
 * Draws run layer by layer through the weight in canonical [out, in] row-major order.
 */
export function initHeadParams(arch: HeadArchitecture, seed: number): HeadParams {
  const random = mulberry32(seed);
  return denseShapes(arch).map(({ inputs, outputs }): DenseParams => {
    const limit = glorotLimit(inputs, outputs);
    const weight = new Float32Array(inputs * outputs);
    for (let i = 0; i < weight.length; i++) weight[i] = (random() * 2 - 1) * limit;
    return { weight, bias: new Float32Array(outputs) };
  });
}

export function glorotLimit(fanIn: number, fanOut: number): number {
  return Math.sqrt(6 / (fanIn + fanOut));
}

/** Throws, naming the layer, unless `params` has exactly the architecture's layers and sizes. */
export function checkHeadParams(arch: HeadArchitecture, params: HeadParams): void {
  const shapes = denseShapes(arch);
  if (params.length !== shapes.length) {
    throw new Error(`head: expected ${shapes.length} dense layers, got ${params.length}`);
  }
  shapes.forEach(({ inputs, outputs }, i) => {
    const { weight, bias } = params[i];
    if (weight.length !== inputs * outputs || bias.length !== outputs) {
      throw new Error(
        `head: layer ${i} needs a ${outputs}×${inputs} weight and ${outputs} biases, ` +
          `got ${weight.length} and ${bias.length} values`,
      );
    }
  });
}
