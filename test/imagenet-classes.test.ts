/**
 * ImageNet class names for `predict --imagenet`, as Keras' decode_predictions gets them:
 * imagenet_class_index.json downloaded once (md5-checked) into the weights folder, then reused;
 * a local override in either format; generic `class N` names when nothing can be had.
 * A local server on 127.0.0.1 serves a class index the test makes.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { classIndexUrl, findImageNetClasses, IMAGENET_CLASS_INDEX, imagenetClasses } from '../src/predict/imagenet-classes.ts';
import { UsageError } from '../src/util/errors.ts';
import { NEEDS_SHARED_MODELS, hasSharedModels, SHARED_MODELS } from './helpers/shared.ts';

/** Keras' format, with made-up wnids and names: {"0": ["n00000000", "generated 0"], …}. */
const index = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [String(i), [`n${String(i).padStart(8, '0')}`, i === 281 ? 'tabby' : `generated ${i}`]]));
const served = Buffer.from(JSON.stringify(index));
const md5 = createHash('md5').update(served).digest('hex');

let server: http.Server;
let base: string;
const requests: string[] = [];
let tmp: string;
let weightsDir: string;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.url !== `/data/${IMAGENET_CLASS_INDEX.file}`) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': served.length }).end(served);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/data`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});
beforeEach(async () => {
  requests.length = 0;
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-classes-'));
  weightsDir = path.join(tmp, 'weights');
});
afterEach(() => rm(tmp, { recursive: true, force: true }));

function filesIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

async function usageError(promise: Promise<unknown>): Promise<UsageError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(UsageError);
  return error as UsageError;
}

describe('imagenetClasses', () => {
  it('downloads the class index once into the weights folder, then reuses it', async () => {
    const first = await imagenetClasses({ weightsDir, baseUrl: base, md5 });
    expect(first.origin).toBe('download');
    expect(first.classes).toHaveLength(1000);
    expect(first.classes[0]).toEqual({ wnid: 'n00000000', name: 'generated 0' });
    expect(first.classes[281]).toEqual({ wnid: 'n00000281', name: 'tabby' });
    expect(first.source).toContain(path.join(weightsDir, IMAGENET_CLASS_INDEX.file));
    expect(filesIn(weightsDir)).toEqual([IMAGENET_CLASS_INDEX.file]);
    expect(requests).toEqual([`/data/${IMAGENET_CLASS_INDEX.file}`]);

    const second = await imagenetClasses({ weightsDir, baseUrl: base, md5 });
    expect(second.origin).toBe('folder');
    expect(second.source).toBe(path.join(weightsDir, IMAGENET_CLASS_INDEX.file));
    expect(second.classes).toEqual(first.classes);
    expect(requests).toHaveLength(1);
    // The read-only lookup finds the same file.
    expect((await findImageNetClasses([weightsDir]))?.classes[281].name).toBe('tabby');
  });

  it('takes the URL from $BOTTLENECK_CLASSES_URL, as a folder or a .json URL', async () => {
    const saved = process.env.BOTTLENECK_CLASSES_URL;
    try {
      process.env.BOTTLENECK_CLASSES_URL = `${base}/${IMAGENET_CLASS_INDEX.file}`;
      expect((await imagenetClasses({ weightsDir, md5 })).origin).toBe('download');
      expect(requests).toHaveLength(1);
    } finally {
      if (saved === undefined) delete process.env.BOTTLENECK_CLASSES_URL;
      else process.env.BOTTLENECK_CLASSES_URL = saved;
    }
    expect(classIndexUrl('https://mirror.example/keras/')).toBe(`https://mirror.example/keras/${IMAGENET_CLASS_INDEX.file}`);
    expect(classIndexUrl('https://mirror.example/classes.json')).toBe('https://mirror.example/classes.json');
    expect(classIndexUrl(IMAGENET_CLASS_INDEX.url)).toBe(IMAGENET_CLASS_INDEX.url);
  });

  it('refuses a download with the wrong md5, leaves nothing behind, and falls back to generic names', async () => {
    // Keras' real md5, which the generated file does not have.
    const result = await imagenetClasses({ weightsDir, baseUrl: base });
    expect(requests).toHaveLength(1);
    expect(result.origin).toBe('generic');
    expect(result.classes).toHaveLength(1000);
    expect(result.classes[281]).toEqual({ wnid: null, name: 'class 281' });
    expect(result.source).toContain(`expected ${IMAGENET_CLASS_INDEX.md5}`);
    expect(result.source).toContain('--imagenet-classes FILE');
    expect(result.source).not.toContain('--weights');
    expect(result.source.split('\n')).toHaveLength(1);
    expect(filesIn(weightsDir)).toEqual([]);
  });

  it('falls back to generic names, saying how to fix it, when the server is unreachable or downloads are off', async () => {
    const unreachable = await imagenetClasses({ weightsDir, baseUrl: 'http://127.0.0.1:9' });
    expect(unreachable.origin).toBe('generic');
    expect(unreachable.classes.map((c) => c.name).slice(0, 2)).toEqual(['class 0', 'class 1']);
    expect(unreachable.classes.at(-1)?.name).toBe('class 999');
    expect(unreachable.source).toMatch(/could not download imagenet_class_index\.json from http:\/\/127\.0\.0\.1:9\/imagenet_class_index\.json \(.+\)/);
    expect(unreachable.source).toContain(`in ${weightsDir}, or pass --imagenet-classes FILE`);
    expect(filesIn(weightsDir)).toEqual([]);

    // fetch refuses port 9 itself ("bad port"); a port nobody listens on is a real refused connection.
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const refused = await imagenetClasses({ weightsDir, baseUrl: `http://127.0.0.1:${port}` });
    expect(refused.origin).toBe('generic');
    expect(refused.source).toMatch(/\(.*ECONNREFUSED.*\)/);
    expect(filesIn(weightsDir)).toEqual([]);

    const off = await imagenetClasses({ weightsDir, baseUrl: base, download: false });
    expect(off.origin).toBe('generic');
    expect(off.source).toMatch(/downloads are off/);
    expect(requests).toHaveLength(0);
  });

  it('uses a local override in either format, without downloading', async () => {
    const keras = path.join(tmp, 'index.json');
    await writeFile(keras, served);
    const fromKeras = await imagenetClasses({ file: keras, weightsDir, baseUrl: base, md5 });
    expect(fromKeras).toMatchObject({ origin: 'file', source: keras });
    expect(fromKeras.classes[281]).toEqual({ wnid: 'n00000281', name: 'tabby' });

    const names = path.join(tmp, 'names.json');
    await writeFile(names, JSON.stringify(Array.from({ length: 1000 }, (_, i) => `name ${i}`)));
    const fromNames = await imagenetClasses({ file: names, weightsDir, baseUrl: base, md5 });
    expect(fromNames).toMatchObject({ origin: 'file', source: names });
    expect(fromNames.classes[999]).toEqual({ wnid: null, name: 'name 999' });

    expect(requests).toHaveLength(0);
    expect(filesIn(weightsDir)).toEqual([]);
  });

  it('prefers imagenet-classes.json, and looks beside the loaded weights before the weights folder', async () => {
    const beside = path.join(tmp, 'beside');
    await mkdir(beside);
    await mkdir(weightsDir);
    await writeFile(path.join(weightsDir, IMAGENET_CLASS_INDEX.file), served);
    await writeFile(path.join(beside, 'imagenet-classes.json'), JSON.stringify(Array.from({ length: 1000 }, (_, i) => `beside ${i}`)));
    const found = await imagenetClasses({ weightsDir, alsoLookIn: [beside], baseUrl: base, md5 });
    expect(found).toMatchObject({ origin: 'folder', source: path.join(beside, 'imagenet-classes.json') });
    expect(found.classes[3].name).toBe('beside 3');
    expect((await findImageNetClasses([path.join(tmp, 'nowhere'), weightsDir]))?.classes[281].name).toBe('tabby');
    expect(requests).toHaveLength(0);
  });

  it('rejects a malformed override in one line naming the file and the problem', async () => {
    const cases: [string, string, RegExp][] = [
      ['short.json', JSON.stringify(Array.from({ length: 999 }, (_, i) => `n${i}`)), /an array of 999 entries, not 1000/],
      ['broken.json', '{"0": ["n01440764", "tench"],', /not valid JSON/],
      ['badkey.json', JSON.stringify({ ...index, '1000': ['n1', 'x'], '0': undefined }), /key "1000" is not an index from 0 to 999/],
      ['badentry.json', JSON.stringify({ ...index, '5': 'goldfish' }), /entry "5" is "goldfish", not \[wnid, name\]/],
      ['number.json', '42', /it holds number 42/],
      ['emptyname.json', JSON.stringify(Array.from({ length: 1000 }, (_, i) => (i === 7 ? '' : `n${i}`))), /entry 7 is "", not a class name/],
    ];
    for (const [name, text, problem] of cases) {
      const file = path.join(tmp, name);
      await writeFile(file, text);
      const error = await usageError(imagenetClasses({ file, weightsDir, baseUrl: base, md5 }));
      expect(error.message.startsWith(`${file}: `)).toBe(true);
      expect(error.message).toMatch(problem);
      expect(error.message.split('\n')).toHaveLength(1);
    }
    const missing = await usageError(imagenetClasses({ file: path.join(tmp, 'missing.json'), weightsDir }));
    expect(missing.message).toBe(`--imagenet-classes ${path.join(tmp, 'missing.json')}: no such file`);
    expect(requests).toHaveLength(0);
  });

  it.skipIf(!hasSharedModels)(`reads ../shared/models/imagenet-classes.json: 281 is tabby${NEEDS_SHARED_MODELS}`, async () => {
    const shared = await imagenetClasses({ weightsDir: SHARED_MODELS, download: false });
    expect(shared).toMatchObject({ origin: 'folder', source: path.join(SHARED_MODELS, 'imagenet-classes.json') });
    expect(shared.classes[0]).toEqual({ wnid: null, name: 'tench' });
    expect(shared.classes[281]).toEqual({ wnid: null, name: 'tabby' });
    expect(shared.classes[625].name).toBe('lifeboat');
    const override = await imagenetClasses({ file: path.join(SHARED_MODELS, 'imagenet-classes.json'), weightsDir });
    expect(override.classes[281].name).toBe('tabby');
  });
});
