/**
 * Decodes any image sharp reads into 8-bit sRGB at the network's input size (H×W×3, HWC).
 *
 * Every file ends the same way or fails with a DecodeError whose `reason` is a short category
 * for the failure table: EXIF orientation is applied, grey / CMYK / 16-bit / palette / alpha all
 * become 8-bit sRGB, animated and multi-page files give their first frame.
 *
 * How this differs from Keras' `load_img` (PIL), on purpose:
 * - Keras resizes with interpolation='nearest' by default (`img.resize(size, Image.NEAREST)`
 *   after `convert('RGB')`; keep_aspect_ratio=False squashes, True centre-crops first). Our
 *   default is 'linear': antialiased like PIL's/torchvision's bilinear that most PyTorch
 *   references use, while nearest aliases badly when downscaling photos.
 * - PIL ignores EXIF orientation, so phone photos reach Keras sideways. We honour it: the label
 *   describes what the person saw.
 * - sharp applies embedded ICC profiles (Adobe RGB, Display P3) when converting to sRGB; PIL's
 *   `convert('RGB')` does not. Only non-sRGB files differ, and ours are the correct colours.
 * - Alpha: see AlphaMode.
 */
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import sharp, { type FitEnum, type KernelEnum, type Sharp, type SharpOptions } from 'sharp';
import type { Pair } from '../backbones/layer-graph.ts';
import type { Interpolation, ResizeMode } from '../cache/code-spec.ts';
import { FileTooLargeError, formatBytes, readHandleCapped } from '../util/bounded-read.ts';
import { UserError } from '../util/errors.ts';

export type { Interpolation, ResizeMode };

// Every file is decoded once, so libvips' operation cache only holds memory that is never reused.
sharp.cache(false);

/**
 * What happens to transparency.
 * - flatten (default): composite on `background`, i.e. what a viewer shows and a labeller saw.
 *   The RGB under alpha=0 is invisible and arbitrary (zeroed by some encoders, edit leftovers
 *   or quantiser choices in others), so features should not depend on it.
 * - drop: discard alpha and keep the hidden RGB, exactly like PIL's `convert('RGB')` in Keras'
 *   load_img and torchvision's default loader; use it to reproduce features from those.
 */
export type AlphaMode = 'flatten' | 'drop';

export interface Rgb {
  readonly r: number;
  readonly g: number;
  readonly b: number;
}

export interface DecodeOptions {
  /** [height, width] of the output. */
  readonly size: Pair;
  readonly resize?: ResizeMode;
  readonly interpolation?: Interpolation;
  /**
   * With resize crop: the share of the shorter side kept, as torchvision's Resize(256) then
   * CenterCrop(224) keeps 224/256 (timm's crop_pct). Default 1: the whole shorter side.
   */
  readonly cropFraction?: number;
  /** Alpha is flattened on this colour, and pad mode fills with it. */
  readonly background?: Rgb;
  readonly alpha?: AlphaMode;
  /** Files declaring more pixels (width × height) are rejected before any pixel is decoded. */
  readonly maxPixels?: number;
  /** Whole seconds a decode may take; 0 means no limit. */
  readonly timeoutSeconds?: number;
  /** Names the image in error messages when `input` is a Buffer (a path names itself). */
  readonly source?: string;
}

export const DEFAULT_BACKGROUND = { r: 255, g: 255, b: 255 } as const;
/** 100 megapixels: ~10000×10000, well above any camera photo, far below a decompression bomb. */
export const DEFAULT_MAX_PIXELS = 100_000_000;
export const DEFAULT_TIMEOUT_SECONDS = 30;
/** Larger files are refused unread; a 100-megapixel 16-bit RGBA TIFF is 800 MB. */
export const DEFAULT_MAX_FILE_BYTES = 1024 ** 3;

/** What the folder scanner picks up; content is sniffed anyway, whatever the extension says. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);

// ---------------------------------------------------------------------------------------------
// Errors

export type DecodeErrorReason =
  | 'missing'
  | 'not-a-file'
  | 'unreadable'
  | 'empty-file'
  | 'not-an-image'
  | 'unsupported-format'
  | 'corrupt'
  | 'too-large'
  | 'timeout';

/** This one file cannot become pixels; the message names it and says why in plain words. */
export class DecodeError extends UserError {
  constructor(
    readonly reason: DecodeErrorReason,
    /** The path, or DecodeOptions.source; undefined for an anonymous buffer. */
    readonly source: string | undefined,
    detail: string,
    options?: { readonly cause?: unknown },
  ) {
    super(`${source ?? 'image buffer'}: ${detail}`, options);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading files

/** Per-file fs failures. Anything else (EMFILE, ENOMEM) is about the process, not the file. */
const FS_ERRORS: Readonly<Record<string, readonly [DecodeErrorReason, string]>> = {
  ENOENT: ['missing', 'does not exist'],
  ENOTDIR: ['missing', 'does not exist (a parent in its path is not a folder)'],
  EISDIR: ['not-a-file', 'is a folder, not an image file'],
  EACCES: ['unreadable', 'cannot be read: permission denied'],
  EPERM: ['unreadable', 'cannot be read: operation not permitted'],
  ELOOP: ['unreadable', 'cannot be read: its symbolic links form a loop'],
  ENAMETOOLONG: ['unreadable', 'cannot be read: the path is too long'],
  EIO: ['unreadable', 'cannot be read: I/O error (failing disk or network mount?)'],
  ERR_FS_FILE_TOO_LARGE: ['too-large', 'is too large to read into memory'],
};

function fsError(file: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const known = code === undefined ? undefined : FS_ERRORS[code];
  return known ? new DecodeError(known[0], file, known[1], { cause: err }) : err;
}

/**
 * Reads a whole image file, so the caller can hash exactly the bytes it then decodes.
 * Refuses folders, FIFOs and devices named like images: O_NONBLOCK keeps open() of a FIFO
 * from waiting forever for a writer, and fstat tells what was opened. The size fstat reports
 * is not trusted either: a pseudo-file can report 0 bytes and stream without end, so the read
 * itself stops at `maxBytes`.
 */
export async function readImageFile(file: string, opts: { readonly maxBytes?: number; readonly signal?: AbortSignal } = {}): Promise<Buffer> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_FILE_BYTES;
  let handle: FileHandle;
  try {
    // O_NONBLOCK is absent on Windows, where FIFOs do not live in folders anyway.
    handle = await open(file, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
  } catch (err) {
    throw fsError(file, err);
  }
  const tooLarge = () => new DecodeError('too-large', file, `is over the ${formatBytes(maxBytes)} limit for one image`);
  try {
    const stat = await handle.stat();
    if (stat.isDirectory()) throw new DecodeError('not-a-file', file, FS_ERRORS.EISDIR[1]);
    if (!stat.isFile()) throw new DecodeError('not-a-file', file, 'is not a regular file (a FIFO, socket or device)');
    if (stat.size > maxBytes) {
      throw new DecodeError('too-large', file, `is ${formatBytes(stat.size)}, over the ${formatBytes(maxBytes)} limit for one image`);
    }
    return await readHandleCapped(handle, file, maxBytes, opts.signal);
  } catch (err) {
    if (err instanceof FileTooLargeError) throw tooLarge();
    throw err instanceof DecodeError || opts.signal?.aborted ? err : fsError(file, err);
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Sniffing

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif' | 'tiff' | 'avif';

const FORMAT_NAMES: Readonly<Record<ImageFormat, string>> = { jpeg: 'JPEG', png: 'PNG', webp: 'WebP', gif: 'GIF', tiff: 'TIFF', avif: 'AVIF' };

export type Sniffed =
  | { readonly kind: 'image'; readonly format: ImageFormat }
  /** A real image format the prebuilt sharp cannot read (or that we refuse, like SVG). */
  | { readonly kind: 'unsupported'; readonly name: string }
  | { readonly kind: 'not-an-image'; readonly looksLike: string };

const ascii = (bytes: Uint8Array, start: number, end: number) => Buffer.from(bytes.subarray(start, end)).toString('latin1');
const startsWith = (bytes: Uint8Array, magic: readonly number[], at = 0) => magic.every((b, i) => bytes[at + i] === b);

/**
 * Names the format from its first bytes. Only the six supported formats reach sharp: its content
 * sniffing would also render an SVG that was named .png (librsvg on untrusted input), and
 * unknown data gets a message saying what it looks like instead of "unsupported image format".
 */
export function sniffImageFormat(bytes: Uint8Array): Sniffed {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return { kind: 'image', format: 'jpeg' };
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return { kind: 'image', format: 'png' };
  const head = ascii(bytes, 0, 12);
  if (head.startsWith('GIF87a') || head.startsWith('GIF89a')) return { kind: 'image', format: 'gif' };
  if (head.startsWith('RIFF') && head.slice(8, 12) === 'WEBP') return { kind: 'image', format: 'webp' };
  // Classic and BigTIFF, both byte orders.
  if (['II*\0', 'MM\0*', 'II+\0', 'MM\0+'].includes(head.slice(0, 4))) return { kind: 'image', format: 'tiff' };
  if (head.slice(4, 8) === 'ftyp') return sniffIsoMedia(bytes);
  if (head.startsWith('BM')) return { kind: 'unsupported', name: 'BMP' };
  if (head.startsWith('%PDF')) return { kind: 'unsupported', name: 'PDF' };
  if (head.startsWith('8BPS')) return { kind: 'unsupported', name: 'Photoshop (PSD)' };
  if (startsWith(bytes, [0xff, 0x0a]) || head.slice(4, 8) === 'JXL ') return { kind: 'unsupported', name: 'JPEG XL' };
  if (head.slice(4, 8) === 'jP  ') return { kind: 'unsupported', name: 'JPEG 2000' };
  return { kind: 'not-an-image', looksLike: describeNonImage(bytes) };
}

/** AVIF and HEIC share the ISO-BMFF container; the prebuilt libheif decodes only AV1. */
function sniffIsoMedia(bytes: Uint8Array): Sniffed {
  const boxSize = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  const boxEnd = Math.min(bytes.length, boxSize, 256);
  const brands = [ascii(bytes, 8, 12)];
  for (let at = 16; at + 4 <= boxEnd; at += 4) brands.push(ascii(bytes, at, at + 4));
  if (brands.includes('avif') || brands.includes('avis')) return { kind: 'image', format: 'avif' };
  if (brands.some((b) => ['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'mif1', 'msf1'].includes(b))) {
    return { kind: 'unsupported', name: 'HEIC/HEIF (HEVC)' };
  }
  return { kind: 'not-an-image', looksLike: `an MP4/QuickTime media file (brand '${brands[0]}')` };
}

/** Magic numbers of common non-image files, so the message names what the file is. */
const KNOWN_BINARIES: readonly (readonly [readonly number[], string])[] = [
  [[0x50, 0x4b, 0x03, 0x04], 'a ZIP archive (or a file format built on ZIP)'],
  [[0x1f, 0x8b], 'a gzip archive'],
  [[0x7f, 0x45, 0x4c, 0x46], 'an ELF executable'],
  [[0x4d, 0x5a], 'a Windows executable'],
  [[0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c], 'a 7-Zip archive'],
  [[0x52, 0x61, 0x72, 0x21], 'a RAR archive'],
  [[0x53, 0x51, 0x4c, 0x69, 0x74, 0x65], 'an SQLite database'],
  [[0x49, 0x44, 0x33], 'an MP3 audio file'],
  [[0x4f, 0x67, 0x67, 0x53], 'an Ogg media file'],
];

/**
 * Says what kind of file this is without quoting any of it: a file named like an image may be
 * an .env file or whatever a symlink points to, and messages and errors.arrow are shared.
 */
function describeNonImage(bytes: Uint8Array): string {
  // The cut at 512 bytes may split a UTF-8 character into a trailing U+FFFD; that one is fine.
  const text = Buffer.from(bytes.subarray(0, 512)).toString('utf8').replace(/^\uFEFF/, '').replace(/\uFFFD$/, '');
  if (text.startsWith('version https://git-lfs.github.com/spec/')) return 'a Git LFS pointer, not the image itself (run `git lfs pull`)';
  const lower = text.trimStart().slice(0, 256).toLowerCase();
  if (lower.includes('<svg')) return 'an SVG drawing, which is not decoded (render it to PNG first)';
  if (lower.startsWith('<!doctype html') || lower.startsWith('<html')) return 'an HTML page (a failed download?)';
  if (lower.startsWith('<')) return 'an XML or HTML file';
  const known = KNOWN_BINARIES.find(([magic]) => startsWith(bytes, magic));
  if (known) return known[1];
  if (ascii(bytes, 0, 4) === 'RIFF') return 'a RIFF media file (audio or video)';
  // Printable text: tabs, newlines and anything from space up, except DEL and U+FFFD (invalid UTF-8).
  if (!/[\x00-\x08\x0e-\x1f\x7f\ufffd]/.test(text)) {
    if (lower.startsWith('{') || lower.startsWith('[')) return 'a JSON file';
    if (lower.startsWith('#!')) return 'a script';
    return 'a text file';
  }
  return 'unrecognised binary data';
}

// ---------------------------------------------------------------------------------------------
// Decoding

interface Settings {
  readonly height: number;
  readonly width: number;
  readonly fit: keyof FitEnum;
  readonly kernel: keyof KernelEnum;
  readonly cropFraction: number;
  readonly background: Rgb;
  readonly alpha: AlphaMode;
  readonly maxPixels: number;
  readonly timeoutSeconds: number;
}

const FITS: Readonly<Record<ResizeMode, keyof FitEnum>> = { squash: 'fill', crop: 'cover', pad: 'contain' };
const KERNELS: Readonly<Record<Interpolation, keyof KernelEnum>> = { nearest: 'nearest', linear: 'linear', cubic: 'cubic', lanczos3: 'lanczos3' };

/** Bad options are the caller's bug, not the image's: plain Errors, thrown before any decoding. */
function settingsFrom(opts: DecodeOptions): Settings {
  const [height, width] = opts.size;
  const isCount = (n: number) => Number.isSafeInteger(n) && n > 0;
  if (!isCount(height) || !isCount(width)) throw new Error(`decodeImage: size must be two positive integers, got [${opts.size.join(', ')}]`);
  const resize = opts.resize ?? 'squash';
  const interpolation = opts.interpolation ?? 'linear';
  if (!Object.hasOwn(FITS, resize)) throw new Error(`decodeImage: unknown resize mode '${resize}'`);
  if (!Object.hasOwn(KERNELS, interpolation)) throw new Error(`decodeImage: unknown interpolation '${interpolation}'`);
  const cropFraction = opts.cropFraction ?? 1;
  if (!(cropFraction > 0 && cropFraction <= 1)) throw new Error(`decodeImage: cropFraction must be in (0, 1], got ${cropFraction}`);
  if (cropFraction < 1 && resize !== 'crop') throw new Error(`decodeImage: cropFraction needs resize 'crop', not '${resize}'`);
  const background = opts.background ?? DEFAULT_BACKGROUND;
  if (![background.r, background.g, background.b].every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) {
    throw new Error(`decodeImage: background channels must be integers 0..255, got ${JSON.stringify(background)}`);
  }
  const alpha = opts.alpha ?? 'flatten';
  if (alpha !== 'flatten' && alpha !== 'drop') throw new Error(`decodeImage: unknown alpha mode '${String(alpha)}'`);
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!isCount(maxPixels)) throw new Error(`decodeImage: maxPixels must be a positive integer, got ${maxPixels}`);
  const timeoutSeconds = opts.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
  // sharp counts whole seconds, up to an hour.
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 0 || timeoutSeconds > 3600) {
    throw new Error(`decodeImage: timeoutSeconds must be a whole number of seconds 0..3600, got ${timeoutSeconds}`);
  }
  return { height, width, fit: FITS[resize], kernel: KERNELS[interpolation], cropFraction, background, alpha, maxPixels, timeoutSeconds };
}

/** Resolves to H×W×3 8-bit sRGB bytes, or rejects with a DecodeError for a bad file. */
export async function decodeImage(input: string | Buffer, opts: DecodeOptions): Promise<Uint8Array> {
  const settings = settingsFrom(opts);
  const source = typeof input === 'string' ? input : opts.source;
  const bytes = typeof input === 'string' ? await readImageFile(input) : input;
  if (bytes.length === 0) throw new DecodeError('empty-file', source, 'is empty (0 bytes)');
  const sniffed = sniffImageFormat(bytes);
  if (sniffed.kind === 'not-an-image') throw new DecodeError('not-an-image', source, `is not an image: it looks like ${sniffed.looksLike}`);
  if (sniffed.kind === 'unsupported') throw new DecodeError('unsupported-format', source, `is a ${sniffed.name} image, which cannot be decoded here; convert it to PNG or JPEG`);

  let rgb: Buffer;
  const started = performance.now();
  try {
    rgb = await decodePixels(bytes, sniffed.format, settings);
  } catch (err) {
    throw await sharpFailure(err, bytes, sniffed.format, source, settings, (performance.now() - started) / 1000);
  }
  if (rgb.length !== settings.height * settings.width * 3) {
    throw new Error(`decodeImage: sharp returned ${rgb.length} bytes, expected ${settings.height}×${settings.width}×3`);
  }
  return new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength);
}

/**
 * Already-decoded 8-bit pixels (RGB or RGBA, row-major) brought to the network size exactly as
 * decodeImage brings a file's, for pixels made in memory (augmented views).
 */
export async function resizeRawImage(
  data: Buffer,
  raw: { readonly width: number; readonly height: number; readonly channels: 3 | 4 },
  opts: DecodeOptions,
): Promise<Uint8Array> {
  const s = settingsFrom(opts);
  const rgb = await toNetworkSize(withTimeout(sharp(data, { raw, limitInputPixels: s.maxPixels }), s).flatten({ background: s.background }), s);
  return new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength);
}

/** Formats whose files may carry alpha; JPEG never does. */
const MAY_HAVE_ALPHA: ReadonlySet<ImageFormat> = new Set(['png', 'webp', 'gif', 'tiff', 'avif']);

async function decodePixels(bytes: Buffer, format: ImageFormat, s: Settings): Promise<Buffer> {
  const input: SharpOptions = {
    // 'truncated' would pass JPEG-compressed TIFFs with damaged data as garbage pixels, and
    // 'warning' rejects files with cosmetic damage PIL reads; 'error' rejects neither of the
    // 6800 real JPEGs in ../shared/datasets and turns truncated files into a clean error
    // instead of half-grey images.
    failOn: 'error',
    // Checked against the header's declared size, so a bomb fails before any pixel is inflated.
    limitInputPixels: s.maxPixels,
    autoOrient: true,
    // sharp's default, stated because all pages would stack an animation's frames into one
    // tall strip: GIF, animated WebP and multi-page TIFF give their first frame.
    pages: 1,
    page: 0,
  };
  if (s.alpha === 'drop' && MAY_HAVE_ALPHA.has(format)) {
    // sharp always flattens before resizing and drops alpha only after it, on premultiplied
    // pixels, which would blacken fully transparent ones. So drop at full size first.
    const { data, info } = await withTimeout(sharp(bytes, input), s)
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const raw = { width: info.width, height: info.height, channels: info.channels };
    return toNetworkSize(withTimeout(sharp(data, { raw, limitInputPixels: s.maxPixels }), s), s);
  }
  return toNetworkSize(withTimeout(sharp(bytes, input), s).flatten({ background: s.background }), s);
}

function withTimeout(image: Sharp, s: Settings): Sharp {
  return image.timeout({ seconds: s.timeoutSeconds });
}

function toNetworkSize(image: Sharp, s: Settings): Promise<Buffer> {
  // A crop fraction resizes to the larger square first, then takes its centre (post-resize extract).
  const outer = s.cropFraction < 1 ? [Math.round(s.width / s.cropFraction), Math.round(s.height / s.cropFraction)] : [s.width, s.height];
  const resized = image.resize(outer[0], outer[1], {
      fit: s.fit,
      kernel: s.kernel,
      background: s.background,
      // With the default, libwebp's own scaler does a whole WebP downscale (ignoring `kernel`)
      // and JPEG's DCT shrink up to all of a JPEG one; false leaves at least 2× to `kernel`,
      // for about 20% more time on a 4000×3000 JPEG.
      fastShrinkOnLoad: false,
    });
  const fitted = s.cropFraction < 1 ? resized.extract({ left: (outer[0] - s.width) >> 1, top: (outer[1] - s.height) >> 1, width: s.width, height: s.height }) : resized;
  return fitted
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer();
}

/**
 * libvips keeps one error buffer for all threads and sharp reads it when an operation fails, so
 * with decodes in parallel one file's message can carry another file's words ("corrupt PNG
 * (VipsJpeg: Empty JPEG image)") or lose its own (sharp then says "Unknown error"). Lines that
 * name another format's loader, or a timeout when this was none, are not about this file.
 */
const LOADER_TAGS: Readonly<Record<ImageFormat, readonly string[]>> = {
  jpeg: ['VipsJpeg', 'jpegload'],
  png: ['vipspng', 'pngload', 'spngload'],
  gif: ['gifload', 'cgif'],
  webp: ['webp2vips', 'webpload'],
  tiff: ['tiff2vips', 'tiffload'],
  avif: ['heifload'],
};

function ownDetail(message: string, format: ImageFormat): string[] {
  const foreign = Object.entries(LOADER_TAGS).flatMap(([f, tags]) => (f === format ? [] : tags.map((t) => `${t}:`)));
  return message
    .split('\n')
    // libvips' error buffer is process-wide, so another thread's words can follow sharp's own
    // prefix on the same line ("Input buffer has corrupt header: VipsJpeg: …" for a PNG): keep the prefix.
    .map((line) => foreign.reduce((kept, tag) => (kept.includes(tag) ? kept.slice(0, kept.indexOf(tag)) : kept), line))
    // A dangling colon is where libvips had no detail to add ("Input buffer has corrupt header:").
    .map((line) => line.trim().replace(/:$/, '').trim())
    .filter((line) => line && line !== 'Unknown error' && !/^timeout: \d+% complete$/.test(line));
}

/** Turns a sharp rejection into a DecodeError; its messages are libvips' words. */
async function sharpFailure(err: unknown, bytes: Buffer, format: ImageFormat, source: string | undefined, s: Settings, seconds: number): Promise<DecodeError> {
  const message = err instanceof Error ? err.message : String(err);
  const name = FORMAT_NAMES[format];
  if (/exceeds pixel limit/i.test(message)) {
    const declared = await declaredSize(bytes);
    const what = declared ? `declares ${declared.width}×${declared.height} pixels` : 'declares more pixels than allowed';
    return new DecodeError('too-large', source, `${what}, over the ${formatPixels(s.maxPixels)} limit (maxPixels); it may be a decompression bomb`, { cause: err });
  }
  const detail = ownDetail(message, format);
  // sharp kills a decode after timeoutSeconds and says "timeout: N% complete"; the clock still
  // tells a timeout whose words another thread's failure took, or that came with its words.
  const mentionsTimeout = /^timeout: \d+% complete$/m.test(message);
  const ranOut = s.timeoutSeconds > 0 && seconds >= s.timeoutSeconds;
  const timedOut = (ranOut && (mentionsTimeout || detail.length === 0)) || (detail.length === 0 && /^timeout\b/i.test(message));
  if (timedOut) {
    return new DecodeError('timeout', source, `took longer than ${s.timeoutSeconds} s to decode (timeoutSeconds)`, { cause: err });
  }
  const words = detail.length ? detail.slice(0, 2).join('; ') : 'the decoder gave no detail';
  return new DecodeError('corrupt', source, `is a truncated or corrupt ${name} (${words})`, { cause: err });
}

/** Header-only read, for the message: the limit is off because this decodes no pixels. */
async function declaredSize(bytes: Buffer): Promise<{ width: number; height: number } | undefined> {
  try {
    const { width, height } = await sharp(bytes, { limitInputPixels: false }).metadata();
    return { width, height };
  } catch {
    return undefined;
  }
}

function formatPixels(pixels: number): string {
  return pixels % 1_000_000 === 0 ? `${pixels / 1_000_000}-megapixel` : `${pixels.toLocaleString('en-US')}-pixel`;
}

/**
 * A small JPEG of an image for a report, with extract's checks: the bytes are sniffed first
 * (never a non-image handed to libvips), and the pixel limit, timeout and first-page rule are
 * extract's. Rejects with a DecodeError like decodeImage.
 */
export async function thumbnailJpeg(bytes: Buffer, source: string, maxSide: number): Promise<{ data: Buffer; width: number; height: number }> {
  const sniffed = sniffImageFormat(bytes);
  if (sniffed.kind !== 'image') throw new DecodeError(sniffed.kind === 'unsupported' ? 'unsupported-format' : 'not-an-image', source, 'is not an image extract accepts');
  const s = settingsFrom({ size: [maxSide, maxSide] });
  const input: SharpOptions = { failOn: 'error', limitInputPixels: s.maxPixels, autoOrient: true, pages: 1, page: 0 };
  try {
    const { data, info } = await withTimeout(sharp(bytes, input), s)
      .resize(maxSide, maxSide, { fit: 'inside' })
      .flatten({ background: '#ffffff' })
      .jpeg({ quality: 82 })
      .toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height };
  } catch (err) {
    throw await sharpFailure(err, bytes, sniffed.format, source, s, 0);
  }
}
