/**
 * Teachable Machine image-model exports (`@teachablemachine/image`): a TF.js layers model.json
 * whose outer Sequential holds two models, the truncated MobileNet (the base) and the head
 * Teachable Machine trained, with metadata.json beside it (labels in output order, image size).
 *
 * As a backbone, its default cut is the base's output, the very layer the export's head reads
 * (MobileNetV2's out_relu, globally average-pooled: 1280-d); the head stays in the graph only
 * as the model's own classifier, which `predict --own` runs with the metadata's labels.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Preprocessing } from './backbone.ts';
import { topLevelLayers } from './keras-topology.ts';
import type { LayerGraph, Pair } from './layer-graph.ts';
import { WeightsError } from './weights.ts';

export const TM_METADATA_FILE = 'metadata.json';

/** The fields of metadata.json that matter here; the rest is kept as it was written. */
export interface TeachableMachineMetadata {
  readonly labels: readonly string[];
  readonly imageSize: number;
  readonly tfjsVersion?: string;
  readonly tmVersion?: string;
  readonly packageVersion?: string;
  readonly packageName?: string;
  readonly timeStamp?: string;
  readonly userMetadata?: Readonly<Record<string, unknown>>;
  readonly modelName?: string;
  readonly grayscale?: boolean;
}

/**
 * Teachable Machine's capture() (src/utils/tf.ts of @teachablemachine/image): the centre square
 * (cropTo), resized to the image size, then pixel / 127 − 1. Note 127, not 127.5.
 */
export function teachableMachinePreprocessing(size: Pair): Preprocessing {
  return { size, channels: 'rgb', mean: [127, 127, 127], std: [127, 127, 127] };
}

/** metadata.json beside model.json, when it is a Teachable Machine export's; undefined when there is none. */
export async function readTeachableMachineMetadata(modelJson: string): Promise<TeachableMachineMetadata | undefined> {
  const file = path.join(path.dirname(modelJson), TM_METADATA_FILE);
  if (!existsSync(file)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new WeightsError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  const m = json as Partial<TeachableMachineMetadata> | null;
  const fromTm = !!m && typeof m === 'object' && (typeof m.tmVersion === 'string' || m.packageName === '@teachablemachine/image');
  if (!fromTm) return undefined;
  if (!Array.isArray(m.labels) || !m.labels.every((l) => typeof l === 'string')) throw new WeightsError(`${file}: 'labels' is not a list of class names`);
  const imageSize = m.imageSize ?? 224;
  if (!Number.isInteger(imageSize) || imageSize < 1) throw new WeightsError(`${file}: 'imageSize' ${JSON.stringify(m.imageSize)} is not a size in pixels`);
  if (m.grayscale === true) throw new WeightsError(`${file}: grayscale Teachable Machine models are not supported`);
  return { ...m, labels: m.labels, imageSize };
}

/** metadata.json's userMetadata key naming the base's output in folders bottleneck exported (one flat model). */
export const TM_BASE_OUTPUT_KEY = 'bottleneckBaseOutput';

/** The base's output node and the head's output node of an export's graph. */
export function teachableMachineParts(topology: unknown, graph: LayerGraph, metadata: TeachableMachineMetadata, file: string): { base: string; head: string } {
  const head = graph.nodes[graph.nodes.length - 1].name;
  const recorded = metadata.userMetadata?.[TM_BASE_OUTPUT_KEY];
  if (typeof recorded === 'string' && graph.nodes.some((n) => n.name === recorded)) return { base: recorded, head };
  const top = topLevelLayers(topology);
  const models = top.filter((l) => l.className === 'Sequential' || l.className === 'Model' || l.className === 'Functional');
  if (top.length !== 2 || models.length !== 2) {
    const listed = top.length > 4 ? `${top.length} layers, ${top.slice(0, 2).map((l) => l.name).join(', ')}, …` : top.map((l) => `${l.name} (${l.className})`).join(', ');
    throw new WeightsError(`${file}: a Teachable Machine export is a Sequential of two models (base and head); this one has ${listed}`);
  }
  const base = graph.aliases?.[models[0].name];
  if (!base) throw new WeightsError(`${file}: cannot find the output of its base model '${models[0].name}'`);
  return { base, head };
}
