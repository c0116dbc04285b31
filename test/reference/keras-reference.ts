/** What the Keras reference fixtures (test/reference/keras/) were made from, shared by the writer and the tests. */
import type { LayerGraph } from '../../src/backbones/layer-graph.ts';
import { efficientnetB0Graph } from '../../src/backbones/zoo/efficientnet.ts';
import { KERAS_APPLICATIONS, type KerasApplicationName } from '../../src/backbones/zoo/keras-applications.ts';

/** The seed of the weights keras_backbones.py loaded. */
export const KERAS_SEED = 13;

/** The graph of the model Keras builds with weights=None (EfficientNet's lacks the ImageNet-only Rescaling). */
export function referenceGraph(name: KerasApplicationName): LayerGraph {
  return name === 'efficientnet_b0' ? efficientnetB0Graph(false) : KERAS_APPLICATIONS[name].graph();
}
