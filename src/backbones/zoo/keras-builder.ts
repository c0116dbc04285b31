/**
 * Writes a LayerGraph the way keras.applications' Python builds its models, call for call, so
 * each backbone reads like the Keras source it ports and keeps its exact layer names. Layers
 * Keras leaves unnamed get the names Keras gives them in a fresh session (`conv2d`,
 * `conv2d_1`, …: snake_case class name, then _1, _2, … per class), which the structure tests
 * check against Keras' own model.to_json().
 */
import type { Activation, LayerGraph, LayerNode, Pads, Pair, Padding } from '../layer-graph.ts';

export interface ConvOptions {
  readonly stride?: number | Pair;
  readonly padding?: 'same' | 'valid';
  readonly useBias?: boolean;
  readonly activation?: Activation;
  readonly dilation?: number | Pair;
}

const pair = (v: number | Pair): Pair => (typeof v === 'number' ? [v, v] : v);

export class KerasGraphBuilder {
  readonly nodes: LayerNode[] = [];
  private readonly uids = new Map<string, number>();
  /** Output channels of every node (vectors: their length), as Keras' shape inference knows them. */
  private readonly channels = new Map<string, number>();

  constructor(
    readonly name: string,
    channels = 3,
    readonly inputName = 'input_layer',
  ) {
    this.nodes.push({ name: inputName, op: 'input', inputs: [], channels });
    this.channels.set(inputName, channels);
  }

  /** Keras' auto name for an unnamed layer of `base` (snake_case class name). */
  auto(base: string): string {
    const n = this.uids.get(base) ?? 0;
    this.uids.set(base, n + 1);
    return n === 0 ? base : `${base}_${n}`;
  }

  channelsOf(x: string): number {
    const c = this.channels.get(x);
    if (c === undefined) throw new Error(`${this.name}: no node '${x}'`);
    return c;
  }

  private push(node: LayerNode, channels: number): string {
    this.nodes.push(node);
    this.channels.set(node.name, channels);
    return node.name;
  }

  conv(x: string, filters: number, kernel: number | Pair, name: string | undefined, o: ConvOptions = {}): string {
    return this.push(
      {
        name: name ?? this.auto('conv2d'),
        op: 'conv2d',
        inputs: [x],
        filters,
        kernel: pair(kernel),
        stride: pair(o.stride ?? 1),
        pad: o.padding ?? 'valid',
        dilation: pair(o.dilation ?? 1),
        activation: o.activation ?? 'linear',
        ...(o.useBias === false && { useBias: false }),
      },
      filters,
    );
  }

  depthwise(x: string, kernel: number | Pair, name: string | undefined, o: ConvOptions & { multiplier?: number } = {}): string {
    const c = this.channelsOf(x);
    const filters = c * (o.multiplier ?? 1);
    return this.push(
      {
        name: name ?? this.auto('depthwise_conv2d'),
        op: 'conv2d',
        inputs: [x],
        filters,
        kernel: pair(kernel),
        stride: pair(o.stride ?? 1),
        pad: o.padding ?? 'valid',
        dilation: pair(o.dilation ?? 1),
        activation: o.activation ?? 'linear',
        groups: c,
        depthwise: true,
        ...(o.useBias === false && { useBias: false }),
      },
      filters,
    );
  }

  separable(x: string, filters: number, kernel: number | Pair, name: string | undefined, o: ConvOptions = {}): string {
    return this.push(
      {
        name: name ?? this.auto('separable_conv2d'),
        op: 'separable_conv2d',
        inputs: [x],
        filters,
        multiplier: 1,
        kernel: pair(kernel),
        stride: pair(o.stride ?? 1),
        pad: o.padding ?? 'valid',
        dilation: pair(o.dilation ?? 1),
        activation: o.activation ?? 'linear',
        ...(o.useBias === false && { useBias: false }),
      },
      filters,
    );
  }

  batchNorm(x: string, name: string | undefined, epsilon = 1e-3, o: { scale?: boolean; center?: boolean } = {}): string {
    return this.push(
      { name: name ?? this.auto('batch_normalization'), op: 'batchnorm', inputs: [x], epsilon, ...(o.scale === false && { scale: false }), ...(o.center === false && { center: false }) },
      this.channelsOf(x),
    );
  }

  /** Keras' Activation layer: relu and softmax have ops of their own, linear is the identity. */
  activation(x: string, fn: Activation, name?: string): string {
    const n = name ?? this.auto('activation');
    const node: LayerNode = fn === 'relu' ? { name: n, op: 'relu', inputs: [x] } : fn === 'softmax' ? { name: n, op: 'softmax', inputs: [x] } : { name: n, op: 'activation', inputs: [x], fn };
    return this.push(node, this.channelsOf(x));
  }

  /** Keras' ReLU layer (ReLU(6.0) is ReLU6). */
  relu(x: string, name: string | undefined, maxValue?: number): string {
    return this.push({ name: name ?? this.auto('re_lu'), op: 'relu', inputs: [x], ...(maxValue !== undefined && { maxValue }) }, this.channelsOf(x));
  }

  zeroPad(x: string, pad: Pads, name?: string): string {
    return this.push({ name: name ?? this.auto('zero_padding2d'), op: 'zeropad', inputs: [x], pad }, this.channelsOf(x));
  }

  pool(x: string, mode: 'max' | 'avg', kernel: number, stride: number, name?: string, padding: Padding = 'valid'): string {
    const n = name ?? this.auto(mode === 'max' ? 'max_pooling2d' : 'average_pooling2d');
    return this.push({ name: n, op: mode === 'max' ? 'maxpool' : 'avgpool', inputs: [x], kernel: [kernel, kernel], stride: [stride, stride], pad: padding, ceil: false }, this.channelsOf(x));
  }

  globalPool(x: string, mode: 'avg' | 'max', name?: string, keepdims = false): string {
    const n = name ?? this.auto(mode === 'avg' ? 'global_average_pooling2d' : 'global_max_pooling2d');
    return this.push({ name: n, op: 'globalpool', inputs: [x], mode, ...(keepdims && { keepdims: true }) }, this.channelsOf(x));
  }

  concat(xs: readonly string[], name?: string): string {
    return this.push({ name: name ?? this.auto('concatenate'), op: 'concat', inputs: [...xs] }, xs.reduce((n, x) => n + this.channelsOf(x), 0));
  }

  merge(xs: readonly string[], mode: 'add' | 'multiply', name?: string): string {
    return this.push({ name: name ?? this.auto(mode), op: 'merge', inputs: [...xs], mode }, this.channelsOf(xs[0]));
  }

  dense(x: string, units: number, name: string, activation: Activation = 'linear'): string {
    return this.push({ name, op: 'dense', inputs: [x], units, activation }, units);
  }

  dropout(x: string, rate: number, name?: string): string {
    return this.push({ name: name ?? this.auto('dropout'), op: 'dropout', inputs: [x], rate }, this.channelsOf(x));
  }

  reshape(x: string, shape: readonly number[], name?: string): string {
    return this.push({ name: name ?? this.auto('reshape'), op: 'reshape', inputs: [x], shape }, shape[shape.length - 1]);
  }

  rescale(x: string, scale: number | readonly number[], offset: number | readonly number[] = 0, name?: string): string {
    return this.push({ name: name ?? this.auto('rescaling'), op: 'rescale', inputs: [x], scale, offset }, this.channelsOf(x));
  }

  normalize(x: string, name?: string): string {
    return this.push({ name: name ?? this.auto('normalization'), op: 'normalize', inputs: [x] }, this.channelsOf(x));
  }

  flatten(x: string, name = 'flatten'): string {
    return this.push({ name, op: 'flatten', inputs: [x], order: 'hwc' }, 0);
  }

  graph(): LayerGraph {
    return { name: this.name, nodes: this.nodes };
  }
}

/** Keras' imagenet_utils.correct_pad for an even-sized input (224, 112, …): ((k//2 − 1, k//2), …). */
export function correctPad(kernel: number): Pads {
  const c = Math.floor(kernel / 2);
  return [c - 1, c - 1, c, c];
}
