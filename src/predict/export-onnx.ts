/**
 * `export --format onnx`: one ONNX model, input `images` (NHWC float32, preprocessed as
 * preprocessing.json says), for three sources:
 * - a layer graph stitched with its head: output `probabilities`, batch × classes. Plain
 *   convolutions (no Winograd rewrite), so the file is the textbook network any ONNX tool can
 *   read and optimise for its own hardware;
 * - a layer graph alone up to a cut: output `code`, batch × D (an embedding model);
 * - a user's ONNX file, rewritten to the cut (and the head's dense layers, if any).
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { GraphBackbone, OnnxBackbone } from '../backbones/backbone.ts';
import { planCuts, type Cut } from '../backbones/cut.ts';
import { resolveCuts } from '../backbones/cut-shape.ts';
import type { Pair } from '../backbones/layer-graph.ts';
import { readModel } from '../backbones/onnx-file/onnx-model-file.ts';
import { rewriteForExport, type DenseLayer } from '../backbones/onnx-file/onnx-rewrite.ts';
import { checkWeights } from '../backbones/weights.ts';
import { buildOnnxModel } from '../engines/onnx-model.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { PROBABILITIES } from './stitch-head.ts';

export const EXPORTED_OUTPUT = 'probabilities';
export const EMBEDDING_OUTPUT = 'code';

export async function exportOnnx(stitched: GraphBackbone, file: string): Promise<void> {
  const cuts = [{ layer: PROBABILITIES }];
  const plan = planCuts(stitched.graph, stitched.preprocessing.size, cuts);
  checkWeights(plan, stitched.weights);
  await writeFileAtomic(file, buildOnnxModel({ plan, cuts, weights: stitched.weights, convAlgorithm: 'direct', outputNames: [EXPORTED_OUTPUT] }));
}

export async function exportEmbeddingOnnx(backbone: GraphBackbone, cut: Cut, size: Pair, file: string): Promise<void> {
  const plan = planCuts(backbone.graph, size, [cut]);
  checkWeights(plan, backbone.weights);
  await writeFileAtomic(file, buildOnnxModel({ plan, cuts: [cut], weights: backbone.weights, convAlgorithm: 'direct', outputNames: [EMBEDDING_OUTPUT] }));
}

/** Writes model.onnx (and copies of its external-data files) into `out`; returns them, the model first. */
export async function exportOnnxFile(backbone: OnnxBackbone, cut: Cut, head: readonly DenseLayer[], output: string, out: string): Promise<string[]> {
  const { model } = backbone;
  const [resolved] = resolveCuts(backbone, model.size, [cut]);
  const request = { tensor: resolved.layer, layout: resolved.layout ?? 'other', pool: cut.pool ?? null, float16: model.tensors.get(resolved.layer)!.float16 };
  const file = path.join(out, 'model.onnx');
  await writeFileAtomic(file, rewriteForExport(await readModel(model.file), model.input, request, head, output));
  return [file, ...(await copyDataFiles(model.dataFiles, path.dirname(model.file), out))];
}

/** External-data files (paths relative to the model) copied from `from` into `out`; returns the copies. */
export async function copyDataFiles(files: readonly string[], from: string, out: string): Promise<string[]> {
  const copies: string[] = [];
  for (const f of files) {
    const dest = path.join(out, f);
    await mkdir(path.dirname(dest), { recursive: true });
    await copyFile(path.join(from, f), dest);
    copies.push(dest);
  }
  return copies;
}
