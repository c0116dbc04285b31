/**
 * `bottleneck audit DATA`: extracts what is missing, audits the rows, prints the summary (or
 * JSON), and writes the HTML report and the cleaned manifest when asked. The work is
 * audit-source's and audit's; this module holds the printing.
 */
import path from 'node:path';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { withExtractSettings, type ExtractSettingsFlags } from '../extract/extract-plan.ts';
import { progressSink } from '../extract/progress-reporter.ts';
import { parseHidden } from '../train-head/train-command.ts';
import { cacheRootOf, defineCommand, FRACTION, numberOption, optionalNumber, withBatching, withCache, withEngine, withWait, WHOLE_POSITIVE } from '../util/cli-options.ts';
import { runAudit, type AuditResult } from './audit.ts';
import { loadAuditSource, type AuditSource } from './audit-source.ts';
import { formatAudit, type AuditHeader } from './format-audit.ts';
import { rowsToDrop, writeCleanManifest } from './manifest.ts';
import { writeAuditReport } from './report-html.ts';

export const auditCommand = defineCommand(
  'audit <data>',
  'find exact duplicates, near-duplicates and likely label errors (leaks across splits first), from the cached codes',
  (y) =>
    withWait(withBatching(withEngine(withCache(withExtractSettings(y)))))
      .positional('data', { type: 'string', demandOption: true, describe: 'folder of class subfolders, .csv/.jsonl manifest, or cache key folder' })
      .option('dataset', { type: 'string', describe: "the dataset's name in the cache (default: the folder's; with a key holding several, which one)" })
      .option('threshold', optionalNumber('threshold', "near-duplicate cosine threshold (default: the cut's calibrated one)", { min: 0, minExclusive: true, max: 1 }))
      .option('neighbours', numberOption('neighbours', 'nearest neighbours searched per image', WHOLE_POSITIVE, 10))
      .option('folds', numberOption('folds', 'folds for out-of-fold probabilities', { integer: true, min: 2 }, 5))
      .option('hidden', { type: 'string', default: '0', describe: 'the fold heads: hidden sizes, or 0 for logistic regression' })
      .option('epochs', numberOption('epochs', 'epochs per fold head', WHOLE_POSITIVE, 30))
      .option('lr', numberOption('lr', 'learning rate of the fold heads', { min: 0, minExclusive: true, max: 10 }, 1e-3))
      .option('seed', numberOption('seed', 'folds, initial weights and batch order follow from it', { integer: true }, 0))
      .option('trainer', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const })
      .option('val', numberOption('val', 'without split folders: the validation fraction train-head would hold out (by content hash)', FRACTION, 0.2))
      .option('test', numberOption('test', 'without split folders: the test fraction', FRACTION, 0))
      .option('show', numberOption('show', 'findings of each kind in the terminal summary', { integer: true, min: 0 }, 20))
      .option('json', { type: 'boolean', default: false, describe: 'the whole audit as one JSON object on stdout' })
      .option('report', { type: 'string', describe: 'write a self-contained audit.html with thumbnails into this folder' })
      .option('write-manifest', { type: 'string', describe: 'write a cleaned path,label,split CSV (leaks out of validation/test, conflicts dropped) for extract' })
      .option('drop-mislabelled', { type: 'boolean', default: false, describe: 'with --write-manifest, also drop the suspected label errors' }),
  async (argv) => {
    process.exitCode = await runAuditCommand({ ...argv, data: argv.data!, cache: cacheRootOf(argv.cache), writeManifest: argv['write-manifest'], dropMislabelled: argv['drop-mislabelled'] });
  },
);

/** The flags above, as yargs hands them over. */
export interface AuditCommand extends ExtractSettingsFlags {
  readonly data: string;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  readonly cache: string;
  readonly batch: number;
  readonly concurrency: number;
  readonly wait: number;
  readonly dataset?: string;
  readonly threshold?: number;
  readonly neighbours: number;
  readonly folds: number;
  readonly hidden: string;
  readonly epochs: number;
  readonly lr: number;
  readonly seed: number;
  readonly trainer: 'auto' | 'onnx' | 'tfjs';
  readonly val: number;
  readonly test: number;
  readonly show: number;
  readonly json: boolean;
  readonly report?: string;
  readonly writeManifest?: string;
  readonly dropMislabelled: boolean;
}

export async function runAuditCommand(cmd: AuditCommand): Promise<number> {
  const hidden = parseHidden(cmd.hidden);
  const log = (line: string) => console.error(line);
  const sink = progressSink(cmd.json ? 'none' : 'bar');
  const source = await loadAuditSource({ ...cmd, cacheRoot: cmd.cache, onProgress: (p) => sink.update(p) }).finally(() => sink.stop());
  if (source.extracted) {
    const e = source.extracted;
    log(`extract: ${e.new} new, ${e.reused} reused, ${e.failed} failed in ${e.seconds.toFixed(1)} s (${source.key})`);
  }
  const result = await runAudit(source.rows, source.files, source.spec, {
    threshold: cmd.threshold,
    neighbours: cmd.neighbours,
    folds: cmd.folds,
    head: { hidden, dropout: 0.5, epochs: cmd.epochs, batch: 32, lr: cmd.lr, seed: cmd.seed, trainer: cmd.trainer },
    fractions: { val: cmd.val, test: cmd.test },
    onStage: cmd.json ? undefined : log,
  });
  const header: AuditHeader = { data: cmd.data, key: source.key, cut: cutName(source), dim: source.rows.dim };
  if (cmd.json) console.log(JSON.stringify(jsonOf(header, source, result)));
  else console.log(formatAudit(header, result, cmd.show));
  if (cmd.report) log(`report: ${await writeAuditReport(cmd.report, header, result)}`);
  if (cmd.writeManifest) {
    const dropped = rowsToDrop(result, { dropMislabelled: cmd.dropMislabelled });
    const rows = source.rows.paths.map((p, r) => ({ path: p, label: source.rows.labels[r], split: source.rows.splits[r], file: source.files[r] }));
    const written = await writeCleanManifest(cmd.writeManifest, rows, dropped);
    log(`manifest: ${path.resolve(cmd.writeManifest)}: ${written.written} rows kept, ${written.dropped} dropped; re-run with \`bottleneck extract ${cmd.writeManifest}\``);
    for (const d of dropped.slice(0, cmd.show)) log(`  dropped ${source.rows.paths[d.row]}: ${d.reason}`);
    if (dropped.length > cmd.show) log(`  … and ${dropped.length - cmd.show} more`);
  }
  return 0;
}

function cutName(source: AuditSource): string {
  return `${source.spec.backbone} ${source.spec.layer}${source.spec.pool ? `:${source.spec.pool}` : ''}`;
}

/** Everything, with the calibration's evidence reduced to the threshold's provenance. */
function jsonOf(header: AuditHeader, source: AuditSource, r: AuditResult): unknown {
  const c = 'skipped' in r.near ? null : r.near.calibration;
  const calibration = c && { measured: c.measured, command: c.command, rule: c.rule, recallAll: c.recallAll, falsePairs: c.distinct.falsePairs, distinctPairs: c.distinct.pairs };
  const near = 'skipped' in r.near ? r.near : { ...r.near, calibration };
  return { event: 'audit', ...header, dataset: source.dataset, extracted: source.extracted, ...r, near };
}
