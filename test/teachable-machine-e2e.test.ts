/**
 * A Teachable Machine export end to end through the CLI, as a user would run it, on real
 * dogs-vs-cats photos: extract → train-head → evaluate → predict (the head trained here, and the
 * export as it is) → export --format teachable-machine, whose folder tfjs-layers loads (over
 * 127.0.0.1 HTTP) and which gives the probabilities predict gave.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { preprocessInto } from '../src/backbones/preprocess.ts';
import { teachableMachinePreprocessing } from '../src/backbones/teachable-machine.ts';
import { decodeImage } from '../src/extract/decode-image.ts';
import { runCli } from './helpers/cli.ts';
import { hasSharedDatasets, hasSharedModels, NEEDS_SHARED_DATASETS, NEEDS_SHARED_MODELS, SHARED_DATASETS, SHARED_MODELS } from './helpers/shared.ts';
import { serveFolder } from './helpers/static-server.ts';

const tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-tm-e2e-'));
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe.skipIf(!hasSharedModels || !hasSharedDatasets)(`Teachable Machine end to end${NEEDS_SHARED_MODELS}${NEEDS_SHARED_DATASETS}`, () => {
  it('extract, train-head, evaluate, predict, export --format teachable-machine', async () => {
    const data = path.join(tmp, 'dogs-vs-cats');
    for (const [split, count] of [['train', 20], ['validation', 10]] as const) {
      for (const label of ['cats', 'dogs']) {
        await mkdir(path.join(data, split, label), { recursive: true });
        const from = path.join(SHARED_DATASETS, 'dogs-vs-cats', split, label);
        for (const f of (await readdir(from)).sort().slice(0, count)) await symlink(path.join(from, f), path.join(data, split, label, f));
      }
    }
    const model = path.join(SHARED_MODELS, 'teachable-machine', 'model.json');
    const cache = path.join(tmp, 'cache');
    const extract = await runCli(['extract', data, '--backbone', model, '--resize', 'crop', '--cache', cache, '--json']);
    expect(extract.code, extract.stderr).toBe(0);
    const summary = JSON.parse(extract.stdout.trim().split('\n').at(-1)!) as { key: string; images: number };
    expect(summary.images).toBe(60);

    const head = path.join(tmp, 'head');
    const train = await runCli(['train-head', summary.key, '--cache', cache, '--out', head, '--epochs', '20', '--json']);
    expect(train.code, train.stderr).toBe(0);

    const evaluate = await runCli(['evaluate', '--head', head, '--cache', cache, '--json']);
    expect(evaluate.code, evaluate.stderr).toBe(0);
    const report = JSON.parse(evaluate.stdout) as { metrics: { accuracy: number } };
    expect(report.metrics.accuracy).toBeGreaterThan(0.7);

    const photo = path.join(data, 'validation', 'dogs', (await readdir(path.join(data, 'validation', 'dogs'))).sort()[0]);
    const predict = await runCli(['predict', photo, '--head', head, '--cache', cache, '--json', '--top-k', '2']);
    expect(predict.code, predict.stderr).toBe(0);
    const predicted = JSON.parse(predict.stdout.trim()) as { top: { label: string; probability: number }[] };
    const own = await runCli(['predict', photo, '--backbone', model, '--own', '--cache', cache, '--json']);
    expect(own.code, own.stderr).toBe(0);
    expect((JSON.parse(own.stdout.trim()) as { top: { label: string }[] }).top.map((t) => t.label).sort()).toEqual(['가위', '주먹']);

    const out = path.join(tmp, 'tm-export');
    const exported = await runCli(['export', '--head', head, '--format', 'teachable-machine', '--out', out]);
    expect(exported.code, exported.stderr).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['metadata.json', 'model.json', 'preprocessing.json', 'weights.bin']);
    const metadata = JSON.parse(await readFile(path.join(out, 'metadata.json'), 'utf8')) as { labels: string[]; imageSize: number };
    expect(metadata.labels).toEqual(['cats', 'dogs']);

    // The folder as a web page loads it, fed Teachable Machine's capture() of the same photo.
    const server = await serveFolder(tmp);
    try {
      await tf.setBackend('cpu');
      const layers = await tf.loadLayersModel(`${server.url}/tm-export/model.json`);
      const prep = teachableMachinePreprocessing([metadata.imageSize, metadata.imageSize]);
      const input = new Float32Array(metadata.imageSize * metadata.imageSize * 3);
      preprocessInto(await decodeImage(photo, { size: prep.size, resize: 'crop' }), prep, input);
      const y = layers.predict(tf.tensor4d(input, [1, ...prep.size, 3])) as tf.Tensor;
      const probabilities = Array.from(await y.data());
      for (const { label, probability } of predicted.top) expect(Math.abs(probabilities[metadata.labels.indexOf(label)] - probability)).toBeLessThan(1e-4);
    } finally {
      await server.close();
    }
  }, 300_000);
});
