/**
 * `bottleneck evaluate --head DIR`: scores a head on held-out rows. By default those are the
 * test rows of the codes the head was trained on (the same split rule as train-head, so test
 * rows never trained it), or the validation rows when there is no test split. With --data, a
 * new folder or manifest goes through extract first, so cached images are not computed again.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { gather, indexOfMembers, readCodes, readCodeTable, resolveDataset, type CodeTable } from '../cache/code-table.ts';
import { settingsOfSpec } from '../cache/code-spec.ts';
import { FeatureCache } from '../cache/feature-cache.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { loadDataset } from '../extract/dataset.ts';
import { progressSink } from '../extract/progress-reporter.ts';
import { runExtract } from '../extract/run-extract.ts';
import { loadHeadBackbone } from '../train-head/head-backbone.ts';
import type { EpochStats } from '../train-head/fit.ts';
import { loadHead, type Head } from '../train-head/head-folder.ts';
import { createHeadPredictor } from '../train-head/head-predictor.ts';
import { splitRows } from '../train-head/training-rows.ts';
import { cacheRootOf, defineCommand, numberOption, withBatching, withCache, withEngine, withWait, withWeights } from '../util/cli-options.ts';
import { UsageError } from '../util/errors.ts';
import type { EvaluationReport } from './evaluation-report.ts';
import { formatReport } from './format-report.ts';
import { writeHtmlReport } from './report-html.ts';
import { computeMetrics, type ScoredRow } from './metrics.ts';

export const evaluateCommand = defineCommand(
  'evaluate [head]',
  "report a head's test accuracy: per-class precision/recall/F1, confusion matrix, worst mistakes",
  (y) =>
    withWait(withBatching(withEngine(withWeights(withCache(y)))))
      .positional('head', { type: 'string', describe: 'head folder written by train-head (or --head)' })
      .option('data', { type: 'string', describe: "a folder or manifest to evaluate instead of the head's test (or validation) rows" })
      .option('report', { type: 'string', describe: 'write a self-contained HTML report (and PNG plots) into this folder' })
      .option('mistakes', numberOption('mistakes', 'worst mistakes to list', { integer: true, min: 0 }, 10))
      .option('json', { type: 'boolean', default: false, describe: 'the whole evaluation as JSON on stdout' }),
  async (argv) => {
    if (!argv.head) throw new UsageError('evaluate needs a head folder: bottleneck evaluate HEAD (as train-head wrote it)');
    const report = await runEvaluate({ ...argv, head: argv.head, cacheRoot: argv.cache, quiet: argv.json, onWarning: (m) => console.error(`warning: ${m}`) });
    if (argv.json) console.log(JSON.stringify(report));
    else console.log(formatReport(report, { mistakes: argv.mistakes }));
    if (argv.report) {
      const { html } = await writeHtmlReport(argv.report, report);
      console.error(`report: ${html}`);
    }
  },
);

export interface EvaluateCommand {
  readonly head: string;
  /** A folder or manifest to evaluate instead of the head's own held-out rows. */
  readonly data?: string;
  /** Default: the cache folder the head recorded, else ./cache. */
  readonly cacheRoot?: string;
  /** For --data: the backbone weights, as extract takes them. */
  readonly weights?: string;
  readonly batch: number;
  readonly concurrency: number;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  /** Progress as JSON lines rather than a bar (for --json). */
  readonly quiet?: boolean;
  /** Seconds to wait for an extract that is writing the head's key. */
  readonly wait?: number;
  /** Images of --data that could not be read. */
  readonly onWarning?: (message: string) => void;
}

interface Selection {
  readonly table: CodeTable;
  readonly rows: readonly number[];
  readonly source: string;
}

export async function runEvaluate(cmd: EvaluateCommand): Promise<EvaluationReport> {
  const started = performance.now();
  const head = await loadHead(cmd.head);
  const cacheRoot = cacheRootOf(cmd.cacheRoot, head.config.cacheRoot);
  const selection = cmd.data ? await extractedRows(head, cmd, cacheRoot) : await heldOutRows(head, cacheRoot, cmd.wait ?? 0);
  const { table } = selection;
  // Unlabeled images (predict's kind) have no truth to score against.
  const rows = selection.rows.filter((r) => table.labels[r] !== null);
  if (rows.length === 0) throw new UsageError(`${selection.source}: no labelled rows to evaluate${selection.rows.length > 0 ? ` (its ${selection.rows.length} images have no label)` : ''}`);

  const { classes, architecture } = head.config;
  const codes = gather(table, rows, classes);
  const predictor = await createHeadPredictor(architecture, head.params);
  let probs: Float32Array;
  try {
    probs = await predictor.predict(codes.x, codes.n);
  } finally {
    await predictor.dispose();
  }
  const scored: ScoredRow[] = rows.map((r) => {
    const file = path.join(table.root, table.paths[r]);
    return { path: table.paths[r], label: table.labels[r] ?? '', sha256: table.sha256[r], file: existsSync(file) ? file : null };
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
async function heldOutRows(head: Head, cacheRoot: string, waitSeconds: number): Promise<Selection> {
  const { cacheKey, dataset, training } = head.config;
  if (!existsSync(path.join(cacheRoot, cacheKey, 'spec.json'))) {
    throw new UsageError(`head ${head.dir} was trained on codes ${cacheKey}, which are not in ${cacheRoot} (pass --cache, or --data to extract them)`);
  }
  const cache = await FeatureCache.open(cacheRoot, cacheKey);
  await cache.waitForWriters(waitSeconds);
  const table = await readCodeTable(cache, dataset ?? (await resolveDataset(cache)));
  const split = splitRows(table, training.splits.fractions);
  if (split.test.length > 0) return { table, rows: split.test, source: `test split of ${cacheKey}` };
  if (training.refit) {
    throw new UsageError(`head ${head.dir} was refit on its training and validation rows, and ${cacheKey} has no test rows to score it on: train with --test 0.2 (or a test/ folder), or evaluate --data NEW_IMAGES`);
  }
  return { table, rows: split.validation, source: `validation split of ${cacheKey} (it has no test split)` };
}

/** Every image of --data, extracted into the head's cache key (computing only what is new). */
async function extractedRows(head: Head, cmd: EvaluateCommand, cacheRoot: string): Promise<Selection> {
  const spec = head.config.codeSpec;
  const dataset = await loadDataset(cmd.data!);
  const backbone = await loadHeadBackbone(head, { weights: cmd.weights });
  const sink = progressSink(cmd.quiet ? 'none' : 'bar');
  const summary = await runExtract({
    items: dataset.items,
    backbone,
    ...settingsOfSpec(spec),
    augment: undefined,
    batch: cmd.batch,
    concurrency: cmd.concurrency,
    engine: cmd.engine,
    device: cmd.device,
    cacheRoot,
    waitForLockSeconds: cmd.wait,
    onProgress: (p) => sink.update(p),
  }).finally(() => sink.stop());
  if (summary.key !== head.config.cacheKey) {
    // Same backbone name and settings but other weights: the codes would not be the head's.
    throw new UsageError(`${cmd.data}: extracted as ${summary.key}, but head ${head.dir} was trained on ${head.config.cacheKey} (other backbone weights?)`);
  }
  for (const f of summary.failures) cmd.onWarning?.(`${f.path}: ${f.message} (not evaluated)`);
  const cache = await FeatureCache.open(cacheRoot, summary.key);
  const table = await readCodes(cache, indexOfMembers(summary.members, { dataset: dataset.name, root: dataset.root, dim: cache.dim }));
  return { table, rows: [...table.paths.keys()], source: cmd.data! };
}

async function readHistory(dir: string): Promise<EpochStats[]> {
  const file = path.join(dir, 'history.json');
  return existsSync(file) ? (JSON.parse(await readFile(file, 'utf8')) as EpochStats[]) : [];
}
