/**
 * `--precision auto`: int8 where this machine's engine runs it faster, else fp32. onnxruntime's
 * int8 kernels (QLinearConv, QGemm) use VNNI and AMX dot products: on 2 cores of a Xeon with
 * AVX512-VNNI, bench/extract measured VGG16's forward pass 3.17× faster in int8, and bench:engines
 * squeezenet 1.60×, googlenet 1.46×, resnet50 1.63×, but MobileNetV2 0.64× and EfficientNet-B0
 * 0.47×: depthwise convs are slower in int8, so auto keeps fp32 for backbones with grouped convs.
 * With AMX-INT8 (and the gemm conv path, quantize/qdq-rewrite.ts) VGG16 ran 4.47× fp32's speed,
 * resnet50 1.80×, MobileNetV2 0.83×, EfficientNet-B0 0.47×.
 * Without VNNI or AMX (AVX2 only) int8 gains little: on an AMD EPYC (Zen 3, AVX2) bench:engines
 * measured VGG16 1.25×, resnet50 1.47×, squeezenet 1.38×, googlenet 1.18× in the forward pass,
 * less end to end, against codes that differ from fp32's and a calibration pass; so auto stays
 * fp32 there; and on GPUs, where int8 was not measured (the Q/DQ layout is made for the CPU
 * provider's fused kernels).
 */
import { cpuFlags, type CpuFlag } from '../util/cpu-flags.ts';
import type { DeviceChoice, EngineChoice, Precision } from './engine.ts';
import { providerCandidates } from './onnx-session.ts';

export type PrecisionChoice = Precision | 'auto';
export const PRECISION_CHOICES = ['fp32', 'int8', 'auto'] as const satisfies readonly PrecisionChoice[];

const INT8_DOT_PRODUCTS: readonly CpuFlag[] = ['avx512_vnni', 'avx_vnni', 'amx_int8'];

export function resolvePrecision(
  choice: PrecisionChoice,
  run: { readonly device: DeviceChoice; readonly engine?: EngineChoice },
  backbone: { readonly groupedConvs: boolean },
  flags: readonly CpuFlag[] = cpuFlags(),
): { precision: Precision; note?: string } {
  if (choice !== 'auto') return { precision: choice };
  if (run.engine === 'tfjs') return { precision: 'fp32', note: '--precision auto: fp32 (int8 runs on onnxruntime only, not --engine tfjs)' };
  if (providerCandidates(run.device)[0] !== 'cpu') return { precision: 'fp32', note: '--precision auto: fp32 (a GPU provider runs here; int8 is made for the CPU provider)' };
  if (backbone.groupedConvs) return { precision: 'fp32', note: "--precision auto: fp32 (the backbone's depthwise convs run slower in int8)" };
  const dot = INT8_DOT_PRODUCTS.filter((f) => flags.includes(f));
  if (dot.length === 0) return { precision: 'fp32', note: '--precision auto: fp32 (this CPU has no VNNI or AMX int8 dot products, where int8 gains little)' };
  return { precision: 'int8', note: `--precision auto: int8 (this CPU has ${dot.join(', ')}, which onnxruntime's int8 kernels use)` };
}
