import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors } from '../src/backbones/weights/safetensors.ts';
import { WeightsError, type WeightTensor } from '../src/backbones/weights.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sharedModels = path.resolve(repoRoot, '../shared/models');
const noShared = !existsSync(sharedModels);

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-safetensors-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A safetensors file from a header object and the raw data section, for formats the writer does not produce. */
function rawSafetensors(header: unknown, data: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

const sum = (data: Float32Array) => data.reduce((s, v) => s + v, 0);
const bytesOf = (data: Float32Array) => Buffer.from(data.buffer, data.byteOffset, data.byteLength);

describe.skipIf(noShared)(`real files in ${sharedModels} (skipped when ../shared is absent)`, () => {
  it('reads squeezenet1_1 with its metadata', async () => {
    const file = path.join(sharedModels, 'squeezenet1_1.safetensors');
    const { source, metadata } = await readSafetensors(file);
    expect(source.convention).toBe('canonical');
    expect(source.files).toEqual([file]);
    expect(source.tensors.size).toBe(52);
    const conv1 = source.tensors.get('conv1.weight')!;
    expect(conv1.shape).toEqual([64, 3, 3, 3]);
    // Reference values computed with numpy from the same file.
    expect(conv1.data[0]).toBe(Math.fround(0.2572346329689026));
    expect(sum(conv1.data)).toBeCloseTo(-2.9973132426930533, 3);
    expect(source.tensors.get('fire2/squeeze1x1.weight')!.shape).toEqual([16, 64, 1, 1]);
    expect(metadata.source).toBe('SqueezeNet v1.1');
    expect(metadata.num_params).toBe('1235496');
  });

  it('reads googlenet-bvlc', async () => {
    const { source } = await readSafetensors(path.join(sharedModels, 'googlenet-bvlc.safetensors'));
    expect(source.tensors.size).toBe(116);
    const conv1 = source.tensors.get('conv1/7x7_s2.weight')!;
    expect(conv1.shape).toEqual([64, 3, 7, 7]);
    expect(conv1.data[0]).toBe(Math.fround(0.08820479363203049));
    expect(sum(conv1.data)).toBeCloseTo(0.32196197781104274, 3);
  });

  it('round-trips a real file through writeSafetensors', async () => {
    const { source, metadata } = await readSafetensors(path.join(sharedModels, 'squeezenet1_1.safetensors'));
    const copy = path.join(tmp, 'squeezenet-copy.safetensors');
    await writeSafetensors(copy, source.tensors, metadata);
    const again = await readSafetensors(copy);
    expect(again.metadata).toEqual(metadata);
    expect([...again.source.tensors.keys()]).toEqual([...source.tensors.keys()]);
    for (const [name, t] of source.tensors) {
      const read = again.source.tensors.get(name)!;
      expect(read.shape).toEqual(t.shape);
      // Compared as bytes: vitest's element-wise equality takes seconds on a million floats.
      expect(bytesOf(read.data).equals(bytesOf(t.data))).toBe(true);
    }
  });
});

describe('writeSafetensors', () => {
  const tensors = new Map<string, WeightTensor>([
    ['conv.weight', { shape: [2, 1, 1, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
    ['conv.bias', { shape: [2], data: Float32Array.from([-1, 0.5]) }],
    // A view into a larger buffer must be written as just its own values.
    ['fc.weight', { shape: [1, 2], data: new Float32Array([9, 7, 8, 9]).subarray(1, 3) }],
  ]);

  it('writes a file that reads back, with an 8-byte aligned header and no temporary left', async () => {
    const dir = await mkdtemp(path.join(tmp, 'write-'));
    const file = path.join(dir, 'w.safetensors');
    await writeSafetensors(file, tensors, { note: 'test' });
    const bytes = await readFile(file);
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);
    const { source, metadata } = await readSafetensors(file);
    expect(metadata).toEqual({ note: 'test' });
    expect(source.tensors.get('conv.weight')).toEqual(tensors.get('conv.weight'));
    expect([...source.tensors.get('fc.weight')!.data]).toEqual([7, 8]);
    expect(await readdir(dir)).toEqual(['w.safetensors']);
  });

  it('refuses a tensor whose data does not fit its shape, and leaves nothing behind', async () => {
    const dir = await mkdtemp(path.join(tmp, 'bad-'));
    const bad = new Map([['x', { shape: [3], data: new Float32Array(2) }]]);
    await expect(writeSafetensors(path.join(dir, 'b.safetensors'), bad)).rejects.toThrow(/'x' has 2 values for shape \[3\]/);
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('readSafetensors dtypes', () => {
  it('widens F16, BF16 and F64 to float32', async () => {
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000]);
    const bf16 = new Uint16Array([0x3f80, 0xc0a0]);
    const f64 = new Float64Array([0.1, -3]);
    const data = Buffer.concat([Buffer.from(f16.buffer), Buffer.from(bf16.buffer), Buffer.from(f64.buffer)]);
    const header = {
      half: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 12] },
      brain: { dtype: 'BF16', shape: [2], data_offsets: [12, 16] },
      double: { dtype: 'F64', shape: [2], data_offsets: [16, 32] },
    };
    const file = path.join(tmp, 'dtypes.safetensors');
    await writeFile(file, rawSafetensors(header, data));
    const { source, metadata } = await readSafetensors(file);
    expect(metadata).toEqual({});
    expect(source.tensors.get('half')!.shape).toEqual([2, 3]);
    expect([...source.tensors.get('half')!.data]).toEqual([1, -2, 65504, 2 ** -24, Infinity, -0]);
    expect([...source.tensors.get('brain')!.data]).toEqual([1, -5]);
    expect([...source.tensors.get('double')!.data]).toEqual([Math.fround(0.1), -3]);
  });
});

describe('readSafetensors errors name the file and the reason', () => {
  const good = { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } };
  const cases: [string, Buffer, RegExp][] = [
    ['shorter than its header length', Buffer.from([1, 2, 3]), /truncated safetensors file: 3 bytes/],
    [
      'cut inside the header',
      rawSafetensors(good, new Uint8Array(16)).subarray(0, 20),
      /truncated safetensors file: the header needs/,
    ],
    [
      'cut inside the data',
      rawSafetensors(good, new Uint8Array(10)),
      /tensor 'w' has data_offsets \[0, 16\] past the end of the data \(10 bytes\): the file is truncated/,
    ],
    [
      'a header that is not JSON',
      Buffer.concat([Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"a":')]),
      /bad safetensors header: not JSON/,
    ],
    ['a header length no safetensors file has', Buffer.from('PK\x03\x04 this is a zip file'), /not a safetensors file/],
    [
      'offsets that do not fit the shape',
      rawSafetensors({ w: { ...good.w, data_offsets: [0, 12] } }, new Uint8Array(16)),
      /\(12 bytes\), but F32 \[4\] needs 16 bytes/,
    ],
    [
      'an unsupported dtype',
      rawSafetensors({ n: { dtype: 'I64', shape: [], data_offsets: [0, 8] } }, new Uint8Array(8)),
      /tensor 'n' has dtype "I64"; supported: F32, F16, BF16, F64/,
    ],
    ['a bad shape', rawSafetensors({ w: { ...good.w, shape: [-4] } }, new Uint8Array(16)), /tensor 'w' has shape \[-4\]/],
  ];
  for (const [what, bytes, reason] of cases) {
    it(`rejects a file with ${what}`, async () => {
      const file = path.join(tmp, `bad-${what.replaceAll(' ', '-')}.safetensors`);
      await writeFile(file, bytes);
      const error = await readSafetensors(file).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WeightsError);
      expect((error as Error).message).toContain(file);
      expect((error as Error).message).toMatch(reason);
    });
  }

  it('rejects a missing file', async () => {
    const file = path.join(tmp, 'missing.safetensors');
    await expect(readSafetensors(file)).rejects.toThrow(`${file}: cannot open safetensors file: no such file`);
  });
});
