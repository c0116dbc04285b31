/**
 * The engine for a user's ONNX file: the graph rewritten so that the cuts are its outputs (see
 * onnx-rewrite.ts), kept in the cache beside the layer graphs' models, and run with
 * onnxruntime on the best provider that starts.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { OnnxBackbone } from '../backbones/backbone.ts';
import { resolveCuts } from '../backbones/cut-shape.ts';
import { materializeModel, readModel } from '../backbones/onnx-file/onnx-model-file.ts';
import { codeOutput, feedName, rewriteForCuts, type CutRequest } from '../backbones/onnx-file/onnx-rewrite.ts';
import { product } from '../util/numbers.ts';
import ort from '../util/onnxruntime.ts';
import type { EngineOptions, FeatureEngine } from './engine.ts';
import { startOnnxSession } from './onnx-session.ts';

/** Bumped whenever rewriteForCuts changes what it writes, so stale cached models are not reused. */
const REWRITE_FORMAT = 2;

export interface OnnxFileEngineOptions extends EngineOptions {
  readonly backbone: OnnxBackbone;
}

export async function createOnnxFileEngine(opts: OnnxFileEngineOptions): Promise<FeatureEngine> {
  const { backbone, cuts } = opts;
  const { model } = backbone;
  const inputSize = opts.inputSize ?? backbone.preprocessing.size;
  const resolved = resolveCuts(backbone, inputSize, cuts);
  const requests: CutRequest[] = resolved.map((r, i) => ({ tensor: r.layer, layout: r.layout ?? 'other', pool: cuts[i].pool ?? null, float16: model.tensors.get(r.layer)!.float16 }));
  const key = createHash('sha256').update(JSON.stringify({ format: REWRITE_FORMAT, weights: backbone.weightsId, input: model.input, requests })).digest('hex').slice(0, 24);
  const dir = path.join(opts.cacheDir, 'onnx', `${path.basename(model.file, '.onnx').replace(/[^\w.-]+/g, '_')}-${key}`);

  const started = await startOnnxSession({
    device: opts.device,
    threads: opts.threads,
    modelFor: async (_provider, rebuild) => {
      const file = path.join(dir, 'model.onnx');
      if (existsSync(file) && !rebuild) return { file, reused: true };
      // Rebuilt from scratch: links to external data may point where the user no longer keeps it.
      if (rebuild) await rm(dir, { recursive: true, force: true });
      const bytes = rewriteForCuts(await readModel(model.file), model.input, requests);
      return { file: await materializeModel(dir, bytes, model), reused: false };
    },
  });
  const { session, provider } = started;
  const notes = [...started.notes];
  const outputs = cuts.map((cut, i) => ({ cut, shape: resolved[i].shape, size: product(resolved[i].shape) }));
  const [h, w] = inputSize;
  const perImage = h * w * 3;
  const runBatch = async (images: Float32Array, count: number): Promise<Float32Array[]> => {
    const result = await session.run({ [feedName(model.input)]: new ort.Tensor('float32', images.subarray(0, count * perImage), [count, h, w, 3]) });
    return outputs.map((_, i) => {
      const t = result[codeOutput(i)];
      const data = t.data as Float32Array;
      t.dispose?.();
      return data;
    });
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
