/**
 * `export --format teachable-machine`: a stitched backbone + head as the folder Teachable
 * Machine exports and `@teachablemachine/image`'s `load(modelURL, metadataURL)` reads:
 * model.json (a TF.js layers model, probabilities out), weights.bin, and metadata.json with the
 * labels in output order and the image size.
 *
 * Teachable Machine feeds its models its own input: the centre square of the image, resized to
 * imageSize, as pixel / 127 − 1 in RGB (capture() in @teachablemachine/image). When the backbone
 * was trained on another preprocessing (Keras' caffe mode: BGR minus the ImageNet mean, say),
 * a first layer turns Teachable Machine's input into the backbone's: a Rescaling per channel, or
 * for BGR backbones a 1×1 convolution whose kernel also swaps the channels.
 */
import path from 'node:path';
import type { GraphBackbone, Preprocessing } from '../backbones/backbone.ts';
import { toTfjsLayersModel } from '../backbones/keras-topology-writer.ts';
import type { LayerGraph, LayerNode } from '../backbones/layer-graph.ts';
import { teachableMachinePreprocessing, TM_BASE_OUTPUT_KEY, TM_METADATA_FILE, type TeachableMachineMetadata } from '../backbones/teachable-machine.ts';
import type { WeightTensor } from '../backbones/weights.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { UsageError } from '../util/errors.ts';
import { TOOL_VERSION } from '../util/version.ts';

export const TM_MODEL_FILE = 'model.json';
export const TM_WEIGHTS_FILE = 'weights.bin';
/** The adapter layer's name, when there is one. */
export const TM_ADAPTER = 'tm_input_adapter';

export interface TeachableMachineExport {
  readonly files: readonly string[];
  readonly input: string;
  readonly output: string;
  /** What the exported model expects: Teachable Machine's own input. */
  readonly preprocessing: Preprocessing;
}

export async function exportTeachableMachine(stitched: GraphBackbone, output: string, labels: readonly string[], outDir: string): Promise<TeachableMachineExport> {
  const [h, w] = stitched.preprocessing.size;
  if (h !== w) throw new UsageError(`cannot export a ${h}×${w} model for Teachable Machine, which feeds square images (imageSize); train the head at a square --size`);
  const { graph, weights } = withTeachableMachineInput(stitched);
  const { modelTopology, weightSpecs, weightData } = toTfjsLayersModel(graph, weights, [h, w], output);
  const modelJson = {
    format: 'layers-model',
    generatedBy: `bottleneck v${TOOL_VERSION}`,
    convertedBy: null,
    modelTopology,
    weightsManifest: [{ paths: [TM_WEIGHTS_FILE], weights: weightSpecs }],
  };
  const metadata: TeachableMachineMetadata = {
    tfjsVersion: '4.22.0',
    packageName: '@teachablemachine/image',
    packageVersion: '0.8.5',
    timeStamp: new Date().toISOString(),
    userMetadata: { exportedBy: `bottleneck v${TOOL_VERSION}`, backbone: stitched.id, [TM_BASE_OUTPUT_KEY]: baseOutput(graph, output) },
    modelName: `bottleneck-${path.basename(stitched.id).replace(/\.json$/, '')}`,
    labels: [...labels],
    imageSize: h,
  };
  const files = [path.join(outDir, TM_WEIGHTS_FILE), path.join(outDir, TM_METADATA_FILE), path.join(outDir, TM_MODEL_FILE)];
  await writeFileAtomic(files[0], weightData);
  await writeFileAtomic(files[1], `${JSON.stringify(metadata, null, 2)}\n`);
  // model.json last: a folder with a model.json has the weights it names.
  await writeFileAtomic(files[2], `${JSON.stringify(modelJson)}\n`);
  const config = modelTopology.model_config.config;
  return { files, input: config.input_layers[0][0], output: config.output_layers[0][0], preprocessing: teachableMachinePreprocessing([h, w]) };
}

/** The node the head reads: the input of the first dense layer on the way to the output. */
function baseOutput(graph: LayerGraph, output: string): string {
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  let node = byName.get(output)!;
  while (node.op === 'dense' && byName.get(node.inputs[0])?.op === 'dense') node = byName.get(node.inputs[0])!;
  return node.inputs[0];
}

/** The stitched graph fed Teachable Machine's input: an adapter after the input node, unless the backbone already takes it. */
export function withTeachableMachineInput(stitched: GraphBackbone): { graph: LayerGraph; weights: ReadonlyMap<string, WeightTensor> } {
  const p = stitched.preprocessing;
  const tm = teachableMachinePreprocessing(p.size);
  const same = p.channels === tm.channels && p.mean.every((m, c) => m === tm.mean[c]) && p.std.every((s, c) => s === tm.std[c]);
  if (same) return { graph: stitched.graph, weights: stitched.weights };
  const [input, ...rest] = stitched.graph.nodes;
  // x = pixel / 127 − 1, so pixel = 127 (x + 1) and the backbone wants (pixel − mean) / std.
  const source = p.channels === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  const scale = p.std.map((s) => tm.std[0] / s);
  const offset = p.mean.map((m, c) => (tm.mean[0] - m) / p.std[c]);
  const rewire = (n: LayerNode): LayerNode => ({ ...n, inputs: n.inputs.map((i) => (i === input.name ? TM_ADAPTER : i)) }) as LayerNode;
  const weights = new Map(stitched.weights);
  let adapter: LayerNode;
  if (p.channels === 'rgb') {
    adapter = { name: TM_ADAPTER, op: 'rescale', inputs: [input.name], scale, offset };
  } else {
    adapter = { name: TM_ADAPTER, op: 'conv2d', inputs: [input.name], filters: 3, kernel: [1, 1], stride: [1, 1], pad: 'valid', dilation: [1, 1], activation: 'linear' };
    const kernel = new Float32Array(9);
    source.forEach((from, c) => (kernel[c * 3 + from] = scale[c]));
    weights.set(`${TM_ADAPTER}.weight`, { shape: [3, 3, 1, 1], data: kernel });
    weights.set(`${TM_ADAPTER}.bias`, { shape: [3], data: Float32Array.from(offset) });
  }
  return { graph: { ...stitched.graph, nodes: [input, adapter, ...rest.map(rewire)] }, weights };
}
