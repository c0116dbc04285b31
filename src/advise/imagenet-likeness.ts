/**
 * The similarity axis of advise: how ImageNet-like the images are, measured from the backbone's
 * own ImageNet predictions rather than guessed. Photos of ImageNet-like things get confident
 * predictions, and different ones for different classes (tabby for the cats, terriers for the
 * dogs). Unfamiliar images get either flat predictions (noise, tiny upsampled images) or the
 * same few catch-all classes for every class of the dataset (every cell-like blob a "nematode",
 * every digit a "hook" or "nail"), often confidently: so both the entropy and the overlap
 * between classes are tested. Pure numbers in, numbers out, so tests can feed synthetic ones.
 */
import { UsageError } from '../util/errors.ts';
import { cmp, groupBy } from './arrays.ts';

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

export type SimilarityVerdict = 'similar' | 'different';

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

/**
 * What the network sees in each class: its three most common top-1 classes, so the user can
 * tell "daisy for the daisies" from "nematode for everything" at a glance.
 */
export function classTopLabels(scored: readonly { readonly label: string; readonly top1Index: number }[], names: readonly string[]): ClassTopLabels[] {
  return [...groupBy(scored, (s) => s.label).entries()]
    .sort(([a], [b]) => cmp(a, b))
    .map(([label, group]) => ({
      label,
      sampled: group.length,
      top: [...groupBy(group, (s) => s.top1Index).entries()]
        .sort(([ia, a], [ib, b]) => b.length - a.length || ia - ib)
        .slice(0, 3)
        .map(([index, g]) => ({ imagenet: names[index] ?? `class ${index}`, share: g.length / group.length })),
    }));
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

function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
