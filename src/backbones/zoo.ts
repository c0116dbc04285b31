/**
 * The backbone zoo: turns a name (`vgg16`, `squeezenet1_1`, `googlenet`, `tiny-vgg-random`)
 * or a TF.js model.json path into a ready Backbone, finding its weights where users keep them.
 *
 * Weights are looked for in `--weights PATH`, then in the weights folder
 * (`$BOTTLENECK_WEIGHTS`, default ~/.cache/bottleneck/weights). VGG16's Keras files are
 * downloaded there, with an md5 check, when they are missing.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { assetPath } from '../util/assets.ts';
import { hashFile } from '../util/file-hash.ts';
import { requireGraph, type Backbone, type GraphBackbone, type Preprocessing } from './backbone.ts';
import type { CodeSpec } from '../cache/code-spec.ts';
import { loadOnnxBackbone, type OnnxBackboneOptions } from './onnx-file/onnx-backbone.ts';
import { isOnnxTarget } from './onnx-file/onnx-model-file.ts';
import { graphFromCaffeArch, preprocessingFromCaffeArch, type CaffeArch } from './caffe-arch.ts';
import type { Cut } from './cut.ts';
import { DownloadError, downloadFile, progressBarReporter, type ProgressReporter } from './download.ts';
import { planGraph } from './graph-plan.ts';
import { graphFromKerasTopology } from './keras-topology.ts';
import type { LayerGraph } from './layer-graph.ts';
import { bindWeights, WeightsError, type WeightSource } from './weights.ts';
import { readSafetensors } from './weights/safetensors.ts';
import { readTfjsModel } from './weights/tfjs-folder.ts';
import { readTeachableMachineMetadata, teachableMachineParts, teachableMachinePreprocessing } from './teachable-machine.ts';
import { tinyRandomBackbone, TINY_RANDOM_ID } from './zoo/tiny-random.ts';
import { VGG16_PREPROCESSING, vgg16Graph } from './zoo/vgg16.ts';
import { isKerasApplication, KERAS_APPLICATIONS, kerasPreprocessing, type KerasApplication, type KerasApplicationName } from './zoo/keras-applications.ts';

export interface LoadBackboneOptions {
  /** A weights file or folder given by the user; looked at before the weights folder. */
  readonly weights?: string;
  /** Defaults to $BOTTLENECK_WEIGHTS or ~/.cache/bottleneck/weights. */
  readonly weightsDir?: string;
  /** The cuts that will be used; VGG16 needs its 553 MB top only past block5_pool. */
  readonly cuts?: readonly Cut[];
  /** Allow downloading missing Keras weights (default true). */
  readonly download?: boolean;
  /** Where Keras' weight files are served; defaults to Keras' own location. */
  readonly downloadBaseUrl?: string;
  /** The VGG16 files to look for and their md5; for mirrors serving other builds, and tests. */
  readonly vgg16Files?: typeof KERAS_VGG16_FILES;
  /** For an ONNX file: its input size, input layout and preprocessing overrides. */
  readonly onnx?: OnnxBackboneOptions;
}

export const ZOO_NAMES = ['vgg16', ...(Object.keys(KERAS_APPLICATIONS) as KerasApplicationName[]), 'squeezenet1_1', 'googlenet', TINY_RANDOM_ID] as const;
export type ZooName = (typeof ZOO_NAMES)[number];

export interface KerasWeightFile {
  readonly file: string;
  readonly md5: string;
}

export const KERAS_VGG16_FILES: { readonly notop: KerasWeightFile; readonly full: KerasWeightFile } = {
  notop: { file: 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5', md5: '6d6bbae143d832006294945121d1f1fc' },
  full: { file: 'vgg16_weights_tf_dim_ordering_tf_kernels.h5', md5: '64373286793e3c8b2b4e3219cbf3544b' },
};
export const KERAS_WEIGHTS_URL = 'https://storage.googleapis.com/tensorflow/keras-applications/vgg16';

/** Caffe-origin backbones shipped as `<file>.safetensors` + `<file>.arch.json`. */
const CAFFE_BACKBONES = {
  squeezenet1_1: { file: 'squeezenet1_1', defaultCut: { layer: 'fire9/concat', pool: 'avg' }, namedCuts: ['fire9/concat', 'pool5', 'pool3'], classifier: 'prob' },
  googlenet: { file: 'googlenet-bvlc', defaultCut: { layer: 'pool5/7x7_s1' }, namedCuts: ['pool5/7x7_s1', 'inception_4e/output', 'inception_5b/output'], classifier: 'prob' },
} as const satisfies Record<string, { file: string; defaultCut: Cut; namedCuts: readonly string[]; classifier: string }>;

/** Draws a download's progress; the CLI sets one (a bar on a terminal), the API draws nothing. */
let downloadReporter: ((file: string) => ProgressReporter) | undefined;

export function showDownloadProgress(reporter: (file: string) => ProgressReporter = progressBarReporter): void {
  downloadReporter = reporter;
}

/** The backbone whose weights ship with the package (BSD-2-Clause, 4.9 MB): works offline. */
export const BUILT_IN_BACKBONE = 'squeezenet1_1';

export function defaultWeightsDir(): string {
  return process.env.BOTTLENECK_WEIGHTS || path.join(os.homedir(), '.cache', 'bottleneck', 'weights');
}

export async function loadBackbone(name: string, opts: LoadBackboneOptions = {}): Promise<Backbone> {
  if (name === TINY_RANDOM_ID) return tinyRandomBackbone();
  if (name === 'vgg16') return loadVgg16(opts);
  if (isKerasApplication(name)) return loadKerasApplication(name, opts);
  if (name in CAFFE_BACKBONES) return loadCaffeBackbone(name as keyof typeof CAFFE_BACKBONES, opts);
  if (isOnnxTarget(name)) return loadOnnxBackbone(name, opts.onnx);
  if (name.endsWith('.json') || (existsSync(name) && statSync(name).isDirectory())) return loadTfjsBackbone(name);
  throw new WeightsError(`unknown backbone '${name}': use one of ${ZOO_NAMES.join(', ')}, a path to a TF.js model.json, or an ONNX file (or a folder with model.onnx)`);
}

/** For what needs a layer graph (fine-tune, TF.js, tests of the graph itself). */
export async function loadGraphBackbone(name: string, opts: LoadBackboneOptions = {}): Promise<GraphBackbone> {
  return requireGraph(await loadBackbone(name, opts), `loading ${name} as a layer graph`);
}

/**
 * The backbone whose codes a spec describes, loaded as extract loaded it: an ONNX file at the
 * spec's size with the spec's channels, mean and std.
 */
export function loadSpecBackbone(spec: CodeSpec, opts: Pick<LoadBackboneOptions, 'weights' | 'weightsDir'> = {}): Promise<Backbone> {
  const p = spec.preprocessing;
  const triple = (v: readonly number[]): [number, number, number] => [v[0], v[1], v[2]];
  return loadBackbone(spec.backbone, {
    ...opts,
    cuts: [{ layer: spec.layer }],
    onnx: { size: p.size, preprocessing: { channels: p.channels, mean: triple(p.mean), std: triple(p.std) } },
  });
}

async function loadVgg16(opts: LoadBackboneOptions): Promise<GraphBackbone> {
  const graph = vgg16Graph();
  const needsTop = (opts.cuts ?? [{ layer: 'block5_pool' }]).some((cut) => {
    const plan = planGraph(graph, VGG16_PREPROCESSING.size, [cut.layer]);
    return plan.steps.some((s) => s.node.op === 'dense');
  });
  const file = await findVgg16Weights(needsTop, opts);
  const source = await readWeightFile(file);
  // A notop file binds every conv layer; the dense ones are only needed past block5_pool.
  const graphForBinding: LayerGraph = needsTop ? graph : { ...graph, nodes: graph.nodes.filter((n) => n.op !== 'dense') };
  return {
    id: 'vgg16',
    graph,
    weights: bindWeights(graphForBinding, source),
    preprocessing: VGG16_PREPROCESSING,
    defaultCut: { layer: 'block5_pool' },
    namedCuts: ['block5_pool', 'relu6', 'fc2', 'block4_pool', 'block3_pool'],
    classifier: 'predictions',
    weightsId: await fingerprint(source.files),
    weightsFrom: source.files[0],
  };
}

async function findVgg16Weights(needsTop: boolean, opts: LoadBackboneOptions): Promise<string> {
  const files = opts.vgg16Files ?? KERAS_VGG16_FILES;
  const wanted = needsTop ? [files.full] : [files.notop, files.full];
  if (opts.weights) {
    if (!existsSync(opts.weights)) throw new WeightsError(`--weights ${opts.weights}: no such file or folder`);
    if (!statSync(opts.weights).isDirectory()) return opts.weights;
    const inside = findIn(opts.weights, [...wanted.map((w) => w.file), 'vgg16/model.json', 'vgg16.safetensors']);
    if (inside) return inside;
  }
  const dir = opts.weightsDir ?? defaultWeightsDir();
  const found = findIn(dir, [...wanted.map((w) => w.file), 'vgg16/model.json', 'vgg16.safetensors']);
  if (found) return found;
  return fetchKerasWeights('vgg16', wanted[0], dir, opts.downloadBaseUrl ?? process.env.BOTTLENECK_WEIGHTS_URL ?? KERAS_WEIGHTS_URL, opts);
}

/**
 * A Keras weights file into the weights folder, from Keras' own location (or a mirror): checked
 * by md5 where Keras lists one, resumable, with a progress bar where the CLI asked for one.
 * Missing and refused, or not downloadable, it is one line naming the file, and the built-in
 * backbone that needs no download.
 */
async function fetchKerasWeights(name: string, target: { readonly file: string; readonly md5?: string }, dir: string, base: string, opts: LoadBackboneOptions): Promise<string> {
  const dest = path.join(dir, target.file);
  const builtIn = `; or use --backbone ${BUILT_IN_BACKBONE}, built in (no download)`;
  if (opts.download === false) {
    throw new WeightsError(`${name} weights not found: put ${target.file}${target.md5 ? ` (md5 ${target.md5})` : ''} in ${dir}, set BOTTLENECK_WEIGHTS, or pass --weights PATH${builtIn}`);
  }
  // Keras lists no checksum for its MobileNet files and downloads them unchecked; the bar says so.
  const label = target.md5 ? target.file : `${target.file} (unchecked: Keras lists no md5)`;
  try {
    await downloadFile({ url: `${base.replace(/\/$/, '')}/${target.file}`, dest, md5: target.md5, onProgress: downloadReporter?.(label) });
  } catch (err) {
    if (!(err instanceof DownloadError)) throw err;
    throw new DownloadError(`${err.message.replace(/\.$/, '')}${builtIn}`, err.url, err.dest);
  }
  return dest;
}

/**
 * A keras.applications backbone: its Keras h5 file (notop when the cuts need no top layer),
 * found in --weights, then the weights folder, else downloaded there from Keras' own location.
 */
async function loadKerasApplication(name: KerasApplicationName, opts: LoadBackboneOptions): Promise<GraphBackbone> {
  const spec: KerasApplication = KERAS_APPLICATIONS[name];
  const graph = spec.graph();
  const top = new Set(spec.topNodes);
  const needsTop = (opts.cuts ?? [spec.defaultCut]).some((cut) => planGraph(graph, spec.size, [cut.layer]).steps.some((s) => top.has(s.node.name)));
  const file = await findKerasWeights(name, spec, needsTop, opts);
  const source = await readWeightFile(file);
  const graphForBinding: LayerGraph = needsTop ? graph : { ...graph, nodes: graph.nodes.filter((n) => !top.has(n.name)) };
  return {
    id: name,
    graph,
    weights: bindWeights(graphForBinding, source),
    preprocessing: kerasPreprocessing(spec.mode, spec.size),
    defaultCut: spec.defaultCut,
    namedCuts: spec.namedCuts,
    classifier: 'predictions',
    weightsId: await fingerprint(source.files),
    weightsFrom: source.files[0],
  };
}

/** Where a keras.applications backbone's weights already are (--weights, then the weights folder), if anywhere. */
export function locateKerasWeights(name: KerasApplicationName, needsTop: boolean, opts: Pick<LoadBackboneOptions, 'weights' | 'weightsDir'>): string | undefined {
  const spec: KerasApplication = KERAS_APPLICATIONS[name];
  const wanted = needsTop ? [spec.full] : [spec.notop, spec.full];
  const names = [...wanted.map((w) => w.file), `${name}/model.json`, `${name}.safetensors`];
  if (opts.weights) {
    if (!existsSync(opts.weights)) throw new WeightsError(`--weights ${opts.weights}: no such file or folder`);
    if (!statSync(opts.weights).isDirectory()) return opts.weights;
    const inside = findIn(opts.weights, names);
    if (inside) return inside;
  }
  return findIn(opts.weightsDir ?? defaultWeightsDir(), names);
}

async function findKerasWeights(name: KerasApplicationName, spec: KerasApplication, needsTop: boolean, opts: LoadBackboneOptions): Promise<string> {
  const found = locateKerasWeights(name, needsTop, opts);
  if (found) return found;
  const target = needsTop ? spec.full : spec.notop;
  return fetchKerasWeights(name, target, opts.weightsDir ?? defaultWeightsDir(), opts.downloadBaseUrl ?? process.env.BOTTLENECK_WEIGHTS_URL ?? spec.url, opts);
}

function findIn(dir: string, names: readonly string[]): string | undefined {
  return names.map((n) => path.join(dir, n)).find((p) => existsSync(p));
}

async function loadCaffeBackbone(name: keyof typeof CAFFE_BACKBONES, opts: LoadBackboneOptions): Promise<GraphBackbone> {
  const spec = CAFFE_BACKBONES[name];
  // The user's files first; squeezenet1_1 is also built into the package, so it never needs a download.
  const dirs = [opts.weights, opts.weightsDir ?? defaultWeightsDir(), ...(name === BUILT_IN_BACKBONE ? [assetPath('weights')] : [])].filter((d): d is string => !!d);
  let weightsFile: string | undefined;
  for (const d of dirs) {
    if (d.endsWith('.safetensors') && existsSync(d)) weightsFile = d;
    else weightsFile = findIn(d, [`${spec.file}.safetensors`]);
    if (weightsFile) break;
  }
  if (!weightsFile) {
    throw new WeightsError(
      `${name} weights not found: put ${spec.file}.safetensors and ${spec.file}.arch.json in ${dirs.join(' or ')}, set BOTTLENECK_WEIGHTS, or pass --weights PATH`,
    );
  }
  const archFile = weightsFile.replace(/\.safetensors$/, '.arch.json');
  if (!existsSync(archFile)) throw new WeightsError(`${weightsFile}: its layer description ${archFile} is missing`);
  const arch = JSON.parse(await readFile(archFile, 'utf8')) as CaffeArch;
  const graph = { ...graphFromCaffeArch(arch), name };
  const { source } = await readSafetensors(weightsFile);
  return {
    id: name,
    graph,
    weights: bindWeights(graph, source),
    preprocessing: preprocessingFromCaffeArch(arch),
    defaultCut: spec.defaultCut,
    namedCuts: spec.namedCuts,
    classifier: spec.classifier,
    weightsId: await fingerprint([weightsFile, archFile]),
    weightsFrom: weightsFile,
  };
}

/**
 * Any Keras-converted TF.js layers model. Its preprocessing cannot be known from the model;
 * a `preprocessing.json` beside model.json gives it, else inputs are scaled to [0, 1] RGB.
 * A Teachable Machine export (metadata.json beside it) is recognised: its base's output is the
 * default cut, its preprocessing Teachable Machine's own, its labels its classifier's names.
 */
async function loadTfjsBackbone(location: string): Promise<GraphBackbone> {
  const modelJson = location.endsWith('.json') ? location : path.join(location, 'model.json');
  const { topology, source } = await readTfjsModel(modelJson);
  const { graph, inputSize } = withFile(modelJson, () => graphFromKerasTopology(topology, path.basename(path.dirname(path.resolve(modelJson)))));
  const weights = withFile(modelJson, () => bindWeights(graph, source));
  const common = { id: path.resolve(modelJson), graph, weights, weightsId: await fingerprint([modelJson, ...source.files.slice(1)]), weightsFrom: modelJson };
  const tm = await readTeachableMachineMetadata(modelJson);
  if (tm) {
    const { base, head } = teachableMachineParts(topology, graph, tm, modelJson);
    const baseNodes = new Set(planGraph(graph, inputSize, [base]).steps.map((s) => s.node.name));
    const merges = graph.nodes.filter((n) => n.op === 'merge' && baseNodes.has(n.name)).map((n) => n.name);
    const baseInput = graph.nodes.find((n) => n.name === base)?.inputs[0];
    return {
      ...common,
      preprocessing: teachableMachinePreprocessing([tm.imageSize, tm.imageSize]),
      defaultCut: { layer: base },
      namedCuts: [base, ...(baseInput ? [baseInput] : []), ...merges.slice(-3).reverse()],
      classifier: head,
      classNames: tm.labels,
      inputResize: 'crop',
    };
  }
  const prepFile = path.join(path.dirname(modelJson), 'preprocessing.json');
  const preprocessing: Preprocessing = existsSync(prepFile)
    ? { size: inputSize, ...(JSON.parse(await readFile(prepFile, 'utf8')) as Omit<Preprocessing, 'size'>) }
    : { size: inputSize, channels: 'rgb', mean: [0, 0, 0], std: [255, 255, 255] };
  const last = graph.nodes[graph.nodes.length - 1];
  const beforeLast = graph.nodes[graph.nodes.length - 2] ?? last;
  return {
    ...common,
    preprocessing,
    defaultCut: { layer: beforeLast.name },
    namedCuts: graph.nodes.slice(1).map((n) => n.name),
    classifier: last.name,
  };
}

/** Runs a step that reads a model file, so that whatever it refuses names the file. */
function withFile<T>(file: string, step: () => T): T {
  try {
    return step();
  } catch (error) {
    if (error instanceof WeightsError) throw new WeightsError(error.message.startsWith(file) ? error.message : `${file}: ${error.message}`);
    throw error;
  }
}

/** Reads any supported weights file: Keras h5, safetensors, or a TF.js model folder. */
export async function readWeightFile(file: string): Promise<WeightSource> {
  if (/\.(h5|hdf5|keras)$/i.test(file)) {
    // h5wasm takes two seconds to instantiate; only h5 users pay for it.
    const { readKerasH5 } = await import('./weights/keras-h5.ts');
    return readKerasH5(file);
  }
  if (file.endsWith('.safetensors')) {
    const { source } = await readSafetensors(file);
    // safetensors written from Keras keep Keras names and layouts.
    const keras = [...source.tensors.keys()].some((k) => k.endsWith('/kernel'));
    return keras ? { ...source, convention: 'keras' } : source;
  }
  if (file.endsWith('.json') || statSync(file).isDirectory()) {
    return (await readTfjsModel(file.endsWith('.json') ? file : path.join(file, 'model.json'))).source;
  }
  throw new WeightsError(`${file}: unknown weights format (expected .h5, .safetensors or a TF.js model.json)`);
}

async function fingerprint(files: readonly string[]): Promise<string> {
  const hashes = await Promise.all(files.map((f) => hashFile(f)));
  return hashes.length === 1 ? hashes[0] : createHash('sha256').update(hashes.join()).digest('hex');
}
