/**
 * `bottleneck export HEAD --format onnx|tfjs|teachable-machine --out FOLDER`: backbone and head
 * as one model that other tools load, with the preprocessing it expects written beside it.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { loadHead, type Head } from '../train-head/head-folder.ts';
import { replaceFolder, writeFileAtomic } from '../util/atomic-file.ts';
import { ONNX_INPUT } from '../engines/onnx-model.ts';
import ort from '../util/onnxruntime.ts';
import { tfBackend } from '../engines/tfjs-backend.ts';
import { EXPORTED_OUTPUT, exportOnnx } from './export-onnx.ts';
import { loadHeadBackbone } from '../train-head/head-backbone.ts';
import { PROBABILITIES, stitchHead } from './stitch-head.ts';
import type { Backbone } from '../backbones/backbone.ts';
import { defineCommand, withWeights } from '../util/cli-options.ts';
import { UsageError, UserError } from '../util/errors.ts';

export type ExportFormat = 'onnx' | 'tfjs' | 'teachable-machine';

export const exportCommand = defineCommand(
  'export [head]',
  'write backbone + head as one model (ONNX, TF.js layers, or a Teachable Machine folder) with its preprocessing.json',
  (y) =>
    withWeights(y)
      .positional('head', { type: 'string', describe: 'head folder written by train-head (or --head)' })
      .option('format', { choices: ['onnx', 'tfjs', 'teachable-machine'] as const, demandOption: true, describe: "teachable-machine: a folder @teachablemachine/image's load() reads" })
      .option('out', { type: 'string', demandOption: true, describe: 'folder to write the model and preprocessing.json into' }),
  async (argv) => {
    if (!argv.head) throw new UsageError('export needs a head folder: bottleneck export HEAD --format onnx --out DIR');
    const { files } = await runExport({ ...argv, head: argv.head });
    for (const f of files) console.log(f);
  },
);

export interface ExportCommand {
  readonly head: string;
  readonly format: ExportFormat;
  readonly out: string;
  readonly weights?: string;
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
    /** Alpha is flattened on this RGB colour (and pad mode fills with it). */
    readonly background: readonly [number, number, number];
  };
  readonly output: { readonly name: string; readonly classes: readonly string[] };
  readonly source: { readonly head: string; readonly cacheKey: string; readonly backbone: string; readonly layer: string; readonly pool: string | null };
}

export async function runExport(cmd: ExportCommand): Promise<{ files: string[] }> {
  const head = await loadHead(cmd.head);
  const backbone = await loadHeadBackbone(head, { weights: cmd.weights });
  const stitched = stitchHead(backbone, head);
  await assertReplaceable(cmd.out);
  const out = path.resolve(cmd.out);
  let names: string[] = [];
  // Written whole into a staging folder, loaded back and run once, and only then in place: a
  // refused or failed export leaves the old folder (or none) as it was.
  await replaceFolder(out, async (staging) => {
    const written = cmd.format === 'onnx' ? await writeOnnx(stitched, staging) : cmd.format === 'tfjs' ? await writeTfjs(stitched, staging) : await writeTeachableMachine(stitched, head, staging);
    await checkExport(cmd.format, written, stitched, head.config.classes.length);
    const prepFile = path.join(staging, 'preprocessing.json');
    await writeFileAtomic(prepFile, `${JSON.stringify(preprocessingFor(head, stitched, written), null, 2)}\n`);
    names = [...written.files, prepFile].map((f) => path.basename(f));
  });
  return { files: names.map((n) => path.join(out, n)) };
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
async function checkExport(format: ExportFormat, written: Written, stitched: Backbone, classes: number): Promise<void> {
  const [h, w] = stitched.preprocessing.size;
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
  const sum = Array.from(out).reduce((a, b) => a + b, 0);
  if (out.length !== classes || !Number.isFinite(sum) || Math.abs(sum - 1) > 1e-3) {
    throw new UserError(`the exported ${format} model answers ${out.length} values summing to ${sum}, not ${classes} probabilities; nothing was written`);
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
}

async function writeOnnx(stitched: Backbone, out: string): Promise<Written> {
  const file = path.join(out, 'model.onnx');
  await exportOnnx(stitched, file);
  return { files: [file], model: file, input: ONNX_INPUT, output: EXPORTED_OUTPUT };
}

async function writeTeachableMachine(stitched: Backbone, head: Head, out: string): Promise<Written> {
  const { exportTeachableMachine, TM_MODEL_FILE } = await import('./export-teachable-machine.ts');
  const written = await exportTeachableMachine(stitched, PROBABILITIES, head.config.classes, out);
  const { channels, mean, std } = written.preprocessing;
  // Teachable Machine's capture() takes the centre square before resizing.
  return { ...written, model: path.join(out, TM_MODEL_FILE), inputPreprocessing: { channels, mean, std, resize: 'crop' } };
}

async function writeTfjs(stitched: Backbone, out: string): Promise<Written> {
  const { exportTfjs, TFJS_MODEL_FILE } = await import('./export-tfjs.ts');
  const written = await exportTfjs(stitched, PROBABILITIES, out);
  return { ...written, model: path.join(out, TFJS_MODEL_FILE) };
}

function preprocessingFor(head: Head, stitched: Backbone, written: Written): ExportedPreprocessing {
  const spec = head.config.codeSpec;
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
      background: p.background,
    },
    output: { name: written.output, classes: head.config.classes },
    source: { head: path.resolve(head.dir), cacheKey: head.config.cacheKey, backbone: stitched.id, layer: spec.layer, pool: spec.pool },
  };
}
