/**
 * Attention fused into onnxruntime's MultiHeadAttention (src/engines/fuse-attention.ts): which
 * blocks it takes, that the fused model computes what the original does, and that extract's
 * fp32 and int8 models of a ViT use it while their codes stay the original model's (int8 under
 * its own key).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as proto } from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fuseAttention } from '../src/engines/fuse-attention.ts';
import { mulberry32 } from '../src/util/numbers.ts';
import ort from '../src/util/onnxruntime.ts';
import { runCli } from './helpers/cli.ts';
import { cosine, relativeError } from './helpers/compare.ts';
import { makeDataset, type MadeImage } from './helpers/make-dataset.ts';
import { onnxReference } from './helpers/onnx-reference.ts';
import { hfVitOnnx, SIDE, timmVitOnnx, tinyVitOnnx, writeModel } from './helpers/onnx-models.ts';
import { codeAt, readRows } from './helpers/read-codes.ts';

const { onnx } = onnxProto;
const decode = (bytes: Uint8Array) => onnx.ModelProto.decode(bytes);
const ops = (m: proto.IModelProto, op: string) => (m.graph!.node ?? []).filter((n) => n.opType === op).length;

async function logits(model: proto.IModelProto, pixels: Float32Array): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish());
  const out = await session.run({ pixel_values: new ort.Tensor('float32', pixels, [2, 3, SIDE, SIDE]) });
  await session.release();
  return out[session.outputNames[0]].data as Float32Array;
}

const rand = mulberry32(5);
const pixels = Float32Array.from({ length: 2 * 3 * SIDE * SIDE }, () => rand() * 2 - 1);

describe('fuseAttention', () => {
  it('fuses every block of a timm ViT as torch exports it, and the fused model computes the same', async () => {
    const original = decode(timmVitOnnx(3));
    const { model, fused } = fuseAttention(original);
    expect(fused).toBe(3);
    expect(ops(model, 'MultiHeadAttention')).toBe(3);
    expect(ops(model, 'Softmax')).toBe(0);
    expect(ops(model, 'Split')).toBe(0);
    expect(ops(model, 'Sqrt')).toBe(0);
    expect(relativeError(await logits(model, pixels), await logits(original, pixels))).toBeLessThan(1e-5);
  });

  it('reads the number of heads from the graph', async () => {
    const original = decode(timmVitOnnx(1, 4));
    const { model } = fuseAttention(original);
    const mha = model.graph!.node!.find((n) => n.opType === 'MultiHeadAttention')!;
    expect(Number(mha.attribute!.find((a) => a.name === 'num_heads')!.i)).toBe(4);
    expect(mha.attribute!.find((a) => a.name === 'scale')!.f).toBeCloseTo(1 / Math.sqrt(4), 6);
    expect(relativeError(await logits(model, pixels), await logits(original, pixels))).toBeLessThan(1e-5);
  });

  it('leaves a block alone when something outside it reads its insides (a cut at the attention map)', async () => {
    const original = decode(timmVitOnnx(2));
    original.graph!.output!.push(onnx.ValueInfoProto.create({ name: '/blocks.0/attn/Softmax_output_0' }));
    const { model, fused } = fuseAttention(original);
    expect(fused).toBe(1);
    expect(model.graph!.node!.some((n) => n.output!.includes('/blocks.0/attn/Softmax_output_0'))).toBe(true);
  });

  it('with the probe’s shapes, fuses only a block whose projection is [S, 3D] and output [S, D] per image', () => {
    const original = decode(timmVitOnnx(1));
    const dims = (packed: number[]) => (t: string) => (t.endsWith('qkv/Add_output_0') ? packed : t.endsWith('Reshape_1_output_0') ? [17, 16] : undefined);
    expect(fuseAttention(original, dims([17, 48])).fused).toBe(1);
    expect(fuseAttention(original, dims([17, 3, 16])).fused).toBe(0);
    expect(fuseAttention(original, dims([16, 48])).fused).toBe(0);
    expect(fuseAttention(original, () => undefined).fused).toBe(0);
  });

  it('needs the probe’s shapes for Hugging Face’s attention, whose head count the graph leaves as −1', () => {
    expect(fuseAttention(decode(hfVitOnnx('sdpa'))).fused).toBe(0);
    expect(fuseAttention(decode(hfVitOnnx('eager'))).fused).toBe(0);
  });

  it('leaves other forms of attention as they are', () => {
    const original = decode(tinyVitOnnx());
    const { model, fused } = fuseAttention(original);
    expect(fused).toBe(0);
    expect(model).toBe(original);
  });
});

describe('extract on ViTs as torch exports timm’s and Hugging Face’s', () => {
  let tmp: string;
  let data: string;
  let images: MadeImage[];
  const TOKENS = '/norm/LayerNormalization_output_0';

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-mha-'));
    data = path.join(tmp, 'data');
    images = await makeDataset(data, { classes: ['a', 'b'], perClass: 4, splits: ['train', 'validation'], seed: 4 });
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  async function extract(vit: string, cache: string, extra: string[]): Promise<string> {
    const r = await runCli(['extract', data, '--backbone', vit, '--layer', TOKENS, '--pool', 'cls', '--cache', cache, '--json', ...extra]);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { key: string }).key;
  }

  /** The engine's cached models, by folder name, with their MultiHeadAttention and Softmax counts. */
  async function cachedModels(cache: string): Promise<Map<string, { mha: number; softmax: number }>> {
    const dir = path.join(cache, 'onnx');
    const found = new Map<string, { mha: number; softmax: number }>();
    for (const d of await readdir(dir)) {
      const m = decode(await readFile(path.join(dir, d, 'model.onnx')));
      found.set(d, { mha: ops(m, 'MultiHeadAttention'), softmax: ops(m, 'Softmax') });
    }
    return found;
  }

  it.each([
    ['timm', () => timmVitOnnx()],
    ['Hugging Face, SDPA', () => hfVitOnnx('sdpa')],
    ['Hugging Face, eager', () => hfVitOnnx('eager')],
  ])('%s: fused attention in fp32 and int8, with the codes of the original model', async (label, build) => {
    const vit = await writeModel(path.join(tmp, `${label.replace(/\W+/g, '-')}.onnx`), build());
    const cache = path.join(tmp, `cache-${label.replace(/\W+/g, '-')}`);
    const files = images.slice(0, 3).map((i) => i.file);
    const ref = (await onnxReference(vit, [TOKENS], files)).get(TOKENS)!;
    const fp32 = await readRows(cache, await extract(vit, cache, []));
    const int8Key = await extract(vit, cache, ['--precision', 'int8']);
    const int8 = await readRows(cache, int8Key);
    // Its own key: the int8 model of an ONNX file with fused attention is format 7.
    expect(JSON.parse(await readFile(path.join(cache, int8Key, 'spec.json'), 'utf8'))).toMatchObject({ precision: 'int8', qdq: 7 });
    const models = [...(await cachedModels(cache)).entries()];
    expect(models.filter(([d]) => d.includes('-int8-'))).toHaveLength(1);
    for (const [dir, m] of models) expect(m, dir).toEqual({ mha: 2, softmax: 0 });
    for (let n = 0; n < files.length; n++) {
      const cls = Array.from(ref.data.subarray(n * 17 * 16, n * 17 * 16 + 16));
      expect(relativeError(codeAt(fp32, images[n].path), cls)).toBeLessThan(1e-5);
      expect(cosine(codeAt(int8, images[n].path), cls)).toBeGreaterThan(0.99);
    }
  });

  it('an int8 export keeps the fused op and says that only onnxruntime runs it; a float32 export is the plain graph', async () => {
    const vit = await writeModel(path.join(tmp, 'export.onnx'), timmVitOnnx());
    const cache = path.join(tmp, 'cache-export');
    await extract(vit, cache, ['--precision', 'int8']);
    const exported = async (precision: string) => {
      const out = path.join(tmp, `exported-${precision}`);
      const r = await runCli(['export', '--backbone', vit, '--layer', TOKENS, '--pool', 'cls', '--format', 'onnx', '--precision', precision, '--cache', cache, '--out', out]);
      expect(r.code, r.stderr).toBe(0);
      return { stderr: r.stderr, model: decode(await readFile(path.join(out, 'model.onnx'))) };
    };
    const int8 = await exported('int8');
    expect(ops(int8.model, 'MultiHeadAttention')).toBe(2);
    expect(int8.stderr).toMatch(/note: .*com\.microsoft\.MultiHeadAttention, which only onnxruntime runs/);
    const fp32 = await exported('fp32');
    expect(ops(fp32.model, 'MultiHeadAttention')).toBe(0);
    expect(ops(fp32.model, 'Softmax')).toBe(2);
    expect(fp32.stderr).not.toMatch(/MultiHeadAttention/);
  });
});
