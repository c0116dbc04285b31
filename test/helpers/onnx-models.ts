/**
 * Small ONNX image models written the way torch.onnx.export writes them (NCHW float input
 * `pixel_values`, path-like tensor names), seeded random, for tests that need an ONNX-file
 * backbone without ../shared or Python: a CNN ending in a classifier, a ViT-like model (patch
 * embedding, class token, attention, LayerNorm, an Erf GELU) ending in one, and float16 copies.
 */
import { writeFile } from 'node:fs/promises';
import onnxProto from 'onnx-proto';
import type { onnx as proto } from 'onnx-proto';
import { attr, encodeModel, OnnxGraph, valueInfo } from '../../src/util/onnx-graph.ts';
import { mulberry32 } from '../../src/util/numbers.ts';

const { onnx } = onnxProto;
export const SIDE = 32;

function randomTensor(rand: () => number, shape: number[], scale: number) {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale) };
}

/** conv 3×3 (8) → relu → maxpool 2 → conv 3×3 (16) → relu → global avg pool → flatten → gemm (classes). */
export function tinyCnnOnnx(classes = 10, seed = 7): Uint8Array {
  const rand = mulberry32(seed);
  const g = new OnnxGraph();
  const w = (name: string, shape: number[], scale: number) => g.floats(name, randomTensor(rand, shape, scale));
  const c1 = g.op('Conv', ['pixel_values', w('conv1.weight', [8, 3, 3, 3], 0.3), w('conv1.bias', [8], 0.1)], '/conv1/Conv_output_0', [attr.ints('pads', [1, 1, 1, 1])]);
  const r1 = g.op('Relu', [c1], '/relu1/Relu_output_0');
  const p1 = g.op('MaxPool', [r1], '/pool1/MaxPool_output_0', [attr.ints('kernel_shape', [2, 2]), attr.ints('strides', [2, 2])]);
  const c2 = g.op('Conv', [p1, w('conv2.weight', [16, 8, 3, 3], 0.2), w('conv2.bias', [16], 0.1)], '/stage2/conv/Conv_output_0', [attr.ints('pads', [1, 1, 1, 1])]);
  const r2 = g.op('Relu', [c2], '/stage2/relu/Relu_output_0');
  const gap = g.op('GlobalAveragePool', [r2], '/avgpool/GlobalAveragePool_output_0');
  const flat = g.op('Flatten', [gap], '/Flatten_output_0', [attr.int('axis', 1)]);
  g.op('Gemm', [flat, w('fc.weight', [classes, 16], 0.5), w('fc.bias', [classes], 0.1)], 'logits', [attr.int('transB', 1)]);
  return encodeModel(g, 'tiny_cnn', [valueInfo('pixel_values', ['batch', 3, SIDE, SIDE])], [valueInfo('logits', ['batch', classes])]);
}

/** 8×8 patches → 16 tokens + a class token, one pre-norm transformer block, final LayerNorm, cls → gemm. */
export function tinyVitOnnx(classes = 5, seed = 11): Uint8Array {
  const { D, g, w, ln } = vitParts(seed);
  const patches = g.op('Conv', ['pixel_values', w('patch.weight', [D, 3, 8, 8], 0.05), w('patch.bias', [D], 0.1)], '/patch_embed/proj/Conv_output_0', [attr.ints('kernel_shape', [8, 8]), attr.ints('strides', [8, 8])]);
  const seq = g.op('Reshape', [patches, g.int64s([0, D, -1])], '/patch_embed/Reshape_output_0');
  const tokens = g.op('Transpose', [seq], '/patch_embed/Transpose_output_0', [attr.ints('perm', [0, 2, 1])]);
  // The class token, broadcast over the batch without a Shape op: a zeroed first token plus the parameter.
  const first = g.op('Slice', [tokens, g.int64s([0]), g.int64s([1]), g.int64s([1])]);
  const cls = g.op('Add', [g.op('Mul', [first, g.scalar(0)]), w('cls_token', [1, 1, D], 0.5)]);
  const withCls = g.op('Concat', [cls, tokens], '/Concat_output_0', [attr.int('axis', 1)]);
  const x0 = g.op('Add', [withCls, w('pos_embed', [1, 17, D], 0.1)], '/pos_drop/Add_output_0');
  const h = ln(x0, 'blocks.0/norm1');
  const proj = (x: string, name: string, din: number, dout: number) => g.op('MatMul', [x, w(`${name}.weight`, [din, dout], 0.3)], `/blocks.0/${name}/MatMul_output_0`);
  const q = proj(h, 'attn/q', D, D);
  const k = proj(h, 'attn/k', D, D);
  const v = proj(h, 'attn/v', D, D);
  const scores = g.op('Mul', [g.op('MatMul', [q, g.op('Transpose', [k], undefined, [attr.ints('perm', [0, 2, 1])])]), g.scalar(0.25)]);
  const attn = g.op('Softmax', [scores], '/blocks.0/attn/Softmax_output_0', [attr.int('axis', -1)]);
  const x1 = g.op('Add', [x0, proj(g.op('MatMul', [attn, v]), 'attn/proj', D, D)], '/blocks.0/Add_output_0');
  const m = proj(ln(x1, 'blocks.0/norm2'), 'mlp/fc1', D, 32);
  const gelu = g.op('Mul', [g.op('Mul', [m, g.scalar(0.5)]), g.op('Add', [g.op('Erf', [g.op('Div', [m, g.scalar(Math.SQRT2)])]), g.scalar(1)])], '/blocks.0/mlp/act/Mul_1_output_0');
  const x2 = g.op('Add', [x1, proj(gelu, 'mlp/fc2', 32, D)], '/blocks.0/Add_1_output_0');
  const out = ln(x2, 'norm');
  const pooled = g.op('Gather', [out, g.int64s([0])], undefined, [attr.int('axis', 1)]);
  const emb = g.op('Reshape', [pooled, g.int64s([0, D])], '/Gather_output_0');
  g.op('Gemm', [emb, w('head.weight', [classes, D], 0.5), w('head.bias', [classes], 0.1)], 'logits', [attr.int('transB', 1)]);
  return encodeModel(g, 'tiny_vit', [valueInfo('pixel_values', ['batch', 3, SIDE, SIDE])], [valueInfo('logits', ['batch', classes])]);
}

/**
 * A ViT whose attention is written node for node as torch.onnx.export (opset 17) writes timm's
 * `Attention` with F.scaled_dot_product_attention: one packed qkv projection, its Reshape to
 * [B, S, 3, heads, H] from the input's Shape, Transpose (2, 0, 3, 1, 4), Split and Squeeze, SDPA's
 * default scale computed from q's shape and applied as a square root to q and to kᵀ, then
 * MatMul, Softmax, MatMul, Transpose and Reshape. 8×8 patches, 16 + 1 tokens of 16, `blocks` blocks.
 */
export function timmVitOnnx(blocks = 2, heads = 2, classes = 5, seed = 13): Uint8Array {
  return vitWith((g, x, name, D, dense) => exportedAttention(g, x, name, heads, D, dense), 'timm_vit', blocks, classes, seed);
}

/** A 16-wide ViT's graph builder: seeded weights and LayerNorms (ones and zeros). */
function vitParts(seed: number) {
  const rand = mulberry32(seed);
  const D = 16;
  const g = new OnnxGraph();
  const w = (name: string, shape: number[], scale: number) => g.floats(name, randomTensor(rand, shape, scale));
  const ones = (name: string) => g.floats(name, { shape: [D], data: new Float32Array(D).fill(1) });
  const zeros = (name: string) => g.floats(name, { shape: [D], data: new Float32Array(D) });
  const ln = (x: string, name: string) => g.op('LayerNormalization', [x, ones(`${name}.weight`), zeros(`${name}.bias`)], `/${name}/LayerNormalization_output_0`, [attr.int('axis', -1)]);
  return { D, g, w, ln };
}

type Attention = (g: OnnxGraph, x: string, name: string, D: number, dense: Dense) => string;

/** 8×8 patches → 16 tokens + a class token of 16, pre-norm blocks with the given attention, final LayerNorm, cls → gemm. */
function vitWith(attention: Attention, modelName: string, blocks: number, classes: number, seed: number): Uint8Array {
  const { D, g, w, ln } = vitParts(seed);
  const dense = (x: string, name: string, din: number, dout: number) => g.op('Add', [w(`${name}.bias`, [dout], 0.1), g.op('MatMul', [x, w(`${name}.weight`, [din, dout], 0.4)])], `/${name}/Add_output_0`);
  const patches = g.op('Conv', ['pixel_values', w('patch.weight', [D, 3, 8, 8], 0.05), w('patch.bias', [D], 0.1)], '/patch_embed/proj/Conv_output_0', [attr.ints('kernel_shape', [8, 8]), attr.ints('strides', [8, 8])]);
  const tokens = g.op('Transpose', [g.op('Reshape', [patches, g.int64s([0, D, -1])])], '/patch_embed/Transpose_output_0', [attr.ints('perm', [0, 2, 1])]);
  const first = g.op('Slice', [tokens, g.int64s([0]), g.int64s([1]), g.int64s([1])]);
  const cls = g.op('Add', [g.op('Mul', [first, g.scalar(0)]), w('cls_token', [1, 1, D], 0.5)]);
  let x = g.op('Add', [g.op('Concat', [cls, tokens], undefined, [attr.int('axis', 1)]), w('pos_embed', [1, 17, D], 0.1)], '/pos_drop/Add_output_0');
  for (let b = 0; b < blocks; b++) {
    const attn = attention(g, ln(x, `blocks.${b}/norm1`), `blocks.${b}/attn`, D, dense);
    x = g.op('Add', [x, dense(attn, `blocks.${b}/attn/proj`, D, D)], `/blocks.${b}/Add_output_0`);
    const m = dense(ln(x, `blocks.${b}/norm2`), `blocks.${b}/mlp/fc1`, D, 32);
    const gelu = g.op('Mul', [g.op('Mul', [m, g.scalar(0.5)]), g.op('Add', [g.op('Erf', [g.op('Div', [m, g.scalar(Math.SQRT2)])]), g.scalar(1)])]);
    x = g.op('Add', [x, dense(gelu, `blocks.${b}/mlp/fc2`, 32, D)], `/blocks.${b}/Add_1_output_0`);
  }
  const out = ln(x, 'norm');
  const emb = g.op('Reshape', [g.op('Gather', [out, g.int64s([0])], undefined, [attr.int('axis', 1)]), g.int64s([0, D])], '/Gather_output_0');
  g.op('Gemm', [emb, w('head.weight', [classes, D], 0.5), w('head.bias', [classes], 0.1)], 'logits', [attr.int('transB', 1)]);
  return encodeModel(g, modelName, [valueInfo('pixel_values', ['batch', 3, SIDE, SIDE])], [valueInfo('logits', ['batch', classes])]);
}

type Dense = (x: string, name: string, din: number, dout: number) => string;

function exportedAttention(g: OnnxGraph, x: string, name: string, heads: number, D: number, dense: Dense): string {
  const H = D / heads;
  // The exporter gathers a scalar and unsqueezes it; a one-element index gives the same [1].
  const dim = (axis: number) => g.op('Gather', [g.op('Shape', [x]), g.int64s([axis])], undefined, [attr.int('axis', 0)]);
  const [batch, seq] = [dim(0), dim(1)];
  const qkv = dense(x, `${name}/qkv`, D, 3 * D);
  const split5 = g.op('Concat', [batch, seq, g.int64s([3]), g.int64s([heads]), g.int64s([H])], undefined, [attr.int('axis', 0)]);
  const perHead = g.op('Transpose', [g.op('Reshape', [qkv, split5])], undefined, [attr.ints('perm', [2, 0, 3, 1, 4])]);
  const parts = [0, 1, 2].map((j) => `/${name}/Split_output_${j}`);
  g.node('Split', [perHead, g.int64s([1, 1, 1])], parts, [attr.int('axis', 0)]);
  const [q, k, v] = parts.map((p) => g.op('Squeeze', [p, g.int64s([0])]));
  const headSize = g.op('Cast', [g.op('Slice', [g.op('Shape', [q]), g.int64s([-1]), g.int64s([2 ** 62])])], undefined, [attr.int('to', 1)]);
  const scale = g.op('Cast', [g.op('Div', [g.scalar(1), g.op('Sqrt', [headSize])])], undefined, [attr.int('to', 1)]);
  const qs = g.op('Mul', [q, g.op('Sqrt', [scale])]);
  const ks = g.op('Mul', [g.op('Transpose', [k], undefined, [attr.ints('perm', [0, 1, 3, 2])]), g.op('Sqrt', [scale])]);
  const probs = g.op('Softmax', [g.op('MatMul', [qs, ks])], `/${name}/Softmax_output_0`, [attr.int('axis', -1)]);
  const context = g.op('Transpose', [g.op('MatMul', [probs, v])], undefined, [attr.ints('perm', [0, 2, 1, 3])]);
  return g.op('Reshape', [context, g.op('Concat', [batch, seq, g.int64s([D])], undefined, [attr.int('axis', 0)])], `/${name}/Reshape_1_output_0`);
}

/**
 * The same ViT with its attention as torch.onnx.export (opset 17) writes Hugging Face
 * transformers' (5.x) ViT, DINOv2 and CLIP vision attention: q, k and v projections, each
 * Reshaped to [B, S, −1, H] (the head count only implied) and transposed, kᵀ directly as
 * (0, 2, 3, 1). 'sdpa': √scale Muls on q and kᵀ, and the export's Reshape of the context to its
 * own shape (from Shape reads of the block's tensors); 'eager': the scores times the scale, and
 * the softmax cast to float32 twice.
 */
export function hfVitOnnx(attention: 'sdpa' | 'eager', blocks = 2, heads = 2, classes = 5, seed = 17): Uint8Array {
  return vitWith((g, x, name, D, dense) => hfAttention(g, x, name, heads, D, dense, attention), 'hf_vit', blocks, classes, seed);
}

function hfAttention(g: OnnxGraph, x: string, name: string, heads: number, D: number, dense: Dense, attention: 'sdpa' | 'eager'): string {
  const H = D / heads;
  const dim = (t: string, axis: number) => g.op('Gather', [g.op('Shape', [t]), g.int64s([axis])], undefined, [attr.int('axis', 0)]);
  const [batch, seq] = [dim(x, 0), dim(x, 1)];
  const view = (t: string) => g.op('Reshape', [t, g.op('Concat', [batch, seq, g.int64s([-1]), g.int64s([H])], undefined, [attr.int('axis', 0)])]);
  const transpose = (t: string, perm: number[]) => g.op('Transpose', [t], undefined, [attr.ints('perm', perm)]);
  const q = transpose(view(dense(x, `${name}/q_proj`, D, D)), [0, 2, 1, 3]);
  const kT = transpose(view(dense(x, `${name}/k_proj`, D, D)), [0, 2, 3, 1]);
  const v = transpose(view(dense(x, `${name}/v_proj`, D, D)), [0, 2, 1, 3]);
  let context: string;
  if (attention === 'sdpa') {
    const root = g.scalar(Math.sqrt(1 / Math.sqrt(H)));
    const probs = g.op('Softmax', [g.op('MatMul', [g.op('Mul', [q, root]), g.op('Mul', [kT, root])])], `/${name}/Softmax_output_0`, [attr.int('axis', -1)]);
    const raw = g.op('MatMul', [probs, v]);
    context = g.op('Reshape', [raw, g.op('Concat', [dim(raw, 0), g.int64s([-1]), dim(q, 2), dim(v, 3)], undefined, [attr.int('axis', 0)])]);
  } else {
    const probs = g.op('Softmax', [g.op('Mul', [g.op('MatMul', [q, kT]), g.scalar(1 / Math.sqrt(H))])], `/${name}/Softmax_output_0`, [attr.int('axis', -1)]);
    const cast = (t: string) => g.op('Cast', [t], undefined, [attr.int('to', 1)]);
    context = g.op('MatMul', [cast(cast(probs)), v]);
  }
  return g.op('Reshape', [transpose(context, [0, 2, 1, 3]), g.op('Concat', [batch, seq, g.int64s([-1])], undefined, [attr.int('axis', 0)])], `/${name}/Reshape_4_output_0`);
}

/** The same model with float16 weights, input and output, as Hugging Face's model_fp16.onnx files are. */
export function toFloat16(bytes: Uint8Array): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph!;
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const FLOAT16 = onnx.TensorProto.DataType.FLOAT16;
  for (const t of graph.initializer ?? []) {
    if (t.dataType !== FLOAT) continue;
    const raw = t.rawData ?? new Uint8Array();
    const values = (t.floatData ?? []).length > 0 ? Float32Array.from(t.floatData ?? []) : new Float32Array(Uint8Array.from(raw).buffer);
    const half = Uint16Array.from(values, f32ToF16);
    Object.assign(t, { dataType: FLOAT16, floatData: [], rawData: new Uint8Array(half.buffer) });
  }
  for (const v of [...(graph.input ?? []), ...(graph.output ?? [])] as proto.IValueInfoProto[]) v.type!.tensorType!.elemType = FLOAT16;
  return onnx.ModelProto.encode(model).finish();
}

/** IEEE half from single, rounding to nearest even (no subnormal care needed for these weights). */
function f32ToF16(value: number): number {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  const mant = x & 0x7fffff;
  if (exp <= 0) return sign;
  if (exp >= 31) return sign | 0x7c00;
  let half = sign | (exp << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
  return half;
}

export async function writeModel(file: string, bytes: Uint8Array): Promise<string> {
  await writeFile(file, bytes);
  return file;
}
