/**
 * From extract's flags to what it will compute: the backbone, the cuts, and the settings that
 * go into each code spec. Shared by extract and by the commands that name codes the way extract
 * does (train-head DATA, audit), so they resolve exactly the key extract writes.
 */
import type { Argv } from 'yargs';
import { hasGroupedConvs, type Backbone } from '../backbones/backbone.ts';
import { CUT_POOLS, FEATURE_LAYOUTS, type Cut, type CutPool, type FeatureLayout } from '../backbones/cut.ts';
import { poolFitting, resolveCuts } from '../backbones/cut-shape.ts';
import type { Pair } from '../backbones/layer-graph.ts';
import type { OnnxBackboneOptions } from '../backbones/onnx-file/onnx-backbone.ts';
import { isOnnxTarget } from '../backbones/onnx-file/onnx-model-file.ts';
import { loadBackbone, ZOO_NAMES } from '../backbones/zoo.ts';
import { cacheKey, INTERPOLATIONS, RESIZE_MODES, type CodeDtype, type Interpolation, type ResizeMode } from '../cache/code-spec.ts';
import type { DeviceChoice, EngineChoice, Precision } from '../engines/engine.ts';
import { PRECISION_CHOICES, resolvePrecision, type PrecisionChoice } from '../engines/precision.ts';
import { checkNumber, optionalNumber, withBackbone, withWeights } from '../util/cli-options.ts';
import { UsageError } from '../util/errors.ts';
import { codeSpecFor } from './extract-targets.ts';
import { parseSize } from '../util/size-flag.ts';

/** The flags that decide which codes are computed. */
export interface ExtractSettingsFlags {
  readonly backbone: string;
  readonly weights?: string;
  /** One layer, or several comma-separated. */
  readonly layer?: string;
  readonly pool?: CutPool;
  readonly size?: string;
  /** Default: the backbone's own pipeline (an ONNX model's preprocessor_config.json), else squash. */
  readonly resize?: ResizeMode;
  readonly interpolation?: Interpolation;
  readonly background: string;
  readonly float16: boolean;
  /** ONNX backbones: overrides of the preprocessing found beside the model. */
  readonly mean?: string;
  readonly std?: string;
  readonly scale?: number;
  readonly channels?: 'rgb' | 'bgr';
  readonly layout?: 'nchw' | 'nhwc';
  readonly featureLayout?: FeatureLayout;
  readonly precision?: PrecisionChoice;
  /** What --precision auto looks at (a command without --device or --engine resolves as for auto). */
  readonly device?: DeviceChoice;
  readonly engine?: EngineChoice;
}

export interface ExtractPlan {
  readonly backbone: Backbone;
  readonly cuts: readonly Cut[];
  readonly size?: Pair;
  readonly resize: ResizeMode;
  readonly interpolation: Interpolation;
  readonly cropFraction?: number;
  readonly background: readonly [number, number, number];
  readonly dtype: CodeDtype;
  readonly precision: Precision;
  /** What --precision auto chose, and why. */
  readonly precisionNote?: string;
}

/** --precision, for extract and the commands that extract on the user's behalf (sweep). */
export const PRECISION_OPTION = {
  choices: PRECISION_CHOICES,
  default: 'fp32' as PrecisionChoice,
  describe: 'compute in fp32, or int8 (weights per channel, activations calibrated on 128 of your images); auto: int8 where the CPU has VNNI or AMX',
} as const;

/** The flags above as yargs options: extract's, and those of the commands that name codes as extract does (train-head DATA, audit). */
export function withExtractSettings<T>(y: Argv<T>) {
  return withWeights(withBackbone(y, ZOO_NAMES))
    .option('layer', { type: 'string', describe: "cut point: any layer name, or any tensor of an ONNX file (default: the backbone's bottleneck); several, comma-separated, are computed in one pass" })
    .option('pool', { choices: CUT_POOLS, describe: 'pooling of the cut: avg or max for spatial maps, cls, mean or mean-patch for token sequences (ViT)' })
    .option('size', { type: 'string', describe: "network input size, e.g. 224 or 150x150 (default: the backbone's)" })
    .option('resize', { choices: RESIZE_MODES, describe: "squash (as Keras), centre crop, or letterbox (default: the model's own preprocessing, else squash)" })
    .option('interpolation', { choices: INTERPOLATIONS, describe: "resampling kernel (default: the model's own preprocessing, else linear)" })
    .option('background', { type: 'string', default: '255,255,255', describe: 'R,G,B that alpha is flattened on (and pad fills with)' })
    .option('float16', { type: 'boolean', default: false, describe: 'store codes as float16 (half the disk)' })
    .option('precision', PRECISION_OPTION)
    .option('mean', { type: 'string', describe: 'ONNX backbones: per-channel mean R,G,B, in --scale units (default: preprocessor_config.json, else ImageNet)' })
    .option('std', { type: 'string', describe: 'ONNX backbones: per-channel std R,G,B, in --scale units' })
    .option('scale', optionalNumber('scale', 'ONNX backbones: pixels (0..255) are multiplied by this before --mean and --std, e.g. 0.00392156862745098 for 1/255 (default 1)', { min: 0, minExclusive: true }))
    .option('channels', { choices: ['rgb', 'bgr'] as const, describe: 'ONNX backbones: channel order the model expects' })
    .option('layout', { choices: ['nchw', 'nhwc'] as const, describe: "ONNX backbones: the model input's layout, where its shape does not tell" })
    .option('feature-layout', { choices: FEATURE_LAYOUTS, describe: "ONNX backbones: how the cut tensor's axes are read, over the detected layout" });
}

/** Checks every flag before loading the backbone, so a typo costs nothing. */
export async function planExtract(flags: ExtractSettingsFlags): Promise<ExtractPlan> {
  const size = flags.size ? parseSize(flags.size) : undefined;
  const background = parseBackground(flags.background);
  const requested = flags.layer ? flags.layer.split(',').map((l) => l.trim()).filter(Boolean) : undefined;
  const onnx = onnxOptions(flags, size);
  if (!isOnnxTarget(flags.backbone)) refuseOnnxOnlyFlags(flags);
  const backbone = await loadBackbone(flags.backbone, { weights: flags.weights, cuts: requested?.map((layer) => ({ layer })), onnx });
  const { precision, note } = resolvePrecision(flags.precision ?? 'fp32', { device: flags.device ?? 'auto', engine: flags.engine }, { groupedConvs: hasGroupedConvs(backbone) });
  return {
    backbone,
    cuts: cutsFor(backbone, requested, flags.pool, size, flags.featureLayout),
    size,
    ...inputFit(backbone, flags),
    background,
    dtype: flags.float16 ? 'float16' : 'float32',
    precision,
    ...(note ? { precisionNote: note } : {}),
  };
}

/** Resize, kernel and crop: the flags, else the backbone's own pipeline, else Keras' squash. */
export function inputFit(backbone: Backbone, flags: Pick<ExtractSettingsFlags, 'resize' | 'interpolation'> = {}): Pick<ExtractPlan, 'resize' | 'interpolation' | 'cropFraction'> {
  // Only an ONNX file's own pipeline decides: a Teachable Machine model's centre crop stays
  // predict's, so the keys of codes extracted before ONNX backbones existed do not move.
  const own = backbone.kind === 'onnx' ? backbone : undefined;
  const resize = flags.resize ?? own?.inputResize ?? 'squash';
  const cropFraction = resize === 'crop' && !flags.resize ? own?.inputCropFraction : undefined;
  return { resize, interpolation: flags.interpolation ?? own?.inputInterpolation ?? 'linear', ...(cropFraction ? { cropFraction } : {}) };
}

function onnxOptions(flags: ExtractSettingsFlags, size: Pair | undefined): OnnxBackboneOptions {
  const scale = flags.scale === undefined ? 1 : checkNumber('scale', flags.scale, { min: 0, minExclusive: true });
  const unscaled = (flag: string, s: string | undefined) => {
    if (s === undefined) return undefined;
    const v = parseTriple(flag, s);
    return v.map((x) => x / scale) as [number, number, number];
  };
  const mean = unscaled('--mean', flags.mean);
  const std = unscaled('--std', flags.std);
  if (std?.some((v) => v <= 0)) throw new UsageError(`--std ${flags.std}: every value must be positive`);
  if (flags.scale !== undefined && !mean && !std) throw new UsageError('--scale applies to --mean and --std: give them too');
  const preprocessing = { ...(mean ? { mean } : {}), ...(std ? { std } : {}), ...(flags.channels ? { channels: flags.channels } : {}) };
  return { ...(size ? { size } : {}), ...(flags.layout ? { layout: flags.layout } : {}), preprocessing };
}

function refuseOnnxOnlyFlags(flags: ExtractSettingsFlags): void {
  const given = (['mean', 'std', 'scale', 'channels', 'layout', 'featureLayout'] as const).filter((f) => flags[f] !== undefined);
  if (given.length > 0) {
    const names = given.map((f) => `--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ');
    throw new UsageError(`${names}: for ONNX backbones only; ${flags.backbone} is not an ONNX file, and its preprocessing and layouts are known`);
  }
}

function parseTriple(flag: string, s: string): [number, number, number] {
  const parts = s.split(',').map(Number);
  if (parts.length !== 3 || parts.some((v) => !Number.isFinite(v))) throw new UsageError(`${flag} ${s}: use three numbers R,G,B, e.g. 0.485,0.456,0.406`);
  return [parts[0], parts[1], parts[2]];
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
export function cutsFor(backbone: Backbone, layers: readonly string[] | undefined, pool: CutPool | undefined, size: Pair | undefined, layout?: FeatureLayout): Cut[] {
  const withLayout = layout ? { layout } : {};
  if (!layers) return [{ ...backbone.defaultCut, ...(pool ? { pool } : {}), ...withLayout }];
  if (layers.length === 0) throw new UsageError('--layer: name at least one layer');
  const resolved = resolveCuts(backbone, size ?? backbone.preprocessing.size, layers.map((layer) => ({ layer, ...withLayout })));
  return layers.map((layer, i) => {
    const chosen = layers.length === 1 ? pool : poolFitting(resolved[i], pool);
    return { layer, ...(chosen ? { pool: chosen } : {}), ...withLayout };
  });
}

export { parseSize };

export function parseBackground(s: string): [number, number, number] {
  const parts = s.split(',').map(Number);
  if (parts.length !== 3 || parts.some((v) => !Number.isInteger(v) || v < 0 || v > 255)) {
    throw new UsageError(`--background ${s}: use R,G,B with values 0-255`);
  }
  return [parts[0], parts[1], parts[2]];
}
