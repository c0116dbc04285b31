/** `bottleneck extract DATA`: flags in, a summary out. The work itself is runExtract's. */
import path from 'node:path';
import { cutLabel } from '../backbones/cut.ts';
import { errorsTableName } from '../cache/errors-table.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { assertDeviceUsable, assertEngineRuns } from '../engines/select-engine.ts';
import { cacheRootOf, defineCommand, numberOption, withBatching, withCache, withEngine } from '../util/cli-options.ts';
import { UsageError } from '../util/errors.ts';
import { listenForInterrupts } from '../util/interrupt.ts';
import { loadDataset } from './dataset.ts';
import { progressSink } from './progress-reporter.ts';
import { planExtract, withExtractSettings, type ExtractSettingsFlags } from './extract-plan.ts';
import { runExtract, shardWriterId } from './run-extract.ts';

export interface ExtractCommand extends ExtractSettingsFlags {
  readonly data: string;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  readonly cacheRoot: string;
  readonly batch: number;
  readonly concurrency: number;
  readonly strict: boolean;
  readonly wait: number;
  readonly flushSeconds: number;
  readonly json: boolean;
  /** The dataset's name in the cache (default: the folder's or manifest's name). */
  readonly name?: string;
  /** Augmented views to cache per training image (0: none), and their seed. */
  readonly augment: number;
  readonly augmentSeed: number;
  /** `K/N`: this process takes the K-th of N parts (by content hash). */
  readonly shard?: string;
}

export const extractCommand = defineCommand(
  'extract <data>',
  'push every image once through the frozen backbone and cache the codes (Arrow files under --cache)',
  (y) =>
    withBatching(withEngine(withCache(withExtractSettings(y))))
      .positional('data', { type: 'string', demandOption: true, describe: 'folder of class subfolders, or a .csv/.jsonl manifest (path,label[,split])' })
      .option('shard', { type: 'string', describe: 'K/N: take the K-th of N parts by content hash; N processes (K = 0..N-1) fill one cache' })
      .option('augment', numberOption('augment', 'also cache K augmented views (flip, rotation, crop, colour) of each training image', { integer: true, min: 0, max: 100 }, 0))
      .option('augment-seed', numberOption('augment-seed', 'the views are a function of this seed and the image', { integer: true }, 0))
      .option('strict', { type: 'boolean', default: false, describe: 'exit 1 if any image could not be used' })
      .option('wait', numberOption('wait', 'seconds to wait for another extract holding the cache lock', { min: 0 }, 0))
      .option('flush-seconds', numberOption('flush-seconds', 'write computed codes to disk at least this often (what a crash can lose; 0: after every batch)', { min: 0 }, 30))
      .option('name', { type: 'string', describe: "the dataset's name in the cache (default: the folder's or manifest's name)" })
      .option('json', { type: 'boolean', default: false, describe: 'JSON progress lines and summary on stdout' }),
  async (argv) => {
    process.exitCode = await runExtractCommand({
      ...argv,
      data: argv.data!,
      cacheRoot: cacheRootOf(argv.cache),
      augmentSeed: argv['augment-seed'],
      flushSeconds: argv['flush-seconds'],
    });
  },
);

/** Returns the exit code: 0, or 1 under --strict when images failed. */
export async function runExtractCommand(cmd: ExtractCommand): Promise<number> {
  // Everything that can be refused is checked before anything is printed or computed.
  const shard = cmd.shard ? parseShard(cmd.shard) : undefined;
  assertDeviceUsable(cmd.engine, cmd.device);
  const dataset = await loadDataset(cmd.data);
  const plan = await planExtract(cmd);
  assertEngineRuns(cmd.engine, plan.backbone, plan.precision);
  const { cuts, precisionNote, ...planned } = plan;

  // Human-readable lines go to stderr in both modes; with --json, stdout stays machine-readable.
  const log = (line: string) => console.error(line);
  const announce = () => {
    log(`${dataset.items.length} images, ${dataset.classes.length} classes (${dataset.classes.slice(0, 8).join(', ')}${dataset.classes.length > 8 ? ', …' : ''})`);
    for (const u of dataset.unlisted) log(`warning: ${u.path}: ${u.reason}`);
    for (const w of dataset.warnings) log(`warning: ${w}`);
    if (precisionNote) log(`note: ${precisionNote}`);
  };

  const sink = progressSink(cmd.json ? 'json' : 'bar');
  const interrupts = listenForInterrupts((why) => {
    if (why === 'signal') log('\ninterrupted: saving what is done (Ctrl-C again to quit at once)');
  });
  try {
    const summary = await runExtract({
      items: dataset.items,
      dataset: { name: cmd.name ?? dataset.name, root: dataset.root, source: dataset.source },
      ...planned,
      cut: cuts[0],
      moreCuts: cuts.slice(1),
      ...(cmd.augment > 0 ? { augment: { views: cmd.augment, seed: cmd.augmentSeed } } : {}),
      ...(shard ? { shard } : {}),
      batch: cmd.batch,
      concurrency: cmd.concurrency,
      engine: cmd.engine,
      device: cmd.device,
      cacheRoot: path.resolve(cmd.cacheRoot),
      waitForLockSeconds: cmd.wait,
      flushSeconds: cmd.flushSeconds,
      signal: interrupts.signal,
      onProgress: (p) => sink.update(p),
      onNote: (note) => log(`note: ${note}`),
      onStart: announce,
      onEngine: (engine) => {
        log(`engine: ${engine.name}/${engine.provider}`);
        for (const note of engine.notes) log(`note: ${note}`);
      },
    });
    sink.stop();
    if (interrupts.pipeClosed()) return 0;
    const { failures, members: _members, ...facts } = summary;
    if (cmd.json) {
      console.log(
        JSON.stringify({
          event: 'summary',
          ...facts,
          imgPerSec: Number(facts.imgPerSec.toFixed(3)),
          seconds: Number(facts.seconds.toFixed(3)),
          errors: path.join(summary.path, errorsTableName(shardWriterId(shard))),
        }),
      );
    } else {
      console.log(
        `${summary.images} images: ${summary.new} new, ${summary.reused} reused, ${summary.failed} failed` +
          (cmd.shard ? `, ${summary.otherShards} left to the other shards` : '') +
          ` in ${summary.seconds.toFixed(1)} s` +
          (summary.new ? ` (${summary.imgPerSec.toFixed(2)} img/s on ${summary.engine})` : ''),
      );
      for (const c of summary.caches) {
        console.log(`cache key ${c.key}${summary.caches.length > 1 ? ` (${cutLabel(c.cut)})` : ''}\n  ${c.path}`);
        if (c.views) console.log(`augmented views (${summary.views} computed this run): train on ${c.views.key}\n  ${c.views.path}`);
      }
    }
    if (failures.length > 0) {
      log(`warning: ${failures.length} image(s) skipped, listed with reasons in ${path.join(summary.path, errorsTableName(shardWriterId(shard)))}:`);
      for (const f of failures.slice(0, 10)) log(`  ${f.path}: ${f.message}`);
      if (failures.length > 10) log(`  … and ${failures.length - 10} more`);
    }
    if (summary.interrupted) return 130;
    return cmd.strict && failures.length > 0 ? 1 : 0;
  } finally {
    sink.stop();
    interrupts.dispose();
  }
}

export function parseShard(s: string): { index: number; count: number } {
  const m = s.match(/^(\d+)\/(\d+)$/);
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || count < 1 || count > 100_000 || index >= count) throw new UsageError(`--shard ${s}: use K/N with 0 ≤ K < N, e.g. 0/4 (K is JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID)`);
  return { index, count };
}

