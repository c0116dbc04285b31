/**
 * Turns a Keras model topology (the `modelTopology` of a TF.js layers model.json, or Keras'
 * own `model.to_json()`, Keras 2 or 3; Sequential or Functional) into a LayerGraph, so any such
 * model can serve as a backbone.
 *
 * Nested models (a Sequential or Functional used as a layer, as Teachable Machine's export is a
 * Sequential of a Sequential that wraps a Functional MobileNet) are flattened: their layers keep
 * their own names, and the nested model's name becomes an alias of its output node. Only the
 * outermost input needs a fixed size; an inner model's input is whatever feeds it.
 *
 * Anything the graph cannot express is refused with a WeightsError naming the layer and its
 * class, never approximated.
 */
import { ACTIVATIONS, type Activation, type LayerGraph, type LayerNode, type Pads, type Pair, type Padding } from './layer-graph.ts';
import { WeightsError } from './weights.ts';

interface KerasLayer {
  readonly class_name: string;
  readonly config: Readonly<Record<string, unknown>>;
  readonly name?: string;
  /** Keras 2 / TF.js: [[[layer, node, tensor, kwargs], ...]]; Keras 3: [{args: [...], kwargs}]. */
  readonly inbound_nodes?: readonly unknown[];
}

interface KerasModel {
  readonly class_name: string;
  readonly config: Readonly<Record<string, unknown>> | readonly KerasLayer[];
}

const MODEL_CLASSES = new Set(['Sequential', 'Model', 'Functional']);

export function graphFromKerasTopology(topology: unknown, fallbackName = 'model'): { graph: LayerGraph; inputSize: Pair } {
  const root = topology as { model_config?: KerasModel; class_name?: string; config?: KerasModel['config'] } | null;
  const model = root?.model_config ?? (root?.class_name ? { class_name: root.class_name, config: root.config ?? [] } : undefined);
  if (!model || !MODEL_CLASSES.has(model.class_name)) throw new WeightsError('not a Keras model topology: no Sequential or Functional model_config');
  const builder = new Builder();
  const name = modelName(model, fallbackName);
  const output = builder.model(model, null, name);
  if (!builder.inputSize) throw new WeightsError(`${name}: no input layer with a fixed shape`);
  const aliases = Object.fromEntries(Object.entries(builder.aliases).filter(([alias]) => !builder.nodes.some((n) => n.name === alias)));
  // The outer model's name names its output too, like any nested model's.
  if (output !== name && !builder.nodes.some((n) => n.name === name)) aliases[name] = output;
  return { graph: { name, nodes: builder.nodes, aliases }, inputSize: builder.inputSize };
}

/** The names of the outermost model's layers, in order (a nested model is one layer). */
export function topLevelLayers(topology: unknown): { name: string; className: string }[] {
  const root = topology as { model_config?: KerasModel; class_name?: string; config?: KerasModel['config'] } | null;
  const model = root?.model_config ?? (root?.class_name ? { class_name: root.class_name, config: root.config ?? [] } : undefined);
  if (!model) return [];
  return layersOf(model).map((l) => ({ name: layerName(l), className: l.class_name }));
}

function modelName(model: KerasModel, fallback: string): string {
  const config = model.config;
  return !Array.isArray(config) && typeof (config as Record<string, unknown>).name === 'string' ? String((config as Record<string, unknown>).name) : fallback;
}

function layersOf(model: KerasModel): readonly KerasLayer[] {
  const config = model.config;
  if (Array.isArray(config)) return config as readonly KerasLayer[];
  const layers = (config as Record<string, unknown>).layers;
  if (!Array.isArray(layers)) throw new WeightsError(`${modelName(model, 'model')}: its config has no layer list`);
  return layers as readonly KerasLayer[];
}

function layerName(layer: KerasLayer): string {
  return String(layer.config?.name ?? layer.name);
}

class Builder {
  readonly nodes: LayerNode[] = [];
  readonly aliases: Record<string, string> = {};
  inputSize: Pair | undefined;
  /** Output channels (or vector length) of every node, where known: DepthwiseConv2D needs its input's. */
  private readonly channels = new Map<string, number | undefined>();

  /** Adds a model's layers; `inputs` feed its input layers (null: it is the outermost model). Returns its output node. */
  model(model: KerasModel, inputs: readonly string[] | null, name: string): string {
    const layers = layersOf(model);
    return model.class_name === 'Sequential' ? this.sequential(layers, inputs, name) : this.functional(model, layers, inputs, name);
  }

  private sequential(layers: readonly KerasLayer[], inputs: readonly string[] | null, model: string): string {
    let prev = inputs?.[0];
    for (const [i, layer] of layers.entries()) {
      const c = layer.config;
      if (layer.class_name === 'InputLayer') {
        if (prev === undefined) prev = this.input(layerName(layer), c.batch_input_shape ?? c.batch_shape, model);
        else this.aliases[layerName(layer)] = prev;
        continue;
      }
      if (prev === undefined && !MODEL_CLASSES.has(layer.class_name)) {
        // Keras 2 Sequentials state the input shape on their first layer.
        prev = this.input('input', c.batch_input_shape ?? c.batch_shape, model, i === 0 ? layerName(layer) : undefined);
      }
      prev = this.layer(layer, prev === undefined ? null : [prev], model);
    }
    if (prev === undefined) throw new WeightsError(`${model}: an empty Sequential model`);
    return prev;
  }

  private functional(model: KerasModel, layers: readonly KerasLayer[], inputs: readonly string[] | null, name: string): string {
    const config = model.config as Record<string, unknown>;
    const inputLayers = refNames(config.input_layers);
    const tensorOf = new Map<string, string>();
    for (const layer of layers) {
      const lname = layerName(layer);
      if (layer.class_name === 'InputLayer') {
        const position = Math.max(0, inputLayers.indexOf(lname));
        if (inputs === null) {
          if (this.inputSize) throw new WeightsError(`${name}: models with more than one input are not supported (input '${lname}')`);
          tensorOf.set(lname, this.input(lname, layer.config.batch_input_shape ?? layer.config.batch_shape, name));
        } else {
          const fed = inputs[position];
          if (fed === undefined) throw new WeightsError(`${name}: input '${lname}' is not fed by the model around it`);
          tensorOf.set(lname, fed);
          this.aliases[lname] = fed;
        }
        continue;
      }
      const inbound = inboundNames(layer, name).map((i) => {
        const t = tensorOf.get(i);
        if (t === undefined) throw new WeightsError(`${name}: layer '${lname}' reads '${i}', which is not defined before it`);
        return t;
      });
      tensorOf.set(lname, this.layer(layer, inbound, name));
    }
    const outputs = refNames(config.output_layers);
    if (outputs.length !== 1) throw new WeightsError(`${name}: models with ${outputs.length} outputs are not supported`);
    const out = tensorOf.get(outputs[0]);
    if (out === undefined) throw new WeightsError(`${name}: its output layer '${outputs[0]}' is not among its layers`);
    return out;
  }

  /** One layer: a nested model, or the nodes of a plain layer. Returns the node holding its output. */
  private layer(layer: KerasLayer, inputs: readonly string[] | null, model: string): string {
    const lname = layerName(layer);
    if (MODEL_CLASSES.has(layer.class_name)) {
      const out = this.model(layer as KerasModel, inputs, lname);
      this.aliases[lname] = out;
      return out;
    }
    if (inputs === null) throw new WeightsError(`${model}: layer '${lname}' (${layer.class_name}) comes before any input layer`);
    for (const node of convertLayer(layer, lname, inputs, model, (n) => this.channels.get(n))) this.push(node, model);
    return this.nodes[this.nodes.length - 1].name;
  }

  private input(name: string, shape: unknown, model: string, firstLayer?: string): string {
    const s = shape as (number | null)[];
    if (!Array.isArray(s) || s.length !== 4 || s[1] == null || s[2] == null || s[3] == null) {
      const where = firstLayer ? `its first layer '${firstLayer}' states no input shape` : `input '${name}' needs a fixed [null, H, W, C] shape, got ${JSON.stringify(shape ?? null)}`;
      throw new WeightsError(`${model}: ${where}`);
    }
    this.inputSize = [s[1], s[2]];
    this.push({ name, op: 'input', inputs: [], channels: s[3] }, model);
    return name;
  }

  private push(node: LayerNode, model: string): void {
    if (this.channels.has(node.name)) throw new WeightsError(`${model}: two layers are named '${node.name}'`);
    this.nodes.push(node);
    this.channels.set(node.name, outChannels(node, (n) => this.channels.get(n)));
  }
}

function outChannels(node: LayerNode, channelsOf: (name: string) => number | undefined): number | undefined {
  const first = node.inputs.length > 0 ? channelsOf(node.inputs[0]) : undefined;
  switch (node.op) {
    case 'input':
      return node.channels;
    case 'conv2d':
    case 'separable_conv2d':
      return node.filters;
    case 'dense':
      return node.units;
    case 'concat': {
      const all = node.inputs.map(channelsOf);
      return all.every((c) => c !== undefined) ? all.reduce((a, b) => a! + b!, 0) : undefined;
    }
    case 'flatten':
      return undefined;
    case 'reshape':
      return node.shape[node.shape.length - 1] === -1 ? undefined : node.shape[node.shape.length - 1];
    default:
      return first;
  }
}

/** [["name", 0, 0], ...] (Keras 2) or [["name", 0, 0]] lists of layer references. */
function refNames(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  if (v.length === 3 && typeof v[0] === 'string' && typeof v[1] === 'number') return [v[0]];
  return v.filter(Array.isArray).map((r) => String((r as unknown[])[0]));
}

function inboundNames(layer: KerasLayer, model: string): string[] {
  const nodes = layer.inbound_nodes ?? [];
  const lname = layerName(layer);
  if (nodes.length === 0) throw new WeightsError(`${model}: layer '${lname}' (${layer.class_name}) has no inbound nodes`);
  if (nodes.length > 1) throw new WeightsError(`${model}: layer '${lname}' (${layer.class_name}) is used ${nodes.length} times; shared layers are not supported`);
  const node = nodes[0];
  const names: string[] = [];
  if (Array.isArray(node)) {
    for (const entry of node) if (Array.isArray(entry)) names.push(String(entry[0]));
  } else {
    // Keras 3: tensors are {class_name: '__keras_tensor__', config: {keras_history: [layer, node, tensor]}}, in args.
    const visit = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(visit);
      else if (v && typeof v === 'object') {
        const history = (v as { config?: { keras_history?: unknown[] } }).config?.keras_history;
        if ((v as { class_name?: unknown }).class_name === '__keras_tensor__' && Array.isArray(history)) names.push(String(history[0]));
      }
    };
    visit((node as { args?: unknown }).args);
  }
  if (names.length === 0) throw new WeightsError(`${model}: layer '${lname}' (${layer.class_name}) has no inputs`);
  return names;
}

type Fail = (why: string) => never;

/** One Keras layer becomes one node. */
function convertLayer(layer: KerasLayer, name: string, inputs: readonly string[], model: string, channelsOf: (name: string) => number | undefined): LayerNode[] {
  const c = layer.config;
  const fail: Fail = (why) => {
    throw new WeightsError(`${model}: layer '${name}' (${layer.class_name}): ${why}`);
  };
  if (c.data_format !== undefined && c.data_format !== null && c.data_format !== 'channels_last') fail('only channels_last models are supported');
  const base = { name, inputs: [...inputs] };
  const single = () => (inputs.length === 1 ? { name, inputs: [inputs[0]] } : fail(`takes one input, got ${inputs.length}`));
  switch (layer.class_name) {
    case 'Conv2D':
      return [{ ...single(), op: 'conv2d', ...window(c, fail), filters: Number(c.filters), ...(Number(c.groups ?? 1) !== 1 && { groups: Number(c.groups) }), activation: activation(c.activation, fail), ...noBias(c) }];
    case 'DepthwiseConv2D': {
      const channels = channelsOf(single().inputs[0]) ?? fail('the channels of its input are not known');
      const multiplier = Number(c.depth_multiplier ?? 1);
      return [{ ...single(), op: 'conv2d', ...window(c, fail), filters: channels * multiplier, groups: channels, depthwise: true, activation: activation(c.activation, fail), ...noBias(c) }];
    }
    case 'SeparableConv2D':
      return [{ ...single(), op: 'separable_conv2d', ...window(c, fail), filters: Number(c.filters), multiplier: Number(c.depth_multiplier ?? 1), activation: activation(c.activation, fail), ...noBias(c) }];
    case 'Dense':
      return [{ ...single(), op: 'dense', units: Number(c.units), activation: activation(c.activation, fail), ...noBias(c) }];
    case 'BatchNormalization': {
      const axis = Array.isArray(c.axis) ? c.axis : [c.axis ?? -1];
      if (axis.length !== 1 || (axis[0] !== -1 && axis[0] !== 3)) fail(`only the channel axis (-1) is supported, got ${JSON.stringify(c.axis)}`);
      return [{ ...single(), op: 'batchnorm', epsilon: Number(c.epsilon ?? 1e-3), ...(c.scale === false && { scale: false }), ...(c.center === false && { center: false }) }];
    }
    case 'Activation': {
      const act = activation(c.activation, fail);
      if (act === 'relu') return [{ ...single(), op: 'relu' }];
      if (act === 'softmax') return [{ ...single(), op: 'softmax' }];
      if (act === 'linear') return [{ ...single(), op: 'dropout', rate: 0 }];
      return [{ ...single(), op: 'activation', fn: act }];
    }
    case 'ReLU': {
      const maxValue = c.max_value ?? c.maxValue;
      const threshold = Number(c.threshold ?? 0);
      const negativeSlope = Number(c.negative_slope ?? c.negativeSlope ?? 0);
      return [{ ...single(), op: 'relu', ...(maxValue != null && { maxValue: Number(maxValue) }), ...(threshold !== 0 && { threshold }), ...(negativeSlope !== 0 && { negativeSlope }) }];
    }
    case 'LeakyReLU':
      return [{ ...single(), op: 'relu', negativeSlope: Number(c.negative_slope ?? c.alpha ?? 0.3) }];
    case 'ELU':
      return [{ ...single(), op: 'activation', fn: 'elu', alpha: Number(c.alpha ?? 1) }];
    case 'Softmax':
      if (c.axis !== undefined && c.axis !== -1 && !(Array.isArray(c.axis) && c.axis.length === 1 && c.axis[0] === -1)) fail('only softmax over the last axis is supported');
      return [{ ...single(), op: 'softmax' }];
    case 'MaxPooling2D':
    case 'AveragePooling2D': {
      const kernel = pair(c.pool_size ?? 2);
      return [{ ...single(), op: layer.class_name === 'MaxPooling2D' ? 'maxpool' : 'avgpool', kernel, stride: pair(c.strides ?? kernel), pad: padding(c.padding, fail), ceil: false }];
    }
    case 'GlobalAveragePooling2D':
    case 'GlobalMaxPooling2D':
      return [{ ...single(), op: 'globalpool', mode: layer.class_name === 'GlobalMaxPooling2D' ? 'max' : 'avg', ...(c.keepdims === true && { keepdims: true }) }];
    case 'Flatten':
      return [{ ...single(), op: 'flatten', order: 'hwc' }];
    case 'Dropout':
    case 'SpatialDropout2D':
    case 'GaussianDropout':
    case 'GaussianNoise':
      // Identity at inference.
      return [{ ...single(), op: 'dropout', rate: Number(c.rate ?? 0) }];
    case 'ZeroPadding2D':
      return [{ ...single(), op: 'zeropad', pad: sides(c.padding) }];
    case 'Cropping2D':
      return [{ ...single(), op: 'crop', crop: sides(c.cropping) }];
    case 'Concatenate': {
      const axis = Number(c.axis ?? -1);
      if (axis !== -1 && axis !== 3) fail('only channel concatenation is supported');
      return [{ ...base, op: 'concat' }];
    }
    case 'Add':
    case 'Multiply':
    case 'Subtract':
    case 'Average':
    case 'Maximum':
    case 'Minimum':
      if (inputs.length < 2) fail(`merges two inputs or more, got ${inputs.length}`);
      return [{ ...base, op: 'merge', mode: layer.class_name.toLowerCase() as 'add' }];
    case 'Rescaling':
      return [{ ...single(), op: 'rescale', scale: numbers(c.scale ?? 1, fail), offset: numbers(c.offset ?? 0, fail) }];
    case 'Normalization': {
      const axis = Array.isArray(c.axis) ? c.axis : [c.axis ?? -1];
      if (axis.length !== 1 || (axis[0] !== -1 && axis[0] !== 3)) fail(`only per-channel normalization (axis -1) is supported, got ${JSON.stringify(c.axis)}`);
      if (c.invert === true) fail('invert=True is not supported');
      if (c.mean != null || c.variance != null) fail('a mean and variance given in the config (rather than as weights) are not supported');
      return [{ ...single(), op: 'normalize' }];
    }
    case 'Reshape': {
      const target = c.target_shape ?? c.targetShape;
      if (!Array.isArray(target) || !target.every((d) => Number.isInteger(d))) fail(`target shape ${JSON.stringify(target)}`);
      return [{ ...single(), op: 'reshape', shape: (target as number[]).map(Number) }];
    }
    default:
      return fail('layer type is not supported');
  }
}

/** Only a missing bias is marked, so graphs written by hand and read from Keras compare equal. */
function noBias(c: Readonly<Record<string, unknown>>): { useBias?: false } {
  return c.use_bias === false ? { useBias: false } : {};
}

function window(c: Readonly<Record<string, unknown>>, fail: Fail) {
  return { kernel: pair(c.kernel_size), stride: pair(c.strides ?? 1), pad: padding(c.padding, fail), dilation: pair(c.dilation_rate ?? 1) };
}

const ACTIVATION_ALIASES: Record<string, Activation> = { silu: 'swish', hardsigmoid: 'hard_sigmoid', hardSigmoid: 'hard_sigmoid', hard_silu: 'hard_swish', hardswish: 'hard_swish' };

function activation(v: unknown, fail: Fail): Activation {
  // Keras 3 may serialise a built-in activation as {class_name: 'function', config: 'relu'}.
  const name = v && typeof v === 'object' ? (v as { config?: unknown }).config : v;
  if (name === undefined || name === null) return 'linear';
  const known = ACTIVATION_ALIASES[String(name)] ?? (ACTIVATIONS as readonly string[]).find((a) => a === name);
  return (known as Activation | undefined) ?? fail(`activation '${String(name)}' is not supported`);
}

function padding(v: unknown, fail: Fail): Padding {
  if (v === undefined || v === 'valid') return 'valid';
  if (v === 'same') return 'same';
  return fail(`padding '${String(v)}' is not supported`);
}

/** Keras' n, (a, b) or ((top, bottom), (left, right)) → [top, left, bottom, right]. */
function sides(p: unknown): Pads {
  if (!Array.isArray(p)) return [Number(p), Number(p), Number(p), Number(p)];
  const [[t, b], [l, r]] = (p as unknown[]).map((v) => (Array.isArray(v) ? [Number(v[0]), Number(v[1])] : [Number(v), Number(v)]));
  return [t, l, b, r];
}

function numbers(v: unknown, fail: Fail): number | number[] {
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'number')) return v as number[];
  return fail(`expected a number or a list of numbers, got ${JSON.stringify(v)}`);
}

function pair(v: unknown): Pair {
  const a = Array.isArray(v) ? v.map(Number) : [Number(v), Number(v)];
  return [a[0], a[1] ?? a[0]];
}
