/**
 * ONNX files as backbones, end to end on models generated here (so CI needs neither ../shared
 * nor Python): codes at any tensor equal onnxruntime's own values of that tensor in the
 * original model, pooled as documented; the whole recipe (extract → train-head → evaluate →
 * predict → export) on a ViT-like and a CNN model; float16 files; batch-of-one graphs; external
 * data; preprocessor_config.json; and one-line errors for what cannot work.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOnnxBackbone } from '../src/backbones/onnx-file/onnx-backbone.ts';
import { preprocessInto } from '../src/backbones/preprocess.ts';
import { decodeImage } from '../src/extract/decode-image.ts';
import ort from '../src/util/onnxruntime.ts';
import { runCli } from './helpers/cli.ts';
import { relativeError } from './helpers/compare.ts';
import { makeDataset, type MadeImage } from './helpers/make-dataset.ts';
import { SIDE, tinyCnnOnnx, tinyVitOnnx, toFloat16, writeModel } from './helpers/onnx-models.ts';
import { codeAt, readRows } from './helpers/read-codes.ts';
import { onnxReference } from './helpers/onnx-reference.ts';

const { onnx } = onnxProto;
let tmp: string;
let data: string;
let images: MadeImage[];
let vit: string;
let cnn: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-onnx-'));
  data = path.join(tmp, 'data');
  images = await makeDataset(data, { classes: ['a', 'b'], perClass: 4, splits: ['train', 'validation', 'test'], seed: 3 });
  vit = await writeModel(path.join(tmp, 'vit.onnx'), tinyVitOnnx());
  cnn = await writeModel(path.join(tmp, 'cnn.onnx'), tinyCnnOnnx());
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  return relativeError(a, b);
}

async function extract(model: string, extra: string[], cache = path.join(tmp, 'cache')): Promise<string> {
  const r = await runCli(['extract', data, '--backbone', model, '--cache', cache, '--json', ...extra]);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { key: string }).key;
}

describe('cutting an ONNX graph at any tensor', () => {
  const TOKENS = '/norm/LayerNormalization_output_0';

  it('token pools (cls, mean, mean-patch) and the unpooled sequence equal the tensor in the original model', async () => {
    const files = images.slice(0, 3).map((i) => i.file);
    const ref = (await onnxReference(vit, [TOKENS], files)).get(TOKENS)!;
    expect(ref.dims).toEqual([3, 17, 16]);
    const expected = (pool: string, n: number): number[] => {
      const tokens = Array.from({ length: 17 }, (_, t) => Array.from(ref.data.subarray((n * 17 + t) * 16, (n * 17 + t + 1) * 16)));
      if (pool === 'none') return tokens.flat();
      if (pool === 'cls') return tokens[0];
      const rows = pool === 'mean' ? tokens : tokens.slice(1);
      return rows[0].map((_, d) => rows.reduce((s, r) => s + r[d], 0) / rows.length);
    };
    for (const pool of ['none', 'cls', 'mean', 'mean-patch']) {
      const key = await extract(vit, ['--layer', TOKENS, ...(pool === 'none' ? [] : ['--pool', pool])]);
      const table = await readRows(path.join(tmp, 'cache'), key);
      expect(table.dim).toBe(pool === 'none' ? 17 * 16 : 16);
      for (let n = 0; n < files.length; n++) expect(maxRelError(codeAt(table, images[n].path), expected(pool, n)), pool).toBeLessThan(1e-5);
    }
  });

  it('a spatial map flattens in H, W, C order and pools over H and W; several cuts come out of one pass', async () => {
    const MAP = '/stage2/relu/Relu_output_0';
    const files = images.slice(0, 2).map((i) => i.file);
    const ref = (await onnxReference(cnn, [MAP], files)).get(MAP)!;
    expect(ref.dims).toEqual([2, 16, 16, 16]);
    const cache = path.join(tmp, 'cache-cnn');
    const r = await runCli(['extract', data, '--backbone', cnn, '--cache', cache, '--layer', `${MAP},/avgpool/GlobalAveragePool_output_0`, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const keys = (await readdir(cache)).filter((k) => k.includes('stage2'));
    const flat = await readRows(cache, keys[0]);
    const hw = 16 * 16;
    for (let n = 0; n < 2; n++) {
      const hwc = Array.from({ length: hw * 16 }, (_, i) => ref.data[n * 16 * hw + (i % 16) * hw + Math.floor(i / 16)]);
      expect(maxRelError(codeAt(flat, images[n].path), hwc)).toBeLessThan(1e-5);
    }
    const maxKey = await extract(cnn, ['--layer', MAP, '--pool', 'max'], cache);
    const pooled = await readRows(cache, maxKey);
    const channelMax = (n: number) => Array.from({ length: 16 }, (_, c) => Math.max(...ref.data.subarray((n * 16 + c) * hw, (n * 16 + c + 1) * hw)));
    expect(maxRelError(codeAt(pooled, images[1].path), channelMax(1))).toBeLessThan(1e-6);
  });

  it('prunes what the cut does not need: an early cut runs a model without the later nodes', async () => {
    const cache = path.join(tmp, 'cache-prune');
    await extract(cnn, ['--layer', '/relu1/Relu_output_0', '--pool', 'avg'], cache);
    const [dir] = await readdir(path.join(cache, 'onnx'));
    const rewritten = onnx.ModelProto.decode(await readFile(path.join(cache, 'onnx', dir, 'model.onnx')));
    const ops = rewritten.graph!.node!.map((n) => n.opType);
    expect(ops.filter((o) => o === 'Conv')).toHaveLength(1);
    expect(ops).not.toContain('Gemm');
    expect(rewritten.graph!.initializer!.map((t) => t.name)).not.toContain('conv2.weight');
  });

  it('the default cut is the input of the final classifier; inspect lists every tensor with its layout', async () => {
    const r = await runCli(['backbones', 'inspect', vit, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout) as { defaultCut: { layer: string }; tensors: { name: string; shape: number[]; layout: string }[]; input: { layout: string } };
    expect(info.defaultCut).toEqual({ layer: '/Gather_output_0' });
    expect(info.input.layout).toBe('nchw');
    expect(info.tensors.find((t) => t.name === TOKENS)).toMatchObject({ shape: [17, 16], layout: 'tokens' });
    expect(info.tensors.find((t) => t.name === '/patch_embed/proj/Conv_output_0')).toMatchObject({ shape: [16, 4, 4], layout: 'nchw' });
    const text = await runCli(['backbones', 'inspect', cnn]);
    expect(text.stdout).toMatch(/\/Flatten_output_0 .*\[16\] .*vector .*default/);
  });
});

describe('the whole recipe on ONNX backbones', () => {
  for (const [name, file] of [
    ['a ViT-like model', () => vit],
    ['a CNN', () => cnn],
  ] as const) {
    it(`${name}: extract → train-head → evaluate → predict → export, and the export answers as predict does`, async () => {
      const cache = path.join(tmp, `recipe-${name.length}`);
      const head = path.join(tmp, `head-${name.length}`);
      await extract(file(), [], cache);
      const trained = await runCli(['train-head', data, '--backbone', file(), '--cache', cache, '--out', head, '--epochs', '5']);
      expect(trained.code, trained.stderr).toBe(0);
      const evaluated = await runCli(['evaluate', head, '--json']);
      expect(evaluated.code, evaluated.stderr).toBe(0);
      expect((JSON.parse(evaluated.stdout) as { metrics: { accuracy: number } }).metrics.accuracy).toBeGreaterThanOrEqual(0);
      const image = images.find((i) => i.split === 'test')!;
      const predicted = await runCli(['predict', '--head', head, image.file, '--json', '--top-k', '2']);
      expect(predicted.code, predicted.stderr).toBe(0);
      const top = (JSON.parse(predicted.stdout) as { top: { label: string; probability: number }[] }).top;
      const out = path.join(tmp, `export-${name.length}`);
      const exported = await runCli(['export', head, '--format', 'onnx', '--out', out]);
      expect(exported.code, exported.stderr).toBe(0);
      const prep = JSON.parse(await readFile(path.join(out, 'preprocessing.json'), 'utf8')) as { input: { name: string; mean: [number, number, number]; std: [number, number, number] }; output: { name: string; classes: string[] } };
      const input = new Float32Array(SIDE * SIDE * 3);
      preprocessInto(await decodeImage(image.file, { size: [SIDE, SIDE] }), { size: [SIDE, SIDE], channels: 'rgb', mean: prep.input.mean, std: prep.input.std }, input);
      const session = await ort.InferenceSession.create(path.join(out, 'model.onnx'));
      const probs = (await session.run({ [prep.input.name]: new ort.Tensor('float32', input, [1, SIDE, SIDE, 3]) }))[prep.output.name].data as Float32Array;
      await session.release();
      for (const t of top) expect(probs[prep.output.classes.indexOf(t.label)]).toBeCloseTo(t.probability, 5);
    });
  }

  it("predict --imagenet runs the model's own classifier, softmaxing its logits", async () => {
    const r = await runCli(['predict', '--backbone', cnn, '--imagenet', images[0].file, '--json', '--top-k', '10', '--cache', path.join(tmp, 'cache-own')]);
    expect(r.code, r.stderr).toBe(0);
    const top = (JSON.parse(r.stdout) as { top: { probability: number }[] }).top;
    expect(top).toHaveLength(10);
    expect(top.reduce((s, t) => s + t.probability, 0)).toBeCloseTo(1, 5);
    expect(top.every((t) => t.probability > 0 && t.probability < 1)).toBe(true);
  });

  it('refuses, in one line, what needs a layer graph: fine-tune, --engine tfjs, export --format tfjs', async () => {
    const head = path.join(tmp, 'head-refusals');
    await extract(cnn, [], path.join(tmp, 'cache-refusals'));
    expect((await runCli(['train-head', data, '--backbone', cnn, '--cache', path.join(tmp, 'cache-refusals'), '--out', head, '--epochs', '2'])).code).toBe(0);
    for (const args of [
      ['fine-tune', head, '--unfreeze', 'x', '--out', path.join(tmp, 'ft')],
      ['extract', data, '--backbone', cnn, '--engine', 'tfjs', '--cache', path.join(tmp, 'cache-refusals')],
      ['export', head, '--format', 'tfjs', '--out', path.join(tmp, 'tfjs-out')],
    ]) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^bottleneck: .*ONNX/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});

describe('ONNX files as users have them', () => {
  it('float16 files load as they are, and their codes are the float32 model’s to float16 precision', async () => {
    const half = await writeModel(path.join(tmp, 'cnn_fp16.onnx'), toFloat16(tinyCnnOnnx()));
    const cache = path.join(tmp, 'cache-fp16');
    const key32 = await extract(cnn, [], cache);
    const key16 = await extract(half, ['--float16'], cache);
    const [a, b] = [await readRows(cache, key32), await readRows(cache, key16)];
    expect(maxRelError(codeAt(b, images[0].path), codeAt(a, images[0].path))).toBeLessThan(5e-3);
    expect(key16).not.toBe(key32);
  });

  it('a graph that fixes a batch of one runs image by image, with the same codes', async () => {
    const model = onnx.ModelProto.decode(tinyCnnOnnx());
    const flatten = model.graph!.node!.find((n) => n.opType === 'Flatten')!;
    Object.assign(flatten, { opType: 'Reshape', attribute: [], input: [flatten.input![0], 'fixed_shape'] });
    model.graph!.initializer!.push({ name: 'fixed_shape', dims: [2], dataType: onnx.TensorProto.DataType.INT64, int64Data: [1, 16] });
    const fixed = await writeModel(path.join(tmp, 'cnn_batch1.onnx'), onnx.ModelProto.encode(model).finish());
    const backbone = await loadOnnxBackbone(fixed);
    expect(backbone.model.dynamicBatch).toBe(false);
    const cache = path.join(tmp, 'cache-batch1');
    const [k1, k2] = [await extract(cnn, ['--batch', '8'], cache), await extract(fixed, ['--batch', '8'], cache)];
    const [a, b] = [await readRows(cache, k1), await readRows(cache, k2)];
    for (const img of images.slice(0, 4)) expect(maxRelError(codeAt(b, img.path), codeAt(a, img.path))).toBeLessThan(1e-6);
  });

  it('weights in an external-data file: loaded from beside the model, part of the weights id, copied on export; int8 reads each tensor at its offset', async () => {
    const dir = path.join(tmp, 'external');
    const model = onnx.ModelProto.decode(tinyCnnOnnx());
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    // Two tensors in one file, the second at an offset, as onnx.save(save_as_external_data=True) writes them.
    const parts: Uint8Array[] = [];
    let offset = 0;
    for (const name of ['conv1.weight', 'conv2.weight']) {
      const t = model.graph!.initializer!.find((i) => i.name === name)!;
      const bytes = t.rawData!;
      parts.push(bytes);
      Object.assign(t, {
        rawData: new Uint8Array(),
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: 'weights.bin' },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(bytes.length) },
        ],
      });
      offset += bytes.length;
    }
    await writeFile(path.join(dir, 'weights.bin'), Buffer.concat(parts));
    const file = await writeModel(path.join(dir, 'model.onnx'), onnx.ModelProto.encode(model).finish());
    const cache = path.join(tmp, 'cache-external');
    const [plain, external] = [await extract(cnn, [], cache), await extract(dir, [], cache)];
    expect(maxRelError(codeAt(await readRows(cache, external), images[2].path), codeAt(await readRows(cache, plain), images[2].path))).toBeLessThan(1e-6);
    // Quantised from the external data, the int8 codes are those of the same weights inline.
    const [plainInt8, externalInt8] = [await extract(cnn, ['--precision', 'int8'], cache), await extract(dir, ['--precision', 'int8'], cache)];
    expect(codeAt(await readRows(cache, externalInt8), images[2].path)).toEqual(codeAt(await readRows(cache, plainInt8), images[2].path));
    const out = path.join(tmp, 'external-export');
    const r = await runCli(['export', '--backbone', file, '--format', 'onnx', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['model.onnx', 'preprocessing.json', 'weights.bin']);
    await rm(path.join(dir, 'weights.bin'));
    const missing = await runCli(['extract', data, '--backbone', dir, '--cache', cache]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/weights\.bin' beside it, which is missing/);
  });

  it("a Hugging Face folder: preprocessor_config.json's size, crop, resample, rescale and mean/std go into the code spec", async () => {
    const dir = path.join(tmp, 'hf');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(path.join(dir, 'onnx'), { recursive: true });
    await writeModel(path.join(dir, 'onnx', 'model.onnx'), tinyVitOnnx());
    const config = { do_resize: true, size: { shortest_edge: 36 }, resample: 3, do_center_crop: true, crop_size: { height: 32, width: 32 }, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5] };
    await writeFile(path.join(dir, 'preprocessor_config.json'), JSON.stringify(config));
    const cache = path.join(tmp, 'cache-hf');
    const key = await extract(dir, [], cache);
    const spec = JSON.parse(await readFile(path.join(cache, key, 'spec.json'), 'utf8')) as { preprocessing: Record<string, unknown> };
    expect(spec.preprocessing).toMatchObject({ size: [32, 32], resize: 'crop', interpolation: 'cubic', channels: 'rgb', mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5] });
    expect(spec.preprocessing.cropFraction).toBeCloseTo(32 / 36, 12);
    // Flags override the file, and change the key.
    const other = await extract(dir, ['--mean', '0.485,0.456,0.406', '--std', '0.229,0.224,0.225', '--scale', String(1 / 255), '--resize', 'squash'], cache);
    expect(other).not.toBe(key);
    const overridden = JSON.parse(await readFile(path.join(cache, other, 'spec.json'), 'utf8')) as { preprocessing: { mean: number[]; resize: string; cropFraction?: number } };
    expect(overridden.preprocessing.mean[0]).toBeCloseTo(123.675, 9);
    expect(overridden.preprocessing).toMatchObject({ resize: 'squash' });
    expect(overridden.preprocessing.cropFraction).toBeUndefined();
  });

  it('the probe runs once per model and size: later loads read it back, a damaged record is probed again', async () => {
    const dir = path.join(tmp, 'probes');
    const before = process.env.BOTTLENECK_PROBE_CACHE;
    process.env.BOTTLENECK_PROBE_CACHE = dir;
    try {
      const first = await loadOnnxBackbone(vit);
      const [record] = await readdir(dir);
      expect(record).toMatch(new RegExp(`^${first.weightsId.slice(0, 32)}-32x32-nchw\\.json$`));
      const again = await loadOnnxBackbone(vit);
      expect([...again.model.tensors.values()]).toEqual([...first.model.tensors.values()]);
      await writeFile(path.join(dir, record), '{"format": 1, "tensors": "no"}');
      const reprobed = await loadOnnxBackbone(vit);
      expect(reprobed.defaultCut).toEqual(first.defaultCut);
      expect(JSON.parse(await readFile(path.join(dir, record), 'utf8'))).toMatchObject({ format: 1, dynamicBatch: true });
    } finally {
      if (before === undefined) delete process.env.BOTTLENECK_PROBE_CACHE;
      else process.env.BOTTLENECK_PROBE_CACHE = before;
    }
  });

  it('gives one line, exit 2, for a file that is not ONNX, an opset onnxruntime lacks, an unknown tensor, a pooling that does not fit, a fixed size, two inputs, bad flags', async () => {
    const notOnnx = path.join(tmp, 'notes.onnx');
    await writeFile(notOnnx, 'hello');
    const two = onnx.ModelProto.decode(tinyCnnOnnx());
    two.graph!.input!.push(onnx.ValueInfoProto.create({ name: 'mask', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }] } } } }));
    const twoInputs = await writeModel(path.join(tmp, 'two-inputs.onnx'), onnx.ModelProto.encode(two).finish());
    const future = onnx.ModelProto.decode(tinyCnnOnnx());
    future.opsetImport![0].version = 99;
    const futureOpset = await writeModel(path.join(tmp, 'opset99.onnx'), onnx.ModelProto.encode(future).finish());
    const cases: [string[], RegExp][] = [
      [['--backbone', notOnnx], /notes\.onnx: not an ONNX model/],
      [['--backbone', cnn, '--layer', '/stage2/relu/Relu_outpt_0'], /no tensor '\/stage2\/relu\/Relu_outpt_0'; closest: \/stage2\/relu\/Relu_output_0/],
      [['--backbone', cnn, '--layer', '/stage2/relu/Relu_output_0', '--pool', 'cls'], /--pool cls is for token sequences/],
      [['--backbone', vit, '--layer', '/norm/LayerNormalization_output_0', '--pool', 'avg'], /--pool avg is for spatial maps/],
      [['--backbone', cnn, '--size', '64'], /takes 32×32 images only/],
      [['--backbone', twoInputs], /has 2 inputs \(pixel_values .*, mask \[1\]\); a backbone takes one image input/],
      [['--backbone', 'squeezenet1_1', '--mean', '1,2,3'], /--mean: for ONNX backbones only/],
      [['--backbone', futureOpset], /opset99\.onnx: onnxruntime cannot load it \(.*opset/i],
      [['--backbone', cnn, '--mean', '1,2', '--std', '1,1,1'], /--mean 1,2: use three numbers/],
      [['--backbone', path.join(tmp, 'missing.onnx')], /missing\.onnx: no such file/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(['extract', data, '--cache', path.join(tmp, 'cache-errors'), ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines.at(-1), args.join(' ')).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
