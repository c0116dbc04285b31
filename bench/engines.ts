/**
 * bench/engines: images/s of the bare forward pass (no decoding, no cache) for each engine and
 * backbone, at 224×224, batch 8 to 32.
 *
 *   npm run bench:engines                     # everything
 *   npm run bench:engines -- --engines onnx --batches 8 --seconds 5
 *
 * VGG16 and the keras.applications backbones (resnet50, inception_v3 at 299, mobilenet_v2,
 * efficientnet_b0, …) run at their own size on seeded random weights (their cost does not depend
 * on the values); squeezenet1_1, googlenet and a model.json path (the Teachable Machine export)
 * use their real weights from ../shared/models when present.
 *
 *   npm run bench:engines -- --backbones resnet50,inception_v3,../shared/models/teachable-machine/model.json
 *   npm run bench:engines -- --backbones fixtures/generated/onnx-backbones/resnet50.onnx   # ONNX files (onnx engine only)
 *   npm run bench:engines -- --engines onnx --precisions fp32,int8 --batches 8        # int8 beside fp32
 *   npm run bench:engines -- --backbones vgg16 --engines onnx --precisions int8-symmetric,int8-gemm   # int8's two conv paths
 *
 * With a Python that has torch and torchvision (--python, default $BOTTLENECK_TORCH_PYTHON or
 * /work/venv-torch/bin/python; skipped when absent or with --no-torch), each built-in backbone that
 * torchvision also has (vgg16, squeezenet1_1, resnet50, mobilenet_v2, efficientnet_b0) gets a
 * PyTorch eager row, cut at the same place, at every batch of the onnx rows (torch_forward.py).
 * googlenet has none: torchvision's is a BatchNorm variant, not BVLC's network.
 * bench:onnx-backbones sets ONNX files beside PyTorch eager on the same machine.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Backbone, GraphBackbone } from '../src/backbones/backbone.ts';
import { loadOnnxBackbone } from '../src/backbones/onnx-file/onnx-backbone.ts';
import { createEngine } from '../src/engines/select-engine.ts';
import type { Int8ConvPath } from '../src/engines/quantize/qdq-rewrite.ts';
import { cutLabel, type Cut } from '../src/backbones/cut.ts';
import { loadGraphBackbone } from '../src/backbones/zoo.ts';
import { seededWeights } from '../src/backbones/zoo/random-weights.ts';
import { VGG16_PREPROCESSING, vgg16Graph } from '../src/backbones/zoo/vgg16.ts';
import { isKerasApplication, KERAS_APPLICATIONS, kerasPreprocessing, type KerasApplication } from '../src/backbones/zoo/keras-applications.ts';
import type { EngineName, FeatureEngine, Precision } from '../src/engines/engine.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { createTfjsEngine } from '../src/engines/tfjs-engine.ts';
import { machineLine } from './machine.ts';
import { DEFAULT_TORCH_PYTHON, torchForward } from './torch-forward.ts';
import { benchArgs } from './args.ts';

const { values: args } = benchArgs({
  // --no-torch turns the boolean off.
  allowNegative: true,
  options: {
    backbones: { type: 'string', default: 'vgg16,squeezenet1_1,googlenet' },
    engines: { type: 'string', default: 'onnx,tfjs' },
    batches: { type: 'string', default: '8,16,32' },
    /** tfjs on wasm runs VGG16 at under 1 img/s, so by default it gets batch 8 only. */
    'tfjs-batches': { type: 'string', default: '8' },
    seconds: { type: 'string', default: '8' },
    /** int8 rows are onnx only, calibrated on the synthetic batch (its ranges do not change the speed). */
    precisions: { type: 'string', default: 'fp32' },
    python: { type: 'string', default: DEFAULT_TORCH_PYTHON },
    torch: { type: 'boolean', default: true },
  },
});

const SIZE = [224, 224] as const;
const SHARED_MODELS = path.resolve(import.meta.dirname, '..', '..', 'shared', 'models');

async function benchBackbone(name: string): Promise<{ backbone: Backbone; cut: Cut } | undefined> {
  if (name.endsWith('.onnx')) {
    const backbone = await loadOnnxBackbone(name);
    return { backbone, cut: backbone.defaultCut };
  }
  if (name === 'vgg16') {
    const graph = vgg16Graph();
    const backbone: GraphBackbone = {
      id: 'vgg16',
      graph,
      weights: seededWeights(graph, SIZE, 1, ['block5_pool']),
      preprocessing: VGG16_PREPROCESSING,
      defaultCut: { layer: 'block5_pool' },
      namedCuts: [],
      weightsId: 'bench-random-seed-1',
      weightsFrom: 'seeded random',
    };
    return { backbone, cut: { layer: 'block5_pool' } };
  }
  if (isKerasApplication(name)) {
    const spec: KerasApplication = KERAS_APPLICATIONS[name];
    const graph = spec.graph();
    const backbone: GraphBackbone = {
      id: name,
      graph,
      weights: seededWeights(graph, spec.size, 1, [spec.defaultCut.layer]),
      preprocessing: kerasPreprocessing(spec.mode, spec.size),
      defaultCut: spec.defaultCut,
      namedCuts: [],
      weightsId: `bench-random-seed-1-${name}`,
      weightsFrom: 'seeded random',
    };
    return { backbone, cut: spec.defaultCut };
  }
  try {
    const backbone = await loadGraphBackbone(name, { weightsDir: SHARED_MODELS, download: false });
    return { backbone, cut: backbone.defaultCut };
  } catch (err) {
    console.error(`skip ${name}: ${(err as Error).message}`);
    return undefined;
  }
}

/** torch_forward.py's twin of each built-in backbone, cut where bottleneck cuts it by default. */
const TORCH_TWINS: Readonly<Record<string, string>> = {
  vgg16: 'vgg16_features',
  squeezenet1_1: 'squeezenet1_1_features',
  resnet50: 'resnet50_features',
  mobilenet_v2: 'mobilenet_v2_features',
  efficientnet_b0: 'efficientnet_b0_features',
};

async function torchRows(name: string, cut: string, batches: readonly number[], seconds: number): Promise<Row[]> {
  const twin = TORCH_TWINS[name];
  if (!twin || !args.torch || !existsSync(args.python!)) return [];
  const rows: Row[] = [];
  for (const batch of batches) {
    const r = await torchForward(args.python!, twin, batch, seconds).catch((err: Error) => {
      console.error(`no PyTorch row for ${name}: ${err.message}`);
      return undefined;
    });
    if (!r) return rows;
    rows.push({ backbone: name, cut, engine: `pytorch ${r.torch} eager`, batch, imgPerSec: r.imgPerSec, msPerBatch: (batch * 1000) / r.imgPerSec, runs: r.runs });
    console.error(`${name} pytorch batch ${batch}: ${r.imgPerSec.toFixed(2)} img/s`);
  }
  return rows;
}

/** A --precisions entry: fp32, int8 (this CPU's conv path), or int8-symmetric / int8-gemm (qdq-rewrite.ts). */
function benchPrecision(token: string): { precision: Precision; int8ConvPath?: Int8ConvPath; label: string } {
  if (token === 'fp32') return { precision: 'fp32', label: '' };
  if (token === 'int8') return { precision: 'int8', label: ' int8' };
  if (token === 'int8-symmetric' || token === 'int8-gemm') return { precision: 'int8', int8ConvPath: token.slice(5) as Int8ConvPath, label: ` ${token}` };
  console.error(`--precisions: '${token}' is not fp32, int8, int8-symmetric or int8-gemm`);
  process.exit(2);
}

type BenchEngineOptions = { readonly cuts: readonly Cut[]; readonly inputSize: readonly [number, number]; readonly device: 'auto'; readonly cacheDir: string; readonly precision: Precision; readonly int8ConvPath?: Int8ConvPath };

function openEngine(engineName: EngineName, backbone: Backbone, opts: BenchEngineOptions): Promise<FeatureEngine> {
  const [h, w] = opts.inputSize;
  const input = syntheticBatch(8, h, w);
  const calibration = { key: `bench-engines-${backbone.id.replace(/[^\w.-]+/g, '_')}-${backbone.weightsId.slice(0, 16)}`, batches: async function* () { yield { images: input, count: 8, size: opts.inputSize, sha256: [] }; } };
  const withInt8 = { ...opts, calibration };
  if (backbone.kind === 'onnx') return createEngine({ ...withInt8, engine: 'onnx', backbone });
  return engineName === 'onnx' ? createOnnxEngine({ ...withInt8, backbone }) : createTfjsEngine({ ...opts, backbone });
}

function syntheticBatch(batch: number, h: number, w: number): Float32Array {
  const input = new Float32Array(batch * h * w * 3);
  for (let i = 0; i < input.length; i++) input[i] = ((i * 2654435761) % 255) - 120;
  return input;
}

async function timeEngine(engine: FeatureEngine, batch: number, seconds: number): Promise<{ imgPerSec: number; msPerBatch: number; runs: number }> {
  const [h, w] = engine.inputSize;
  const input = syntheticBatch(batch, h, w);
  await engine.run(input, batch); // warm-up: kernel selection, allocation
  let runs = 0;
  const start = performance.now();
  while (runs < 2 || performance.now() - start < seconds * 1000) {
    await engine.run(input, batch);
    runs++;
  }
  const ms = performance.now() - start;
  return { imgPerSec: (runs * batch * 1000) / ms, msPerBatch: ms / runs, runs };
}

interface Row {
  backbone: string;
  cut: string;
  engine: string;
  batch: number;
  imgPerSec: number;
  msPerBatch: number;
  runs: number;
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const seconds = Number(args.seconds);
  console.log(machineLine());
  for (const name of args.backbones!.split(',').map((n) => (n.endsWith('.json') ? path.resolve(n) : n))) {
    const spec = await benchBackbone(name);
    if (!spec) continue;
    const { backbone } = spec;
    // An ONNX file runs on onnxruntime only.
    const runs = ((backbone.kind === 'onnx' ? ['onnx'] : args.engines!.split(',')) as EngineName[]).flatMap((engineName) =>
      args.precisions!.split(',').map(benchPrecision).filter((p) => p.precision === 'fp32' || engineName === 'onnx').map((p) => ({ engineName, ...p })),
    );
    for (const { engineName, precision, int8ConvPath, label } of runs) {
      const engine = await openEngine(engineName, backbone, {
        cuts: [spec.cut],
        inputSize: spec.backbone.preprocessing.size,
        device: 'auto',
        cacheDir: path.resolve('cache'),
        precision,
        ...(int8ConvPath ? { int8ConvPath } : {}),
      });
      const batches = (engineName === 'tfjs' ? args['tfjs-batches']! : args.batches!).split(',').map(Number);
      for (const batch of batches) {
        const r = await timeEngine(engine, batch, seconds);
        const row = { backbone: name.endsWith('.json') ? path.basename(path.dirname(name)) : name.endsWith('.onnx') ? path.basename(name) : name, cut: cutLabel(spec.cut), engine: `${engine.name}/${engine.provider}${label}`, batch, ...r };
        rows.push(row);
        console.error(`${row.backbone} ${row.engine} batch ${batch}: ${r.imgPerSec.toFixed(2)} img/s`);
      }
      await engine.dispose();
    }
    rows.push(...(await torchRows(name, cutLabel(spec.cut), args.batches!.split(',').map(Number), seconds)));
  }
  if (args.torch && !existsSync(args.python!)) console.error(`no PyTorch rows: no Python at ${args.python} (pass --python, or --no-torch)`);
  printTable(rows);
}

function printTable(rows: Row[]): void {
  const onnxVgg = rows.filter((r) => r.backbone === 'vgg16' && r.engine.startsWith('onnx') && !r.engine.includes('int8'));
  const header = ['backbone', 'cut', 'engine', 'batch', 'img/s', 'ms/batch', 'runs', 'vs onnx fp32', 'vs pytorch'];
  const ratio = (r: Row, ref: Row | undefined) => (ref && ref !== r ? `${(r.imgPerSec / ref.imgPerSec).toFixed(3)}×` : '-');
  const lines = rows.map((r) => {
    const same = (o: Row) => o.backbone === r.backbone && o.batch === r.batch;
    const onnx = rows.find((o) => same(o) && o.engine.startsWith('onnx') && !o.engine.includes('int8'));
    const torch = rows.find((o) => same(o) && o.engine.startsWith('pytorch'));
    return [r.backbone, r.cut, r.engine, String(r.batch), r.imgPerSec.toFixed(2), r.msPerBatch.toFixed(0), String(r.runs), ratio(r, onnx), ratio(r, torch)];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(fmt(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const l of lines) console.log(fmt(l));
  if (onnxVgg.length) {
    const best = Math.max(...onnxVgg.map((r) => r.imgPerSec));
    console.log(`\nvgg16 conv base on onnx: best ${best.toFixed(2)} img/s (target ≥ 5): ${best >= 5 ? 'met' : 'NOT met'}`);
  }
}

await main();
