/**
 * `bottleneck advise`: which of the four classic transfer-learning cases a dataset falls in
 * (CS231n "Transfer Learning"; the Keras blog "Building powerful image classification models
 * using very little data"), measured rather than guessed, and what to run for it.
 *
 * This is the only part that touches files and the engine: it lists the dataset, runs the
 * backbone's own ImageNet classifier on a small deterministic sample, and hands the numbers to
 * the pure pieces (dataset-size, imagenet-likeness, transfer-case), which keeps those testable
 * on synthetic numbers. Every number the decision uses, and every threshold it is compared
 * with, ends up in the Advice, so nothing is hidden from the user.
 */
import path from 'node:path';
import sharp from 'sharp';
import { requireGraph, type Backbone } from '../backbones/backbone.ts';
import { defaultWeightsDir } from '../backbones/zoo.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { createEngine } from '../engines/select-engine.ts';
import { labelledItems, loadDataset, type Dataset } from '../extract/dataset.ts';
import { classify } from '../predict/classifier.ts';
import { imagenetClassifier } from '../predict/imagenet.ts';
import { findImageNetClasses } from '../predict/imagenet-classes.ts';
import { UsageError } from '../util/errors.ts';
import { sizeReport } from './dataset-size.ts';
import { groupBy, median } from './arrays.ts';
import { classTopLabels, imageScores, similarityMetrics, type SimilarityThresholds } from './imagenet-likeness.ts';
import { DEFAULT_SAMPLE, pickSample } from './sample.ts';
import { buildAdvice, type Advice } from './transfer-case.ts';

export interface AdviseOptions {
  /** A folder of class subfolders (optionally under train/validation/test) or a manifest. */
  readonly data: string;
  /** Must have a classifier; load it with ADVICE_LOAD_CUTS so VGG16 gets its top. */
  readonly backbone: Backbone;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  /** Where engines keep generated models (the cache root). */
  readonly cacheDir: string;
  /** Images to run through the classifier (default 64). */
  readonly sample?: number;
  readonly seed?: number;
  /** Overrides, for experiments; the defaults are the calibrated ones. */
  readonly thresholds?: SimilarityThresholds;
  readonly smallBelow?: number;
  /** ImageNet class names for the per-class summary; default: a class list beside the weights or in the weights folder (not downloaded). */
  readonly classNames?: readonly string[];
  readonly batch?: number;
}

/** The cuts to pass to loadBackbone for advise: VGG16 needs its 553 MB top for 'predictions'. */
export const ADVICE_LOAD_CUTS = [{ layer: 'predictions' }] as const;

export async function adviseDataset(opts: AdviseOptions): Promise<Advice> {
  const backbone = requireGraph(opts.backbone, 'advise', 'its advice reads the layer list of a known backbone; use sweep to compare cuts');
  if (!backbone.classifier) {
    throw new UsageError(`${backbone.id} has no classifier output, so its similarity to the data cannot be measured; advise needs a backbone with one (${['vgg16', 'googlenet', 'squeezenet1_1'].join(', ')})`);
  }
  const requested = opts.sample ?? DEFAULT_SAMPLE;
  if (!Number.isInteger(requested) || requested < 1) throw new UsageError(`--sample ${requested}: must be a whole number ≥ 1`);
  const seed = opts.seed ?? 0;
  const dataset: Dataset = await loadDataset(opts.data);
  // Advice is about a classification task: unlabeled images have no class to count or sample.
  const items = labelledItems(dataset.items);
  if (dataset.classes.length < 2) throw new UsageError(`${opts.data}: advise needs labelled images of at least two classes (class subfolders, or a label column)`);
  const size = sizeReport(items, dataset.classes, opts.smallBelow);

  const sample = pickSample(items, requested, seed);
  // A manifest may list one file under two labels: labels queue per file, in sample order.
  const labelsOf = groupBy(sample, (i) => i.file);
  const engine = await createEngine({ engine: opts.engine, device: opts.device, cacheDir: opts.cacheDir, backbone, cuts: [{ layer: backbone.classifier }] });
  // Names only label the per-class summary: looked up beside the weights, never downloaded here.
  const names = opts.classNames ?? (await findImageNetClasses([path.dirname(backbone.weightsFrom), defaultWeightsDir()]).catch(() => undefined))?.classes.map((c) => c.name);
  const classifier = imagenetClassifier(backbone, engine, names?.length === engine.outputs[0].size ? names : undefined);
  const scored: { label: string; probabilities: Float32Array; top1Index: number }[] = [];
  let failed = 0;
  try {
    for await (const p of classify(classifier, sample.map((i) => i.file), { batch: opts.batch ?? 16, topK: 1 })) {
      if ('error' in p) {
        labelsOf.get(p.file)?.shift();
        failed++;
        continue;
      }
      const probabilities = asProbabilities(p.probabilities);
      scored.push({ label: labelsOf.get(p.file)!.shift()!.label, probabilities, top1Index: imageScores(probabilities).top1Index });
    }
  } finally {
    await classifier.dispose();
  }
  const metrics = similarityMetrics(scored, { failed });
  const perClass = classTopLabels(scored, classifier.classes);
  const [inH, inW] = engine.inputSize;
  return buildAdvice({
    data: opts.data,
    dataset: dataset.name,
    backbone,
    size,
    similarity: {
      classifier: backbone.classifier,
      sample: { requested, seed, images: sample.length, perClass: Object.fromEntries([...groupBy(sample, (i) => i.label).entries()].map(([k, v]) => [k, v.length])) },
      metrics,
      thresholds: opts.thresholds,
      perClass,
      sourceSize: await medianSourceSize(sample.map((i) => i.file)),
      inputSize: { width: inW, height: inH },
    },
  });
}

/** Softmax outputs pass through; anything else (logits of a custom model) is softmaxed. */
function asProbabilities(v: Float32Array): Float32Array {
  let sum = 0;
  let negative = false;
  for (const x of v) {
    sum += x;
    if (x < 0) negative = true;
  }
  if (!negative && Math.abs(sum - 1) < 1e-3) return v;
  const max = Math.max(...v);
  const e = v.map((x) => Math.exp(x - max));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

/** The sampled images' median size, so the advice can warn when they get upsampled a lot (a domain shift of its own). */
async function medianSourceSize(files: readonly string[]): Promise<{ width: number; height: number } | null> {
  const sizes = await Promise.all(
    files.map(async (f) => {
      try {
        const m = await sharp(f).metadata();
        return m.width && m.height ? { width: m.width, height: m.height } : null;
      } catch {
        return null;
      }
    }),
  );
  const ok = sizes.filter((s): s is { width: number; height: number } => s !== null);
  if (ok.length === 0) return null;
  return { width: Math.round(median(ok.map((s) => s.width).sort((a, b) => a - b))), height: Math.round(median(ok.map((s) => s.height).sort((a, b) => a - b))) };
}
