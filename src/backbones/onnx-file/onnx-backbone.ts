/**
 * `--backbone model.onnx` (or a folder with model.onnx and its preprocessor_config.json): the
 * OnnxBackbone extract, train-head, evaluate, predict and export work with, with its default cut
 * (the classifier's input where the graph ends in one, else a vector output, else its last
 * output, pooled) and its preprocessing (from the files beside it, then the user's flags).
 */
import type { OnnxBackbone, Preprocessing } from '../backbone.ts';
import type { Cut } from '../cut.ts';
import type { Pair } from '../layer-graph.ts';
import { openOnnxModel, resolveModelFile, type OnnxModel } from './onnx-model-file.ts';
import { readPreprocessing } from './onnx-preprocessing.ts';

export interface OnnxBackboneOptions {
  /** Network input [height, width]; the model's own where it fixes one. */
  readonly size?: Pair;
  /** The model's input layout, where its shape does not tell. */
  readonly layout?: 'nchw' | 'nhwc';
  /** Overrides of what preprocessor_config.json or preprocessing.json says. */
  readonly preprocessing?: Partial<Pick<Preprocessing, 'channels' | 'mean' | 'std'>>;
}

export async function loadOnnxBackbone(target: string, opts: OnnxBackboneOptions = {}): Promise<OnnxBackbone> {
  const choice = await readPreprocessing(resolveModelFile(target));
  const { model, weightsId } = await openOnnxModel(target, { size: opts.size ?? choice.size, layout: opts.layout });
  const defaultCut = defaultCutOf(model);
  return {
    kind: 'onnx',
    id: model.file,
    model,
    preprocessing: {
      size: model.size,
      channels: opts.preprocessing?.channels ?? choice.channels,
      mean: opts.preprocessing?.mean ?? choice.mean,
      std: opts.preprocessing?.std ?? choice.std,
    },
    preprocessingFrom: opts.preprocessing && Object.keys(opts.preprocessing).length > 0 ? `${choice.from}, with flags` : choice.from,
    ...(choice.resize ? { inputResize: choice.resize } : {}),
    ...(choice.interpolation ? { inputInterpolation: choice.interpolation } : {}),
    ...(choice.cropFraction ? { inputCropFraction: choice.cropFraction } : {}),
    defaultCut,
    namedCuts: [...new Set([defaultCut.layer, ...(model.classifier ? [model.classifier.input] : []), ...model.graphOutputs])],
    ...(model.classifier ? { classifier: model.classifier.output } : {}),
    weightsId,
    weightsFrom: model.file,
  };
}

export function defaultCutOf(model: OnnxModel): Cut {
  if (model.classifier) return { layer: model.classifier.input };
  const outputs = model.graphOutputs.map((n) => model.tensors.get(n)!);
  const vector = outputs.find((t) => t.layout === 'vector');
  if (vector) return { layer: vector.name };
  const last = outputs.at(-1) ?? [...model.tensors.values()].at(-1)!;
  if (last.layout === 'tokens') return { layer: last.name, pool: 'cls' };
  if (last.layout === 'nchw' || last.layout === 'nhwc') return { layer: last.name, pool: 'avg' };
  return { layer: last.name };
}
