/**
 * Turns a Keras model topology (the `modelTopology` of a TF.js layers model.json, Sequential
 * or Functional) into a LayerGraph, so any such model can serve as a backbone.
 */
import type { Activation, LayerGraph, LayerNode, Pair, Padding } from './layer-graph.ts';

interface KerasLayer {
  readonly class_name: string;
  readonly config: Readonly<Record<string, unknown>>;
  readonly name?: string;
  /** Functional models: [[[inboundLayer, nodeIndex, tensorIndex, kwargs], ...]]. */
  readonly inbound_nodes?: readonly (readonly (readonly unknown[])[])[];
}

export interface KerasTopology {
  readonly model_config?: { readonly class_name: string; readonly config: { readonly name?: string; readonly layers: readonly KerasLayer[] } | readonly KerasLayer[] };
  readonly class_name?: string;
  readonly config?: { readonly name?: string; readonly layers: readonly KerasLayer[] };
}

export function graphFromKerasTopology(topology: unknown, fallbackName = 'model'): { graph: LayerGraph; inputSize: Pair } {
  const root = topology as KerasTopology;
  const model = root.model_config ?? (root.class_name ? { class_name: root.class_name, config: root.config! } : undefined);
  if (!model) throw new Error('not a Keras model topology: no model_config');
  const config = Array.isArray(model.config) ? { layers: model.config as readonly KerasLayer[] } : (model.config as { name?: string; layers: readonly KerasLayer[] });
  const name = config.name ?? fallbackName;
  const sequential = model.class_name === 'Sequential';
  const nodes: LayerNode[] = [];
  let inputSize: Pair | undefined;
  let prev = '';

  const addInput = (layerName: string, shape: unknown) => {
    const s = shape as (number | null)[];
    if (!Array.isArray(s) || s.length !== 4 || s[1] == null || s[2] == null || s[3] == null) {
      throw new Error(`${name}: input '${layerName}' needs a fixed [null, H, W, C] shape, got ${JSON.stringify(shape)}`);
    }
    inputSize = [s[1], s[2]];
    nodes.push({ name: layerName, op: 'input', inputs: [], channels: s[3] });
    prev = layerName;
  };

  for (const layer of config.layers) {
    const c = layer.config;
    const layerName = String(c.name ?? layer.name);
    if (layer.class_name === 'InputLayer') {
      addInput(layerName, c.batch_input_shape ?? c.batch_shape);
      continue;
    }
    if (sequential && nodes.length === 0) addInput('input', c.batch_input_shape ?? c.batch_shape);
    const inputs = sequential ? [prev] : inboundNames(layer, name);
    for (const node of convertLayer(layer, layerName, inputs, name)) nodes.push(node);
    prev = nodes[nodes.length - 1].name;
  }
  if (!inputSize) throw new Error(`${name}: no input layer with a fixed shape`);
  return { graph: { name, nodes }, inputSize };
}

function inboundNames(layer: KerasLayer, model: string): string[] {
  const inbound = layer.inbound_nodes?.[0];
  if (!inbound) throw new Error(`${model}: layer '${String(layer.config.name)}' has no inbound nodes`);
  return inbound.map((entry) => String(entry[0]));
}

/** One Keras layer becomes one node, or two when an activation is a separate concern. */
function convertLayer(layer: KerasLayer, name: string, inputs: string[], model: string): LayerNode[] {
  const c = layer.config;
  const fail = (why: string): never => {
    throw new Error(`${model}: layer '${name}' (${layer.class_name}): ${why}`);
  };
  if (c.data_format !== undefined && c.data_format !== 'channels_last') fail('only channels_last models are supported');
  switch (layer.class_name) {
    case 'Conv2D': {
      if ((c.groups ?? 1) !== 1) fail('grouped convolution is not supported');
      return withActivation(
        {
          name,
          op: 'conv2d',
          inputs,
          filters: Number(c.filters),
          kernel: pair(c.kernel_size),
          stride: pair(c.strides ?? 1),
          pad: padding(c.padding, fail),
          dilation: pair(c.dilation_rate ?? 1),
          activation: 'linear',
        },
        activation(c.activation, fail),
      );
    }
    case 'Dense':
      return withActivation({ name, op: 'dense', inputs, units: Number(c.units), activation: 'linear' }, activation(c.activation, fail));
    case 'Activation':
    case 'ReLU': {
      const act = layer.class_name === 'ReLU' ? 'relu' : activation(c.activation, fail);
      if (act === 'relu') return [{ name, op: 'relu', inputs }];
      if (act === 'softmax') return [{ name, op: 'softmax', inputs }];
      return [{ name, op: 'dropout', inputs, rate: 0 }];
    }
    case 'Softmax':
      return [{ name, op: 'softmax', inputs }];
    case 'MaxPooling2D':
    case 'AveragePooling2D': {
      const kernel = pair(c.pool_size ?? 2);
      return [
        {
          name,
          op: layer.class_name === 'MaxPooling2D' ? 'maxpool' : 'avgpool',
          inputs,
          kernel,
          stride: pair(c.strides ?? kernel),
          pad: padding(c.padding, fail),
          ceil: false,
        },
      ];
    }
    case 'GlobalAveragePooling2D':
    case 'GlobalMaxPooling2D':
      if (c.keepdims) fail('keepdims is not supported');
      return [{ name, op: 'globalpool', inputs, mode: layer.class_name === 'GlobalMaxPooling2D' ? 'max' : 'avg' }];
    case 'Flatten':
      return [{ name, op: 'flatten', inputs, order: 'hwc' }];
    case 'Dropout':
      return [{ name, op: 'dropout', inputs, rate: Number(c.rate ?? 0) }];
    case 'ZeroPadding2D': {
      const p = c.padding;
      const [[t, b], [l, r]] = Array.isArray(p)
        ? (p as unknown[]).map((v) => (Array.isArray(v) ? [Number(v[0]), Number(v[1])] : [Number(v), Number(v)]))
        : [
            [Number(p), Number(p)],
            [Number(p), Number(p)],
          ];
      return [{ name, op: 'zeropad', inputs, pad: [t, l, b, r] }];
    }
    case 'Concatenate': {
      const axis = Number(c.axis ?? -1);
      if (axis !== -1 && axis !== 3) fail('only channel concatenation is supported');
      return [{ name, op: 'concat', inputs }];
    }
    default:
      return fail('layer type is not supported');
  }
}

/**
 * ReLU and softmax fuse into the layer (its output is post-activation, as in Keras); any
 * other activation would be silently wrong, so it is refused.
 */
function withActivation(node: Extract<LayerNode, { op: 'conv2d' | 'dense' }>, act: Activation): LayerNode[] {
  return [{ ...node, activation: act }];
}

function activation(v: unknown, fail: (why: string) => never): Activation {
  if (v === undefined || v === null || v === 'linear') return 'linear';
  if (v === 'relu' || v === 'softmax') return v;
  return fail(`activation '${String(v)}' is not supported`);
}

function padding(v: unknown, fail: (why: string) => never): Padding {
  if (v === undefined || v === 'valid') return 'valid';
  if (v === 'same') return 'same';
  return fail(`padding '${String(v)}' is not supported`);
}

function pair(v: unknown): Pair {
  const a = Array.isArray(v) ? v.map(Number) : [Number(v), Number(v)];
  return [a[0], a[1] ?? a[0]];
}
