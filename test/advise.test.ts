/**
 * `advise`: the decision logic on synthetic numbers (each of the four cases, the boundaries),
 * the deterministic sample, the commands per backbone, and a real measurement with SqueezeNet:
 * dogs-vs-cats must come out similar to ImageNet, generated noise different.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adviseDataset, ADVICE_LOAD_CUTS } from '../src/advise/advise.ts';
import { judgeSize, sizeReport, SMALL_DATA_PER_CLASS, type SizeReport } from '../src/advise/dataset-size.ts';
import { formatAdvice } from '../src/advise/format-advice.ts';
import { judgeSimilarity, SIMILARITY_MARGIN, SIMILARITY_THRESHOLDS, similarityMetrics, type SimilarityMetrics } from '../src/advise/imagenet-likeness.ts';
import { pickSample } from '../src/advise/sample.ts';
import { backboneAdvice, buildAdvice, transferCase, type AdviceInputs } from '../src/advise/transfer-case.ts';
import type { GraphBackbone } from '../src/backbones/backbone.ts';
import { mulberry32 } from '../src/util/numbers.ts';
import { tinyRandomBackbone } from '../src/backbones/zoo/tiny-random.ts';
import { VGG16_PREPROCESSING, vgg16Graph } from '../src/backbones/zoo/vgg16.ts';
import { loadGraphBackbone } from '../src/backbones/zoo.ts';
import type { DatasetItem } from '../src/extract/dataset.ts';
import { makeDataset } from './helpers/make-dataset.ts';
import { hasSharedDatasets, hasSharedModels, NEEDS_SHARED_DATASETS, NEEDS_SHARED_MODELS, SHARED_DATASETS, SHARED_MODELS } from './helpers/shared.ts';

/** VGG16's real graph with no weights: enough for cut names and shapes, never run. */
const VGG16_STUB: GraphBackbone = {
  id: 'vgg16',
  graph: vgg16Graph(),
  weights: new Map(),
  preprocessing: VGG16_PREPROCESSING,
  defaultCut: { layer: 'block5_pool' },
  namedCuts: ['block5_pool', 'relu6', 'fc2', 'block4_pool', 'block3_pool'],
  classifier: 'predictions',
  weightsId: 'stub',
  weightsFrom: 'stub',
};

function counts(perClass: number, classes = 2) {
  const pc = Object.fromEntries(Array.from({ length: classes }, (_, i) => [`c${i}`, perClass]));
  return { total: perClass * classes, min: perClass, median: perClass, max: perClass, perClass: pc };
}

function size(perClass: number): SizeReport {
  return judgeSize({ classes: 2, all: counts(perClass), splits: [], basis: 'all', perClass, min: perClass });
}

function metrics(meanEntropy: number, classOverlap: number | null, images = 64): SimilarityMetrics {
  return { images, failed: 0, outputs: 1000, meanTop1: 1 - meanEntropy, meanEntropy, classOverlap, withinOverlap: classOverlap };
}

function inputs(perClass: number, m: SimilarityMetrics, backbone: GraphBackbone = VGG16_STUB): AdviceInputs {
  return {
    data: 'data/pets',
    dataset: 'pets',
    backbone,
    size: size(perClass),
    similarity: {
      classifier: 'predictions',
      sample: { requested: 64, seed: 0, images: m.images, perClass: { c0: m.images / 2, c1: m.images / 2 } },
      metrics: m,
      perClass: [{ label: 'c0', sampled: 32, top: [{ imagenet: 'tabby', share: 0.5 }] }],
      sourceSize: { width: 320, height: 240 },
      inputSize: { width: 224, height: 224 },
    },
  };
}

const SIMILAR = metrics(0.25, 0.08);
const DIFFERENT = metrics(0.5, 0.6);

describe('size verdict', () => {
  it(`is small below ${SMALL_DATA_PER_CLASS} per class and large from it on`, () => {
    expect(size(SMALL_DATA_PER_CLASS - 1).verdict).toBe('small');
    expect(size(SMALL_DATA_PER_CLASS).verdict).toBe('large');
    expect(size(50).verdict).toBe('small');
    expect(size(50_000).verdict).toBe('large');
  });

  it('flags counts within ×1.5 of the threshold as borderline, on both sides', () => {
    expect(size(666).borderline).toBe(false);
    expect(size(667).borderline).toBe(true);
    expect(size(1000).borderline).toBe(true);
    expect(size(1499).borderline).toBe(true);
    expect(size(1500).borderline).toBe(false);
  });

  it('counts the train split when there are split folders, every image otherwise', () => {
    const item = (label: string, split: DatasetItem['split']) => ({ label, split });
    const items = [
      ...Array.from({ length: 3 }, () => item('a', 'train')),
      ...Array.from({ length: 5 }, () => item('b', 'train')),
      ...Array.from({ length: 40 }, () => item('a', 'validation')),
      item('b', 'test'),
    ];
    const r = sizeReport(items, ['a', 'b'], 4);
    expect(r.basis).toBe('train');
    expect(r.perClass).toBe(4);
    expect(r.verdict).toBe('large');
    expect(r.splits.map((s) => [s.split, s.stats.total])).toEqual([
      ['train', 8],
      ['validation', 40],
      ['test', 1],
    ]);
    expect(r.splits[1].stats.perClass).toEqual({ a: 40, b: 0 });
    expect(r.all).toMatchObject({ total: 49, min: 6, max: 43, median: 24.5 });

    const flat = sizeReport([item('a', null), item('a', null), item('b', null), item('c', null)], ['a', 'b', 'c']);
    expect(flat).toMatchObject({ basis: 'all', perClass: 1, verdict: 'small', splits: [] });
  });

  it('notes imbalance when the smallest class has under a quarter of the median', () => {
    expect(judgeSize({ classes: 3, all: counts(100, 3), splits: [], basis: 'all', perClass: 100, min: 24 }).imbalanced).toBe(true);
    expect(judgeSize({ classes: 3, all: counts(100, 3), splits: [], basis: 'all', perClass: 100, min: 25 }).imbalanced).toBe(false);
  });
});

describe('similarity metrics', () => {
  const oneHot = (i: number, k = 1000) => Float32Array.from({ length: k }, (_, j) => (j === i ? 1 : 0));
  const uniform = (k = 1000) => new Float32Array(k).fill(1 / k);

  it('entropy 0 and overlap 0 when each class gets its own confident ImageNet class', () => {
    const m = similarityMetrics([
      { label: 'cat', probabilities: oneHot(281) },
      { label: 'cat', probabilities: oneHot(281) },
      { label: 'dog', probabilities: oneHot(207) },
    ]);
    expect(m).toMatchObject({ images: 3, outputs: 1000, meanTop1: 1, meanEntropy: 0, classOverlap: 0 });
    expect(m.withinOverlap).toBeCloseTo(1, 6);
  });

  it('overlap 1 when every class collapses onto the same catch-all class', () => {
    const m = similarityMetrics([
      { label: 'a', probabilities: oneHot(111) },
      { label: 'b', probabilities: oneHot(111) },
    ]);
    expect(m.classOverlap).toBeCloseTo(1, 6);
    expect(m.withinOverlap).toBeNull();
  });

  it('entropy 1 for uniform predictions, overlap null with one class', () => {
    const m = similarityMetrics([
      { label: 'a', probabilities: uniform() },
      { label: 'a', probabilities: uniform() },
    ]);
    expect(m.meanEntropy).toBeCloseTo(1, 5);
    expect(m.meanTop1).toBeCloseTo(0.001, 6);
    expect(m.classOverlap).toBeNull();
  });

  it('refuses an empty measurement with a usage error', () => {
    expect(() => similarityMetrics([])).toThrow(expect.objectContaining({ name: 'UsageError' }));
  });
});

describe('similarity verdict', () => {
  const t = SIMILARITY_THRESHOLDS;

  it('is similar only when entropy and overlap both pass', () => {
    expect(judgeSimilarity(SIMILAR)).toMatchObject({ verdict: 'similar', passes: { entropy: true, overlap: true }, borderline: false });
    expect(judgeSimilarity(metrics(0.6, 0.05))).toMatchObject({ verdict: 'different', passes: { entropy: false, overlap: true } });
    // Confident but collapsed (GoogLeNet calling every cell image "nematode").
    expect(judgeSimilarity(metrics(0.15, 0.85))).toMatchObject({ verdict: 'different', passes: { entropy: true, overlap: false } });
    expect(judgeSimilarity(DIFFERENT)).toMatchObject({ verdict: 'different', passes: { entropy: false, overlap: false }, borderline: false });
  });

  it('counts a number exactly on its threshold as passing', () => {
    expect(judgeSimilarity(metrics(t.maxEntropy, t.maxOverlap)).verdict).toBe('similar');
    expect(judgeSimilarity(metrics(t.maxEntropy + 1e-9, t.maxOverlap)).verdict).toBe('different');
    expect(judgeSimilarity(metrics(t.maxEntropy, t.maxOverlap + 1e-9)).verdict).toBe('different');
  });

  it('is borderline when a move within the margin would flip the verdict', () => {
    const m = SIMILARITY_MARGIN / 2;
    expect(judgeSimilarity(metrics(t.maxEntropy - m, 0.05)).borderline).toBe(true);
    expect(judgeSimilarity(metrics(0.2, t.maxOverlap + m))).toMatchObject({ verdict: 'different', borderline: true });
    // Entropy far off: no small move of the overlap makes it similar.
    expect(judgeSimilarity(metrics(0.7, t.maxOverlap + m))).toMatchObject({ verdict: 'different', borderline: false });
    expect(judgeSimilarity(metrics(t.maxEntropy - 2 * SIMILARITY_MARGIN, t.maxOverlap - 2 * SIMILARITY_MARGIN)).borderline).toBe(false);
  });

  it('lets entropy decide alone when the overlap could not be measured', () => {
    expect(judgeSimilarity(metrics(0.2, null))).toMatchObject({ verdict: 'similar', passes: { overlap: null } });
    expect(judgeSimilarity(metrics(0.5, null)).verdict).toBe('different');
  });

  it('takes other thresholds', () => {
    expect(judgeSimilarity(metrics(0.5, 0.5), { maxEntropy: 0.6, maxOverlap: 0.6 }).verdict).toBe('similar');
  });
});

describe('the four cases', () => {
  it('maps size × similarity onto CS231n’s table', () => {
    expect(transferCase('small', 'similar')).toBe(1);
    expect(transferCase('large', 'similar')).toBe(2);
    expect(transferCase('small', 'different')).toBe(3);
    expect(transferCase('large', 'different')).toBe(4);
  });

  it('case 1: extract at the bottleneck, then train a head', () => {
    const a = buildAdvice(inputs(200, SIMILAR));
    expect(a.case).toBe(1);
    expect(a.commands.map((c) => c.command)).toEqual(['bottleneck extract data/pets --backbone vgg16', 'bottleneck train-head cache/<key>']);
    expect(a.why.join('\n')).toContain('median 200 images per class < 1000 → small');
    expect(a.why.join('\n')).toContain('mean entropy 0.25 ≤ 0.38 and class overlap 0.08 ≤ 0.30 → similar');
    expect(a.commands.some((c) => c.command.includes('fine-tune'))).toBe(false);
  });

  it('case 2: a head, then fine-tune the top block', () => {
    const a = buildAdvice(inputs(5000, SIMILAR));
    expect(a.case).toBe(2);
    expect(a.commands.map((c) => c.command)).toEqual([
      'bottleneck extract data/pets --backbone vgg16',
      'bottleneck train-head cache/<key>',
      'bottleneck fine-tune --head heads/<head> --unfreeze block5',
    ]);
    expect(a.commands[2].upcoming).toBe(true);
  });

  it('case 3: an earlier cut with augmentation, and sweep to compare cuts', () => {
    const a = buildAdvice(inputs(200, DIFFERENT));
    expect(a.case).toBe(3);
    expect(a.cuts.earlier).toBe('block4_pool');
    expect(a.commands.map((c) => c.command)).toEqual([
      'bottleneck extract data/pets --backbone vgg16 --layer block4_pool --pool avg --augment 4',
      'bottleneck train-head cache/<views-key>',
      'bottleneck sweep --data data/pets --backbone vgg16',
    ]);
    expect(a.why.join('\n')).toContain('(similar needs both; entropy and overlap failed)');
  });

  it('case 4: a head on the late cut, then fine-tune more of the network', () => {
    const a = buildAdvice(inputs(5000, DIFFERENT));
    expect(a.case).toBe(4);
    expect(a.commands.map((c) => c.command)).toEqual([
      'bottleneck extract data/pets --backbone vgg16',
      'bottleneck train-head cache/<key>',
      'bottleneck fine-tune --head heads/<head> --unfreeze block4',
    ]);
    expect(a.alternatives.map((c) => c.command)).toEqual(['bottleneck sweep --data data/pets --backbone vgg16']);
  });

  it('names the neighbouring case when the size is borderline', () => {
    const a = buildAdvice(inputs(900, SIMILAR));
    expect(a.case).toBe(1);
    expect(a.size.borderline).toBe(true);
    expect(a.alternatives.map((c) => c.command)).toContain('bottleneck fine-tune --head heads/<head> --unfreeze block5');
  });

  it('adds sweep when the similarity is borderline, and says so', () => {
    const a = buildAdvice(inputs(200, metrics(0.2, SIMILARITY_THRESHOLDS.maxOverlap - 0.01)));
    expect(a.case).toBe(1);
    expect(a.similarity.borderline).toBe(true);
    expect(a.alternatives.some((c) => c.command.startsWith('bottleneck sweep'))).toBe(true);
    expect(a.notes.join('\n')).toContain('near the thresholds');
  });

  it('quotes paths for the shell and notes small, upsampled images and small samples', () => {
    const base = inputs(200, metrics(0.5, 0.4, 12));
    const a = buildAdvice({ ...base, data: "my data/it's", similarity: { ...base.similarity, sourceSize: { width: 32, height: 32 } } });
    expect(a.commands[0].command).toBe(`bottleneck extract 'my data/it'\\''s' --backbone vgg16 --layer block4_pool --pool avg --augment 4`);
    const notes = a.notes.join('\n');
    expect(notes).toContain('median 32×32');
    expect(notes).toContain('Only 12 image(s)');
  });

  it('guesses an earlier cut for a backbone outside the zoo, and says it is a guess', () => {
    const a = buildAdvice(inputs(200, DIFFERENT, tinyRandomBackbone()));
    expect(a.cuts.earlier).toBe('block1_pool');
    expect(a.commands[0].command).toContain('--layer block1_pool --pool avg');
    expect(a.notes.join('\n')).toContain('is a guess');
  });

  it('is plain data that survives JSON, and the text shows every number against its threshold', () => {
    const a = buildAdvice(inputs(200, DIFFERENT));
    expect(JSON.parse(JSON.stringify(a))).toEqual(a);
    const text = formatAdvice(a);
    expect(text).toContain('case 3 of 4');
    expect(text).toContain('mean normalised entropy    0.50   too flat: similar needs ≤ 0.38');
    expect(text).toContain('class overlap              0.60   too alike: similar needs ≤ 0.30');
    expect(text).toContain('median 200 images per class < 1000');
    expect(text).toContain('--layer block4_pool --pool avg --augment 4');
  });
});

describe('sample', () => {
  const items: DatasetItem[] = ['a', 'b', 'c'].flatMap((label, c) =>
    Array.from({ length: c === 2 ? 3 : 50 }, (_, i) => ({ file: `/d/${label}/${i}.jpg`, path: `${label}/${i}.jpg`, label, split: null })),
  );

  it('is deterministic, spread over the classes, and moves with the seed', () => {
    const s = pickSample(items, 30);
    expect(pickSample([...items].reverse(), 30)).toEqual(s);
    const per = (xs: DatasetItem[]) => Object.fromEntries(['a', 'b', 'c'].map((l) => [l, xs.filter((x) => x.label === l).length]));
    // c has only 3 images; a and b share the rest evenly.
    expect(per(s)).toEqual({ a: 14, b: 13, c: 3 });
    expect(new Set(s.map((x) => x.path)).size).toBe(30);
    expect(pickSample(items, 30, 1)).not.toEqual(s);
  });

  it('keeps its images when others are added', () => {
    const s = pickSample(items, 4);
    const more = [...items, ...Array.from({ length: 50 }, (_, i) => ({ file: `/d/a/new${i}.jpg`, path: `a/new${i}.jpg`, label: 'a', split: null }))];
    const kept = pickSample(more, 4).filter((x) => s.some((y) => y.path === x.path));
    expect(kept.length).toBeGreaterThanOrEqual(3);
  });

  it('takes everything when asked for more, and one image of as many classes as fit when classes outnumber it', () => {
    expect(pickSample(items, 1000)).toHaveLength(items.length);
    const many = Array.from({ length: 20 }, (_, i) => ({ file: `/d/k${i}/x.jpg`, path: `k${i}/x.jpg`, label: `k${i}`, split: null }));
    expect(new Set(pickSample(many, 5).map((x) => x.label)).size).toBe(5);
  });
});

describe('advise on real images', () => {
  let tmp: string;
  let noiseData: string;

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-advise-'));
    // Nothing ImageNet-like: uniform noise, tinted per class. SqueezeNet sees "stole" and
    // "velvet" in all of it (calibration: entropy 0.46, overlap 0.66 on 64 such images).
    noiseData = path.join(tmp, 'noise');
    for (const [label, tint] of [['red', [1, 0.3, 0.3]], ['green', [0.3, 1, 0.3]]] as const) {
      await mkdir(path.join(noiseData, label), { recursive: true });
      for (let i = 0; i < 8; i++) {
        const rnd = mulberry32(1000 * i + tint[0] * 10);
        const raw = Buffer.alloc(224 * 224 * 3);
        for (let p = 0; p < raw.length; p++) raw[p] = Math.round(rnd() * 255 * tint[p % 3]);
        await sharp(raw, { raw: { width: 224, height: 224, channels: 3 } }).png().toFile(path.join(noiseData, label, `${i}.png`));
      }
    }
  });
  afterAll(() => rm(tmp, { recursive: true, force: true }));

  it('refuses a backbone without a classifier, with a usage error', async () => {
    const data = path.join(tmp, 'tiny');
    await makeDataset(data, { classes: ['a', 'b'], perClass: 2 });
    const backbone = { ...tinyRandomBackbone(), classifier: undefined };
    await expect(adviseDataset({ data, backbone, engine: 'onnx', device: 'cpu', cacheDir: path.join(tmp, 'cache') })).rejects.toMatchObject({
      name: 'UsageError',
      message: expect.stringContaining('has no classifier output'),
    });
  });

  it.skipIf(!hasSharedModels)(`names earlier cuts that exist in googlenet and squeezenet1_1${NEEDS_SHARED_MODELS}`, async () => {
    for (const [name, earlier] of [['googlenet', 'inception_4e/output'], ['squeezenet1_1', 'pool5']] as const) {
      const backbone = await loadGraphBackbone(name, { weightsDir: SHARED_MODELS, cuts: [...ADVICE_LOAD_CUTS] });
      expect(backboneAdvice(backbone)).toMatchObject({ earlier, earlierIsSpatial: true });
      expect(backbone.namedCuts).toContain(earlier);
    }
  });

  describe.skipIf(!hasSharedModels || !hasSharedDatasets)(`with squeezenet1_1${NEEDS_SHARED_MODELS || NEEDS_SHARED_DATASETS}`, () => {
    let backbone: GraphBackbone;
    beforeAll(async () => {
      backbone = await loadGraphBackbone('squeezenet1_1', { weightsDir: SHARED_MODELS, cuts: [...ADVICE_LOAD_CUTS] });
    });

    it('finds dogs-vs-cats similar to ImageNet', async () => {
      const data = path.join(SHARED_DATASETS, 'dogs-vs-cats');
      const a = await adviseDataset({ data, backbone, engine: 'onnx', device: 'cpu', cacheDir: path.join(tmp, 'cache'), sample: 16 });
      expect(a.similarity.verdict).toBe('similar');
      expect(a.similarity.metrics.images).toBe(16);
      expect(a.similarity.sample.perClass).toEqual({ cats: 8, dogs: 8 });
      expect(a.size).toMatchObject({ basis: 'train', perClass: 1000, classes: 2 });
      expect(a.size.all.total).toBe(2800);
      expect([1, 2]).toContain(a.case);
      // The network sees cats in the cats and dogs in the dogs.
      expect(a.similarity.metrics.classOverlap).toBeLessThan(0.15);
      const cats = a.similarity.perClass.find((c) => c.label === 'cats')!;
      expect(cats.top[0].imagenet).toMatch(/cat|tabby/i);
      expect(formatAdvice(a)).toContain('→ similar');
      // Same folder, same seed: the same numbers.
      const again = await adviseDataset({ data, backbone, engine: 'onnx', device: 'cpu', cacheDir: path.join(tmp, 'cache'), sample: 16 });
      expect(again.similarity.metrics).toEqual(a.similarity.metrics);
    });

    it('finds generated noise different from ImageNet, and advises an earlier cut', async () => {
      const a = await adviseDataset({ data: noiseData, backbone, engine: 'onnx', device: 'cpu', cacheDir: path.join(tmp, 'cache'), sample: 16 });
      expect(a.similarity.verdict).toBe('different');
      expect(a.similarity.borderline).toBe(false);
      expect(a.case).toBe(3);
      expect(a.commands[0].command).toBe(`bottleneck extract ${noiseData} --backbone squeezenet1_1 --layer pool5 --pool avg --augment 4`);
    });
  });
});
