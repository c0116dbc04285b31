/**
 * `--engine auto|onnx|tfjs`: builds the requested engine, or for `auto` the fastest one that
 * works here. onnxruntime is the fastest on CPUs (bench/engines: about 7× TF.js wasm for VGG16
 * on 2 cores, more with Winograd convs), and on GPUs when its CUDA or WebGPU provider starts; TF.js wins
 * only when tfjs-node-gpu loads and onnxruntime found no GPU provider.
 */
import { isInstalled } from '../util/installed.ts';
import { isOnnxBackbone, type Backbone } from '../backbones/backbone.ts';
import type { DeviceChoice, EngineChoice, EngineOptions, FeatureEngine, GraphEngineOptions, Precision } from './engine.ts';
import { UsageError } from '../util/errors.ts';
import { createOnnxEngine } from './onnx-engine.ts';
import { createOnnxFileEngine } from './onnx-file-engine.ts';
import { assertGpuProvider } from './onnx-session.ts';
import { tfBackend } from './tfjs-backend.ts';
import { createTfjsEngine } from './tfjs-engine.ts';

export async function createEngine(opts: EngineOptions & { readonly engine: EngineChoice }): Promise<FeatureEngine> {
  const { backbone } = opts;
  assertEngineRuns(opts.engine, backbone, opts.precision);
  if (isOnnxBackbone(backbone)) return createOnnxFileEngine({ ...opts, backbone });
  if (opts.precision === 'int8') return createOnnxEngine({ ...opts, backbone });
  return createGraphEngine({ ...opts, backbone });
}

/** An ONNX file runs on onnxruntime only; checked up front by the commands, like the device. */
export function assertEngineRuns(engine: EngineChoice, backbone: Backbone, precision: Precision = 'fp32'): void {
  if (engine === 'tfjs' && precision === 'int8') throw new UsageError('--engine tfjs: int8 codes are computed by onnxruntime only (use --engine onnx or auto)');
  if (engine === 'tfjs' && isOnnxBackbone(backbone)) throw new UsageError(`--engine tfjs: ${backbone.id} is an ONNX file, which only onnxruntime runs (use --engine onnx or auto)`);
}

async function createGraphEngine(opts: GraphEngineOptions & { readonly engine: EngineChoice }): Promise<FeatureEngine> {
  if (opts.engine === 'onnx') return createOnnxEngine(opts);
  if (opts.engine === 'tfjs') return createTfjsEngine(opts);

  if (opts.device !== 'cpu' && isInstalled('@tensorflow/tfjs-node-gpu')) {
    const onnx = await createOnnxEngine({ ...opts, device: 'auto' });
    if (onnx.provider !== 'cpu') return onnx;
    const backend = await tfBackend(opts.device);
    if (backend.provider === 'tensorflow-gpu') {
      await onnx.dispose();
      return withNote(await createTfjsEngine(opts), 'auto: onnxruntime has no GPU provider here, tfjs-node-gpu does');
    }
    return withNote(onnx, `auto: no GPU backend could start (${backend.notes.join('; ')})`);
  }
  return createOnnxEngine(opts);
}

/**
 * `--device gpu` where no GPU engine can run is known before any work: checked up front, so the
 * user hears it at once rather than after the dataset is scanned.
 */
export function assertDeviceUsable(engine: EngineChoice, device: DeviceChoice): void {
  if (device !== 'gpu' || engine === 'tfjs') return;
  if (engine === 'auto' && isInstalled('@tensorflow/tfjs-node-gpu')) return;
  assertGpuProvider(device);
}

function withNote(engine: FeatureEngine, note: string): FeatureEngine {
  return {
    name: engine.name,
    provider: engine.provider,
    inputSize: engine.inputSize,
    outputs: engine.outputs,
    notes: [...engine.notes, note],
    run: (images, count) => engine.run(images, count),
    dispose: () => engine.dispose(),
  };
}
