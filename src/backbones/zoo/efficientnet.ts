/** keras.applications.efficientnet: EfficientNetB0 (Keras' efficientnet.py), which carries its preprocessing inside. */
import type { LayerGraph } from '../layer-graph.ts';
import { correctPad, KerasGraphBuilder } from './keras-builder.ts';

/** Keras' DEFAULT_BLOCKS_ARGS for B0: kernel, repeats, filters in, filters out, expansion, stride; SE ratio 0.25 throughout. */
const B0_BLOCKS: readonly (readonly [number, number, number, number, number, number])[] = [
  [3, 1, 32, 16, 1, 1], [3, 2, 16, 24, 6, 2], [5, 2, 24, 40, 6, 2], [3, 3, 40, 80, 6, 2], [5, 3, 80, 112, 6, 1], [5, 4, 112, 192, 6, 2], [3, 1, 192, 320, 6, 1],
];
const DROP_CONNECT_RATE = 0.2;

/** ImageNet's RGB standard deviations, which Keras divides by once more when it loads the ImageNet weights. */
export const IMAGENET_STDDEV_RGB = [0.229, 0.224, 0.225] as const;

/**
 * `imagenet`: the graph Keras builds for weights='imagenet', which has a second Rescaling by
 * 1/sqrt(stddev) after the Normalization (tensorflow#49930); with weights=None it has not.
 */
export function efficientnetB0Graph(imagenet = true): LayerGraph {
  const k = new KerasGraphBuilder('efficientnetb0');
  let x = k.rescale('input_layer', 1 / 255);
  x = k.normalize(x);
  if (imagenet) x = k.rescale(x, IMAGENET_STDDEV_RGB.map((s) => 1 / Math.sqrt(s)));
  x = k.zeroPad(x, correctPad(3), 'stem_conv_pad');
  x = k.conv(x, 32, 3, 'stem_conv', { stride: 2, useBias: false });
  x = k.batchNorm(x, 'stem_bn');
  x = k.activation(x, 'swish', 'stem_activation');
  const total = B0_BLOCKS.reduce((n, b) => n + b[1], 0);
  let b = 0;
  B0_BLOCKS.forEach(([kernel, repeats, filtersIn, filtersOut, expansion, stride], i) => {
    for (let j = 0; j < repeats; j++) {
      const name = `block${i + 1}${String.fromCharCode(97 + j)}_`;
      x = block(k, x, { kernel, filtersIn: j > 0 ? filtersOut : filtersIn, filtersOut, expansion, stride: j > 0 ? 1 : stride, dropRate: (DROP_CONNECT_RATE * b) / total, name });
      b++;
    }
  });
  x = k.conv(x, 1280, 1, 'top_conv', { padding: 'same', useBias: false });
  x = k.batchNorm(x, 'top_bn');
  x = k.activation(x, 'swish', 'top_activation');
  x = k.globalPool(x, 'avg', 'avg_pool');
  x = k.dropout(x, 0.2, 'top_dropout');
  k.dense(x, 1000, 'predictions', 'softmax');
  return k.graph();
}

interface BlockArgs {
  readonly kernel: number;
  readonly filtersIn: number;
  readonly filtersOut: number;
  readonly expansion: number;
  readonly stride: number;
  readonly dropRate: number;
  readonly name: string;
}

function block(k: KerasGraphBuilder, inputs: string, a: BlockArgs): string {
  const filters = a.filtersIn * a.expansion;
  let x = inputs;
  if (a.expansion !== 1) {
    x = k.conv(x, filters, 1, `${a.name}expand_conv`, { padding: 'same', useBias: false });
    x = k.batchNorm(x, `${a.name}expand_bn`);
    x = k.activation(x, 'swish', `${a.name}expand_activation`);
  }
  if (a.stride === 2) x = k.zeroPad(x, correctPad(a.kernel), `${a.name}dwconv_pad`);
  x = k.depthwise(x, a.kernel, `${a.name}dwconv`, { stride: a.stride, padding: a.stride === 2 ? 'valid' : 'same', useBias: false });
  x = k.batchNorm(x, `${a.name}bn`);
  x = k.activation(x, 'swish', `${a.name}activation`);
  // Squeeze and excitation.
  const filtersSe = Math.max(1, Math.floor(a.filtersIn * 0.25));
  let se = k.globalPool(x, 'avg', `${a.name}se_squeeze`);
  se = k.reshape(se, [1, 1, filters], `${a.name}se_reshape`);
  se = k.conv(se, filtersSe, 1, `${a.name}se_reduce`, { padding: 'same', activation: 'swish' });
  se = k.conv(se, filters, 1, `${a.name}se_expand`, { padding: 'same', activation: 'sigmoid' });
  x = k.merge([x, se], 'multiply', `${a.name}se_excite`);
  x = k.conv(x, a.filtersOut, 1, `${a.name}project_conv`, { padding: 'same', useBias: false });
  x = k.batchNorm(x, `${a.name}project_bn`);
  if (a.stride === 1 && a.filtersIn === a.filtersOut) {
    if (a.dropRate > 0) x = k.dropout(x, a.dropRate, `${a.name}drop`);
    x = k.merge([x, inputs], 'add', `${a.name}add`);
  }
  return x;
}
