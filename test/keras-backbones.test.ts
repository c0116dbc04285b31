/**
 * The keras.applications backbones against genuine Keras (3.15, tensorflow-cpu 2.21), through
 * the fixtures test/reference/keras_backbones.py wrote (see test/reference/README.md):
 * - structure: Keras' own model.to_json() read back by bottleneck's topology reader is, node
 *   for node, the graph bottleneck builds; every layer's output shape and its weights (names,
 *   shapes, order) are Keras'.
 * - parity: with the seeded weights bottleneck's h5 writer gave Keras, both engines' codes at
 *   the default cut on two real photos are within 1e-4 of Keras' (Keras' preprocess_input on
 *   the same pixels on its side, bottleneck's own preprocessing on this one).
 * No Python is needed to run these.
 */
import { readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { GraphBackbone } from '../src/backbones/backbone.ts';
import { planGraph } from '../src/backbones/graph-plan.ts';
import { kerasLayerOrder } from '../src/backbones/keras-order.ts';
import { graphFromKerasTopology } from '../src/backbones/keras-topology.ts';
import { hasWeights, resolveLayer, validateGraph, type LayerNode } from '../src/backbones/layer-graph.ts';
import { preprocessInto } from '../src/backbones/preprocess.ts';
import { weightSlots } from '../src/backbones/weight-slots.ts';
import { KERAS_APPLICATIONS, kerasPreprocessing, type KerasApplicationName } from '../src/backbones/zoo/keras-applications.ts';
import { seededWeights } from '../src/backbones/zoo/random-weights.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { createTfjsEngine } from '../src/engines/tfjs-engine.ts';
import { relativeError } from './helpers/compare.ts';
import { KERAS_SEED, referenceGraph } from './reference/keras-reference.ts';

const FIXTURES = path.join(import.meta.dirname, 'reference', 'keras');
const NAMES = Object.keys(KERAS_APPLICATIONS) as KerasApplicationName[];

interface KerasLayerEntry {
  readonly class_name: string;
  readonly name: string;
  readonly output_shape: readonly (number | null)[];
  readonly weights: readonly [string, readonly number[]][];
}

const layersJson = (name: string) => JSON.parse(readFileSync(path.join(FIXTURES, `${name}.layers.json`), 'utf8')) as { config: { layers: KerasLayerEntry[] } };

/** Node fields in a fixed key order, so two nodes compare as values. */
const canonical = (node: LayerNode) => JSON.stringify(node, (_k, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v));

describe('keras.applications structure: the graphs are Keras\' own', () => {
  it.each(NAMES)('%s: the same layers, inputs and configs as Keras\' model.to_json()', (name) => {
    const ours = referenceGraph(name);
    validateGraph(ours);
    const { graph: keras } = graphFromKerasTopology(layersJson(name));
    expect(ours.nodes.map((n) => n.name).sort()).toEqual(keras.nodes.map((n) => n.name).sort());
    const byName = new Map(keras.nodes.map((n) => [n.name, canonical(n)]));
    for (const node of ours.nodes) expect(canonical(node), node.name).toBe(byName.get(node.name));
    // Keras lists (and loads h5 weights by) its own layer order, which bottleneck's h5 files follow.
    expect(kerasLayerOrder(ours, 'predictions').map((n) => n.name)).toEqual(layersJson(name).config.layers.map((l) => l.name));
  });

  it.each(NAMES)("%s: every layer's output shape, and its weights' names, shapes and order", (name) => {
    const spec = KERAS_APPLICATIONS[name];
    const graph = referenceGraph(name);
    const plan = planGraph(graph, spec.size, ['predictions']);
    const steps = new Map(plan.steps.map((s) => [s.node.name, s]));
    let weights = 0;
    for (const layer of layersJson(name).config.layers) {
      expect([...plan.shapes.get(layer.name)!], layer.name).toEqual(layer.output_shape.slice(1));
      const step = steps.get(layer.name)!;
      if (!hasWeights(step.node)) {
        expect(layer.weights).toEqual([]);
        continue;
      }
      const ours = weightSlots(step.node, step.inShape[step.inShape.length - 1])
        .filter((s) => s.inKeras)
        .map((s) => {
          const shape = s.key === null ? s.shape : s.toKeras({ shape: s.shape, data: new Float32Array(s.shape.reduce((a, b) => a * b, 1)) }).shape;
          // Keras 3 names a DepthwiseConv2D's kernel `kernel`; Keras 2 files, `depthwise_kernel`.
          const variable = layer.class_name === 'DepthwiseConv2D' && s.keras === 'depthwise_kernel' ? 'kernel' : s.keras;
          return [`${layer.name}/${variable}`, [...shape]];
        });
      expect(ours, layer.name).toEqual(layer.weights);
      weights += ours.length;
    }
    expect(weights).toBeGreaterThan(0);
  });

  it.each(NAMES)('%s: its default cut and named cuts are layers of the graph', (name) => {
    const spec = KERAS_APPLICATIONS[name];
    const graph = spec.graph();
    for (const cut of [spec.defaultCut.layer, ...spec.namedCuts, ...spec.topNodes]) expect(() => resolveLayer(graph, cut)).not.toThrow();
  });

  it("efficientnet_b0 for ImageNet weights is Keras' graph plus the Rescaling by 1/sqrt(stddev) Keras adds for them", () => {
    const imagenet = KERAS_APPLICATIONS.efficientnet_b0.graph();
    const plain = referenceGraph('efficientnet_b0');
    const extra = imagenet.nodes.filter((n) => !plain.nodes.some((m) => m.name === n.name));
    expect(extra).toHaveLength(1);
    expect(extra[0]).toMatchObject({ op: 'rescale', inputs: ['normalization'] });
    expect((extra[0] as unknown as { scale: number[] }).scale.map((s) => Number(s.toFixed(4)))).toEqual([2.0897, 2.1129, 2.1082]);
  });
});

interface OutputsMeta {
  readonly input_size: number;
  readonly layer: string;
  readonly pool: 'avg' | null;
  readonly shape: readonly number[];
  readonly images: number;
  readonly keras_version: string;
}

describe('keras.applications parity: both engines within 1e-4 of Keras', () => {
  const cacheDir = path.join(os.tmpdir(), `bottleneck-keras-parity-${process.pid}`);
  afterAll(async () => rm(cacheDir, { recursive: true, force: true }));

  it.each(NAMES)('%s at its default cut on two real photos', async (name) => {
    const meta = JSON.parse(readFileSync(path.join(FIXTURES, `${name}.outputs.json`), 'utf8')) as OutputsMeta;
    const expected = new Float32Array(readFileSync(path.join(FIXTURES, `${name}.outputs.bin`)).buffer.slice(0));
    const spec = KERAS_APPLICATIONS[name];
    expect(meta.layer).toBe(spec.defaultCut.layer);
    expect(meta.pool ?? undefined).toBe('pool' in spec.defaultCut ? spec.defaultCut.pool : undefined);
    const graph = referenceGraph(name);
    const backbone: GraphBackbone = {
      id: name,
      graph,
      weights: seededWeights(graph, spec.size, KERAS_SEED, [spec.defaultCut.layer]),
      preprocessing: kerasPreprocessing(spec.mode, spec.size),
      defaultCut: spec.defaultCut,
      namedCuts: [],
      weightsId: `keras-reference-seed-${KERAS_SEED}`,
      weightsFrom: 'seeded',
    };
    const [h, w] = spec.size;
    const pixels = readFileSync(path.join(FIXTURES, `images-${meta.input_size}.u8`));
    const input = new Float32Array(meta.images * h * w * 3);
    for (let i = 0; i < meta.images; i++) preprocessInto(pixels.subarray(i * h * w * 3, (i + 1) * h * w * 3), backbone.preprocessing, input, i * h * w * 3);
    const errors: string[] = [];
    for (const create of [createOnnxEngine, createTfjsEngine]) {
      const engine = await create({ backbone, cuts: [spec.defaultCut], device: 'cpu', cacheDir });
      try {
        expect(engine.outputs[0].shape).toEqual(meta.shape);
        const [codes] = await engine.run(input, meta.images);
        const error = relativeError(codes, expected);
        errors.push(`${engine.name} ${error.toExponential(2)}`);
        expect(error, `${name} on ${engine.name}`).toBeLessThan(1e-4);
      } finally {
        await engine.dispose();
      }
    }
    console.log(`${name} (${meta.shape.join('×')}) vs Keras ${meta.keras_version}: relative error ${errors.join(', ')}`);
  });
});

describe('keras.applications weights as users have them', () => {
  const dir = path.join(os.tmpdir(), `bottleneck-keras-weights-${process.pid}`);
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it("mobilenet_v2: Keras' notop h5 file name in the weights folder, and a TF.js folder converted from it, bind the same weights", async () => {
    const { writeKerasH5, toKerasLayers } = await import('../src/backbones/weights/keras-h5-writer.ts');
    const { exportTfjs } = await import('../src/predict/export-tfjs.ts');
    const { loadGraphBackbone } = await import('../src/backbones/zoo.ts');
    const spec = KERAS_APPLICATIONS.mobilenet_v2;
    const graph = spec.graph();
    const weights = seededWeights(graph, spec.size, 5, ['out_relu']);
    const h5Dir = path.join(dir, 'h5');
    await mkdir(h5Dir, { recursive: true });
    await writeKerasH5(path.join(h5Dir, spec.notop.file), toKerasLayers(graph, weights, 'out_relu'));
    const fromH5 = await loadGraphBackbone('mobilenet_v2', { weightsDir: h5Dir, download: false });
    expect(fromH5.weightsFrom).toBe(path.join(h5Dir, spec.notop.file));

    const tfjsDir = path.join(dir, 'tfjs');
    await exportTfjs({ ...fromH5 }, 'out_relu', path.join(tfjsDir, 'mobilenet_v2'));
    const fromTfjs = await loadGraphBackbone('mobilenet_v2', { weightsDir: tfjsDir, download: false });
    expect(fromTfjs.weightsFrom).toBe(path.join(tfjsDir, 'mobilenet_v2', 'model.json'));

    for (const [key, t] of weights) {
      expect(fromH5.weights.get(key)?.data, key).toEqual(t.data);
      expect(fromTfjs.weights.get(key)?.data, key).toEqual(t.data);
    }
  });
});
