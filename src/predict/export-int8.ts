/**
 * `export --format onnx` of a head trained on int8 codes: the very int8 model extract ran,
 * from the cache (quantised with the calibration that made the head's codes), with the head's
 * dense layers and softmax appended in float32. So the exported file answers as
 * `predict --head` does, at int8 speed, in any runtime that fuses Q/DQ pairs (onnxruntime,
 * TensorRT, OpenVINO) and, more slowly, in any that runs them as written; an ONNX-file ViT's
 * also holds onnxruntime's fused attention (engines/fuse-attention.ts), which only it runs.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { isOnnxBackbone, type Backbone } from '../backbones/backbone.ts';
import type { Cut } from '../backbones/cut.ts';
import { externalDataFiles } from '../backbones/onnx-file/onnx-model-file.ts';
import { appendDenseHead, codeOutput, feedName, type DenseLayer } from '../backbones/onnx-file/onnx-rewrite.ts';
import { calibrationKey, type CodeSpec } from '../cache/code-spec.ts';
import { cachedInt8Model } from '../engines/onnx-engine.ts';
import { cachedInt8FileModel } from '../engines/onnx-file-engine.ts';
import { ONNX_INPUT, onnxOutputName } from '../engines/onnx-model.ts';
import { calibrationFile, readCalibration, type CalibrationSource } from '../engines/quantize/calibration.ts';
import { checkKeyCalibrations } from '../extract/calibration-guard.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { encodeProto } from '../util/onnx-graph.ts';
import { MS_DOMAIN } from '../engines/fuse-attention.ts';
import { UserError } from '../util/errors.ts';
import { copyDataFiles } from './export-onnx.ts';

const { onnx } = onnxProto;

export interface Int8ExportOptions {
  readonly backbone: Backbone;
  readonly spec: CodeSpec;
  readonly cut: Cut;
  /** The head's cache key (its folder records the calibration its codes were made with); null for an embedding model. */
  readonly cacheKey: string | null;
  readonly cacheRoot: string;
  readonly head: readonly DenseLayer[];
  readonly output: string;
  /** Names the head in errors. */
  readonly label: string;
}

/**
 * Writes model.onnx (and the external data it still reads) into `out`; returns the files, the
 * model first, and whether the model uses onnxruntime's own operators (fused attention).
 */
export async function exportInt8Onnx(opts: Int8ExportOptions, out: string): Promise<{ files: string[]; input: string; onnxruntimeOnly: boolean }> {
  const key = calibrationKey(opts.spec);
  if (!(await readCalibration(opts.cacheRoot, key))) {
    throw new UserError(
      opts.cacheKey
        ? `${opts.label}: its codes are int8, and the calibration that made them (${calibrationFile(opts.cacheRoot, key)}) is not there; point --cache at the cache the head was trained from, or export a float32 backbone with --precision fp32`
        : `${opts.label}: no int8 calibration in ${opts.cacheRoot} (${calibrationFile(opts.cacheRoot, key)}); extract your images with --precision int8 first (it calibrates on them), or point --cache at its cache`,
    );
  }
  // The head's codes must come from the calibration stored now, or the export would not be the model they came from.
  if (opts.cacheKey) await checkKeyCalibrations([path.join(opts.cacheRoot, opts.cacheKey)], opts.cacheRoot, key);
  const calibration: CalibrationSource = { key, batches: () => refuseToCalibrate(opts.label) };
  const engineOptions = { cuts: [opts.cut], inputSize: opts.spec.preprocessing.size, device: 'cpu' as const, cacheDir: opts.cacheRoot, precision: 'int8' as const, calibration };
  const { backbone } = opts;
  const [cached, input, code] = isOnnxBackbone(backbone)
    ? [await cachedInt8FileModel({ ...engineOptions, backbone }), feedName(backbone.model.input), codeOutput(0)]
    : [await cachedInt8Model({ ...engineOptions, backbone }), ONNX_INPUT, onnxOutputName(0)];
  const model = onnx.ModelProto.decode(await readFile(cached.file));
  const file = path.join(out, 'model.onnx');
  await writeFileAtomic(file, encodeProto(appendDenseHead(model, code, opts.head, opts.output)));
  const onnxruntimeOnly = (model.opsetImport ?? []).some((o) => o.domain === MS_DOMAIN);
  return { files: [file, ...(await copyDataFiles(externalDataFiles(model, cached.file), path.dirname(cached.file), out))], input, onnxruntimeOnly };
}

/**
 * The stored calibration covers every tensor of the head's cut (it made the head's codes), so
 * export never measures: a source that only says why, should it be asked.
 */
async function* refuseToCalibrate(label: string): AsyncGenerator<never> {
  throw new UserError(`${label}: the stored int8 calibration lacks ranges this cut needs; extract the head's images with --precision int8 again first`);
}
