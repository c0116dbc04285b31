/**
 * `bottleneck audit DATA`: extracts what is missing, audits the rows, prints the summary (or
 * JSON), and writes the HTML report and the cleaned manifest when asked. The work is
 * audit-source's and audit's; this module holds the printing.
 */
import path from 'node:path';
import type { CutPool } from '../backbones/cut.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import type { Interpolation, ResizeMode } from '../extract/decode-image.ts';
import { progressSink } from '../extract/progress-reporter.ts';
import { UsageError } from '../util/errors.ts';
import { runAudit, type AuditResult } from './audit.ts';
import { loadAuditSource, type AuditSource } from './audit-source.ts';
import { formatAudit, type AuditHeader } from './format-audit.ts';
import { rowsToDrop, writeCleanManifest } from './manifest.ts';
import { writeAuditReport } from './report-html.ts';

/** The flags audit-options.ts declares, as yargs hands them over. */
export interface AuditCommand {
  readonly data: string;
  readonly backbone: string;
  readonly weights?: string;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  readonly cache: string;
  readonly layer?: string;
  readonly pool?: CutPool;
  readonly size?: string;
  readonly resize: ResizeMode;
  readonly interpolation: Interpolation;
  readonly background: string;
  readonly batch: number;
  readonly concurrency: number;
  readonly float16: boolean;
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
  if (!Number.isInteger(cmd.folds) || cmd.folds < 2) throw new UsageError(`--folds ${cmd.folds}: use a whole number ≥ 2`);
  if (!Number.isInteger(cmd.neighbours) || cmd.neighbours < 1) throw new UsageError(`--neighbours ${cmd.neighbours}: use a whole number ≥ 1`);
  if (!Number.isInteger(cmd.epochs) || cmd.epochs < 1) throw new UsageError(`--epochs ${cmd.epochs}: use a whole number ≥ 1`);
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

function parseHidden(hidden: string): number[] {
  const sizes = hidden === '0' ? [] : hidden.split(',').map(Number);
  if (sizes.some((h) => !Number.isInteger(h) || h <= 0)) throw new UsageError(`--hidden ${hidden}: use sizes like 256 or 512,128, or 0`);
  return sizes;
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
