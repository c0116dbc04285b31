/**
 * From the two verdicts to what the user should run. The size and similarity modules only
 * measure; this is where the four-case table meets a concrete backbone (its cuts and blocks)
 * and becomes commands. Pure, so tests can feed it synthetic numbers.
 *
 *                      similar to ImageNet                 different from ImageNet
 *   small data   1: frozen backbone, head on the         3: head on codes from an EARLIER layer
 *                   bottleneck codes                        (late features are too ImageNet-
 *                                                           specific), with augmentation
 *   large data   2: fine-tune the top block(s) too       4: fine-tune more of the network
 */
import type { GraphBackbone } from '../backbones/backbone.ts';
import { planGraph } from '../backbones/graph-plan.ts';
import { resolveLayer } from '../backbones/layer-graph.ts';
import { BORDERLINE_FACTOR, type SizeReport, type SizeVerdict } from './dataset-size.ts';
import {
  judgeSimilarity,
  SIMILARITY_MARGIN,
  SIMILARITY_THRESHOLDS,
  type SimilarityReport,
  type SimilarityThresholds,
  type SimilarityVerdict,
} from './imagenet-likeness.ts';

export const ADVICE_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Types: plain data, so `--json` can print an Advice as it is.

export type TransferCase = 1 | 2 | 3 | 4;

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
// The case

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
export function backboneAdvice(backbone: GraphBackbone): BackboneAdvice & { readonly earlierIsSpatial: boolean } {
  const known = KNOWN_BACKBONES[backbone.id];
  const earlier = known && hasLayer(backbone, known.earlier) ? known.earlier : guessEarlierCut(backbone);
  const unfreezeTop = known?.unfreezeTop ?? '<top block>';
  const unfreezeMore = known?.unfreezeMore ?? '<an earlier block>';
  return { earlier, unfreezeTop, unfreezeMore, earlierIsSpatial: isSpatial(backbone, earlier) };
}

function hasLayer(backbone: GraphBackbone, layer: string): boolean {
  try {
    resolveLayer(backbone.graph, layer);
    return true;
  } catch {
    return false;
  }
}

/** Any other backbone: the named cut before the default one nearest to 70% of its depth. */
function guessEarlierCut(backbone: GraphBackbone): string {
  const index = (layer: string) => backbone.graph.nodes.indexOf(resolveLayer(backbone.graph, layer));
  const late = index(backbone.defaultCut.layer);
  const before = backbone.namedCuts.filter((c) => hasLayer(backbone, c) && index(c) > 0 && index(c) < late);
  if (before.length === 0) return backbone.defaultCut.layer;
  return before.reduce((best, c) => (Math.abs(index(c) - 0.7 * late) < Math.abs(index(best) - 0.7 * late) ? c : best));
}

function isSpatial(backbone: GraphBackbone, layer: string): boolean {
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
  readonly backbone: GraphBackbone;
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
// Small helpers

function failedTests(p: { entropy: boolean; overlap: boolean | null }): string {
  return [!p.entropy && 'entropy', p.overlap === false && 'overlap'].filter(Boolean).join(' and ');
}

const f2 = (v: number) => v.toFixed(2);
const fmtInt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1));

/** Quotes a path or name for a POSIX shell when it needs it. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
