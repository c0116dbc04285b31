/**
 * The tensors each weighted node owns: their canonical names and shapes (conv OIHW, dense
 * [out, in], per-channel vectors [C]), and the Keras variable each comes from, in the order
 * Keras lists a layer's weights (the order h5 files store them and `load_weights` reads them).
 * Binding, checking, seeding and writing weights all go through this one table, so a new op
 * gets its weights handled everywhere by one entry here.
 */
import { groupsOf, type WeightedNode } from './layer-graph.ts';
import { transpose, type WeightTensor } from './weights.ts';

export interface WeightSlot {
  /** The Keras variable: 'kernel', 'depthwise_kernel', 'gamma', 'moving_mean', … */
  readonly keras: string;
  /** Canonical key `<node>.<param>`; null for Keras-only state (Normalization's count). */
  readonly key: string | null;
  /** Canonical shape. */
  readonly shape: readonly number[];
  /** Whether Keras files hold it for this node (use_bias=False layers have no bias). */
  readonly inKeras: boolean;
  /** Other names files give the variable: Keras 3 calls a DepthwiseConv2D's kernel just `kernel`. */
  readonly kerasAliases?: readonly string[];
  /** The value of every element when a file lacks it (a bias 0, gamma 1); undefined: required. */
  readonly fill?: number;
  /** Keras layout → canonical. */
  fromKeras(t: WeightTensor): WeightTensor;
  /** Canonical → Keras layout. */
  toKeras(t: WeightTensor): WeightTensor;
}

const same = (t: WeightTensor) => t;
const reshaped = (t: WeightTensor, shape: readonly number[]): WeightTensor => ({ shape, data: t.data });
/** OIHW ↔ HWIO. */
const fromHwio = (t: WeightTensor) => transpose(t, [3, 2, 0, 1]);
const toHwio = (t: WeightTensor) => transpose(t, [2, 3, 1, 0]);

/** Keras' depthwise kernel [kh, kw, C, m] ↔ canonical [C·m, 1, kh, kw] (output channel c·m + j, as TF orders them). */
function depthwiseLayout(kh: number, kw: number, c: number, m: number): Pick<WeightSlot, 'fromKeras' | 'toKeras'> {
  return {
    fromKeras: (t) => reshaped(transpose(reshaped(t, [kh, kw, c, m]), [2, 3, 0, 1]), [c * m, 1, kh, kw]),
    toKeras: (t) => transpose(reshaped(t, [c, m, kh, kw]), [2, 3, 0, 1]),
  };
}

/** A per-channel vector; Keras may store it with extra unit axes (old Normalization layers did). */
function vector(keras: string, key: string, c: number, fill?: number, inKeras = true): WeightSlot {
  return { keras, key, shape: [c], inKeras, fill, fromKeras: (t) => reshaped(t, [t.data.length]), toKeras: same };
}

/** `inChannels`: the channels (or features) of the node's input. */
export function weightSlots(node: WeightedNode, inChannels: number): WeightSlot[] {
  const key = (param: string) => `${node.name}.${param}`;
  switch (node.op) {
    case 'conv2d': {
      const [kh, kw] = node.kernel;
      const groups = groupsOf(node);
      const kernel: WeightSlot = node.depthwise
        ? { keras: 'depthwise_kernel', kerasAliases: ['kernel'], key: key('weight'), shape: [node.filters, 1, kh, kw], inKeras: true, ...depthwiseLayout(kh, kw, inChannels, node.filters / inChannels) }
        : { keras: 'kernel', key: key('weight'), shape: [node.filters, inChannels / groups, kh, kw], inKeras: true, fromKeras: fromHwio, toKeras: toHwio };
      return [kernel, vector('bias', key('bias'), node.filters, 0, node.useBias !== false)];
    }
    case 'separable_conv2d': {
      const [kh, kw] = node.kernel;
      const mid = inChannels * node.multiplier;
      return [
        { keras: 'depthwise_kernel', key: key('depthwise'), shape: [mid, 1, kh, kw], inKeras: true, ...depthwiseLayout(kh, kw, inChannels, node.multiplier) },
        { keras: 'pointwise_kernel', key: key('pointwise'), shape: [node.filters, mid, 1, 1], inKeras: true, fromKeras: fromHwio, toKeras: toHwio },
        vector('bias', key('bias'), node.filters, 0, node.useBias !== false),
      ];
    }
    case 'dense': {
      const flip = (t: WeightTensor) => transpose(t, [1, 0]);
      return [
        { keras: 'kernel', key: key('weight'), shape: [node.units, inChannels], inKeras: true, fromKeras: flip, toKeras: flip },
        vector('bias', key('bias'), node.units, 0, node.useBias !== false),
      ];
    }
    case 'batchnorm':
      return [
        vector('gamma', key('gamma'), inChannels, 1, node.scale !== false),
        vector('beta', key('beta'), inChannels, 0, node.center !== false),
        vector('moving_mean', key('mean'), inChannels),
        vector('moving_variance', key('variance'), inChannels),
      ];
    case 'normalize':
      return [
        vector('mean', key('mean'), inChannels),
        vector('variance', key('variance'), inChannels),
        { keras: 'count', key: null, shape: [], inKeras: true, fill: 0, fromKeras: same, toKeras: same },
      ];
  }
}

/** The canonical slots only (what engines read). */
export function canonicalSlots(node: WeightedNode, inChannels: number): (WeightSlot & { readonly key: string })[] {
  return weightSlots(node, inChannels).filter((s): s is WeightSlot & { key: string } => s.key !== null);
}
