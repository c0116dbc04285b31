/**
 * Turns a Caffe deploy description (the `*.arch.json` files beside SqueezeNet and GoogLeNet's
 * safetensors) into a LayerGraph.
 *
 * Caffe names blobs, not layers, and ReLU/Dropout overwrite their input blob in place. Here
 * every layer becomes a node named after the layer; an in-place ReLU after a conv or dense
 * layer is fused into it (the blob holds the post-ReLU value, and so does the node), and a
 * blob name that differs from its producer's name becomes an alias, so `--layer` accepts both.
 */
import type { Preprocessing } from './backbone.ts';
import type { Activation, LayerGraph, LayerNode, Pair } from './layer-graph.ts';

interface CaffeLayer {
  readonly name: string;
  readonly type: string;
  readonly bottom: readonly string[];
  readonly top: readonly string[];
  readonly params: Readonly<Record<string, unknown>>;
  readonly output_shape?: readonly number[];
}

export interface CaffeArch {
  readonly name: string;
  readonly metadata?: Readonly<Record<string, string>>;
  readonly layers: readonly CaffeLayer[];
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export function graphFromCaffeArch(arch: CaffeArch): LayerGraph {
  const nodes: Mutable<LayerNode>[] = [];
  const producer = new Map<string, string>(); // blob → node that last wrote it
  const spatial = new Map<string, boolean>(); // node → does it output a feature map
  const fail = (layer: CaffeLayer, why: string): never => {
    throw new Error(`${arch.name}: layer '${layer.name}' (${layer.type}): ${why}`);
  };

  for (const layer of arch.layers) {
    const p = layer.params;
    const inputs = layer.bottom.map((b) => producer.get(b) ?? fail(layer, `reads unknown blob '${b}'`));
    const x = inputs[0];
    const add = (node: LayerNode, isSpatial: boolean) => {
      nodes.push(node);
      spatial.set(node.name, isSpatial);
      for (const top of layer.top) producer.set(top, node.name);
    };
    switch (layer.type) {
      case 'Input': {
        const shape = (layer.output_shape ?? (p.shape as number[]).slice(1)) as number[];
        add({ name: layer.name, op: 'input', inputs: [], channels: shape[0] }, true);
        break;
      }
      case 'Convolution': {
        const groups = Number(p.group ?? 1);
        if (!Number.isInteger(groups) || groups < 1) fail(layer, `group ${String(p.group)} is not a whole number ≥ 1`);
        const [ph, pw] = pair(p.pad ?? [0, 0]);
        add(
          {
            name: layer.name,
            op: 'conv2d',
            inputs,
            filters: Number(p.num_output),
            kernel: pair(p.kernel),
            stride: pair(p.stride ?? [1, 1]),
            pad: [ph, pw, ph, pw],
            dilation: pair(p.dilation ?? [1, 1]),
            activation: 'linear',
            // Caffe's group: the channels split into groups, each convolved with its own filters.
            ...(groups !== 1 && { groups }),
          },
          true,
        );
        break;
      }
      case 'ReLU': {
        const last = nodes.find((n) => n.name === x);
        const inPlace = layer.top[0] === layer.bottom[0];
        if (inPlace && last && (last.op === 'conv2d' || last.op === 'dense') && last.activation === 'linear') {
          (last as { activation: Activation }).activation = 'relu';
          break;
        }
        add({ name: layer.name, op: 'relu', inputs }, spatial.get(x)!);
        break;
      }
      case 'Pooling': {
        const mode = p.pool === 'MAX' ? 'max' : p.pool === 'AVE' ? 'avg' : fail(layer, `pool type ${String(p.pool)} is not supported`);
        if (p.global_pooling) {
          add({ name: layer.name, op: 'globalpool', inputs, mode }, false);
          break;
        }
        const [ph, pw] = pair(p.pad ?? [0, 0]);
        add(
          {
            name: layer.name,
            op: mode === 'max' ? 'maxpool' : 'avgpool',
            inputs,
            kernel: pair(p.kernel),
            stride: pair(p.stride ?? [1, 1]),
            pad: [ph, pw, ph, pw],
            ceil: p.ceil_mode !== false,
          },
          true,
        );
        break;
      }
      case 'LRN':
        if (p.norm_region !== undefined && p.norm_region !== 'ACROSS_CHANNELS') fail(layer, 'only ACROSS_CHANNELS LRN is supported');
        add({ name: layer.name, op: 'lrn', inputs, size: Number(p.local_size), alpha: Number(p.alpha), beta: Number(p.beta), k: Number(p.k ?? 1) }, true);
        break;
      case 'Concat':
        if ((p.axis ?? 1) !== 1) fail(layer, 'only channel concatenation (axis 1) is supported');
        add({ name: layer.name, op: 'concat', inputs }, true);
        break;
      case 'InnerProduct': {
        let source = x;
        if (spatial.get(x)) {
          // Caffe's InnerProduct flattens its input blob in C, H, W order.
          source = `${layer.name}/flatten`;
          nodes.push({ name: source, op: 'flatten', inputs: [x], order: 'chw' });
          spatial.set(source, false);
        }
        add({ name: layer.name, op: 'dense', inputs: [source], units: Number(p.num_output), activation: 'linear' }, false);
        break;
      }
      case 'Dropout':
        add({ name: layer.name, op: 'dropout', inputs, rate: Number(p.dropout_ratio ?? 0.5) }, spatial.get(x)!);
        break;
      case 'Softmax':
        add({ name: layer.name, op: 'softmax', inputs }, spatial.get(x)!);
        break;
      default:
        fail(layer, 'layer type is not supported');
    }
  }

  // Blob names users know from the prototxt resolve to the node that last wrote the blob.
  const names = new Set(nodes.map((n) => n.name));
  const aliases: Record<string, string> = {};
  for (const [blob, node] of producer) if (!names.has(blob) && blob !== node) aliases[blob] = node;
  return { name: arch.name, nodes, aliases };
}

/** Size, channel order and mean from the arch metadata, e.g. "227x227", "BGR", "[104.0,117.0,123.0] (B,G,R)". */
export function preprocessingFromCaffeArch(arch: CaffeArch): Preprocessing {
  const meta = arch.metadata ?? {};
  const input = arch.layers.find((l) => l.type === 'Input');
  const shape = input?.output_shape;
  const size: Pair = shape ? [shape[1], shape[2]] : (parseSize(meta.input_size) ?? [224, 224]);
  const mean = (meta.mean ?? '').match(/-?\d+(\.\d+)?/g)?.slice(0, 3).map(Number);
  if (!mean || mean.length !== 3) throw new Error(`${arch.name}: the arch metadata has no 3-channel 'mean'`);
  const channels = /rgb/i.test(meta.channel_order ?? '') ? 'rgb' : 'bgr';
  return { size, channels, mean: [mean[0], mean[1], mean[2]], std: [1, 1, 1] };
}

function parseSize(s: string | undefined): Pair | undefined {
  const m = s?.match(/(\d+)\s*x\s*(\d+)/);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

function pair(v: unknown): Pair {
  const a = Array.isArray(v) ? v.map(Number) : [Number(v), Number(v)];
  return [a[0], a[1] ?? a[0]];
}
