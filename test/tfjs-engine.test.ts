import { afterEach, describe, expect, it } from 'vitest';
import type { GraphBackbone } from '../src/backbones/backbone.ts';
import type { Cut } from '../src/backbones/cut.ts';
import type { Activation, LayerGraph, LayerNode, Pads, Padding, Pair } from '../src/backbones/layer-graph.ts';
import type { WeightTensor } from '../src/backbones/weights.ts';
import type { FeatureEngine } from '../src/engines/engine.ts';
import { loadTfBackend, tfBackend, type ModuleImporter } from '../src/engines/tfjs-backend.ts';
import { avgPoolCorrection, createTfjsEngine } from '../src/engines/tfjs-engine.ts';

// ---------------------------------------------------------------------------------------
// Reference implementations: plain loops over NHWC float64 maps, written from the Caffe and
// TF definitions rather than from graph-plan's arithmetic, so they check it too.

interface FMap {
  readonly n: number;
  readonly h: number;
  readonly w: number;
  readonly c: number;
  readonly data: Float64Array;
}

const at = (m: FMap, n: number, y: number, x: number, c: number) => ((n * m.h + y) * m.w + x) * m.c + c;

function fmap(n: number, h: number, w: number, c: number, fill: (i: number) => number = () => 0): FMap {
  return { n, h, w, c, data: Float64Array.from({ length: n * h * w * c }, (_, i) => fill(i)) };
}

function act(v: number, activation: Activation): number {
  return activation === 'relu' ? Math.max(0, v) : v;
}

/** Direct convolution; weights OIHW; pads [top, left, bottom, right]. */
function refConv(x: FMap, weight: WeightTensor, bias: WeightTensor, stride: Pair, pads: Pads, dilation: Pair, activation: Activation): FMap {
  const [o, i, kh, kw] = weight.shape;
  const oh = Math.floor((x.h + pads[0] + pads[2] - dilation[0] * (kh - 1) - 1) / stride[0]) + 1;
  const ow = Math.floor((x.w + pads[1] + pads[3] - dilation[1] * (kw - 1) - 1) / stride[1]) + 1;
  const out = fmap(x.n, oh, ow, o);
  for (let n = 0; n < x.n; n++)
    for (let oy = 0; oy < oh; oy++)
      for (let ox = 0; ox < ow; ox++)
        for (let f = 0; f < o; f++) {
          let sum = bias.data[f];
          for (let ky = 0; ky < kh; ky++)
            for (let kx = 0; kx < kw; kx++) {
              const y = oy * stride[0] - pads[0] + ky * dilation[0];
              const xx = ox * stride[1] - pads[1] + kx * dilation[1];
              if (y < 0 || y >= x.h || xx < 0 || xx >= x.w) continue;
              for (let ci = 0; ci < i; ci++) sum += x.data[at(x, n, y, xx, ci)] * weight.data[((f * i + ci) * kh + ky) * kw + kx];
            }
          out.data[at(out, n, oy, ox, f)] = act(sum, activation);
        }
  return out;
}

/** TF 'same': out = ceil(in / stride), the odd padding pixel at the end. */
function samePads(size: Pair, kernel: Pair, stride: Pair): Pads {
  const total = (a: 0 | 1) => Math.max((Math.ceil(size[a] / stride[a]) - 1) * stride[a] + kernel[a] - size[a], 0);
  const [th, tw] = [total(0), total(1)];
  return [Math.floor(th / 2), Math.floor(tw / 2), th - Math.floor(th / 2), tw - Math.floor(tw / 2)];
}

/** Caffe's PoolingLayer::Forward_cpu, line for line (square kernel, symmetric pad, ceil mode). */
function refCaffePool(x: FMap, mode: 'max' | 'avg', k: number, s: number, pad: number): FMap {
  const size = (len: number) => {
    let pooled = Math.ceil((len + 2 * pad - k) / s) + 1;
    if (pad > 0 && (pooled - 1) * s >= len + pad) pooled--;
    return pooled;
  };
  const out = fmap(x.n, size(x.h), size(x.w), x.c);
  for (let n = 0; n < x.n; n++)
    for (let ph = 0; ph < out.h; ph++)
      for (let pw = 0; pw < out.w; pw++)
        for (let c = 0; c < x.c; c++) {
          let hstart = ph * s - pad;
          let wstart = pw * s - pad;
          let hend = Math.min(hstart + k, x.h + (mode === 'avg' ? pad : 0));
          let wend = Math.min(wstart + k, x.w + (mode === 'avg' ? pad : 0));
          const poolSize = (hend - hstart) * (wend - wstart);
          hstart = Math.max(hstart, 0);
          wstart = Math.max(wstart, 0);
          hend = Math.min(hend, x.h);
          wend = Math.min(wend, x.w);
          let acc = mode === 'max' ? -Infinity : 0;
          for (let y = hstart; y < hend; y++)
            for (let xx = wstart; xx < wend; xx++) {
              const v = x.data[at(x, n, y, xx, c)];
              acc = mode === 'max' ? Math.max(acc, v) : acc + v;
            }
          out.data[at(out, n, ph, pw, c)] = mode === 'max' ? acc : acc / poolSize;
        }
  return out;
}

/** TF 'same' pooling: windows clipped to the input; average over the cells inside only. */
function refSamePool(x: FMap, mode: 'max' | 'avg', k: number, s: number): FMap {
  const [top, left] = samePads([x.h, x.w], [k, k], [s, s]);
  const out = fmap(x.n, Math.ceil(x.h / s), Math.ceil(x.w / s), x.c);
  for (let n = 0; n < x.n; n++)
    for (let oy = 0; oy < out.h; oy++)
      for (let ox = 0; ox < out.w; ox++)
        for (let c = 0; c < x.c; c++) {
          let acc = mode === 'max' ? -Infinity : 0;
          let count = 0;
          for (let y = oy * s - top; y < oy * s - top + k; y++)
            for (let xx = ox * s - left; xx < ox * s - left + k; xx++) {
              if (y < 0 || y >= x.h || xx < 0 || xx >= x.w) continue;
              const v = x.data[at(x, n, y, xx, c)];
              acc = mode === 'max' ? Math.max(acc, v) : acc + v;
              count++;
            }
          out.data[at(out, n, oy, ox, c)] = mode === 'max' ? acc : acc / count;
        }
  return out;
}

/** Caffe ACROSS_CHANNELS: y = x / (k + alpha/size · Σ_{c-r..c+r} x²)^beta, zero-padded in c. */
function refLrn(x: FMap, size: number, alpha: number, beta: number, k: number): FMap {
  const r = (size - 1) / 2;
  const out = fmap(x.n, x.h, x.w, x.c);
  for (let p = 0; p < x.n * x.h * x.w; p++)
    for (let c = 0; c < x.c; c++) {
      let sum = 0;
      for (let j = Math.max(0, c - r); j <= Math.min(x.c - 1, c + r); j++) sum += x.data[p * x.c + j] ** 2;
      out.data[p * x.c + c] = x.data[p * x.c + c] / (k + (alpha / size) * sum) ** beta;
    }
  return out;
}

function refConcat(a: FMap, b: FMap): FMap {
  const out = fmap(a.n, a.h, a.w, a.c + b.c);
  for (let p = 0; p < a.n * a.h * a.w; p++) {
    for (let c = 0; c < a.c; c++) out.data[p * out.c + c] = a.data[p * a.c + c];
    for (let c = 0; c < b.c; c++) out.data[p * out.c + a.c + c] = b.data[p * b.c + c];
  }
  return out;
}

/** One row per image: H, W, C order (Keras) or C, H, W (Caffe). */
function refFlatten(x: FMap, order: 'hwc' | 'chw'): Float64Array[] {
  return Array.from({ length: x.n }, (_, n) => {
    const row = new Float64Array(x.h * x.w * x.c);
    for (let y = 0; y < x.h; y++)
      for (let xx = 0; xx < x.w; xx++)
        for (let c = 0; c < x.c; c++) {
          const i = order === 'hwc' ? (y * x.w + xx) * x.c + c : (c * x.h + y) * x.w + xx;
          row[i] = x.data[at(x, n, y, xx, c)];
        }
    return row;
  });
}

/** weight [out, in]. */
function refDense(rows: Float64Array[], weight: WeightTensor, bias: WeightTensor, activation: Activation): Float64Array[] {
  const [o, i] = weight.shape;
  return rows.map((row) =>
    Float64Array.from({ length: o }, (_, f) => {
      let sum = bias.data[f];
      for (let j = 0; j < i; j++) sum += row[j] * weight.data[f * i + j];
      return act(sum, activation);
    }),
  );
}

function refGlobalPool(x: FMap, mode: 'avg' | 'max'): Float64Array[] {
  return Array.from({ length: x.n }, (_, n) =>
    Float64Array.from({ length: x.c }, (_, c) => {
      let acc = mode === 'max' ? -Infinity : 0;
      for (let y = 0; y < x.h; y++)
        for (let xx = 0; xx < x.w; xx++) {
          const v = x.data[at(x, n, y, xx, c)];
          acc = mode === 'max' ? Math.max(acc, v) : acc + v;
        }
      return mode === 'max' ? acc : acc / (x.h * x.w);
    }),
  );
}

const flat = (x: FMap | Float64Array[]): Float64Array =>
  Array.isArray(x) ? Float64Array.from(x.flatMap((row) => [...row])) : x.data;

/** Normwise relative error: max |actual - expected| / max |expected|. */
function expectClose(actual: Float32Array, expected: FMap | Float64Array[]): void {
  const want = flat(expected);
  expect(actual.length).toBe(want.length);
  let err = 0;
  let scale = 0;
  want.forEach((v, i) => {
    err = Math.max(err, Math.abs(actual[i] - v));
    scale = Math.max(scale, Math.abs(v));
  });
  expect(scale).toBeGreaterThan(0);
  expect(err / scale).toBeLessThan(1e-5);
}

// ---------------------------------------------------------------------------------------
// Building small networks.

/** Deterministic values in [-1, 1) (a 32-bit LCG). */
function seeded(length: number, seed: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 31 - 1;
  });
}

class Net {
  readonly nodes: LayerNode[];
  readonly weights = new Map<string, WeightTensor>();
  private seed = 1;

  constructor(channels: number) {
    this.nodes = [{ op: 'input', name: 'input', inputs: [], channels }];
  }

  add(node: LayerNode): this {
    this.nodes.push(node);
    return this;
  }

  conv(name: string, input: string, shape: [o: number, i: number, kh: number, kw: number], stride: Pair, pad: Padding, activation: Activation, dilation: Pair = [1, 1]) {
    this.add({ op: 'conv2d', name, inputs: [input], filters: shape[0], kernel: [shape[2], shape[3]], stride, pad, dilation, activation });
    return this.params(name, shape);
  }

  dense(name: string, input: string, shape: [o: number, i: number], activation: Activation) {
    this.add({ op: 'dense', name, inputs: [input], units: shape[0], activation });
    return this.params(name, shape);
  }

  pool(name: string, input: string, op: 'maxpool' | 'avgpool', k: number, s: number, pad: Padding, ceil: boolean): this {
    return this.add({ op, name, inputs: [input], kernel: [k, k], stride: [s, s], pad, ceil });
  }

  backbone(size: Pair): GraphBackbone {
    const graph: LayerGraph = { name: 'test-net', nodes: this.nodes };
    return {
      id: 'test-net',
      graph,
      weights: this.weights,
      preprocessing: { size, channels: 'rgb', mean: [0, 0, 0], std: [1, 1, 1] },
      defaultCut: { layer: this.nodes[this.nodes.length - 1].name },
      namedCuts: [],
      weightsId: 'seeded',
      weightsFrom: 'test',
    };
  }

  private params(name: string, shape: number[]): { weight: WeightTensor; bias: WeightTensor } {
    const size = shape.reduce((a, b) => a * b, 1);
    // Scaled so that activations stay O(1) through a few layers.
    const weight = { shape, data: seeded(size, this.seed++).map((v) => v / Math.sqrt(size / shape[0])) };
    const bias = { shape: [shape[0]], data: seeded(shape[0], this.seed++).map((v) => v * 0.1) };
    this.weights.set(`${name}.weight`, weight);
    this.weights.set(`${name}.bias`, bias);
    return { weight, bias };
  }
}

function images(n: number, h: number, w: number, c: number, seed = 99): { input: Float32Array; ref: FMap } {
  const input = seeded(n * h * w * c, seed).map((v) => v * 2);
  return { input, ref: fmap(n, h, w, c, (i) => input[i]) };
}

const engines: FeatureEngine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.dispose()));
});

async function engine(net: Net, size: Pair, cuts: Cut[]): Promise<FeatureEngine> {
  const e = await createTfjsEngine({ backbone: net.backbone(size), cuts, device: 'auto', cacheDir: '/nonexistent' });
  engines.push(e);
  return e;
}

// ---------------------------------------------------------------------------------------

describe('tfjs engine matches reference loops', () => {
  it("runs 'same' convolutions with stride 2 (asymmetric pads), explicit pads and dilation", async () => {
    const net = new Net(3);
    const c1 = net.conv('c1', 'input', [4, 3, 3, 3], [2, 2], 'same', 'relu');
    const c2 = net.conv('c2', 'c1', [5, 4, 3, 3], [1, 1], [2, 0, 1, 1], 'linear', [2, 1]);
    const c3 = net.conv('c3', 'c2', [3, 5, 2, 3], [2, 1], 'same', 'linear');
    const e = await engine(net, [8, 9], [{ layer: 'c1' }, { layer: 'c2' }, { layer: 'c3' }]);
    const { input, ref } = images(2, 8, 9, 3);

    const pads1 = samePads([8, 9], [3, 3], [2, 2]);
    expect(pads1).toEqual([0, 1, 1, 1]); // the odd row goes at the bottom
    const r1 = refConv(ref, c1.weight, c1.bias, [2, 2], pads1, [1, 1], 'relu');
    const r2 = refConv(r1, c2.weight, c2.bias, [1, 1], [2, 0, 1, 1], [2, 1], 'linear');
    const r3 = refConv(r2, c3.weight, c3.bias, [2, 1], samePads([r2.h, r2.w], [2, 3], [2, 1]), [1, 1], 'linear');
    expect(e.outputs.map((o) => o.shape)).toEqual([[4, 5, 4], [r2.h, r2.w, 5], [r3.h, r3.w, 3]]);

    const [o1, o2, o3] = await e.run(input, 2);
    expectClose(o1, r1);
    expectClose(o2, r2);
    expectClose(o3, r3);
  });

  it('matches Caffe ceil-mode max and avg pooling whose last window hangs over the edge', async () => {
    const net = new Net(3)
      .pool('max', 'input', 'maxpool', 3, 2, 'valid', true)
      .pool('avg', 'input', 'avgpool', 3, 2, 'valid', true);
    const e = await engine(net, [6, 6], [{ layer: 'max' }, { layer: 'avg' }]);
    const { input, ref } = images(2, 6, 6, 3);
    // 6 wide, kernel 3, stride 2: windows at 0, 2, 4; the last covers 4, 5 and one cell past.
    expect(e.outputs[0].shape).toEqual([3, 3, 3]);
    const [max, avg] = await e.run(input, 2);
    expectClose(max, refCaffePool(ref, 'max', 3, 2, 0));
    expectClose(avg, refCaffePool(ref, 'avg', 3, 2, 0));
  });

  it('counts Caffe zero padding in avg pooling (but not the overhang) and ignores it in max pooling', async () => {
    const pads: Pads = [1, 1, 1, 1];
    const net = new Net(2)
      .pool('avg', 'input', 'avgpool', 3, 2, pads, true)
      .pool('max', 'input', 'maxpool', 3, 2, pads, true);
    const e = await engine(net, [6, 7], [{ layer: 'avg' }, { layer: 'max' }]);
    // Inputs are mostly negative here, so a max that let a zero pad win would show.
    const input = seeded(2 * 6 * 7 * 2, 7).map((v) => v - 1.5);
    const ref = fmap(2, 6, 7, 2, (i) => input[i]);
    const [avg, max] = await e.run(input, 2);
    // Rows: 4 windows, the last hanging one past the bottom pad; columns: 4, none hanging.
    expect(e.outputs[0].shape).toEqual([4, 4, 2]);
    expectClose(avg, refCaffePool(ref, 'avg', 3, 2, 1));
    expectClose(max, refCaffePool(ref, 'max', 3, 2, 1));
  });

  it("matches TF 'same' pooling, whose padding is never counted", async () => {
    const net = new Net(3)
      .pool('avg', 'input', 'avgpool', 3, 2, 'same', false)
      .pool('max', 'input', 'maxpool', 3, 2, 'same', false);
    // 5 high: one pad row each side; 6 wide: one pad column, at the end.
    const e = await engine(net, [5, 6], [{ layer: 'avg' }, { layer: 'max' }]);
    const { input, ref } = images(1, 5, 6, 3);
    const [avg, max] = await e.run(input.map((v) => v - 1), 1);
    const shifted = { ...ref, data: ref.data.map((v) => v - 1) };
    expectClose(avg, refSamePool(shifted, 'avg', 3, 2));
    expectClose(max, refSamePool(shifted, 'max', 3, 2));
  });

  it('computes Caffe LRN (alpha divided by the window size, zero-padded channels)', async () => {
    const net = new Net(7).add({ op: 'lrn', name: 'norm', inputs: ['input'], size: 5, alpha: 0.5, beta: 0.75, k: 2 });
    const e = await engine(net, [4, 3], [{ layer: 'norm' }]);
    const { input, ref } = images(2, 4, 3, 7);
    const [out] = await e.run(input, 2);
    expectClose(out, refLrn(ref, 5, 0.5, 0.75, 2));
  });

  it('concatenates branches along channels in input order', async () => {
    const net = new Net(3);
    const a = net.conv('a', 'input', [2, 3, 1, 1], [1, 1], 'valid', 'relu');
    const b = net.conv('b', 'input', [3, 3, 3, 3], [1, 1], [1, 1, 1, 1], 'relu');
    net.add({ op: 'concat', name: 'cat', inputs: ['b', 'a'] });
    const e = await engine(net, [5, 5], [{ layer: 'cat' }]);
    const { input, ref } = images(2, 5, 5, 3);
    const [out] = await e.run(input, 2);
    expect(e.outputs[0].shape).toEqual([5, 5, 5]);
    const ra = refConv(ref, a.weight, a.bias, [1, 1], [0, 0, 0, 0], [1, 1], 'relu');
    const rb = refConv(ref, b.weight, b.bias, [1, 1], [1, 1, 1, 1], [1, 1], 'relu');
    expectClose(out, refConcat(rb, ra));
  });

  it('flattens in C, H, W or H, W, C order before a dense layer', async () => {
    const net = new Net(3);
    const c = net.conv('conv', 'input', [4, 3, 3, 3], [1, 1], 'valid', 'relu');
    net.add({ op: 'flatten', name: 'flat_chw', inputs: ['conv'], order: 'chw' });
    net.add({ op: 'flatten', name: 'flat_hwc', inputs: ['conv'], order: 'hwc' });
    const fcChw = net.dense('fc_chw', 'flat_chw', [6, 36], 'relu');
    net.add({ op: 'dropout', name: 'drop', inputs: ['fc_chw'], rate: 0.5 });
    const fcOut = net.dense('fc_out', 'drop', [4, 6], 'softmax');
    net.add({ op: 'dense', name: 'fc_hwc', inputs: ['flat_hwc'], units: 6, activation: 'linear' });
    net.weights.set('fc_hwc.weight', fcChw.weight);
    net.weights.set('fc_hwc.bias', fcChw.bias);
    const e = await engine(net, [5, 5], [{ layer: 'flat_chw' }, { layer: 'flat_hwc' }, { layer: 'fc_out' }, { layer: 'fc_hwc' }]);
    const { input, ref } = images(3, 5, 5, 3);
    const [chw, hwc, probs, fcHwc] = await e.run(input, 3);

    const conv = refConv(ref, c.weight, c.bias, [1, 1], [0, 0, 0, 0], [1, 1], 'relu');
    expectClose(chw, refFlatten(conv, 'chw'));
    expectClose(hwc, refFlatten(conv, 'hwc'));
    const logits = refDense(refDense(refFlatten(conv, 'chw'), fcChw.weight, fcChw.bias, 'relu'), fcOut.weight, fcOut.bias, 'linear');
    const softmax = logits.map((row) => {
      const exps = row.map((v) => Math.exp(v - Math.max(...row)));
      const total = exps.reduce((s, v) => s + v, 0);
      return exps.map((v) => v / total);
    });
    expectClose(probs, softmax);
    // The same weights reading the same values in the other order give other results.
    expectClose(fcHwc, refDense(refFlatten(conv, 'hwc'), fcChw.weight, fcChw.bias, 'linear'));
    const chwLinear = flat(refDense(refFlatten(conv, 'chw'), fcChw.weight, fcChw.bias, 'linear'));
    expect(Math.max(...fcHwc.map((v, i) => Math.abs(v - chwLinear[i])))).toBeGreaterThan(1e-2);
  });

  it('pools cuts globally, and serves many cuts of one layer from one engine', async () => {
    const net = new Net(3);
    const c = net.conv('conv', 'input', [4, 3, 3, 3], [1, 1], 'same', 'linear');
    net.add({ op: 'relu', name: 'relu', inputs: ['conv'] });
    net.add({ op: 'globalpool', name: 'gap', inputs: ['relu'], mode: 'avg' });
    net.add({ op: 'zeropad', name: 'padded', inputs: ['relu'], pad: [1, 0, 2, 1] });
    const cuts: Cut[] = [
      { layer: 'relu', pool: 'avg' },
      { layer: 'relu', pool: 'max' },
      { layer: 'relu' },
      { layer: 'gap' },
      { layer: 'conv', pool: 'max' },
      { layer: 'padded', pool: 'avg' },
    ];
    const e = await engine(net, [4, 5], cuts);
    expect(e.outputs.map((o) => o.size)).toEqual([4, 4, 80, 4, 4, 4]);
    const { input, ref } = images(2, 4, 5, 3);
    const [avg, max, spatial, gap, convMax, paddedAvg] = await e.run(input, 2);

    const conv = refConv(ref, c.weight, c.bias, [1, 1], [1, 1, 1, 1], [1, 1], 'linear');
    const relu = { ...conv, data: conv.data.map((v) => Math.max(0, v)) };
    expectClose(avg, refGlobalPool(relu, 'avg'));
    expectClose(max, refGlobalPool(relu, 'max'));
    expectClose(spatial, relu);
    expectClose(gap, refGlobalPool(relu, 'avg'));
    expectClose(convMax, refGlobalPool(conv, 'max'));
    // Zero padding adds 4·5 → 7·6 cells of zeros to the average.
    expectClose(paddedAvg, refGlobalPool(relu, 'avg').map((row) => row.map((v) => (v * 20) / 42)));
  });
});

describe('tfjs engine resources', () => {
  it('leaks no tensors across runs and frees its weights on dispose', async () => {
    const { tf } = await tfBackend('auto');
    const before = tf.memory().numTensors;
    const net = new Net(3);
    net.conv('conv', 'input', [4, 3, 3, 3], [2, 2], 'same', 'relu');
    net.pool('pool', 'conv', 'avgpool', 3, 2, [1, 1, 1, 1], true);
    net.add({ op: 'lrn', name: 'norm', inputs: ['pool'], size: 3, alpha: 1e-2, beta: 0.75, k: 1 });
    net.add({ op: 'flatten', name: 'flat', inputs: ['norm'], order: 'chw' });
    net.dense('fc', 'flat', [3, 36], 'softmax');
    const e = await createTfjsEngine({ backbone: net.backbone([8, 8]), cuts: [{ layer: 'fc' }, { layer: 'conv', pool: 'max' }], device: 'auto', cacheDir: '/nonexistent' });
    const loaded = tf.memory().numTensors;
    expect(loaded).toBeGreaterThan(before); // weights and the avg-pool correction map
    const { input } = images(2, 8, 8, 3);
    const first = await e.run(input, 2);
    expect(tf.memory().numTensors).toBe(loaded);
    const second = await e.run(input, 2);
    expect(tf.memory().numTensors).toBe(loaded);
    expect(second).toEqual(first);
    await expect(e.run(input, 3)).rejects.toThrow(/need 576 floats, got 384/);
    expect(tf.memory().numTensors).toBe(loaded);
    await e.dispose();
    expect(tf.memory().numTensors).toBe(before);
    await expect(e.run(input, 2)).rejects.toThrow(/after dispose/);
  });

  it('returns empty codes for an empty batch', async () => {
    const net = new Net(3);
    net.conv('conv', 'input', [2, 3, 1, 1], [1, 1], 'valid', 'relu');
    const e = await engine(net, [2, 2], [{ layer: 'conv' }]);
    expect(await e.run(new Float32Array(0), 0)).toEqual([new Float32Array(0)]);
  });
});

describe('avgPoolCorrection', () => {
  it('rescales windows that reach into uncounted padding', () => {
    // Caffe: 6 wide, kernel 3, stride 2, pad 1: out 4; the last window [5, 8) is clipped
    // at 6 + 1 = 7, so it counts 2 of its 3 cells per axis.
    const caffe = avgPoolCorrection([6, 6], [3, 3], [2, 2], { counted: [1, 1, 1, 1], uncounted: [0, 0, 1, 1] }, [4, 4]);
    expect(caffe[0]).toBe(1);
    expect(caffe[3]).toBeCloseTo(1.5);
    expect(caffe[15]).toBeCloseTo(9 / 4);
    // TF 'same', 5 wide, kernel 3, stride 2: edge windows see 2 of 3 cells.
    const same = avgPoolCorrection([5, 5], [3, 3], [2, 2], { counted: [0, 0, 0, 0], uncounted: [1, 1, 1, 1] }, [3, 3]);
    expect([...same]).toEqual([9 / 4, 3 / 2, 9 / 4, 3 / 2, 1, 3 / 2, 9 / 4, 3 / 2, 9 / 4].map(Math.fround));
  });
});

// ---------------------------------------------------------------------------------------

describe('TF.js backend selection', () => {
  const notFound = (pkg: string) =>
    Object.assign(new Error(`Cannot find package '${pkg}' imported from /app/src/engines/tfjs-backend.ts`), { code: 'ERR_MODULE_NOT_FOUND' });

  /** Real modules, except the ones staged as missing or broken. */
  function importer(staged: Record<string, () => unknown>, seen: string[] = []): ModuleImporter {
    return async (specifier) => {
      seen.push(specifier);
      const stage = staged[specifier];
      return stage ? stage() : import(specifier);
    };
  }

  it('falls back with a note when tfjs-node-gpu is installed but CUDA is missing', async () => {
    const backend = await loadTfBackend(
      'gpu',
      importer({
        '@tensorflow/tfjs-node-gpu': () => {
          throw Object.assign(new Error('libcudart.so.11.0: cannot open shared object file: No such file or directory'), {
            code: 'ERR_DLOPEN_FAILED',
          });
        },
        '@tensorflow/tfjs-node': () => {
          throw notFound('@tensorflow/tfjs-node');
        },
      }),
    );
    expect(backend.provider).toBe('wasm');
    expect(backend.notes).toEqual([
      'tfjs-node-gpu is installed but cannot load (libcudart.so.11.0: cannot open shared object file); needs CUDA 11.2 and cuDNN 8.1 — using the wasm backend (single-threaded under Node)',
      'tfjs-node is not installed — using the wasm backend (single-threaded under Node)',
    ]);
  });

  it('groups missing packages in one note and skips the GPU package for device cpu', async () => {
    const missing = { '@tensorflow/tfjs-node-gpu': () => { throw notFound('@tensorflow/tfjs-node-gpu'); }, '@tensorflow/tfjs-node': () => { throw notFound('@tensorflow/tfjs-node'); } };
    const auto = await loadTfBackend('auto', importer(missing));
    expect(auto.notes).toEqual(['tfjs-node-gpu and tfjs-node are not installed — using the wasm backend (single-threaded under Node)']);
    const seen: string[] = [];
    const cpu = await loadTfBackend('cpu', importer(missing, seen));
    expect(seen).not.toContain('@tensorflow/tfjs-node-gpu');
    expect(cpu.notes).toEqual(['tfjs-node is not installed — using the wasm backend (single-threaded under Node)']);
  });

  it('treats a package whose own dependency is missing, or whose backend fails, as broken', async () => {
    const { tf } = await tfBackend('auto');
    const backend = await loadTfBackend(
      'auto',
      importer({
        '@tensorflow/tfjs-node-gpu': () => {
          throw notFound('@tensorflow/tfjs-core');
        },
        // Loads, but registers no 'tensorflow' backend.
        '@tensorflow/tfjs-node': () => tf,
      }),
    );
    expect(backend.provider).toBe('wasm');
    expect(backend.notes).toEqual([
      "tfjs-node-gpu is installed but cannot load (Cannot find package '@tensorflow/tfjs-core' imported from /app/src/engines/tfjs-backend.ts) — using the wasm backend (single-threaded under Node)",
      "tfjs-node is installed but cannot load (Backend name 'tensorflow' not found in registry) — using the wasm backend (single-threaded under Node)",
    ]);
  });

  it("ends on TF.js' cpu backend when wasm cannot load either", async () => {
    const { tf } = await tfBackend('auto');
    try {
      const backend = await loadTfBackend(
        'cpu',
        importer({
          '@tensorflow/tfjs-node': () => {
            throw notFound('@tensorflow/tfjs-node');
          },
          '@tensorflow/tfjs-backend-wasm': () => ({}),
        }),
      );
      expect(backend.provider).toBe('cpu');
      expect(backend.notes).toEqual([
        "the wasm backend (single-threaded under Node) failed: @tensorflow/tfjs-backend-wasm does not export setWasmPaths — using TF.js' plain-JavaScript cpu backend (slow)",
        "tfjs-node is not installed — using TF.js' plain-JavaScript cpu backend (slow)",
      ]);
    } finally {
      await tf.setBackend('wasm');
    }
  });
});
