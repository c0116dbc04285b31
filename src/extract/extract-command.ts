/** `bottleneck extract`: flags in, a summary out. The work itself is runExtract's. */
import path from 'node:path';
import type { Backbone } from '../backbones/backbone.ts';
import { cutLabel, planCuts, type Cut, type CutPool } from '../backbones/cut.ts';
import type { Pair } from '../backbones/layer-graph.ts';
import { resolveLayer } from '../backbones/layer-graph.ts';
import { loadBackbone } from '../backbones/zoo.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { UsageError } from '../util/errors.ts';
import { loadDataset } from './dataset.ts';
import type { Interpolation, ResizeMode } from './decode-image.ts';
import { errorsTableName } from '../cache/errors-table.ts';
import { progressSink } from './progress-reporter.ts';
import { runExtract, shardWriterId } from './run-extract.ts';

export interface ExtractCommand {
  readonly data: string;
  readonly backbone: string;
  readonly weights?: string;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  readonly cacheRoot: string;
  readonly layer?: string;
  readonly pool?: CutPool;
  readonly size?: string;
  readonly resize: ResizeMode;
  readonly interpolation: Interpolation;
  readonly background: string;
  readonly batch: number;
  readonly concurrency: number;
  readonly float16: boolean;
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

/** Returns the exit code: 0, or 1 under --strict when images failed. */
export async function runExtractCommand(cmd: ExtractCommand): Promise<number> {
  if (!Number.isInteger(cmd.augment) || cmd.augment < 0 || cmd.augment > 100) throw new UsageError(`--augment ${cmd.augment}: use a whole number of views, 0 to 100`);
  const shard = cmd.shard ? parseShard(cmd.shard) : undefined;
  const dataset = await loadDataset(cmd.data);
  const size = cmd.size ? parseSize(cmd.size) : undefined;
  const requested = cmd.layer ? cmd.layer.split(',').map((l) => l.trim()).filter(Boolean) : undefined;
  const backbone = await loadBackbone(cmd.backbone, { weights: cmd.weights, cuts: requested?.map((layer) => ({ layer })) });
  const cuts = cutsFor(backbone, requested, cmd.pool, size);

  // Human-readable lines go to stderr in both modes; with --json, stdout stays machine-readable.
  const log = (line: string) => console.error(line);
  log(`${dataset.items.length} images, ${dataset.classes.length} classes (${dataset.classes.slice(0, 8).join(', ')}${dataset.classes.length > 8 ? ', …' : ''})`);
  for (const u of dataset.unlisted) log(`warning: ${u.path}: ${u.reason}`);

  const sink = progressSink(cmd.json ? 'json' : 'bar');
  const abort = new AbortController();
  const onSignal = () => {
    if (abort.signal.aborted) process.exit(130);
    log('\ninterrupted: saving what is done (Ctrl-C again to quit at once)');
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const summary = await runExtract({
      items: dataset.items,
      dataset: cmd.name ?? dataset.name,
      datasetRoot: dataset.root,
      backbone,
      cut: cuts[0],
      moreCuts: cuts.slice(1),
      ...(cmd.augment > 0 ? { augment: { views: cmd.augment, seed: cmd.augmentSeed } } : {}),
      ...(shard ? { shard } : {}),
      size,
      resize: cmd.resize,
      interpolation: cmd.interpolation,
      background: parseBackground(cmd.background),
      dtype: cmd.float16 ? 'float16' : 'float32',
      batch: cmd.batch,
      concurrency: cmd.concurrency,
      engine: cmd.engine,
      device: cmd.device,
      cacheRoot: path.resolve(cmd.cacheRoot),
      waitForLockSeconds: cmd.wait,
      flushSeconds: cmd.flushSeconds,
      signal: abort.signal,
      onProgress: (p) => sink.update(p),
      onEngine: (engine) => {
        log(`engine: ${engine.name}/${engine.provider}`);
        for (const note of engine.notes) log(`note: ${note}`);
      },
    });
    sink.stop();
    const { failures, ...facts } = summary;
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
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * The cuts to extract: the backbone's default, or each --layer. With several layers (a sweep),
 * --pool applies to the spatial ones and vectors such as relu6 are taken as they are; with one,
 * pooling a vector is an error.
 */
export function cutsFor(backbone: Backbone, layers: readonly string[] | undefined, pool: CutPool | undefined, size: Pair | undefined): Cut[] {
  if (!layers) return [pool ? { ...backbone.defaultCut, pool } : backbone.defaultCut];
  if (layers.length === 0) throw new UsageError('--layer: name at least one layer');
  const plan = planCuts(backbone.graph, size ?? backbone.preprocessing.size, layers.map((layer) => ({ layer })));
  return layers.map((layer) => {
    const spatial = plan.shapes.get(resolveLayer(backbone.graph, layer).name)!.length === 3;
    return pool && (spatial || layers.length === 1) ? { layer, pool } : { layer };
  });
}

function parseShard(s: string): { index: number; count: number } {
  const m = s.match(/^(\d+)\/(\d+)$/);
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || count < 1 || index >= count) throw new UsageError(`--shard ${s}: use K/N with 0 ≤ K < N, e.g. 0/4 (K is JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID)`);
  return { index, count };
}

export function parseSize(s: string): Pair {
  const m = s.match(/^(\d+)(?:[x×,](\d+))?$/);
  if (!m) throw new UsageError(`--size ${s}: use N or HxW, e.g. 224 or 150x150`);
  return [Number(m[1]), Number(m[2] ?? m[1])];
}

export function parseBackground(s: string): [number, number, number] {
  const parts = s.split(',').map(Number);
  if (parts.length !== 3 || parts.some((v) => !Number.isInteger(v) || v < 0 || v > 255)) {
    throw new UsageError(`--background ${s}: use R,G,B with values 0-255`);
  }
  return [parts[0], parts[1], parts[2]];
}
