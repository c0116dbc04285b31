/**
 * Writes Keras weights in the keras-applications layout (as in vgg16_weights_tf_dim_ordering_tf_kernels.h5):
 * root attribute `layer_names`; one group per layer with attribute `weight_names` =
 * [`<layer>_W_1:0`, `<layer>_b_1:0`] and datasets of those names; weightless layers (pools,
 * flatten) get a group with an empty `weight_names`. Tensors are in Keras layout (conv HWIO,
 * dense [in, out]), float32.
 */
import path from 'node:path';
import { biasName, hasWeights, weightName, type LayerGraph } from '../layer-graph.ts';
import { transpose, WeightsError, type WeightMap, type WeightTensor } from '../weights.ts';
import { elementCount } from './dtypes.ts';
import { writeAtomically } from '../../util/atomic-file.ts';
import { h5wasm, hdf5Reason, loadH5wasm, type Group } from './hdf5.ts';

export interface KerasH5Layer {
  readonly name: string;
  readonly kernel?: WeightTensor;
  readonly bias?: WeightTensor;
}

export async function writeKerasH5(file: string, layers: readonly KerasH5Layer[]): Promise<void> {
  checkLayers(file, layers);
  await loadH5wasm();
  await writeAtomically(file, async (tmp) => {
    try {
      const h5 = new h5wasm.File(path.resolve(tmp), 'w');
      try {
        const names = layers.map((l) => l.name);
        h5.create_attribute('layer_names', names, null, fixedStringDtype(names));
        for (const layer of layers) writeLayer(h5.create_group(layer.name), layer);
      } finally {
        h5.close();
      }
    } catch (error) {
      throw new WeightsError(`${file}: cannot write HDF5: ${hdf5Reason(error)}`);
    }
  });
}

function checkLayers(file: string, layers: readonly KerasH5Layer[]): void {
  const seen = new Set<string>();
  for (const { name, kernel, bias } of layers) {
    if (!name || name.includes('/')) throw new WeightsError(`${file}: bad layer name '${name}'`);
    if (seen.has(name)) throw new WeightsError(`${file}: duplicate layer name '${name}'`);
    seen.add(name);
    if (bias && !kernel) throw new WeightsError(`${file}: layer '${name}' has a bias but no kernel`);
    for (const t of [kernel, bias]) {
      if (t && t.data.length !== elementCount(t.shape)) {
        throw new WeightsError(`${file}: layer '${name}' has ${t.data.length} values for shape [${t.shape}]`);
      }
    }
  }
}

function writeLayer(group: Group, layer: KerasH5Layer): void {
  // Keras reads weights by their order in weight_names: kernel, then bias.
  const weights = [
    { name: `${layer.name}_W_1:0`, tensor: layer.kernel },
    { name: `${layer.name}_b_1:0`, tensor: layer.bias },
  ].filter((w): w is { name: string; tensor: WeightTensor } => w.tensor !== undefined);
  const names = weights.map((w) => w.name);
  group.create_attribute('weight_names', names, names.length > 0 ? null : [0], fixedStringDtype(names));
  for (const w of weights) writeFloat32(group, w.name, w.tensor);
}

/** h5py stores Keras' name lists as fixed-length byte strings, sized to the longest. */
function fixedStringDtype(strings: readonly string[]): string {
  return `S${Math.max(1, ...strings.map((s) => Buffer.byteLength(s)))}`;
}

/** Tensors above this are written in row blocks, so the wasm heap never holds a whole 400 MB fc1. */
const BLOCK_BYTES = 16 << 20;
/** HDF5 chunk size for those big tensors; reads of whole blocks then skip the chunk cache. */
const CHUNK_BYTES = 4 << 20;

function writeFloat32(group: Group, name: string, t: WeightTensor): void {
  const shape = [...t.shape];
  if (t.data.byteLength <= BLOCK_BYTES || shape.length === 0) {
    group.create_dataset({ name, data: t.data, shape, dtype: '<f' });
    return;
  }
  // Only chunked datasets can start empty and grow, which is what lets rows be written in blocks.
  const [rows, ...rest] = shape;
  const rowElements = elementCount(rest);
  const chunkRows = Math.max(1, Math.floor(CHUNK_BYTES / (rowElements * 4)));
  const blockRows = chunkRows * Math.max(1, Math.floor(BLOCK_BYTES / CHUNK_BYTES));
  const dataset = group.create_dataset({
    name,
    data: new Float32Array(0),
    shape: [0, ...rest],
    maxshape: shape,
    chunks: [Math.min(chunkRows, rows), ...rest],
    dtype: '<f',
  });
  dataset.resize(shape);
  for (let row = 0; row < rows; row += blockRows) {
    const end = Math.min(rows, row + blockRows);
    dataset.write_slice([[row, end], ...rest.map((): [] => [])], t.data.subarray(row * rowElements, end * rowElements));
  }
}

/**
 * A graph's canonical weights (OIHW / [out, in]) as Keras h5 layers (HWIO / [in, out]), every
 * layer up to and including `upTo` (default: all), weightless ones as empty groups. This is how
 * the project writes weights users can load in Keras, and how tests make Keras-layout files.
 */
export function toKerasLayers(graph: LayerGraph, weights: WeightMap, upTo?: string): KerasH5Layer[] {
  const layers: KerasH5Layer[] = [];
  for (const node of graph.nodes.slice(1)) {
    if (!hasWeights(node)) {
      layers.push({ name: node.name });
    } else {
      const w = weights.get(weightName(node));
      const b = weights.get(biasName(node));
      if (!w || !b) throw new WeightsError(`no weights for layer '${node.name}'`);
      layers.push({ name: node.name, kernel: node.op === 'conv2d' ? transpose(w, [2, 3, 1, 0]) : transpose(w, [1, 0]), bias: b });
    }
    if (node.name === upTo) break;
  }
  return layers;
}
