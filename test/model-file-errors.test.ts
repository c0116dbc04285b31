/**
 * Model files the tool cannot use end in one line that names the file and the reason, exit 2,
 * never a stack trace: a model with a layer class the graph cannot express, a model.json whose
 * weights file is missing or short, and a Keras h5 whose layer names are not the backbone's.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeKerasH5 } from '../src/backbones/weights/keras-h5-writer.ts';
import { makeDataset } from './helpers/make-dataset.ts';
import { runCli, type CliResult } from './helpers/cli.ts';
import { hasSharedModels, NEEDS_SHARED_MODELS, SHARED_MODELS } from './helpers/shared.ts';

let root: string;
let data: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-model-errors-'));
  data = path.join(root, 'data');
  await makeDataset(data, { classes: ['a', 'b'], perClass: 2 });
});
afterAll(async () => rm(root, { recursive: true, force: true }));

function expectOneLine(r: CliResult, ...patterns: RegExp[]): void {
  expect(r.code).toBe(2);
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('npm warn'));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).not.toMatch(/\n\s+at /);
  for (const p of patterns) expect(lines[0]).toMatch(p);
}

const extract = (backbone: string, ...more: string[]) => runCli(['extract', data, '--backbone', backbone, '--cache', path.join(root, 'cache'), ...more]);

describe.skipIf(!hasSharedModels)(`model files bottleneck cannot use${NEEDS_SHARED_MODELS}`, () => {
  const TM = path.join(SHARED_MODELS, 'teachable-machine');

  async function tmCopy(name: string, edit?: (json: { modelTopology: unknown }) => void): Promise<string> {
    const dir = path.join(root, name);
    await mkdir(dir, { recursive: true });
    const json = JSON.parse(await readFile(path.join(TM, 'model.json'), 'utf8')) as { modelTopology: unknown };
    edit?.(json);
    await writeFile(path.join(dir, 'model.json'), JSON.stringify(json));
    await copyFile(path.join(TM, 'metadata.json'), path.join(dir, 'metadata.json'));
    return dir;
  }

  it('a layer class the graph cannot express: the file, the layer and its class', async () => {
    const dir = await tmCopy('unknown-layer', (json) => {
      const text = JSON.stringify(json.modelTopology).replace('"class_name":"ZeroPadding2D"', '"class_name":"FancyPadding2D"');
      json.modelTopology = JSON.parse(text);
    });
    await copyFile(path.join(TM, 'weights.bin'), path.join(dir, 'weights.bin'));
    expectOneLine(await extract(path.join(dir, 'model.json')), /unknown-layer\/model\.json/, /layer 'Conv1_pad' \(FancyPadding2D\)/, /not supported/);
  });

  it('a model.json whose weights file is missing', async () => {
    const dir = await tmCopy('no-weights');
    expectOneLine(await extract(path.join(dir, 'model.json')), /no-weights\/model\.json/, /weights\.bin/, /no such file/);
  });

  it('a model.json whose weights file is short', async () => {
    const dir = await tmCopy('short-weights');
    await copyFile(path.join(TM, 'weights.bin'), path.join(dir, 'weights.bin'));
    await truncate(path.join(dir, 'weights.bin'), 1_000_000);
    expectOneLine(await extract(path.join(dir, 'model.json')), /short-weights\/model\.json/, /weights\.bin looks short \(1000000 bytes/);
  });
});

describe('Keras h5 files bottleneck cannot use', () => {
  it("an h5 with other layer names than the backbone's: the file and the layer it lacks", async () => {
    const file = path.join(root, 'wrong-names.h5');
    const tensor = (shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    await writeKerasH5(file, [{ name: 'conv_a', kernel: tensor([3, 3, 3, 32]) }, { name: 'bn_a', variables: [{ name: 'gamma', tensor: tensor([32]) }] }]);
    expectOneLine(await extract('mobilenet_v2', '--weights', file), /wrong-names\.h5/, /no tensor 'Conv1\/kernel' for layer 'Conv1' of mobilenetv2_1\.00_224/);
  });

  it('a named backbone whose weights are nowhere and may not be downloaded: what to fetch, its md5, where to put it', async () => {
    const r = await runCli(['extract', data, '--backbone', 'resnet50', '--cache', path.join(root, 'cache')], {
      env: { BOTTLENECK_WEIGHTS: path.join(root, 'empty-weights'), BOTTLENECK_WEIGHTS_URL: 'http://127.0.0.1:9/none' },
    });
    expectOneLine(r, /resnet50_weights_tf_dim_ordering_tf_kernels_notop\.h5/, /md5 4d473c1dd8becc155b73f8504c6f6626/, /empty-weights/);
  });
});
