/**
 * A whole classifier on images: images in, class probabilities out, with the class names and
 * the decoding its inputs need. `classify` streams files through it in batches.
 *
 * A head runs as backbone engine (cut as extract computed it, the very model extract cached)
 * then the head on the codes, rather than as one stitched graph: every head on a backbone then
 * shares one generated backbone model instead of writing its own copy of the weights, and the
 * codes are exactly those extract would cache. `export` writes the stitched graph.
 */
import type { Backbone } from '../backbones/backbone.ts';
import type { Head } from '../train-head/head-folder.ts';
import type { DeviceChoice, EngineChoice, FeatureEngine } from '../engines/engine.ts';
import { createEngine } from '../engines/select-engine.ts';
import type { DecodeOptions } from '../extract/decode-image.ts';
import { decodeOptionsFor, imageBatches } from './image-batches.ts';
import { checkHeadBackbone } from './stitch-head.ts';
import { createHeadPredictor } from '../train-head/head-predictor.ts';
import { UsageError } from '../util/errors.ts';

export interface Classifier {
  /** What runs the backbone, for messages (engine name, provider, notes). */
  readonly engine: FeatureEngine;
  readonly classes: readonly string[];
  readonly backbone: Backbone;
  readonly decode: DecodeOptions;
  /** count preprocessed NHWC images → count × classes probabilities. */
  run(images: Float32Array, count: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

export interface ClassScore {
  readonly index: number;
  readonly label: string;
  readonly probability: number;
}

export type ImagePrediction =
  | { readonly file: string; readonly probabilities: Float32Array; readonly top: readonly ClassScore[] }
  | { readonly file: string; readonly error: string };

export interface EngineSettings {
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  /** Where engines keep generated models (the cache root). */
  readonly cacheDir: string;
}

/** `backbone` must be the head's (checkHeadBackbone says why not). */
export async function headClassifier(backbone: Backbone, head: Head, settings: EngineSettings): Promise<Classifier> {
  checkHeadBackbone(backbone, head);
  const spec = head.config.codeSpec;
  const decode = decodeOptionsFor(spec.preprocessing);
  const cut = { layer: spec.layer, ...(spec.pool ? { pool: spec.pool } : {}) };
  const engine = await createEngine({ ...settings, backbone, cuts: [cut], inputSize: decode.size });
  const predictor = await createHeadPredictor(head.config.architecture, head.params);
  return {
    engine,
    classes: head.config.classes,
    backbone,
    decode,
    async run(images, count) {
      const [codes] = await engine.run(images, count);
      return predictor.predict(codes, count);
    },
    async dispose() {
      await engine.dispose();
      await predictor.dispose();
    },
  };
}

/**
 * A model that is a classifier in its own right and names its classes (a Teachable Machine
 * export, with its metadata.json labels), run as it is: its own head, its own preprocessing,
 * images fitted as its own pipeline fits them (Teachable Machine takes the centre square).
 */
export async function ownClassifier(backbone: Backbone, settings: EngineSettings): Promise<Classifier> {
  if (!backbone.classifier || !backbone.classNames) throw new UsageError(`${backbone.id} does not name its classes, so it cannot classify as it is`);
  const engine = await createEngine({ ...settings, backbone, cuts: [{ layer: backbone.classifier }] });
  if (engine.outputs[0].size !== backbone.classNames.length) {
    await engine.dispose();
    throw new UsageError(`${backbone.id}: its classifier has ${engine.outputs[0].size} outputs but ${backbone.classNames.length} labels`);
  }
  return {
    engine,
    classes: backbone.classNames,
    backbone,
    decode: { size: engine.inputSize, ...(backbone.inputResize && { resize: backbone.inputResize }) },
    run: async (images, count) => (await engine.run(images, count))[0],
    dispose: () => engine.dispose(),
  };
}

export async function* classify(classifier: Classifier, files: readonly string[], opts: { readonly batch: number; readonly topK: number }): AsyncGenerator<ImagePrediction> {
  const { classes } = classifier;
  const width = classes.length;
  for await (const batch of imageBatches(files, { preprocessing: classifier.backbone.preprocessing, decode: classifier.decode, batch: opts.batch })) {
    for (const f of batch.failures) yield { file: f.file, error: f.reason };
    if (batch.files.length === 0) continue;
    const probs = await classifier.run(batch.images, batch.files.length);
    for (const [i, file] of batch.files.entries()) {
      const probabilities = probs.slice(i * width, (i + 1) * width);
      yield { file, probabilities, top: topClasses(probabilities, classes, opts.topK) };
    }
  }
}

export function topClasses(probabilities: Float32Array, classes: readonly string[], k: number): ClassScore[] {
  return [...probabilities.keys()]
    .sort((a, b) => probabilities[b] - probabilities[a] || a - b)
    .slice(0, k)
    .map((index) => ({ index, label: classes[index] ?? `class ${index}`, probability: probabilities[index] }));
}
