/**
 * From extract's flags to what it will compute: the backbone, the cuts, and the settings that
 * go into each code spec. Shared by extract and by the commands that name codes the way extract
 * does (train-head DATA, audit), so they resolve exactly the key extract writes.
 */
import type { Argv } from 'yargs';
import type { Backbone } from '../backbones/backbone.ts';
import { planCuts, type Cut, type CutPool } from '../backbones/cut.ts';
import type { Pair } from '../backbones/layer-graph.ts';
import { resolveLayer } from '../backbones/layer-graph.ts';
import { loadBackbone, ZOO_NAMES } from '../backbones/zoo.ts';
import { cacheKey, INTERPOLATIONS, RESIZE_MODES, type CodeDtype, type Interpolation, type ResizeMode } from '../cache/code-spec.ts';
import { withBackbone, withWeights } from '../util/cli-options.ts';
import { UsageError } from '../util/errors.ts';
import { codeSpecFor } from './extract-targets.ts';

/** The flags that decide which codes are computed. */
export interface ExtractSettingsFlags {
  readonly backbone: string;
  readonly weights?: string;
  /** One layer, or several comma-separated. */
  readonly layer?: string;
  readonly pool?: CutPool;
  readonly size?: string;
  readonly resize: ResizeMode;
  readonly interpolation: Interpolation;
  readonly background: string;
  readonly float16: boolean;
}

export interface ExtractPlan {
  readonly backbone: Backbone;
  readonly cuts: readonly Cut[];
  readonly size?: Pair;
  readonly resize: ResizeMode;
  readonly interpolation: Interpolation;
  readonly background: readonly [number, number, number];
  readonly dtype: CodeDtype;
}

/** The flags above as yargs options: extract's, and those of the commands that name codes as extract does (train-head DATA, audit). */
export function withExtractSettings<T>(y: Argv<T>) {
  return withWeights(withBackbone(y, ZOO_NAMES))
    .option('layer', { type: 'string', describe: "cut point: any layer name (default: the backbone's bottleneck); several, comma-separated, are computed in one pass" })
    .option('pool', { choices: ['avg', 'max'] as const, describe: 'global pooling of the cut' })
    .option('size', { type: 'string', describe: "network input size, e.g. 224 or 150x150 (default: the backbone's)" })
    .option('resize', { choices: RESIZE_MODES, default: 'squash' as const, describe: 'squash (as Keras), centre crop, or letterbox' })
    .option('interpolation', { choices: INTERPOLATIONS, default: 'linear' as const })
    .option('background', { type: 'string', default: '255,255,255', describe: 'R,G,B that alpha is flattened on (and pad fills with)' })
    .option('float16', { type: 'boolean', default: false, describe: 'store codes as float16 (half the disk)' });
}

/** Checks every flag before loading the backbone, so a typo costs nothing. */
export async function planExtract(flags: ExtractSettingsFlags): Promise<ExtractPlan> {
  const size = flags.size ? parseSize(flags.size) : undefined;
  const background = parseBackground(flags.background);
  const requested = flags.layer ? flags.layer.split(',').map((l) => l.trim()).filter(Boolean) : undefined;
  const backbone = await loadBackbone(flags.backbone, { weights: flags.weights, cuts: requested?.map((layer) => ({ layer })) });
  return { backbone, cuts: cutsFor(backbone, requested, flags.pool, size), size, resize: flags.resize, interpolation: flags.interpolation, background, dtype: flags.float16 ? 'float16' : 'float32' };
}

/** The key the plan's first cut is extracted into (what extract prints). */
export function planKey(plan: ExtractPlan): string {
  return cacheKey(codeSpecFor({ ...plan, cut: plan.cuts[0] }));
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

/** Far beyond any backbone's input, far below what would exhaust memory for one batch. */
const MAX_SIZE = 4096;

export function parseSize(s: string): Pair {
  const m = s.match(/^(\d+)(?:[x×,](\d+))?$/);
  const size: Pair = [Number(m?.[1]), Number(m?.[2] ?? m?.[1])];
  if (!m || size.some((v) => v < 8 || v > MAX_SIZE)) throw new UsageError(`--size ${s}: use N or HxW with sides from 8 to ${MAX_SIZE}, e.g. 224 or 150x150`);
  return size;
}

export function parseBackground(s: string): [number, number, number] {
  const parts = s.split(',').map(Number);
  if (parts.length !== 3 || parts.some((v) => !Number.isInteger(v) || v < 0 || v > 255)) {
    throw new UsageError(`--background ${s}: use R,G,B with values 0-255`);
  }
  return [parts[0], parts[1], parts[2]];
}
