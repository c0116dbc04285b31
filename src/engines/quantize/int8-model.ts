/**
 * From a float32 backbone model to its int8 twin: plan the Q/DQ pairs, calibrate the tensors
 * they need (once per calibration key, see calibration.ts), and write them in. Both ONNX engines
 * (the layer graphs' and users' files') quantise here.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as proto } from 'onnx-proto';
import { cpuFlags, type CpuFlag } from '../../util/cpu-flags.ts';
import { UserError } from '../../util/errors.ts';
import { calibrated, type Calibration, type CalibrationSource } from './calibration.ts';
import { applyQdq, GEMM_MIN_DEPTH, inlineFloats, planQdq, type FloatReader, type Int8ConvPath } from './qdq-rewrite.ts';

const { onnx } = onnxProto;

/**
 * Bumped whenever the Q/DQ rewrite changes, so that stale cached int8 models are not reused and
 * int8 codes get a new key (the code spec records it). 5: 7-bit weights outside depthwise convs.
 * 6: MatMul and Gemm outputs stay float unless an int8 op reads them.
 */
export const QDQ_FORMAT = 6;

/**
 * The `qdq` an int8 key records: QDQ_FORMAT for the layer-graph backbones, which have no
 * attention, and 7 for ONNX files, whose int8 models from then on are quantised from a graph
 * with its attention fused (fuse-attention.ts): other float rounding there, so other codes.
 */
export function int8KeyFormat(kind: 'graph' | 'onnx'): number {
  return kind === 'onnx' ? 7 : QDQ_FORMAT;
}

/**
 * The conv path this CPU runs fastest (qdq-rewrite.ts): 'gemm' where onnxruntime has AMX tiles
 * for it. Elsewhere 'symmetric': on VNNI without AMX (an AMD EPYC with AVX512-VNNI,
 * bench:int8-conv-paths) the gemm path ran every conv of depth ≥ 1024 slower, at 0.74–0.98× of
 * symmetric. Cached int8 models are named by it, since they differ.
 */
export function int8ConvPath(flags: readonly CpuFlag[] = cpuFlags()): Int8ConvPath {
  return flags.includes('amx_int8') ? 'gemm' : 'symmetric';
}

/**
 * What names a cached int8 model's conv path: '' for symmetric (whose models keep the names
 * they had before the gemm path existed), else the path and its depth threshold.
 */
export function convPathTag(convPath: Int8ConvPath): string {
  return convPath === 'gemm' ? `gemm${GEMM_MIN_DEPTH}` : '';
}

/** Per-axis DequantizeLinear (per-channel weights) came with opset 13. */
const MIN_OPSET = 13;

export interface Int8Model {
  readonly model: proto.IModelProto;
  readonly calibration: Calibration;
  /** Tensors whose ranges this call measured (0 when the stored calibration had them all). */
  readonly measured: number;
  /** Weighted ops (Conv, Gemm, MatMul) now int8, and all of them. */
  readonly quantized: number;
}

export async function quantizeModel(opts: {
  readonly fp32: proto.IModelProto;
  /** The graph's image input. */
  readonly input: string;
  readonly cacheDir: string;
  readonly source: CalibrationSource;
  /** The folder of the cache where the float32 model's external data is linked, if it has any. */
  readonly modelDir?: string;
  readonly threads?: number;
  readonly convPath: Int8ConvPath;
  /** Names the model in errors. */
  readonly label: string;
}): Promise<Int8Model> {
  const opset = Number((opts.fp32.opsetImport ?? []).find((o) => !o.domain)?.version ?? 0);
  if (opset < MIN_OPSET) throw new UserError(`${opts.label}: --precision int8 needs ONNX opset ${MIN_OPSET} or newer (per-channel weights); this model declares opset ${opset}`);
  const plan = planQdq(opts.fp32.graph!);
  const quantized = plan.actions.filter((a) => a.kind === 'weighted').length;
  if (quantized === 0) throw new UserError(`${opts.label}: --precision int8 found no Conv, Gemm or MatMul with float32 weights to quantise`);
  const { calibration, measured } = await calibrated({ cacheDir: opts.cacheDir, source: opts.source, model: opts.fp32, input: opts.input, tensors: plan.calibrate, threads: opts.threads, modelDir: opts.modelDir });
  const ranges = new Map(Object.entries(calibration.ranges));
  return { model: applyQdq(opts.fp32, plan, ranges, floatReader(opts.modelDir), opts.convPath), calibration, measured, quantized };
}

/** Said once when quantising measured ranges; tests and users read it. */
export function calibratedNote(q: Int8Model): string {
  return `int8: calibrated ${q.measured} tensors on ${q.calibration.sample.images} images (${q.calibration.method})`;
}

/**
 * A float32 initializer's values: raw little-endian bytes, float_data, or external data beside
 * the model. External data is read tensor by tensor at its offset, so quantising a model with
 * gigabytes of weights never holds the whole data file in memory.
 */
export function floatReader(modelDir?: string): FloatReader {
  return (t) => {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) return inlineFloats(t);
    const entry = (key: string) => (t.externalData ?? []).find((e) => e.key === key)?.value;
    if (!modelDir) throw new Error(`tensor '${t.name}' is in external data, and no model folder was given`);
    const location = path.join(modelDir, entry('location')!);
    const offset = Number(entry('offset') ?? 0);
    const length = entry('length') !== undefined ? Number(entry('length')) : statSync(location).size - offset;
    if (!Number.isSafeInteger(length) || length < 0 || length % 4 !== 0) throw new UserError(`${location}: tensor '${t.name}' gives ${length} bytes of external data, not a whole number of float32 values`);
    const values = new Float32Array(length / 4);
    const bytes = new Uint8Array(values.buffer);
    const fd = openSync(location, 'r');
    try {
      // One read returns at most ~2 GiB on Linux, and less at the end of the file.
      for (let done = 0; done < length; ) {
        const read = readSync(fd, bytes, done, length - done, offset + done);
        if (read === 0) throw new UserError(`${location}: tensor '${t.name}' needs ${length} bytes at offset ${offset}, and the file ends after ${done}`);
        done += read;
      }
    } finally {
      closeSync(fd);
    }
    return values;
  };
}
