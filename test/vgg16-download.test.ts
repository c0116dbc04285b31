/**
 * The VGG16 weights path as a user meets it: no weights in the folder, so they are downloaded
 * from an HTTP server (here a local one serving a Keras-layout h5 the test makes), resumed
 * after an interrupted transfer, md5-checked, and loaded.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toKerasLayers, writeKerasH5 } from '../src/backbones/weights/keras-h5-writer.ts';
import { KERAS_VGG16_FILES, loadGraphBackbone } from '../src/backbones/zoo.ts';
import { seededWeights } from '../src/backbones/zoo/random-weights.ts';
import { vgg16Graph } from '../src/backbones/zoo/vgg16.ts';

let tmp: string;
let h5: Buffer;
let server: http.Server;
let base: string;
const requests: { range: string | undefined }[] = [];
let mode: 'cut-halfway' | 'whole' | 'corrupt' = 'cut-halfway';
const weights = seededWeights(vgg16Graph(), [224, 224], 5, ['block5_pool']);

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-dl-'));
  const made = path.join(tmp, 'served.h5');
  await writeKerasH5(made, toKerasLayers(vgg16Graph(), weights, 'block5_pool'));
  h5 = await readFile(made);
  server = http.createServer((req, res) => {
    const range = req.headers.range;
    requests.push({ range });
    const start = range ? Number(/bytes=(\d+)-/.exec(range)![1]) : 0;
    const body = mode === 'corrupt' ? Buffer.concat([h5.subarray(0, 1000), Buffer.from('x'), h5.subarray(1001)]) : h5;
    res.writeHead(range ? 206 : 200, {
      'content-length': body.length - start,
      ...(range ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    });
    if (mode === 'cut-halfway') {
      res.write(body.subarray(start, start + Math.floor(body.length / 2)), () => res.destroy());
      return;
    }
    res.end(body.subarray(start));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('vgg16 weights download', () => {
  const md5 = () => createHash('md5').update(h5).digest('hex');
  const files = () => ({ notop: { file: KERAS_VGG16_FILES.notop.file, md5: md5() }, full: KERAS_VGG16_FILES.full });

  it('resumes an interrupted download, checks the md5, and loads the weights', async () => {
    const dir = path.join(tmp, 'weights');
    const load = () => loadGraphBackbone('vgg16', { weightsDir: dir, downloadBaseUrl: base, vgg16Files: files() });
    mode = 'cut-halfway';
    await expect(load()).rejects.toThrow(/could not download vgg16_weights_tf_dim_ordering_tf_kernels_notop\.h5/);
    expect(existsSync(path.join(dir, KERAS_VGG16_FILES.notop.file))).toBe(false);
    mode = 'whole';
    const backbone = await load();
    const resumed = requests[requests.length - 1].range;
    expect(resumed).toMatch(/^bytes=[1-9]\d*-$/);
    // Buffer.equals: a deep toEqual over 58 MB takes minutes.
    expect((await readFile(path.join(dir, KERAS_VGG16_FILES.notop.file))).equals(h5)).toBe(true);
    expect([...backbone.weights.get('block3_conv2.weight')!.data.subarray(0, 8)]).toEqual([...weights.get('block3_conv2.weight')!.data.subarray(0, 8)]);
  });

  it('never keeps a file whose md5 is wrong', async () => {
    const dir = path.join(tmp, 'weights-bad');
    mode = 'corrupt';
    await expect(loadGraphBackbone('vgg16', { weightsDir: dir, downloadBaseUrl: base, vgg16Files: files() })).rejects.toThrow(new RegExp(`md5.*${md5()}`));
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
  });
});
