/**
 * Fine-tuning a backbone with batch normalisation and depthwise convolutions: the Teachable
 * Machine MobileNetV2's last block (`--unfreeze block_16`) on a few dogs-vs-cats photos. Batch
 * norm stays frozen (its statistics and scale are not trained, as Keras recommends for transfer
 * learning); the block's convolutions, the depthwise one included, are trained. Plus the custom
 * depthwise gradients (wasm has no depthwise backprop kernels) against TF.js' own on the cpu backend.
 */
import { requireGraph } from '../src/backbones/backbone.ts';
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/backbones/weights/safetensors.ts';
import { loadGraphBackbone } from '../src/backbones/zoo.ts';
import { loadDataset } from '../src/extract/dataset.ts';
import { runExtract } from '../src/extract/run-extract.ts';
import { blockOf } from '../src/finetune/blocks.ts';
import { runFineTune } from '../src/finetune/finetune.ts';
import { depthwiseFilterGrad, depthwiseInputGrad } from '../src/finetune/trainable-net.ts';
import { headClassifier } from '../src/predict/classifier.ts';
import { loadHeadBackbone } from '../src/train-head/head-backbone.ts';
import { loadHead } from '../src/train-head/head-folder.ts';
import { runTrainHead } from '../src/train-head/train-command.ts';
import { relativeError } from './helpers/compare.ts';
import { TEST_EXTRACT_DEFAULTS } from './helpers/extract-options.ts';
import { hasSharedDatasets, hasSharedModels, NEEDS_SHARED_DATASETS, NEEDS_SHARED_MODELS, SHARED_DATASETS, SHARED_MODELS } from './helpers/shared.ts';

const tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-finetune-bn-'));
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('the pieces', () => {
  it('names blocks as Keras applications number them', () => {
    expect(['block_16_expand', 'Conv_1_bn', 'block7a_project_conv', 'conv5_block3_out', 'conv_pw_13_relu', 'block5_conv1', 'fire9/squeeze1x1', 'top_conv', 'mixed10'].map(blockOf)).toEqual([
      'block_16', 'Conv_1', 'block7a', 'conv5', 'conv_pw_13', 'block5', 'fire9', 'top', 'mixed10',
    ]);
  });

  it.each([
    [1, 1],
    [2, 1],
    [1, 2],
  ])('depthwise gradients (stride %i, multiplier %i) are what TF.js computes on the cpu backend', async (stride, multiplier) => {
    const previous = tf.getBackend();
    await tf.setBackend('cpu');
    try {
      const x = tf.randomNormal([2, 7, 6, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      const filter = tf.randomNormal([3, 3, 3, multiplier], 0, 1, 'float32', 2) as tf.Tensor4D;
      const y = tf.depthwiseConv2d(x, filter, stride, 'valid');
      const dy = tf.randomNormal(y.shape, 0, 1, 'float32', 3) as tf.Tensor4D;
      const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, 'valid'), dy)))([x, filter]);
      const ours = [depthwiseInputGrad(tf, dy, filter, x.shape, [stride, stride]), depthwiseFilterGrad(tf, x, dy, filter.shape, [stride, stride])];
      expect(relativeError((await ours[0].data()) as Float32Array, (await dx.data()) as Float32Array)).toBeLessThan(1e-5);
      expect(relativeError((await ours[1].data()) as Float32Array, (await dw.data()) as Float32Array)).toBeLessThan(1e-5);
      tf.dispose([x, filter, y, dy, dx, dw, ...ours]);
    } finally {
      if (previous) await tf.setBackend(previous);
    }
  });
});

describe('fine-tune with batch normalisation', () => {
  it.skipIf(!hasSharedModels || !hasSharedDatasets)(
    `the Teachable Machine MobileNetV2 --unfreeze block_16 on 32 + 16 dogs-vs-cats photos${NEEDS_SHARED_MODELS}${NEEDS_SHARED_DATASETS}`,
    async () => {
      const subset = path.join(tmp, 'dogs-vs-cats');
      const images = path.join(SHARED_DATASETS, 'dogs-vs-cats');
      for (const [split, count] of [['train', 16], ['validation', 8]] as const) {
        for (const label of ['cats', 'dogs']) {
          await mkdir(path.join(subset, split, label), { recursive: true });
          for (const f of (await readdir(path.join(images, split, label))).sort().slice(0, count)) await symlink(path.join(images, split, label, f), path.join(subset, split, label, f));
        }
      }
      const modelJson = path.join(SHARED_MODELS, 'teachable-machine', 'model.json');
      const backbone = await loadGraphBackbone(modelJson);
      const cacheRoot = path.join(tmp, 'cache');
      const dataset = await loadDataset(subset);
      const summary = await runExtract({ items: dataset.items, dataset, backbone, cut: backbone.defaultCut, ...TEST_EXTRACT_DEFAULTS, cacheRoot });
      const headDir = path.join(tmp, 'head');
      await runTrainHead({
        codes: summary.path, cacheRoot, out: headDir, hidden: [32], dropout: 0.5, optimizer: 'adam', momentum: 0, batch: 8, epochs: 10, l2: 0, classWeights: 'none',
        seed: 1, patience: null, val: 0.2, test: 0, trainer: 'onnx', standardize: false, json: true, quiet: true,
      });
      const out = path.join(tmp, 'tuned');
      const result = await runFineTune({ head: headDir, out, unfreeze: 'block_16', cacheRoot, epochs: 1, lr: 1e-4, momentum: 0.9, batch: 8, augment: 0, seed: 2, engine: 'onnx', device: 'cpu', quiet: true });
      expect(result.unfreeze.frozenCut).toBe('block_15_add');
      expect(result.unfreeze.weighted).toEqual(['block_16_expand', 'block_16_depthwise', 'block_16_project', 'Conv_1']);
      expect(result.history[0].valAcc).toBeGreaterThan(0.5);

      // The trained tensors are the convolutions' only: every batch norm kept its statistics.
      const { source } = await readSafetensors(path.join(out, 'backbone.safetensors'));
      const names = [...source.tensors.keys()];
      expect(names.sort()).toEqual(['Conv_1.bias', 'Conv_1.weight', 'block_16_depthwise.bias', 'block_16_depthwise.weight', 'block_16_expand.bias', 'block_16_expand.weight', 'block_16_project.bias', 'block_16_project.weight']);
      const changed = (key: string) => relativeError(source.tensors.get(key)!.data, backbone.weights.get(key)!.data);
      expect(changed('block_16_depthwise.weight')).toBeGreaterThan(0);
      expect(changed('Conv_1.weight')).toBeGreaterThan(0);

      // predict on the fine-tuned head runs the tuned backbone (and its frozen batch norms).
      const head = await loadHead(out);
      const tuned = requireGraph(await loadHeadBackbone(head), 'test');
      expect(tuned.weights.get('Conv_1_bn.mean')!.data).toEqual(backbone.weights.get('Conv_1_bn.mean')!.data);
      const classifier = await headClassifier(tuned, head, { engine: 'onnx', device: 'cpu', cacheDir: cacheRoot });
      await classifier.dispose();
    },
    300_000,
  );
});
