/**
 * bench/accuracy: validation accuracy of heads on real codes, for the README table.
 *
 *   npm run bench:accuracy                 # googlenet and squeezenet1_1 on dogs-vs-cats and flowers
 *
 * For each backbone and dataset it runs the same commands a user would:
 *   bottleneck extract ../shared/datasets/<set> --backbone <b> --cache <dir>
 *   bottleneck train-head <dir>/<key> --dataset <set> --epochs 40 [--hidden 0]
 * dogs-vs-cats trains on train/ and reports validation/; flowers has no split folders, so its
 * validation fifth comes from the content hash.
 */
import os from 'node:os';
import path from 'node:path';
import { loadDataset } from '../src/extract/dataset.ts';
import { runExtractCommand } from '../src/extract/extract-command.ts';
import { DEFAULT_HEAD_TRAINING, openCodes, runTrainHead, type TrainHeadCommand } from '../src/train-head/train-command.ts';
import { benchArgs } from './args.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SHARED = path.resolve(ROOT, '..', 'shared');
const { values: args } = benchArgs({
  options: {
    backbones: { type: 'string', default: 'googlenet,squeezenet1_1' },
    datasets: { type: 'string', default: 'dogs-vs-cats,flowers' },
    cache: { type: 'string', default: path.join(os.tmpdir(), 'bottleneck-accuracy-cache') },
    epochs: { type: 'string', default: '40' },
  },
});

interface Row {
  backbone: string;
  dataset: string;
  head: string;
  valAcc: number;
  trainSeconds: number;
  extractSeconds: number;
  images: number;
}

const rows: Row[] = [];
for (const backbone of args.backbones!.split(',')) {
  for (const dataset of args.datasets!.split(',')) {
    const data = path.join(SHARED, 'datasets', dataset);
    const started = performance.now();
    process.env.BOTTLENECK_WEIGHTS ??= path.join(SHARED, 'models');
    await runExtractCommand({
      data,
      backbone,
      engine: 'auto',
      device: 'auto',
      cacheRoot: args.cache!,
      resize: 'squash',
      interpolation: 'linear',
      background: '255,255,255',
      batch: 8,
      concurrency: 4,
      float16: false,
      strict: false,
      wait: 0,
      flushSeconds: 30,
      json: false,
      augment: 0,
      augmentSeed: 0,
    });
    const extractSeconds = (performance.now() - started) / 1000;
    // Keys start with the backbone's name, or for a model.json path with its last two path segments (see cacheKey).
    const prefix = backbone.includes('/') ? backbone.split('/').filter(Boolean).slice(-2).join('_').replace(/[^A-Za-z0-9_.-]+/g, '_') : backbone;
    const key = (await import('node:fs')).readdirSync(args.cache!).find((k) => k.startsWith(prefix))!;
    const images = (await loadDataset(data)).items.length;
    await openCodes(key, args.cache!);
    for (const [head, hidden, standardize] of [
      ['logistic regression on standardised codes (--hidden 0 --standardize)', [], true],
      ['Dense(256)+Dropout(0.5)', [256], false],
    ] as const) {
      const cmd: TrainHeadCommand = {
        ...DEFAULT_HEAD_TRAINING,
        codes: key,
        cacheRoot: args.cache!,
        out: path.join(args.cache!, '..', 'bottleneck-accuracy-heads', `${backbone}-${dataset}-${hidden.length}`),
        hidden,
        epochs: Number(args.epochs),
        standardize,
        dataset,
        json: false,
      };
      const result = await runTrainHead(cmd);
      rows.push({
        backbone,
        dataset,
        head,
        valAcc: result.config.metrics.valAcc ?? NaN,
        trainSeconds: result.history.reduce((s, h) => s + h.seconds, 0),
        extractSeconds,
        images,
      });
    }
  }
}

console.log(`\n| backbone (cut) | dataset | head, ${args.epochs} epochs | val acc | train s | extract s (incl. cached) | extract img/s |`);
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.backbone} | ${r.dataset} | ${r.head} | ${(r.valAcc * 100).toFixed(2)}% | ${r.trainSeconds.toFixed(1)} | ${r.extractSeconds.toFixed(0)} | ${(r.images / r.extractSeconds).toFixed(1)} |`);
}
