/**
 * Writes a LayerGraph and its weights as a Keras functional model in the form a TF.js layers
 * model carries it: model.json's `modelTopology`, a weights manifest and one binary buffer.
 * It is the inverse of keras-topology.ts, so `tf.loadLayersModel` (and, through the TF.js
 * converter, Keras itself) can run any graph whose every node has an exact Keras equivalent.
 *
 * Geometry comes from planGraph, which resolves every pad once. A node maps to Keras only where
 * the result is exactly what the ONNX and TF.js engines compute; anything else is refused with
 * a UsageError that names the node, never approximated:
 * - conv2d: 'valid' or 'same' when the plan's pads are exactly what Keras would pad, else a
 *   ZeroPadding2D before a 'valid' conv (a convolution pads with zeros, so this is exact).
 * - maxpool: pooling ignores padding, as do TF's 'same' pools, so pads equal to Keras 'same'
 *   map to 'same'. Other pads (Caffe's explicit pad, ceil-mode overhang) become a ZeroPadding2D
 *   before a 'valid' pool only when the input is provably non-negative (it comes through a
 *   ReLU or softmax) and every window holds at least one real cell: then max(window ∪ zeros)
 *   = max(window).
 * - avgpool: Caffe counts its explicit pad in the divisor and TF 'same' does not count its own,
 *   so counted pads become a ZeroPadding2D (zeros that are averaged in, as Caffe does) and the
 *   uncounted ones must be exactly Keras 'same' of the zero-padded map (or absent). Any other
 *   uncounted pad, such as a ceil-mode overhang that 'same' would not reproduce, is refused.
 * - lrn has no tfjs-layers counterpart: refused, pointing at `--format onnx`.
 */
import { UsageError } from '../util/errors.ts';
import { planGraph, resolveConvPads, type GraphPlan, type PlannedNode, type Shape } from './graph-plan.ts';
import { biasName, hasWeights, weightName, type Activation, type LayerNode, type Pads, type Pair, type LayerGraph } from './layer-graph.ts';
import { weightSlots } from './weight-slots.ts';
import { checkWeights, transpose, type WeightMap, type WeightTensor } from './weights.ts';

export interface TfjsWeightSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: 'float32';
}

/** One layer of a Keras functional config: inbound_nodes is [[[layer, nodeIndex, tensorIndex, kwargs], ...]]. */
export interface KerasLayerJson {
  readonly class_name: string;
  readonly config: Readonly<Record<string, unknown>>;
  readonly name: string;
  readonly inbound_nodes: readonly (readonly (readonly [string, number, number, Readonly<Record<string, never>>])[])[];
}

export interface KerasModelTopology {
  readonly keras_version: string;
  readonly backend: string;
  readonly model_config: {
    readonly class_name: 'Functional';
    readonly config: {
      readonly name: string;
      readonly layers: readonly KerasLayerJson[];
      readonly input_layers: readonly (readonly [string, number, number])[];
      readonly output_layers: readonly (readonly [string, number, number])[];
    };
  };
}

export interface TfjsLayersModel {
  readonly modelTopology: KerasModelTopology;
  /** In the order their tensors lie in weightData, as a weightsManifest group lists them. */
  readonly weightSpecs: readonly TfjsWeightSpec[];
  /** Every weight as little-endian float32, back to back. */
  readonly weightData: Uint8Array;
}

/**
 * The Keras format version the topology follows: that of the genuine keras-vgg16 model.json
 * the TF.js converter wrote (a 'Functional' config, Keras 2.4 and later). tfjs-layers does not
 * read it; a Keras that re-imports the model may.
 */
export const KERAS_FORMAT_VERSION = '2.12.0';

/** tfjs-layers' rule for layer and weight names (common.ts isValidTensorName), less '/', which separates layer and weight. */
const VALID_NAME = /^[A-Za-z0-9][-A-Za-z0-9._]*$/;

type Step = PlannedNode;
type ConvStep = Extract<PlannedNode, { readonly node: { readonly op: 'conv2d' | 'separable_conv2d' } }>;
type PoolStep = Extract<PlannedNode, { readonly node: { readonly op: 'maxpool' | 'avgpool' } }>;
type Spatial = readonly [number, number, number];

/**
 * The nodes that `output` needs, as a Keras functional model with input [null, H, W, C] float32
 * (channels_last), and its weights in Keras layout (conv HWIO, dense [in, out]) under
 * `<layer>/kernel` and `<layer>/bias`.
 */
export function toTfjsLayersModel(graph: LayerGraph, weights: WeightMap, inputSize: Pair, output: string): TfjsLayersModel {
  const plan = planGraph(graph, inputSize, [output]);
  checkWeights(plan, weights);
  return new Writer(plan, weights).write();
}

class Writer {
  private readonly layers: KerasLayerJson[] = [];
  private readonly specs: TfjsWeightSpec[] = [];
  private readonly tensors: Float32Array[] = [];
  /** Graph node → the Keras layer whose output is that node's value. */
  private readonly tensorOf = new Map<string, string>();
  private readonly nonNegative = new Map<string, boolean>();
  private readonly names: LayerNames;

  constructor(
    private readonly plan: GraphPlan,
    private readonly weights: WeightMap,
  ) {
    this.names = new LayerNames(plan.steps.map((s) => s.node.name));
  }

  write(): TfjsLayersModel {
    const { plan } = this;
    const [inputStep, ...rest] = plan.steps;
    const outputName = plan.outputs[0];
    if (rest.length === 0) throw new UsageError(`cannot export '${outputName}': it is the input itself, there is no layer to export`);
    const inputLayer = this.names.of(inputStep.node.name);
    this.layers.push({
      class_name: 'InputLayer',
      config: {
        batch_input_shape: [null, plan.inputSize[0], plan.inputSize[1], plan.inputChannels],
        dtype: 'float32',
        sparse: false,
        ragged: false,
        name: inputLayer,
      },
      name: inputLayer,
      inbound_nodes: [],
    });
    this.tensorOf.set(inputStep.node.name, inputLayer);
    this.nonNegative.set(inputStep.node.name, false);
    for (const step of rest) {
      this.convert(step);
      this.nonNegative.set(step.node.name, producesNonNegative(step.node, this.nonNegative));
    }
    const modelTopology: KerasModelTopology = {
      keras_version: KERAS_FORMAT_VERSION,
      backend: 'tensorflow',
      model_config: {
        class_name: 'Functional',
        config: {
          name: sanitize(plan.graph.name),
          layers: this.layers,
          input_layers: [[inputLayer, 0, 0]],
          output_layers: [[this.tensorOf.get(outputName)!, 0, 0]],
        },
      },
    };
    return { modelTopology, weightSpecs: this.specs, weightData: concatFloat32(this.tensors) };
  }

  private convert(step: Step): void {
    const node = step.node;
    const name = this.names.of(node.name);
    const inputs = node.inputs.map((i) => this.tensorOf.get(i)!);
    const fail = (why: string): never => {
      throw new UsageError(`cannot export layer '${node.name}' (${node.op}) as a TF.js layers model: ${why}`);
    };
    switch (node.op) {
      case 'input':
        return fail('a second input node');
      case 'conv2d':
        return this.conv(step as ConvStep, name, inputs[0], fail);
      case 'maxpool':
      case 'avgpool':
        return this.pool(step as PoolStep, name, inputs[0], fail);
      case 'separable_conv2d':
        return this.conv(step as ConvStep, name, inputs[0], fail);
      case 'relu': {
        const { maxValue, threshold = 0, negativeSlope = 0 } = node;
        if (threshold !== 0) return fail('tfjs-layers has no ReLU with a threshold; export it with --format onnx instead');
        if (negativeSlope !== 0 && maxValue !== undefined) return fail('tfjs-layers has no ReLU with both a negative slope and a maximum; export it with --format onnx instead');
        if (negativeSlope !== 0) return this.add(node.name, 'LeakyReLU', name, inputs, { alpha: negativeSlope });
        if (maxValue !== undefined) return this.add(node.name, 'ReLU', name, inputs, { max_value: maxValue });
        return this.add(node.name, 'Activation', name, inputs, { activation: 'relu' });
      }
      case 'activation':
        if (node.fn === 'elu' && (node.alpha ?? 1) !== 1) return fail(`tfjs-layers' ELU takes only alpha 1 (this one has ${node.alpha}); export it with --format onnx instead`);
        return this.add(node.name, 'Activation', name, inputs, { activation: kerasActivation(node.fn, fail) });
      case 'batchnorm': {
        this.add(node.name, 'BatchNormalization', name, inputs, {
          axis: -1,
          momentum: 0.99,
          epsilon: node.epsilon,
          center: node.center !== false,
          scale: node.scale !== false,
          beta_initializer: { class_name: 'Zeros', config: {} },
          gamma_initializer: { class_name: 'Ones', config: {} },
          moving_mean_initializer: { class_name: 'Zeros', config: {} },
          moving_variance_initializer: { class_name: 'Ones', config: {} },
        });
        return this.addVariables(name, step);
      }
      case 'normalize': {
        // tfjs-layers has no Normalization layer; (x − mean) / std is x · (1/std) + (−mean/std).
        const mean = this.weight(`${node.name}.mean`).data;
        const std = Array.from(this.weight(`${node.name}.variance`).data, (v) => Math.max(Math.sqrt(v), 1e-7));
        return this.add(node.name, 'Rescaling', name, inputs, { scale: std.map((d) => 1 / d), offset: Array.from(mean, (m, c) => -m / std[c]) });
      }
      case 'rescale':
        return this.add(node.name, 'Rescaling', name, inputs, { scale: node.scale, offset: node.offset });
      case 'merge': {
        if (node.mode !== 'subtract') {
          const cls = { add: 'Add', multiply: 'Multiply', average: 'Average', maximum: 'Maximum', minimum: 'Minimum' }[node.mode];
          return this.add(node.name, cls, name, inputs, {});
        }
        // tfjs-layers has no Subtract: a − b = a + (−1 · b).
        const negated = this.names.fresh(`${name}_negated`);
        this.add(undefined, 'Rescaling', negated, [inputs[1]], { scale: -1, offset: 0 });
        return this.add(node.name, 'Add', name, [inputs[0], negated], {});
      }
      case 'reshape':
        return this.add(node.name, 'Reshape', name, inputs, { target_shape: [...step.outShape] });
      case 'crop':
        return this.add(node.name, 'Cropping2D', name, inputs, { cropping: kerasPadding(node.crop), data_format: 'channels_last' });
      case 'softmax':
        // Keras' softmax is over the last axis, which is channels: what every engine computes.
        return this.add(node.name, 'Activation', name, inputs, { activation: 'softmax' });
      case 'dropout':
        // Identity at inference, as in the graph; kept so the layer keeps its name.
        return this.add(node.name, 'Dropout', name, inputs, { rate: node.rate, noise_shape: null, seed: null });
      case 'zeropad':
        return this.add(node.name, 'ZeroPadding2D', name, inputs, { padding: kerasPadding(node.pad), data_format: 'channels_last' });
      case 'concat':
        // tfjs-layers' Concatenate wants two inputs or more; one is the identity.
        if (inputs.length === 1) return this.add(node.name, 'Activation', name, inputs, { activation: 'linear' });
        return this.add(node.name, 'Concatenate', name, inputs, { axis: -1 });
      case 'flatten': {
        // tfjs-layers' Flatten needs rank 3 or more; a vector is already flat.
        if (step.inShape.length === 1) return this.add(node.name, 'Activation', name, inputs, { activation: 'linear' });
        let source = inputs[0];
        if (node.order === 'chw') {
          // Caffe flattens C, H, W: move channels first, then Keras' row-major Flatten reads C, H, W.
          const permute = this.names.fresh(`${name}_permute`);
          this.add(undefined, 'Permute', permute, [source], { dims: [3, 1, 2] });
          source = permute;
        }
        return this.add(node.name, 'Flatten', name, [source], { data_format: 'channels_last' });
      }
      case 'globalpool': {
        const cls = node.mode === 'avg' ? 'GlobalAveragePooling2D' : 'GlobalMaxPooling2D';
        if (!node.keepdims) return this.add(node.name, cls, name, inputs, { data_format: 'channels_last' });
        // tfjs-layers' global pools have no keepdims: pool, then reshape to 1×1×C.
        const pooled = this.names.fresh(`${name}_pooled`);
        this.add(undefined, cls, pooled, inputs, { data_format: 'channels_last' });
        return this.add(node.name, 'Reshape', name, [pooled], { target_shape: [...step.outShape] });
      }
      case 'dense':
        this.add(node.name, 'Dense', name, inputs, {
          units: node.units,
          activation: kerasActivation(node.activation, fail),
          use_bias: true,
          ...INITIALIZERS,
        });
        return this.addVariables(name, step);
      case 'lrn':
        return fail(
          'tfjs-layers has no local response normalisation layer (Caffe LRN); export it with --format onnx instead',
        );
    }
  }

  private conv(step: ConvStep, name: string, input: string, fail: (why: string) => never): void {
    const { node, pads } = step;
    const [h, w, c] = spatial(step.inShape);
    if ((node.stride[0] > 1 || node.stride[1] > 1) && (node.dilation[0] > 1 || node.dilation[1] > 1)) {
      fail('TF.js convolutions cannot combine strides > 1 with dilation > 1');
    }
    const groups = node.op === 'conv2d' ? (node.groups ?? 1) : 1;
    const depthwise = groups > 1 && groups === c;
    let padding: 'valid' | 'same' = 'valid';
    let source = input;
    if (isZero(pads)) padding = 'valid';
    else if (samePads(pads, resolveConvPads('same', [h, w], node.kernel, node.stride, node.dilation))) padding = 'same';
    else source = this.zeroPad(name, input, pads);
    const padded = padding === 'valid' ? padSize([h, w], pads) : ([h, w] as const);
    const effective: Pair = [node.dilation[0] * (node.kernel[0] - 1) + 1, node.dilation[1] * (node.kernel[1] - 1) + 1];
    this.expectShape(step, kerasWindowOut(padded, effective, node.stride, padding));
    const common = {
      kernel_size: [...node.kernel],
      strides: [...node.stride],
      padding,
      data_format: 'channels_last',
      dilation_rate: [...node.dilation],
      activation: kerasActivation(node.activation, fail),
      use_bias: true,
    };
    if (node.op === 'separable_conv2d') {
      this.add(node.name, 'SeparableConv2D', name, [source], { filters: node.filters, depth_multiplier: node.multiplier, ...common, ...SEPARABLE_INITIALIZERS });
    } else if (depthwise) {
      this.add(node.name, 'DepthwiseConv2D', name, [source], { depth_multiplier: node.filters / c, ...common, ...DEPTHWISE_INITIALIZERS });
    } else {
      this.add(node.name, 'Conv2D', name, [source], { filters: node.filters, ...common, ...INITIALIZERS });
    }
    if (groups > 1 && !depthwise && node.op === 'conv2d') {
      // tfjs-layers' Conv2D has no groups: a grouped conv is the full conv whose kernel is zero
      // between groups, which adds exact zeros.
      const kernel = blockDiagonal(this.weight(weightName(node)), groups, c);
      this.specs.push({ name: `${name}/kernel`, shape: [...node.kernel, c, node.filters], dtype: 'float32' }, { name: `${name}/bias`, shape: [node.filters], dtype: 'float32' });
      this.tensors.push(transpose(kernel, [2, 3, 1, 0]).data, this.weight(biasName(node)).data);
      return;
    }
    // A depthwise Conv2D node of any origin is written as Keras' DepthwiseConv2D, with its kernel layout.
    this.addVariables(name, depthwise && node.op === 'conv2d' && !node.depthwise ? { ...step, node: { ...node, depthwise: true } } : step);
  }

  private pool(step: PoolStep, name: string, input: string, fail: (why: string) => never): void {
    const { node, pads } = step;
    const [h, w] = spatial(step.inShape);
    const [oh, ow] = spatial(step.outShape);
    let padding: 'valid' | 'same';
    let source = input;
    if (node.op === 'maxpool') {
      // Max pooling ignores both kinds of padding (counted only matters to averages).
      const total = addPads(pads.counted, pads.uncounted);
      if (isZero(total)) padding = 'valid';
      else if (samePads(total, resolveConvPads('same', [h, w], node.kernel, node.stride))) padding = 'same';
      else {
        if (!this.nonNegative.get(node.inputs[0])) {
          fail(
            `its padding ${describePads(total)} matches neither Keras 'valid' nor 'same', and zero padding equals ` +
              "max pooling's ignored padding only on non-negative input (after a ReLU), which this input is not known to be",
          );
        }
        const emptyWindow = ([0, 1] as const).some((axis) => {
          const [before, size, out] = axis === 0 ? [total[0], h, oh] : [total[1], w, ow];
          return node.kernel[axis] <= before || (out - 1) * node.stride[axis] >= before + size;
        });
        if (emptyWindow) fail(`a pooling window of its padding ${describePads(total)} lies wholly in the padding`);
        source = this.zeroPad(name, input, total);
        padding = 'valid';
      }
      this.expectShape(step, kerasWindowOut(padding === 'valid' ? padSize([h, w], total) : [h, w], node.kernel, node.stride, padding));
    } else {
      // Counted pads are real zeros in the average (Caffe's divisor includes them); the rest
      // must be exactly what 'same' leaves out of its divisor around the zero-padded map.
      const padded = padSize([h, w], pads.counted);
      if (isZero(pads.uncounted)) padding = 'valid';
      else if (samePads(pads.uncounted, resolveConvPads('same', padded, node.kernel, node.stride))) padding = 'same';
      else {
        return fail(
          `average pooling leaves its padding ${describePads(pads.uncounted)} (e.g. Caffe's ceil-mode overhang) out of the divisor, ` +
            "which no Keras padding reproduces exactly; export it with --format onnx instead",
        );
      }
      if (!isZero(pads.counted)) source = this.zeroPad(name, input, pads.counted);
      this.expectShape(step, kerasWindowOut(padded, node.kernel, node.stride, padding));
    }
    this.add(node.name, node.op === 'maxpool' ? 'MaxPooling2D' : 'AveragePooling2D', name, [source], {
      pool_size: [...node.kernel],
      padding,
      strides: [...node.stride],
      data_format: 'channels_last',
    });
  }

  private zeroPad(base: string, input: string, pads: Pads): string {
    const name = this.names.fresh(`${base}_pad`);
    this.add(undefined, 'ZeroPadding2D', name, [input], { padding: kerasPadding(pads), data_format: 'channels_last' });
    return name;
  }

  /** Appends a layer; `node` is the graph node whose value it produces, if any. */
  private add(node: string | undefined, className: string, name: string, inputs: readonly string[], config: Record<string, unknown>): void {
    this.layers.push({
      class_name: className,
      config: { name, trainable: true, dtype: 'float32', ...config },
      name,
      inbound_nodes: [inputs.map((i) => [i, 0, 0, {}] as const)],
    });
    if (node !== undefined) this.tensorOf.set(node, name);
  }

  /** The node's weights in Keras layout and order (see weight-slots.ts), as `<layer>/<variable>`. */
  private addVariables(layer: string, step: Step): void {
    const node = step.node;
    if (!hasWeights(node)) return;
    for (const slot of weightSlots(node, step.inShape[step.inShape.length - 1])) {
      // The layers above always have a bias (Keras' default), so a bias-less node gets its zeros.
      if (slot.key === null || (!slot.inKeras && slot.keras !== 'bias')) continue;
      const t = slot.toKeras(this.weight(slot.key));
      this.specs.push({ name: `${layer}/${slot.keras}`, shape: [...t.shape], dtype: 'float32' });
      this.tensors.push(t.data);
    }
  }

  private weight(key: string): WeightTensor {
    return this.weights.get(key)!; // checkWeights has made sure it exists, in the right shape
  }

  /** A guard against this file and graph-plan disagreeing: a wrong shape would be a silent wrong model. */
  private expectShape(step: Step, [oh, ow]: Pair): void {
    const [h, w] = spatial(step.outShape);
    if (oh !== h || ow !== w) {
      throw new Error(`keras-topology-writer: '${step.node.name}' would come out ${oh}×${ow} in Keras, but the plan says ${h}×${w}`);
    }
  }
}

/**
 * Keras layer names for graph nodes: valid names are kept, others ('fire2/squeeze1x1') have
 * each invalid character replaced by '_', numbered `_2`, `_3`, … on a clash. Names already
 * valid are reserved first, so a node never loses its name to another node's sanitised one.
 */
class LayerNames {
  private readonly used = new Set<string>();
  private readonly byNode = new Map<string, string>();

  constructor(nodes: readonly string[]) {
    for (const node of nodes) {
      if (VALID_NAME.test(node)) {
        this.used.add(node);
        this.byNode.set(node, node);
      }
    }
    for (const node of nodes) if (!this.byNode.has(node)) this.byNode.set(node, this.fresh(sanitize(node)));
  }

  of(node: string): string {
    return this.byNode.get(node)!;
  }

  /** `base`, or `base_2`, `base_3`, … whichever is free, now taken. */
  fresh(base: string): string {
    let name = base;
    for (let i = 2; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }
}

function sanitize(name: string): string {
  const replaced = name.replace(/[^-A-Za-z0-9._]/g, '_');
  return /^[A-Za-z0-9]/.test(replaced) ? replaced : `x${replaced}`;
}

/** Whether every value a node outputs is ≥ 0, which makes zero padding safe for max pooling. */
function producesNonNegative(node: LayerNode, known: ReadonlyMap<string, boolean>): boolean {
  switch (node.op) {
    case 'input':
      return false;
    case 'conv2d':
    case 'dense':
      return ['relu', 'relu6', 'sigmoid', 'hard_sigmoid', 'softmax', 'softplus'].includes(node.activation);
    case 'relu':
      return (node.negativeSlope ?? 0) === 0 && (node.threshold ?? 0) >= 0;
    case 'softmax':
      return true;
    case 'activation':
      return ['relu', 'relu6', 'sigmoid', 'hard_sigmoid', 'softmax', 'softplus'].includes(node.fn);
    case 'separable_conv2d':
      return node.activation !== 'linear' && ['relu', 'relu6', 'sigmoid', 'hard_sigmoid', 'softmax', 'softplus'].includes(node.activation);
    case 'batchnorm':
    case 'normalize':
    case 'rescale':
      return false;
    case 'merge':
      return (node.mode === 'add' || node.mode === 'average' || node.mode === 'maximum' || node.mode === 'minimum' || node.mode === 'multiply') && node.inputs.every((i) => known.get(i) === true);
    case 'reshape':
    case 'crop':
      return node.inputs.every((i) => known.get(i) === true);
    case 'maxpool':
    case 'avgpool':
    case 'dropout':
    case 'zeropad':
    case 'flatten':
    case 'globalpool':
    case 'lrn':
    case 'concat':
      return node.inputs.every((i) => known.get(i) === true);
  }
}

const DEPTHWISE_INITIALIZERS = {
  depthwise_initializer: { class_name: 'GlorotUniform', config: { seed: null } },
  bias_initializer: { class_name: 'Zeros', config: {} },
  depthwise_regularizer: null,
  bias_regularizer: null,
  activity_regularizer: null,
  depthwise_constraint: null,
  bias_constraint: null,
};

const SEPARABLE_INITIALIZERS = {
  depthwise_initializer: { class_name: 'GlorotUniform', config: { seed: null } },
  pointwise_initializer: { class_name: 'GlorotUniform', config: { seed: null } },
  bias_initializer: { class_name: 'Zeros', config: {} },
  depthwise_regularizer: null,
  pointwise_regularizer: null,
  bias_regularizer: null,
  activity_regularizer: null,
  depthwise_constraint: null,
  pointwise_constraint: null,
  bias_constraint: null,
};

const INITIALIZERS = {
  // Only for Keras' benefit: tfjs-layers skips initialisation when a model comes with weights.
  kernel_initializer: { class_name: 'GlorotUniform', config: { seed: null } },
  bias_initializer: { class_name: 'Zeros', config: {} },
  kernel_regularizer: null,
  bias_regularizer: null,
  activity_regularizer: null,
  kernel_constraint: null,
  bias_constraint: null,
};

/** tfjs-layers' activation names; the graph's are Keras' own, and tfjs-layers lacks hard_swish. */
function kerasActivation(a: Activation, fail: (why: string) => never): string {
  if (a === 'hard_swish') return fail('tfjs-layers has no hard_swish activation; export it with --format onnx instead');
  return a;
}

/** [top, left, bottom, right] → Keras' ((top, bottom), (left, right)). */
function kerasPadding([top, left, bottom, right]: Pads): [[number, number], [number, number]] {
  return [
    [top, bottom],
    [left, right],
  ];
}

function spatial(shape: Shape): Spatial {
  if (shape.length !== 3) throw new Error(`expected a feature map, got a vector of ${shape[0]}`);
  return shape;
}

function isZero(p: Pads): boolean {
  return p.every((v) => v === 0);
}

function samePads(a: Pads, b: Pads): boolean {
  return a.every((v, i) => v === b[i]);
}

function addPads(a: Pads, b: Pads): Pads {
  return [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]];
}

function padSize([h, w]: Pair, p: Pads): Pair {
  return [h + p[0] + p[2], w + p[1] + p[3]];
}

function describePads(p: Pads): string {
  return `[top ${p[0]}, left ${p[1]}, bottom ${p[2]}, right ${p[3]}]`;
}

/** Keras' output size of a window op: 'valid' floors, 'same' is ceil(n / stride). */
function kerasWindowOut(size: Pair, window: Pair, stride: Pair, padding: 'valid' | 'same'): Pair {
  const out = (i: 0 | 1) => (padding === 'same' ? Math.ceil(size[i] / stride[i]) : Math.floor((size[i] - window[i]) / stride[i]) + 1);
  return [out(0), out(1)];
}

/** A grouped conv's OIHW kernel [F, C/g, kh, kw] as the full [F, C, kh, kw] one, zero outside each group. */
function blockDiagonal(t: WeightTensor, groups: number, channels: number): WeightTensor {
  const [filters, perGroup, kh, kw] = t.shape;
  const area = kh * kw;
  const data = new Float32Array(filters * channels * area);
  const filtersPerGroup = filters / groups;
  for (let f = 0; f < filters; f++) {
    const offset = Math.floor(f / filtersPerGroup) * perGroup;
    for (let i = 0; i < perGroup; i++) data.set(t.data.subarray((f * perGroup + i) * area, (f * perGroup + i + 1) * area), (f * channels + offset + i) * area);
  }
  return { shape: [filters, channels, kh, kw], data };
}

function concatFloat32(parts: readonly Float32Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    bytes.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), offset);
    offset += p.byteLength;
  }
  return bytes;
}
