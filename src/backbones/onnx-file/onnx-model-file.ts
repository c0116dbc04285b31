/**
 * A user's ONNX file as a backbone: the file (and its external data), its one image input, and
 * every float tensor its graph computes, with the shape and layout each has for one image at
 * the chosen input size. Those are learnt by running the model once, on two blank images, with
 * every tensor as an output (onnxruntime's own shape inference is not exposed to JavaScript,
 * and running it is the only check that the file works at that size anyway), once per model
 * and size (probe-cache.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { copyFile, link, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as proto } from 'onnx-proto';
import { UserError, UsageError } from '../../util/errors.ts';
import { hashFile } from '../../util/file-hash.ts';
import { closestNames } from '../../util/closest-names.ts';
import ort from '../../util/onnxruntime.ts';
import { writeFileAtomic } from '../../util/atomic-file.ts';
import type { Pair } from '../layer-graph.ts';
import { cachedProbe } from './probe-cache.ts';
import { decodeModel, feedName, imageInput, producedTensors, rewriteForProbe, type ImageInput, type TensorLayout } from './onnx-rewrite.ts';

const { onnx } = onnxProto;

/** One tensor of the graph, for one image. */
export interface TensorInfo {
  readonly name: string;
  readonly op: string;
  /** Without the batch axis, at the model's probed input size. */
  readonly dims: readonly number[];
  readonly float16: boolean;
  readonly layout: TensorLayout;
}

export interface OnnxModel {
  /** Absolute path of the .onnx file. */
  readonly file: string;
  /** External-data files, as the model names them (relative to its folder). */
  readonly dataFiles: readonly string[];
  readonly input: ImageInput & { readonly size: Pair };
  /** The input size the tensors were probed at. */
  readonly size: Pair;
  /** Float tensors computed per image, in graph order. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly graphOutputs: readonly string[];
  /** False when the graph fixes a batch of one inside (a Reshape to 1×…): images then run one at a time. */
  readonly dynamicBatch: boolean;
  /** The classifier's input and output tensors, when the graph ends in one (a final Gemm or MatMul). */
  readonly classifier?: { readonly input: string; readonly output: string };
  /** Whether some Conv is grouped (depthwise, as in MobileNet and EfficientNet). */
  readonly groupedConvs: boolean;
}

/** protobuf's limit for one message: larger models keep their weights as external data. */
const MAX_MODEL_BYTES = 2 ** 31 - 1;

/** A path names an ONNX backbone: a .onnx file, or a folder holding model.onnx (or onnx/model.onnx, as Transformers.js repositories do). */
export function isOnnxTarget(name: string): boolean {
  if (name.toLowerCase().endsWith('.onnx')) return true;
  return existsSync(name) && statSync(name).isDirectory() && MODEL_NAMES.some((f) => existsSync(path.join(name, f)));
}

const MODEL_NAMES = ['model.onnx', path.join('onnx', 'model.onnx')];

export function resolveModelFile(target: string): string {
  if (!existsSync(target)) throw new UserError(`${target}: no such file or folder`);
  if (!statSync(target).isDirectory()) return path.resolve(target);
  const found = MODEL_NAMES.map((f) => path.join(target, f)).find((f) => existsSync(f));
  if (!found) throw new UserError(`${target}: no model.onnx (or onnx/model.onnx) in this folder`);
  return path.resolve(found);
}

export async function readModel(file: string): Promise<proto.ModelProto> {
  const bytes = statSync(file).size;
  if (bytes > MAX_MODEL_BYTES) throw new UserError(`${file}: ${bytes} bytes is over protobuf's 2 GiB limit; save it with external data (onnx.save(..., save_as_external_data=True))`);
  return decodeModel(await readFile(file), file);
}

/** External-data locations the initializers name; each must exist beside the model. */
export function externalDataFiles(model: proto.IModelProto, file: string): string[] {
  const locations = new Set<string>();
  for (const t of model.graph?.initializer ?? []) {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const location = (t.externalData ?? []).find((e) => e.key === 'location')?.value;
    if (!location || path.isAbsolute(location) || location.split(/[\\/]/).includes('..')) throw new UserError(`${file}: tensor '${t.name}' names external data at '${location ?? ''}', which is not a file beside the model`);
    locations.add(location);
  }
  for (const l of locations) if (!existsSync(path.join(path.dirname(file), l))) throw new UserError(`${file}: its weights are in '${l}' beside it, which is missing`);
  return [...locations].sort();
}

/** sha256 of the model file, or with external data, of every file's sha256 in name order. */
export async function onnxWeightsId(file: string, dataFiles: readonly string[]): Promise<string> {
  const own = await hashFile(file);
  if (dataFiles.length === 0) return own;
  const hash = createHash('sha256').update(`onnx\u0000${own}`);
  for (const f of dataFiles) hash.update(`\u0000${f}\u0000${await hashFile(path.join(path.dirname(file), f))}`);
  return hash.digest('hex');
}

/**
 * Writes a (rewritten) model where onnxruntime can load it, with its external data beside it.
 * onnxruntime refuses data outside the model's folder, symbolic links included, so the data is
 * hard-linked (no copy, on the same filesystem) or else copied.
 */
export async function materializeModel(dir: string, bytes: Uint8Array, original: Pick<OnnxModel, 'file' | 'dataFiles'>): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const f of original.dataFiles) {
    const dest = path.join(dir, f);
    if (existsSync(dest)) continue;
    await mkdir(path.dirname(dest), { recursive: true });
    const from = path.join(path.dirname(original.file), f);
    await link(from, dest).catch(() => copyFile(from, dest));
  }
  const file = path.join(dir, 'model.onnx');
  await writeFileAtomic(file, bytes);
  return file;
}

export interface ProbeOptions {
  readonly size?: Pair;
  readonly layout?: 'nchw' | 'nhwc';
}

/** Reads the model, finds its input and learns every tensor's shape at the input size. */
export async function openOnnxModel(target: string, opts: ProbeOptions = {}): Promise<{ model: OnnxModel; proto: proto.ModelProto; weightsId: string }> {
  const file = resolveModelFile(target);
  const modelProto = await readModel(file);
  const dataFiles = externalDataFiles(modelProto, file);
  const found = imageInput(modelProto, file, opts.layout);
  const size = opts.size ?? found.size ?? [224, 224];
  if (found.size && (found.size[0] !== size[0] || found.size[1] !== size[1])) {
    throw new UsageError(`${file}: the model takes ${found.size.join('×')} images only (its input fixes the size), not --size ${size.join('x')}`);
  }
  const input = { ...found, size };
  const weightsId = await onnxWeightsId(file, dataFiles);
  const { tensors, dynamicBatch } = await cachedProbe(weightsId, size, input.layout, () => probeTensors(modelProto, input, size, { file, dataFiles }));
  const graphOutputs = (modelProto.graph!.output ?? []).map((o) => o.name!).filter((n) => tensors.has(n));
  const groupedConvs = (modelProto.graph!.node ?? []).some((n) => n.opType === 'Conv' && Number((n.attribute ?? []).find((a) => a.name === 'group')?.i ?? 1) > 1);
  const model: OnnxModel = { file, dataFiles, input, size, tensors, graphOutputs, dynamicBatch, classifier: findClassifier(modelProto, tensors), groupedConvs };
  return { model, proto: modelProto, weightsId };
}

async function probeTensors(
  modelProto: proto.IModelProto,
  input: ImageInput & { readonly size: Pair },
  size: Pair,
  original: Pick<OnnxModel, 'file' | 'dataFiles'>,
): Promise<{ tensors: Map<string, TensorInfo>; dynamicBatch: boolean }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-probe-'));
  try {
    const modelFile = await materializeModel(dir, rewriteForProbe(modelProto, input, size), original);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(modelFile, { graphOptimizationLevel: 'disabled', intraOpNumThreads: os.availableParallelism(), logSeverityLevel: 3 });
    } catch (err) {
      throw new UserError(`${original.file}: onnxruntime cannot load it (${firstLine(err)})`);
    }
    try {
      // Two images tell per-image tensors (leading axis 2) from constants, and show whether
      // the graph takes a batch at all; a graph that fixes one image inside runs at one.
      const run = (n: number) => session.run({ [feedName(input)]: new ort.Tensor('float32', new Float32Array(n * size[0] * size[1] * 3), [n, size[0], size[1], 3]) });
      let result: ort.InferenceSession.ReturnType;
      let batch = 2;
      try {
        result = await run(2);
      } catch {
        batch = 1;
        try {
          result = await run(1);
        } catch (err) {
          throw new UserError(`${original.file}: does not run on ${size.join('×')} images (${firstLine(err)})`);
        }
      }
      return { tensors: describeTensors(modelProto, input, result, batch), dynamicBatch: batch === 2 };
    } finally {
      await session.release();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function describeTensors(modelProto: proto.IModelProto, input: ImageInput, result: ort.InferenceSession.ReturnType, batch: number): Map<string, TensorInfo> {
  const tensors = new Map<string, TensorInfo>();
  for (const { name, op } of producedTensors(modelProto)) {
    const t = result[name];
    if (!t) continue;
    const perImage = (t.type === 'float32' || t.type === 'float16') && t.dims.length >= 2 && t.dims[0] === batch;
    const dims = t.dims.slice(1);
    if (perImage) tensors.set(name, { name, op, dims, float16: t.type === 'float16', layout: layoutOf(dims, input.layout) });
    t.dispose?.();
  }
  return tensors;
}

/**
 * From per-image dims: [C, H, W] has two equal trailing axes (a square map), [H, W, C] two equal
 * leading ones; when both or neither hold, the input's own layout decides. [T, D] is a token
 * sequence (ViT, DeiT, DINOv2, CLIP). --feature-layout overrides.
 */
export function layoutOf(dims: readonly number[], inputLayout: 'nchw' | 'nhwc'): TensorLayout {
  if (dims.length === 1) return 'vector';
  if (dims.length === 2) return 'tokens';
  if (dims.length !== 3) return 'other';
  const [a, b, c] = dims;
  if (b === c && a !== b) return 'nchw';
  if (a === b && c !== a) return 'nhwc';
  return inputLayout;
}

/** The graph's last weighted node, when it is a dense layer on a vector: its input is the pooled embedding. */
function findClassifier(modelProto: proto.IModelProto, tensors: ReadonlyMap<string, TensorInfo>): OnnxModel['classifier'] {
  const weighted = (modelProto.graph!.node ?? []).filter((n) => ['Conv', 'Gemm', 'MatMul', 'ConvTranspose'].includes(n.opType ?? ''));
  const last = weighted.at(-1);
  if (!last || last.opType === 'Conv' || last.opType === 'ConvTranspose') return undefined;
  const from = tensors.get(last.input?.[0] ?? '');
  const to = tensors.get(last.output?.[0] ?? '');
  if (!from || !to || from.layout !== 'vector' || to.layout !== 'vector') return undefined;
  return { input: from.name, output: to.name };
}

export function tensorOf(model: OnnxModel, name: string): TensorInfo {
  const t = model.tensors.get(name);
  if (t) return t;
  const known = [...model.tensors.keys()];
  const near = closestNames(name, known);
  throw new UsageError(`${model.file}: no tensor '${name}'${near.length ? `; closest: ${near.join(', ')}` : ''} (bottleneck backbones inspect ${model.file} lists all ${known.length})`);
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0].trim();
}
