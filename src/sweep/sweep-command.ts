/**
 * `bottleneck sweep --data DIR`: which cut should the head sit on? Extracts every candidate cut
 * in one forward pass (each into its own cache key, computing only what is missing), trains the
 * same head on each, and ranks them by validation accuracy. Late cuts are ImageNet-specific;
 * for data unlike ImageNet an earlier one often wins, and this measures it rather than guessing.
 */
import path from 'node:path';
import { hasGroupedConvs, type Backbone } from '../backbones/backbone.ts';
import { CUT_POOLS, cutLabel, type Cut, type CutPool } from '../backbones/cut.ts';
import { poolFitting, resolveCuts } from '../backbones/cut-shape.ts';
import { loadBackbone, ZOO_NAMES } from '../backbones/zoo.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { resolvePrecision, type PrecisionChoice } from '../engines/precision.ts';
import { assertEngineRuns } from '../engines/select-engine.ts';
import { loadDataset } from '../extract/dataset.ts';
import { progressSink } from '../extract/progress-reporter.ts';
import { inputFit, PRECISION_OPTION } from '../extract/extract-plan.ts';
import { DEFAULT_EXTRACT_SETTINGS, runExtract } from '../extract/run-extract.ts';
import { withHeadOptions } from '../train-head/train-command.ts';
import { DEFAULT_HEAD_TRAINING, trainHead } from '../train-head/train-head.ts';
import { cacheRootOf, defineCommand, numberOption, withBackbone, withBatching, withCache, withEngine, withWeights, WHOLE_POSITIVE } from '../util/cli-options.ts';
import { UsageError } from '../util/errors.ts';

export const sweepCommand = defineCommand(
  'sweep [data]',
  'which cut suits your data? extracts several cuts in one pass, trains a head on each, ranks them',
  (y) =>
    withBatching(withEngine(withWeights(withBackbone(withCache(withHeadOptions(y)), ZOO_NAMES))))
      .positional('data', { type: 'string', describe: 'folder or manifest, as for extract (or --data)' })
      .option('layer', { type: 'string', describe: "cuts to compare, comma-separated (default: the backbone's named cuts)" })
      .option('pool', { choices: CUT_POOLS, default: 'avg' as const, describe: 'pooling of spatial cuts (avg, max); token sequences take cls unless a token pooling is named' })
      .option('epochs', numberOption('epochs', 'passes over the training rows, per head', WHOLE_POSITIVE, 30))
      .option('out', { type: 'string', default: 'sweeps', describe: 'folder for the heads, one per cut' })
      .option('precision', PRECISION_OPTION)
      .option('json', { type: 'boolean', default: false }),
  async (argv) => {
    if (!argv.data) throw new UsageError('sweep needs a dataset: bottleneck sweep DATA (a folder or manifest, as for extract)');
    const result = await runSweep({
      ...argv,
      data: argv.data,
      layers: argv.layer?.split(',').map((l) => l.trim()).filter(Boolean),
      cacheRoot: cacheRootOf(argv.cache),
      quiet: argv.json,
    });
    console.log(argv.json ? JSON.stringify(result) : formatSweep(result));
  },
);

export interface SweepCommand {
  readonly data: string;
  readonly backbone: string;
  readonly weights?: string;
  /** Cuts to compare; default the backbone's named cuts. */
  readonly layers?: readonly string[];
  /** Global pooling of spatial cuts (a flattened early map is far too wide for a small head). */
  readonly pool: CutPool;
  readonly cacheRoot: string;
  readonly out: string;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  readonly batch: number;
  readonly concurrency: number;
  /** The head trained on every cut. */
  readonly hidden: readonly number[];
  readonly epochs: number;
  readonly seed: number;
  readonly val: number;
  readonly quiet?: boolean;
  /** Default fp32. */
  readonly precision?: PrecisionChoice;
}

export interface SweepRow {
  readonly cut: Cut;
  readonly key: string;
  readonly dim: number;
  readonly valAcc: number;
  readonly valLoss: number;
  readonly trainSeconds: number;
  readonly head: string;
}

export interface SweepResult {
  readonly rows: readonly SweepRow[];
  /** The best row: highest validation accuracy, then lowest validation loss, then fewest dimensions. */
  readonly best: SweepRow;
  readonly extractSeconds: number;
  readonly computed: number;
}

export async function runSweep(cmd: SweepCommand): Promise<SweepResult> {
  const dataset = await loadDataset(cmd.data);
  const layers = cmd.layers ?? null;
  const backbone = await loadBackbone(cmd.backbone, { weights: cmd.weights, cuts: layers?.map((layer) => ({ layer })) });
  const cuts = sweepCuts(backbone, layers ?? backbone.namedCuts, cmd.pool);
  const log = (line: string) => {
    if (!cmd.quiet) console.error(line);
  };
  log(`sweep: ${cuts.length} cuts of ${backbone.id} in one pass over ${dataset.items.length} images: ${cuts.map(cutLabel).join(', ')}`);
  const { precision, note } = resolvePrecision(cmd.precision ?? 'fp32', { device: cmd.device, engine: cmd.engine }, { groupedConvs: hasGroupedConvs(backbone) });
  if (note) log(`note: ${note}`);
  assertEngineRuns(cmd.engine, backbone, precision);
  const sink = progressSink(cmd.quiet ? 'none' : 'bar');
  const extracted = await runExtract({
    precision,
    items: dataset.items,
    dataset,
    backbone,
    cut: cuts[0],
    moreCuts: cuts.slice(1),
    ...DEFAULT_EXTRACT_SETTINGS,
    ...inputFit(backbone),
    batch: cmd.batch,
    concurrency: cmd.concurrency,
    engine: cmd.engine,
    device: cmd.device,
    cacheRoot: path.resolve(cmd.cacheRoot),
  }).finally(() => sink.stop());
  log(`extract: ${extracted.new} images computed, ${extracted.reused} reused, in ${extracted.seconds.toFixed(1)} s`);

  const rows: SweepRow[] = [];
  for (const c of extracted.caches) {
    const head = path.resolve(cmd.out, c.key);
    const started = performance.now();
    const { config } = await trainHead({
      ...DEFAULT_HEAD_TRAINING,
      codes: c.path,
      cacheRoot: cmd.cacheRoot,
      out: head,
      hidden: cmd.hidden,
      dropout: cmd.hidden.length > 0 ? 0.5 : 0,
      epochs: cmd.epochs,
      seed: cmd.seed,
      val: cmd.val,
      // Cuts differ in scale by orders of magnitude; standardising puts every cut on equal terms.
      standardize: true,
      dataset: dataset.name,
    });
    const row: SweepRow = {
      cut: c.cut,
      key: c.key,
      dim: config.architecture.inputDim,
      valAcc: config.metrics.valAcc ?? 0,
      valLoss: config.metrics.valLoss ?? Infinity,
      trainSeconds: (performance.now() - started) / 1000,
      head,
    };
    rows.push(row);
    log(`  ${cutLabel(c.cut)}: val acc ${(row.valAcc * 100).toFixed(2)}% (${row.trainSeconds.toFixed(1)} s)`);
  }
  const best = [...rows].sort((a, b) => b.valAcc - a.valAcc || a.valLoss - b.valLoss || a.dim - b.dim)[0];
  return { rows, best, extractSeconds: extracted.seconds, computed: extracted.new };
}

/** Spatial cuts pooled, vectors as they are; unknown names fail before any work. */
function sweepCuts(backbone: Backbone, layers: readonly string[], pool: CutPool): Cut[] {
  if (layers.length === 0) throw new UsageError(`${backbone.id} names no cuts to sweep: pass --layer a,b,c`);
  const resolved = resolveCuts(backbone, backbone.preprocessing.size, layers.map((layer) => ({ layer })));
  return layers.map((layer, i) => {
    const fitting = poolFitting(resolved[i], pool);
    return fitting ? { layer, pool: fitting } : { layer };
  });
}

export function formatSweep(result: SweepResult): string {
  const labels = result.rows.map((r) => cutLabel(r.cut));
  const width = Math.max(5, ...labels.map((l) => l.length));
  const lines = [`${'layer'.padEnd(width)}  ${'dims'.padStart(6)}  ${'val acc'.padStart(8)}  ${'val loss'.padStart(8)}  ${'train s'.padStart(7)}`];
  result.rows.forEach((r, i) => {
    const mark = r === result.best ? '  ← best' : '';
    lines.push(
      `${labels[i].padEnd(width)}  ${String(r.dim).padStart(6)}  ${`${(r.valAcc * 100).toFixed(2)}%`.padStart(8)}  ${r.valLoss.toFixed(4).padStart(8)}  ${r.trainSeconds.toFixed(1).padStart(7)}${mark}`,
    );
  });
  lines.push('', `recommended cut: ${cutLabel(result.best.cut)} (highest validation accuracy); its head: ${result.best.head}`);
  lines.push(`extract: one pass for all cuts, ${result.computed} images computed in ${result.extractSeconds.toFixed(1)} s`);
  return lines.join('\n');
}
