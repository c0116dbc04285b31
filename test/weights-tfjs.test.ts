import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTfjsModel } from '../src/backbones/weights/tfjs-folder.ts';
import { WeightsError } from '../src/backbones/weights.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sharedModels = path.resolve(repoRoot, '../shared/models');
const noShared = !existsSync(sharedModels);

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-tfjs-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A model folder with the given manifest and shard contents. */
async function writeModel(name: string, weightsManifest: unknown, shards: Record<string, Uint8Array> = {}): Promise<string> {
  const dir = path.join(tmp, name);
  await mkdir(dir, { recursive: true });
  const modelJson = path.join(dir, 'model.json');
  await writeFile(modelJson, JSON.stringify({ format: 'layers-model', modelTopology: { config: {} }, weightsManifest }));
  for (const [file, bytes] of Object.entries(shards)) await writeFile(path.join(dir, file), bytes);
  return modelJson;
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe.skipIf(noShared)(`real models in ${sharedModels} (skipped when ../shared is absent)`, () => {
  it('reads tinyvgg', async () => {
    const modelJson = path.join(sharedModels, 'tinyvgg/model.json');
    const { topology, format, source } = await readTfjsModel(modelJson);
    expect(format).toBe('layers-model');
    expect(topology).toMatchObject({ model_config: { class_name: 'Sequential' } });
    expect(source.convention).toBe('keras');
    expect(source.files).toEqual([modelJson, path.join(sharedModels, 'tinyvgg/group1-shard1of1.bin')]);
    expect([...source.tensors.keys()]).toEqual([
      'conv_1_1/kernel', 'conv_1_1/bias', 'conv_1_2/kernel', 'conv_1_2/bias', 'conv_2_1/kernel',
      'conv_2_1/bias', 'conv_2_2/kernel', 'conv_2_2/bias', 'output/kernel', 'output/bias',
    ]);
    expect(source.tensors.get('conv_1_1/kernel')!.shape).toEqual([3, 3, 3, 10]);
    expect(source.tensors.get('output/kernel')!.shape).toEqual([1690, 10]);
    // The first and last floats of the shard.
    const shard = await readFile(path.join(sharedModels, 'tinyvgg/group1-shard1of1.bin'));
    expect(source.tensors.get('conv_1_1/kernel')!.data[0]).toBe(shard.readFloatLE(0));
    expect(source.tensors.get('output/bias')!.data[9]).toBe(shard.readFloatLE(shard.length - 4));
  });

  describe('the genuine Keras VGG16 manifest with synthetic shards of the right sizes', () => {
    let modelJson: string;
    // The value written at float index i of the concatenated shards.
    const pattern = (i: number) => i % 65521;

    beforeAll(async () => {
      const dir = path.join(tmp, 'keras-vgg16');
      await mkdir(dir);
      modelJson = path.join(dir, 'model.json');
      await copyFile(path.join(sharedModels, 'keras-vgg16/model.json'), modelJson);
      const { weightsManifest } = JSON.parse(await readFile(modelJson, 'utf8')) as {
        weightsManifest: { paths: string[] }[];
      };
      // The converter cuts 4 MiB shards: 131 full ones and a shorter last one, 553,430,176 bytes in all.
      const totalFloats = 553_430_176 / 4;
      const shardFloats = (4 << 20) / 4;
      const block = new Float32Array(shardFloats);
      const paths = weightsManifest[0].paths;
      expect(paths).toHaveLength(132);
      for (const [s, file] of paths.entries()) {
        const first = s * shardFloats;
        const count = Math.min(shardFloats, totalFloats - first);
        for (let i = 0; i < count; i++) block[i] = pattern(first + i);
        const handle = await open(path.join(dir, file), 'w');
        await handle.write(bytesOf(block.subarray(0, count)));
        await handle.close();
      }
    });

    it('loads 32 tensors with Keras names and shapes, in order, with their own bytes', async () => {
      const { source } = await readTfjsModel(modelJson);
      const shapes = [...source.tensors].map(([name, t]) => `${name} [${t.shape}]`);
      expect(shapes).toHaveLength(32);
      expect(shapes.slice(0, 4)).toEqual([
        'block1_conv1/kernel [3,3,3,64]',
        'block1_conv1/bias [64]',
        'block1_conv2/kernel [3,3,64,64]',
        'block1_conv2/bias [64]',
      ]);
      expect(shapes.slice(-6)).toEqual([
        'fc1/kernel [25088,4096]',
        'fc1/bias [4096]',
        'fc2/kernel [4096,4096]',
        'fc2/bias [4096]',
        'predictions/kernel [4096,1000]',
        'predictions/bias [1000]',
      ]);
      expect(source.files).toHaveLength(133);
      // Every tensor starts where the previous one ended, across shard boundaries.
      let offset = 0;
      for (const [name, t] of source.tensors) {
        const n = t.data.length;
        const probes = [0, Math.floor(n / 2), n - 1];
        expect(probes.map((i) => t.data[i]), name).toEqual(probes.map((i) => pattern(offset + i)));
        offset += n;
      }
      expect(offset * 4).toBe(553_430_176);
    });

    it('names the shard that is missing', async () => {
      const shard = path.join(path.dirname(modelJson), 'group1-shard77of132.bin');
      const moved = `${shard}.moved`;
      await copyFile(shard, moved);
      await rm(shard);
      try {
        await expect(readTfjsModel(modelJson)).rejects.toThrow(
          `${modelJson}: weight shard group1-shard77of132.bin (group 1) cannot be read: no such file (${shard})`,
        );
      } finally {
        await copyFile(moved, shard);
        await rm(moved);
      }
    });
  });
});

describe('readTfjsModel on synthetic folders', () => {
  it('reads several groups, uint8/uint16/float16 quantization, and registers prefixed names by their last two segments', async () => {
    const f32 = Float32Array.from([1.5, -2, 3, 4]);
    const u8 = Uint8Array.from([0, 1, 255]);
    const u16 = Uint16Array.from([0, 1000]);
    const f16 = Uint16Array.from([0x3c00, 0xc000]);
    const manifest = [
      {
        paths: ['a1.bin', 'a2.bin'],
        weights: [
          { name: 'vgg16/block1_conv1/kernel', shape: [1, 1, 1, 4], dtype: 'float32' },
          { name: 'q8/kernel', shape: [3], dtype: 'float32', quantization: { dtype: 'uint8', scale: 0.5, min: -1 } },
        ],
      },
      {
        paths: ['b.bin'],
        weights: [
          { name: 'q16/bias', shape: [2], dtype: 'float32', quantization: { dtype: 'uint16', scale: 0.001, min: 0 } },
          { name: 'half/bias', shape: [2], dtype: 'float32', quantization: { dtype: 'float16' } },
          { name: 'x/dup/kernel', shape: [], dtype: 'float32' },
          { name: 'y/dup/kernel', shape: [], dtype: 'float32' },
        ],
      },
    ];
    const groupA = Buffer.concat([bytesOf(f32), u8]);
    const groupB = Buffer.concat([bytesOf(u16), bytesOf(f16), bytesOf(Float32Array.from([7, 8]))]);
    // Group A is split mid-tensor, as the converter does at its shard size.
    const shards = { 'a1.bin': groupA.subarray(0, 6), 'a2.bin': groupA.subarray(6), 'b.bin': groupB };
    const modelJson = await writeModel('quantized', manifest, shards);
    const { source } = await readTfjsModel(modelJson);
    expect([...source.tensors.get('vgg16/block1_conv1/kernel')!.data]).toEqual([...f32]);
    expect(source.tensors.get('block1_conv1/kernel')).toBe(source.tensors.get('vgg16/block1_conv1/kernel'));
    expect([...source.tensors.get('q8/kernel')!.data]).toEqual([-1, -0.5, 126.5]);
    expect(source.tensors.get('q16/bias')!.data[1]).toBeCloseTo(1, 5);
    expect([...source.tensors.get('half/bias')!.data]).toEqual([1, -2]);
    // Two weights share the suffix dup/kernel, so neither is registered under it.
    expect(source.tensors.has('dup/kernel')).toBe(false);
    expect([...source.tensors.get('y/dup/kernel')!.data]).toEqual([8]);
  });

  async function errorOf(modelJson: string): Promise<string> {
    const error = await readTfjsModel(modelJson).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WeightsError);
    expect((error as Error).message).toContain(modelJson);
    return (error as Error).message;
  }

  const threeShards = [{ paths: ['s1.bin', 's2.bin', 's3.bin'], weights: [{ name: 'w/kernel', shape: [10], dtype: 'float32' }] }];
  /** Zero-filled s1.bin, s2.bin, … of the given sizes. */
  const shardsOf = (...sizes: number[]) =>
    Object.fromEntries(sizes.map((size, i) => [`s${i + 1}.bin`, new Uint8Array(size)]));

  it('names a short shard', async () => {
    const modelJson = await writeModel('short', threeShards, shardsOf(16, 12, 8));
    expect(await errorOf(modelJson)).toMatch(
      /need 40 bytes but the 3 shard\(s\) hold 36: shard s2.bin looks short \(12 bytes; the others hold up to 16\)/,
    );
  });

  it('names a truncated last shard', async () => {
    const modelJson = await writeModel('short-last', threeShards, shardsOf(16, 16, 8));
    await truncate(path.join(path.dirname(modelJson), 's3.bin'), 4);
    expect(await errorOf(modelJson)).toMatch(/shard s3.bin looks short \(4 bytes/);
  });

  it('rejects shards holding more than the manifest describes', async () => {
    const modelJson = await writeModel('long', threeShards, shardsOf(16, 16, 16));
    expect(await errorOf(modelJson)).toMatch(/the shards hold more than the manifest describes/);
  });

  it('rejects unsupported dtypes and quantizations', async () => {
    const intWeight = await writeModel('int', [{ paths: [], weights: [{ name: 'steps', shape: [], dtype: 'int32' }] }]);
    expect(await errorOf(intWeight)).toMatch(/weight 'steps' has dtype "int32"; only float32 weights are supported/);
    const q = { dtype: 'int4', scale: 1, min: 0 };
    const odd = await writeModel('int4', [{ paths: [], weights: [{ name: 'w', shape: [], dtype: 'float32', quantization: q }] }]);
    expect(await errorOf(odd)).toMatch(/weight 'w' has quantization .*"int4".*; supported: float16, and uint8\/uint16/);
  });

  it('rejects model.json files that are not TF.js models', async () => {
    const dir = path.join(tmp, 'not-models');
    await mkdir(dir);
    const garbled = path.join(dir, 'garbled.json');
    await writeFile(garbled, '{"modelTopology": ');
    expect(await errorOf(garbled)).toMatch(/not valid JSON/);
    const other = path.join(dir, 'package.json');
    await writeFile(other, '{"name": "x"}');
    expect(await errorOf(other)).toMatch(/not a TF.js model.json \(needs 'modelTopology' and 'weightsManifest'\)/);
    const escaping = await writeModel('escape', [{ paths: ['../secret.bin'], weights: [] }]);
    expect(await errorOf(escaping)).toMatch(/bad weightsManifest: group 0 has shard path "..\/secret.bin"/);
    expect(await errorOf(path.join(dir, 'missing.json'))).toMatch(/cannot read TF.js model.json: no such file/);
  });
});
