/**
 * The CLI a person expects: the main input positional in every command (the old flags still
 * work), heads that remember where their codes are, train-head from the dataset folder,
 * unlabeled folders, predict through the cache, --keep and --refit.
 */
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { makeDataset, writeNoisePng } from './helpers/make-dataset.ts';

let tmp: string;
let data: string;
let cache: string;
let head: string;
const TINY = ['--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'cpu'];
/** train-head names codes by the options that decide them; engine and device do not. */
const TINY_CODES = ['--backbone', 'tiny-vgg-random'];
/** A folder to run commands in that is not where the cache is: nothing may fall back to ./cache. */
let elsewhere: string;

async function ok(args: string[], cwd = elsewhere) {
  const r = await runCli(args, { cwd });
  expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-workflow-'));
  data = path.join(tmp, 'data');
  cache = path.join(tmp, 'codes');
  elsewhere = path.join(tmp, 'elsewhere');
  await mkdir(elsewhere);
  await makeDataset(data, { classes: ['a', 'b'], perClass: 12, splits: ['train', 'test'] });
  await ok(['extract', data, ...TINY, '--cache', cache]);
  head = path.join(tmp, 'head');
  await ok(['train-head', data, ...TINY_CODES, '--cache', cache, '--epochs', '3', '--out', head]);
}, 120_000);
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('positional inputs, and their old flags', () => {
  it('evaluate, export and fine-tune take the head positionally or as --head, without --cache', async () => {
    const positional = await ok(['evaluate', head, '--json']);
    const flag = await ok(['evaluate', '--head', head, '--json']);
    expect(JSON.parse(positional.stdout).metrics.accuracy).toBe(JSON.parse(flag.stdout).metrics.accuracy);
    await ok(['export', head, '--format', 'onnx', '--out', path.join(tmp, 'e1')]);
    await ok(['export', '--head', head, '--format', 'onnx', '--out', path.join(tmp, 'e2')]);
    expect(await readFile(path.join(tmp, 'e1', 'model.onnx'))).toEqual(await readFile(path.join(tmp, 'e2', 'model.onnx')));
    const tuned = await ok(['fine-tune', head, '--out', path.join(tmp, 'tuned'), '--epochs', '1', '--augment', '0', '--engine', 'onnx', '--device', 'cpu', '--json']);
    expect(tuned.stdout).toMatch(/"event":"summary"/);
  });

  it('sweep takes the data positionally or as --data', async () => {
    const args = [...TINY, '--cache', cache, '--layer', 'block1_pool,block2_pool', '--epochs', '2', '--json'];
    const a = JSON.parse((await ok(['sweep', data, ...args, '--out', path.join(tmp, 's1')])).stdout);
    const b = JSON.parse((await ok(['sweep', '--data', data, ...args, '--out', path.join(tmp, 's2')])).stdout);
    expect(a.rows.map((r: { valAcc: number }) => r.valAcc)).toEqual(b.rows.map((r: { valAcc: number }) => r.valAcc));
  });

  it('predict finds the head\'s codes without --cache', async () => {
    const r = await ok(['predict', '--head', head, path.join(data, 'test', 'a'), '--json']);
    expect(r.stdout.trim().split('\n')).toHaveLength(12);
  });
});

describe('train-head from the dataset folder', () => {
  it('finds the key extract wrote, and says which extract to run when codes are missing or stale', async () => {
    const config = JSON.parse(await readFile(path.join(head, 'head.json'), 'utf8'));
    expect(config.cacheRoot).toBe(cache);
    expect(config.dataset).toBe('data');

    const other = await runCli(['train-head', data, ...TINY_CODES, '--layer', 'block2_conv1', '--cache', cache, '--out', path.join(tmp, 'h-missing')]);
    expect(other.code).toBe(2);
    expect(other.stderr.trim()).toMatch(/no tiny-vgg-random block2_conv1 codes in .*: run `bottleneck extract .*data --backbone tiny-vgg-random --layer block2_conv1 .*--cache /);

    const changed = path.join(tmp, 'changed');
    await cp(data, changed, { recursive: true });
    await ok(['extract', changed, ...TINY, '--cache', cache]);
    await writeNoisePng(path.join(changed, 'train', 'a', 'new.png'), 31337);
    const stale = await runCli(['train-head', changed, ...TINY_CODES, '--cache', cache, '--out', path.join(tmp, 'h-stale')]);
    expect(stale.code).toBe(2);
    expect(stale.stderr.trim()).toMatch(/changed has changed since it was last extracted \(1 new, 0 gone\): run `bottleneck extract /);
  });
});

describe('unlabeled images', () => {
  it('a folder without class subfolders extracts with a null label, and predict scores it through the cache', async () => {
    const photos = path.join(tmp, 'photos');
    for (let i = 0; i < 5; i++) await writeNoisePng(path.join(photos, `p${i}.png`), 5000 + i);
    const extracted = await ok(['extract', photos, ...TINY, '--cache', cache, '--json']);
    expect(JSON.parse(extracted.stdout.trim().split('\n').pop()!)).toMatchObject({ images: 5, new: 5 });
    expect(extracted.stderr).toMatch(/5 images, 0 classes/);

    // Both heads on the same key: the images are computed once, by whichever runs first.
    const second = path.join(tmp, 'head-2');
    await ok(['train-head', data, ...TINY_CODES, '--cache', cache, '--epochs', '2', '--hidden', '8', '--out', second]);
    const first = await ok(['predict', '--head', head, photos]);
    expect(first.stderr).toMatch(/5 image\(s\), 0 new to the cache/);
    const more = path.join(tmp, 'more-photos');
    for (let i = 0; i < 3; i++) await writeNoisePng(path.join(more, `q${i}.png`), 6000 + i);
    expect((await ok(['predict', '--head', head, more])).stderr).toMatch(/3 image\(s\), 3 new to the cache/);
    expect((await ok(['predict', '--head', second, more, '--json'])).stderr).not.toMatch(/new to the cache/);
    const again = await ok(['predict', '--head', second, more]);
    expect(again.stderr).toMatch(/3 image\(s\), 0 new to the cache/);

    const evaluated = await runCli(['evaluate', head, '--data', photos], { cwd: elsewhere });
    expect(evaluated.code).toBe(2);
    expect(evaluated.stderr.trim()).toMatch(/no labelled rows to evaluate \(its 5 images have no label\)$/);
  });
});

describe('which epoch a head keeps', () => {
  it('--keep says which epoch it kept; --refit trains again on train + validation for the epoch count validation chose', async () => {
    const best = await ok(['train-head', data, ...TINY_CODES, '--cache', cache, '--epochs', '6', '--keep', 'best', '--out', path.join(tmp, 'h-best')]);
    expect(best.stdout).toMatch(/^kept epoch \d of 6 \(lowest validation loss\)/m);
    const last = await ok(['train-head', data, ...TINY_CODES, '--cache', cache, '--epochs', '6', '--keep', 'last', '--out', path.join(tmp, 'h-last')]);
    expect(last.stdout).toMatch(/^kept the last epoch, 6/m);

    const refit = await ok(['train-head', data, ...TINY_CODES, '--cache', cache, '--epochs', '6', '--refit', '--out', path.join(tmp, 'h-refit'), '--json']);
    const summary = JSON.parse(refit.stdout.trim().split('\n').pop()!);
    expect(summary.refit).toMatchObject({ rows: 24, validationRows: expect.any(Number) });
    const config = JSON.parse(await readFile(path.join(tmp, 'h-refit', 'head.json'), 'utf8'));
    expect(config.training.refit.epochs).toBe(summary.refit.epochs);
    // Evaluated on the test folder, never on the rows it was refit on.
    const evaluated = await ok(['evaluate', path.join(tmp, 'h-refit'), '--json']);
    expect(JSON.parse(evaluated.stdout).source).toMatch(/^test split/);
  });
});
