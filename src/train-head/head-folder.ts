/**
 * A trained head on disk: `head.json` (architecture, classes, the cache key and code spec it
 * was trained on, training settings, metrics), `weights.safetensors` (dense layers, canonical
 * [out, in]), `history.json`, and the training curves as SVG and PNG.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AugmentSpec, CodeSpec } from '../cache/code-spec.ts';
import { readSafetensors, writeSafetensors } from '../backbones/weights/safetensors.ts';
import type { WeightTensor } from '../backbones/weights.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { UsageError } from '../util/errors.ts';
import type { EpochStats } from './fit.ts';
import { historyPlotSvg, renderPng } from './history-plot.ts';
import type { SplitFractions } from './splits.ts';
import type { HeadArchitecture, HeadParams, OptimizerConfig } from './trainer.ts';

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

export async function saveHead(dir: string, config: HeadConfig, params: HeadParams, history: readonly EpochStats[]): Promise<void> {
  const dims = [config.architecture.inputDim, ...config.architecture.hidden, config.architecture.classes];
  const tensors = new Map<string, WeightTensor>();
  params.forEach((layer, i) => {
    tensors.set(`dense_${i}.weight`, { shape: [dims[i + 1], dims[i]], data: layer.weight });
    tensors.set(`dense_${i}.bias`, { shape: [dims[i + 1]], data: layer.bias });
  });
  await writeSafetensors(path.join(dir, 'weights.safetensors'), tensors, { format: HEAD_FORMAT });
  await writeFileAtomic(path.join(dir, 'history.json'), `${JSON.stringify(history, null, 2)}\n`);
  const svg = historyPlotSvg(history, `${config.codeSpec.backbone} ${config.codeSpec.layer}${config.codeSpec.pool ? `:${config.codeSpec.pool}` : ''} → head`);
  await writeFileAtomic(path.join(dir, 'history.svg'), svg);
  await writeFileAtomic(path.join(dir, 'history.png'), await renderPng(svg));
  // head.json last: a folder with head.json is a complete head.
  await writeFileAtomic(path.join(dir, 'head.json'), `${JSON.stringify(config, null, 2)}\n`);
}

export async function loadHead(dir: string): Promise<Head> {
  const file = path.join(dir, 'head.json');
  let config: HeadConfig;
  try {
    config = JSON.parse(await readFile(file, 'utf8')) as HeadConfig;
  } catch {
    throw new UsageError(`${dir}: not a head folder (no readable head.json)`);
  }
  if (config.format !== HEAD_FORMAT) throw new UsageError(`${file}: unknown head format '${String(config.format)}'`);
  const { source } = await readSafetensors(path.join(dir, 'weights.safetensors'));
  const layers = config.architecture.hidden.length + 1;
  const params = Array.from({ length: layers }, (_, i) => {
    const weight = source.tensors.get(`dense_${i}.weight`);
    const bias = source.tensors.get(`dense_${i}.bias`);
    if (!weight || !bias) throw new UsageError(`${dir}/weights.safetensors: missing dense_${i}`);
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
