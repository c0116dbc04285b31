/**
 * Every command, fed bad input a user or the environment can cause: each must end with exit 1
 * or 2 and one line on stderr naming what is wrong, never a stack trace ("    at " frames) or a
 * silent exit 0.
 */
import { execFileSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { makeDataset } from './helpers/make-dataset.ts';

let tmp: string;
let data: string;
let cache: string;
let head: string;
let key: string;

const TINY = ['--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'cpu'];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-bad-'));
  data = path.join(tmp, 'data');
  cache = path.join(tmp, 'cache');
  await makeDataset(data, { classes: ['a', 'b'], perClass: 6 });
  const extracted = await runCli(['extract', data, ...TINY, '--cache', cache, '--json']);
  expect(extracted.code, extracted.stderr).toBe(0);
  key = (JSON.parse(extracted.stdout.trim().split('\n').pop()!) as { key: string }).key;
  head = path.join(tmp, 'head');
  const trained = await runCli(['train-head', path.join(cache, key), '--epochs', '2', '--out', head]);
  expect(trained.code, trained.stderr).toBe(0);

  const manifests = path.join(tmp, 'manifests');
  await mkdir(manifests);
  const img = (i: number) => path.join(data, 'a', `img000${i}.png`);
  await writeFile(path.join(manifests, 'fields.csv'), `path,label\n${img(0)},a\n${img(1)},a,train,extra\n`);
  await writeFile(path.join(manifests, 'null.jsonl'), `${JSON.stringify({ path: img(0), label: 'a' })}\nnull\n`);
  await writeFile(path.join(manifests, 'long.jsonl'), `${JSON.stringify({ path: img(0), label: 'a' })}\n${JSON.stringify({ path: 'x'.repeat(100_000), label: 'b' })}\n`);
  await writeFile(path.join(manifests, 'object-label.jsonl'), `${JSON.stringify({ path: img(0), label: { a: 1 } })}\n`);
  await writeFile(path.join(manifests, 'array-split.jsonl'), `${JSON.stringify({ path: img(0), label: 'a', split: ['train'] })}\n`);
  await writeFile(path.join(manifests, 'twice.csv'), `path,label\n${img(0)},a\n${img(0)},b\n`);

  const broken = (name: string) => path.join(tmp, 'heads', name);
  for (const name of ['null', 'no-spec', 'no-weights', 'short-weights', 'wrong-classes']) await cp(head, broken(name), { recursive: true });
  await writeFile(path.join(broken('null'), 'head.json'), 'null');
  const config = JSON.parse(await (await import('node:fs/promises')).readFile(path.join(head, 'head.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(path.join(broken('no-spec'), 'head.json'), JSON.stringify({ ...config, codeSpec: undefined }));
  await rm(path.join(broken('no-weights'), 'weights.safetensors'));
  await writeFile(path.join(broken('short-weights'), 'weights.safetensors'), Buffer.alloc(40));
  await writeFile(path.join(broken('wrong-classes'), 'head.json'), JSON.stringify({ ...config, classes: ['a', 'b', 'c'] }));

  const garbled = path.join(tmp, 'garbled-cache');
  await cp(cache, garbled, { recursive: true });
  await writeFile(path.join(garbled, key, 'spec.json'), '{"format": "bottleneck-codes/3", "backbone": 7}');
}, 120_000);
afterAll(() => rm(tmp, { recursive: true, force: true }));

/** [what, args, expected stderr pattern]. */
type Case = readonly [string, () => readonly string[], RegExp];

const cases: readonly Case[] = [
  ['extract --batch 0', () => ['extract', data, ...TINY, '--cache', cache, '--batch', '0'], /--batch 0: must be a whole number ≥ 1/],
  ['extract --batch abc', () => ['extract', data, ...TINY, '--cache', cache, '--batch', 'abc'], /--batch abc: must be a whole number/],
  ['extract --concurrency 0', () => ['extract', data, ...TINY, '--cache', cache, '--concurrency', '0'], /--concurrency 0/],
  ['extract --size 0', () => ['extract', data, ...TINY, '--cache', cache, '--size', '0'], /--size 0: use N or HxW with sides from 8/],
  ['extract --size 100000', () => ['extract', data, ...TINY, '--cache', cache, '--size', '100000'], /--size 100000/],
  ['extract --augment -1', () => ['extract', data, ...TINY, '--cache', cache, '--augment', '-1'], /--augment -1/],
  ['extract --flush-seconds x', () => ['extract', data, ...TINY, '--cache', cache, '--flush-seconds', 'x'], /--flush-seconds x/],
  ['extract --shard 3/2', () => ['extract', data, ...TINY, '--cache', cache, '--shard', '3/2'], /--shard 3\/2/],
  ['extract --background 300,0,0', () => ['extract', data, ...TINY, '--cache', cache, '--background', '300,0,0'], /--background/],
  ['extract --device gpu without a GPU', () => ['extract', data, '--backbone', 'tiny-vgg-random', '--engine', 'onnx', '--device', 'gpu', '--cache', path.join(tmp, 'gpu-cache')], /--device gpu: no GPU provider/],
  ['extract a CSV row with an extra field', () => ['extract', path.join(tmp, 'manifests', 'fields.csv'), ...TINY, '--cache', cache], /fields\.csv:3: .*(fields|columns)/i],
  ['extract a null JSONL line', () => ['extract', path.join(tmp, 'manifests', 'null.jsonl'), ...TINY, '--cache', cache], /null\.jsonl:2: each line must be a JSON object/],
  ['extract an over-long JSONL line', () => ['extract', path.join(tmp, 'manifests', 'long.jsonl'), ...TINY, '--cache', cache], /long\.jsonl:2: the line is over/],
  ['extract a label that is an object', () => ['extract', path.join(tmp, 'manifests', 'object-label.jsonl'), ...TINY, '--cache', cache], /object-label\.jsonl:1: 'label' must be a string/],
  ['extract a split that is an array', () => ['extract', path.join(tmp, 'manifests', 'array-split.jsonl'), ...TINY, '--cache', cache], /array-split\.jsonl:1: 'split' must be a string/],
  ['extract a path listed with two labels', () => ['extract', path.join(tmp, 'manifests', 'twice.csv'), ...TINY, '--cache', cache], /twice\.csv:3: .* is listed again with another label/],
  ['extract into a garbled spec.json', () => ['extract', data, ...TINY, '--cache', path.join(tmp, 'garbled-cache')], /spec\.json: not a code spec at backbone/],
  ['train-head --epochs 0', () => ['train-head', key, '--cache', cache, '--epochs', '0'], /--epochs 0: must be a whole number ≥ 1/],
  ['train-head --lr NaN', () => ['train-head', key, '--cache', cache, '--lr', 'NaN'], /--lr NaN: must be a number in \(0, 10\]/],
  ['train-head --lr -1', () => ['train-head', key, '--cache', cache, '--lr', '-1'], /--lr -1/],
  ['train-head --momentum 1', () => ['train-head', key, '--cache', cache, '--optimizer', 'sgd', '--momentum', '1'], /--momentum 1: must be a number in \[0, 1\)/],
  ['train-head --dropout 1', () => ['train-head', key, '--cache', cache, '--dropout', '1'], /--dropout 1/],
  ['train-head --val 1', () => ['train-head', key, '--cache', cache, '--val', '1'], /--val 1/],
  ['train-head --test -0.1', () => ['train-head', key, '--cache', cache, '--test', '-0.1'], /--test -0.1/],
  ['train-head --batch 0', () => ['train-head', key, '--cache', cache, '--batch', '0'], /--batch 0/],
  ['train-head --patience 0', () => ['train-head', key, '--cache', cache, '--patience', '0'], /--patience 0/],
  ['train-head --class-weights a=0', () => ['train-head', key, '--cache', cache, '--class-weights', 'a=0', '--epochs', '1', '--out', path.join(tmp, 'cw')], /--class-weights a=0: .*weights > 0/],
  ['train-head --hidden abc', () => ['train-head', key, '--cache', cache, '--hidden', 'abc'], /--hidden abc/],
  ['train-head --max-memory lots', () => ['train-head', key, '--cache', cache, '--max-memory', 'lots'], /--max-memory lots/],
  ['train-head on a path that is neither key nor data', () => ['train-head', path.join(tmp, 'nowhere'), '--cache', cache], /nowhere: no such folder or manifest/],
  ['train-head on data whose codes are not there', () => ['train-head', data, '--backbone', 'tiny-vgg-random', '--layer', 'block1_conv1', '--cache', cache], /no tiny-vgg-random block1_conv1 codes in .*: run `bottleneck extract /],
  ['train-head into a folder of other files', () => ['train-head', key, '--cache', cache, '--epochs', '1', '--out', data], /exists and is not a head folder/],
  ['evaluate a head.json that is null', () => ['evaluate', path.join(tmp, 'heads', 'null'), '--cache', cache], /head\.json: not a head/],
  ['evaluate a head.json without a code spec', () => ['evaluate', path.join(tmp, 'heads', 'no-spec'), '--cache', cache], /head\.json: not a head .* at codeSpec/],
  ['evaluate a head without weights', () => ['evaluate', path.join(tmp, 'heads', 'no-weights'), '--cache', cache], /weights\.safetensors is missing/],
  ['evaluate a head with cut-short weights', () => ['evaluate', path.join(tmp, 'heads', 'short-weights'), '--cache', cache], /weights\.safetensors/],
  ['evaluate a head.json whose classes disagree', () => ['evaluate', path.join(tmp, 'heads', 'wrong-classes'), '--cache', cache], /lists 3 classes, its architecture has 2 outputs/],
  ['evaluate --mistakes -1', () => ['evaluate', head, '--cache', cache, '--mistakes', '-1'], /--mistakes -1/],
  ['evaluate with no head', () => ['evaluate', '--cache', cache], /evaluate needs a head folder/],
  ['predict --top-k 0', () => ['predict', '--head', head, path.join(data, 'a'), '--top-k', '0'], /--top-k 0/],
  ['predict --batch x', () => ['predict', '--head', head, path.join(data, 'a'), '--batch', 'x'], /--batch x/],
  ['export into a folder of other files', () => ['export', head, '--format', 'onnx', '--out', data], /exists and is not an earlier export/],
  ['fine-tune --lr 0', () => ['fine-tune', head, '--out', path.join(tmp, 'ft'), '--lr', '0'], /--lr 0/],
  ['sweep --epochs 0', () => ['sweep', data, ...TINY, '--cache', cache, '--epochs', '0'], /--epochs 0/],
  ['advise --sample 0', () => ['advise', data, ...TINY, '--sample', '0'], /--sample 0/],
  ['cache export into an existing folder', () => ['cache', 'export', key, '--cache', cache, '--out', data], /already exists/],
  ['cache verify of a garbled key', () => ['cache', 'verify', key, '--cache', path.join(tmp, 'garbled-cache')], /DAMAGED|spec\.json/],
];

async function inBatches<T, R>(items: readonly T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

describe('every command on bad input', () => {
  it('exits 1 or 2 with one line on stderr that says what is wrong, and no stack trace', { timeout: 300_000 }, async () => {
    const results = await inBatches(cases, 4, async ([what, args, pattern]) => ({ what, pattern, r: await runCli(args(), { cwd: tmp }) }));
    const problems: string[] = [];
    for (const { what, pattern, r } of results) {
      const stderr = r.stderr.trim();
      // `cache verify` reports damage on stdout with exit 1; everything else is an error line.
      const text = what.startsWith('cache verify') ? `${r.stdout}${stderr}` : stderr;
      const lines = stderr.split('\n').filter((l) => l && !l.startsWith('note: ') && !l.startsWith('warning: '));
      if (r.code !== 1 && r.code !== 2) problems.push(`${what}: exit ${r.code}`);
      if (/^\s+at /m.test(r.stderr)) problems.push(`${what}: a stack trace:\n${r.stderr}`);
      if (!what.startsWith('cache verify') && lines.length !== 1) problems.push(`${what}: ${lines.length} lines on stderr:\n${stderr}`);
      if (!pattern.test(text)) problems.push(`${what}: ${JSON.stringify(text)} does not match ${pattern}`);
    }
    expect(problems).toEqual([]);
  });

  it('a read-only cache is one line naming the folder', async () => {
    const ro = path.join(tmp, 'ro');
    await mkdir(ro);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro], { stdio: 'pipe' });
    } catch {
      console.warn('skipped: cannot mount a read-only tmpfs here (needs root)');
      return;
    }
    try {
      const r = await runCli(['extract', data, ...TINY, '--cache', path.join(ro, 'cache')]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim()).toMatch(/^bottleneck: .*ro\/cache.*: the file system is read-only/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    } finally {
      execFileSync('umount', [ro]);
    }
  });
});
