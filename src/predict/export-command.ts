/**
 * `bottleneck export --head DIR --format onnx|tfjs|teachable-machine --out FOLDER`: backbone and
 * head as one model that other tools load, with the preprocessing it expects written beside it.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { loadHead, type Head } from '../train-head/head-folder.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { ONNX_INPUT } from '../engines/onnx-model.ts';
import { EXPORTED_OUTPUT, exportOnnx } from './export-onnx.ts';
import { loadHeadBackbone } from '../train-head/head-backbone.ts';
import { PROBABILITIES, stitchHead } from './stitch-head.ts';
import type { Backbone } from '../backbones/backbone.ts';

export type ExportFormat = 'onnx' | 'tfjs' | 'teachable-machine';

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
  // A refused export (a layer the format lacks) leaves no empty folder behind.
  const created = !existsSync(cmd.out);
  await mkdir(cmd.out, { recursive: true });
  let written: Written;
  try {
    written = cmd.format === 'onnx' ? await writeOnnx(stitched, cmd.out) : cmd.format === 'tfjs' ? await writeTfjs(stitched, cmd.out) : await writeTeachableMachine(stitched, head, cmd.out);
  } catch (err) {
    if (created) await rm(cmd.out, { recursive: true, force: true });
    throw err;
  }
  const prepFile = path.join(cmd.out, 'preprocessing.json');
  await writeFileAtomic(prepFile, `${JSON.stringify(preprocessingFor(head, stitched, written), null, 2)}\n`);
  return { files: [...written.files, prepFile] };
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
