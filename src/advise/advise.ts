/**
 * `bottleneck advise`: which of the four classic transfer-learning cases a dataset falls in
 * (CS231n "Transfer Learning"; the Keras blog "Building powerful image classification models
 * using very little data"), measured rather than guessed, and what to run for it.
 *
 *                      similar to ImageNet                 different from ImageNet
 *   small data   1: frozen backbone, head on the         3: head on codes from an EARLIER layer
 *                   bottleneck codes                        (late features are too ImageNet-
 *                                                           specific), with augmentation
 *   large data   2: fine-tune the top block(s) too       4: fine-tune more of the network
 *
 * Size is counted from the folder listing (no decoding). Similarity is measured by running the
 * backbone's own ImageNet classifier on a small deterministic sample. Photos of ImageNet-like
 * things get confident predictions, and different ones for different classes (tabby for the
 * cats, terriers for the dogs). Unfamiliar images get either flat predictions (noise, tiny
 * upsampled images) or the same few catch-all classes for every class of the dataset (every
 * cell-like blob a "nematode", every digit a "hook" or "nail"), often confidently: so both the
 * entropy and the overlap between classes are tested. Every number the decision uses, and every
 * threshold it is compared with, ends up in the Advice, so nothing is hidden from the user.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import sharp from 'sharp';
import type { Backbone } from '../backbones/backbone.ts';
import { planGraph } from '../backbones/graph-plan.ts';
import { resolveLayer } from '../backbones/layer-graph.ts';
import type { Split } from '../cache/code-rows.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { createEngine } from '../engines/select-engine.ts';
import { defaultWeightsDir } from '../backbones/zoo.ts';
import { loadDataset, type Dataset, type DatasetItem } from '../extract/dataset.ts';
import { classify } from '../predict/classifier.ts';
import { imagenetClassifier } from '../predict/imagenet.ts';
import { findImageNetClasses } from '../predict/imagenet-classes.ts';
import { hashUnit } from '../train-head/splits.ts';
import { UsageError } from '../util/errors.ts';

export const ADVICE_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Thresholds

/**
 * Training images per class below which a dataset is "small" for fine-tuning.
 *
 * Why 1000: fine-tuning a block of VGG16 (block5 alone is 7 M weights) on a few hundred images
 * per class memorises them unless heavily regularised, while a linear head on frozen codes has
 * only codes × classes weights. The Keras blog calls 1000 images per class (dogs-vs-cats,
 * 2000 training images) "very little data" and still gains from fine-tuning block5 there
 * (about 90% → 94%), with strong augmentation and SGD at lr 1e-4; ImageNet itself has ~1300 per
 * class. So ~1000 per class is where fine-tuning starts to pay off reliably, which is also the
 * common rule of thumb. Within a factor 1.5 of the line the advice names the neighbouring case
 * as the thing to try next.
 */
export const SMALL_DATA_PER_CLASS = 1000;
/** Median per class within [threshold / 1.5, threshold × 1.5) is reported as borderline. */
export const BORDERLINE_FACTOR = 1.5;

export interface SimilarityThresholds {
  /** Similar needs a mean normalised entropy (entropy / ln K) at most this high… */
  readonly maxEntropy: number;
  /** …and a mean class overlap (see SimilarityMetrics.classOverlap) at most this high. */
  readonly maxOverlap: number;
}

/**
 * Calibrated by measurement (class-balanced samples of 16 and 64 images, 40 draws each, from
 * 192 scored images per set) with squeezenet1_1 and googlenet on ../shared/datasets and on
 * generated images; 5th–95th percentiles at 64 images:
 *
 *                      squeezenet1_1            googlenet
 *                      entropy    overlap       entropy    overlap
 *   dogs-vs-cats       0.25–0.31  0.05–0.09     0.24–0.31  0.04–0.07
 *   flowers            0.27–0.32  0.16–0.22     0.24–0.31  0.21–0.28
 *   cifar10-mini 32px  0.53–0.57  0.38–0.44     0.48–0.53  0.30–0.35
 *   uniform noise      0.46–0.47  0.66–0.67     0.43–0.44  0.56–0.59
 *   stripes, checks    0.42–0.46  0.30–0.36     0.31–0.33  0.52–0.57
 *   digits (text)      0.36–0.38  0.53–0.55     0.27–0.29  0.50–0.53
 *   blobs (cell-like)  0.29–0.30  0.64–0.66     0.14–0.15  0.85–0.87
 *   demo shapes        0.32–0.36  0.27–0.30     0.31–0.34  0.39–0.43
 *
 * Entropy alone (or top-1 confidence, which carries the same information) does not separate
 * them: GoogLeNet calls the cell-like blobs "nematode" with 0.77 mean confidence, more sure
 * than of any photo. What gives alien images away is that the network sees the same few
 * catch-all classes in every class of the dataset (nematode, stole, velvet, hook, envelope),
 * so their predictions overlap across classes; photos of ImageNet-like things do not.
 *
 * maxEntropy 0.38: photos reach 0.32 at 64 images (0.37 at 16), flat sets (CIFAR upsampled,
 * noise, stripes) start at 0.42. maxOverlap 0.30: photos reach 0.28 (flowers on GoogLeNet),
 * collapsed sets start at 0.30, except the demo's shapes on SqueezeNet (0.27–0.30), which is
 * genuinely borderline: they are drawn to be object-like (ping-pong ball, envelope), and a
 * linear probe on 120 of them scores 0.96 on SqueezeNet's late cut against 0.81 on pool5, so
 * the "similar" they get (flagged borderline, with sweep suggested) is the useful answer.
 */
export const SIMILARITY_THRESHOLDS: SimilarityThresholds = { maxEntropy: 0.38, maxOverlap: 0.3 };

/** A decisive number this close to its threshold is reported as borderline. */
export const SIMILARITY_MARGIN = 0.03;

/** Images sampled for the similarity measurement when `sample` is not given. */
export const DEFAULT_SAMPLE = 64;

// ---------------------------------------------------------------------------------------------
// Types: plain data, so `--json` can print an Advice as it is.

export type SizeVerdict = 'small' | 'large';
export type SimilarityVerdict = 'similar' | 'different';
export type TransferCase = 1 | 2 | 3 | 4;

export interface CountStats {
  readonly total: number;
  readonly min: number;
  readonly median: number;
  readonly max: number;
  /** Images per class, every class of the dataset (0 where a class is absent from this split). */
  readonly perClass: Readonly<Record<string, number>>;
}

export interface SizeReport {
  readonly classes: number;
  readonly all: CountStats;
  /** One entry per split folder; empty without split folders. */
  readonly splits: readonly { readonly split: Split; readonly stats: CountStats }[];
  /** What the verdict counts: the train split when there is one, else every image. */
  readonly basis: 'train' | 'all';
  /** Median images per class in `basis`: the number compared with the threshold. */
  readonly perClass: number;
  readonly threshold: number;
  readonly verdict: SizeVerdict;
  /** Within BORDERLINE_FACTOR of the threshold. */
  readonly borderline: boolean;
  /** The smallest class holds under a quarter of the median. */
  readonly imbalanced: boolean;
}

export interface SimilarityMetrics {
  /** Images the classifier scored. */
  readonly images: number;
  /** Sampled images that could not be decoded (not scored). */
  readonly failed: number;
  /** Width of the classifier's output (1000 for ImageNet). */
  readonly outputs: number;
  /** Mean over images of the largest probability (reported; it moves with the entropy). */
  readonly meanTop1: number;
  /** Mean over images of entropy / ln(outputs): 0 is one-hot, 1 is uniform. */
  readonly meanEntropy: number;
  /**
   * Mean Bhattacharyya coefficient Σ√(p·q) between the ImageNet distributions of two images of
   * DIFFERENT classes, over all such pairs: 0 when the network sees different things in
   * different classes, 1 when it sees the same thing everywhere. null with one class sampled.
   */
  readonly classOverlap: number | null;
  /** The same over pairs of images of the SAME class, for context (not decisive). */
  readonly withinOverlap: number | null;
}

export interface ClassTopLabels {
  readonly label: string;
  readonly sampled: number;
  /** The most common ImageNet top-1 classes of this class's sampled images. */
  readonly top: readonly { readonly imagenet: string; readonly share: number }[];
}

export interface SimilarityReport {
  readonly classifier: string;
  readonly sample: { readonly requested: number; readonly seed: number; readonly images: number; readonly perClass: Readonly<Record<string, number>> };
  readonly metrics: SimilarityMetrics;
  readonly thresholds: SimilarityThresholds;
  readonly verdict: SimilarityVerdict;
  /** Which of the two tests passed (overlap null: not measurable, one class sampled). */
  readonly passes: { readonly entropy: boolean; readonly overlap: boolean | null };
  /** A decisive number within SIMILARITY_MARGIN of its threshold. */
  readonly borderline: boolean;
  readonly perClass: readonly ClassTopLabels[];
  /** Median width and height of the sampled source images, and the network's input. */
  readonly sourceSize: { readonly width: number; readonly height: number } | null;
  readonly inputSize: { readonly width: number; readonly height: number };
}

export interface AdviceCommand {
  readonly command: string;
  readonly why: string;
  /** A command still being added alongside advise (fine-tune). */
  readonly upcoming?: boolean;
}

export interface Advice {
  readonly version: typeof ADVICE_VERSION;
  readonly data: string;
  readonly dataset: string;
  readonly backbone: string;
  readonly size: SizeReport;
  readonly similarity: SimilarityReport;
  readonly case: TransferCase;
  readonly title: string;
  /** The reasoning, one sentence a line, numbers against thresholds. */
  readonly why: readonly string[];
  readonly commands: readonly AdviceCommand[];
  /** Other commands worth knowing about: the neighbouring case when borderline, etc. */
  readonly alternatives: readonly AdviceCommand[];
  readonly notes: readonly string[];
  /** The cuts the commands name, for scripts. */
  readonly cuts: { readonly late: string; readonly earlier: string; readonly unfreezeTop: string; readonly unfreezeMore: string };
}

// ---------------------------------------------------------------------------------------------
// Size

export function countStats(items: readonly Pick<DatasetItem, 'label'>[], classes: readonly string[]): CountStats {
  const perClass: Record<string, number> = Object.fromEntries(classes.map((c) => [c, 0]));
  for (const item of items) perClass[item.label] = (perClass[item.label] ?? 0) + 1;
  const counts = Object.values(perClass).sort((a, b) => a - b);
  return { total: items.length, min: counts[0] ?? 0, median: median(counts), max: counts[counts.length - 1] ?? 0, perClass };
}

export function sizeReport(items: readonly Pick<DatasetItem, 'label' | 'split'>[], classes: readonly string[], threshold = SMALL_DATA_PER_CLASS): SizeReport {
  const all = countStats(items, classes);
  const splitNames = (['train', 'validation', 'test'] as const).filter((s) => items.some((i) => i.split === s));
  const splits = splitNames.map((split) => ({ split, stats: countStats(items.filter((i) => i.split === split), classes) }));
  const train = splits.find((s) => s.split === 'train');
  const basis = train ? train.stats : all;
  return judgeSize({ classes: classes.length, all, splits, basis: train ? 'train' : 'all', perClass: basis.median, min: basis.min, threshold });
}

/** The size verdict from counts alone: small when the median per class is below the threshold. */
export function judgeSize(s: {
  classes: number;
  all: CountStats;
  splits: SizeReport['splits'];
  basis: SizeReport['basis'];
  perClass: number;
  min: number;
  threshold?: number;
}): SizeReport {
  const threshold = s.threshold ?? SMALL_DATA_PER_CLASS;
  const verdict: SizeVerdict = s.perClass < threshold ? 'small' : 'large';
  const borderline = s.perClass >= threshold / BORDERLINE_FACTOR && s.perClass < threshold * BORDERLINE_FACTOR;
  return {
    classes: s.classes,
    all: s.all,
    splits: s.splits,
    basis: s.basis,
    perClass: s.perClass,
    threshold,
    verdict,
    borderline,
    imbalanced: s.min < s.perClass / 4,
  };
}

// ---------------------------------------------------------------------------------------------
// Similarity

/** Per-image numbers from one probability vector. */
export function imageScores(probs: Float32Array | readonly number[]): { top1: number; top1Index: number; entropy: number } {
  const k = probs.length;
  let top1 = -Infinity;
  let top1Index = 0;
  let h = 0;
  for (let i = 0; i < k; i++) {
    const p = probs[i];
    if (p > top1) {
      top1 = p;
      top1Index = i;
    }
    if (p > 0) h -= p * Math.log(p);
  }
  return { top1, top1Index, entropy: k > 1 ? h / Math.log(k) : 0 };
}

/** Scores of every sampled image (its label and probabilities) into the metrics the verdict uses. */
export function similarityMetrics(
  scored: readonly { readonly label: string; readonly probabilities: Float32Array | readonly number[] }[],
  opts: { failed?: number } = {},
): SimilarityMetrics {
  if (scored.length === 0) throw new UsageError('no sampled image could be decoded, so similarity to ImageNet cannot be measured');
  const outputs = scored[0].probabilities.length;
  const per = scored.map((s) => imageScores(s.probabilities));
  const roots = scored.map((s) => Float64Array.from(s.probabilities, (p) => Math.sqrt(Math.max(0, p))));
  let between = 0;
  let betweenPairs = 0;
  let within = 0;
  let withinPairs = 0;
  for (let i = 0; i < scored.length; i++) {
    for (let j = i + 1; j < scored.length; j++) {
      const a = roots[i];
      const b = roots[j];
      let bc = 0;
      for (let k = 0; k < outputs; k++) bc += a[k] * b[k];
      if (scored[i].label === scored[j].label) {
        within += bc;
        withinPairs++;
      } else {
        between += bc;
        betweenPairs++;
      }
    }
  }
  return {
    images: scored.length,
    failed: opts.failed ?? 0,
    outputs,
    meanTop1: mean(per.map((p) => p.top1)),
    meanEntropy: mean(per.map((p) => p.entropy)),
    classOverlap: betweenPairs > 0 ? between / betweenPairs : null,
    withinOverlap: withinPairs > 0 ? within / withinPairs : null,
  };
}

export interface SimilarityJudgement {
  readonly verdict: SimilarityVerdict;
  /** Which tests passed; overlap is null when it could not be measured (then only entropy decides). */
  readonly passes: { readonly entropy: boolean; readonly overlap: boolean | null };
  /** A decisive number within SIMILARITY_MARGIN of its threshold. */
  readonly borderline: boolean;
}

/** Similar when the predictions are confident (low entropy) and differ between classes (low overlap). */
export function judgeSimilarity(m: Pick<SimilarityMetrics, 'meanEntropy' | 'classOverlap'>, t: SimilarityThresholds = SIMILARITY_THRESHOLDS): SimilarityJudgement {
  const passes = { entropy: m.meanEntropy <= t.maxEntropy, overlap: m.classOverlap === null ? null : m.classOverlap <= t.maxOverlap };
  const similar = passes.entropy && passes.overlap !== false;
  // Borderline: the verdict would flip if a number moved by the margin.
  const near = (v: number, line: number) => Math.abs(v - line) < SIMILARITY_MARGIN;
  const entropyNear = near(m.meanEntropy, t.maxEntropy);
  const overlapNear = m.classOverlap !== null && near(m.classOverlap, t.maxOverlap);
  const borderline = similar ? entropyNear || overlapNear : (passes.entropy || entropyNear) && (passes.overlap !== false || overlapNear);
  return { verdict: similar ? 'similar' : 'different', passes, borderline };
}

export function transferCase(size: SizeVerdict, similarity: SimilarityVerdict): TransferCase {
  if (similarity === 'similar') return size === 'small' ? 1 : 2;
  return size === 'small' ? 3 : 4;
}

export const CASE_TITLES: Readonly<Record<TransferCase, string>> = {
  1: 'small data, similar to ImageNet: freeze the backbone, train a small head on the bottleneck codes',
  2: 'large data, similar to ImageNet: train a head, then fine-tune the top block too',
  3: 'small data, different from ImageNet: a head on codes from an earlier layer, with augmentation',
  4: 'large data, different from ImageNet: fine-tune more of the network',
};

// ---------------------------------------------------------------------------------------------
// Cuts and blocks per backbone

interface BackboneAdvice {
  /** An earlier cut: general features (edges, textures, parts) rather than ImageNet objects. */
  readonly earlier: string;
  /** What fine-tune --unfreeze names for the top block, and for more of the network. */
  readonly unfreezeTop: string;
  readonly unfreezeMore: string;
}

/**
 * VGG16's block4_pool (512×14×14), GoogLeNet's inception_4e/output (832×14×14) and
 * SqueezeNet's pool5 (256×13×13, after fire5 of fire2–9) are the last feature maps before each
 * network's final stage: still spatial and general, a stage below the ImageNet-specific top.
 *
 * Measured, not assumed: 5-fold linear probes on 80–240 images of each calibration set found
 * these earlier cuts no better than the late one, even on the "different" sets (GoogLeNet:
 * within ±0.01 everywhere; SqueezeNet: pool5 up to 0.16 worse, e.g. CIFAR 0.40 vs 0.56). The
 * classic advice comes from VGG-like nets whose top is ImageNet-specific dense layers, so
 * case 3 always comes with sweep, which settles it on the user's own data.
 */
const KNOWN_BACKBONES: Readonly<Record<string, BackboneAdvice>> = {
  vgg16: { earlier: 'block4_pool', unfreezeTop: 'block5', unfreezeMore: 'block4' },
  googlenet: { earlier: 'inception_4e/output', unfreezeTop: 'inception_5b', unfreezeMore: 'inception_5a' },
  squeezenet1_1: { earlier: 'pool5', unfreezeTop: 'fire9', unfreezeMore: 'fire8' },
};

/** The backbone's named cuts and blocks for the commands, checked against its graph. */
export function backboneAdvice(backbone: Backbone): BackboneAdvice & { readonly earlierIsSpatial: boolean } {
  const known = KNOWN_BACKBONES[backbone.id];
  const earlier = known && hasLayer(backbone, known.earlier) ? known.earlier : guessEarlierCut(backbone);
  const unfreezeTop = known?.unfreezeTop ?? '<top block>';
  const unfreezeMore = known?.unfreezeMore ?? '<an earlier block>';
  return { earlier, unfreezeTop, unfreezeMore, earlierIsSpatial: isSpatial(backbone, earlier) };
}

function hasLayer(backbone: Backbone, layer: string): boolean {
  try {
    resolveLayer(backbone.graph, layer);
    return true;
  } catch {
    return false;
  }
}

/** Any other backbone: the named cut before the default one nearest to 70% of its depth. */
function guessEarlierCut(backbone: Backbone): string {
  const index = (layer: string) => backbone.graph.nodes.indexOf(resolveLayer(backbone.graph, layer));
  const late = index(backbone.defaultCut.layer);
  const before = backbone.namedCuts.filter((c) => hasLayer(backbone, c) && index(c) > 0 && index(c) < late);
  if (before.length === 0) return backbone.defaultCut.layer;
  return before.reduce((best, c) => (Math.abs(index(c) - 0.7 * late) < Math.abs(index(best) - 0.7 * late) ? c : best));
}

function isSpatial(backbone: Backbone, layer: string): boolean {
  try {
    const node = resolveLayer(backbone.graph, layer);
    const plan = planGraph(backbone.graph, backbone.preprocessing.size, [layer]);
    return plan.shapes.get(node.name)?.length === 3;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// The advice from measured numbers (pure, so tests can feed it synthetic ones)

export interface AdviceInputs {
  readonly data: string;
  readonly dataset: string;
  readonly backbone: Backbone;
  readonly size: SizeReport;
  readonly similarity: Omit<SimilarityReport, 'verdict' | 'passes' | 'borderline' | 'thresholds'> & { readonly thresholds?: SimilarityThresholds };
}

export function buildAdvice(input: AdviceInputs): Advice {
  const { size, backbone } = input;
  const thresholds = input.similarity.thresholds ?? SIMILARITY_THRESHOLDS;
  const judged = judgeSimilarity(input.similarity.metrics, thresholds);
  const similarity: SimilarityReport = { ...input.similarity, thresholds, ...judged };
  const kase = transferCase(size.verdict, similarity.verdict);
  const cuts = backboneAdvice(backbone);
  const m = similarity.metrics;

  const basis = size.basis === 'train' ? 'training images (train split)' : 'images';
  const why: string[] = [];
  why.push(
    `size: median ${fmtInt(size.perClass)} ${basis} per class ${size.verdict === 'small' ? '<' : '≥'} ${fmtInt(size.threshold)} → ${size.verdict}` +
      (size.borderline ? ` (borderline: within ×${BORDERLINE_FACTOR} of the line)` : ''),
  );
  const overlapText =
    m.classOverlap === null ? 'class overlap not measurable (one class sampled)' : `class overlap ${f2(m.classOverlap)} ${similarity.passes.overlap ? '≤' : '>'} ${f2(thresholds.maxOverlap)}`;
  why.push(
    `similarity: mean entropy ${f2(m.meanEntropy)} ${similarity.passes.entropy ? '≤' : '>'} ${f2(thresholds.maxEntropy)} and ${overlapText}` +
      ` → ${similarity.verdict}` +
      (similarity.verdict === 'different' ? ` (similar needs both; ${failedTests(similarity.passes)} failed)` : '') +
      (similarity.borderline ? ` (borderline: within ${SIMILARITY_MARGIN} of a threshold)` : ''),
  );

  const data = shellQuote(input.data);
  const b = shellQuote(backbone.id);
  const late = backbone.defaultCut;
  const lateFlags = late.pool ? ` --pool ${late.pool}` : '';
  const earlierFlags = `--layer ${shellQuote(cuts.earlier)}${cuts.earlierIsSpatial ? ' --pool avg' : ''}`;
  const extractLate: AdviceCommand = {
    command: `bottleneck extract ${data} --backbone ${b}`,
    why: `codes at ${backbone.id}'s bottleneck (${late.layer}${lateFlags ? `, ${late.pool}-pooled` : ''}), computed once and cached`,
  };
  const trainHead: AdviceCommand = { command: 'bottleneck train-head cache/<key>', why: '<key> is the cache key extract prints; a small head trains in seconds' };
  const trainLinear: AdviceCommand = {
    command: 'bottleneck train-head cache/<key> --hidden 0 --standardize',
    why: 'a plain softmax on standardised codes: the fewest weights, least overfitting',
  };
  const extractEarlier: AdviceCommand = {
    command: `bottleneck extract ${data} --backbone ${b} ${earlierFlags} --augment 4`,
    why: `codes from ${cuts.earlier}, a stage below the ImageNet-specific top; --augment 4 also caches 4 augmented views of each training image`,
  };
  const trainHeadViews: AdviceCommand = {
    command: 'bottleneck train-head cache/<views-key>',
    why: "<views-key> is the key extract prints after 'train on': the augmented views join the training rows only",
  };
  const sweep: AdviceCommand = {
    command: `bottleneck sweep --data ${data} --backbone ${b}`,
    why: `compares heads on every named cut (${backbone.namedCuts.join(', ')}) on the same split, to confirm the earlier cut wins`,
  };
  const fineTune = (block: string, what: string): AdviceCommand => ({
    command: `bottleneck fine-tune --head heads/<head> --unfreeze ${shellQuote(block)}`,
    why: `${what}, starting from the trained head (a random head would wreck the pretrained weights); small learning rate`,
    upcoming: true,
  });

  let commands: AdviceCommand[];
  const alternatives: AdviceCommand[] = [];
  const notes: string[] = [];
  switch (kase) {
    case 1:
      commands = [extractLate, trainHead];
      alternatives.push(trainLinear);
      if (size.borderline) alternatives.push(fineTune(cuts.unfreezeTop, `near ${fmtInt(size.threshold)} per class, fine-tuning ${cuts.unfreezeTop} may add a few points (case 2)`));
      break;
    case 2:
      commands = [extractLate, trainHead, fineTune(cuts.unfreezeTop, `unfreezes ${cuts.unfreezeTop} and above`)];
      if (size.borderline) notes.push(`${fmtInt(size.perClass)} per class is near the ${fmtInt(size.threshold)} line: stop after train-head if the head is already good enough, and fine-tune with augmentation.`);
      break;
    case 3:
      commands = [extractEarlier, trainHeadViews, sweep];
      if (size.borderline) alternatives.push(fineTune(cuts.unfreezeMore, `near ${fmtInt(size.threshold)} per class, fine-tuning from ${cuts.unfreezeMore} may pay off (case 4)`));
      break;
    case 4:
      // fine-tune trains the layers between --unfreeze and the head's cut, so the head sits on the late cut.
      commands = [extractLate, trainHead, fineTune(cuts.unfreezeMore, `unfreezes ${cuts.unfreezeMore} and everything above it up to the head`)];
      alternatives.push(sweep);
      notes.push('With this much data, training longer (or the whole network) is also reasonable; ImageNet weights remain a better start than random ones.');
      break;
  }
  if (!KNOWN_BACKBONES[backbone.id]) notes.push(`${backbone.id} is not in the zoo: ${cuts.earlier} as the earlier cut is a guess (the named cut at about 70% of the depth); check it with sweep.`);
  if (size.imbalanced) notes.push(`Classes are imbalanced (smallest ${fmtInt(size.splits.find((s) => s.split === 'train')?.stats.min ?? size.all.min)}, median ${fmtInt(size.perClass)}): consider train-head --class-weights balanced.`);
  const src = similarity.sourceSize;
  if (src && Math.min(src.width, src.height) * 2 <= Math.min(similarity.inputSize.width, similarity.inputSize.height)) {
    notes.push(
      `The images are small (median ${src.width}×${src.height}) and get upsampled to ${similarity.inputSize.width}×${similarity.inputSize.height}: ` +
        `blurry inputs are a domain shift of their own and flatten ImageNet predictions even for ImageNet-like content.`,
    );
  }
  if (m.outputs !== 1000) notes.push(`${backbone.id}'s classifier has ${m.outputs} outputs, not ImageNet's 1000: "similar" here means similar to what it was trained on.`);
  if (m.failed > 0) notes.push(`${m.failed} sampled image(s) could not be decoded and were left out of the measurement.`);
  if (m.images < 32) notes.push(`Only ${m.images} image(s) were scored; the similarity numbers are rough (the thresholds were set on samples of 64).`);
  if (similarity.borderline && similarity.verdict === 'similar') {
    alternatives.push({ ...sweep, why: `${sweep.why.replace(/, to confirm.*$/, '')}: the similarity numbers are near the thresholds, so let it show whether ${cuts.earlier} beats the late cut` });
  }
  if (similarity.borderline) notes.push('The similarity numbers are near the thresholds: treat the verdict as a coin toss and let sweep compare the late and the earlier cut on your data.');

  return {
    version: ADVICE_VERSION,
    data: input.data,
    dataset: input.dataset,
    backbone: backbone.id,
    size,
    similarity,
    case: kase,
    title: CASE_TITLES[kase],
    why,
    commands,
    alternatives,
    notes,
    cuts: { late: late.layer, earlier: cuts.earlier, unfreezeTop: cuts.unfreezeTop, unfreezeMore: cuts.unfreezeMore },
  };
}

// ---------------------------------------------------------------------------------------------
// Sampling

/**
 * `n` images spread evenly over the classes, round robin, each class's images taken in the order
 * of a hash of (seed, path): the same folder and seed always give the same sample, and adding
 * images moves it only where a new image hashes before the chosen ones. With more classes than
 * `n`, the classes taking part are chosen by hash too.
 */
export function pickSample(items: readonly DatasetItem[], n: number, seed = 0): DatasetItem[] {
  const h = (s: string) => hashUnit(createHash('sha256').update(`${seed}\0${s}`).digest('hex'));
  const byClass = [...groupBy(items, (i) => i.label).entries()]
    .map(([label, group]) => ({ key: h(`class\0${label}`), queue: group.map((item) => ({ item, key: h(item.path) })).sort((a, b) => a.key - b.key || cmp(a.item.path, b.item.path)) }))
    .sort((a, b) => a.key - b.key);
  const picked: DatasetItem[] = [];
  for (let round = 0; picked.length < n; round++) {
    let took = false;
    for (const c of byClass) {
      if (picked.length >= n) break;
      if (round < c.queue.length) {
        picked.push(c.queue[round].item);
        took = true;
      }
    }
    if (!took) break;
  }
  return picked;
}

// ---------------------------------------------------------------------------------------------
// The measurement

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
  const { backbone } = opts;
  if (!backbone.classifier) {
    throw new UsageError(`${backbone.id} has no classifier output, so its similarity to the data cannot be measured; advise needs a backbone with one (${['vgg16', 'googlenet', 'squeezenet1_1'].join(', ')})`);
  }
  const requested = opts.sample ?? DEFAULT_SAMPLE;
  if (!Number.isInteger(requested) || requested < 1) throw new UsageError(`--sample ${requested}: must be a whole number ≥ 1`);
  const seed = opts.seed ?? 0;
  const dataset: Dataset = await loadDataset(opts.data);
  const size = sizeReport(dataset.items, dataset.classes, opts.smallBelow);

  const sample = pickSample(dataset.items, requested, seed);
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
  const perClass = [...groupBy(scored, (s) => s.label).entries()]
    .sort(([a], [b]) => cmp(a, b))
    .map(([label, group]) => ({
      label,
      sampled: group.length,
      top: [...groupBy(group, (s) => s.top1Index).entries()]
        .sort(([ia, a], [ib, b]) => b.length - a.length || ia - ib)
        .slice(0, 3)
        .map(([index, g]) => ({ imagenet: classifier.classes[index] ?? `class ${index}`, share: g.length / group.length })),
    }));
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

// ---------------------------------------------------------------------------------------------
// Small helpers

function median(sorted: readonly number[]): number {
  if (sorted.length === 0) return 0;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function groupBy<T, K>(xs: readonly T[], key: (x: T) => K): Map<K, T[]> {
  const m = new Map<K, T[]>();
  for (const x of xs) {
    const k = key(x);
    const g = m.get(k);
    if (g) g.push(x);
    else m.set(k, [x]);
  }
  return m;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function failedTests(p: { entropy: boolean; overlap: boolean | null }): string {
  return [!p.entropy && 'entropy', p.overlap === false && 'overlap'].filter(Boolean).join(' and ');
}

const f2 = (v: number) => v.toFixed(2);
const fmtInt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1));

/** Quotes a path or name for a POSIX shell when it needs it. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
