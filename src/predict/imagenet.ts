/**
 * ImageNet top-k from a backbone's own classifier (Keras' decode_predictions): the quickest
 * check that a backbone, its weights and its preprocessing are right.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Backbone } from '../backbones/backbone.ts';
import { preprocessInto } from '../backbones/preprocess.ts';
import type { FeatureEngine } from '../engines/engine.ts';
import { decodeImage } from '../extract/decode-image.ts';

export interface ClassScore {
  readonly index: number;
  readonly label: string;
  readonly probability: number;
}

export interface ImageNetPrediction {
  readonly file: string;
  readonly top: readonly ClassScore[];
}

/** `imagenet-classes.json` (a JSON array of 1000 names) in the weights folder, if present. */
export async function loadImageNetClasses(weightsDir: string): Promise<readonly string[] | undefined> {
  const file = path.join(weightsDir, 'imagenet-classes.json');
  if (!existsSync(file)) return undefined;
  const names = JSON.parse(await readFile(file, 'utf8')) as unknown;
  if (!Array.isArray(names) || names.length !== 1000) throw new Error(`${file}: expected a JSON array of 1000 class names`);
  return names.map(String);
}

/** `engine` must have been created with the single cut `backbone.classifier`. */
export async function predictImageNet(
  backbone: Backbone,
  engine: FeatureEngine,
  files: readonly string[],
  opts: { topK: number; batch: number; classes?: readonly string[] },
): Promise<ImageNetPrediction[]> {
  const [h, w] = engine.inputSize;
  const prep = { ...backbone.preprocessing, size: engine.inputSize };
  const results: ImageNetPrediction[] = [];
  for (let start = 0; start < files.length; start += opts.batch) {
    const batch = files.slice(start, start + opts.batch);
    const input = new Float32Array(batch.length * h * w * 3);
    const pixels = await Promise.all(batch.map((f) => decodeImage(f, { size: engine.inputSize })));
    pixels.forEach((rgb, i) => preprocessInto(rgb, prep, input, i * h * w * 3));
    const [scores] = await engine.run(input, batch.length);
    const classes = engine.outputs[0].size;
    batch.forEach((file, i) => {
      const row = scores.subarray(i * classes, (i + 1) * classes);
      const top = [...row.keys()]
        .sort((a, b) => row[b] - row[a])
        .slice(0, opts.topK)
        .map((index) => ({ index, label: opts.classes?.[index] ?? `class ${index}`, probability: row[index] }));
      results.push({ file, top });
    });
  }
  return results;
}
