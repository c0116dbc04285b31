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
  const names = classes ?? Array.from({ length: engine.outputs[0].size }, (_, i) => `class ${i}`);
  return {
    engine,
    backbone,
    classes: names,
    decode: { size: engine.inputSize },
    run: async (images, count) => (await engine.run(images, count))[0],
    dispose: () => engine.dispose(),
  };
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
