/**
 * `bottleneck predict`: new images through backbone and head (--head DIR), or through the
 * backbone's own ImageNet classifier (--imagenet). Prints each image's top-k as a small bar
 * chart, or one JSON line per image. Exit 0 when every image was classified, 1 when some could
 * not be decoded (each named on stderr).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { defaultWeightsDir, loadBackbone } from '../backbones/zoo.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { createEngine } from '../engines/select-engine.ts';
import { loadHead } from '../train-head/head-folder.ts';
import { UsageError } from '../util/errors.ts';
import { classify, headClassifier, ownClassifier, type Classifier, type ClassScore } from './classifier.ts';
import { loadHeadBackbone } from '../train-head/head-backbone.ts';
import { expandImageInputs } from './image-inputs.ts';
import { imagenetClassifier } from './imagenet.ts';
import { IMAGENET_CLASS_COUNT, imagenetClasses } from './imagenet-classes.ts';

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
  readonly json: boolean;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  readonly cacheRoot: string;
}

export async function runPredictCommand(cmd: PredictCommand): Promise<number> {
  if (!cmd.head === !cmd.imagenet) throw new UsageError('predict needs either --head DIR (a trained head) or --own / --imagenet (the model’s own classifier)');
  const files = await expandImageInputs(cmd.images);
  const { classifier, wnids } = cmd.head ? { classifier: await openHeadClassifier(cmd), wnids: undefined } : await openImagenetClassifier(cmd);
  let failed = 0;
  try {
    for (const note of classifier.engine.notes) console.error(`note: ${note}`);
    if (!cmd.json) console.error(`${classifier.backbone.graph.name} on ${classifier.engine.name}/${classifier.engine.provider}, ${files.length} image(s)`);
    for await (const p of classify(classifier, files, { batch: cmd.batch, topK: cmd.topK })) {
      if ('error' in p) {
        failed++;
        if (cmd.json) console.log(JSON.stringify({ file: p.file, error: p.error }));
        else console.error(`bottleneck: skipped ${p.error}`);
        continue;
      }
      if (cmd.json) {
        const top = p.top.map(({ index, label, probability }) => ({ label, ...(wnids?.[index] ? { wnid: wnids[index] } : {}), probability }));
        console.log(JSON.stringify({ file: p.file, top }));
      } else console.log(formatPrediction(p.file, p.top));
    }
  } finally {
    await classifier.dispose();
  }
  return failed > 0 ? 1 : 0;
}

async function openHeadClassifier(cmd: PredictCommand): Promise<Classifier> {
  const head = await loadHead(cmd.head!);
  const backbone = await loadHeadBackbone(head, { weights: cmd.weights });
  return headClassifier(backbone, head, { engine: cmd.engine, device: cmd.device, cacheDir: cmd.cacheRoot });
}

/** The backbone's own classifier, and each class's WordNet id where known (for --json). */
async function openImagenetClassifier(cmd: PredictCommand): Promise<{ classifier: Classifier; wnids?: readonly (string | null)[] }> {
  const backbone = await loadBackbone(cmd.backbone, { weights: cmd.weights, cuts: [{ layer: 'predictions' }] });
  // A model that names its own classes (a Teachable Machine export's labels) runs as it is.
  if (backbone.classNames) return { classifier: await ownClassifier(backbone, { engine: cmd.engine, device: cmd.device, cacheDir: cmd.cacheRoot }) };
  if (!backbone.classifier) throw new UsageError(`${backbone.id} has no classifier output`);
  const engine = await createEngine({ engine: cmd.engine, backbone, cuts: [{ layer: backbone.classifier }], device: cmd.device, cacheDir: cmd.cacheRoot });
  try {
    const outputs = engine.outputs[0].size;
    if (outputs !== IMAGENET_CLASS_COUNT) {
      if (cmd.imagenetClasses) throw new UsageError(`--imagenet-classes ${cmd.imagenetClasses}: ${backbone.graph.name} has ${outputs} outputs, not the ${IMAGENET_CLASS_COUNT} ImageNet classes`);
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
