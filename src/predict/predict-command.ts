/**
 * `bottleneck predict`: new images through backbone and head (--head DIR), or through the
 * backbone's own ImageNet classifier (--imagenet). Prints each image's top-k as a small bar
 * chart, or one JSON line per image. Exit 0 when every image was classified, 1 when some could
 * not be decoded (each named on stderr).
 */
import path from 'node:path';
import { loadBackbone } from '../backbones/zoo.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { createEngine } from '../engines/select-engine.ts';
import { loadHead } from '../train-head/head-folder.ts';
import { UsageError } from '../util/errors.ts';
import { classify, headClassifier, type Classifier, type ClassScore } from './classifier.ts';
import { expandImageInputs } from './image-inputs.ts';
import { imagenetClassifier, loadImageNetClasses } from './imagenet.ts';

export interface PredictCommand {
  readonly images: readonly string[];
  readonly head?: string;
  readonly imagenet: boolean;
  /** The backbone for --imagenet; a head names its own. */
  readonly backbone: string;
  readonly weights?: string;
  readonly topK: number;
  readonly batch: number;
  readonly json: boolean;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  readonly cacheRoot: string;
}

export async function runPredictCommand(cmd: PredictCommand): Promise<number> {
  if (!cmd.head === !cmd.imagenet) throw new UsageError('predict needs either --head DIR (a trained head) or --imagenet (the backbone’s own classifier)');
  const files = await expandImageInputs(cmd.images);
  const classifier = cmd.head ? await openHeadClassifier(cmd) : await openImagenetClassifier(cmd);
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
      if (cmd.json) console.log(JSON.stringify({ file: p.file, top: p.top.map(({ label, probability }) => ({ label, probability })) }));
      else console.log(formatPrediction(p.file, p.top));
    }
  } finally {
    await classifier.dispose();
  }
  return failed > 0 ? 1 : 0;
}

async function openHeadClassifier(cmd: PredictCommand): Promise<Classifier> {
  const head = await loadHead(cmd.head!);
  const spec = head.config.codeSpec;
  const backbone = await loadBackbone(spec.backbone, { weights: cmd.weights, cuts: [{ layer: spec.layer }] });
  return headClassifier(backbone, head, { engine: cmd.engine, device: cmd.device, cacheDir: cmd.cacheRoot });
}

async function openImagenetClassifier(cmd: PredictCommand): Promise<Classifier> {
  const backbone = await loadBackbone(cmd.backbone, { weights: cmd.weights, cuts: [{ layer: 'predictions' }] });
  if (!backbone.classifier) throw new UsageError(`${backbone.id} has no classifier output`);
  const engine = await createEngine({ engine: cmd.engine, backbone, cuts: [{ layer: backbone.classifier }], device: cmd.device, cacheDir: cmd.cacheRoot });
  return imagenetClassifier(backbone, engine, await loadImageNetClasses(path.dirname(backbone.weightsFrom)));
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
