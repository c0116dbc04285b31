/**
 * `export --format onnx`: the stitched graph (backbone to the cut, pooling, head, softmax) as
 * one ONNX model: input `images`, NHWC float32 preprocessed as preprocessing.json says;
 * output `probabilities`, batch × classes. Plain convolutions (no Winograd rewrite), so the
 * file is the textbook network any ONNX tool can read and optimise for its own hardware.
 */
import type { Backbone } from '../backbones/backbone.ts';
import { planCuts } from '../backbones/cut.ts';
import { checkWeights } from '../backbones/weights.ts';
import { buildOnnxModel } from '../engines/onnx-model.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { PROBABILITIES } from './stitch-head.ts';

export const EXPORTED_OUTPUT = 'probabilities';

export async function exportOnnx(stitched: Backbone, file: string): Promise<void> {
  const cuts = [{ layer: PROBABILITIES }];
  const plan = planCuts(stitched.graph, stitched.preprocessing.size, cuts);
  checkWeights(plan, stitched.weights);
  await writeFileAtomic(file, buildOnnxModel({ plan, cuts, weights: stitched.weights, convAlgorithm: 'direct', outputNames: [EXPORTED_OUTPUT] }));
}
