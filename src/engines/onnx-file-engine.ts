/**
 * The engine for a user's ONNX file: the graph rewritten so that the cuts are its outputs (see
 * onnx-rewrite.ts), kept in the cache beside the layer graphs' models, and run with
 * onnxruntime on the best provider that starts.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { OnnxBackbone } from '../backbones/backbone.ts';
import { resolveCuts } from '../backbones/cut-shape.ts';
import { materializeModel, readModel } from '../backbones/onnx-file/onnx-model-file.ts';
import { codeOutput, feedName, rewriteForCuts, type CutRequest } from '../backbones/onnx-file/onnx-rewrite.ts';
import { product } from '../util/numbers.ts';
import type { EngineOptions, FeatureEngine } from './engine.ts';
import { startOnnxSession, type CachedModel } from './onnx-session.ts';
import { readCalibration } from './quantize/calibration.ts';
import { calibratedNote, convPathTag, int8ConvPath, int8KeyFormat, quantizeModel } from './quantize/int8-model.ts';
import { encodeProto } from '../util/onnx-graph.ts';
import { fuseAttention } from './fuse-attention.ts';
import { UserError } from '../util/errors.ts';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/**
 * Bumped whenever what is written here changes, so stale cached models are not reused.
 * 3: attention blocks fused (fuse-attention.ts).
 */
const REWRITE_FORMAT = 3;

export interface OnnxFileEngineOptions extends EngineOptions {
  readonly backbone: OnnxBackbone;
}

/** Where this backbone's rewritten models for these cuts are kept, and the cut requests. */
function rewritePlan(opts: OnnxFileEngineOptions) {
  const { backbone, cuts } = opts;
  const { model } = backbone;
  const inputSize = opts.inputSize ?? backbone.preprocessing.size;
  const resolved = resolveCuts(backbone, inputSize, cuts);
  const requests: CutRequest[] = resolved.map((r, i) => ({ tensor: r.layer, layout: r.layout ?? 'other', pool: cuts[i].pool ?? null, float16: model.tensors.get(r.layer)!.float16 }));
  const key = createHash('sha256').update(JSON.stringify({ format: REWRITE_FORMAT, weights: backbone.weightsId, input: model.input, requests })).digest('hex').slice(0, 24);
  const dir = path.join(opts.cacheDir, 'onnx', `${path.basename(model.file, '.onnx').replace(/[^\w.-]+/g, '_')}-${key}`);
  const rewritten = async () => {
    const cut = rewriteForCuts(await readModel(model.file), model.input, requests);
    // onnxruntime's CPU provider has MultiHeadAttention for float32 only.
    return encodeProto(model.input.elemType === 'float32' ? fuseAttention(cut, (t) => model.tensors.get(t)?.dims).model : cut);
  };
  return { inputSize, resolved, requests, dir, rewritten };
}

/** The rewritten float32 model, in the plan's folder. */
async function fp32File(opts: OnnxFileEngineOptions, rebuild: boolean): Promise<CachedModel> {
  const { dir, rewritten } = rewritePlan(opts);
  const file = path.join(dir, 'model.onnx');
  if (existsSync(file) && !rebuild) return { file, reused: true };
  // Rebuilt from scratch: links to external data may point where the user no longer keeps it.
  if (rebuild) await rm(dir, { recursive: true, force: true });
  return { file: await materializeModel(dir, await rewritten(), opts.backbone.model), reused: false };
}

/**
 * The int8 model of these cuts (outputs code0, …, input as the fp32 rewrite's), in a folder
 * named by the calibration it was quantised with; external data it still reads (weights left
 * float, LayerNorm's say) is linked beside it. `export` stitches a head onto it.
 */
export async function cachedInt8FileModel(opts: OnnxFileEngineOptions, rebuild = false): Promise<CachedModel> {
  const { model } = opts.backbone;
  if (model.input.elemType !== 'float32') throw new UserError(`${model.file}: --precision int8 needs a float32 model; this one computes in float16`);
  if (!opts.calibration) throw new Error('onnx engine: precision int8 needs a calibration source');
  const { dir } = rewritePlan(opts);
  const convPath = opts.int8ConvPath ?? int8ConvPath();
  const tag = convPathTag(convPath);
  const folderFor = (calibration: string) => `${dir}-int8-q${int8KeyFormat('onnx')}${tag ? `-${tag}` : ''}-${calibration}`;
  const stored = await readCalibration(opts.cacheDir, opts.calibration.key);
  if (stored && existsSync(path.join(folderFor(stored.id), 'model.onnx')) && !rebuild) return { file: path.join(folderFor(stored.id), 'model.onnx'), reused: true };
  // Quantised from the float32 rewrite in the cache, whose folder has the external data linked in.
  const float = await fp32File(opts, rebuild);
  const fp32 = onnx.ModelProto.decode(await readFile(float.file));
  const q = await quantizeModel({ fp32, input: feedName(model.input), cacheDir: opts.cacheDir, source: opts.calibration, modelDir: path.dirname(float.file), threads: opts.threads, convPath, label: model.file });
  const folder = folderFor(q.calibration.id);
  if (rebuild) await rm(folder, { recursive: true, force: true });
  const file = await materializeModel(folder, encodeProto(q.model), model);
  return { file, reused: false, ...(q.measured > 0 ? { note: calibratedNote(q) } : {}) };
}

export async function createOnnxFileEngine(opts: OnnxFileEngineOptions): Promise<FeatureEngine> {
  const { backbone, cuts } = opts;
  const { model } = backbone;
  const { inputSize, resolved } = rewritePlan(opts);
  const int8Notes: string[] = [];
  const int8File = async (rebuild: boolean) => {
    const { note, ...cached } = await cachedInt8FileModel(opts, rebuild);
    if (note) int8Notes.push(note);
    return cached;
  };
  const started = await startOnnxSession({
    device: opts.device,
    threads: opts.threads,
    modelFor: (_provider, rebuild) => (opts.precision === 'int8' ? int8File(rebuild) : fp32File(opts, rebuild)),
  });
  const { session, provider } = started;
  const notes = [...started.notes, ...int8Notes];
  const outputs = cuts.map((cut, i) => ({ cut, shape: resolved[i].shape, size: product(resolved[i].shape) }));
  const [h, w] = inputSize;
  const perImage = h * w * 3;
  const fetches = outputs.map((_, i) => codeOutput(i));
  const runBatch = async (images: Float32Array, count: number): Promise<Float32Array[]> => {
    const result = await session.run({ [feedName(model.input)]: { data: images.subarray(0, count * perImage), dims: [count, h, w, 3] } }, fetches);
    return fetches.map((name) => result[name]);
  };
  if (!model.dynamicBatch) notes.push(`${model.file} fixes a batch of one inside its graph: images run one at a time`);

  return {
    name: 'onnx',
    provider,
    inputSize,
    outputs,
    notes,
    async run(images, count) {
      if (images.length < count * perImage) throw new Error(`onnx engine: expected ${count}×${h}×${w}×3 floats, got ${images.length}`);
      if (model.dynamicBatch) return runBatch(images, count);
      const codes = outputs.map((o) => new Float32Array(count * o.size));
      for (let i = 0; i < count; i++) {
        const one = await runBatch(images.subarray(i * perImage, (i + 1) * perImage), 1);
        one.forEach((c, k) => codes[k].set(c, i * outputs[k].size));
      }
      return codes;
    },
    async dispose() {
      await session.release();
    },
  };
}
