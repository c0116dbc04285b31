/**
 * A trained head on disk: `head.json` (architecture, classes, the cache key and code spec it
 * was trained on, training settings, metrics), `weights.safetensors` (dense layers, canonical
 * [out, in]), `history.json`, and the training curves as SVG and PNG. A head folder is written
 * whole (staged, then renamed into place) and checked whole when loaded: head.json against
 * itself and against the weights' shapes.
 */
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { codeSpecSchema, type AugmentSpec, type CodeSpec } from '../cache/code-spec.ts';
import { readSafetensors, writeSafetensors } from '../backbones/weights/safetensors.ts';
import type { WeightTensor } from '../backbones/weights.ts';
import { replaceFolder, restoreFolder, writeFileAtomic } from '../util/atomic-file.ts';
import { UsageError, UserError } from '../util/errors.ts';
import { InvalidFileError, readJsonFile } from '../util/json-file.ts';
import type { EpochStats } from './fit.ts';
import { historyPlotSvg, renderPng } from './history-plot.ts';
import type { SplitFractions } from './splits.ts';
import type { HeadArchitecture, HeadParams, OptimizerConfig } from './trainer.ts';
import { product } from '../util/numbers.ts';

export const HEAD_FORMAT = 'bottleneck-head/1';

export interface HeadConfig {
  readonly format: typeof HEAD_FORMAT;
  readonly architecture: HeadArchitecture;
  /** Class names in output order. */
  readonly classes: readonly string[];
  readonly cacheKey: string;
  readonly codeSpec: CodeSpec;
  /** The dataset (of the cache key) it was trained on; evaluate scores that dataset's test rows. */
  readonly dataset: string | null;
  /** The cache folder the codes were read from, so later commands find them without --cache. */
  readonly cacheRoot?: string;
  readonly training: {
    readonly trainer: string;
    readonly optimizer: OptimizerConfig;
    readonly l2: number;
    /** Trained on standardised codes; the saved weights already include the scaling. */
    readonly standardized: boolean;
    readonly epochs: number;
    readonly batch: number;
    readonly seed: number;
    readonly patience: number | null;
    /** Which epoch's weights were kept (absent in heads from before --keep: 'best' with patience, else 'last'). */
    readonly keep?: 'best' | 'last';
    /** With --refit: trained again on training + validation rows for the epoch count validation chose. */
    readonly refit?: { readonly epochs: number; readonly rows: number; readonly validationRows: number } | null;
    readonly classWeights: readonly number[] | null;
    readonly splits: {
      readonly source: 'folders' | 'hash';
      /** The --val and --test fractions, which with the content hashes reproduce a hash split. */
      readonly fractions: SplitFractions;
      readonly train: number;
      readonly validation: number;
      readonly test: number;
    };
    /** Cached augmented views added to the training rows, if any. */
    readonly augmented?: (AugmentSpec & { readonly key: string; readonly rows: number }) | null;
  };
  readonly bestEpoch: number;
  readonly metrics: { readonly valLoss: number | null; readonly valAcc: number | null; readonly trainAcc: number | null };
  /**
   * Present on a fine-tuned head (`bottleneck fine-tune`): the backbone is the base weights with
   * the tensors of FINETUNE_WEIGHTS_FILE in place of theirs, and codeSpec.weights names that
   * combination (see src/train-head/head-backbone.ts).
   */
  readonly finetune?: FineTuneInfo;
}

/** The fine-tuned backbone tensors beside head.json, canonical layout (OIHW, [out, in]). */
export const FINETUNE_WEIGHTS_FILE = 'backbone.safetensors';

export interface FineTuneInfo {
  /** weightsId of the backbone as loaded (zoo weights) that the tensors replace parts of. */
  readonly baseWeights: string;
  /** The block given to --unfreeze, the node below it whose codes were cached, and the head's cut. */
  readonly block: string;
  readonly frozenCut: string;
  readonly headCut: string;
  /** Every node whose weights FINETUNE_WEIGHTS_FILE holds (earlier fine-tunes included). */
  readonly nodes: readonly string[];
  /** The cache keys of the frozen cut's codes and of their augmented views (null without --augment). */
  readonly frozenKey: string;
  readonly viewsKey: string | null;
  /** The head (folder) it started from, and that head's cache key. */
  readonly fromHead: string;
  readonly fromCacheKey: string;
  readonly lr: number;
  readonly momentum: number;
  readonly epochs: number;
  readonly batch: number;
  readonly augment: number;
  readonly seed: number;
}

export interface Head {
  readonly dir: string;
  readonly config: HeadConfig;
  readonly params: HeadParams;
}

const positive = z.number().int().positive();
const optimizerSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('adam'), lr: z.number(), beta1: z.number(), beta2: z.number(), epsilon: z.number() }),
  z.object({ kind: z.literal('rmsprop'), lr: z.number(), rho: z.number(), epsilon: z.number() }),
  z.object({ kind: z.literal('sgd'), lr: z.number(), momentum: z.number() }),
]);

/** What head.json must hold; every reader (evaluate, predict, export, fine-tune) relies on it. */
const headConfigSchema = z.object({
  format: z.literal(HEAD_FORMAT),
  architecture: z.object({ inputDim: positive, hidden: z.array(positive), dropout: z.number().min(0).max(1), classes: positive }),
  classes: z.array(z.string()).min(1),
  cacheKey: z.string().min(1),
  codeSpec: codeSpecSchema,
  dataset: z.string().nullable(),
  cacheRoot: z.string().optional(),
  training: z.object({
    trainer: z.string(),
    optimizer: optimizerSchema,
    l2: z.number(),
    standardized: z.boolean(),
    epochs: z.number().int(),
    batch: z.number().int(),
    seed: z.number(),
    patience: z.number().nullable(),
    keep: z.enum(['best', 'last']).optional(),
    refit: z.object({ epochs: z.number().int().positive(), rows: z.number().int(), validationRows: z.number().int() }).nullable().optional(),
    classWeights: z.array(z.number()).nullable(),
    splits: z.object({
      source: z.enum(['folders', 'hash']),
      fractions: z.object({ val: z.number(), test: z.number() }),
      train: z.number().int(),
      validation: z.number().int(),
      test: z.number().int(),
    }),
    augmented: z.object({ views: z.number(), seed: z.number(), recipe: z.string(), key: z.string(), rows: z.number() }).nullable().optional(),
  }).loose(),
  bestEpoch: z.number().int(),
  metrics: z.object({ valLoss: z.number().nullable(), valAcc: z.number().nullable(), trainAcc: z.number().nullable() }),
  finetune: z
    .object({
      baseWeights: z.string(),
      block: z.string(),
      frozenCut: z.string(),
      headCut: z.string(),
      nodes: z.array(z.string()),
      frozenKey: z.string(),
      viewsKey: z.string().nullable(),
      fromHead: z.string(),
      fromCacheKey: z.string(),
      lr: z.number(),
      momentum: z.number(),
      epochs: z.number(),
      batch: z.number(),
      augment: z.number(),
      seed: z.number(),
    })
    .optional(),
}) satisfies z.ZodType<HeadConfig>;

/**
 * Writes a head folder as one unit: into a staging folder that then replaces `dir`, so a
 * re-train killed midway (or out of disk) leaves the old head whole, never new weights beside
 * an old head.json. `extra` writes further files into the same staging folder (fine-tune's
 * backbone tensors). `dir` must be a head folder, or absent, or empty: a folder of other files
 * is not replaced.
 */
export async function saveHead(dir: string, config: HeadConfig, params: HeadParams, history: readonly EpochStats[], extra?: (staging: string) => Promise<void>): Promise<void> {
  await assertReplaceable(dir);
  const dims = [config.architecture.inputDim, ...config.architecture.hidden, config.architecture.classes];
  const tensors = new Map<string, WeightTensor>();
  params.forEach((layer, i) => {
    tensors.set(`dense_${i}.weight`, { shape: [dims[i + 1], dims[i]], data: layer.weight });
    tensors.set(`dense_${i}.bias`, { shape: [dims[i + 1]], data: layer.bias });
  });
  const svg = historyPlotSvg(history, `${config.codeSpec.backbone} ${config.codeSpec.layer}${config.codeSpec.pool ? `:${config.codeSpec.pool}` : ''} → head`);
  const png = await renderPng(svg);
  await replaceFolder(dir, async (staging) => {
    await extra?.(staging);
    await writeSafetensors(path.join(staging, 'weights.safetensors'), tensors, { format: HEAD_FORMAT });
    await writeFileAtomic(path.join(staging, 'history.json'), `${JSON.stringify(history, null, 2)}\n`);
    await writeFileAtomic(path.join(staging, 'history.svg'), svg);
    await writeFileAtomic(path.join(staging, 'history.png'), png);
    await writeFileAtomic(path.join(staging, 'head.json'), `${JSON.stringify(config, null, 2)}\n`);
  });
}

/** Refuses to replace a folder that is not a head: its files are the user's. Check before training. */
export async function assertReplaceable(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  if (!(await stat(dir)).isDirectory()) throw new UsageError(`--out ${dir} is a file, not a folder`);
  if (existsSync(path.join(dir, 'head.json')) || (await readdir(dir)).length === 0) return;
  throw new UsageError(`--out ${dir} exists and is not a head folder; choose a new folder (or an old head's, to replace it)`);
}

export async function loadHead(dir: string): Promise<Head> {
  await restoreFolder(dir);
  const file = path.join(dir, 'head.json');
  if (!existsSync(file)) throw new UserError(`${dir}: not a head folder (no head.json; train-head writes one)`);
  const config: HeadConfig = await readJsonFile(file, headConfigSchema, 'a head (bottleneck-head/1)');
  const { architecture: a, classes } = config;
  if (classes.length !== a.classes) throw new InvalidFileError(file, `lists ${classes.length} classes, its architecture has ${a.classes} outputs`);
  if (new Set(classes).size !== classes.length) throw new InvalidFileError(file, 'lists a class twice');
  const dim = product(config.codeSpec.shape);
  if (a.inputDim !== dim) throw new InvalidFileError(file, `takes ${a.inputDim}-d codes, its code spec gives ${dim}`);
  const weightsFile = path.join(dir, 'weights.safetensors');
  if (!existsSync(weightsFile)) throw new UserError(`${dir}: weights.safetensors is missing`);
  const { source } = await readSafetensors(weightsFile);
  const dims = [a.inputDim, ...a.hidden, a.classes];
  const params = dims.slice(1).map((out, i) => {
    const weight = source.tensors.get(`dense_${i}.weight`);
    const bias = source.tensors.get(`dense_${i}.bias`);
    if (!weight || !bias) throw new InvalidFileError(weightsFile, `dense_${i} is missing (head.json describes ${dims.length - 1} layers)`);
    if (weight.shape.join() !== `${out},${dims[i]}` || bias.shape.join() !== `${out}`) {
      throw new InvalidFileError(weightsFile, `dense_${i} is [${weight.shape}] + [${bias.shape}], head.json needs [${out},${dims[i]}] + [${out}]`);
    }
    return { weight: weight.data, bias: bias.data };
  });
  return { dir, config, params };
}

/** A head only makes sense on codes from the exact backbone, layer and preprocessing it learnt. */
export function assertSameCodes(head: Head, cacheKey: string, spec: CodeSpec): void {
  if (head.config.cacheKey === cacheKey) return;
  const describe = (s: CodeSpec) => `${s.backbone} ${s.layer}${s.pool ? `:${s.pool}` : ''} ${s.preprocessing.size.join('×')} ${s.preprocessing.resize}`;
  throw new UsageError(
    `head ${head.dir} was trained on codes ${head.config.cacheKey} (${describe(head.config.codeSpec)}), not on ${cacheKey} (${describe(spec)})`,
  );
}
