/**
 * int8 extraction: the quantisation arithmetic, the percentile range method, the Q/DQ rewrite
 * (that onnxruntime really fuses it into int8 kernels, and that its codes stay close to fp32),
 * and `extract --precision int8` as users run it: its own key, one calibration reused by later
 * runs and other cuts, a sample that does not depend on file order, and one-line refusals.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activationParams, quantizeWeights, roundHalfEven } from '../src/engines/quantize/int8-math.ts';
import { applyQdq, GEMM_MIN_DEPTH, planQdq } from '../src/engines/quantize/qdq-rewrite.ts';
import { floatReader, int8ConvPath } from '../src/engines/quantize/int8-model.ts';
import { RangeHistogram } from '../src/engines/quantize/range-histogram.ts';
import { resolvePrecision } from '../src/engines/precision.ts';
import { extract } from '../src/index.ts';
import { calibrationSource } from '../src/extract/calibration-sample.ts';
import { loadDataset } from '../src/extract/dataset.ts';
import { decodeImage } from '../src/extract/decode-image.ts';
import { preprocessInto } from '../src/backbones/preprocess.ts';
import { attr, encodeModel, OnnxGraph, valueInfo } from '../src/util/onnx-graph.ts';
import ort from '../src/util/onnxruntime.ts';
import { runCli } from './helpers/cli.ts';
import { cosine } from './helpers/compare.ts';
import { makeDataset } from './helpers/make-dataset.ts';
import { SIDE, tinyCnnOnnx, toFloat16, writeModel } from './helpers/onnx-models.ts';
import { readRows } from './helpers/read-codes.ts';

const { onnx } = onnxProto;
let tmp: string;
let data: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-int8-'));
  data = path.join(tmp, 'data');
  await makeDataset(data, { classes: ['a', 'b'], perClass: 6, splits: ['train', 'validation'], seed: 5 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('int8 arithmetic', () => {
  it('rounds halves to even, as QuantizeLinear does', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, -2, 2, -3]);
  });

  it('keeps 0 exactly representable and maps a Relu range onto 0..255', () => {
    expect(activationParams([0, 2.55])).toEqual({ scale: Math.fround(0.01), zeroPoint: 0 });
    const p = activationParams([-1, 3]);
    expect(p.zeroPoint).toBe(64);
    expect(Math.abs(-p.zeroPoint * p.scale + 1)).toBeLessThan(p.scale);
    // A range that excludes 0 is widened to hold it.
    expect(activationParams([2, 4]).zeroPoint).toBe(0);
    expect(activationParams([0, 0]).scale).toBe(1);
  });

  it('quantises weights per output channel, symmetric, to 7 bits, within half a step', () => {
    const w = Float32Array.from([1, -0.5, 0.25, 0.1, 10, -20, 5, 0, 0, 0, 0, 0]);
    const q = quantizeWeights(w, [3, 4], 0);
    expect([...q.scales]).toEqual([Math.fround(1 / 63), Math.fround(20 / 63), 1]);
    expect(q.values[0]).toBe(63);
    expect(q.values[5]).toBe(-63);
    w.forEach((v, i) => expect(Math.abs(q.values[i] * q.scales[Math.floor(i / 4)] - v)).toBeLessThanOrEqual(q.scales[Math.floor(i / 4)] / 2 + 1e-7));
    // Along the last axis (a MatMul weight [K, N] per column).
    expect([...quantizeWeights(Float32Array.from([1, 4, -2, 8]), [2, 2], 1).scales]).toEqual([Math.fround(2 / 63), Math.fround(8 / 63)]);
  });
});

describe('the percentile range', () => {
  const values = Float32Array.from({ length: 100_000 }, (_, i) => (i % 1000) / 1000);

  it('ignores a far outlier that min/max would take as the range', () => {
    const h = new RangeHistogram();
    h.add(values);
    h.add(Float32Array.of(1000));
    const [lo, hi] = h.range();
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(lo).toBeLessThan(0.01);
    expect(hi).toBeGreaterThan(0.98);
    expect(hi).toBeLessThan(1.5);
  });

  it('does not depend on the order batches come in (the histogram doubles exactly)', () => {
    const small = Float32Array.from(values.subarray(0, 5000), (v) => v * 0.1);
    const big = Float32Array.from(values.subarray(0, 5000), (v) => -v * 50);
    const a = new RangeHistogram();
    a.add(small);
    a.add(big);
    const b = new RangeHistogram();
    b.add(big);
    b.add(small);
    expect(a.range()).toEqual(b.range());
    expect(a.state().limit).toBeGreaterThanOrEqual(b.state().limit);
  });
});

describe('--precision auto', () => {
  it('takes int8 only where the CPU has int8 dot products and the backbone no depthwise convs', () => {
    const plain = { groupedConvs: false };
    expect(resolvePrecision('auto', { device: 'cpu' }, plain, ['avx2', 'avx512f', 'avx512_vnni'])).toMatchObject({ precision: 'int8', note: expect.stringMatching(/avx512_vnni/) });
    expect(resolvePrecision('auto', { device: 'cpu' }, plain, ['avx2', 'amx_tile', 'amx_int8']).precision).toBe('int8');
    expect(resolvePrecision('auto', { device: 'cpu' }, plain, ['avx2', 'fma'])).toMatchObject({ precision: 'fp32', note: expect.stringMatching(/no VNNI or AMX/) });
    expect(resolvePrecision('auto', { device: 'cpu' }, { groupedConvs: true }, ['avx512_vnni'])).toMatchObject({ precision: 'fp32', note: expect.stringMatching(/depthwise/) });
    expect(resolvePrecision('int8', { device: 'cpu' }, { groupedConvs: true }, []).precision).toBe('int8');
    expect(resolvePrecision('auto', { device: 'cpu', engine: 'tfjs' }, plain, ['avx512_vnni'])).toMatchObject({ precision: 'fp32', note: expect.stringMatching(/onnxruntime only/) });
  });
});

describe('the int8 conv path', () => {
  it('is gemm only where onnxruntime has AMX tiles for it', () => {
    expect(int8ConvPath(['avx2', 'avx512f', 'avx512_vnni', 'amx_tile', 'amx_int8'])).toBe('gemm');
    expect(int8ConvPath(['avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16'])).toBe('symmetric');
    expect(int8ConvPath(['avx2', 'fma'])).toBe('symmetric');
  });
});

describe('the Q/DQ rewrite', () => {
  it.each([
    ['a conv', 64, 1, 'symmetric'],
    ['a deep conv written for the gemm path', 128, 1, 'gemm'],
    ['a shallow conv written for the gemm path (left symmetric)', 64, 1, 'gemm'],
    ['a depthwise conv (8-bit weights)', 64, 64, 'symmetric'],
    ['a depthwise conv written for the gemm path', 64, 64, 'gemm'],
  ] as const)("computes, fused, exactly the Q/DQ graph's arithmetic in %s, even where every product is at its largest", async (_name, C, group, convPath) => {
    // 64 input channels at the top of their range (uint8 255) against weights at the top of theirs:
    // a pair of such products overflows a 16-bit sum at 8-bit weights (2 × 255 × 127 > 32767),
    // which onnxruntime's AVX2 kernel (no VNNI) uses; 7-bit weights cannot (2 × 255 × 63 < 32767).
    // Its depthwise kernel adds no pairs in 16 bits, so depthwise weights keep 8 bits.
    const perGroup = C / group;
    const g = new OnnxGraph();
    const weight = g.floats('w', { shape: [C, perGroup, 3, 3], data: new Float32Array(C * perGroup * 9).fill(0.5) });
    const conv = g.op('Conv', ['x', weight, g.floats('b', { shape: [C], data: new Float32Array(C) })], 'conv', [attr.ints('pads', [1, 1, 1, 1]), attr.int('group', group)]);
    g.op('Relu', [conv], 'y');
    const model = onnx.ModelProto.decode(encodeModel(g, 'saturating', [valueInfo('x', [1, C, 4, 4])], [valueInfo('y', [1, C, 4, 4])]));
    const plan = planQdq(model.graph!);
    const peak = perGroup * 9 * 0.5;
    const ranges = new Map(plan.calibrate.map((t): [string, readonly [number, number]] => [t, t === 'x' ? [0, 1] : [0, peak]]));
    const quantized = applyQdq(model, plan, ranges, floatReader(), convPath);
    const initializer = (name: string) => new Int8Array(quantized.graph!.initializer!.find((t) => t.name === name)!.rawData!.slice().buffer);
    // The gemm path stores deep convs' weights one higher, at zero point 1; depthwise weights stay symmetric.
    const offset = convPath === 'gemm' && group === 1 && perGroup * 9 >= GEMM_MIN_DEPTH ? 1 : 0;
    if (C === 128) expect(offset).toBe(1);
    expect(initializer('bottleneck_q/w/int8').reduce((a, b) => Math.max(a, b)), 'the weights at their largest').toBe((group === 1 ? 63 : 127) + offset);
    expect(new Set(initializer('bottleneck_q/w/zero_point'))).toEqual(new Set([offset]));
    const int8 = onnx.ModelProto.encode(quantized).finish();
    const feed = { x: new ort.Tensor('float32', new Float32Array(C * 16).fill(1), [1, C, 4, 4]) };
    // Unoptimised, onnxruntime runs the graph as written: Q, DQ, a float Conv. That is the reference.
    const reference = (await (await ort.InferenceSession.create(int8, { graphOptimizationLevel: 'disabled' })).run(feed)).y.data as Float32Array;
    const fused = (await (await ort.InferenceSession.create(int8, { graphOptimizationLevel: 'all' })).run(feed)).y.data as Float32Array;
    // The centre's 3×3 window covers the whole input: the full sum, within one output step.
    expect(reference[5]).toBeCloseTo(peak, 0);
    let worst = 0;
    for (let i = 0; i < fused.length; i++) worst = Math.max(worst, Math.abs(fused[i] - reference[i]));
    expect(worst, `fused ${fused[5]} against ${reference[5]} at the centre`).toBeLessThanOrEqual(peak / 255 + 1e-3);
  });

  it('is fused by onnxruntime into int8 kernels, and its outputs stay close to fp32', async () => {
    const model = onnx.ModelProto.decode(tinyCnnOnnx());
    const plan = planQdq(model.graph!);
    // Both convs and the Gemm; their Relus are absorbed by the Q after each conv.
    expect(plan.actions.filter((a) => a.kind === 'weighted')).toHaveLength(3);
    const input = Float32Array.from({ length: 4 * 3 * SIDE * SIDE }, (_, i) => Math.sin(i * 0.37) * 2);
    const feed = { pixel_values: new ort.Tensor('float32', input, [4, 3, SIDE, SIDE]) };
    const ranges = await handRanges(tinyCnnOnnx(), plan.calibrate, feed);
    const int8 = onnx.ModelProto.encode(applyQdq(model, plan, ranges, floatReader())).finish();
    const optimized = path.join(tmp, 'optimized.onnx');
    const session = await ort.InferenceSession.create(int8, { graphOptimizationLevel: 'all', optimizedModelFilePath: optimized, logSeverityLevel: 3 });
    const ops = onnx.ModelProto.decode(await readFile(optimized)).graph!.node!.map((n) => n.opType);
    expect(ops.filter((o) => o === 'QLinearConv')).toHaveLength(2);
    // The Gemm makes the logits, which no int8 op reads: int8 inputs, a float output, no Q after.
    expect(ops).toContain('QGemm');
    expect(ops).not.toContain('Conv');
    expect(ops).not.toContain('Gemm');
    expect(ops).not.toContain('Relu');
    const fp32 = (await (await ort.InferenceSession.create(tinyCnnOnnx())).run(feed)).logits.data as Float32Array;
    const q = (await session.run(feed)).logits.data as Float32Array;
    expect(cosine(q, fp32)).toBeGreaterThan(0.995);
  });

  it("leaves a MatMul's output float where no int8 op reads it (a transformer's bias Add and LayerNorm)", async () => {
    // As torch exports a ViT's MLP: MatMul → Add(bias) → …; here fc1 → Relu → fc2 → Add → LayerNorm.
    const bytes = tokenMlpOnnx();
    const model = onnx.ModelProto.decode(bytes);
    const plan = planQdq(model.graph!);
    // fc1's output (through its absorbed Relu) feeds fc2, so it is quantised; fc2's is not.
    expect(plan.calibrate).toEqual(['tokens', '/fc1/Relu_output_0']);
    const input = Float32Array.from({ length: 2 * 5 * 16 }, (_, i) => Math.sin(i * 0.53) * 2);
    const feed = { tokens: new ort.Tensor('float32', input, [2, 5, 16]) };
    const int8 = onnx.ModelProto.encode(applyQdq(model, plan, await handRanges(bytes, plan.calibrate, feed), floatReader())).finish();
    const optimized = path.join(tmp, 'optimized-mlp.onnx');
    const session = await ort.InferenceSession.create(int8, { graphOptimizationLevel: 'all', optimizedModelFilePath: optimized, logSeverityLevel: 3 });
    const ops = onnx.ModelProto.decode(await readFile(optimized)).graph!.node!.map((n) => n.opType);
    expect(ops.filter((o) => o === 'QLinearMatMul')).toHaveLength(1);
    expect(ops.filter((o) => o === 'MatMulIntegerToFloat')).toHaveLength(1);
    expect(ops).not.toContain('DequantizeLinear');
    expect(ops.filter((o) => o === 'QuantizeLinear')).toHaveLength(1);
    const fp32 = (await (await ort.InferenceSession.create(bytes)).run(feed)).y.data as Float32Array;
    const q = (await session.run(feed)).y.data as Float32Array;
    expect(cosine(q, fp32)).toBeGreaterThan(0.995);
  });

  it('takes a bias written as an Identity of an initializer for the constant it is', () => {
    // torch's exporter writes equal biases once, the others as Identities of it. An Add of a
    // constant cannot run in int8 here, so fc1's output, which only such an Add reads, stays float.
    const g = new OnnxGraph();
    const w = (name: string, shape: number[]) => g.floats(name, { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.1) });
    const bias = g.op('Identity', [w('shared.bias', [8])], 'fc1.bias');
    const fc1 = g.op('Relu', [g.op('Add', [g.op('MatMul', ['tokens', w('fc1.weight', [4, 8])], '/fc1/MatMul_output_0'), bias], '/fc1/Add_output_0')], '/fc1/Relu_output_0');
    g.op('MatMul', [fc1, w('fc2.weight', [8, 4])], 'y');
    const model = onnx.ModelProto.decode(encodeModel(g, 'identity_bias', [valueInfo('tokens', ['batch', 3, 4])], [valueInfo('y', ['batch', 3, 4])]));
    expect(planQdq(model.graph!).calibrate).toEqual(['tokens', '/fc1/Relu_output_0']);
  });

  it('gives the same outputs, bit for bit, written for either int8 conv path', async () => {
    // The gemm path only moves deep convs to another onnxruntime kernel (AMX where the CPU has
    // it); cached codes and the code key do not depend on which path the machine took.
    const bytes = deepCnnOnnx();
    const model = onnx.ModelProto.decode(bytes);
    const plan = planQdq(model.graph!);
    const input = Float32Array.from({ length: 2 * 3 * 16 * 16 }, (_, i) => Math.cos(i * 0.91) * 3);
    const feed = { pixel_values: new ort.Tensor('float32', input, [2, 3, 16, 16]) };
    const ranges = await handRanges(bytes, plan.calibrate, feed);
    const run = async (convPath: 'symmetric' | 'gemm') => {
      const quantized = applyQdq(model, plan, ranges, floatReader(), convPath);
      const zeroPoints = quantized.graph!.initializer!.filter((t) => /weight\/zero_point$/.test(t.name!)).map((t) => t.rawData![0]);
      const int8 = onnx.ModelProto.encode(quantized).finish();
      return { zeroPoints, logits: (await (await ort.InferenceSession.create(int8)).run(feed)).logits.data as Float32Array };
    };
    const symmetric = await run('symmetric');
    const gemm = await run('gemm');
    // Written differently: the deep conv (128 × 3 × 3) is offset, the stem, the 1×1 conv and the Gemm are not.
    expect(symmetric.zeroPoints).toEqual([0, 0, 0, 0]);
    expect(gemm.zeroPoints).toEqual([0, 1, 0, 0]);
    expect(symmetric.logits.some((v) => v !== 0)).toBe(true);
    expect(gemm.logits).toEqual(symmetric.logits);
  });
});

/** stem conv 3×3 (3 → 128) → relu → conv 3×3 (128 → 32, deep enough for the gemm path) → relu → conv 1×1 → relu → pool → gemm. */
function deepCnnOnnx(): Uint8Array {
  const g = new OnnxGraph();
  let seed = 0;
  const w = (name: string, shape: number[], scale: number) => g.floats(name, { shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => Math.sin(++seed * 12.9898) * scale) });
  const conv = (x: string, name: string, shape: number[], out: string) => g.op('Relu', [g.op('Conv', [x, w(`${name}.weight`, shape, 0.2), w(`${name}.bias`, [shape[0]], 0.1)], `/${name}/Conv_output_0`, [attr.ints('pads', shape[2] === 3 ? [1, 1, 1, 1] : [0, 0, 0, 0])])], out);
  const c1 = conv('pixel_values', 'stem', [128, 3, 3, 3], '/stem/Relu_output_0');
  const c2 = conv(c1, 'deep', [32, 128, 3, 3], '/deep/Relu_output_0');
  const c3 = conv(c2, 'point', [16, 32, 1, 1], '/point/Relu_output_0');
  const flat = g.op('Flatten', [g.op('GlobalAveragePool', [c3], '/pool_output_0')], '/Flatten_output_0', [attr.int('axis', 1)]);
  g.op('Gemm', [flat, w('fc.weight', [4, 16], 0.5), w('fc.bias', [4], 0.1)], 'logits', [attr.int('transB', 1)]);
  return encodeModel(g, 'deep_cnn', [valueInfo('pixel_values', ['batch', 3, 16, 16])], [valueInfo('logits', ['batch', 4])]);
}

/** tokens [batch, 5, 16] → MatMul (fc1, 16 → 32) → Relu → MatMul (fc2, 32 → 16) → Add bias → LayerNorm → y. */
function tokenMlpOnnx(): Uint8Array {
  const g = new OnnxGraph();
  let seed = 0;
  const w = (name: string, shape: number[], scale: number) => g.floats(name, { shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => Math.sin(++seed * 78.233) * scale) });
  const fc1 = g.op('Relu', [g.op('MatMul', ['tokens', w('fc1.weight', [16, 32], 0.3)], '/fc1/MatMul_output_0')], '/fc1/Relu_output_0');
  const fc2 = g.op('Add', [g.op('MatMul', [fc1, w('fc2.weight', [32, 16], 0.3)], '/fc2/MatMul_output_0'), w('fc2.bias', [16], 0.1)], '/fc2/Add_output_0');
  g.op('LayerNormalization', [fc2, g.floats('norm.weight', { shape: [16], data: new Float32Array(16).fill(1) }), g.floats('norm.bias', { shape: [16], data: new Float32Array(16) })], 'y', [attr.int('axis', -1)]);
  return encodeModel(g, 'token_mlp', [valueInfo('tokens', ['batch', 5, 16])], [valueInfo('y', ['batch', 5, 16])]);
}

/** Calibrated by hand: every needed tensor's min/max on the input itself. */
async function handRanges(model: Uint8Array, tensors: readonly string[], feed: Record<string, InstanceType<typeof ort.Tensor>>): Promise<Map<string, readonly [number, number]>> {
  const probe = onnx.ModelProto.decode(model);
  probe.graph!.output = tensors.map((name) => onnx.ValueInfoProto.create({ name }));
  const probed = await (await ort.InferenceSession.create(onnx.ModelProto.encode(probe).finish())).run(feed);
  return new Map(tensors.map((t) => [t, [Math.min(...(probed[t].data as Float32Array)), Math.max(...(probed[t].data as Float32Array))] as const]));
}

describe('extract --precision int8', () => {
  it('writes its own key, calibrated once on a sample of the images, with codes close to fp32', async () => {
    const cache = path.join(tmp, 'cache');
    const fp32 = await runCli(['extract', data, '--backbone', 'squeezenet1_1', '--cache', cache, '--json']);
    expect(fp32.code).toBe(0);
    const first = await runCli(['extract', data, '--backbone', 'squeezenet1_1', '--cache', cache, '--precision', 'int8', '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/int8: calibrated \d+ tensors on 12 images \(percentile-99\.999\)/);
    const keyOf = (stdout: string) => (JSON.parse(stdout.trim().split('\n').pop()!) as { key: string }).key;
    const [fp32Key, int8Key] = [keyOf(fp32.stdout), keyOf(first.stdout)];
    expect(int8Key).not.toBe(fp32Key);
    // The library names the same key, and finds the calibration.
    expect((await extract({ data, backbone: 'squeezenet1_1', cache, precision: 'int8' })).key).toBe(int8Key);
    const spec = JSON.parse(await readFile(path.join(cache, int8Key, 'spec.json'), 'utf8')) as { precision?: string; calibration?: string };
    expect(spec).toMatchObject({ precision: 'int8', calibration: 'percentile-99.999' });
    const [a, b] = [await readRows(cache, fp32Key), await readRows(cache, int8Key)];
    expect(b.paths).toEqual(a.paths);
    for (let r = 0; r < a.paths.length; r++) expect(cosine(a.codes.subarray(r * a.dim, (r + 1) * a.dim), b.codes.subarray(r * b.dim, (r + 1) * b.dim))).toBeGreaterThan(0.97);

    // The int8 embedding model exports from the same calibration, and gives the cached codes.
    const embedding = await runCli(['export', '--backbone', 'squeezenet1_1', '--precision', 'int8', '--cache', cache, '--format', 'onnx', '--out', path.join(tmp, 'embedding')]);
    expect(embedding.code, embedding.stderr).toBe(0);
    const row = b.paths.findIndex((p) => p.startsWith('train/'));
    const exportedCode = await runModel(path.join(tmp, 'embedding'), path.join(data, b.paths[row]));
    expect(exportedCode.length).toBe(b.dim);
    const cached = b.codes.subarray(row * b.dim, (row + 1) * b.dim);
    expect(Math.max(...exportedCode.map((v, i) => Math.abs(v - cached[i])))).toBeLessThan(1e-4 * Math.max(...cached.map(Math.abs)));

    // Another cut of the same backbone reuses the calibration (and measures only what it lacks).
    const pool5 = await runCli(['extract', data, '--backbone', 'squeezenet1_1', '--cache', cache, '--precision', 'int8', '--layer', 'fire5/concat', '--pool', 'avg']);
    expect(pool5.code, pool5.stderr).toBe(0);
    expect(pool5.stderr).not.toMatch(/calibrated/);
    expect(await readdir(path.join(cache, 'calibrations'))).toHaveLength(1);

    // train-head names the int8 key from the same flags.
    const head = await runCli(['train-head', data, '--backbone', 'squeezenet1_1', '--cache', cache, '--precision', 'int8', '--epochs', '2', '--out', path.join(tmp, 'head')]);
    expect(head.code, head.stderr).toBe(0);
    expect(JSON.parse(await readFile(path.join(tmp, 'head', 'head.json'), 'utf8')).cacheKey).toBe(int8Key);

    // predict runs the head's int8 backbone on new images, with the key's own calibration.
    const image = path.join(data, 'validation', 'a', (await readdir(path.join(data, 'validation', 'a')))[0]);
    const predicted = await runCli(['predict', image, '--head', path.join(tmp, 'head'), '--cache', cache, '--json']);
    expect(predicted.code, predicted.stderr).toBe(0);
    expect(predicted.stderr).not.toMatch(/calibrated/);

    // export writes the int8 model the codes came from, with the head on it: it answers as predict does.
    const predictedTop = (JSON.parse(predicted.stdout.trim()) as { top: { label: string; probability: number }[] }).top;
    const exported = await runCli(['export', path.join(tmp, 'head'), '--format', 'onnx', '--out', path.join(tmp, 'export')]);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stderr).not.toMatch(/note:/);
    const exportedTop = await runExport(path.join(tmp, 'export'), image);
    expect(exportedTop.precision).toEqual({ codePrecision: 'int8', modelPrecision: 'int8' });
    expect(await quantizedOps(path.join(tmp, 'export', 'model.onnx'))).toBeGreaterThan(0);
    for (const { label, probability } of predictedTop) expect(exportedTop.probabilities[label]).toBeCloseTo(probability, 5);
    // With the cached int8 model gone, export quantises it again from the stored calibration alone.
    await rm(path.join(cache, 'onnx'), { recursive: true });
    const rebuilt = await runCli(['export', path.join(tmp, 'head'), '--format', 'onnx', '--out', path.join(tmp, 'export')]);
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    const again = await runExport(path.join(tmp, 'export'), image);
    for (const { label, probability } of predictedTop) expect(again.probabilities[label]).toBeCloseTo(probability, 5);
    // Asked for, a float32 backbone: said in a note, and in preprocessing.json.
    const float = await runCli(['export', path.join(tmp, 'head'), '--format', 'onnx', '--precision', 'fp32', '--out', path.join(tmp, 'export-fp32')]);
    expect(float.code, float.stderr).toBe(0);
    expect(float.stderr).toMatch(/^note: the head was trained on int8 codes and the exported backbone runs in float32/m);
    expect((await runExport(path.join(tmp, 'export-fp32'), image)).precision).toEqual({ codePrecision: 'int8', modelPrecision: 'fp32' });
    expect(await quantizedOps(path.join(tmp, 'export-fp32', 'model.onnx'))).toBe(0);
    // Without the cache that holds its calibration, an int8 export says where it looked and what to do.
    const lost = await runCli(['export', path.join(tmp, 'head'), '--format', 'onnx', '--cache', path.join(tmp, 'elsewhere'), '--out', path.join(tmp, 'export-lost')]);
    expect(lost.code).toBe(2);
    expect(lost.stderr).toMatch(/its codes are int8, and the calibration that made them \(.*elsewhere.*\) is not there; point --cache .* or export a float32 backbone with --precision fp32/);
    expect(existsSync(path.join(tmp, 'export-lost'))).toBe(false);
    // TF.js has no int8 kernels: asked for, refused in one line; by default, float32 with the note.
    const tfjsInt8 = await runCli(['export', path.join(tmp, 'head'), '--format', 'tfjs', '--precision', 'int8', '--out', path.join(tmp, 'web')]);
    expect(tfjsInt8.code).toBe(2);
    expect(tfjsInt8.stderr).toMatch(/--precision int8: --format tfjs is TF.js, which has no int8 kernels; use --format onnx/);
    const tfjs = await runCli(['export', path.join(tmp, 'head'), '--format', 'tfjs', '--out', path.join(tmp, 'web')]);
    expect(tfjs.code, tfjs.stderr).toBe(0);
    expect(tfjs.stderr).toMatch(/^note: the head was trained on int8 codes and the exported backbone runs in float32/m);

    // A calibration deleted since would mix two quantised models in one key: refused, by name.
    await rm(path.join(cache, 'calibrations'), { recursive: true });
    const stale = await runCli(['extract', data, '--backbone', 'squeezenet1_1', '--cache', cache, '--precision', 'int8']);
    expect(stale.code).toBe(2);
    expect(stale.stderr).toMatch(new RegExp(`${int8Key}: its int8 codes were made with calibration \\w+, but .* is gone; delete`));
  });

  it('chooses the calibration sample by content, whatever the order of the files', async () => {
    const dataset = await loadDataset(data);
    const shasOf = async (items: typeof dataset.items) => {
      const source = calibrationSource({ key: 'k', items, decode: { size: [8, 8], resize: 'squash', interpolation: 'linear', background: { r: 255, g: 255, b: 255 } }, preprocessing: { size: [8, 8], channels: 'rgb', mean: [0, 0, 0], std: [1, 1, 1] }, size: [8, 8], images: 4 });
      const shas: string[] = [];
      for await (const batch of source.batches()) shas.push(...batch.sha256);
      return shas;
    };
    const forward = await shasOf(dataset.items);
    expect(forward).toHaveLength(4);
    expect(await shasOf([...dataset.items].reverse())).toEqual(forward);
    // Training images only: the validation images never calibrate.
    const validation = dataset.items.filter((i) => i.split === 'validation');
    expect(validation.length).toBeGreaterThan(0);
    for (const v of validation) expect(forward).not.toContain(createHash('sha256').update(await readFile(v.file)).digest('hex'));
  });

  it('quantises an ONNX file backbone too, and refuses what int8 cannot do in one line', async () => {
    const cnn = await writeModel(path.join(tmp, 'cnn.onnx'), tinyCnnOnnx());
    const cache = path.join(tmp, 'cache-onnx');
    const ok = await runCli(['extract', data, '--backbone', cnn, '--cache', cache, '--precision', 'int8']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/int8: calibrated/);
    expect(existsSync(path.join(cache, 'calibrations'))).toBe(true);
    // Its head exports as the int8 rewrite plus the head, answering as predict does.
    const headDir = path.join(tmp, 'cnn-head');
    expect((await runCli(['train-head', data, '--backbone', cnn, '--cache', cache, '--precision', 'int8', '--epochs', '2', '--out', headDir])).code).toBe(0);
    const image = path.join(data, 'validation', 'b', (await readdir(path.join(data, 'validation', 'b')))[0]);
    const predicted = await runCli(['predict', image, '--head', headDir, '--json']);
    expect(predicted.code, predicted.stderr).toBe(0);
    const exported = await runCli(['export', headDir, '--format', 'onnx', '--out', path.join(tmp, 'cnn-export')]);
    expect(exported.code, exported.stderr).toBe(0);
    const answer = await runExport(path.join(tmp, 'cnn-export'), image);
    expect(answer.precision.modelPrecision).toBe('int8');
    expect(await quantizedOps(path.join(tmp, 'cnn-export', 'model.onnx'))).toBeGreaterThan(0);
    for (const { label, probability } of (JSON.parse(predicted.stdout.trim()) as { top: { label: string; probability: number }[] }).top) expect(answer.probabilities[label]).toBeCloseTo(probability, 5);

    const half = await writeModel(path.join(tmp, 'half.onnx'), toFloat16(tinyCnnOnnx()));
    const refusals = [
      [['--backbone', half, '--precision', 'int8'], /half\.onnx: --precision int8 needs a float32 model/],
      [['--backbone', 'squeezenet1_1', '--precision', 'int8', '--engine', 'tfjs'], /--engine tfjs: int8 codes are computed by onnxruntime only/],
      [['--backbone', 'squeezenet1_1', '--precision', 'int4'], /precision/],
    ] as const;
    for (const [flags, message] of refusals) {
      const r = await runCli(['extract', data, '--cache', cache, ...flags]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});

interface ExportedPreprocessing {
  input: { name: string; size: [number, number]; channels: 'rgb' | 'bgr'; mean: [number, number, number]; std: [number, number, number] };
  output: { name: string; classes: string[] };
  source: { codePrecision: string; modelPrecision: string };
}

/** An export folder's model run on one image, preprocessed as its preprocessing.json says. */
async function runModel(dir: string, image: string): Promise<Float32Array> {
  const prep = JSON.parse(await readFile(path.join(dir, 'preprocessing.json'), 'utf8')) as ExportedPreprocessing;
  const { size, channels, mean, std } = prep.input;
  const input = new Float32Array(size[0] * size[1] * 3);
  preprocessInto(await decodeImage(image, { size }), { size, channels, mean, std }, input, 0);
  const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
  const out = (await session.run({ [prep.input.name]: new ort.Tensor('float32', input, [1, size[0], size[1], 3]) }))[prep.output.name].data as Float32Array;
  await session.release();
  return out;
}

/** An exported head's probabilities by class, and the precisions its preprocessing.json records. */
async function runExport(dir: string, image: string): Promise<{ probabilities: Record<string, number>; precision: { codePrecision: string; modelPrecision: string } }> {
  const prep = JSON.parse(await readFile(path.join(dir, 'preprocessing.json'), 'utf8')) as ExportedPreprocessing;
  const out = await runModel(dir, image);
  const { codePrecision, modelPrecision } = prep.source;
  return { probabilities: Object.fromEntries(prep.output.classes.map((c, i) => [c, out[i]])), precision: { codePrecision, modelPrecision } };
}

/** QuantizeLinear nodes in a model file: an int8 model has them, a float32 one none. */
async function quantizedOps(file: string): Promise<number> {
  return (onnx.ModelProto.decode(await readFile(file)).graph?.node ?? []).filter((n) => n.opType === 'QuantizeLinear').length;
}
