/**
 * `bottleneck predict`: new images through backbone and head (--head DIR), or through the
 * backbone's own ImageNet classifier (--imagenet). Prints each image's top-k as a small bar
 * chart, or one JSON line per image. Exit 0 when every image was classified, 1 when some could
 * not be decoded (each named on stderr).
 */
import { backboneName } from '../backbones/backbone.ts';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { defaultWeightsDir, loadBackbone, ZOO_NAMES } from '../backbones/zoo.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { createEngine } from '../engines/select-engine.ts';
import { loadHead } from '../train-head/head-folder.ts';
import { cacheRootOf, defineCommand, numberOption, withBackbone, withBatching, withCache, withEngine, withWeights, WHOLE_POSITIVE } from '../util/cli-options.ts';
import { UsageError } from '../util/errors.ts';
import { classify, ownClassifier, type Classifier, type ClassScore, type ImagePrediction } from './classifier.ts';
import { predictWithHead } from './predict-head.ts';
import { progressSink } from '../extract/progress-reporter.ts';
import { listenForInterrupts } from '../util/interrupt.ts';
import { expandImageInputs } from './image-inputs.ts';
import { imagenetClassifier } from './imagenet.ts';
import { IMAGENET_CLASS_COUNT, imagenetClasses } from './imagenet-classes.ts';

export const predictCommand = defineCommand(
  'predict <images..>',
  'classify images (files, folders or quoted globs) with a trained head (--head DIR) or the backbone’s ImageNet classifier (--imagenet)',
  (y) =>
    withBatching(withEngine(withWeights(withBackbone(withCache(y), ZOO_NAMES))))
      .positional('images', { type: 'string', array: true, demandOption: true })
      .option('head', { type: 'string', describe: 'a head folder written by train-head; its backbone, cut and preprocessing are used' })
      .option('imagenet', { type: 'boolean', default: false, alias: 'own', describe: "the backbone's own classifier: ImageNet's 1000 classes, or a Teachable Machine export's head and labels" })
      .option('imagenet-classes', { type: 'string', describe: "ImageNet class names file (Keras' imagenet_class_index.json or a JSON array); default: downloaded once into the weights folder" })
      .option('top-k', numberOption('top-k', 'classes shown per image', WHOLE_POSITIVE, 5))
      .option('json', { type: 'boolean', default: false, describe: 'one JSON line per image' }),
  async (argv) => {
    process.exitCode = await runPredictCommand({
      ...argv,
      images: argv.images!,
      imagenetClasses: argv['imagenet-classes'],
      topK: argv['top-k'],
      cacheRoot: argv.cache,
    });
  },
);

export interface PredictCommand {
  readonly images: readonly string[];
  readonly head?: string;
  readonly imagenet: boolean;
  /** The backbone for --imagenet; a head names its own. */
  readonly backbone: string;
  readonly weights?: string;
  /**
   * --imagenet-classes FILE: the class names for --imagenet, as Keras' imagenet_class_index.json
   * or a JSON array of 1000 names. Without it they come from the weights folder, else are
   * downloaded there once, else are shown as `class N`.
   */
  readonly imagenetClasses?: string;
  readonly topK: number;
  readonly batch: number;
  readonly concurrency: number;
  readonly json: boolean;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  /** Default: the head's recorded cache folder, else ./cache. */
  readonly cacheRoot?: string;
}

export async function runPredictCommand(cmd: PredictCommand): Promise<number> {
  if (!cmd.head === !cmd.imagenet) throw new UsageError('predict needs either --head DIR (a trained head) or --own / --imagenet (the model’s own classifier)');
  const files = await expandImageInputs(cmd.images);
  if (cmd.head) return predictHeadCommand(cmd, files);
  const { classifier, wnids } = await openImagenetClassifier(cmd);
  let failed = 0;
  try {
    for (const note of classifier.engine.notes) console.error(`note: ${note}`);
    if (!cmd.json) console.error(`${backboneName(classifier.backbone)} on ${classifier.engine.name}/${classifier.engine.provider}, ${files.length} image(s)`);
    for await (const p of classify(classifier, files, { batch: cmd.batch, topK: cmd.topK })) {
      if (!printPrediction(p, cmd.json, wnids)) failed++;
    }
  } finally {
    await classifier.dispose();
  }
  return failed > 0 ? 1 : 0;
}

/** With a head: the images go through the head's cache key, then the head (predict-head.ts). */
async function predictHeadCommand(cmd: PredictCommand, files: readonly string[]): Promise<number> {
  const head = await loadHead(cmd.head!);
  const cacheRoot = cacheRootOf(cmd.cacheRoot, head.config.cacheRoot);
  const sink = progressSink(cmd.json ? 'none' : 'bar');
  const interrupts = listenForInterrupts();
  try {
    const result = await predictWithHead({ ...cmd, head, files, cacheRoot, signal: interrupts.signal, onProgress: (p) => sink.update(p) }).finally(() => sink.stop());
    if (!cmd.json) console.error(`${head.config.codeSpec.backbone} ${head.config.codeSpec.layer} → head, ${files.length} image(s), ${result.computed} new to the cache${result.engine ? ` (${result.engine})` : ''}`);
    let failed = 0;
    for (const p of result.predictions) if (!printPrediction(p, cmd.json)) failed++;
    return failed > 0 ? 1 : 0;
  } finally {
    interrupts.dispose();
  }
}

/** One image's answer, as JSON or a small bar chart; false for an image that could not be read. */
function printPrediction(p: ImagePrediction, json: boolean, wnids?: readonly (string | null)[]): boolean {
  if ('error' in p) {
    if (json) console.log(JSON.stringify({ file: p.file, error: p.error }));
    else console.error(`bottleneck: skipped ${p.error}`);
    return false;
  }
  if (json) {
    const top = p.top.map(({ index, label, probability }) => ({ label, ...(wnids?.[index] ? { wnid: wnids[index] } : {}), probability }));
    console.log(JSON.stringify({ file: p.file, top }));
  } else console.log(formatPrediction(p.file, p.top));
  return true;
}

/** The backbone's own classifier, and each class's WordNet id where known (for --json). */
async function openImagenetClassifier(cmd: PredictCommand): Promise<{ classifier: Classifier; wnids?: readonly (string | null)[] }> {
  const backbone = await loadBackbone(cmd.backbone, { weights: cmd.weights, cuts: [{ layer: 'predictions' }] });
  // A model that names its own classes (a Teachable Machine export's labels) runs as it is.
  if (backbone.classNames) return { classifier: await ownClassifier(backbone, { engine: cmd.engine, device: cmd.device, cacheDir: cacheRootOf(cmd.cacheRoot) }) };
  if (!backbone.classifier) throw new UsageError(`${backbone.id} has no classifier output`);
  const engine = await createEngine({ engine: cmd.engine, backbone, cuts: [{ layer: backbone.classifier }], device: cmd.device, cacheDir: cacheRootOf(cmd.cacheRoot) });
  try {
    const outputs = engine.outputs[0].size;
    if (outputs !== IMAGENET_CLASS_COUNT) {
      if (cmd.imagenetClasses) throw new UsageError(`--imagenet-classes ${cmd.imagenetClasses}: ${backboneName(backbone)} has ${outputs} outputs, not the ${IMAGENET_CLASS_COUNT} ImageNet classes`);
      // Not an ImageNet-1k classifier (a small TF.js model, say): its classes have no names to look up.
      return { classifier: imagenetClassifier(backbone, engine) };
    }
    // The folder of the weights actually loaded first (it may hold the class list beside them), then the weights folder.
    const beside = existsSync(backbone.weightsFrom) ? [path.dirname(backbone.weightsFrom)] : [];
    const found = await imagenetClasses({ file: cmd.imagenetClasses, weightsDir: defaultWeightsDir(), alsoLookIn: beside });
    if (found.origin === 'generic') console.error(`note: ${found.source}`);
    if (found.origin === 'download') console.error(`note: ImageNet class names saved to ${found.source}`);
    return { classifier: imagenetClassifier(backbone, engine, found.classes.map((c) => c.name)), wnids: found.classes.map((c) => c.wnid) };
  } catch (error) {
    await engine.dispose();
    throw error;
  }
}

const BAR_WIDTH = 24;
const BLOCKS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/** The file, then one line per class: label, a bar as long as the probability, the percentage. */
export function formatPrediction(file: string, top: readonly ClassScore[]): string {
  const labelWidth = Math.max(...top.map((s) => s.label.length));
  const lines = top.map((s) => {
    const eighths = Math.round(s.probability * BAR_WIDTH * 8);
    const bar = '█'.repeat(Math.floor(eighths / 8)) + BLOCKS[eighths % 8];
    return `  ${s.label.padEnd(labelWidth)}  ${bar.padEnd(BAR_WIDTH)}  ${(s.probability * 100).toFixed(1).padStart(5)}%`;
  });
  return [file, ...lines].join('\n');
}
