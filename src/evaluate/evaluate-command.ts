/**
 * `bottleneck evaluate --head DIR`: scores a head on held-out rows. By default those are the
 * test rows of the codes the head was trained on (the same split rule as train-head, so test
 * rows never trained it), or the validation rows when there is no test split. With --data, a
 * new folder or manifest goes through extract first, so cached images are not computed again.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { FeatureCache } from '../cache/feature-cache.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { loadDataset } from '../extract/dataset.ts';
import { progressSink } from '../extract/progress-reporter.ts';
import { runExtract } from '../extract/run-extract.ts';
import { loadHeadBackbone } from '../train-head/head-backbone.ts';
import type { EpochStats } from '../train-head/fit.ts';
import { loadHead, type Head } from '../train-head/head-folder.ts';
import { createHeadPredictor } from '../train-head/head-predictor.ts';
import { gather, readCodeTable, type CodeTable } from '../train-head/train-command.ts';
import { splitRows } from '../train-head/training-rows.ts';
import { UsageError } from '../util/errors.ts';
import type { EvaluationReport } from './evaluation-report.ts';
import { computeMetrics, type ScoredRow } from './metrics.ts';

export interface EvaluateCommand {
  readonly head: string;
  /** A folder or manifest to evaluate instead of the head's own held-out rows. */
  readonly data?: string;
  readonly cacheRoot: string;
  /** For --data: the backbone weights, as extract takes them. */
  readonly weights?: string;
  readonly batch: number;
  readonly concurrency: number;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  /** Progress as JSON lines rather than a bar (for --json). */
  readonly quiet?: boolean;
}

interface Selection {
  readonly table: CodeTable;
  readonly rows: readonly number[];
  readonly source: string;
  readonly cache: FeatureCache;
}

export async function runEvaluate(cmd: EvaluateCommand): Promise<EvaluationReport> {
  const started = performance.now();
  const head = await loadHead(cmd.head);
  const selection = cmd.data ? await extractedRows(head, cmd) : await heldOutRows(head, cmd.cacheRoot);
  const { table, rows, cache } = selection;
  if (rows.length === 0) throw new UsageError(`${selection.source}: no rows to evaluate`);

  const { classes, architecture } = head.config;
  const codes = gather(table, rows, classes);
  const predictor = await createHeadPredictor(architecture, head.params);
  let probs: Float32Array;
  try {
    probs = await predictor.predict(codes.x, codes.n);
  } finally {
    await predictor.dispose();
  }
  const roots = await cache.datasetRoots();
  const root = table.dataset === null ? undefined : roots[table.dataset];
  const scored: ScoredRow[] = rows.map((r) => {
    const file = root ? path.join(root, table.paths[r]) : null;
    return { path: table.paths[r], label: table.labels[r], file: file && existsSync(file) ? file : null };
  });
  return {
    head: head.dir,
    cacheKey: head.config.cacheKey,
    codeSpec: head.config.codeSpec,
    source: selection.source,
    classes,
    metrics: computeMetrics(classes, scored, probs),
    history: await readHistory(head.dir),
    seconds: (performance.now() - started) / 1000,
  };
}

/** The head's own codes: test rows, else validation rows, by the split rule it trained with. */
async function heldOutRows(head: Head, cacheRoot: string): Promise<Selection> {
  const { cacheKey, dataset, training } = head.config;
  if (!existsSync(path.join(cacheRoot, cacheKey, 'spec.json'))) {
    throw new UsageError(`head ${head.dir} was trained on codes ${cacheKey}, which are not in ${cacheRoot} (pass --cache, or --data to extract them)`);
  }
  const cache = await FeatureCache.open(cacheRoot, cacheKey);
  const table = await readCodeTable(cache, dataset ?? undefined);
  const split = splitRows(table, training.splits.fractions);
  if (split.test.length > 0) return { table, cache, rows: split.test, source: `test split of ${cacheKey}` };
  return { table, cache, rows: split.validation, source: `validation split of ${cacheKey} (it has no test split)` };
}

/** Every image of --data, extracted into the head's cache key (computing only what is new). */
async function extractedRows(head: Head, cmd: EvaluateCommand): Promise<Selection> {
  const spec = head.config.codeSpec;
  const dataset = await loadDataset(cmd.data!);
  const cut = { layer: spec.layer, ...(spec.pool ? { pool: spec.pool } : {}) };
  const backbone = await loadHeadBackbone(head, { weights: cmd.weights });
  const sink = progressSink(cmd.quiet ? 'none' : 'bar');
  const summary = await runExtract({
    items: dataset.items,
    dataset: dataset.name,
    datasetRoot: dataset.root,
    backbone,
    cut,
    size: spec.preprocessing.size,
    resize: spec.preprocessing.resize,
    interpolation: spec.preprocessing.interpolation as Parameters<typeof runExtract>[0]['interpolation'],
    background: spec.preprocessing.background,
    dtype: spec.dtype,
    batch: cmd.batch,
    concurrency: cmd.concurrency,
    engine: cmd.engine,
    device: cmd.device,
    cacheRoot: path.resolve(cmd.cacheRoot),
    onProgress: (p) => sink.update(p),
  }).finally(() => sink.stop());
  if (summary.key !== head.config.cacheKey) {
    // Same backbone name and settings but other weights: the codes would not be the head's.
    throw new UsageError(`${cmd.data}: extracted as ${summary.key}, but head ${head.dir} was trained on ${head.config.cacheKey} (other backbone weights?)`);
  }
  for (const f of summary.failures) console.error(`warning: ${f.path}: ${f.message} (not evaluated)`);
  const cache = await FeatureCache.open(path.resolve(cmd.cacheRoot), summary.key);
  const table = await readCodeTable(cache, dataset.name);
  // The dataset name may have collected rows of earlier, larger versions of the folder.
  const wanted = new Set(dataset.items.map((i) => i.path));
  const rows = [...table.paths.keys()].filter((r) => wanted.has(table.paths[r])).sort((a, b) => (table.paths[a] < table.paths[b] ? -1 : 1));
  return { table, cache, rows, source: cmd.data! };
}

async function readHistory(dir: string): Promise<EpochStats[]> {
  const file = path.join(dir, 'history.json');
  return existsSync(file) ? (JSON.parse(await readFile(file, 'utf8')) as EpochStats[]) : [];
}
