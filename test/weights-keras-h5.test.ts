import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { h5wasm, loadH5wasm, type Group } from '../src/backbones/weights/hdf5.ts';
import { writeKerasH5 } from '../src/backbones/weights/keras-h5-writer.ts';
import { readKerasH5, tensorNames } from '../src/backbones/weights/keras-h5.ts';
import { WeightsError, type WeightTensor } from '../src/backbones/weights.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-keras-h5-'));
  await loadH5wasm();
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const ramp = (n: number, scale = 1) => Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale);
const tensor = (shape: number[], scale = 1): WeightTensor => ({ shape, data: ramp(shape.reduce((a, b) => a * b, 1), scale) });
const bytesOf = (data: Float32Array) => Buffer.from(data.buffer, data.byteOffset, data.byteLength);

/** Writes an h5 file by hand with h5wasm, as h5py would lay it out for Keras. */
function writeH5(file: string, build: (root: Group) => void): void {
  const h5 = new h5wasm.File(file, 'w');
  try {
    build(h5);
  } finally {
    h5.close();
  }
}

const names = (list: string[]) => [list, null, `S${Math.max(1, ...list.map((s) => s.length))}`] as const;

describe('readKerasH5', () => {
  it('reads the keras-applications layout (X_W_1:0, X_b_1:0) that writeKerasH5 produces', async () => {
    const file = path.join(tmp, 'old-style.h5');
    const conv = { kernel: tensor([3, 3, 3, 4]), bias: tensor([4], 0.5) };
    const dense = { kernel: tensor([8, 2], 0.25), bias: tensor([2]) };
    await writeKerasH5(file, [
      { name: 'block1_conv1', ...conv },
      { name: 'block1_pool' },
      { name: 'flatten' },
      { name: 'fc1', ...dense },
    ]);
    expect(await readdir(tmp)).not.toContain(expect.stringMatching(/\.tmp-/));
    const source = await readKerasH5(file);
    expect(source.convention).toBe('keras');
    expect(source.files).toEqual([file]);
    expect([...source.tensors.keys()]).toEqual(['block1_conv1/kernel', 'block1_conv1/bias', 'fc1/kernel', 'fc1/bias']);
    expect(source.tensors.get('block1_conv1/kernel')).toEqual(conv.kernel);
    expect(source.tensors.get('block1_conv1/bias')).toEqual(conv.bias);
    expect(source.tensors.get('fc1/kernel')).toEqual(dense.kernel);
  });

  it('reads newer files: nested X/kernel:0 datasets, float64 converted, empty weight_names as h5py writes them', async () => {
    const file = path.join(tmp, 'new-style.h5');
    writeH5(file, (root) => {
      root.create_attribute('layer_names', ...names(['conv', 'pool', 'dense']));
      root.create_attribute('backend', 'tensorflow');
      root.create_attribute('keras_version', '2.12.0');
      const conv = root.create_group('conv');
      conv.create_attribute('weight_names', ...names(['conv/kernel:0', 'conv/bias:0']));
      const inner = conv.create_group('conv');
      inner.create_dataset({ name: 'kernel:0', data: ramp(2 * 2 * 1 * 3), shape: [2, 2, 1, 3], dtype: '<f' });
      inner.create_dataset({ name: 'bias:0', data: new Float64Array([0.1, 0.2, 0.3]), shape: [3], dtype: '<d' });
      // Keras writes np.asarray([]) for a layer without weights: an empty float64 array.
      root.create_group('pool').create_attribute('weight_names', new Float64Array(0), [0], '<d');
      const dense = root.create_group('dense');
      dense.create_attribute('weight_names', ...names(['dense/kernel:0', 'dense/bias:0']));
      const d = dense.create_group('dense');
      d.create_dataset({ name: 'kernel:0', data: ramp(6), shape: [3, 2], dtype: '<f' });
      d.create_dataset({ name: 'bias:0', data: new Float32Array([1, 2]), shape: [2], dtype: '<f' });
    });
    const source = await readKerasH5(file);
    expect([...source.tensors.keys()]).toEqual(['conv/kernel', 'conv/bias', 'dense/kernel', 'dense/bias']);
    expect(source.tensors.get('conv/kernel')).toEqual({ shape: [2, 2, 1, 3], data: ramp(12) });
    expect(source.tensors.get('conv/bias')).toEqual({ shape: [3], data: Float32Array.from([0.1, 0.2, 0.3]) });
    expect(source.tensors.get('dense/kernel')!.shape).toEqual([3, 2]);
  });

  it('reads full-model saves, whose weights sit under model_weights', async () => {
    const file = path.join(tmp, 'full-model.h5');
    writeH5(file, (root) => {
      root.create_attribute('model_config', '{"class_name": "Sequential"}');
      const weights = root.create_group('model_weights');
      weights.create_attribute('layer_names', ...names(['input_1', 'fc']));
      weights.create_group('input_1').create_attribute('weight_names', [], [0], 'S1');
      const fc = weights.create_group('fc');
      fc.create_attribute('weight_names', ...names(['fc/kernel:0', 'fc/bias:0']));
      const inner = fc.create_group('fc');
      inner.create_dataset({ name: 'kernel:0', data: ramp(4), shape: [2, 2], dtype: '<f' });
      inner.create_dataset({ name: 'bias:0', data: new Float32Array([5, 6]), shape: [2], dtype: '<f' });
    });
    const source = await readKerasH5(file);
    expect([...source.tensors.keys()]).toEqual(['fc/kernel', 'fc/bias']);
    expect([...source.tensors.get('fc/bias')!.data]).toEqual([5, 6]);
  });

  it('names the inner layers of a nested model saved as one layer', async () => {
    const file = path.join(tmp, 'nested.h5');
    writeH5(file, (root) => {
      root.create_attribute('layer_names', ...names(['vgg16', 'head']));
      const vgg = root.create_group('vgg16');
      const list = ['block1_conv1/kernel:0', 'block1_conv1/bias:0', 'block1_conv2/kernel:0', 'block1_conv2/bias:0'];
      vgg.create_attribute('weight_names', ...names(list));
      for (const layer of ['block1_conv1', 'block1_conv2']) {
        const g = vgg.create_group(layer);
        g.create_dataset({ name: 'kernel:0', data: ramp(4), shape: [1, 1, 2, 2], dtype: '<f' });
        g.create_dataset({ name: 'bias:0', data: ramp(2), shape: [2], dtype: '<f' });
      }
      const head = root.create_group('head');
      head.create_attribute('weight_names', ...names(['head_W_1:0']));
      head.create_dataset({ name: 'head_W_1:0', data: ramp(2), shape: [2, 1], dtype: '<f' });
    });
    const source = await readKerasH5(file);
    expect([...source.tensors.keys()]).toEqual([
      'block1_conv1/kernel',
      'block1_conv1/bias',
      'block1_conv2/kernel',
      'block1_conv2/bias',
      'head/kernel',
    ]);
  });

  it('reads layer_names that Keras split into layer_names0, layer_names1 (attributes over 64 KB)', async () => {
    const file = path.join(tmp, 'split-attr.h5');
    writeH5(file, (root) => {
      root.create_attribute('layer_names0', ...names(['a']));
      root.create_attribute('layer_names1', ...names(['b']));
      for (const layer of ['a', 'b']) {
        const g = root.create_group(layer);
        g.create_attribute('weight_names', ...names([`${layer}_W:0`]));
        g.create_dataset({ name: `${layer}_W:0`, data: ramp(2), shape: [2], dtype: '<f' });
      }
    });
    expect([...(await readKerasH5(file)).tensors.keys()]).toEqual(['a/kernel', 'b/kernel']);
  });

  it('round-trips tensors larger than one read/write block (chunked datasets)', async () => {
    const file = path.join(tmp, 'big.h5');
    const kernel = tensor([6000, 1000], 1e-3); // 24 MB: several 16 MB blocks, a partial last one
    await writeKerasH5(file, [{ name: 'fc1', kernel, bias: tensor([1000]) }]);
    const read = (await readKerasH5(file)).tensors.get('fc1/kernel')!;
    expect(read.shape).toEqual([6000, 1000]);
    expect(bytesOf(read.data).equals(bytesOf(kernel.data))).toBe(true);
  });
});

describe('readKerasH5 errors name the file and the reason', () => {
  async function errorOf(file: string): Promise<Error> {
    const error = await readKerasH5(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WeightsError);
    expect((error as Error).message).toContain(file);
    return error as Error;
  }

  it('rejects a file that is not HDF5', async () => {
    const file = path.join(tmp, 'not-h5.h5');
    await writeFile(file, '<html>404 Not Found</html>');
    expect((await errorOf(file)).message).toMatch(/not an HDF5 file/);
  });

  it('rejects a missing file', async () => {
    expect((await errorOf(path.join(tmp, 'missing.h5'))).message).toMatch(/no such file/);
  });

  it('rejects an HDF5 file without layer_names', async () => {
    const file = path.join(tmp, 'no-layers.h5');
    writeH5(file, (root) => root.create_dataset({ name: 'x', data: ramp(2), dtype: '<f' }));
    expect((await errorOf(file)).message).toMatch(/not a Keras weights file: no 'layer_names' attribute/);
  });

  it('recognises a Keras 3 .weights.h5 file', async () => {
    const file = path.join(tmp, 'model.weights.h5');
    writeH5(file, (root) => {
      root.create_group('layers');
      root.create_group('vars');
    });
    expect((await errorOf(file)).message).toMatch(/Keras 3 '.weights.h5' file, which is not supported/);
  });

  it('rejects a weight listed in weight_names but absent', async () => {
    const file = path.join(tmp, 'missing-weight.h5');
    writeH5(file, (root) => {
      root.create_attribute('layer_names', ...names(['conv']));
      root.create_group('conv').create_attribute('weight_names', ...names(['conv_W_1:0']));
    });
    expect((await errorOf(file)).message).toMatch(/layer 'conv' lists weight 'conv_W_1:0', which is not a dataset/);
  });

  it('rejects integer datasets', async () => {
    const file = path.join(tmp, 'int-weight.h5');
    writeH5(file, (root) => {
      root.create_attribute('layer_names', ...names(['conv']));
      const g = root.create_group('conv');
      g.create_attribute('weight_names', ...names(['conv_W_1:0']));
      g.create_dataset({ name: 'conv_W_1:0', data: new Int32Array([1, 2]), dtype: '<i' });
    });
    expect((await errorOf(file)).message).toMatch(/weight '\/conv\/conv_W_1:0' is not a float16\/32\/64 dataset/);
  });
});

describe('tensorNames', () => {
  it('goes by order within a layer, whatever the stored names say', () => {
    expect(tensorNames('renamed', ['conv/kernel:0', 'conv/bias:0']).map((t) => t.name)).toEqual(['renamed/kernel', 'renamed/bias']);
    expect(tensorNames('c', ['c_W_1:0', 'c_b_1:0']).map((t) => t.name)).toEqual(['c/kernel', 'c/bias']);
  });

  it('keeps the Keras variable names batch norm and depthwise convolutions store', () => {
    const bn = ['bn/gamma:0', 'bn/beta:0', 'bn/moving_mean:0', 'bn/moving_variance:0'];
    expect(tensorNames('bn', bn).map((t) => t.name)).toEqual(['bn/gamma', 'bn/beta', 'bn/moving_mean', 'bn/moving_variance']);
    expect(tensorNames('dw', ['dw/depthwise_kernel:0']).map((t) => t.name)).toEqual(['dw/depthwise_kernel']);
  });
});

describe('writeKerasH5', () => {
  it('refuses bad layer lists before writing anything', async () => {
    const dir = await mkdtemp(path.join(tmp, 'refuse-'));
    const file = path.join(dir, 'x.h5');
    await expect(writeKerasH5(file, [{ name: 'a' }, { name: 'a' }])).rejects.toThrow(/duplicate layer name 'a'/);
    await expect(writeKerasH5(file, [{ name: 'a', bias: tensor([2]) }])).rejects.toThrow(/has a bias but no kernel/);
    await expect(writeKerasH5(file, [{ name: 'a', kernel: { shape: [3], data: ramp(2) } }])).rejects.toThrow(/2 values for shape \[3\]/);
    expect(await readdir(dir)).toEqual([]);
  });
});
