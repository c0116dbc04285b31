/**
 * extract against a generated corpus of hostile inputs (helpers/hostile-corpus.ts): it must
 * finish, give every decodable image exactly one row (with the code of its correctly decoded
 * pixels), and account for every other file in the errors table or in dataset.unlisted.
 */
import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preprocessInto } from '../src/backbones/preprocess.ts';
import { tinyRandomBackbone } from '../src/backbones/zoo/tiny-random.ts';
import { readErrorsTable, type FailedImage } from '../src/cache/errors-table.ts';
import { createOnnxEngine } from '../src/engines/onnx-engine.ts';
import { loadDataset } from '../src/extract/dataset.ts';
import { decodeImage, type DecodeOptions } from '../src/extract/decode-image.ts';
import { runExtract } from '../src/extract/run-extract.ts';
import { relativeError } from './helpers/compare.ts';
import { TEST_EXTRACT_DEFAULTS } from './helpers/extract-options.ts';
import { readRows } from './helpers/read-codes.ts';
import { makeHostileCorpus, type HostileKind } from './helpers/hostile-corpus.ts';
import { writeNoisePng } from './helpers/make-dataset.ts';
import { makeImage } from './helpers/make-images.ts';
import { REPO_ROOT } from './helpers/shared.ts';

const backbone = tinyRandomBackbone(3);
const CUT = { layer: 'block2_pool', pool: 'avg' } as const;
const SIZE = backbone.preprocessing.size;
const DIM = 16;
/** What runExtract passes to decodeImage, from the same options. */
const DECODE: DecodeOptions = {
  size: SIZE,
  resize: TEST_EXTRACT_DEFAULTS.resize,
  interpolation: TEST_EXTRACT_DEFAULTS.interpolation,
  background: { r: TEST_EXTRACT_DEFAULTS.background[0], g: TEST_EXTRACT_DEFAULTS.background[1], b: TEST_EXTRACT_DEFAULTS.background[2] },
};
const NOBODY = 65534;

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-hostile-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

const matches = (pattern: string | RegExp | undefined, value: string) => pattern === undefined || (typeof pattern === 'string' ? value === pattern : pattern.test(value));

describe('hostile inputs', () => {
  it('extract survives every kind: good images get one correct row, the rest are accounted for', { timeout: 60_000 }, async () => {
    const started = performance.now();
    const root = path.join(tmp, 'corpus');
    const kinds = await makeHostileCorpus(root);
    const made = performance.now();

    const dataset = await loadDataset(root);
    for (const k of kinds) if (k.deleteAfterScan) await rm(k.file);
    const cacheRoot = path.join(tmp, 'cache');
    const summary = await runExtract({
      items: dataset.items,
      dataset,
      backbone,
      cut: CUT,
      ...TEST_EXTRACT_DEFAULTS,
      batch: 4,
      concurrency: 2,
      cacheRoot,
    });
    const extracted = performance.now();

    const errors = await readErrorsTable(summary.path);
    const rows = await readRows(cacheRoot, summary.key);
    const itemPaths = dataset.items.map((i) => i.path);
    const problems = new Map<string, string[]>(kinds.map((k) => [k.kind, []]));
    const fail = (k: HostileKind, problem: string) => problems.get(k.kind)!.push(problem);

    // Decode every row's file again, for the kind's pixel check and to recompute its code.
    const decoded: { k: HostileKind; rgb: Uint8Array; row: number }[] = [];
    const errorOf = (p: string): FailedImage[] => errors.filter((e) => e.path === p);
    const rowsOf = (p: string): number[] => rows.paths.flatMap((q, i) => (q === p ? [i] : []));

    for (const k of kinds) {
      const asItem = itemPaths.filter((p) => p === k.path).length;
      const asError = errorOf(k.path);
      const asRow = rowsOf(k.path);
      const asUnlisted = dataset.unlisted.filter((u) => u.path === k.path);
      const where = `item ×${asItem}, error ×${asError.length}, row ×${asRow.length}, unlisted ×${asUnlisted.length}`;
      let outcome = k.expect;
      if (k.expect === 'decoded-or-skipped') {
        if (asRow.length + asError.length !== 1) fail(k, `wants one row or one error, got ${where}`);
        outcome = asRow.length ? 'decoded' : 'skipped';
      }
      switch (outcome) {
        case 'decoded': {
          if (asItem !== 1 || asRow.length !== 1 || asError.length || asUnlisted.length) {
            fail(k, `wants one row, got ${where}${asError.length ? `: ${asError[0].message}` : ''}`);
            break;
          }
          if (rows.labels[asRow[0]] !== k.label) fail(k, `row label ${rows.labels[asRow[0]]}, want ${k.label}`);
          const file = k.file as string;
          const rgb = await decodeImage(file, DECODE);
          if (rgb.length !== SIZE[0] * SIZE[1] * 3) fail(k, `decoded to ${rgb.length} bytes`);
          const off = (await k.check?.({ rgb, size: SIZE, file, decode: (f) => decodeImage(f, DECODE) })) ?? [];
          for (const o of off) fail(k, o);
          decoded.push({ k, rgb, row: asRow[0] });
          break;
        }
        case 'skipped': {
          if (asItem !== 1 || asError.length !== 1 || asRow.length || asUnlisted.length) {
            fail(k, `wants one error, got ${where}`);
            break;
          }
          const e = asError[0];
          if (!matches(k.reason, e.reason)) fail(k, `reason ${e.reason}, want ${String(k.reason)} (${e.message})`);
          if (e.label !== k.label) fail(k, `error label ${e.label}, want ${k.label}`);
          if (!e.message.includes(k.path)) fail(k, `message does not name the file: ${e.message}`);
          if (!matches(k.message, e.message)) fail(k, `message ${JSON.stringify(e.message)} does not match ${String(k.message)}`);
          const foreign = foreignWords(e.message);
          if (foreign) fail(k, `message carries words that are not about this file (${foreign}): ${e.message}`);
          break;
        }
        case 'unlisted': {
          if (asUnlisted.length !== 1 || asItem || asError.length || asRow.length) {
            fail(k, `wants to be unlisted once, got ${where}`);
            break;
          }
          if (!matches(k.reason, asUnlisted[0].reason)) fail(k, `unlisted reason ${JSON.stringify(asUnlisted[0].reason)}, want ${String(k.reason)}`);
          break;
        }
        case 'not-an-item': {
          if (asItem || asError.length || asRow.length || asUnlisted.length) fail(k, `wants to be nowhere, got ${where}`);
          break;
        }
      }
    }

    // Nothing the corpus does not account for: no stray items (a followed symlink loop would
    // list the corpus again under bad/loop-dir/), errors, unlisted entries or rows.
    const known = new Set(kinds.map((k) => k.path));
    const strays = [
      ...itemPaths.filter((p) => !known.has(p)).map((p) => `item ${p}`),
      ...errors.filter((e) => !known.has(e.path)).map((e) => `error ${e.path}: ${e.reason}`),
      ...dataset.unlisted.filter((u) => !known.has(u.path)).map((u) => `unlisted ${u.path}: ${u.reason}`),
      ...rows.paths.filter((p) => !known.has(p)).map((p) => `row ${p}`),
    ];
    expect(strays, 'entries no kind accounts for').toEqual([]);
    expect(summary).toMatchObject({ images: dataset.items.length, failed: errors.length, interrupted: false });
    expect(summary.new + summary.reused + summary.failed).toBe(summary.images);
    expect(rows.paths).toHaveLength(decoded.length);

    // Each row holds the code of the pixels decodeImage gives for its file.
    const engine = await createOnnxEngine({ backbone, cuts: [CUT], device: 'cpu', cacheDir: cacheRoot });
    try {
      const [h, w] = SIZE;
      const input = new Float32Array(decoded.length * h * w * 3);
      decoded.forEach((d, i) => preprocessInto(d.rgb, backbone.preprocessing, input, i * h * w * 3));
      const [codes] = await engine.run(input, decoded.length);
      decoded.forEach((d, i) => {
        const err = relativeError(rows.codes.subarray(d.row * DIM, (d.row + 1) * DIM), codes.subarray(i * DIM, (i + 1) * DIM));
        if (!(err < 1e-4)) fail(d.k, `cached code differs from the code of its decoded pixels (relative error ${err})`);
      });
    } finally {
      await engine.dispose();
    }

    // As root, the mode-000 file above was read and decoded; read it as nobody too.
    const unprivileged = await unreadableAsNobody();
    const hostile = kinds.filter((k) => !k.control);
    const results = [
      ...hostile.map((k) => ({ kind: k.kind, expect: k.expect, problems: problems.get(k.kind)!, outcome: outcomeOf(k, errors, rows.paths, dataset.unlisted) })),
      ...(unprivileged ? [unprivileged] : []),
    ];
    const survived = results.filter((r) => r.problems.length === 0);
    const controlProblems = kinds.filter((k) => k.control).flatMap((k) => problems.get(k.kind)!.map((p) => `${k.kind}: ${p}`));

    for (const r of results) console.log(`  ${r.problems.length ? 'FAIL' : 'ok  '} ${r.kind.padEnd(38)} ${r.outcome}${r.problems.length ? ` — ${r.problems.join('; ')}` : ''}`);
    console.log(`hostile corpus: ${results.length} kinds tried, ${survived.length} survived`);
    const seconds = (t: number) => (t / 1000).toFixed(1);
    console.log(
      `hostile corpus: ${dataset.items.length} items, ${rows.paths.length} rows, ${errors.length} errors, ${dataset.unlisted.length} unlisted; ` +
        `made in ${seconds(made - started)} s, extracted in ${seconds(extracted - made)} s, ${seconds(performance.now() - started)} s in all`,
    );
    expect(controlProblems, 'the plain images').toEqual([]);
    expect(results.filter((r) => r.problems.length).map((r) => `${r.kind}: ${r.problems.join('; ')}`)).toEqual([]);
    expect(survived.length).toBe(results.length);
  });

  it('failure messages stay with their own file when bad files decode in parallel', { timeout: 30_000 }, async () => {
    // The same race as in extract, made likely: every damaged JPEG and PNG at once, a few rounds.
    const root = path.join(tmp, 'parallel');
    const kinds = (await makeHostileCorpus(root)).filter((k) => k.reason === 'corrupt');
    expect(kinds.length).toBeGreaterThanOrEqual(8);
    const mixed: string[] = [];
    const lostOwnWords: string[] = [];
    for (let round = 0; round < 8; round++) {
      const files = [...kinds, ...kinds].map((k) => k.file as string);
      const results = await Promise.all(files.map((f) => decodeImage(f, DECODE).then(() => `${f}: decoded`, (e: Error) => e.message)));
      for (const message of results) {
        const foreign = foreignWords(message);
        if (foreign) mixed.push(`${message} [${foreign}]`);
        // sharp writes this prefix itself, so it must survive another thread's words after it
        // (which another PNG's failure may still add: the loader's tag cannot tell them apart).
        if (message.includes('width-zero.png') && !message.includes('(Input buffer has corrupt header')) lostOwnWords.push(message);
      }
    }
    expect(mixed).toEqual([]);
    expect(lostOwnWords).toEqual([]);
  });
});

/**
 * libvips' error buffer is shared by all threads, so a failing decode can report another
 * file's loader words or lose its own ("Unknown error"); decodeImage filters both out.
 */
function foreignWords(message: string): string | undefined {
  const m = /is a truncated or corrupt (JPEG|PNG|GIF|WebP|TIFF|AVIF) \((.*)\)$/.exec(message);
  if (!m) return /Unknown error/.test(message) ? 'Unknown error' : undefined;
  const tags: Record<string, RegExp> = { JPEG: /VipsJpeg:/, PNG: /vipspng:|spngload:/, GIF: /gifload:/, WebP: /webp2vips:|webpload:/, TIFF: /tiff2vips:/, AVIF: /heifload:/ };
  const other = Object.entries(tags).find(([name, tag]) => name !== m[1] && tag.test(m[2]));
  if (other) return `${other[0]} loader`;
  if (/Unknown error|timeout:/.test(m[2])) return m[2];
  return undefined;
}

function outcomeOf(k: HostileKind, errors: readonly FailedImage[], rowPaths: readonly string[], unlisted: readonly { path: string; reason: string }[]): string {
  const e = errors.find((x) => x.path === k.path);
  if (e) return `skipped: ${e.reason} — ${e.message}`;
  if (rowPaths.includes(k.path)) return 'decoded';
  const u = unlisted.find((x) => x.path === k.path);
  if (u) return `unlisted: ${u.reason}`;
  return 'not an item';
}

/**
 * Root reads any file whatever its mode, so as root the permission check runs runExtract in a
 * child process with uid/gid nobody (libuv also drops the supplementary groups): a two-class
 * dataset with one good PNG and one mode-000 JPEG. Undefined when not root (the corpus itself
 * then holds the mode-000 file as a skipped kind) or where uids do not exist (Windows).
 */
async function unreadableAsNobody(): Promise<{ kind: string; expect: string; problems: string[]; outcome: string } | undefined> {
  if (process.getuid?.() !== 0 || process.platform === 'win32') return undefined;
  const kind = 'unreadable-permissions-as-nobody';
  const dir = path.join(tmp, 'unprivileged');
  const data = path.join(dir, 'data');
  const cacheRoot = path.join(dir, 'cache');
  await writeNoisePng(path.join(data, 'good', 'ok.png'), 77);
  const locked = (await makeImage(path.join(data, 'bad'), 'jpeg', { name: 'locked.jpg' })).path;
  await chmod(locked, 0o000);
  // Its own TMPDIR too, so tsx's cache lands in this test's folder.
  const childTmp = path.join(dir, 'tmp');
  for (const d of [cacheRoot, childTmp]) {
    await mkdir(d, { recursive: true });
    await chown(d, NOBODY, NOBODY);
  }
  // mkdtemp made tmp 0700; nobody must reach the data and the cache.
  await chmod(tmp, 0o755);
  const script = path.join(dir, 'extract-as-nobody.mts');
  const src = (p: string) => JSON.stringify(new URL(p, `file://${REPO_ROOT}/`).href);
  await writeFile(
    script,
    `const { loadDataset } = await import(${src('src/extract/dataset.ts')});
const { runExtract } = await import(${src('src/extract/run-extract.ts')});
const { tinyRandomBackbone } = await import(${src('src/backbones/zoo/tiny-random.ts')});
const { TEST_EXTRACT_DEFAULTS } = await import(${src('test/helpers/extract-options.ts')});
const [data, cacheRoot] = process.argv.slice(2);
const dataset = await loadDataset(data);
const summary = await runExtract({ items: dataset.items, dataset, backbone: tinyRandomBackbone(3), cut: ${JSON.stringify(CUT)}, ...TEST_EXTRACT_DEFAULTS, cacheRoot });
console.log(JSON.stringify({ uid: process.getuid(), images: summary.images, new: summary.new, failures: summary.failures }));
`,
  );
  const run = await promisify(execFile)(process.execPath, ['--import', 'tsx', script, data, cacheRoot], {
    cwd: REPO_ROOT,
    uid: NOBODY,
    gid: NOBODY,
    env: { ...process.env, HOME: dir, TMPDIR: childTmp },
    timeout: 40_000,
  }).then(
    (r) => r,
    (err: NodeJS.ErrnoException & { stderr?: string }) => {
      if (err.code === 'EPERM') return undefined; // no CAP_SETUID in this container: cannot drop privileges
      throw new Error(`extract as nobody failed: ${err.message}\n${err.stderr ?? ''}`, { cause: err });
    },
  );
  if (!run) {
    console.log(`  ${kind}: skipped, this root cannot switch to uid ${NOBODY}`);
    return undefined;
  }
  const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { uid: number; images: number; new: number; failures: FailedImage[] };
  const problems: string[] = [];
  if (result.uid !== NOBODY) problems.push(`child ran as uid ${result.uid}`);
  if (result.images !== 2 || result.new !== 1) problems.push(`wants 2 images and 1 new row, got ${result.images} and ${result.new}`);
  const f = result.failures.find((x) => x.path === 'bad/locked.jpg');
  if (!f) problems.push(`bad/locked.jpg is not in the failures: ${JSON.stringify(result.failures)}`);
  else {
    if (f.reason !== 'unreadable') problems.push(`reason ${f.reason}, want unreadable`);
    if (!/bad\/locked\.jpg: cannot be read: permission denied/.test(f.message)) problems.push(`message ${JSON.stringify(f.message)}`);
  }
  return { kind, expect: 'skipped', problems, outcome: f ? `skipped: ${f.reason} — ${f.message} (as uid ${result.uid})` : 'not skipped' };
}
