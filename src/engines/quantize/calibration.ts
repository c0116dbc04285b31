/**
 * The calibration of an int8 model: the float range of every activation tensor its Q/DQ pairs
 * need, measured by running the float32 model over a fixed sample of the user's own images
 * (chosen by the extract stage, see extract/calibration-sample.ts).
 *
 * Calibrations are kept in the cache, one file per key (backbone, weights, input size and
 * preprocessing: what decides a tensor's values), so that a sample runs once. A later run that
 * needs tensors the file lacks (a deeper cut) measures only those and adds them; ranges once
 * stored never change, so codes under one key always come from one quantised model.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import onnxProto from 'onnx-proto';
import type { onnx as proto } from 'onnx-proto';
import ort from '../../util/onnxruntime.ts';
import { tempName, writeFileAtomic } from '../../util/atomic-file.ts';
import { readJsonFile } from '../../util/json-file.ts';
import { asFileSystemError, UserError } from '../../util/errors.ts';
import { PERCENTILE, RangeHistogram } from './range-histogram.ts';

const { onnx } = onnxProto;

/** One batch of the calibration sample, preprocessed as extract feeds the engine (NHWC float32). */
export interface CalibrationBatch {
  readonly images: Float32Array;
  readonly count: number;
  readonly size: readonly [number, number];
  readonly sha256: readonly string[];
}

/** What an engine needs to calibrate: where its calibration is kept, and the sample to run. */
export interface CalibrationSource {
  /** The calibration's own key (calibrationKey in cache/code-spec.ts). */
  readonly key: string;
  readonly batches: () => AsyncIterable<CalibrationBatch>;
}

export const CALIBRATION_METHOD = `percentile-${PERCENTILE}`;

const calibrationSchema = z.object({
  version: z.literal(1),
  /** Fixed when the file is made; part of the int8 model's cache key. */
  id: z.string().min(1),
  method: z.string(),
  sample: z.object({ images: z.number().int().nonnegative(), sha256: z.array(z.string()) }),
  ranges: z.record(z.string(), z.tuple([z.number(), z.number()])),
});
export type Calibration = z.infer<typeof calibrationSchema>;

export function calibrationFile(cacheDir: string, key: string): string {
  return path.join(cacheDir, 'calibrations', `${key}.json`);
}

export async function readCalibration(cacheDir: string, key: string): Promise<Calibration | undefined> {
  const file = calibrationFile(cacheDir, key);
  return existsSync(file) ? readJsonFile(file, calibrationSchema, 'a calibration file') : undefined;
}

/**
 * The stored calibration, holding a range for every tensor in `tensors`: those it lacks are
 * measured on `model` (float32, fed as `input`) over the source's sample and added.
 */
export async function calibrated(opts: {
  readonly cacheDir: string;
  readonly source: CalibrationSource;
  readonly model: proto.IModelProto;
  readonly input: string;
  readonly tensors: readonly string[];
  readonly threads?: number;
  /** Where the model's external data is (a folder of the cache): the probe model is written there to load it. */
  readonly modelDir?: string;
}): Promise<{ readonly calibration: Calibration; readonly measured: number }> {
  const stored = await readCalibration(opts.cacheDir, opts.source.key);
  const missing = opts.tensors.filter((t) => !stored?.ranges[t]);
  if (stored && missing.length === 0) return { calibration: stored, measured: 0 };
  const { ranges, sha256, images } = await measureRanges(opts.model, opts.input, missing, opts.source, opts.threads, opts.modelDir);
  const calibration: Calibration = stored
    ? { ...stored, ranges: { ...stored.ranges, ...ranges } }
    : { version: 1, id: createHash('sha256').update(JSON.stringify({ sha256, ranges })).digest('hex').slice(0, 16), method: CALIBRATION_METHOD, sample: { images, sha256 }, ranges };
  return { calibration: await store(opts.cacheDir, opts.source.key, calibration, !stored), measured: missing.length };
}

/**
 * Writes the calibration. Ranges already in the file win over ours (another process of a
 * sharded run may have stored them first), so that every process quantises alike.
 */
async function store(cacheDir: string, key: string, calibration: Calibration, isNew: boolean): Promise<Calibration> {
  const file = calibrationFile(cacheDir, key);
  if (!isNew) {
    const now = (await readCalibration(cacheDir, key)) ?? calibration;
    const merged = { ...now, ranges: { ...calibration.ranges, ...now.ranges } };
    await writeFileAtomic(file, `${JSON.stringify(merged)}\n`);
    return merged;
  }
  const tmp = tempName(path.dirname(file), path.basename(file));
  await writeFileAtomic(tmp, `${JSON.stringify(calibration)}\n`);
  // link() fails if the name exists: the first writer wins, atomically. A file system without
  // hard links gets a rename, atomic but not exclusive.
  await link(tmp, file)
    .catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') await rename(tmp, file);
    })
    .catch((err: unknown) => {
      throw asFileSystemError(file, err);
    })
    .finally(() => rm(tmp, { force: true }));
  return (await readCalibration(cacheDir, key))!;
}

async function measureRanges(
  model: proto.IModelProto,
  input: string,
  tensors: readonly string[],
  source: CalibrationSource,
  threads?: number,
  modelDir?: string,
): Promise<{ ranges: Record<string, [number, number]>; sha256: string[]; images: number }> {
  const graph = model.graph!;
  const probe = onnx.ModelProto.encode({ ...model, graph: { ...graph, output: tensors.map((name) => ({ name })), valueInfo: [] } }).finish();
  const options = { executionProviders: ['cpu'], graphOptimizationLevel: 'all' as const, ...(threads ? { intraOpNumThreads: threads } : {}) };
  // onnxruntime resolves external data only beside a model it loads from a file.
  const probeFile = modelDir ? tempName(modelDir, 'calibration-probe.onnx') : undefined;
  if (probeFile) await writeFileAtomic(probeFile, probe);
  const session = await (probeFile ? ort.InferenceSession.create(probeFile, options) : ort.InferenceSession.create(probe, options)).finally(() => probeFile && rm(probeFile, { force: true }));
  const histograms = tensors.map(() => new RangeHistogram());
  const sha256: string[] = [];
  let images = 0;
  try {
    for await (const batch of source.batches()) {
      const [h, w] = batch.size;
      const feed = new ort.Tensor('float32', batch.images.subarray(0, batch.count * h * w * 3), [batch.count, h, w, 3]);
      const out = await session.run({ [input]: feed });
      tensors.forEach((t, i) => {
        histograms[i].add(out[t].data as Float32Array);
        out[t].dispose?.();
      });
      sha256.push(...batch.sha256);
      images += batch.count;
    }
  } finally {
    await session.release();
  }
  if (images === 0) throw new UserError('--precision int8: no image could be read and decoded to calibrate on (the dataset holds no readable training image)');
  return { ranges: Object.fromEntries(tensors.map((t, i) => [t, histograms[i].range()])), sha256, images };
}
