/**
 * A dataset folder of hostile inputs next to a few plain images, each file recorded with what
 * extract must do with it: decode it (correctly), skip it into the errors table for a stated
 * reason, or report it as unlisted because the scanner cannot even list it.
 *
 * Layout: `good/` holds what must decode, `bad/` what must be skipped or cannot be listed; one
 * class folder with a non-UTF-8 name sits beside them. Built on make-images.ts' recipes where
 * one exists, so the pixel expectations stay in one place.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import type { Pair } from '../../src/backbones/layer-graph.ts';
import type { DecodeErrorReason } from '../../src/extract/decode-image.ts';
import { writeNoisePng } from './make-dataset.ts';
import { makeImage, pixelAt, pngChunk, pngDeclaring, samplesOff, type ColourSample, type ImageKind, type Rgb } from './make-images.ts';

/**
 * - decoded: one cached row, and decodeImage gives the pixels `check` wants.
 * - skipped: listed, then one errors-table row with `reason`; no cached row.
 * - decoded-or-skipped: damage a decoder may notice or may decode as wrong pixels; one or
 *   the other, never both, never a crash.
 * - unlisted: in dataset.unlisted with a `reason` matching, nowhere else.
 * - not-an-item: neither an item, nor an error, nor unlisted (e.g. a folder named like an image).
 */
export type HostileExpect = 'decoded' | 'skipped' | 'decoded-or-skipped' | 'unlisted' | 'not-an-item';

export interface DecodedCheck {
  /** decodeImage's output with the extract's settings: size[0]×size[1]×3 sRGB bytes. */
  readonly rgb: Uint8Array;
  readonly size: Pair;
  readonly file: string;
  /** Decodes another file with the same settings (a reference image). */
  readonly decode: (file: string) => Promise<Uint8Array>;
}

export interface HostileKind {
  readonly kind: string;
  readonly description: string;
  /** How items, the errors table and `unlisted` name it: relative to the root, '/'-separated; non-UTF-8 bytes as \xNN. */
  readonly path: string;
  /** On disk; a Buffer where the name is not valid UTF-8. */
  readonly file: string | Buffer;
  readonly label: string;
  readonly expect: HostileExpect;
  /** skipped (and decoded-or-skipped when skipped): the errors table's reason; unlisted: a pattern for dataset.unlisted's reason. */
  readonly reason?: DecodeErrorReason | RegExp;
  /** What the error message must also say, beyond naming the file. */
  readonly message?: RegExp;
  /** decoded: what is wrong with the decoded pixels (empty when right). */
  readonly check?: (d: DecodedCheck) => Promise<string[]> | string[];
  /** Delete the file after loadDataset and before runExtract. */
  readonly deleteAfterScan?: boolean;
  /** A plain image, the baseline next to the hostile kinds (not counted as one). */
  readonly control?: boolean;
  readonly note?: string;
}

const RED: Rgb = [220, 40, 40];
const GREEN: Rgb = [40, 200, 60];
const BLUE: Rgb = [40, 60, 220];
const YELLOW: Rgb = [230, 210, 40];
const QUADRANTS = [RED, GREEN, BLUE, YELLOW] as const;

/** Quadrant colours (top-left, top-right, bottom-left, bottom-right) with ± `noise` per channel. */
function quadrantPixels(width: number, height: number, noise = 0, seed = 1): Buffer {
  const out = Buffer.alloc(width * height * 3);
  let state = seed >>> 0;
  const random = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const rgb = QUADRANTS[(y < height / 2 ? 0 : 2) + (x < width / 2 ? 0 : 1)];
      for (let c = 0; c < 3; c++) out[i++] = noise === 0 ? rgb[c] : Math.max(0, Math.min(255, Math.round(rgb[c] + (random() * 2 - 1) * noise)));
    }
  }
  return out;
}

const quadrantImage = (width: number, height: number, noise = 0) => sharp(quadrantPixels(width, height, noise), { raw: { width, height, channels: 3 } });

/** Enough entropy-coded data that cuts at 10%, 50% and 90% all land inside the scan. */
const noisyJpeg = () => quadrantImage(256, 192, 20).jpeg({ quality: 90 }).toBuffer();

/** Byte offset of the JPEG start-of-scan marker, and just past its header (where entropy-coded data begins). */
function startOfScan(jpeg: Buffer): { marker: number; data: number } {
  for (let i = 2; i + 3 < jpeg.length; ) {
    if (jpeg[i] !== 0xff) throw new Error('hostile-corpus: JPEG marker expected');
    const length = jpeg.readUInt16BE(i + 2);
    if (jpeg[i + 1] === 0xda) return { marker: i, data: i + 2 + length };
    i += 2 + length;
  }
  throw new Error('hostile-corpus: JPEG has no start-of-scan');
}

/** Offset of the first SOF0/SOF2 marker: height at +5, width at +7. */
function startOfFrame(jpeg: Buffer): number {
  for (let i = 2; i + 3 < jpeg.length; ) {
    if (jpeg[i + 1] === 0xc0 || jpeg[i + 1] === 0xc2) return i;
    i += 2 + jpeg.readUInt16BE(i + 2);
  }
  throw new Error('hostile-corpus: JPEG has no start-of-frame');
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A well-formed PNG (correct CRCs) from an IHDR and the raw, filter-prefixed scanlines. */
function handMadePng(width: number, height: number, bitDepth: number, colourType: number, scanlines: Buffer): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([bitDepth, colourType, 0, 0, 0], 8);
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(scanlines, { level: 9 })), pngChunk('IEND', Buffer.alloc(0))]);
}

/** A 4×4 24-bit BMP: a real format, refused by name rather than sent to a decoder. */
function bmp(): Buffer {
  const width = 4;
  const height = 4;
  const row = width * 3;
  const out = Buffer.alloc(54 + row * height, 0x80);
  out.write('BM', 0, 'latin1');
  out.writeUInt32LE(out.length, 2);
  out.writeUInt32LE(54, 10);
  out.writeUInt32LE(40, 14);
  out.writeInt32LE(width, 18);
  out.writeInt32LE(height, 22);
  out.writeUInt16LE(1, 26);
  out.writeUInt16LE(24, 28);
  out.writeUInt32LE(0, 30);
  out.writeUInt32LE(row * height, 34);
  return out;
}

/** Just the ISO-BMFF file-type box of an HEIC (HEVC) photo, which the prebuilt libheif cannot decode. */
const heicHeader = () => Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from('ftypheic\0\0\0\0mif1heic', 'latin1')]);

/** Non-ASCII bytes as \xNN, as dataset.unlisted names entries whose names are not UTF-8. */
const shownName = (name: Buffer) => [...name].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');

// ---------------------------------------------------------------------------------------------
// Checks

const meanAbsDiff = (a: Uint8Array, b: Uint8Array) => {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
};

const samplesCheck =
  (samples: readonly ColourSample[], tolerance: number) =>
  ({ rgb, size }: DecodedCheck): string[] =>
    samplesOff(rgb, size, samples, tolerance);

/** The file's own header says what it is meant to be, so a check never passes on the wrong file. */
async function metadataOff(file: string, want: Record<string, unknown>): Promise<string[]> {
  const meta = (await sharp(file, { limitInputPixels: false }).metadata()) as unknown as Record<string, unknown>;
  return Object.entries(want)
    .filter(([key, value]) => meta[key] !== value)
    .map(([key, value]) => `file metadata ${key}: ${String(meta[key])}, meant to be ${String(value)}`);
}

const both =
  (...checks: ((d: DecodedCheck) => Promise<string[]> | string[])[]) =>
  async (d: DecodedCheck): Promise<string[]> =>
    (await Promise.all(checks.map((c) => c(d)))).flat();

const withMetadata = (want: Record<string, unknown>) => (d: DecodedCheck) => metadataOff(d.file, want);

/** Every pixel within `tolerance` of one colour. */
const constant =
  (want: Rgb, tolerance: number) =>
  ({ rgb }: DecodedCheck): string[] => {
    for (let i = 0; i < rgb.length; i += 3) {
      if ([0, 1, 2].some((c) => Math.abs(rgb[i + c] - want[c]) > tolerance)) {
        return [`pixel ${i / 3} is [${rgb[i]}, ${rgb[i + 1]}, ${rgb[i + 2]}], want [${want.join(', ')}] ±${tolerance} everywhere`];
      }
    }
    return [];
  };

/**
 * An EXIF-rotated file against its upright twin: decoded alike (mean difference under 8 of
 * 255), and unlike the stored pixels read without orientation, so the check has teeth.
 */
const matchesUpright =
  (upright: string) =>
  async ({ rgb, size, file, decode }: DecodedCheck): Promise<string[]> => {
    const problems: string[] = [];
    const reference = await decode(upright);
    const toUpright = meanAbsDiff(rgb, reference);
    if (toUpright > 8) problems.push(`differs from the upright image by ${toUpright.toFixed(1)} per channel on average (orientation not applied?)`);
    const [height, width] = size;
    const stored = await sharp(file).resize(width, height, { fit: 'fill' }).removeAlpha().raw().toBuffer();
    const toStored = meanAbsDiff(rgb, stored);
    if (toStored < 40) problems.push(`only ${toStored.toFixed(1)} per channel from the stored, unrotated pixels: the check cannot tell rotation apart`);
    return problems;
  };

/** 16-bit samples scaled to 8 bits: the high bytes (the recipe's low bytes are all 0x5a) and the full range, not clipped or dimmed. */
const eightBitOfSixteen = ({ rgb, size }: DecodedCheck): string[] => {
  const problems = samplesOff(rgb, size, [{ at: [0.25, 0.25], rgb: RED }, { at: [0.75, 0.75], rgb: YELLOW }], 1);
  const max = Math.max(...rgb);
  if (max < 225) problems.push(`brightest channel is ${max}, want about 230 (16-bit values scaled down twice?)`);
  return problems;
};

/** The second GIF frame is solid magenta: none of it may show. */
const notMagenta = ({ rgb, size }: DecodedCheck): string[] => {
  const bad = [0.1, 0.5, 0.9].flatMap((x) => [0.1, 0.5, 0.9].map((y) => [x, y] as const)).filter((at) => {
    const [r, g, b] = pixelAt(rgb, size, at);
    return r > 200 && g < 60 && b > 200;
  });
  return bad.length ? [`magenta (the second frame) at ${bad.map((a) => `(${a.join(', ')})`).join(' ')}`] : [];
};

// ---------------------------------------------------------------------------------------------
// The corpus

/** Writes the corpus under `root` (which must not exist yet, or be empty) and lists what each file must become. */
export async function makeHostileCorpus(root: string): Promise<HostileKind[]> {
  const kinds: HostileKind[] = [];
  const good = path.join(root, 'good');
  const bad = path.join(root, 'bad');
  await mkdir(good, { recursive: true });
  await mkdir(bad, { recursive: true });
  const rel = (file: string) => path.relative(root, file).split(path.sep).join('/');

  type Spec = Omit<HostileKind, 'path' | 'file' | 'label' | 'kind'>;
  const write = async (label: 'good' | 'bad', name: string, kind: string, bytes: Buffer | Promise<Buffer>, spec: Spec) => {
    const file = path.join(root, label, name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, await bytes);
    kinds.push({ kind, path: rel(file), file, label, ...spec });
    return file;
  };
  /** A make-images recipe, with its own pixel expectations as the check. */
  const recipe = async (label: 'good' | 'bad', name: string, kind: string, imageKind: ImageKind, spec: Partial<Spec> & Pick<Spec, 'description'>) => {
    const made = await makeImage(path.join(root, label), imageKind, { name });
    const e = made.expect;
    const check = e.outcome === 'decodes' ? samplesCheck(e.samples, e.tolerance) : undefined;
    const fromRecipe: Spec =
      e.outcome === 'decodes'
        ? { expect: 'decoded', check, description: spec.description }
        : e.outcome === 'rejects'
          ? { expect: 'skipped', reason: e.reason, description: spec.description }
          : { expect: 'decoded-or-skipped', reason: e.reason, description: spec.description };
    const merged = { ...fromRecipe, ...spec };
    kinds.push({ kind, path: rel(made.path), file: made.path, label, ...merged, check: spec.check && check ? both(check, spec.check) : (spec.check ?? check) });
    return made.path;
  };

  // Controls: plain images the hostile ones sit next to.
  for (let i = 0; i < 3; i++) {
    const file = path.join(good, `normal-${i}.png`);
    await writeNoisePng(file, 9000 + i, 40);
    kinds.push({ kind: `control-noise-png-${i}`, description: 'plain 40×40 noise PNG', path: rel(file), file, label: 'good', expect: 'decoded', control: true });
  }
  await recipe('good', 'plain.jpg', 'control-jpeg', 'jpeg', { description: 'plain baseline JPEG', control: true });

  // ---- Damaged and non-image bytes.
  await recipe('bad', 'zero-byte.jpg', 'zero-byte', 'zero-byte', { description: 'an empty file named .jpg', message: /empty \(0 bytes\)/ });
  const jpeg = await noisyJpeg();
  const sos = startOfScan(jpeg);
  await write('bad', 'truncated-in-header.jpg', 'truncated-jpeg-in-header', jpeg.subarray(0, sos.marker - 10), {
    description: `a 256×192 JPEG cut at byte ${sos.marker - 10} of ${jpeg.length}, inside its headers`,
    expect: 'skipped',
    reason: 'corrupt',
    message: /truncated or corrupt JPEG/,
  });
  for (const percent of [10, 50, 90]) {
    const cut = Math.floor((jpeg.length * percent) / 100);
    await write('bad', `truncated-${percent}.jpg`, `truncated-jpeg-${percent}%`, jpeg.subarray(0, cut), {
      description: `the first ${percent}% (${cut} of ${jpeg.length} bytes) of a 256×192 JPEG`,
      expect: 'skipped',
      reason: 'corrupt',
      message: /truncated or corrupt JPEG/,
    });
  }
  await write('good', 'no-eoi.jpg', 'jpeg-missing-eoi', jpeg.subarray(0, jpeg.length - 2), {
    description: 'a whole 256×192 JPEG without its 2-byte end-of-image marker: every pixel is there',
    expect: 'decoded-or-skipped',
    reason: 'corrupt',
    note: "failOn 'error' rejects it today (libjpeg's 'premature end'), though PIL reads it",
  });
  const png = await quadrantImage(64, 48).png().toBuffer();
  await write('bad', 'truncated-half.png', 'truncated-png-50%', png.subarray(0, png.length >> 1), {
    description: 'the first half of a 64×48 PNG',
    expect: 'skipped',
    reason: 'corrupt',
    message: /truncated or corrupt PNG/,
  });
  await recipe('good', 'bitflip.jpg', 'bitflip-jpeg', 'bitflip-jpeg', { description: 'a 256×192 JPEG with 16 bits flipped in its entropy-coded data' });
  const inverted = Buffer.from(jpeg);
  const middle = (sos.data + jpeg.length) >> 1;
  for (let i = middle; i < middle + 64; i++) inverted[i] ^= 0xff;
  await write('good', 'inverted-run.jpg', 'bytes-inverted-jpeg', inverted, {
    description: '64 consecutive bytes inverted in the middle of a JPEG scan',
    expect: 'decoded-or-skipped',
    reason: 'corrupt',
  });
  const sofZero = Buffer.from(jpeg);
  sofZero.writeUInt16BE(0, startOfFrame(jpeg) + 5);
  await write('bad', 'height-zero.jpg', 'jpeg-sof-height-0', sofZero, {
    description: 'a JPEG whose frame header says height 0',
    expect: 'skipped',
    reason: 'corrupt',
    message: /Empty JPEG image/,
  });
  await write('bad', 'width-zero.png', 'png-ihdr-width-0', handMadePng(0, 10, 8, 2, Buffer.alloc(10)), {
    description: 'a PNG whose IHDR (correct CRC) declares width 0',
    expect: 'skipped',
    reason: 'corrupt',
    message: /corrupt PNG \(Input buffer has corrupt header/,
  });
  // Named as a text file, never quoted: a file named like an image may hold secrets.
  await recipe('bad', 'text.jpg', 'text-named-jpg', 'not-an-image', { description: 'a text file named .jpg', message: /^bad\/text\.jpg: is not an image: it looks like a text file$/ });
  await write('bad', 'download.jpg', 'html-named-jpg', Buffer.from('<!DOCTYPE html>\n<html><body>403 Forbidden</body></html>\n'), {
    description: 'an HTML error page saved as .jpg',
    expect: 'skipped',
    reason: 'not-an-image',
    message: /HTML page/,
  });
  await write('bad', 'drawing.png', 'svg-named-png', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>\n'), {
    description: 'an SVG named .png (must not reach librsvg)',
    expect: 'skipped',
    reason: 'not-an-image',
    message: /SVG drawing/,
  });
  await write('bad', 'lfs.jpg', 'git-lfs-pointer', Buffer.from('version https://git-lfs.github.com/spec/v1\noid sha256:' + '0'.repeat(64) + '\nsize 12345\n'), {
    description: 'a Git LFS pointer where the image should be',
    expect: 'skipped',
    reason: 'not-an-image',
    message: /git lfs pull/,
  });
  await write('bad', 'bitmap.png', 'bmp-named-png', bmp(), {
    description: 'a 4×4 BMP named .png',
    expect: 'skipped',
    reason: 'unsupported-format',
    message: /BMP/,
  });
  await write('bad', 'phone.jpg', 'heic-named-jpg', heicHeader(), {
    description: 'an HEIC file-type box named .jpg',
    expect: 'skipped',
    reason: 'unsupported-format',
    message: /HEIC/,
  });

  // ---- Size extremes.
  await write('bad', 'bomb.png', 'png-bomb-100000x100000', pngDeclaring(100_000, 100_000), {
    description: 'a few-hundred-byte PNG whose IHDR (correct CRC) declares 100000×100000',
    expect: 'skipped',
    reason: 'too-large',
    message: /declares 100000×100000 pixels/,
  });
  const jpegBomb = Buffer.from(jpeg);
  jpegBomb.writeUInt16BE(65500, startOfFrame(jpeg) + 5);
  jpegBomb.writeUInt16BE(65500, startOfFrame(jpeg) + 7);
  await write('bad', 'bomb.jpg', 'jpeg-bomb-65500x65500', jpegBomb, {
    description: 'a JPEG whose frame header declares 65500×65500',
    expect: 'skipped',
    reason: 'too-large',
    message: /declares 65500×65500 pixels/,
  });
  // 9000×9000 1-bit black: 81 megapixels (under the 100 MP limit) inflated from ~10 kB.
  await write('good', 'deflate-bomb.png', 'png-deflate-9000x9000-1bit', handMadePng(9000, 9000, 1, 0, Buffer.alloc(9000 * (1 + 1125))), {
    description: 'a ~10 kB 1-bit PNG that inflates to 9000×9000 (81 MP, within the pixel limit)',
    expect: 'decoded',
    check: both(withMetadata({ width: 9000, height: 9000 }), constant([0, 0, 0], 0)),
  });
  await recipe('good', 'tiny.png', 'tiny-1x1', 'tiny-1x1', { description: 'a single pixel' });
  await recipe('good', 'wide.png', 'wide-20000x20', 'wide-20000x20', {
    description: '20000×20 strip, left half red, right half blue',
    check: withMetadata({ width: 20000, height: 20 }),
  });
  const huge = await sharp({ create: { width: 6000, height: 4000, channels: 3, background: { r: RED[0], g: RED[1], b: RED[2] } } })
    .composite([
      { input: { create: { width: 3000, height: 2000, channels: 3, background: { r: GREEN[0], g: GREEN[1], b: GREEN[2] } } }, left: 3000, top: 0 },
      { input: { create: { width: 3000, height: 2000, channels: 3, background: { r: BLUE[0], g: BLUE[1], b: BLUE[2] } } }, left: 0, top: 2000 },
      { input: { create: { width: 3000, height: 2000, channels: 3, background: { r: YELLOW[0], g: YELLOW[1], b: YELLOW[2] } } }, left: 3000, top: 2000 },
    ])
    .jpeg({ quality: 85 })
    .toBuffer();
  await write('good', 'camera-24mp.jpg', 'huge-valid-6000x4000', huge, {
    description: 'a valid 6000×4000 (24 MP) JPEG, quadrants',
    expect: 'decoded',
    check: both(
      withMetadata({ width: 6000, height: 4000 }),
      samplesCheck(
        QUADRANTS.map((rgb, i) => ({ at: [i % 2 ? 0.75 : 0.25, i < 2 ? 0.25 : 0.75] as const, rgb })),
        12,
      ),
    ),
  });

  // ---- Formats and colour spaces that must decode to 8-bit sRGB.
  await recipe('good', 'sixteen-bit.png', 'png-16-bit', 'png16', {
    description: '16-bit RGB PNG (low bytes all 0x5a)',
    check: both(withMetadata({ depth: 'ushort' }), eightBitOfSixteen),
  });
  await recipe('good', 'cmyk.jpg', 'cmyk-jpeg', 'cmyk', { description: 'CMYK JPEG without an ICC profile', check: withMetadata({ space: 'cmyk', channels: 4 }) });
  await recipe('good', 'palette.png', 'palette-png-transparent', 'palette-transparent', {
    description: 'palette PNG with tRNS: left half transparent (flattened on white), right half blue',
    check: withMetadata({ isPalette: true, hasAlpha: true }),
  });
  await recipe('good', 'animated.gif', 'animated-gif', 'gif-animated', {
    description: 'two-frame GIF, quadrants then magenta: the first frame',
    check: both(withMetadata({ pages: 2 }), notMagenta),
  });
  await recipe('good', 'grey.jpg', 'greyscale-jpeg', 'grayscale', { description: 'one-channel greyscale JPEG' });
  await recipe('good', 'alpha.png', 'rgba-png', 'rgba', { description: 'RGBA PNG with transparent and half-transparent parts' });
  await recipe('good', 'lossy.webp', 'webp', 'webp', { description: 'lossy WebP' });
  await recipe('good', 'photo.avif', 'avif', 'avif', { description: 'AVIF' });
  await recipe('good', 'scan.tif', 'tiff-lzw', 'tiff', { description: 'LZW TIFF' });
  await recipe('good', 'really-a-png.jpg', 'png-named-jpg', 'png', { description: 'a PNG named .jpg: decoded by sniffing', check: withMetadata({ format: 'png' }) });
  await recipe('good', 'SHOUTING.JPG', 'upper-case-extension', 'jpeg', { description: 'a JPEG named .JPG' });

  // ---- EXIF orientation, against the same picture stored upright.
  const uprightPixels = quadrantPixels(64, 48);
  const raw = { raw: { width: 64, height: 48, channels: 3 as const } };
  const upright = await write('good', 'upright.jpg', 'control-exif-upright', sharp(uprightPixels, raw).jpeg({ quality: 92 }).toBuffer(), {
    description: 'the 64×48 quadrants stored upright, the reference for the EXIF-rotated ones',
    expect: 'decoded',
    control: true,
  });
  // Orientation 6 means "rotate 90° clockwise to display", so store it turned 90° anticlockwise; 8 the other way.
  for (const [orientation, storedTurn] of [
    [6, 270],
    [8, 90],
  ] as const) {
    const stored = await sharp(await sharp(uprightPixels, raw).rotate(storedTurn).png().toBuffer())
      .withMetadata({ orientation })
      .jpeg({ quality: 92 })
      .toBuffer();
    await write('good', `exif-${orientation}.jpg`, `exif-orientation-${orientation}`, stored, {
      description: `the same quadrants stored 48×64, turned ${storedTurn}°, with EXIF orientation ${orientation}`,
      expect: 'decoded',
      check: both(withMetadata({ orientation, width: 48, height: 64 }), matchesUpright(upright)),
    });
  }

  // ---- What the file system can throw at the scanner and the reader.
  const locked = await recipe('bad', 'mode-000.jpg', 'unreadable-permissions', 'jpeg', { description: 'a JPEG with mode 000' });
  await chmod(locked, 0o000);
  if (process.getuid?.() === 0) {
    // Root reads any file, so here it decodes; the test re-checks it as an unprivileged user.
    const entry = kinds.pop()!;
    kinds.push({ ...entry, note: 'running as root, which reads a mode-000 file: decoded here, checked unprivileged separately' });
  } else {
    const entry = kinds.pop()!;
    kinds.push({ ...entry, expect: 'skipped', reason: 'unreadable', message: /permission denied/, check: undefined });
  }

  const loop = path.join(bad, 'loop.jpg');
  await symlink('loop.jpg', loop);
  kinds.push({ kind: 'symlink-loop', description: 'loop.jpg → loop.jpg', path: rel(loop), file: loop, label: 'bad', expect: 'unlisted', reason: /ELOOP/ });
  const dangling = path.join(bad, 'dangling.png');
  await symlink('nowhere.png', dangling);
  kinds.push({ kind: 'symlink-dangling', description: 'dangling.png → a file that does not exist', path: rel(dangling), file: dangling, label: 'bad', expect: 'unlisted', reason: /ENOENT/ });
  const loopDir = path.join(bad, 'loop-dir');
  await symlink('..', loopDir);
  kinds.push({
    kind: 'symlink-folder-loop',
    description: 'bad/loop-dir → .. (the dataset root): a walk that followed it would never end',
    path: rel(loopDir),
    file: loopDir,
    label: 'bad',
    expect: 'not-an-item',
  });
  const linked = path.join(good, 'link-to-normal.png');
  await symlink('normal-0.png', linked);
  kinds.push({
    kind: 'symlink-to-image',
    description: 'link-to-normal.png → normal-0.png: the same bytes under a second path',
    path: rel(linked),
    file: linked,
    label: 'good',
    expect: 'decoded',
  });

  const folder = path.join(good, 'folder.jpg');
  await mkdir(folder);
  kinds.push({ kind: 'folder-named-like-image', description: 'a folder named folder.jpg (walked into, not decoded)', path: rel(folder), file: folder, label: 'good', expect: 'not-an-item' });
  await recipe('good', 'folder.jpg/inside.png', 'image-inside-folder-named-like-image', 'png', { description: 'a PNG inside folder.jpg/' });

  if (process.platform !== 'win32' && existsSync('/usr/bin/mkfifo')) {
    const fifo = path.join(bad, 'pipe.jpg');
    execFileSync('/usr/bin/mkfifo', [fifo]);
    kinds.push({
      kind: 'fifo-named-jpg',
      description: 'a FIFO named .jpg with no writer (opening it blocking would hang)',
      path: rel(fifo),
      file: fifo,
      label: 'bad',
      expect: 'skipped',
      reason: 'not-a-file',
    });
  }

  await write('bad', 'deleted-after-scan.png', 'deleted-between-scan-and-decode', quadrantImage(64, 48).png().toBuffer(), {
    description: 'a good PNG deleted after loadDataset, before runExtract',
    expect: 'skipped',
    reason: 'missing',
    message: /does not exist/,
    deleteAfterScan: true,
  });

  // Names that are not UTF-8 (Latin-1 ÿ, þ, é): a JS string cannot spell them.
  const nonUtf8 = [
    { kind: 'non-utf8-file-name', dir: Buffer.from('bad/', 'latin1'), name: Buffer.from([0x66, 0xff, 0x2e, 0x70, 0x6e, 0x67]), folder: false },
    { kind: 'non-utf8-subfolder-name', dir: Buffer.from('bad/', 'latin1'), name: Buffer.from([0x73, 0x75, 0x62, 0xfe]), folder: true },
    { kind: 'non-utf8-class-folder-name', dir: Buffer.alloc(0), name: Buffer.from([0x63, 0x6c, 0x61, 0x73, 0x73, 0xe9]), folder: true },
  ];
  const pngBytes = await quadrantImage(16, 16).png().toBuffer();
  for (const { kind, dir, name, folder: isFolder } of nonUtf8) {
    const file = Buffer.concat([Buffer.from(root + path.sep), dir, name]);
    try {
      if (isFolder) {
        mkdirSync(file);
        writeFileSync(Buffer.concat([file, Buffer.from('/inside.png')]), pngBytes);
      } else {
        writeFileSync(file, pngBytes);
      }
    } catch (err) {
      // macOS and some Windows file systems refuse such names: nothing to test there.
      if (['EILSEQ', 'EINVAL'].includes((err as NodeJS.ErrnoException).code ?? '')) continue;
      throw err;
    }
    kinds.push({
      kind,
      description: `a ${isFolder ? 'folder (with a PNG inside)' : 'PNG'} whose name has the byte 0x${name.find((b) => b >= 0x80)!.toString(16)}: not UTF-8`,
      path: dir.toString('latin1') + shownName(name),
      file,
      label: dir.length ? 'bad' : shownName(name),
      expect: 'unlisted',
      reason: /not valid UTF-8/,
    });
  }
  return kinds;
}
