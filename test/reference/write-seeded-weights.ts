/**
 * Writes every keras.applications backbone's seeded weights (seededWeights, seed KERAS_SEED) as
 * the Keras h5 file bottleneck's own writer makes, for keras_backbones.py to load into the
 * genuine Keras models:  node --import tsx test/reference/write-seeded-weights.ts OUT_DIR [names…]
 * EfficientNet is written from the graph Keras builds with weights=None (no second Rescaling).
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { toKerasLayers, writeKerasH5 } from '../../src/backbones/weights/keras-h5-writer.ts';
import { KERAS_APPLICATIONS, type KerasApplicationName } from '../../src/backbones/zoo/keras-applications.ts';
import { referenceGraph, KERAS_SEED } from './keras-reference.ts';
import { seededWeights } from '../../src/backbones/zoo/random-weights.ts';

const [out, ...names] = process.argv.slice(2);
if (!out) throw new Error('usage: write-seeded-weights.ts OUT_DIR [names…]');
await mkdir(out, { recursive: true });
for (const name of (names.length ? names : Object.keys(KERAS_APPLICATIONS)) as KerasApplicationName[]) {
  const graph = referenceGraph(name);
  const weights = seededWeights(graph, KERAS_APPLICATIONS[name].size, KERAS_SEED);
  const file = path.join(out, `${name}.h5`);
  await writeKerasH5(file, toKerasLayers(graph, weights));
  console.log(file);
}
