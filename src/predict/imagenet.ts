/**
 * ImageNet top-k from a backbone's own classifier (Keras' decode_predictions): the quickest
 * check that a backbone, its weights and its preprocessing are right.
 */
import type { Backbone } from '../backbones/backbone.ts';
import type { FeatureEngine } from '../engines/engine.ts';
import { classify, type ClassScore, type Classifier } from './classifier.ts';

export interface ImageNetPrediction {
  readonly file: string;
  readonly top: readonly ClassScore[];
}

/** The backbone's classifier as a Classifier; `engine` must run the single cut `backbone.classifier`. */
export function imagenetClassifier(backbone: Backbone, engine: FeatureEngine, classes?: readonly string[]): Classifier {
  const width = engine.outputs[0].size;
  const names = classes ?? Array.from({ length: width }, (_, i) => `class ${i}`);
  // An ONNX file's classifier is its final Gemm: logits (torchvision and timm end there), where
  // the layer graphs end in their softmax. Images are fitted as the model's own pipeline fits them.
  const onnx = backbone.kind === 'onnx' ? backbone : undefined;
  const logits = onnx !== undefined && onnx.model.tensors.get(onnx.classifier ?? '')?.op !== 'Softmax';
  return {
    engine,
    backbone,
    classes: names,
    decode: {
      size: engine.inputSize,
      ...(onnx?.inputResize ? { resize: onnx.inputResize } : {}),
      ...(onnx?.inputInterpolation ? { interpolation: onnx.inputInterpolation } : {}),
      ...(onnx?.inputCropFraction && onnx.inputResize === 'crop' ? { cropFraction: onnx.inputCropFraction } : {}),
    },
    run: async (images, count) => {
      const [scores] = await engine.run(images, count);
      return logits ? softmaxRows(scores, width) : scores;
    },
    dispose: () => engine.dispose(),
  };
}

function softmaxRows(scores: Float32Array, width: number): Float32Array {
  const out = new Float32Array(scores.length);
  for (let r = 0; r < scores.length; r += width) {
    const row = scores.subarray(r, r + width);
    const max = Math.max(...row);
    let sum = 0;
    for (let i = 0; i < width; i++) sum += out[r + i] = Math.exp(row[i] - max);
    for (let i = 0; i < width; i++) out[r + i] /= sum;
  }
  return out;
}

/** `engine` must have been created with the single cut `backbone.classifier`. Undecodable files throw. */
export async function predictImageNet(
  backbone: Backbone,
  engine: FeatureEngine,
  files: readonly string[],
  opts: { topK: number; batch: number; classes?: readonly string[] },
): Promise<ImageNetPrediction[]> {
  const results: ImageNetPrediction[] = [];
  for await (const p of classify(imagenetClassifier(backbone, engine, opts.classes), files, opts)) {
    if ('error' in p) throw new Error(p.error);
    results.push({ file: p.file, top: p.top });
  }
  return results;
}
