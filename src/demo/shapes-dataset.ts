/**
 * The labelled image set `bottleneck demo` runs on: filled circles, squares and triangles on
 * noisy backgrounds, drawn from SVG so the project never downloads images. A pretrained CNN
 * separates the classes by outline alone, while random colours, sizes, positions, rotations,
 * speckles, lines and pixel noise keep a head from scoring by memorising a few pixels.
 *
 * Every image has its own random stream derived from (seed, split, class, index), so an image
 * does not change when other splits grow or shrink, and images can be rendered in any order.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { Split } from '../cache/code-rows.ts';
import { mulberry32 } from '../util/numbers.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { UsageError } from '../util/errors.ts';

export interface ShapesDatasetOptions {
  seed?: number;
  /** Width and height of every image, in pixels. */
  size?: number;
  /** Images per class in each split. */
  perClass?: { train: number; validation: number; test: number };
}

export interface ShapesDatasetResult {
  /** Absolute path of the dataset folder. */
  dir: string;
  images: number;
  /** false when a complete set with the same parameters was already there and nothing was written. */
  generated: boolean;
}

export const SHAPE_CLASSES: readonly string[] = Object.freeze(['circle', 'square', 'triangle']);

type ShapeClass = 'circle' | 'square' | 'triangle';

/** Bump whenever the drawing changes, so sets made by an older generator are regenerated. */
export const SHAPES_GENERATOR_VERSION = 1;
const GENERATOR_NAME = 'bottleneck-shapes';
const MANIFEST = 'dataset.json';
/**
 * Exists while a generation is under way; it tells a later run that split folders without a
 * manifest are the remains of a crash here, not someone's own images that must not be deleted.
 */
const IN_PROGRESS = '.generating';
const SPLITS: readonly Split[] = ['train', 'validation', 'test'];
const DEFAULTS = { seed: 1, size: 224, perClass: { train: 40, validation: 16, test: 16 } } as const;
/** sharp runs each render on libuv's pool; a few in flight keep it busy without piling up buffers. */
const IN_FLIGHT = 4;

interface Manifest {
  generator: string;
  version: number;
  seed: number;
  size: number;
  perClass: { train: number; validation: number; test: number };
  classes: string[];
  images: number;
}

interface ImageJob {
  /** Relative to the dataset folder, with '/' separators. */
  rel: string;
  shape: ShapeClass;
  imageSeed: number;
}

export async function generateShapesDataset(dir: string, opts: ShapesDatasetOptions = {}): Promise<ShapesDatasetResult> {
  const root = path.resolve(dir);
  const manifest = checkedManifest(opts);
  const jobs = listImages(manifest);

  const existing = await readManifest(root);
  if (existing && sameParameters(existing, manifest) && (await allExist(root, jobs))) {
    return { dir: root, images: jobs.length, generated: false };
  }
  if (!existing && !existsSync(path.join(root, IN_PROGRESS)) && !(await isEmptyOrMissing(root))) {
    throw new UsageError(`${root}: not empty and not a generated shapes set; refusing to overwrite it`);
  }

  await mkdir(root, { recursive: true });
  await writeFileAtomic(path.join(root, IN_PROGRESS), '');
  // The old manifest goes first: a crash from here on must not leave a set that looks complete.
  await rm(path.join(root, MANIFEST), { force: true });
  // Stale images from other parameters (or other class lists) would be read as part of the set.
  for (const split of SPLITS) await rm(path.join(root, split), { recursive: true, force: true });

  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const job = jobs[next++];
      const jpeg = await renderImage(job.shape, manifest.size, job.imageSeed);
      await writeFileAtomic(path.join(root, ...job.rel.split('/')), jpeg);
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, jobs.length) }, worker));

  await writeFileAtomic(path.join(root, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  await rm(path.join(root, IN_PROGRESS), { force: true });
  return { dir: root, images: jobs.length, generated: true };
}

function checkedManifest(opts: ShapesDatasetOptions): Manifest {
  const seed = opts.seed ?? DEFAULTS.seed;
  const size = opts.size ?? DEFAULTS.size;
  const perClass = { ...(opts.perClass ?? DEFAULTS.perClass) };
  // mulberry32 keeps only 32 bits, so two different seeds outside this range could give the same set.
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new UsageError(`shapes seed must be an integer 0..4294967295 (got ${seed})`);
  // Below 32 px the shapes and their noise blur into each other; above 4096 one image is 50 MB raw.
  if (!Number.isInteger(size) || size < 32 || size > 4096) throw new UsageError(`shapes image size must be an integer 32..4096 (got ${size})`);
  for (const split of SPLITS) {
    const n = perClass[split];
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`shapes images per class for ${split} must be a non-negative integer (got ${n})`);
  }
  const images = SPLITS.reduce((sum, split) => sum + perClass[split], 0) * SHAPE_CLASSES.length;
  if (images === 0) throw new UsageError('shapes dataset: every split has 0 images per class');
  return { generator: GENERATOR_NAME, version: SHAPES_GENERATOR_VERSION, seed, size, perClass, classes: [...SHAPE_CLASSES], images };
}

function listImages(manifest: Manifest): ImageJob[] {
  const jobs: ImageJob[] = [];
  SPLITS.forEach((split, s) => {
    const count = manifest.perClass[split];
    // Names sort in drawing order however many there are.
    const digits = Math.max(3, String(count - 1).length);
    SHAPE_CLASSES.forEach((shape, c) => {
      for (let i = 0; i < count; i++) {
        const name = `${shape}-${String(i).padStart(digits, '0')}.jpg`;
        jobs.push({ rel: `${split}/${shape}/${name}`, shape: shape as ShapeClass, imageSeed: mixSeed(manifest.seed, s, c, i) });
      }
    });
  });
  return jobs;
}

/** Nearby inputs (image 7 and 8) must give unrelated streams, so each is passed through a hash. */
function mixSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    h = Math.imul(h ^ (part >>> 0), 0x01000193);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
  }
  return h >>> 0;
}

async function readManifest(root: string): Promise<Manifest | null> {
  let text: string;
  try {
    text = await readFile(path.join(root, MANIFEST), 'utf8');
  } catch {
    return null;
  }
  try {
    const parsed = JSON.parse(text) as Partial<Manifest> | null;
    return parsed && parsed.generator === GENERATOR_NAME ? (parsed as Manifest) : null;
  } catch {
    return null;
  }
}

function sameParameters(a: Manifest, b: Manifest): boolean {
  return (
    a.version === b.version &&
    a.seed === b.seed &&
    a.size === b.size &&
    a.images === b.images &&
    SPLITS.every((split) => a.perClass?.[split] === b.perClass[split]) &&
    JSON.stringify(a.classes) === JSON.stringify(b.classes)
  );
}

async function allExist(root: string, jobs: readonly ImageJob[]): Promise<boolean> {
  for (const job of jobs) {
    try {
      if (!(await stat(path.join(root, ...job.rel.split('/')))).isFile()) return false;
    } catch {
      return false;
    }
  }
  return true;
}

async function isEmptyOrMissing(root: string): Promise<boolean> {
  try {
    return (await readdir(root)).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

type Random = () => number;

function uniform(random: Random, lo: number, hi: number): number {
  return lo + (hi - lo) * random();
}

type Rgb = readonly [number, number, number];

function randomRgb(random: Random): Rgb {
  return [Math.floor(random() * 256), Math.floor(random() * 256), Math.floor(random() * 256)];
}

function luminance([r, g, b]: Rgb): number {
  const lin = (v: number): number => {
    const c = v / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

/** WCAG contrast ratio, 1 (same luminance) to 21 (black on white). */
function contrast(a: Rgb, b: Rgb): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

function hex([r, g, b]: Rgb): string {
  return `#${[r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

/**
 * Shape colours are redrawn until they stand out from the background: a CNN sees colour
 * channels, not just luminance, but a shape a person cannot see would be a mislabelled image.
 */
function contrastingRgb(random: Random, background: Rgb, minRatio: number): Rgb {
  for (let tries = 0; tries < 100; tries++) {
    const rgb = randomRgb(random);
    if (contrast(rgb, background) >= minRatio) return rgb;
  }
  return luminance(background) > 0.18 ? [0, 0, 0] : [255, 255, 255];
}

/** Vertices of a regular polygon around (cx, cy), first vertex pointing `angle` radians from up. */
function polygon(cx: number, cy: number, radius: number, sides: number, angle: number): string {
  const points: string[] = [];
  for (let k = 0; k < sides; k++) {
    const a = angle + (2 * Math.PI * k) / sides;
    points.push(`${f(cx + radius * Math.sin(a))},${f(cy - radius * Math.cos(a))}`);
  }
  return points.join(' ');
}

/** Two decimals keep the SVG small; the output only has to be the same on every run. */
function f(v: number): string {
  return v.toFixed(2);
}

/**
 * One image's SVG. Shapes of a given "size" have equal area whatever their class, so area
 * does not give the class away; the extent of each shape (circumradius) sets how far from the
 * edges its centre must stay so that it is never cut off.
 */
function shapeSvg(shape: ShapeClass, size: number, random: Random): string {
  const background = randomRgb(random);
  const fill = contrastingRgb(random, background, 3);
  // Radius of the circle with the shape's area.
  const r = uniform(random, 0.13, 0.26) * size;
  const rotation = uniform(random, 0, 2 * Math.PI);
  const extent = { circle: r, square: r * Math.sqrt(Math.PI / 2), triangle: r * Math.sqrt((4 * Math.PI) / (3 * Math.sqrt(3))) }[shape];
  const margin = 0.03 * size;
  const cx = uniform(random, extent + margin, size - extent - margin);
  const cy = uniform(random, extent + margin, size - extent - margin);

  const parts: string[] = [`<rect width="${size}" height="${size}" fill="${hex(background)}"/>`];
  // Clutter behind the shape as well as over it, so the shape is not simply the topmost thing.
  const clutter = (count: number): void => {
    for (let i = 0; i < count; i++) {
      const colour = hex(randomRgb(random));
      const opacity = f(uniform(random, 0.3, 0.8));
      if (random() < 0.7) {
        parts.push(`<circle cx="${f(random() * size)}" cy="${f(random() * size)}" r="${f(uniform(random, 0.004, 0.012) * size)}" fill="${colour}" fill-opacity="${opacity}"/>`);
      } else {
        const x = random() * size;
        const y = random() * size;
        const len = uniform(random, 0.05, 0.2) * size;
        const a = random() * 2 * Math.PI;
        parts.push(
          `<line x1="${f(x)}" y1="${f(y)}" x2="${f(x + len * Math.cos(a))}" y2="${f(y + len * Math.sin(a))}" stroke="${colour}" stroke-opacity="${opacity}" stroke-width="${f(uniform(random, 0.004, 0.01) * size)}"/>`,
        );
      }
    }
  };
  clutter(20);
  if (shape === 'circle') parts.push(`<circle cx="${f(cx)}" cy="${f(cy)}" r="${f(r)}" fill="${hex(fill)}"/>`);
  else parts.push(`<polygon points="${polygon(cx, cy, extent, shape === 'square' ? 4 : 3, rotation)}" fill="${hex(fill)}"/>`);
  clutter(10);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 ${size} ${size}">${parts.join('')}</svg>`;
}

/**
 * Standard normals for the pixel noise, looked up rather than computed: Box-Muller per pixel
 * (a log, a square root and a cosine per pair) took most of the generation time.
 */
const NORMALS: Float32Array = (() => {
  const random = mulberry32(0x9e3779b9);
  const table = new Float32Array(1 << 16);
  for (let i = 0; i < table.length; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - random()));
    const theta = 2 * Math.PI * random();
    table[i] = radius * Math.cos(theta);
    table[i + 1] = radius * Math.sin(theta);
  }
  return table;
})();

/** Gaussian pixel noise on top of the drawing, so no two flat areas are exactly alike. */
function addNoise(pixels: Buffer, random: Random, sigma: number): void {
  // Clamped stores round and saturate in the engine, three times faster than doing it by hand.
  const px = new Uint8ClampedArray(pixels.buffer, pixels.byteOffset, pixels.length);
  const pairs = px.length - 1;
  let i = 0;
  for (; i < pairs; i += 2) {
    // mulberry32 returns a 32-bit integer over 2^32: its bits pick two table entries.
    const bits = (random() * 4294967296) >>> 0;
    px[i] += sigma * NORMALS[bits & 0xffff];
    px[i + 1] += sigma * NORMALS[bits >>> 16];
  }
  if (i < px.length) px[i] += sigma * NORMALS[((random() * 4294967296) >>> 0) & 0xffff];
}

async function renderImage(shape: ShapeClass, size: number, imageSeed: number): Promise<Buffer> {
  const random = mulberry32(imageSeed);
  const svg = shapeSvg(shape, size, random);
  const { data, info } = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size || info.channels !== 3) {
    throw new Error(`shapes: SVG rendered as ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
  }
  addNoise(data, random, uniform(random, 4, 12));
  return sharp(data, { raw: { width: size, height: size, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}
