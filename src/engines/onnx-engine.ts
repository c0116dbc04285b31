/**
 * The ONNX engine: writes the backbone (up to the cuts) as an ONNX model, keeps it in the
 * cache, and runs it with onnxruntime-node on CUDA, WebGPU or the CPU.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import ort from '../util/onnxruntime.ts';
import { codeShape, planCuts } from '../backbones/cut.ts';
import { checkWeights } from '../backbones/weights.ts';
import { foldPlan } from '../backbones/fold-batchnorm.ts';
import { sweepDeadWritersTemps, writeFileAtomic } from '../util/atomic-file.ts';
import type { FeatureEngine, GraphEngineOptions } from './engine.ts';
import { startOnnxSession } from './onnx-session.ts';
import { buildOnnxModel, ONNX_INPUT, onnxOutputName, type ConvAlgorithm } from './onnx-model.ts';
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

  const { session, provider, notes } = await startOnnxSession({
    device: opts.device,
    threads: opts.threads,
    modelFor: (candidate, rebuild) => cachedModel(opts, inputSize, candidate === 'cpu' ? (opts.convAlgorithm ?? DEFAULT_CPU_CONV_ALGORITHM) : 'direct', rebuild),
  });
  const outputs = cuts.map((cut) => {
    const shape = codeShape(plan, cut);
    return { cut, shape, size: product(shape) };
  });
  const [h, w] = inputSize;
  const c = plan.inputChannels;
  const live = session;

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
      const input = new ort.Tensor('float32', images.subarray(0, count * h * w * c), [count, h, w, c]);
      const result = await live.run({ [ONNX_INPUT]: input });
      return outputs.map((_, i) => {
        const t = result[onnxOutputName(i)];
        const data = t.data as Float32Array;
        t.dispose?.();
        return data;
      });
    },
    async dispose() {
      await live.release();
    },
  };

  async function cachedModel(o: OnnxEngineOptions, size: readonly [number, number], conv: ConvAlgorithm, rebuild: boolean): Promise<{ file: string; reused: boolean }> {
    const winograd = conv === 'winograd' ? (o.winograd ?? {}) : undefined;
    const key = createHash('sha256')
      .update(JSON.stringify({ format: MODEL_FORMAT, graph: o.backbone.graph, cuts: o.cuts, size, weights: o.backbone.weightsId, conv, winograd }))
      .digest('hex')
      .slice(0, 24);
    const dir = path.join(o.cacheDir, 'onnx');
    const file = path.join(dir, `${o.backbone.graph.name.replace(/[^\w.-]+/g, '_')}-${key}.onnx`);
    if (existsSync(file) && !rebuild) return { file, reused: true };
    checkWeights(plan, o.backbone.weights);
    const folded = foldPlan(plan, o.backbone.weights);
    await mkdir(dir, { recursive: true });
    // A run killed while writing a model (VGG16's is 0.5 GB) leaves its temporary file here.
    await sweepDeadWritersTemps(dir);
    await writeFileAtomic(file, buildOnnxModel({ plan: folded.plan, cuts: o.cuts, weights: folded.weights, convAlgorithm: conv, winograd }));
    return { file, reused: false };
  }
}
