/**
 * Keras' HDF5 weights: `model.save_weights('x.h5')`, the keras-applications files such as
 * vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5, and full `model.save('x.h5')` files, which
 * hold the same layout under a `model_weights` group.
 *
 * Layout: the root attribute `layer_names` lists the layers in order; each layer's group has a
 * `weight_names` attribute listing its datasets, relative to the group, in the order Keras
 * assigns them to the layer's variables: `block1_conv1_W_1:0`, `block1_conv1_b_1:0` in old files,
 * `block1_conv1/kernel:0`, `block1_conv1/bias:0` in newer ones. Names alone do not always say
 * which is the kernel, so, like Keras, this reader goes by order.
 */
import { WeightsError, type WeightSource, type WeightTensor } from '../weights.ts';
import { decodeFloat16, decodeFloat32, decodeFloat64, elementCount } from './dtypes.ts';
import {
  assertHdf5File,
  h5wasm,
  H5T_FLOAT,
  hdf5Reason,
  isDataset,
  isGroup,
  loadH5wasm,
  stringList,
  type Dataset,
  type Group,
  type H5File,
  type H5Module,
} from './hdf5.ts';

/** Tensors `<layer>/kernel` (conv HWIO, dense [in, out]) and `<layer>/bias`: convention 'keras'. */
export async function readKerasH5(path: string): Promise<WeightSource> {
  await assertHdf5File(path);
  const module = await loadH5wasm();
  let file: H5File;
  try {
    file = new h5wasm.File(path, 'r');
  } catch (error) {
    throw new WeightsError(`${path}: cannot open HDF5 file: ${hdf5Reason(error)}`);
  }
  try {
    const tensors = readWeights(module, findLayers(file, path), path);
    return { convention: 'keras', tensors, files: [path] };
  } catch (error) {
    if (error instanceof WeightsError) throw error;
    throw new WeightsError(`${path}: cannot read Keras weights: ${hdf5Reason(error)}`);
  } finally {
    file.close();
  }
}

/** The group holding `layer_names` (the root for weight files, `model_weights` for full saves), and the names. */
function findLayers(file: H5File, path: string): { root: Group; layers: string[] } {
  for (const root of [file, file.get('model_weights')]) {
    const layers = isGroup(root) ? readStringListAttr(root, 'layer_names', path) : undefined;
    if (isGroup(root) && layers) return { root, layers };
  }
  if (isGroup(file.get('layers')) && isGroup(file.get('vars'))) {
    throw new WeightsError(
      `${path}: this is a Keras 3 '.weights.h5' file, which is not supported; save the model with ` +
        `model.save('model.h5') (Keras' legacy HDF5 format, which Keras 3 still writes) ` +
        'or convert it to a TF.js folder',
    );
  }
  throw new WeightsError(
    `${path}: not a Keras weights file: no 'layer_names' attribute at its root or in 'model_weights'`,
  );
}

function readWeights(
  module: H5Module,
  { root, layers }: { root: Group; layers: string[] },
  path: string,
): Map<string, WeightTensor> {
  const tensors = new Map<string, WeightTensor>();
  for (const layer of layers) {
    const group = root.get(layer);
    if (!isGroup(group)) throw new WeightsError(`${path}: layer '${layer}' is in layer_names but has no group`);
    const weightNames = readStringListAttr(group, 'weight_names', path) ?? [];
    for (const { stored, name } of tensorNames(layer, weightNames)) {
      const dataset = group.get(stored);
      if (!isDataset(dataset)) {
        throw new WeightsError(
          `${path}: layer '${layer}' lists weight '${stored}', which is not a dataset in its group`,
        );
      }
      // Normalization's sample count (an int64) only matters to adapt(), never to inference.
      if (name.endsWith('/count')) continue;
      if (tensors.has(name)) throw new WeightsError(`${path}: two weights map to the tensor name '${name}'`);
      tensors.set(name, readFloatDataset(module, dataset, path));
    }
  }
  return tensors;
}

/**
 * Names each stored weight `<owner>/<variable>`, the owner being the layer. Newer files name
 * the variable (`bn/gamma:0`, `conv/kernel:0`), and a known Keras variable name is kept; old
 * files (`block1_conv1_W_1:0`, `block1_conv1_b_1:0`) only order them, kernel then bias, which is
 * how Keras itself reads them. A nested model saved as one layer (Sequential([VGG16(...),
 * Dense(...)])) stores all its inner layers' weights in one group, named `block1_conv1/kernel:0`
 * and so on; then each inner layer owns its own weights.
 */
export function tensorNames(layer: string, weightNames: readonly string[]): { stored: string; name: string }[] {
  const parsed = weightNames.map((stored) => {
    const parts = stored.replace(/:\d+$/, '').split('/');
    return { stored, owner: parts.length > 1 ? parts[parts.length - 2] : layer, leaf: parts[parts.length - 1] };
  });
  // A single owner is the layer itself, even when its variables were named before a rename.
  const nested = new Set(parsed.map((p) => p.owner)).size > 1;
  const seen = new Map<string, number>();
  return parsed.map(({ stored, owner: inner, leaf }) => {
    const owner = nested ? inner : layer;
    const index = seen.get(owner) ?? 0;
    seen.set(owner, index + 1);
    return { stored, name: `${owner}/${KERAS_VARIABLES.has(leaf) ? leaf : (['kernel', 'bias'][index] ?? leaf)}` };
  });
}

/** Variable names Keras layers give their weights. */
const KERAS_VARIABLES = new Set(['kernel', 'bias', 'depthwise_kernel', 'pointwise_kernel', 'gamma', 'beta', 'moving_mean', 'moving_variance', 'mean', 'variance', 'count']);

/**
 * Keras 2 splits attributes over 64 KB (models with many layers) into `name0`, `name1`, …
 * Returns undefined when the attribute is absent.
 */
function readStringListAttr(group: Group, name: string, path: string): string[] | undefined {
  const attrs = group.attrs;
  const parts: string[] = [];
  if (name in attrs) parts.push(name);
  else while (`${name}${parts.length}` in attrs) parts.push(`${name}${parts.length}`);
  if (parts.length === 0) return undefined;
  return parts.flatMap((part) => {
    const list = stringList(attrs[part]);
    if (!list) throw new WeightsError(`${path}: attribute '${part}' of '${group.path}' is not a list of strings`);
    return list;
  });
}

/** Rows are read in blocks of about this size, so the wasm heap stays small for VGG16's 400 MB fc1. */
const BLOCK_BYTES = 16 << 20;

const DECODE_BY_SIZE: Record<number, (bytes: Uint8Array) => Float32Array> = {
  2: decodeFloat16,
  4: decodeFloat32,
  8: decodeFloat64,
};

/**
 * Reads a float dataset as float32, block by block through h5wasm's low-level reader: the
 * `Dataset.value` getter refuses float16 and reads a whole dataset into the wasm heap at once,
 * which then never shrinks. The reader converts to little-endian, not to another float size.
 */
function readFloatDataset(module: H5Module, dataset: Dataset, path: string): WeightTensor {
  const { type, size, shape } = dataset.metadata;
  const decode = DECODE_BY_SIZE[size];
  if (type !== H5T_FLOAT || !decode) {
    throw new WeightsError(
      `${path}: weight '${dataset.path}' is not a float16/32/64 dataset (dtype ${String(dataset.dtype)})`,
    );
  }
  if (!shape) throw new WeightsError(`${path}: weight '${dataset.path}' has no data`);
  const data = new Float32Array(elementCount(shape));
  if (data.length === 0) return { shape, data };
  const rank = shape.length;
  const rows = rank === 0 ? 1 : shape[0];
  const rowElements = data.length / rows;
  const rowsPerBlock = Math.max(1, Math.min(rows, Math.floor(BLOCK_BYTES / (rowElements * size))));
  const pointer = module._malloc(rowsPerBlock * rowElements * size);
  if (pointer === 0) throw new WeightsError(`${path}: out of wasm memory reading '${dataset.path}'`);
  try {
    for (let row = 0; row < rows; row += rowsPerBlock) {
      const count = Math.min(rowsPerBlock, rows - row);
      const bytes = count * rowElements * size;
      if (rank === 0) {
        module.get_dataset_data(dataset.file_id, dataset.path, null, null, null, BigInt(pointer));
      } else {
        module.get_dataset_data(
          dataset.file_id,
          dataset.path,
          [BigInt(count), ...shape.slice(1).map(BigInt)],
          [BigInt(row), ...shape.slice(1).map(() => 0n)],
          shape.map(() => 1n),
          BigInt(pointer),
        );
      }
      // HEAPU8 is re-read after each call: the heap may have grown and moved.
      data.set(decode(module.HEAPU8.subarray(pointer, pointer + bytes)), row * rowElements);
    }
  } finally {
    module._free(pointer);
  }
  return { shape, data };
}
