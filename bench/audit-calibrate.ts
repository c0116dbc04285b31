/**
 * bench/audit-calibrate: where audit's near-duplicate threshold comes from.
 *
 *   BOTTLENECK_WEIGHTS=../shared/models npm run calibrate:audit                      # squeezenet1_1 fire9/concat:avg
 *   BOTTLENECK_WEIGHTS=../shared/models npm run calibrate:audit -- --backbone googlenet
 *
 * Takes a fixed sample of ../shared images (`--per-dataset` from each of dogs-vs-cats, flowers
 * and cifar10-mini, by hash of the path), writes altered copies of each into a temporary folder
 * (never the repo): resized to 50% and 75%, re-encoded as JPEG at quality 90/70/50/30, cropped
 * by 5% and 10% per side, and mirrored. Every image of the three datasets and every copy go
 * through the backbone at the named cut (into a temporary cache). Then:
 *
 * - recall at threshold t: the share of (original, copy) pairs with cosine ≥ t, per alteration;
 * - false pairs at t: pairs of distinct images of the datasets (different content) with cosine
 *   ≥ t, found by the same exact kNN audit runs (k = 20 per image), over all m(m−1)/2 pairs.
 *
 * The threshold is the lowest t (on a 0.001 grid) at which the datasets' distinct pairs above
 * it are at most 1 per million pairs: near-copies the datasets really hold count as false here,
 * so this errs on the side of fewer pairs. Writes src/audit/calibration/<backbone>-<cut>.json,
 * which audit reads, and prints the tables.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { cutLabel } from '../src/backbones/cut.ts';
import { loadBackbone } from '../src/backbones/zoo.ts';
import { FeatureCache } from '../src/cache/feature-cache.ts';
import { groupContents } from '../src/audit/audit-rows.ts';
import { calibrationFile, type Calibration } from '../src/audit/calibration.ts';
import { nearestNeighbours, normalizeRows, similarityVectors } from '../src/audit/knn.ts';
import { loadDataset, type DatasetItem } from '../src/extract/dataset.ts';
import { DEFAULT_EXTRACT_SETTINGS, runExtract } from '../src/extract/run-extract.ts';
import { indexOfMembers, readCodes, type CodeTable } from '../src/cache/code-table.ts';
import { benchArgs } from './args.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SHARED = path.resolve(ROOT, '..', 'shared');
const { values: args } = benchArgs({
  options: {
    backbone: { type: 'string', default: 'squeezenet1_1' },
    datasets: { type: 'string', default: 'dogs-vs-cats,flowers,cifar10-mini' },
    'per-dataset': { type: 'string', default: '150' },
    'max-false-rate': { type: 'string', default: '1e-6' },
    keep: { type: 'string', describe: 'keep the copies and the cache in this folder' },
  },
});

/** Each alteration writes a JPEG from the original's bytes. */
const ALTERATIONS: Record<string, (img: Sharp, w: number, h: number) => Sharp> = {
  'resize-50%': (img, w) => img.resize({ width: Math.max(1, Math.round(w * 0.5)) }).jpeg({ quality: 90 }),
  'resize-75%': (img, w) => img.resize({ width: Math.max(1, Math.round(w * 0.75)) }).jpeg({ quality: 90 }),
  'jpeg-q90': (img) => img.jpeg({ quality: 90 }),
  'jpeg-q70': (img) => img.jpeg({ quality: 70 }),
  'jpeg-q50': (img) => img.jpeg({ quality: 50 }),
  'jpeg-q30': (img) => img.jpeg({ quality: 30 }),
  'crop-5%': (img, w, h) => crop(img, w, h, 0.05),
  'crop-10%': (img, w, h) => crop(img, w, h, 0.1),
  flip: (img) => img.flop().jpeg({ quality: 90 }),
};

function crop(img: Sharp, w: number, h: number, side: number): Sharp {
  const dx = Math.max(1, Math.round(w * side));
  const dy = Math.max(1, Math.round(h * side));
  return img.extract({ left: dx, top: dy, width: w - 2 * dx, height: h - 2 * dy }).jpeg({ quality: 90 });
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

async function main(): Promise<void> {
  process.env.BOTTLENECK_WEIGHTS ??= path.join(SHARED, 'models');
  const backbone = await loadBackbone(args.backbone!);
  const cut = backbone.defaultCut;
  const work = args.keep ? path.resolve(args.keep) : await mkdtemp(path.join(os.tmpdir(), 'audit-calibrate-'));
  const copiesDir = path.join(work, 'copies');
  const cacheRoot = path.join(work, 'cache');
  const perDataset = Number(args['per-dataset']);
  const datasets = args.datasets!.split(',');
  try {
    const items: DatasetItem[] = [];
    const copies: { original: string; alteration: string; path: string }[] = [];
    for (const name of datasets) {
      const dataset = await loadDataset(path.join(SHARED, 'datasets', name));
      for (const item of dataset.items) items.push({ ...item, path: `${name}/${item.path}` });
      const sample = [...dataset.items].sort((a, b) => (sha(a.path) < sha(b.path) ? -1 : 1)).slice(0, perDataset);
      for (const item of sample) {
        const meta = await sharp(item.file).metadata();
        for (const [alteration, make] of Object.entries(ALTERATIONS)) {
          const rel = `copies/${name}/${alteration}/${item.path.replaceAll('/', '__')}`;
          const file = path.join(work, rel);
          await mkdir(path.dirname(file), { recursive: true });
          await make(sharp(item.file).rotate(), meta.width!, meta.height!).toFile(file);
          copies.push({ original: `${name}/${item.path}`, alteration, path: rel });
          items.push({ file, path: rel, label: alteration, split: null });
        }
      }
    }
    console.error(`${items.length - copies.length} dataset images and ${copies.length} copies (in ${copiesDir}); extracting ${backbone.id} ${cutLabel(cut)}…`);
    const summary = await runExtract({
      items,
      backbone,
      cut,
      ...DEFAULT_EXTRACT_SETTINGS,
      batch: 8,
      concurrency: 4,
      engine: 'auto',
      device: 'auto',
      cacheRoot,
    });
    console.error(`extracted ${summary.new} in ${summary.seconds.toFixed(1)} s`);
    const cache = await FeatureCache.open(cacheRoot, summary.key);
    // The images are read from several folders; only their codes are needed, not a recorded dataset.
    const table = await readCodes(cache, indexOfMembers(summary.members, { dataset: 'calibration', root: work, dim: cache.dim }));
    const n = table.paths.length;
    const measure = (vectors: Float32Array) => analyse(table, vectors, copies, Number(args['max-false-rate']));
    const root = await measure(similarityVectors(table.codes, n, table.dim));
    const plain = await measure(normalizeRows(table.codes, n, table.dim));
    const calibration: Calibration = {
      backbone: cache.spec.backbone,
      weights: cache.spec.weights,
      layer: cache.spec.layer,
      pool: cache.spec.pool,
      similarity: 'cosine of signed square roots of the codes',
      threshold: root.threshold,
      rule: `lowest t (0.001 grid) with at most ${args['max-false-rate']} false pairs per pair of distinct images of ${datasets.join(', ')}`,
      command: `BOTTLENECK_WEIGHTS=../shared/models npm run calibrate:audit -- --backbone ${backbone.id}`,
      measured: new Date().toISOString().slice(0, 10),
      copies: { perDataset, datasets, alterations: Object.keys(ALTERATIONS) },
      ...root.summary,
      plainCosine: { threshold: plain.threshold, recallAll: plain.summary.recallAll, falsePairs: plain.summary.distinct.falsePairs, recall: Object.fromEntries(Object.entries(plain.summary.recall).map(([a, r]) => [a, r.recall])) },
    };
    const out = calibrationFile(cache.spec.backbone, { layer: cache.spec.layer, pool: cache.spec.pool ?? undefined });
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(calibration, null, 2)}\n`);
    print(calibration);
    console.log(`\nwritten to ${path.relative(ROOT, out)}`);
  } finally {
    if (!args.keep) await rm(work, { recursive: true, force: true });
  }
}


const datasetOf = (p: string) => (p.startsWith('copies/') ? p.split('/')[1] : p.split('/')[0]);

/** Recall on the copies and false pairs among distinct images, for one way of turning codes into unit vectors. */
async function analyse(table: CodeTable, unit: Float32Array, copies: readonly { original: string; alteration: string; path: string }[], maxRate: number) {
  const dim = table.dim;
  const rowOf = new Map(table.paths.map((p, r) => [p, r]));
  const cosine = (a: number, b: number) => {
    let s = 0;
    for (let d = 0; d < dim; d++) s += unit[a * dim + d] * unit[b * dim + d];
    return s;
  };
  const positives = copies.map((c) => ({ ...c, dataset: datasetOf(c.original), sim: cosine(rowOf.get(c.original)!, rowOf.get(c.path)!) }));

  // Distinct images: every dataset row, one per content (byte-identical files are one image).
  const originals = [...table.paths.keys()].filter((r) => !table.paths[r].startsWith('copies/'));
  const contents = groupContents(originals.map((r) => table.sha256[r]));
  const m = contents.count;
  const x = new Float32Array(m * dim);
  contents.first.forEach((i, c) => x.set(unit.subarray(originals[i] * dim, (originals[i] + 1) * dim), c * dim));
  const k = 20;
  const nb = await nearestNeighbours(x, m, dim, k);
  const negatives: { sim: number; a: string; b: string }[] = [];
  for (let a = 0; a < m; a++) {
    for (let t = 0; t < k; t++) {
      const b = nb.indices[a * k + t];
      if (b > a) negatives.push({ sim: nb.similarities[a * k + t], a: table.paths[originals[contents.first[a]]], b: table.paths[originals[contents.first[b]]] });
    }
  }
  negatives.sort((p, q) => q.sim - p.sim);
  const pairs = (m * (m - 1)) / 2;
  const falseAt = (t: number) => negatives.filter((q) => q.sim >= t).length;
  const recall = (list: readonly { sim: number }[], t: number) => list.filter((q) => q.sim >= t).length / list.length;
  let threshold = 1;
  for (let t = 1; t >= 0.5; t = Math.round((t - 0.001) * 1000) / 1000) {
    if (falseAt(t) / pairs > maxRate) break;
    threshold = t;
  }
  // The kNN lists are complete above t only if no image's 20th neighbour reaches it.
  let saturated = 0;
  for (let a = 0; a < m; a++) if (nb.similarities[a * k + k - 1] >= threshold) saturated++;
  const datasets = [...new Set(positives.map((p) => p.dataset))];
  const alterations = [...new Set(positives.map((p) => p.alteration))];
  const sims = (list: readonly { sim: number }[]) => list.map((q) => q.sim);
  const imagesOf = (d: string) => new Set(originals.filter((r) => datasetOf(table.paths[r]) === d).map((r) => table.sha256[r])).size;
  return {
    threshold,
    summary: {
      recall: Object.fromEntries(
        alterations.map((alt) => {
          const list = positives.filter((p) => p.alteration === alt);
          return [alt, { pairs: list.length, recall: round(recall(list, threshold)), min: round(Math.min(...sims(list))), median: round(median(sims(list))), byDataset: Object.fromEntries(datasets.map((d) => [d, round(recall(list.filter((p) => p.dataset === d), threshold))])) }];
        }),
      ),
      recallAll: round(recall(positives, threshold)),
      recallByDataset: Object.fromEntries(datasets.map((d) => [d, round(recall(positives.filter((p) => p.dataset === d), threshold))])),
      distinct: {
        images: m,
        pairs,
        falsePairs: falseAt(threshold),
        falseRate: falseAt(threshold) / pairs,
        saturated,
        byDataset: Object.fromEntries(
          datasets.map((d) => {
            const mine = negatives.filter((q) => q.sim >= threshold && datasetOf(q.a) === d && datasetOf(q.b) === d).length;
            const images = imagesOf(d);
            return [d, { images, pairs: (images * (images - 1)) / 2, falsePairs: mine }];
          }),
        ),
        top: negatives.slice(0, 30).map((q) => ({ a: q.a, b: q.b, cosine: round(q.sim) })),
      },
      grid: [0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99].map((t) => ({ threshold: t, recall: round(recall(positives, t)), falsePairs: falseAt(t) })),
    },
  };
}

function print(c: Calibration): void {
  console.log(`${c.backbone} ${c.layer}${c.pool ? `:${c.pool}` : ''}: threshold ${c.threshold} (${c.rule})\n`);
  const ds = c.copies.datasets;
  console.log(`| alteration | pairs | recall | ${ds.join(' | ')} | min cosine | median cosine | plain cosine (t = ${c.plainCosine.threshold}) |\n|---|---|---|${ds.map(() => '---|').join('')}---|---|---|`);
  for (const [alt, r] of Object.entries(c.recall)) console.log(`| ${alt} | ${r.pairs} | ${pct(r.recall)} | ${ds.map((d) => pct(r.byDataset[d])).join(' | ')} | ${r.min} | ${r.median} | ${pct(c.plainCosine.recall[alt])} |`);
  console.log(`| all | | ${pct(c.recallAll)} | ${ds.map((d) => pct(c.recallByDataset[d])).join(' | ')} | | | ${pct(c.plainCosine.recallAll)} |`);
  console.log(`\ndistinct images: ${c.distinct.images}, ${c.distinct.pairs} pairs; at ${c.threshold}: ${c.distinct.falsePairs} pairs above (${c.distinct.falseRate.toExponential(2)}), ${c.distinct.saturated} lists saturated`);
  for (const [d, f] of Object.entries(c.distinct.byDataset)) console.log(`  ${d}: ${f.falsePairs} of ${f.pairs} pairs`);
  console.log(`plain cosine at the same rule: t = ${c.plainCosine.threshold}, ${c.plainCosine.falsePairs} pairs above, recall ${pct(c.plainCosine.recallAll)}`);
  console.log('\n| threshold | recall (all copies) | distinct pairs above |\n|---|---|---|');
  for (const g of c.grid) console.log(`| ${g.threshold} | ${pct(g.recall)} | ${g.falsePairs} |`);
  console.log('\nclosest distinct pairs:');
  for (const t of c.distinct.top.slice(0, 15)) console.log(`  ${t.cosine}  ${t.a}  ${t.b}`);
}

const round = (v: number) => Math.round(v * 1e4) / 1e4;
const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
function median(list: readonly number[]): number {
  const s = [...list].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

await main();
