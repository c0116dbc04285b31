/**
 * The ONNX engine: writes the backbone (up to the cuts) as an ONNX model, keeps it in the
 * cache, and runs it with onnxruntime-node on CUDA, WebGPU or the CPU.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { codeShape, planCuts } from '../backbones/cut.ts';
import { checkWeights } from '../backbones/weights.ts';
import { foldPlan } from '../backbones/fold-batchnorm.ts';
import { sweepDeadWritersTemps, writeFileAtomic } from '../util/atomic-file.ts';
import type { FeatureEngine, GraphEngineOptions } from './engine.ts';
import { startOnnxSession, type CachedModel } from './onnx-session.ts';
import { buildOnnxModel, buildOnnxProto, ONNX_INPUT, onnxOutputName, type ConvAlgorithm } from './onnx-model.ts';
import { readCalibration } from './quantize/calibration.ts';
import { calibratedNote, convPathTag, int8ConvPath, QDQ_FORMAT, quantizeModel } from './quantize/int8-model.ts';
import { encodeProto } from '../util/onnx-graph.ts';
import type { WinogradOptions } from './onnx-winograd.ts';
import { product } from '../util/numbers.ts';

/** Bumped whenever buildOnnxModel changes what it writes, so stale cached models are not reused. */
const MODEL_FORMAT = 2;

export interface OnnxEngineOptions extends GraphEngineOptions {
  /**
   * How the CPU provider computes 3×3 stride-1 convs (see onnx-winograd.ts); GPU providers
   * always get direct convs, which their own kernels do best.
   */
  readonly convAlgorithm?: ConvAlgorithm;
  readonly winograd?: WinogradOptions;
}

/** Winograd F(4×4, 3×3) runs VGG16's conv base 1.6× faster than direct on 2 AVX2 cores (bench/winograd.ts). */
export const DEFAULT_CPU_CONV_ALGORITHM: ConvAlgorithm = 'winograd';

export async function createOnnxEngine(opts: OnnxEngineOptions): Promise<FeatureEngine> {
  const { backbone, cuts } = opts;
  const inputSize = opts.inputSize ?? backbone.preprocessing.size;
  const plan = planCuts(backbone.graph, inputSize, cuts);

  const int8Notes: string[] = [];
  const { session, provider, notes: sessionNotes } = await startOnnxSession({
    device: opts.device,
    threads: opts.threads,
    modelFor: (candidate, rebuild) =>
      opts.precision === 'int8'
        ? cachedInt8Model(opts, rebuild).then(({ note, ...model }) => {
            if (note) int8Notes.push(note);
            return model;
          })
        : cachedModel(opts, candidate === 'cpu' ? (opts.convAlgorithm ?? DEFAULT_CPU_CONV_ALGORITHM) : 'direct', rebuild),
  });
  const outputs = cuts.map((cut) => {
    const shape = codeShape(plan, cut);
    return { cut, shape, size: product(shape) };
  });
  const notes = [...sessionNotes, ...int8Notes];
  const [h, w] = inputSize;
  const c = plan.inputChannels;
  const live = session;
  const fetches = outputs.map((_, i) => onnxOutputName(i));

  return {
    name: 'onnx',
    provider,
    inputSize,
    outputs,
    notes,
    async run(images, count) {
      if (images.length < count * h * w * c) {
        throw new Error(`onnx engine: expected ${count}×${h}×${w}×${c} floats, got ${images.length}`);
      }
      const result = await live.run({ [ONNX_INPUT]: { data: images.subarray(0, count * h * w * c), dims: [count, h, w, c] } }, fetches);
      return fetches.map((name) => result[name]);
    },
    async dispose() {
      await live.release();
    },
  };
}

function modelFile(o: OnnxEngineOptions, parts: object): string {
  const key = createHash('sha256')
    .update(JSON.stringify({ format: MODEL_FORMAT, graph: o.backbone.graph, cuts: o.cuts, weights: o.backbone.weightsId, ...parts }))
    .digest('hex')
    .slice(0, 24);
  return path.join(o.cacheDir, 'onnx', `${o.backbone.graph.name.replace(/[^\w.-]+/g, '_')}-${key}.onnx`);
}

async function writeModel(file: string, bytes: () => Promise<Uint8Array> | Uint8Array): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  // A run killed while writing a model (VGG16's is 0.5 GB) leaves its temporary file here.
  await sweepDeadWritersTemps(path.dirname(file));
  await writeFileAtomic(file, await bytes());
}

const sizeOf = (o: OnnxEngineOptions) => o.inputSize ?? o.backbone.preprocessing.size;

function foldedPlan(o: OnnxEngineOptions) {
  const plan = planCuts(o.backbone.graph, sizeOf(o), o.cuts);
  checkWeights(plan, o.backbone.weights);
  return foldPlan(plan, o.backbone.weights);
}

async function cachedModel(o: OnnxEngineOptions, conv: ConvAlgorithm, rebuild: boolean): Promise<CachedModel> {
  const winograd = conv === 'winograd' ? (o.winograd ?? {}) : undefined;
  const file = modelFile(o, { size: sizeOf(o), conv, winograd });
  if (existsSync(file) && !rebuild) return { file, reused: true };
  const folded = foldedPlan(o);
  await writeModel(file, () => buildOnnxModel({ plan: folded.plan, cuts: o.cuts, weights: folded.weights, convAlgorithm: conv, winograd }));
  return { file, reused: false };
}

/**
 * The int8 model of these cuts (outputs as the fp32 engine's, input ONNX_INPUT): from the cache,
 * else quantised now with the stored calibration, measuring only the ranges it lacks. Direct
 * convs: Winograd's transforms would widen the int8 ranges. `export` stitches a head onto it.
 */
export async function cachedInt8Model(o: OnnxEngineOptions, rebuild = false): Promise<CachedModel> {
  if (!o.calibration) throw new Error('onnx engine: precision int8 needs a calibration source');
  const convPath = o.int8ConvPath ?? int8ConvPath();
  const tag = convPathTag(convPath);
  const fileFor = (calibration: string) => modelFile(o, { size: sizeOf(o), conv: 'direct', precision: 'int8', qdq: QDQ_FORMAT, calibration, ...(tag ? { convPath: tag } : {}) });
  const stored = await readCalibration(o.cacheDir, o.calibration.key);
  if (stored && existsSync(fileFor(stored.id)) && !rebuild) return { file: fileFor(stored.id), reused: true };
  const folded = foldedPlan(o);
  const fp32 = buildOnnxProto({ plan: folded.plan, cuts: o.cuts, weights: folded.weights, convAlgorithm: 'direct' });
  const q = await quantizeModel({ fp32, input: ONNX_INPUT, cacheDir: o.cacheDir, source: o.calibration, threads: o.threads, convPath, label: o.backbone.graph.name });
  const file = fileFor(q.calibration.id);
  await writeModel(file, () => encodeProto(q.model));
  return { file, reused: false, ...(q.measured > 0 ? { note: calibratedNote(q) } : {}) };
}
