/**
 * Writes Keras weights in the keras-applications layout (as in vgg16_weights_tf_dim_ordering_tf_kernels.h5):
 * root attribute `layer_names`; one group per layer with attribute `weight_names` and datasets
 * of those names: [`<layer>_W_1:0`, `<layer>_b_1:0`] for layers given as kernel + bias (VGG's
 * old files), `<layer>/<variable>:0` in Keras' own order for layers given as a variable list
 * (batch norm's gamma, beta, moving_mean, moving_variance, as newer files name them).
 * Weightless layers (pools, flatten) get a group with an empty `weight_names`. Tensors are in
 * Keras layout (conv HWIO, dense [in, out]), float32.
 */
import path from 'node:path';
import { hasWeights, type LayerGraph } from '../layer-graph.ts';
import { weightSlots } from '../weight-slots.ts';
import { kerasLayerOrder } from '../keras-order.ts';
import { canonicalInChannels, WeightsError, type WeightMap, type WeightTensor } from '../weights.ts';
import { elementCount } from './dtypes.ts';
import { writeAtomically } from '../../util/atomic-file.ts';
import { h5wasm, hdf5Reason, loadH5wasm, type Group } from './hdf5.ts';

export interface KerasH5Layer {
  readonly name: string;
  readonly kernel?: WeightTensor;
  readonly bias?: WeightTensor;
  /** Keras variables in Keras' order; written instead of kernel and bias when given. */
  readonly variables?: readonly { readonly name: string; readonly tensor: WeightTensor }[];
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
  for (const { name, kernel, bias, variables } of layers) {
    if (!name || name.includes('/')) throw new WeightsError(`${file}: bad layer name '${name}'`);
    if (seen.has(name)) throw new WeightsError(`${file}: duplicate layer name '${name}'`);
    seen.add(name);
    if (bias && !kernel) throw new WeightsError(`${file}: layer '${name}' has a bias but no kernel`);
    for (const t of [kernel, bias, ...(variables ?? []).map((v) => v.tensor)]) {
      if (t && t.data.length !== elementCount(t.shape)) {
        throw new WeightsError(`${file}: layer '${name}' has ${t.data.length} values for shape [${t.shape}]`);
      }
    }
  }
}

function writeLayer(group: Group, layer: KerasH5Layer): void {
  // Keras reads weights by their order in weight_names: kernel, then bias.
  const weights = layer.variables
    ? layer.variables.map((v) => ({ name: `${layer.name}/${v.name}:0`, tensor: v.tensor }))
    : [
        { name: `${layer.name}_W_1:0`, tensor: layer.kernel },
        { name: `${layer.name}_b_1:0`, tensor: layer.bias },
      ].filter((w): w is { name: string; tensor: WeightTensor } => w.tensor !== undefined);
  const names = weights.map((w) => w.name);
  group.create_attribute('weight_names', names, names.length > 0 ? null : [0], fixedStringDtype(names));
  for (const w of weights) {
    // `bn/gamma:0` is the dataset `gamma:0` in the subgroup `bn`, as h5py writes it.
    const slash = w.name.lastIndexOf('/');
    if (slash < 0) writeFloat32(group, w.name, w.tensor);
    else {
      const dir = w.name.slice(0, slash);
      const sub = group.get(dir);
      writeFloat32(sub instanceof h5wasm.Group ? sub : group.create_group(dir), w.name.slice(slash + 1), w.tensor);
    }
  }
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
 * layer `upTo` (default: the last) needs, in Keras' layer order, weightless ones as empty groups. This is how
 * the project writes weights users can load in Keras, and how tests make Keras-layout files.
 * Convolutions and dense layers with a bias keep the old `_W_1`/`_b_1` names VGG's files use;
 * every other weighted layer lists its variables as Keras does (`<layer>/<variable>:0`).
 */
export function toKerasLayers(graph: LayerGraph, weights: WeightMap, upTo?: string): KerasH5Layer[] {
  const layers: KerasH5Layer[] = [];
  // Keras' own layer order (load_weights goes by it); for a notop file, that of the model ending at upTo.
  const ordered = kerasLayerOrder(graph, upTo ?? graph.nodes[graph.nodes.length - 1].name).filter((n) => n.op !== 'input');
  for (const node of ordered) {
    if (!hasWeights(node)) {
      layers.push({ name: node.name });
    } else {
      const slots = weightSlots(node, canonicalInChannels(node, weights)).filter((s) => s.inKeras);
      const variables = slots.map((slot) => {
        if (slot.key === null) return { name: slot.keras, tensor: { shape: slot.shape, data: new Float32Array(1).fill(slot.fill ?? 0) } };
        const t = weights.get(slot.key);
        if (!t) throw new WeightsError(`no weights for layer '${node.name}' (${slot.key})`);
        return { name: slot.keras, tensor: slot.toKeras(t) };
      });
      const plain = (node.op === 'conv2d' && !node.depthwise) || node.op === 'dense';
      if (plain && variables.length === 2) layers.push({ name: node.name, kernel: variables[0].tensor, bias: variables[1].tensor });
      else layers.push({ name: node.name, variables });
    }
  }
  return layers;
}
