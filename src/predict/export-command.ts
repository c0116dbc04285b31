/**
 * `bottleneck export HEAD --format onnx|tfjs|teachable-machine --out FOLDER`: backbone and head
 * as one model that other tools load, with the preprocessing it expects written beside it.
 * `export --backbone NAME [--layer L] --format onnx`: the backbone alone up to a cut (an
 * embedding model), which loads back as an ONNX backbone.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { loadHead, type Head } from '../train-head/head-folder.ts';
import { replaceFolder, writeFileAtomic } from '../util/atomic-file.ts';
import { ONNX_INPUT } from '../engines/onnx-model.ts';
import ort from '../util/onnxruntime.ts';
import { tfBackend } from '../engines/tfjs-backend.ts';
import { EMBEDDING_OUTPUT, EXPORTED_OUTPUT, exportEmbeddingOnnx, exportOnnx, exportOnnxFile } from './export-onnx.ts';
import { loadHeadBackbone } from '../train-head/head-backbone.ts';
import { PROBABILITIES, stitchHead } from './stitch-head.ts';
import { isOnnxBackbone, type Backbone, type GraphBackbone, type OnnxBackbone } from '../backbones/backbone.ts';
import { CUT_POOLS, type CutPool } from '../backbones/cut.ts';
import { feedName, type DenseLayer } from '../backbones/onnx-file/onnx-rewrite.ts';
import { cacheKey, codeDim, settingsOfSpec, type CodeSpec } from '../cache/code-spec.ts';
import { planExtract } from '../extract/extract-plan.ts';
import { codeSpecFor } from '../extract/extract-targets.ts';
import { cacheRootOf, defineCommand, withCache, withWeights } from '../util/cli-options.ts';
import { PRECISIONS, type Precision } from '../engines/engine.ts';
import { exportInt8Onnx } from './export-int8.ts';
import { UsageError, UserError } from '../util/errors.ts';

export type ExportFormat = 'onnx' | 'tfjs' | 'teachable-machine';

export const exportCommand = defineCommand(
  'export [head]',
  'write backbone + head as one model (ONNX, TF.js layers, or a Teachable Machine folder) with its preprocessing.json; or, with --backbone and no head, the backbone up to a cut as ONNX',
  (y) =>
    withCache(withWeights(y))
      .positional('head', { type: 'string', describe: 'head folder written by train-head (or --head)' })
      .option('backbone', { type: 'string', describe: 'without a head: the backbone to write up to --layer (its default cut otherwise), as an ONNX embedding model' })
      .option('layer', { type: 'string', describe: 'with --backbone: the cut' })
      .option('pool', { choices: CUT_POOLS, describe: 'with --backbone: pooling of the cut' })
      .option('format', { choices: ['onnx', 'tfjs', 'teachable-machine'] as const, demandOption: true, describe: "teachable-machine: a folder @teachablemachine/image's load() reads" })
      .option('precision', { choices: PRECISIONS, describe: "the backbone's arithmetic: by default the head's codes' (int8 for a head trained on int8 codes, in --format onnx; TF.js has no int8 kernels)" })
      .option('out', { type: 'string', demandOption: true, describe: 'folder to write the model and preprocessing.json into' }),
  async (argv) => {
    if (!argv.head && !argv.backbone) throw new UsageError('export needs a head folder (bottleneck export HEAD --format onnx --out DIR) or --backbone NAME for an embedding model');
    if (argv.head && argv.backbone) throw new UsageError('export takes a head folder or --backbone, not both: a head names its own backbone');
    const { files, notes } = await runExport({ ...argv, cacheRoot: argv.cache });
    for (const note of notes) console.error(`note: ${note}`);
    for (const f of files) console.log(f);
  },
);

export interface ExportCommand {
  /** A head folder: backbone + head, probabilities out. */
  readonly head?: string;
  /** Without a head: this backbone up to `layer`, codes out. */
  readonly backbone?: string;
  readonly layer?: string;
  readonly pool?: CutPool;
  readonly format: ExportFormat;
  readonly out: string;
  readonly weights?: string;
  /** Default: the codes' precision where the format runs it (int8 in ONNX only), else fp32. */
  readonly precision?: Precision;
  /** Where an int8 export finds its calibration and int8 model: --cache, the head's recorded cache, or ./cache. */
  readonly cacheRoot?: string;
}

/** What a program needs to feed the exported model and read its answer. */
export interface ExportedPreprocessing {
  readonly format: 'bottleneck-export/1';
  readonly model: string;
  readonly input: {
    readonly name: string;
    readonly layout: 'NHWC';
    readonly dtype: 'float32';
    /** [height, width]. */
    readonly size: readonly [number, number];
    /** Channel order of the input's last axis. */
    readonly channels: 'rgb' | 'bgr';
    /** input = (pixel − mean[c]) / std[c], pixels 0..255, in `channels` order. */
    readonly mean: readonly number[];
    readonly std: readonly number[];
    /** How images were brought to `size` for training; do the same for the same accuracy. */
    readonly resize: string;
    readonly interpolation: string;
    /** With resize crop: the share of the shorter side kept before the centre crop. */
    readonly cropFraction?: number;
    /** Alpha is flattened on this RGB colour (and pad mode fills with it). */
    readonly background: readonly [number, number, number];
  };
  /** classes: the head's, in output order; an embedding model (no head) has none, and `shape` per image. */
  readonly output: { readonly name: string; readonly classes: readonly string[]; readonly shape?: readonly number[] };
  readonly source: {
    readonly head: string | null;
    readonly cacheKey: string;
    readonly backbone: string;
    readonly layer: string;
    readonly pool: string | null;
    /** The codes the head was trained on, and the arithmetic of the exported backbone (int8: Q/DQ pairs). */
    readonly codePrecision: Precision;
    readonly modelPrecision: Precision;
  };
}

/** What one export writes: a backbone's codes at one spec, the head on them if there is one, and in what arithmetic. */
interface ExportSource {
  readonly backbone: Backbone;
  readonly spec: CodeSpec;
  readonly head: Head | null;
  readonly precision: Precision;
  readonly cacheRoot: string;
}

/**
 * int8 where the codes are int8 and the format runs it: an int8 head's export is then the model
 * its codes came from. A float32 backbone under an int8 head is allowed (asked for, or TF.js),
 * and said in a note.
 */
function exportPrecision(cmd: ExportCommand, spec: CodeSpec): Precision {
  const codes = spec.precision ?? 'fp32';
  if (cmd.precision === 'int8' && codes !== 'int8') {
    throw new UsageError(`--precision int8: head ${cmd.head} was trained on fp32 codes; extract and train a head with --precision int8 for an int8 export`);
  }
  if (cmd.precision === 'int8' && cmd.format !== 'onnx') throw new UsageError(`--precision int8: --format ${cmd.format} is TF.js, which has no int8 kernels; use --format onnx, or --precision fp32`);
  return cmd.precision ?? (cmd.format === 'onnx' ? codes : 'fp32');
}

/** What the user should know about an export that is not what they might assume. */
export function exportNotes(source: Pick<ExportSource, 'spec' | 'precision'>): string[] {
  if (source.spec.precision !== 'int8' || source.precision === 'int8') return [];
  return ['the head was trained on int8 codes and the exported backbone runs in float32, so its probabilities can differ slightly from predict --head'];
}

export async function runExport(cmd: ExportCommand): Promise<{ files: string[]; notes: string[] }> {
  const source = await exportSource(cmd);
  await assertReplaceable(cmd.out);
  const out = path.resolve(cmd.out);
  let names: string[] = [];
  let modelNotes: readonly string[] = [];
  // Written whole into a staging folder, loaded back and run once, and only then in place: a
  // refused or failed export leaves the old folder (or none) as it was.
  await replaceFolder(out, async (staging) => {
    const model = await writeModel(cmd.format, source, staging);
    await checkExport(cmd.format, model, source);
    const prepFile = path.join(staging, 'preprocessing.json');
    await writeFileAtomic(prepFile, `${JSON.stringify(preprocessingFor(source, model), null, 2)}\n`);
    names = [...model.files, prepFile].map((f) => path.basename(f));
    modelNotes = model.notes ?? [];
  });
  return { files: names.map((n) => path.join(out, n)), notes: [...exportNotes(source), ...modelNotes] };
}

async function exportSource(cmd: ExportCommand): Promise<ExportSource> {
  if (cmd.head) {
    const head = await loadHead(cmd.head);
    const spec = head.config.codeSpec;
    const cacheRoot = cacheRootOf(cmd.cacheRoot, head.config.cacheRoot);
    return { backbone: await loadHeadBackbone(head, { weights: cmd.weights }), spec, head, precision: exportPrecision(cmd, spec), cacheRoot };
  }
  if (cmd.precision === 'int8' && cmd.format !== 'onnx') throw new UsageError(`--precision int8: an embedding model is written as ONNX only; use --format onnx`);
  const plan = await planExtract({ backbone: cmd.backbone!, weights: cmd.weights, layer: cmd.layer, pool: cmd.pool, background: '255,255,255', float16: false, precision: cmd.precision });
  if (plan.cuts.length !== 1) throw new UsageError('--layer: export writes one cut');
  return { backbone: plan.backbone, spec: codeSpecFor({ ...plan, cut: plan.cuts[0] }), head: null, precision: plan.precision, cacheRoot: cacheRootOf(cmd.cacheRoot) };
}

async function writeModel(format: ExportFormat, source: ExportSource, staging: string): Promise<Written> {
  const { backbone, head, spec } = source;
  if (source.precision === 'int8') return writeInt8Onnx(source, staging);
  if (format !== 'onnx' && (!head || isOnnxBackbone(backbone))) {
    throw new UsageError(
      !head
        ? `--format ${format}: an embedding model (no head) is written as ONNX only; use --format onnx`
        : `--format ${format}: ${backbone.id} is an ONNX file, and TF.js cannot run an ONNX graph; use --format onnx`,
    );
  }
  if (isOnnxBackbone(backbone)) return writeOnnxFileExport(backbone, spec, head, staging);
  if (!head) return writeEmbeddingOnnx(backbone, spec, staging);
  const stitched = stitchHead(backbone, head);
  return format === 'onnx' ? writeOnnx(stitched, staging) : format === 'tfjs' ? writeTfjs(stitched, staging) : writeTeachableMachine(stitched, head, staging);
}

/** The folder must be new, empty, or an earlier export: anything else holds the user's files. */
async function assertReplaceable(out: string): Promise<void> {
  if (!existsSync(out)) return;
  if (!(await stat(out)).isDirectory()) throw new UsageError(`--out ${out} is a file, not a folder`);
  if ((await readdir(out)).length === 0) return;
  const prep = path.join(out, 'preprocessing.json');
  const earlier = existsSync(prep) && (await readFile(prep, 'utf8').catch(() => '')).includes('"bottleneck-export/1"');
  if (!earlier) throw new UsageError(`--out ${out} exists and is not an earlier export; choose a new folder`);
}

/**
 * Loads what was written with the runtime that will read it (onnxruntime, TF.js) and runs one
 * input through it: an export that does not load, or answers with the wrong shape, fails here
 * rather than in the user's application.
 */
async function checkExport(format: ExportFormat, written: Written, source: ExportSource): Promise<void> {
  const [h, w] = source.spec.preprocessing.size;
  const zeros = new Float32Array(h * w * 3);
  let out: ArrayLike<number>;
  try {
    if (format === 'onnx') {
      const session = await ort.InferenceSession.create(written.model);
      const result = await session.run({ [written.input]: new ort.Tensor('float32', zeros, [1, h, w, 3]) });
      out = result[written.output].data as Float32Array;
      await session.release();
    } else {
      out = await runTfjsExport(written, zeros, [h, w]);
    }
  } catch (err) {
    throw new UserError(`the exported ${format} model could not be loaded back (${(err instanceof Error ? err.message : String(err)).split('\n')[0]}); nothing was written`);
  }
  const values = Array.from(out);
  const sum = values.reduce((a, b) => a + b, 0);
  if (!source.head) {
    if (values.length !== codeDim(source.spec) || !Number.isFinite(sum)) throw new UserError(`the exported model answers ${values.length} values (sum ${sum}), not a code of ${codeDim(source.spec)}; nothing was written`);
    return;
  }
  const classes = source.head.config.classes.length;
  if (values.length !== classes || !Number.isFinite(sum) || Math.abs(sum - 1) > 1e-3) {
    throw new UserError(`the exported ${format} model answers ${values.length} values summing to ${sum}, not ${classes} probabilities; nothing was written`);
  }
}

async function runTfjsExport(written: Written, input: Float32Array, size: readonly [number, number]): Promise<ArrayLike<number>> {
  const { tf } = await tfBackend('cpu');
  const model = JSON.parse(await readFile(written.model, 'utf8')) as { modelTopology: object; weightsManifest: { paths: string[]; weights: import('@tensorflow/tfjs').io.WeightsManifestEntry[] }[] };
  const manifest = model.weightsManifest[0];
  const data = await readFile(path.join(path.dirname(written.model), manifest.paths[0]));
  const loaded = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: model.modelTopology, weightSpecs: manifest.weights, weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) }));
  try {
    const x = tf.tensor4d(input, [1, size[0], size[1], 3]);
    const y = loaded.predict(x) as import('@tensorflow/tfjs').Tensor;
    const values = await y.data();
    tf.dispose([x, y]);
    return values;
  } finally {
    loaded.dispose();
  }
}

interface Written {
  readonly files: readonly string[];
  /** What the model takes, when not the backbone's own preprocessing (a Teachable Machine folder's). */
  readonly inputPreprocessing?: { readonly channels: 'rgb' | 'bgr'; readonly mean: readonly number[]; readonly std: readonly number[]; readonly resize: string };
  /** The file a loader opens. */
  readonly model: string;
  readonly input: string;
  readonly output: string;
  /** What the user should know about this model file. */
  readonly notes?: readonly string[];
}

async function writeOnnx(stitched: GraphBackbone, out: string): Promise<Written> {
  const file = path.join(out, 'model.onnx');
  await exportOnnx(stitched, file);
  return { files: [file], model: file, input: ONNX_INPUT, output: EXPORTED_OUTPUT };
}

async function writeEmbeddingOnnx(backbone: GraphBackbone, spec: CodeSpec, out: string): Promise<Written> {
  const file = path.join(out, 'model.onnx');
  await exportEmbeddingOnnx(backbone, settingsOfSpec(spec).cut, spec.preprocessing.size, file);
  return { files: [file], model: file, input: ONNX_INPUT, output: EMBEDDING_OUTPUT };
}

async function writeOnnxFileExport(backbone: OnnxBackbone, spec: CodeSpec, head: Head | null, out: string): Promise<Written> {
  const output = outputName(backbone, head);
  const files = await exportOnnxFile(backbone, settingsOfSpec(spec).cut, head ? denseLayersOf(head) : [], output, out);
  return { files, model: files[0], input: feedName(backbone.model.input), output };
}

/** `probabilities`, or `code` without a head; an export of an export has a tensor of that name already. */
function outputName(backbone: Backbone, head: Head | null): string {
  const wanted = head ? EXPORTED_OUTPUT : EMBEDDING_OUTPUT;
  return isOnnxBackbone(backbone) && backbone.model.tensors.has(wanted) ? `${wanted}_2` : wanted;
}

async function writeInt8Onnx(source: ExportSource, out: string): Promise<Written> {
  const { backbone, spec, head } = source;
  const output = outputName(backbone, head);
  const { files, input, onnxruntimeOnly } = await exportInt8Onnx(
    {
      backbone,
      spec,
      cut: settingsOfSpec(spec).cut,
      cacheKey: head ? head.config.cacheKey : null,
      cacheRoot: source.cacheRoot,
      head: head ? denseLayersOf(head) : [],
      output,
      label: head ? `head ${head.dir}` : `${backbone.id} --precision int8`,
    },
    out,
  );
  const notes = onnxruntimeOnly ? ['the int8 model holds its attention fused as com.microsoft.MultiHeadAttention, which only onnxruntime runs; --precision fp32 writes a graph any ONNX runtime runs'] : [];
  return { files, model: files[0], input, output, notes };
}

function denseLayersOf(head: Head): DenseLayer[] {
  const { architecture } = head.config;
  const widths = [architecture.inputDim, ...architecture.hidden, architecture.classes];
  return head.params.map((p, i) => ({ weight: p.weight, bias: p.bias, inputs: widths[i], outputs: widths[i + 1] }));
}

async function writeTeachableMachine(stitched: GraphBackbone, head: Head, out: string): Promise<Written> {
  const { exportTeachableMachine, TM_MODEL_FILE } = await import('./export-teachable-machine.ts');
  const written = await exportTeachableMachine(stitched, PROBABILITIES, head.config.classes, out);
  const { channels, mean, std } = written.preprocessing;
  // Teachable Machine's capture() takes the centre square before resizing.
  return { ...written, model: path.join(out, TM_MODEL_FILE), inputPreprocessing: { channels, mean, std, resize: 'crop' } };
}

async function writeTfjs(stitched: GraphBackbone, out: string): Promise<Written> {
  const { exportTfjs, TFJS_MODEL_FILE } = await import('./export-tfjs.ts');
  const written = await exportTfjs(stitched, PROBABILITIES, out);
  return { ...written, model: path.join(out, TFJS_MODEL_FILE) };
}

function preprocessingFor(source: ExportSource, written: Written): ExportedPreprocessing {
  const { spec, head } = source;
  const p = spec.preprocessing;
  return {
    format: 'bottleneck-export/1',
    model: path.basename(written.model),
    input: {
      name: written.input,
      layout: 'NHWC',
      dtype: 'float32',
      size: p.size,
      channels: written.inputPreprocessing?.channels ?? p.channels,
      mean: written.inputPreprocessing?.mean ?? p.mean,
      std: written.inputPreprocessing?.std ?? p.std,
      resize: written.inputPreprocessing?.resize ?? p.resize,
      interpolation: p.interpolation,
      ...(p.cropFraction ? { cropFraction: p.cropFraction } : {}),
      background: p.background,
    },
    output: head ? { name: written.output, classes: head.config.classes } : { name: written.output, classes: [], shape: spec.shape },
    source: { head: head ? path.resolve(head.dir) : null, cacheKey: head ? head.config.cacheKey : cacheKey(spec), backbone: source.backbone.id, layer: spec.layer, pool: spec.pool, codePrecision: spec.precision ?? 'fp32', modelPrecision: source.precision },
  };
}
