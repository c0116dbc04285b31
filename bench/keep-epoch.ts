/**
 * bench/keep-epoch: which weights should a head keep, and does --refit pay? Decides
 * train-head's default --keep.
 *
 *   npm run bench:keep                    # squeezenet1_1 (built in) on ../shared's three datasets
 *
 * For each dataset: codes extracted once (squeezenet1_1, fire9/concat:avg), then the default
 * head (Dense(256), dropout 0.5, Adam, 50 epochs) trained three ways, each with seeds 0..S-1:
 * keeping the last epoch, keeping the epoch of lowest validation loss, and --refit (the epoch
 * count validation chose, retrained on train + validation). All are scored on a test split no
 * variant saw: dogs-vs-cats' validation/ folder (its train/ folder gives train and, by content
 * hash, validation); a content-hash fifth of flowers and cifar10-mini. "flowers-80" is flowers
 * cut to 80 images a class, the small-data case.
 */
import { createHash } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadBackbone } from '../src/backbones/zoo.ts';
import { runEvaluate } from '../src/evaluate/evaluate-command.ts';
import { loadDataset, type DatasetItem } from '../src/extract/dataset.ts';
import { DEFAULT_EXTRACT_SETTINGS, runExtract } from '../src/extract/run-extract.ts';
import { splitByHash } from '../src/train-head/splits.ts';
import { DEFAULT_HEAD_TRAINING, trainHead, type KeepEpoch } from '../src/train-head/train-head.ts';
import { machineLine } from './machine.ts';
import { benchArgs } from './args.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SHARED = path.resolve(ROOT, '..', 'shared', 'datasets');
const { values: args } = benchArgs({
  options: {
    datasets: { type: 'string', default: 'dogs-vs-cats,flowers,cifar10-mini,flowers-80' },
    seeds: { type: 'string', default: '3' },
    cache: { type: 'string', default: path.join(os.tmpdir(), 'bottleneck-keep-cache') },
  },
});

type Variant = { readonly name: string; readonly keep: KeepEpoch; readonly refit: boolean };
const VARIANTS: readonly Variant[] = [
  { name: 'keep last', keep: 'last', refit: false },
  { name: 'keep best', keep: 'best', refit: false },
  { name: 'refit', keep: 'best', refit: true },
];

/** The rows of a dataset with explicit train/validation/test splits, as a manifest. */
async function manifestFor(name: string, dir: string): Promise<string> {
  const source = name === 'flowers-80' ? 'flowers' : name;
  const dataset = await loadDataset(path.join(SHARED, source));
  const perClass = new Map<string, number>();
  const rows: { path: string; label: string; split: string }[] = [];
  for (const item of dataset.items as (DatasetItem & { label: string })[]) {
    if (name === 'flowers-80') {
      const n = perClass.get(item.label) ?? 0;
      if (n >= 80) continue;
      perClass.set(item.label, n + 1);
    }
    const file = path.join(dataset.root, item.path);
    // dogs-vs-cats: validation/ is the test; train/ is split 80/20 by path hash. Others: 60/20/20 by path hash.
    const split = item.split === 'validation' ? 'test' : item.split === 'train' ? splitByHash(sha(item.path), { val: 0.2, test: 0 }) : splitByHash(sha(item.path), { val: 0.2, test: 0.2 });
    rows.push({ path: file, label: item.label, split });
  }
  const file = path.join(dir, `${name}.csv`);
  await writeFile(file, ['path,label,split', ...rows.map((r) => `${r.path},${r.label},${r.split}`)].join('\n'));
  return file;
}

function sha(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

interface Row {
  dataset: string;
  variant: string;
  seed: number;
  testAcc: number;
  keptEpoch: number;
}

async function main(): Promise<void> {
  console.log(machineLine());
  const backbone = await loadBackbone('squeezenet1_1');
  const work = path.join(args.cache!, 'manifests');
  await mkdir(work, { recursive: true });
  const rows: Row[] = [];
  for (const name of args.datasets!.split(',')) {
    const manifest = await manifestFor(name, work);
    const dataset = await loadDataset(manifest);
    const extracted = await runExtract({ items: dataset.items, dataset, backbone, cut: backbone.defaultCut, ...DEFAULT_EXTRACT_SETTINGS, batch: 16, concurrency: 4, engine: 'auto', device: 'auto', cacheRoot: args.cache! });
    for (const v of VARIANTS) {
      for (let seed = 0; seed < Number(args.seeds); seed++) {
        const out = path.join(args.cache!, 'heads', `${name}-${v.name.replace(' ', '-')}-${seed}`);
        const { config } = await trainHead({ ...DEFAULT_HEAD_TRAINING, codes: extracted.path, cacheRoot: args.cache!, out, dataset: dataset.name, seed, keep: v.keep, refit: v.refit });
        const report = await runEvaluate({ head: out, cacheRoot: args.cache!, batch: 16, concurrency: 4, engine: 'auto', device: 'auto', quiet: true });
        if (!report.source.startsWith('test split')) throw new Error(`${name}: scored on ${report.source}`);
        rows.push({ dataset: name, variant: v.name, seed, testAcc: report.metrics.accuracy, keptEpoch: config.training.refit?.epochs ?? config.bestEpoch });
        console.error(`${name} ${v.name} seed ${seed}: test acc ${(100 * report.metrics.accuracy).toFixed(2)}%, epoch ${rows.at(-1)!.keptEpoch}`);
      }
    }
  }
  printTable(rows);
  await rm(path.join(args.cache!, 'heads'), { recursive: true, force: true });
}

function printTable(rows: readonly Row[]): void {
  const datasets = [...new Set(rows.map((r) => r.dataset))];
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(`\n| dataset | ${VARIANTS.map((v) => v.name).join(' | ')} |`);
  console.log(`|---|${VARIANTS.map(() => '---').join('|')}|`);
  for (const d of datasets) {
    const cells = VARIANTS.map((v) => {
      const of = rows.filter((r) => r.dataset === d && r.variant === v.name);
      return `${(100 * mean(of.map((r) => r.testAcc))).toFixed(2)}% (epoch ${of.map((r) => r.keptEpoch).join('/')})`;
    });
    console.log(`| ${d} | ${cells.join(' | ')} |`);
  }
  const overall = VARIANTS.map((v) => `${v.name} ${(100 * mean(rows.filter((r) => r.variant === v.name).map((r) => r.testAcc))).toFixed(2)}%`);
  console.log(`\nmean test accuracy over datasets and seeds: ${overall.join(', ')}`);
}

await main();
