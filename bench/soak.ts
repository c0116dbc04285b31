/**
 * bench/soak: one long extract, in-process, watched for slow leaks: resident memory, open file
 * descriptors and throughput, sampled every --interval ms while runExtract works through
 * --images small images with the tiny backbone (onnx, cpu).
 *
 *   node --import tsx bench/soak.ts                     # 20,000 images of 48×48
 *   node --import tsx bench/soak.ts --images 2000       # a quick look
 *
 * The images (PNG and JPEG alternately, each distinct: a gradient, a few rectangles and seeded
 * noise) are generated once, in parallel batches, into a folder of the system temp dir named
 * after the parameters; re-runs reuse it (`--regenerate` to make it again). The cache is a
 * fresh temp folder, removed afterwards unless --keep.
 *
 * Garbage is collected (and 1 s left to settle) before the start and end samples, so the end
 * RSS is what the run left behind, not the last flush's garbage: rows are buffered for
 * --flush-seconds, and a flush holds them about three times over (rows, concatenated, encoded),
 * so RSS is a sawtooth of that height during the run.
 *
 * Verdicts:
 *   - RSS flat: the end RSS ≤ 1.25 × the RSS after warm-up (the first sample with 10% done);
 *   - handles not growing: the end fd count ≤ the count after warm-up + 2, and the last 20% of
 *     samples never above the peak of the samples between 10% and 50% done + 2. (The count
 *     before the run is lower by the descriptors opened once, on first use: onnxruntime's
 *     telemetry files unless ORT_DISABLE_TELEMETRY=1, libuv's thread pool.)
 *   - throughput not decaying: images/s over the last 20% of the extraction's time ≥ 0.8 × that
 *     of the first 20% (timed from the first image done, so start-up is left out).
 * Samples and summary go to bench/results/soak.json. Exit code 1 if a verdict fails.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import sharp from 'sharp';
import { loadBackbone } from '../src/backbones/zoo.ts';
import { loadDataset } from '../src/extract/dataset.ts';
import { runExtract, type ExtractProgress } from '../src/extract/run-extract.ts';
import { mulberry32 } from '../src/util/numbers.ts';
import { benchArgs } from './args.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const { values: args } = benchArgs({
  options: {
    images: { type: 'string', default: '20000' },
    size: { type: 'string', default: '48' },
    classes: { type: 'string', default: '10' },
    seed: { type: 'string', default: '1' },
    batch: { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '4' },
    'flush-seconds': { type: 'string', default: '30' },
    interval: { type: 'string', default: '1000' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results', 'soak.json') },
    regenerate: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const IMAGES = Number(args.images);
const SIZE = Number(args.size);
const CLASSES = Number(args.classes);
const SEED = Number(args.seed);
const INTERVAL = Number(args.interval);

/** One image's bytes: cheap to encode, small on disk, distinct content for every index. */
async function makeImage(i: number): Promise<Buffer> {
  const random = mulberry32(SEED * 1_000_003 + i);
  const c0 = [0, 0, 0].map(() => random() * 255);
  const c1 = [0, 0, 0].map(() => random() * 255);
  const pixels = Buffer.alloc(SIZE * SIZE * 3);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const t = (x + y) / (2 * SIZE - 2);
      for (let c = 0; c < 3; c++) pixels[(y * SIZE + x) * 3 + c] = c0[c] + (c1[c] - c0[c]) * t + (random() - 0.5) * 16;
    }
  }
  for (let r = 0; r < 3; r++) {
    const [x0, y0] = [(random() * SIZE) | 0, (random() * SIZE) | 0];
    const [w, h] = [4 + ((random() * SIZE) / 2) | 0, 4 + ((random() * SIZE) / 2) | 0];
    const colour = [0, 0, 0].map(() => (random() * 256) | 0);
    for (let y = y0; y < Math.min(SIZE, y0 + h); y++) for (let x = x0; x < Math.min(SIZE, x0 + w); x++) pixels.set(colour, (y * SIZE + x) * 3);
  }
  const img = sharp(pixels, { raw: { width: SIZE, height: SIZE, channels: 3 } });
  return i % 2 === 1 ? img.jpeg({ quality: 85 }).toBuffer() : img.png({ compressionLevel: 6 }).toBuffer();
}

const imageName = (i: number) => path.join(`class${String(i % CLASSES).padStart(2, '0')}`, `img${String(i).padStart(6, '0')}.${i % 2 === 1 ? 'jpg' : 'png'}`);

/** The generated set, made once per parameter set; a `.complete` marker says it is whole. */
async function dataset(): Promise<string> {
  const id = createHash('sha256').update(JSON.stringify({ v: 1, images: IMAGES, size: SIZE, classes: CLASSES, seed: SEED })).digest('hex').slice(0, 12);
  const dir = path.join(os.tmpdir(), `bottleneck-soak-data-${IMAGES}x${SIZE}-${id}`);
  const marker = path.join(dir, '.complete');
  if (existsSync(marker) && !args.regenerate) {
    console.log(`dataset: ${IMAGES} images of ${SIZE}×${SIZE} (reused) in ${dir}`);
    return dir;
  }
  await rm(dir, { recursive: true, force: true });
  for (let c = 0; c < CLASSES; c++) await mkdir(path.join(dir, `class${String(c).padStart(2, '0')}`), { recursive: true });
  const started = performance.now();
  const parallel = 64;
  for (let i = 0; i < IMAGES; i += parallel) {
    const batch = Array.from({ length: Math.min(parallel, IMAGES - i) }, (_, k) => i + k);
    await Promise.all(batch.map(async (n) => writeFile(path.join(dir, imageName(n)), await makeImage(n))));
    if ((i / parallel) % 50 === 0) process.stdout.write(`\rgenerating: ${i + batch.length}/${IMAGES}`);
  }
  await writeFile(marker, '');
  console.log(`\rdataset: ${IMAGES} images of ${SIZE}×${SIZE} generated in ${((performance.now() - started) / 1000).toFixed(1)} s in ${dir}`);
  return dir;
}

interface Sample {
  /** Seconds since runExtract was called. */
  readonly t: number;
  readonly done: number;
  readonly computed: number;
  readonly rssMb: number;
  readonly heapUsedMb: number;
  readonly externalMb: number;
  readonly arrayBuffersMb: number;
  readonly fds: number;
  /** Images done per second since the previous sample. */
  readonly imgPerSec: number;
}

const mb = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
const fdCount = () => readdirSync('/proc/self/fd').length;
/** global.gc without --expose-gc on the command line. */
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const settle = async () => {
  gc();
  await new Promise((r) => setTimeout(r, 1000));
  gc();
};

/** Images done at time t, interpolated between samples. */
function doneAt(samples: readonly Sample[], t: number): number {
  if (t <= samples[0].t) return samples[0].done;
  for (let i = 1; i < samples.length; i++) {
    const [a, b] = [samples[i - 1], samples[i]];
    if (t <= b.t) return a.done + ((b.done - a.done) * (t - a.t)) / (b.t - a.t || 1);
  }
  return samples.at(-1)!.done;
}

async function main(): Promise<number> {
  const data = await dataset();
  const cacheRoot = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-soak-cache-'));
  try {
    const ds = await loadDataset(data);
    const backbone = await loadBackbone('tiny-vgg-random');
    await settle();
    const samples: Sample[] = [];
    let progress: ExtractProgress = { done: 0, total: ds.items.length, computed: 0, reused: 0, failed: 0, seconds: 0 };
    let firstDoneAt: number | undefined;
    let allDoneAt: number | undefined;
    const t0 = performance.now();
    const sample = () => {
      const m = process.memoryUsage();
      const t = (performance.now() - t0) / 1000;
      const prev = samples.at(-1);
      samples.push({
        t: Math.round(t * 1000) / 1000,
        done: progress.done,
        computed: progress.computed,
        rssMb: mb(m.rss),
        heapUsedMb: mb(m.heapUsed),
        externalMb: mb(m.external),
        arrayBuffersMb: mb(m.arrayBuffers),
        fds: fdCount(),
        imgPerSec: prev ? Math.round(((progress.done - prev.done) / (t - prev.t || 1)) * 10) / 10 : 0,
      });
    };
    sample();
    const timer = setInterval(sample, INTERVAL);
    const summary = await runExtract({
      items: ds.items,
      dataset: ds,
      backbone,
      cut: backbone.defaultCut,
      resize: 'squash',
      interpolation: 'linear',
      background: [255, 255, 255],
      dtype: 'float32',
      batch: Number(args.batch),
      concurrency: Number(args.concurrency),
      engine: 'onnx',
      device: 'cpu',
      cacheRoot,
      flushSeconds: Number(args['flush-seconds']),
      onProgress: (p) => {
        progress = p;
        const now = (performance.now() - t0) / 1000;
        if (firstDoneAt === undefined) firstDoneAt = now;
        if (p.done === p.total && allDoneAt === undefined) allDoneAt = now;
      },
    });
    clearInterval(timer);
    sample(); // the last flush's garbage still held
    await settle();
    sample();
    const end = samples.at(-1)!;
    const start = samples[0];

    // RSS
    const warm = samples.find((s) => s.done >= 0.1 * IMAGES) ?? samples[1] ?? start;
    const peakRss = samples.reduce((a, s) => (s.rssMb > a.rssMb ? s : a));
    const rssFlat = end.rssMb <= 1.25 * warm.rssMb;
    const after = samples.slice(0, -2).filter((s) => s.t >= warm.t);
    const slope = linearSlope(after.map((s) => [s.done, s.rssMb]));
    /** Median RSS of the samples in each fifth of the images: the trend under the flush sawtooth. */
    const fifths = [0, 1, 2, 3, 4].map((f) => median(samples.slice(1, -2).filter((s) => s.done >= (f * IMAGES) / 5 && s.done < ((f + 1) * IMAGES) / 5).map((s) => s.rssMb)));
    // File descriptors
    const peakFds = Math.max(...samples.map((s) => s.fds));
    const mid = samples.filter((s) => s.done >= 0.1 * IMAGES && s.done <= 0.5 * IMAGES);
    const tail = samples.slice(Math.floor(samples.length * 0.8));
    const fdsFlat = end.fds <= warm.fds + 2 && Math.max(...tail.map((s) => s.fds)) <= Math.max(...mid.map((s) => s.fds), warm.fds) + 2;
    // Throughput, over the extraction proper
    const a = firstDoneAt ?? 0;
    const b = allDoneAt ?? end.t;
    const span = b - a;
    const rate = (from: number, to: number) => (doneAt(samples, to) - doneAt(samples, from)) / (to - from);
    const firstRate = rate(a, a + 0.2 * span);
    const lastRate = rate(b - 0.2 * span, b);
    const ratio = lastRate / firstRate;
    const throughputOk = ratio >= 0.8;

    const every = Math.max(1, Math.ceil(samples.length / 40));
    console.log(`\n${'t s'.padStart(7)} ${'done'.padStart(6)} ${'img/s'.padStart(7)} ${'RSS MB'.padStart(7)} ${'heap MB'.padStart(8)} ${'ext MB'.padStart(7)} ${'fds'.padStart(4)}`);
    samples.forEach((s, i) => {
      if (i % every !== 0 && i !== samples.length - 1) return;
      console.log(`${s.t.toFixed(1).padStart(7)} ${String(s.done).padStart(6)} ${s.imgPerSec.toFixed(0).padStart(7)} ${s.rssMb.toFixed(1).padStart(7)} ${s.heapUsedMb.toFixed(1).padStart(8)} ${s.externalMb.toFixed(1).padStart(7)} ${String(s.fds).padStart(4)}`);
    });
    console.log(
      `\nextract: ${summary.images} images, ${summary.new} new, ${summary.reused} reused, ${summary.failed} failed in ${summary.seconds.toFixed(1)} s ` +
        `(${(summary.images / summary.seconds).toFixed(0)} img/s overall), ${samples.length} samples every ${INTERVAL} ms`,
    );
    console.log(`RSS MB:      start ${start.rssMb}, after warm-up ${warm.rssMb} (${warm.done} done), peak ${peakRss.rssMb} (at ${peakRss.done} done), end ${end.rssMb}; slope after warm-up ${(slope * 1000).toFixed(2)} MB per 1000 images`);
    console.log(`RSS MB:      median per fifth of the images ${fifths.map((m) => (Number.isNaN(m) ? '-' : m.toFixed(0))).join(' / ')}; last flush's garbage ${samples.at(-2)!.rssMb} before gc`);
    console.log(`open fds:    start ${start.fds}, after warm-up ${warm.fds}, peak ${peakFds}, end ${end.fds}`);
    console.log(`throughput:  first 20% ${firstRate.toFixed(0)} img/s, last 20% ${lastRate.toFixed(0)} img/s, ratio ${ratio.toFixed(2)} (extraction ${span.toFixed(1)} s)`);
    console.log(`verdict: RSS flat (end ≤ 1.25 × after warm-up): ${rssFlat ? 'yes' : 'no'} (${(end.rssMb / warm.rssMb).toFixed(2)}×)`);
    console.log(`verdict: handles not growing: ${fdsFlat ? 'yes' : 'no'} (${warm.fds} after warm-up → ${end.fds} at the end)`);
    console.log(`verdict: throughput not decaying (last/first ≥ 0.8): ${throughputOk ? 'yes' : 'no'} (${ratio.toFixed(2)})`);

    await mkdir(path.dirname(args.out!), { recursive: true });
    await writeFile(
      args.out!,
      `${JSON.stringify(
        {
          when: new Date().toISOString(),
          params: { images: IMAGES, size: SIZE, classes: CLASSES, seed: SEED, batch: Number(args.batch), concurrency: Number(args.concurrency), flushSeconds: Number(args['flush-seconds']), intervalMs: INTERVAL },
          host: { cpus: os.cpus().length, node: process.version, loadavg: os.loadavg(), ortDisableTelemetry: process.env.ORT_DISABLE_TELEMETRY ?? null },
          summary: {
            images: summary.images,
            new: summary.new,
            failed: summary.failed,
            seconds: summary.seconds,
            rssMb: { start: start.rssMb, afterWarmUp: warm.rssMb, peak: peakRss.rssMb, end: end.rssMb, endBeforeGc: samples.at(-2)!.rssMb, medianPerFifth: fifths, slopeMbPer1000: slope * 1000 },
            fds: { start: start.fds, afterWarmUp: warm.fds, peak: peakFds, end: end.fds },
            throughput: { firstImgPerSec: firstRate, lastImgPerSec: lastRate, ratio },
            verdicts: { rssFlat, fdsFlat, throughputOk },
          },
          samples,
        },
        null,
        1,
      )}\n`,
    );
    console.log(`samples: ${path.relative(process.cwd(), args.out!)}`);
    return rssFlat && fdsFlat && throughputOk ? 0 : 1;
  } finally {
    if (args.keep) console.log(`kept the cache in ${cacheRoot}`);
    else await rm(cacheRoot, { recursive: true, force: true });
  }
}

function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Least-squares slope of y over x. */
function linearSlope(points: readonly (readonly [number, number])[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

process.exitCode = await main();
