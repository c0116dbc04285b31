/**
 * Writes test images of every kind the decoder must handle (or must reject) into a folder,
 * each with what it should decode to, so tests check the pixels and not just "no throw".
 *
 * Decodable images carry colour samples at relative positions of the image as displayed
 * (after EXIF orientation): with resize 'squash' at any output size, the decoded pixel at
 * (x·W, y·H) should match. Most use four quadrants, which also catches flips and rotations.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import type { Pair } from '../../src/backbones/layer-graph.ts';
import type { DecodeErrorReason, ImageFormat } from '../../src/extract/decode-image.ts';

export const IMAGE_KINDS = [
  'jpeg',
  'png',
  'webp',
  'gif-animated',
  'tiff',
  'avif',
  'exif-rotated',
  'grayscale',
  'cmyk',
  'png16',
  'rgba',
  'palette-transparent',
  'tiny-1x1',
  'wide-20000x20',
  'png-bomb',
  'truncated-jpeg',
  'zero-byte',
  'not-an-image',
  'bitflip-jpeg',
] as const;

export type ImageKind = (typeof IMAGE_KINDS)[number];

export type Rgb = readonly [r: number, g: number, b: number];

export interface ColourSample {
  /** Relative position in the displayed image, each in 0..1. */
  readonly at: readonly [x: number, y: number];
  readonly rgb: Rgb;
}

export type Expectation =
  | {
      readonly outcome: 'decodes';
      readonly format: ImageFormat;
      /** Size as displayed, after EXIF orientation. */
      readonly width: number;
      readonly height: number;
      /** With alpha flattened on white (the decoder's default). */
      readonly samples: readonly ColourSample[];
      /** With alpha dropped (PIL's convert('RGB')), where the hidden colour is known. */
      readonly droppedAlphaSamples?: readonly ColourSample[];
      /** Largest per-channel difference a sample may show (lossy codecs, CMYK round trips). */
      readonly tolerance: number;
    }
  | { readonly outcome: 'rejects'; readonly reason: DecodeErrorReason }
  /** Damage that a decoder may notice or may decode as wrong pixels; it must not crash or hang. */
  | { readonly outcome: 'decodes-or-rejects'; readonly reason: DecodeErrorReason; readonly width: number; readonly height: number };

export interface MadeImage {
  readonly kind: ImageKind;
  readonly path: string;
  /** Size on disk. */
  readonly bytes: number;
  readonly expect: Expectation;
  /** One line on what the file is, for test titles and corpus listings. */
  readonly description: string;
}

export interface MakeImageOptions {
  /** File name inside `dir`; defaults to `<kind>.<natural extension>`. */
  readonly name?: string;
}

// ---------------------------------------------------------------------------------------------
// Pixel patterns

const RED: Rgb = [220, 40, 40];
const GREEN: Rgb = [40, 200, 60];
const BLUE: Rgb = [40, 60, 220];
const YELLOW: Rgb = [230, 210, 40];
const WHITE: Rgb = [255, 255, 255];

/** Quadrant centres: top-left, top-right, bottom-left, bottom-right. */
const TL = [0.25, 0.25] as const;
const TR = [0.75, 0.25] as const;
const BL = [0.25, 0.75] as const;
const BR = [0.75, 0.75] as const;

type Pixel = (x: number, y: number) => readonly number[];

function rawImage(width: number, height: number, channels: 1 | 2 | 3 | 4, pixel: Pixel): Buffer {
  const out = Buffer.alloc(width * height * channels);
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const px = pixel(x, y);
      for (let c = 0; c < channels; c++) out[i++] = px[c];
    }
  }
  return out;
}

/** Pixel values (any channel count) for top-left, top-right, bottom-left, bottom-right. */
const quadrant = (values: readonly [readonly number[], readonly number[], readonly number[], readonly number[]], width: number, height: number): Pixel => (x, y) =>
  values[(y < height / 2 ? 0 : 2) + (x < width / 2 ? 0 : 1)];

type Quad = readonly [Rgb, Rgb, Rgb, Rgb];
const STANDARD: Quad = [RED, GREEN, BLUE, YELLOW];
/** Inside the CMYK gamut, so an sRGB → CMYK → sRGB round trip stays near. */
const MUTED: Quad = [
  [180, 70, 60],
  [80, 150, 80],
  [60, 80, 150],
  [200, 180, 80],
];

interface QuadrantOptions {
  readonly colours?: Quad;
  readonly width?: number;
  readonly height?: number;
  /** ± this much fixed-seed noise per channel, so lossy codecs write realistic amounts of data. */
  readonly noise?: number;
}

function quadrants({ colours = STANDARD, width = 64, height = 48, noise = 0 }: QuadrantOptions = {}) {
  const base = quadrant(colours, width, height);
  const random = seededRandom(1);
  const pixel: Pixel = noise === 0 ? base : (x, y) => base(x, y).map((v) => Math.max(0, Math.min(255, Math.round(v + (random() * 2 - 1) * noise))));
  return sharp(rawImage(width, height, 3, pixel), { raw: { width, height, channels: 3 } });
}

const quadrantSamples = ([tl, tr, bl, br]: Quad): readonly ColourSample[] => [
  { at: TL, rgb: tl },
  { at: TR, rgb: tr },
  { at: BL, rgb: bl },
  { at: BR, rgb: br },
];

const QUADRANT_SAMPLES = quadrantSamples(STANDARD);

/** Numbers in [0, 1), the same sequence for the same seed on every machine. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
}

// ---------------------------------------------------------------------------------------------
// Hand-built files

const crc32: (data: Uint8Array) => number =
  typeof zlib.crc32 === 'function' ? (data) => zlib.crc32(data) : tableCrc32;

/** zlib.crc32 arrived in Node 20.15; this is the same CRC-32 (IEEE, reflected) for older 20.x. */
function tableCrc32(data: Uint8Array): number {
  let crc = ~0;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return ~crc >>> 0;
}

/** One PNG chunk (length, type, data, CRC), for hand-built files. */
export function pngChunk(type: string, data: Uint8Array): Buffer {
  const typeAndData = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  typeAndData.copy(out, 4);
  out.writeUInt32BE(crc32(typeAndData), 8 + data.length);
  return out;
}

/**
 * A valid-looking RGB PNG whose header declares width×height but whose data holds one row:
 * a few hundred bytes on disk that a naive decoder would allocate 30 GB for.
 */
export function pngDeclaring(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, adaptive filters, no interlace
  const oneRow = Buffer.alloc(1 + width * 3); // filter byte + black pixels
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(oneRow, { level: 9 })),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Byte offset just past the JPEG start-of-scan header: entropy-coded data begins there. */
function scanDataStart(jpeg: Buffer): number {
  for (let i = 2; i + 3 < jpeg.length; ) {
    if (jpeg[i] !== 0xff) throw new Error('make-images: JPEG marker expected');
    const segmentLength = jpeg.readUInt16BE(i + 2);
    if (jpeg[i + 1] === 0xda) return i + 2 + segmentLength;
    i += 2 + segmentLength;
  }
  throw new Error('make-images: JPEG has no start-of-scan');
}

/** Flips `count` bits in the entropy-coded data, placed by a fixed-seed generator. */
function flipScanBits(jpeg: Buffer, count: number, seed: number): Buffer {
  const out = Buffer.from(jpeg);
  const start = scanDataStart(jpeg);
  const end = jpeg.length - 2; // keep the EOI marker
  const next = seededRandom(seed);
  for (let i = 0; i < count; i++) {
    const at = start + Math.floor(next() * (end - start));
    out[at] ^= 1 << Math.floor(next() * 8);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Kinds

interface Recipe {
  readonly ext: string;
  readonly description: string;
  readonly make: () => Promise<Buffer> | Buffer;
  readonly expect: Expectation;
}

const decodes = (format: ImageFormat, width: number, height: number, tolerance: number, samples: readonly ColourSample[] = QUADRANT_SAMPLES) =>
  ({ outcome: 'decodes', format, width, height, samples, tolerance }) as const;

const PNG16_LOW_BYTE = 0x5a;

const RECIPES: Readonly<Record<ImageKind, Recipe>> = {
  jpeg: {
    ext: 'jpg',
    description: 'baseline JPEG, quadrants',
    make: () => quadrants().jpeg({ quality: 90 }).toBuffer(),
    expect: decodes('jpeg', 64, 48, 16),
  },
  png: {
    ext: 'png',
    description: '8-bit RGB PNG, quadrants',
    make: () => quadrants().png().toBuffer(),
    expect: decodes('png', 64, 48, 2),
  },
  webp: {
    ext: 'webp',
    description: 'lossy WebP, quadrants',
    make: () => quadrants().webp({ quality: 90 }).toBuffer(),
    expect: decodes('webp', 64, 48, 20),
  },
  'gif-animated': {
    ext: 'gif',
    description: 'two-frame GIF: quadrants, then solid magenta; the first frame must win',
    make: async () => {
      const first = await quadrants().png().toBuffer();
      const second = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 255, g: 0, b: 255 } } }).png().toBuffer();
      return sharp([first, second], { join: { animated: true } }).gif({ delay: [100, 100], loop: 0 }).toBuffer();
    },
    expect: decodes('gif', 64, 48, 4),
  },
  tiff: {
    ext: 'tif',
    description: 'LZW TIFF, quadrants',
    make: () => quadrants().tiff({ compression: 'lzw' }).toBuffer(),
    expect: decodes('tiff', 64, 48, 2),
  },
  avif: {
    ext: 'avif',
    description: 'AVIF (AV1 in HEIF), quadrants',
    make: () => quadrants().avif({ quality: 80 }).toBuffer(),
    expect: decodes('avif', 64, 48, 24),
  },
  'exif-rotated': {
    ext: 'jpg',
    description: 'quadrants stored 64×48 with EXIF orientation 6 (display rotated 90° clockwise)',
    make: () => quadrants().withMetadata({ orientation: 6 }).jpeg({ quality: 90 }).toBuffer(),
    // Rotating clockwise puts the stored bottom-left (blue) at the displayed top-left.
    expect: decodes('jpeg', 48, 64, 16, [
      { at: TL, rgb: BLUE },
      { at: TR, rgb: RED },
      { at: BL, rgb: YELLOW },
      { at: BR, rgb: GREEN },
    ]),
  },
  grayscale: {
    ext: 'jpg',
    description: 'one-channel greyscale JPEG, four grey quadrants',
    make: () =>
      sharp(rawImage(64, 48, 1, quadrant([[30], [90], [150], [210]], 64, 48)), { raw: { width: 64, height: 48, channels: 1 } })
        .toColourspace('b-w')
        .jpeg({ quality: 90 })
        .toBuffer(),
    expect: decodes('jpeg', 64, 48, 8, [
      { at: TL, rgb: [30, 30, 30] },
      { at: TR, rgb: [90, 90, 90] },
      { at: BL, rgb: [150, 150, 150] },
      { at: BR, rgb: [210, 210, 210] },
    ]),
  },
  cmyk: {
    ext: 'jpg',
    description: 'CMYK JPEG without an ICC profile, quadrants',
    make: () => quadrants({ colours: MUTED }).toColourspace('cmyk').jpeg({ quality: 90 }).toBuffer(),
    // sRGB → CMYK → sRGB through sharp's built-in profiles darkens by up to ~25 even in gamut;
    // read as RGB plus alpha instead, the same bytes would be off by over 100.
    expect: decodes('jpeg', 64, 48, 30, quadrantSamples(MUTED)),
  },
  png16: {
    ext: 'png',
    description: '16-bit RGB PNG, quadrants in the high bytes and 0x5a in every low byte',
    make: () => {
      const eight = rawImage(64, 48, 3, quadrant(STANDARD, 64, 48));
      // sharp takes the raw depth from the typed array: Uint16Array means 'ushort'.
      const sixteen = Uint16Array.from(eight, (v) => v * 256 + PNG16_LOW_BYTE);
      return sharp(sixteen, { raw: { width: 64, height: 48, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
    },
    expect: decodes('png', 64, 48, 1),
  },
  rgba: {
    ext: 'png',
    description: 'RGBA PNG: left half transparent hiding magenta, top-right opaque red, bottom-right black at 50% alpha',
    make: () =>
      sharp(
        rawImage(64, 48, 4, (x, y) => (x < 32 ? [255, 0, 255, 0] : y < 24 ? [...RED, 255] : [0, 0, 0, 128])),
        { raw: { width: 64, height: 48, channels: 4 } },
      )
        .png()
        .toBuffer(),
    expect: {
      ...decodes('png', 64, 48, 2, [
        { at: TL, rgb: WHITE },
        { at: BL, rgb: WHITE },
        { at: TR, rgb: RED },
        { at: BR, rgb: [127, 127, 127] },
      ]),
      droppedAlphaSamples: [
        { at: TL, rgb: [255, 0, 255] },
        { at: BL, rgb: [255, 0, 255] },
        { at: TR, rgb: RED },
        { at: BR, rgb: [0, 0, 0] },
      ],
    },
  },
  'palette-transparent': {
    ext: 'png',
    description: 'palette PNG with tRNS: left half fully transparent, right half opaque blue',
    make: () =>
      sharp(rawImage(64, 48, 4, (x) => (x < 32 ? [0, 255, 0, 0] : [...BLUE, 255])), { raw: { width: 64, height: 48, channels: 4 } })
        .png({ palette: true, dither: 0 })
        .toBuffer(),
    expect: {
      ...decodes('png', 64, 48, 4, [
        { at: TL, rgb: WHITE },
        { at: BL, rgb: WHITE },
        { at: TR, rgb: BLUE },
        { at: BR, rgb: BLUE },
      ]),
      // The quantiser picks the transparent entry's hidden colour, so only the right is known.
      droppedAlphaSamples: [
        { at: TR, rgb: BLUE },
        { at: BR, rgb: BLUE },
      ],
    },
  },
  'tiny-1x1': {
    ext: 'png',
    description: 'a single pixel',
    make: () => sharp(Buffer.from([12, 200, 99]), { raw: { width: 1, height: 1, channels: 3 } }).png().toBuffer(),
    expect: decodes('png', 1, 1, 1, [TL, TR, BL, BR, [0.5, 0.5] as const].map((at) => ({ at, rgb: [12, 200, 99] as const }))),
  },
  'wide-20000x20': {
    ext: 'png',
    description: '20000×20 strip, left half red, right half blue',
    make: () => sharp(rawImage(20000, 20, 3, (x) => (x < 10000 ? RED : BLUE)), { raw: { width: 20000, height: 20, channels: 3 } }).png().toBuffer(),
    expect: decodes('png', 20000, 20, 2, [
      { at: [0.25, 0.5], rgb: RED },
      { at: [0.75, 0.5], rgb: BLUE },
    ]),
  },
  'png-bomb': {
    ext: 'png',
    description: 'PNG declaring 100000×100000 pixels, a few hundred bytes on disk',
    make: () => pngDeclaring(100_000, 100_000),
    expect: { outcome: 'rejects', reason: 'too-large' },
  },
  'truncated-jpeg': {
    ext: 'jpg',
    description: 'the first 60% of a noisy 256×192 JPEG (cut inside the scan data)',
    make: async () => {
      const whole = await quadrants({ width: 256, height: 192, noise: 20 }).jpeg({ quality: 90 }).toBuffer();
      return whole.subarray(0, Math.floor(whole.length * 0.6));
    },
    expect: { outcome: 'rejects', reason: 'corrupt' },
  },
  'zero-byte': {
    ext: 'jpg',
    description: 'an empty file',
    make: () => Buffer.alloc(0),
    expect: { outcome: 'rejects', reason: 'empty-file' },
  },
  'not-an-image': {
    ext: 'jpg',
    description: 'a text file named like a JPEG',
    make: () => Buffer.from('This is not an image, just a text file with a .jpg name.\n'),
    expect: { outcome: 'rejects', reason: 'not-an-image' },
  },
  'bitflip-jpeg': {
    ext: 'jpg',
    description: 'noisy 256×192 JPEG with 16 bits flipped in its entropy-coded data',
    make: async () => flipScanBits(await quadrants({ width: 256, height: 192, noise: 20 }).jpeg({ quality: 90 }).toBuffer(), 16, 7),
    expect: { outcome: 'decodes-or-rejects', reason: 'corrupt', width: 256, height: 192 },
  },
};

export async function makeImage(dir: string, kind: ImageKind, opts: MakeImageOptions = {}): Promise<MadeImage> {
  const recipe = RECIPES[kind];
  const file = path.join(dir, opts.name ?? `${kind}.${recipe.ext}`);
  const bytes = await recipe.make();
  await mkdir(dir, { recursive: true });
  await writeFile(file, bytes);
  return { kind, path: file, bytes: bytes.length, expect: recipe.expect, description: recipe.description };
}

/** One file of each kind (all of them by default), in the order of `kinds`. */
export function makeImageSet(dir: string, kinds: readonly ImageKind[] = IMAGE_KINDS): Promise<MadeImage[]> {
  return Promise.all(kinds.map((kind) => makeImage(dir, kind)));
}

/** The RGB of a decoded H×W×3 image at a relative position, as ColourSample.at gives it. */
export function pixelAt(rgb: Uint8Array, size: Pair, at: readonly [x: number, y: number]): Rgb {
  const [height, width] = size;
  const x = Math.min(width - 1, Math.floor(at[0] * width));
  const y = Math.min(height - 1, Math.floor(at[1] * height));
  const i = (y * width + x) * 3;
  return [rgb[i], rgb[i + 1], rgb[i + 2]];
}

/** Samples whose decoded colour is off by more than `tolerance` in some channel, for messages. */
export function samplesOff(rgb: Uint8Array, size: Pair, samples: readonly ColourSample[], tolerance: number): string[] {
  const off: string[] = [];
  for (const { at, rgb: want } of samples) {
    const got = pixelAt(rgb, size, at);
    if (got.some((v, c) => Math.abs(v - want[c]) > tolerance)) off.push(`at (${at.join(', ')}): got [${got.join(', ')}], want [${want.join(', ')}] ±${tolerance}`);
  }
  return off;
}
