import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  DecodeError,
  decodeImage,
  IMAGE_EXTENSIONS,
  readImageFile,
  sniffImageFormat,
  type DecodeErrorReason,
  type DecodeOptions,
} from '../src/extract/decode-image.ts';
import { IMAGE_KINDS, makeImage, makeImageSet, pixelAt, samplesOff, type MadeImage } from './helpers/make-images.ts';
import { SHARED_DATASETS } from './helpers/shared.ts';

let dir: string;
let made: Map<string, MadeImage>;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'decode-image-'));
  made = new Map((await makeImageSet(path.join(dir, 'set'))).map((m) => [m.kind, m]));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const image = (kind: string): MadeImage => {
  const m = made.get(kind);
  if (!m) throw new Error(`no made image of kind ${kind}`);
  return m;
};

/** Height ≠ width, so a swapped [h, w] shows. */
const SIZE = [40, 56] as const;

async function decodeError(promise: Promise<unknown>): Promise<DecodeError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a DecodeError').toBeInstanceOf(DecodeError);
  return err as DecodeError;
}

async function expectRejects(input: string | Buffer, reason: DecodeErrorReason, opts: Partial<DecodeOptions> = {}): Promise<DecodeError> {
  const err = await decodeError(decodeImage(input, { size: SIZE, ...opts }));
  expect(err.reason, err.message).toBe(reason);
  expect(err.name).toBe('DecodeError');
  if (typeof input === 'string') expect(err.message).toContain(input);
  return err;
}

describe('every kind from makeImageSet', () => {
  it.each(IMAGE_KINDS)('%s decodes to the expected pixels, or is rejected for the expected reason', async (kind) => {
    const m = image(kind);
    const e = m.expect;
    if (e.outcome === 'rejects') {
      await expectRejects(m.path, e.reason);
      return;
    }
    const started = performance.now();
    const result = await decodeImage(m.path, { size: SIZE }).then(
      (rgb) => ({ rgb }),
      (err: unknown) => ({ err }),
    );
    expect(performance.now() - started).toBeLessThan(2000);
    if ('err' in result) {
      if (e.outcome !== 'decodes-or-rejects') throw new Error(`unexpected failure: ${String(result.err)}`, { cause: result.err });
      expect(result.err).toBeInstanceOf(DecodeError);
      expect((result.err as DecodeError).reason).toBe(e.reason);
      return;
    }
    expect(result.rgb).toBeInstanceOf(Uint8Array);
    expect(result.rgb.length).toBe(SIZE[0] * SIZE[1] * 3);
    if (e.outcome === 'decodes') {
      expect(sniffImageFormat(await readFile(m.path))).toEqual({ kind: 'image', format: e.format });
      expect(samplesOff(result.rgb, SIZE, e.samples, e.tolerance)).toEqual([]);
    }
  });

  it('the same bytes decode identically from a Buffer', async () => {
    for (const kind of ['jpeg', 'png16', 'rgba', 'exif-rotated'] as const) {
      const m = image(kind);
      const fromPath = await decodeImage(m.path, { size: SIZE });
      const fromBuffer = await decodeImage(await readImageFile(m.path), { size: SIZE, source: m.path });
      expect(Buffer.from(fromBuffer).equals(Buffer.from(fromPath)), kind).toBe(true);
    }
  });

  it('the made files really are what they claim (checked with sharp metadata)', async () => {
    const meta = (kind: string) => sharp(image(kind).path).metadata();
    expect((await meta('exif-rotated')).orientation).toBe(6);
    expect((await meta('gif-animated')).pages).toBe(2);
    expect(await meta('grayscale')).toMatchObject({ channels: 1, space: 'b-w' });
    expect(await meta('cmyk')).toMatchObject({ channels: 4, space: 'cmyk' });
    expect(await meta('png16')).toMatchObject({ depth: 'ushort', bitsPerSample: 16 });
    expect(await meta('rgba')).toMatchObject({ channels: 4, hasAlpha: true, isPalette: false });
    expect(await meta('palette-transparent')).toMatchObject({ isPalette: true, hasAlpha: true });
    expect(await meta('wide-20000x20')).toMatchObject({ width: 20000, height: 20 });
    expect(image('png-bomb').bytes).toBeLessThan(1000);
    expect(image('zero-byte').bytes).toBe(0);
  });
});

describe('orientation, frames and colour', () => {
  it('applies EXIF orientation 6: the stored left half ends on top', async () => {
    const red = [220, 40, 40] as const;
    // Stored 40×20: red left half, blue right half; orientation 6 displays it 20×40, red on top.
    const stored = sharp({ create: { width: 40, height: 20, channels: 3, background: { r: 40, g: 60, b: 220 } } })
      .composite([{ input: { create: { width: 20, height: 20, channels: 3, background: { r: red[0], g: red[1], b: red[2] } } }, left: 0, top: 0 }]);
    const file = path.join(dir, 'orientation-6.jpg');
    await writeFile(file, await stored.withMetadata({ orientation: 6 }).jpeg({ quality: 95 }).toBuffer());
    // crop keeps the aspect ratio, so a 40×20 output shows whether the image came out upright.
    const rgb = await decodeImage(file, { size: [40, 20], resize: 'crop' });
    expect(pixelAt(rgb, [40, 20], [0.5, 0.25]).map((v, c) => Math.abs(v - red[c]) <= 12)).toEqual([true, true, true]);
    expect(pixelAt(rgb, [40, 20], [0.5, 0.75])[2]).toBeGreaterThan(180);
  });

  it('gives the first frame of an animated GIF, not the second or a strip of both', async () => {
    const rgb = await decodeImage(image('gif-animated').path, { size: SIZE });
    expect(pixelAt(rgb, SIZE, [0.25, 0.25])).toEqual([220, 40, 40]);
    expect(pixelAt(rgb, SIZE, [0.75, 0.75])).toEqual([230, 210, 40]);
  });

  it('reads the high byte of 16-bit samples (the low bytes are all 0x5a)', async () => {
    const rgb = await decodeImage(image('png16').path, { size: SIZE });
    expect(pixelAt(rgb, SIZE, [0.25, 0.25])).toEqual([220, 40, 40]);
  });

  it('turns one-channel grey into three equal channels', async () => {
    const rgb = await decodeImage(image('grayscale').path, { size: SIZE });
    for (let i = 0; i < rgb.length; i += 3) {
      expect(rgb[i + 1]).toBe(rgb[i]);
      expect(rgb[i + 2]).toBe(rgb[i]);
    }
  });
});

describe('alpha', () => {
  it('flattens on white by default and on a chosen background', async () => {
    const m = image('rgba');
    const black = await decodeImage(m.path, { size: SIZE, background: { r: 0, g: 0, b: 0 } });
    expect(pixelAt(black, SIZE, [0.25, 0.5])).toEqual([0, 0, 0]);
    expect(pixelAt(black, SIZE, [0.75, 0.25])).toEqual([220, 40, 40]);
    const white = await decodeImage(m.path, { size: SIZE });
    expect(pixelAt(white, SIZE, [0.25, 0.5])).toEqual([255, 255, 255]);
  });

  it.each(['rgba', 'palette-transparent'] as const)("alpha: 'drop' keeps the hidden RGB, like PIL's convert('RGB') (%s)", async (kind) => {
    const m = image(kind);
    if (m.expect.outcome !== 'decodes' || !m.expect.droppedAlphaSamples) throw new Error('fixture lacks dropped-alpha samples');
    for (const interpolation of ['linear', 'nearest'] as const) {
      const rgb = await decodeImage(m.path, { size: SIZE, alpha: 'drop', interpolation });
      expect(samplesOff(rgb, SIZE, m.expect.droppedAlphaSamples, m.expect.tolerance)).toEqual([]);
    }
  });

  it("alpha: 'drop' on an opaque JPEG changes nothing", async () => {
    const m = image('jpeg');
    const dropped = await decodeImage(m.path, { size: SIZE, alpha: 'drop' });
    expect(Buffer.from(dropped).equals(Buffer.from(await decodeImage(m.path, { size: SIZE })))).toBe(true);
  });
});

describe('resize modes and interpolation', () => {
  // 96×32, three 32-px bands: red | green | blue.
  let bands: string;
  beforeAll(async () => {
    bands = path.join(dir, 'bands.png');
    const colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255]] as const;
    const raw = Buffer.alloc(96 * 32 * 3);
    for (let i = 0; i < 96 * 32; i++) raw.set(colours[Math.floor((i % 96) / 32)], i * 3);
    await sharp(raw, { raw: { width: 96, height: 32, channels: 3 } }).png().toFile(bands);
  });
  const S = [30, 30] as const;

  it('squash stretches the whole image to the size', async () => {
    const rgb = await decodeImage(bands, { size: S, resize: 'squash' });
    expect(pixelAt(rgb, S, [1 / 6, 0.5])).toEqual([255, 0, 0]);
    expect(pixelAt(rgb, S, [0.5, 0.5])).toEqual([0, 255, 0]);
    expect(pixelAt(rgb, S, [5 / 6, 0.5])).toEqual([0, 0, 255]);
  });

  it('crop scales the shorter side to the size and keeps the centre', async () => {
    const rgb = await decodeImage(bands, { size: S, resize: 'crop' });
    for (const at of [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]] as const) expect(pixelAt(rgb, S, at)).toEqual([0, 255, 0]);
  });

  it('pad letterboxes on the background colour', async () => {
    const grey = { r: 7, g: 8, b: 9 };
    const rgb = await decodeImage(bands, { size: S, resize: 'pad', background: grey });
    expect(pixelAt(rgb, S, [0.5, 0])).toEqual([7, 8, 9]);
    expect(pixelAt(rgb, S, [0.5, 0.99])).toEqual([7, 8, 9]);
    expect(pixelAt(rgb, S, [1 / 6, 0.5])).toEqual([255, 0, 0]);
    expect(pixelAt(rgb, S, [0.5, 0.5])).toEqual([0, 255, 0]);
    expect(pixelAt(rgb, S, [5 / 6, 0.5])).toEqual([0, 0, 255]);
  });

  it('pad keeps even a 20000×20 strip visible', async () => {
    const rgb = await decodeImage(image('wide-20000x20').path, { size: S, resize: 'pad' });
    expect(pixelAt(rgb, S, [0.5, 0])).toEqual([255, 255, 255]);
    // 30 × 20/20000 rounds up to one row, in the middle: red on the left, blue on the right.
    const rows = Array.from({ length: S[0] }, (_, y) => [pixelAt(rgb, S, [0.25, (y + 0.5) / S[0]]), pixelAt(rgb, S, [0.75, (y + 0.5) / S[0]])]);
    const strip = rows.filter(([left]) => left.join() !== '255,255,255');
    expect(strip).toEqual([[[220, 40, 40], [40, 60, 220]]]);
  });

  it('nearest point-samples a 1-px checkerboard; linear, cubic and lanczos3 average it to grey', async () => {
    // Grey inside; the edge pixels see the board mirrored and land a few levels off.
    const board = Buffer.alloc(64 * 64 * 3);
    for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) board.fill((x + y) % 2 ? 255 : 0, (y * 64 + x) * 3, (y * 64 + x) * 3 + 3);
    const png = await sharp(board, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer();
    const nearest = await decodeImage(png, { size: [32, 32], interpolation: 'nearest' });
    expect(nearest.every((v) => v === 0 || v === 255)).toBe(true);
    for (const interpolation of ['linear', 'cubic', 'lanczos3'] as const) {
      const rgb = await decodeImage(png, { size: [32, 32], interpolation });
      expect(rgb.every((v) => Math.abs(v - 128) <= 8), interpolation).toBe(true);
    }
  });

  it('rejects bad options with a plain Error before reading anything', async () => {
    const missing = path.join(dir, 'never-read.jpg');
    const bad: Partial<DecodeOptions>[] = [
      { size: [0, 10] },
      { size: [10.5, 10] },
      { interpolation: 'bilinear' as never },
      { resize: 'stretch' as never },
      { alpha: 'keep' as never },
      { background: { r: 256, g: 0, b: 0 } },
      { maxPixels: 0 },
      { timeoutSeconds: 1.5 },
      { timeoutSeconds: -1 },
    ];
    for (const opts of bad) {
      const err = await decodeImage(missing, { size: SIZE, ...opts }).then(() => undefined, (e: unknown) => e);
      expect(err, JSON.stringify(opts)).toBeInstanceOf(Error);
      expect(err, JSON.stringify(opts)).not.toBeInstanceOf(DecodeError);
    }
  });
});

describe('safety limits', () => {
  it('rejects a PNG declaring 100000×100000 quickly, naming the declared size', async () => {
    const started = performance.now();
    const err = await expectRejects(image('png-bomb').path, 'too-large');
    expect(performance.now() - started).toBeLessThan(500);
    expect(err.message).toContain('100000×100000');
    expect(err.message).toContain('100-megapixel');
  });

  it('maxPixels counts declared pixels: a 20000×20 strip passes by default, not under 300000', async () => {
    await expect(decodeImage(image('wide-20000x20').path, { size: SIZE })).resolves.toHaveLength(SIZE[0] * SIZE[1] * 3);
    await expectRejects(image('wide-20000x20').path, 'too-large', { maxPixels: 300_000 });
    await expectRejects(image('jpeg').path, 'too-large', { maxPixels: 64 * 48 - 1 });
  });

  it('passes timeoutSeconds to sharp and reports its timeout as reason timeout', async () => {
    // No image reliably takes over a second to decode yet stays quick to make, so sharp's own
    // rejection is simulated; its message is libvips' "timeout: N% complete".
    const proto = (sharp as unknown as { prototype: Sharp }).prototype;
    const timeout = vi.spyOn(proto, 'timeout');
    const toBuffer = vi.spyOn(proto, 'toBuffer').mockRejectedValueOnce(new Error('timeout: 37% complete'));
    try {
      const err = await expectRejects(image('jpeg').path, 'timeout', { timeoutSeconds: 3 });
      expect(err.message).toContain('3 s');
      expect(timeout).toHaveBeenCalledWith({ seconds: 3 });
    } finally {
      toBuffer.mockRestore();
      timeout.mockRestore();
    }
    await expect(decodeImage(image('jpeg').path, { size: SIZE, timeoutSeconds: 0 })).resolves.toHaveLength(SIZE[0] * SIZE[1] * 3);
  });
});

describe('damaged and non-image content', () => {
  it('rejects truncated files as corrupt rather than decoding half-grey images', async () => {
    const err = await expectRejects(image('truncated-jpeg').path, 'corrupt');
    expect(err.message).toMatch(/truncated or corrupt JPEG/);
    const png = await readFile(image('png').path);
    await expectRejects(png.subarray(0, png.length - 30), 'corrupt');
  });

  it('rejects a truncated real photo' + (existsSync(SHARED_DATASETS) ? '' : ' [skipped: ../shared/datasets is absent]'), async (ctx) => {
    if (!existsSync(SHARED_DATASETS)) return ctx.skip();
    const folder = path.join(SHARED_DATASETS, 'flowers', 'daisy');
    const photo = await readFile(path.join(folder, readdirSync(folder).sort()[0]));
    await expect(decodeImage(photo, { size: [224, 224] })).resolves.toHaveLength(224 * 224 * 3);
    for (const keep of [0.3, 0.6, 0.9]) await expectRejects(photo.subarray(0, Math.floor(photo.length * keep)), 'corrupt');
  });

  it('names what a non-image looks like', async () => {
    const cases: [string, DecodeErrorReason, RegExp][] = [
      ['version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n', 'not-an-image', /Git LFS pointer/],
      ['<!DOCTYPE html><html><body>Access denied</body></html>', 'not-an-image', /HTML page/],
      ['<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', 'not-an-image', /SVG/],
      ['just some words\n', 'not-an-image', /a text file$/],
      ['{"token": "abc"}', 'not-an-image', /a JSON file$/],
      ['PK\x03\x04\x14\x00\x00\x00', 'not-an-image', /a ZIP archive/],
      ['BM\x36\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00', 'unsupported-format', /BMP/],
      ['\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic', 'unsupported-format', /HEIC/],
      ['\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isomavc1', 'not-an-image', /MP4/],
      ['\x00\x01\x02\x03\x04\x05\x06\x07', 'not-an-image', /unrecognised binary data$/],
    ];
    for (const [content, reason, message] of cases) {
      const err = await expectRejects(Buffer.from(content, 'latin1'), reason, { source: 'cats/x.jpg' });
      expect(err.message).toMatch(/^cats\/x\.jpg: /);
      expect(err.message).toMatch(message);
    }
    // A secret in a file named like an image (an .env, or what a symlink points to) is never quoted.
    const secret = await expectRejects(Buffer.from('AWS_SECRET_ACCESS_KEY=hunter2xyz\nDB_PASSWORD=s3cr3t\n'), 'not-an-image', { source: 'cats/x.jpg' });
    expect(secret.message).toBe('cats/x.jpg: is not an image: it looks like a text file');
    const anonymous = await expectRejects(Buffer.alloc(0), 'empty-file');
    expect(anonymous.message).toBe('image buffer: is empty (0 bytes)');
  });

  it('a 1×1 image upsamples to a constant image of its colour', async () => {
    const rgb = await decodeImage(image('tiny-1x1').path, { size: [224, 224] });
    expect(rgb.length).toBe(224 * 224 * 3);
    expect(pixelAt(rgb, [224, 224], [0.9, 0.1])).toEqual([12, 200, 99]);
  });
});

describe('files that cannot be read', () => {
  const isRoot = process.getuid?.() === 0;

  it('missing file → missing', async () => {
    const err = await expectRejects(path.join(dir, 'nope.jpg'), 'missing');
    expect(err.message).toContain('does not exist');
  });

  it('folder named like an image → not-a-file', async () => {
    const folder = path.join(dir, 'folder.jpg');
    await mkdir(folder);
    await expectRejects(folder, 'not-a-file');
  });

  it('symbolic link loop → unreadable', async () => {
    const a = path.join(dir, 'loop-a.jpg');
    await symlink(path.join(dir, 'loop-b.jpg'), a);
    await symlink(a, path.join(dir, 'loop-b.jpg'));
    await expectRejects(a, 'unreadable');
  });

  const hasMkfifo = process.platform !== 'win32' && existsSync('/usr/bin/mkfifo');
  it('FIFO named like an image → not-a-file, without waiting for a writer' + (hasMkfifo ? '' : ' [skipped: no mkfifo]'), async (ctx) => {
    if (!hasMkfifo) return ctx.skip();
    const fifo = path.join(dir, 'pipe.jpg');
    execFileSync('/usr/bin/mkfifo', [fifo]);
    await expectRejects(fifo, 'not-a-file');
  });

  it('chmod 000 → unreadable' + (isRoot ? ' [skipped: running as root, which reads any file]' : ''), async (ctx) => {
    if (isRoot) return ctx.skip();
    const file = (await makeImage(dir, 'jpeg', { name: 'locked.jpg' })).path;
    await chmod(file, 0o000);
    try {
      const err = await expectRejects(file, 'unreadable');
      expect(err.message).toContain('permission denied');
    } finally {
      await chmod(file, 0o644);
    }
  });

  it('readImageFile returns the exact bytes, refuses files over maxBytes, and maps fs errors', async () => {
    const m = image('jpeg');
    expect((await readImageFile(m.path)).equals(await readFile(m.path))).toBe(true);
    const big = await decodeError(readImageFile(m.path, { maxBytes: 100 }));
    expect(big.reason).toBe('too-large');
    expect(big.message).toContain(m.path);
    expect((await decodeError(readImageFile(path.join(dir, 'nope.png')))).reason).toBe('missing');
    expect((await decodeError(readImageFile(dir))).reason).toBe('not-a-file');
  });

  it('IMAGE_EXTENSIONS lists the decodable extensions, lower case with dots', () => {
    expect([...IMAGE_EXTENSIONS].sort()).toEqual(['.avif', '.gif', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp']);
  });
});

const CIFAR = path.join(SHARED_DATASETS, 'cifar10-mini');
const hasCifar = existsSync(CIFAR);

describe('real images', () => {
  it('upsamples 32×32 CIFAR JPEGs to 224×224 without flattening them' + (hasCifar ? '' : ' [skipped: ../shared/datasets/cifar10-mini is absent]'), async (ctx) => {
    if (!hasCifar) return ctx.skip();
    for (const cls of ['airplane', 'cat', 'ship']) {
      const file = path.join(CIFAR, cls, readdirSync(path.join(CIFAR, cls)).sort()[0]);
      expect((await sharp(file).metadata()).width).toBe(32);
      for (const interpolation of ['nearest', 'linear'] as const) {
        const rgb = await decodeImage(file, { size: [224, 224], interpolation });
        expect(rgb.length).toBe(224 * 224 * 3);
        let sum = 0;
        let sumSq = 0;
        for (const v of rgb) {
          sum += v;
          sumSq += v * v;
        }
        const mean = sum / rgb.length;
        expect(Math.sqrt(sumSq / rgb.length - mean * mean), `${file} ${interpolation}`).toBeGreaterThan(10);
      }
    }
  });
});
