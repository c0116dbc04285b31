/**
 * How an ONNX backbone's images are prepared, from what sits beside the model: a Hugging Face
 * `preprocessor_config.json`, or the `preprocessing.json` bottleneck's own export writes. Both
 * become one PreprocessingChoice in bottleneck's terms (0..255 mean/std, a resize mode, a crop
 * fraction), so the code spec records exactly what the model's pipeline does.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Interpolation, ResizeMode } from '../../cache/code-spec.ts';
import { readJsonFile } from '../../util/json-file.ts';
import type { Pair } from '../layer-graph.ts';

export interface PreprocessingChoice {
  /** Network input [height, width], when the source fixes it. */
  readonly size?: Pair;
  readonly channels: 'rgb' | 'bgr';
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
  readonly resize?: ResizeMode;
  readonly interpolation?: Interpolation;
  readonly cropFraction?: number;
  /** Where it came from, for messages. */
  readonly from: string;
}

/** torchvision's and timm's ImageNet normalisation, in 0..255 units: what most exports expect. */
export const IMAGENET_DEFAULT: PreprocessingChoice = {
  channels: 'rgb',
  mean: [0.485 * 255, 0.456 * 255, 0.406 * 255],
  std: [0.229 * 255, 0.224 * 255, 0.225 * 255],
  from: 'ImageNet mean/std (torchvision and timm; no preprocessor_config.json or preprocessing.json beside the model)',
};

const triple = z.tuple([z.number(), z.number(), z.number()]);
const side = z.union([z.number().int().positive(), z.object({ height: z.number().int().positive(), width: z.number().int().positive() }), z.object({ shortest_edge: z.number().int().positive() })]);

const hfConfig = z.object({
  do_resize: z.boolean().optional(),
  size: side.optional(),
  resample: z.number().int().optional(),
  do_center_crop: z.boolean().optional(),
  crop_size: side.optional(),
  crop_pct: z.number().positive().max(1).nullable().optional(),
  do_rescale: z.boolean().optional(),
  rescale_factor: z.number().positive().optional(),
  do_normalize: z.boolean().optional(),
  image_mean: z.union([triple, z.number()]).optional(),
  image_std: z.union([triple, z.number()]).optional(),
});

const ownExport = z.object({
  format: z.literal('bottleneck-export/1'),
  input: z.object({
    size: z.tuple([z.number().int().positive(), z.number().int().positive()]),
    channels: z.enum(['rgb', 'bgr']),
    mean: triple,
    std: triple,
    resize: z.enum(['squash', 'crop', 'pad']),
    interpolation: z.enum(['nearest', 'linear', 'cubic', 'lanczos3']),
  }),
});

/** PIL's resample codes, as transformers writes them, to sharp's nearest equivalents. */
const RESAMPLE: Readonly<Record<number, Interpolation>> = { 0: 'nearest', 1: 'lanczos3', 2: 'linear', 3: 'cubic', 4: 'linear', 5: 'linear' };

/** The preprocessing files looked for: beside the model, then one folder up (Transformers.js keeps models in onnx/). */
export function preprocessingFiles(modelFile: string): string[] {
  const dirs = [path.dirname(modelFile), path.dirname(path.dirname(modelFile))];
  return dirs.flatMap((d) => [path.join(d, 'preprocessing.json'), path.join(d, 'preprocessor_config.json')]);
}

export async function readPreprocessing(modelFile: string): Promise<PreprocessingChoice> {
  const found = preprocessingFiles(modelFile).find((f) => existsSync(f));
  if (!found) return IMAGENET_DEFAULT;
  if (path.basename(found) === 'preprocessing.json') {
    const { input } = await readJsonFile(found, ownExport, 'a bottleneck preprocessing.json');
    return { ...input, from: found };
  }
  return fromHuggingFace(await readJsonFile(found, hfConfig, 'a Hugging Face preprocessor_config.json'), found);
}

function fromHuggingFace(c: z.infer<typeof hfConfig>, from: string): PreprocessingChoice {
  // transformers: pixel = (v · rescale − mean) / std; bottleneck: (v − mean') / std' with v in 0..255.
  const scale = c.do_rescale === false ? 1 : (c.rescale_factor ?? 1 / 255);
  const norm = c.do_normalize !== false;
  const spread = (v: number | readonly number[] | undefined, fallback: number): [number, number, number] =>
    v === undefined ? [fallback, fallback, fallback] : typeof v === 'number' ? [v, v, v] : [v[0], v[1], v[2]];
  const mean = norm ? spread(c.image_mean, 0.5) : [0, 0, 0];
  const std = norm ? spread(c.image_std, 0.5) : [1, 1, 1];
  const fit = fitOf(c);
  return {
    ...fit,
    channels: 'rgb',
    mean: [mean[0] / scale, mean[1] / scale, mean[2] / scale],
    std: [std[0] / scale, std[1] / scale, std[2] / scale],
    ...(c.resample !== undefined && RESAMPLE[c.resample] ? { interpolation: RESAMPLE[c.resample] } : {}),
    from,
  };
}

type Side = z.infer<typeof side>;
const pairOf = (s: Side): Pair | null => (typeof s === 'number' ? [s, s] : 'height' in s ? [s.height, s.width] : null);

/** Resize then centre crop (CLIP, DINOv2), crop_pct (ConvNeXt), or a plain resize (ViT). */
function fitOf(c: z.infer<typeof hfConfig>): Pick<PreprocessingChoice, 'size' | 'resize' | 'cropFraction'> {
  if (c.do_resize === false) return {};
  const size = c.size;
  if (c.do_center_crop && c.crop_size) {
    const crop = pairOf(c.crop_size) ?? [224, 224];
    const shortest = size === undefined ? crop[0] : typeof size === 'number' ? size : 'shortest_edge' in size ? size.shortest_edge : Math.min(size.height, size.width);
    return { size: crop, resize: 'crop', ...(crop[0] < shortest ? { cropFraction: crop[0] / shortest } : {}) };
  }
  if (size && typeof size === 'object' && 'shortest_edge' in size) {
    const e = size.shortest_edge;
    // transformers' ConvNeXt: below 384, resize to shortest_edge / crop_pct and crop shortest_edge.
    const pct = c.crop_pct && e < 384 ? c.crop_pct : 1;
    return { size: [e, e], resize: 'crop', ...(pct < 1 ? { cropFraction: pct } : {}) };
  }
  const pair = size ? pairOf(size) : null;
  return pair ? { size: pair, resize: 'squash' } : {};
}
