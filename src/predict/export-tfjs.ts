/**
 * `export --format tfjs`: a stitched backbone + head as a TF.js layers model folder that
 * `tf.loadLayersModel('…/model.json')` loads in a browser or in Node: `model.json` (Keras
 * topology and weights manifest) and one weights shard. Inputs are NHWC float32, already
 * preprocessed as the head's codes were (see the GraphBackbone's preprocessing).
 */
import path from 'node:path';
import type { GraphBackbone } from '../backbones/backbone.ts';
import { toTfjsLayersModel } from '../backbones/keras-topology-writer.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { TOOL_VERSION } from '../util/version.ts';

export const TFJS_MODEL_FILE = 'model.json';
export const TFJS_WEIGHTS_FILE = 'group1-shard1of1.bin';

export interface TfjsExport {
  /** The paths written, model.json last. */
  readonly files: readonly string[];
  /** The model's input and output layer names. */
  readonly input: string;
  readonly output: string;
}

export async function exportTfjs(stitched: GraphBackbone, output: string, outDir: string): Promise<TfjsExport> {
  const { modelTopology, weightSpecs, weightData } = toTfjsLayersModel(
    stitched.graph,
    stitched.weights,
    stitched.preprocessing.size,
    output,
  );
  const weightsPath = path.join(outDir, TFJS_WEIGHTS_FILE);
  const modelPath = path.join(outDir, TFJS_MODEL_FILE);
  const modelJson = {
    format: 'layers-model',
    generatedBy: `bottleneck v${TOOL_VERSION}`,
    convertedBy: null,
    modelTopology,
    weightsManifest: [{ paths: [TFJS_WEIGHTS_FILE], weights: weightSpecs }],
  };
  await writeFileAtomic(weightsPath, weightData);
  // model.json last: a folder with a model.json has the shard it names.
  await writeFileAtomic(modelPath, `${JSON.stringify(modelJson)}\n`);
  const config = modelTopology.model_config.config;
  return { files: [weightsPath, modelPath], input: config.input_layers[0][0], output: config.output_layers[0][0] };
}
