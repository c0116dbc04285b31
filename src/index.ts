/**
 * bottleneck as a library: the same stages the CLI runs, with options objects and callbacks.
 * Nothing here writes to the console; progress comes through the callbacks you pass.
 *
 *   import { extract, trainHead, evaluate, predict, exportModel } from 'bottleneck';
 *   const codes = await extract({ data: 'photos/', backbone: 'squeezenet1_1' });
 *   const head = await trainHead({ codes: codes.path, out: 'head' });
 *   const report = await evaluate({ head: head.dir });
 */
import path from 'node:path';
import type { CutPool } from './backbones/cut.ts';
import type { Interpolation, ResizeMode } from './cache/code-spec.ts';
import type { DeviceChoice, EngineChoice } from './engines/engine.ts';
import type { PrecisionChoice } from './engines/precision.ts';
import { runEvaluate } from './evaluate/evaluate-command.ts';
import type { EvaluationReport } from './evaluate/evaluation-report.ts';
import { loadDataset } from './extract/dataset.ts';
import { planExtract } from './extract/extract-plan.ts';
import { runExtract, type ExtractProgress, type ExtractSummary } from './extract/run-extract.ts';
import type { ImagePrediction } from './predict/classifier.ts';
import { runExport, type ExportFormat } from './predict/export-command.ts';
import { expandImageInputs } from './predict/image-inputs.ts';
import { predictWithHead } from './predict/predict-head.ts';
import { loadHead } from './train-head/head-folder.ts';
import { DEFAULT_HEAD_TRAINING, trainHead as runTrainHeadStage, type TrainHeadEvent, type TrainHeadOptions, type TrainHeadResult } from './train-head/train-head.ts';
import { DEFAULT_CACHE } from './util/cli-options.ts';

export { FeatureCache } from './cache/feature-cache.ts';
export { readCodeTable, resolveDataset, type CodeTable } from './cache/code-table.ts';
export { loadBackbone, BUILT_IN_BACKBONE, ZOO_NAMES } from './backbones/zoo.ts';
export { loadDataset, type Dataset, type DatasetItem } from './extract/dataset.ts';
export { writeHtmlReport as writeEvaluationReport } from './evaluate/report-html.ts';
export { UserError } from './util/errors.ts';
export type { Backbone } from './backbones/backbone.ts';
export type { CodeSpec } from './cache/code-spec.ts';
export type { EvaluationReport, ExtractProgress, ExtractSummary, ImagePrediction, TrainHeadEvent, TrainHeadResult };

/** Where the engines run: the defaults pick onnxruntime, on a GPU when one is usable. */
export interface EngineOptions {
  readonly engine?: EngineChoice;
  readonly device?: DeviceChoice;
  readonly batch?: number;
  readonly concurrency?: number;
}

export interface ExtractOptions extends EngineOptions {
  /** A folder of class subfolders (optionally under train/validation/test), or a .csv/.jsonl manifest. */
  readonly data: string;
  /** A zoo name (default vgg16; squeezenet1_1 is built in) or a TF.js model.json. */
  readonly backbone?: string;
  readonly weights?: string;
  /** A layer name, or several comma-separated (one key each, in one pass). */
  readonly layer?: string;
  readonly pool?: CutPool;
  /** 224, or '150x150'. */
  readonly size?: string | number;
  readonly resize?: ResizeMode;
  readonly interpolation?: Interpolation;
  readonly background?: readonly [number, number, number];
  readonly float16?: boolean;
  /** fp32 (default), int8 (calibrated on 128 of the images), or auto (int8 where the CPU has VNNI or AMX). */
  readonly precision?: PrecisionChoice;
  /** The cache folder (default ./cache). */
  readonly cache?: string;
  /** The dataset's name in the cache (default: the folder's or manifest's name). */
  readonly name?: string;
  /** Augmented views cached per training image. */
  readonly augment?: { readonly views: number; readonly seed?: number };
  readonly onProgress?: (progress: ExtractProgress) => void;
  readonly signal?: AbortSignal;
}

/** Every image through the frozen backbone once, its codes into the cache (only what is new). */
export async function extract(opts: ExtractOptions): Promise<ExtractSummary> {
  const dataset = await loadDataset(opts.data);
  const plan = await planExtract({
    backbone: opts.backbone ?? 'vgg16',
    weights: opts.weights,
    layer: opts.layer,
    pool: opts.pool,
    size: opts.size === undefined ? undefined : String(opts.size),
    resize: opts.resize,
    interpolation: opts.interpolation,
    background: (opts.background ?? [255, 255, 255]).join(','),
    float16: opts.float16 ?? false,
    precision: opts.precision ?? 'fp32',
    device: opts.device ?? 'auto',
    engine: opts.engine ?? 'auto',
  });
  return runExtract({
    items: dataset.items,
    dataset: { name: opts.name ?? dataset.name, root: dataset.root, source: dataset.source },
    ...plan,
    cut: plan.cuts[0],
    moreCuts: plan.cuts.slice(1),
    ...(opts.augment ? { augment: { views: opts.augment.views, seed: opts.augment.seed ?? 0 } } : {}),
    batch: opts.batch ?? 8,
    concurrency: opts.concurrency ?? 4,
    engine: opts.engine ?? 'auto',
    device: opts.device ?? 'auto',
    cacheRoot: path.resolve(opts.cache ?? DEFAULT_CACHE),
    signal: opts.signal,
    onProgress: opts.onProgress,
  });
}

export type TrainHeadApiOptions = Partial<Omit<TrainHeadOptions, 'codes' | 'cacheRoot'>> & {
  /** The key folder extract returned (`summary.path`), or a key name under `cache`. */
  readonly codes: string;
  readonly cache?: string;
};

/** A head on cached codes: the Keras blog's Dense(256) head and settings unless told otherwise. */
export async function trainHead(opts: TrainHeadApiOptions): Promise<TrainHeadResult> {
  return runTrainHeadStage({ ...DEFAULT_HEAD_TRAINING, ...opts, cacheRoot: path.resolve(opts.cache ?? DEFAULT_CACHE) });
}

export interface EvaluateOptions extends EngineOptions {
  readonly head: string;
  /** Images to score instead of the head's own test (or validation) rows. */
  readonly data?: string;
  /** Default: the cache the head was trained from. */
  readonly cache?: string;
  readonly weights?: string;
  readonly onWarning?: (message: string) => void;
}

/** Accuracy, per-class precision/recall/F1, the confusion matrix and the worst mistakes. */
export async function evaluate(opts: EvaluateOptions): Promise<EvaluationReport> {
  return runEvaluate({ ...opts, cacheRoot: opts.cache, batch: opts.batch ?? 8, concurrency: opts.concurrency ?? 4, engine: opts.engine ?? 'auto', device: opts.device ?? 'auto', quiet: true });
}

export interface PredictOptions extends EngineOptions {
  readonly head: string;
  /** Files, folders (searched for images) or glob patterns. */
  readonly images: readonly string[];
  readonly topK?: number;
  /** Default: the cache the head was trained from; the images' codes are cached there. */
  readonly cache?: string;
  readonly weights?: string;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: ExtractProgress) => void;
}

/** Class probabilities for each image, in the order given (an unreadable one carries `error`). */
export async function predict(opts: PredictOptions): Promise<readonly ImagePrediction[]> {
  const head = await loadHead(opts.head);
  const files = await expandImageInputs(opts.images);
  const cacheRoot = path.resolve(opts.cache ?? head.config.cacheRoot ?? DEFAULT_CACHE);
  const { predictions } = await predictWithHead({
    head,
    files,
    cacheRoot,
    weights: opts.weights,
    topK: opts.topK ?? 5,
    batch: opts.batch ?? 8,
    concurrency: opts.concurrency ?? 4,
    engine: opts.engine ?? 'auto',
    device: opts.device ?? 'auto',
    signal: opts.signal,
    onProgress: opts.onProgress,
  });
  return predictions;
}

export interface ExportOptions {
  readonly head: string;
  readonly format: ExportFormat;
  /** A new folder, or an earlier export's (replaced whole). */
  readonly out: string;
  readonly weights?: string;
}

/** Backbone + head as one model file (ONNX or TF.js layers) with its preprocessing.json, loaded back before it returns. */
export async function exportModel(opts: ExportOptions): Promise<{ readonly files: readonly string[]; readonly notes: readonly string[] }> {
  return runExport(opts);
}
