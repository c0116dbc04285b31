/**
 * Batches decoded images into the engine and the codes into the keys' writers. Two input
 * buffers: one is being filled while the engine reads the other. Writing (Arrow encoding,
 * fsync) runs behind the engine, never between two forward passes.
 */
import type { Backbone } from '../backbones/backbone.ts';
import type { Cut } from '../backbones/cut.ts';
import { preprocessInto } from '../backbones/preprocess.ts';
import type { Pair } from '../backbones/layer-graph.ts';
import { contentId, type CodeRows } from '../cache/code-rows.ts';
import type { DeviceChoice, EngineChoice, FeatureEngine, Precision } from '../engines/engine.ts';
import type { CalibrationSource } from '../engines/quantize/calibration.ts';
import { createEngine } from '../engines/select-engine.ts';
import type { KeyTarget, Target } from './extract-targets.ts';

/** One forward pass's worth of input: a content's image (view 0) or one of its views. */
export interface Job {
  readonly sha256: string;
  readonly view: number;
}

/** A queued job and the keys its code goes to. */
interface Queued {
  readonly job: Job;
  readonly lacking: readonly KeyTarget[];
}

export interface BatchRunnerOptions {
  readonly backbone: Backbone;
  readonly cuts: readonly Cut[];
  readonly size: Pair;
  readonly batch: number;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  /** Where the engine keeps generated models (the cache folder). */
  readonly cacheDir: string;
  readonly precision?: Precision;
  readonly calibration?: CalibrationSource;
  /** Buffered codes are written at least this often, bounding what a crash can lose. */
  readonly flushSeconds: number;
  readonly onEngine?: (engine: FeatureEngine) => void;
}

export class BatchRunner {
  private engine: FeatureEngine | undefined;
  private readonly buffers: [Float32Array, Float32Array];
  private current = 0;
  private batch: Queued[] = [];
  private running: Promise<void> = Promise.resolve();
  private writing: Promise<void> = Promise.resolve();
  private writeError: unknown;
  private lastFlush = performance.now();
  private readonly pixelsPerImage: number;
  /** Forward passes run, for images and for views. */
  images = 0;
  views = 0;

  constructor(
    private readonly opts: BatchRunnerOptions,
    private readonly targets: readonly Target[],
  ) {
    const [h, w] = opts.size;
    this.pixelsPerImage = h * w * 3;
    this.buffers = [new Float32Array(opts.batch * this.pixelsPerImage), new Float32Array(opts.batch * this.pixelsPerImage)];
  }

  /** "onnx/cpu" once the engine runs, else null. */
  get engineLabel(): string | null {
    return this.engine ? `${this.engine.name}/${this.engine.provider}` : null;
  }

  /**
   * Queues one input unless some key already holds (or this run already queued) its code.
   * Content met twice in a run (the same photo under two names) is computed once.
   */
  async add(job: Job, pixels: Uint8Array, lacking: readonly KeyTarget[]): Promise<void> {
    if (lacking.length === 0) return;
    for (const k of lacking) k.held.add(contentId(job.sha256, job.view));
    preprocessInto(pixels, { ...this.opts.backbone.preprocessing, size: this.opts.size }, this.buffers[this.current], this.batch.length * this.pixelsPerImage);
    this.batch.push({ job, lacking });
    if (this.batch.length === this.opts.batch) await this.launch();
  }

  /** Runs what is queued, waits for every write, and flushes every writer. */
  async finish(): Promise<void> {
    if (this.batch.length > 0) await this.launch();
    await this.running;
    await this.writing;
    if (this.writeError) throw this.writeError;
    for (const t of this.targets) for (const k of t.views ? [t, t.views] : [t]) await k.writer.flush();
  }

  /** Waits for writes in flight (an error leaves no temporary file behind), then frees the engine. */
  async dispose(): Promise<void> {
    await this.running.catch(() => undefined);
    await this.writing;
    await this.engine?.dispose();
  }

  private async launch(): Promise<void> {
    await this.running;
    // Surface a failed write (a full disk) now, not after the whole dataset.
    if (this.writeError) throw this.writeError;
    const queued = this.batch;
    const input = this.buffers[this.current];
    this.current = 1 - this.current;
    this.batch = [];
    this.running = this.forward(queued, input);
    // Awaited (and so reported) by the next flush or by finish; until then it must not count as unhandled.
    this.running.catch(() => undefined);
  }

  private async forward(queued: readonly Queued[], input: Float32Array): Promise<void> {
    const engine = await this.startedEngine();
    const outputs = await engine.run(input, queued.length);
    for (const { job } of queued) {
      if (job.view === 0) this.images++;
      else this.views++;
    }
    // After a failed write (a full disk) nothing more is written: the run is about to stop.
    this.writing = this.writing.then(() => (this.writeError ? undefined : this.write(queued, outputs))).catch((err: unknown) => {
      this.writeError ??= err;
    });
  }

  /** One engine, one forward pass, an output per cut. */
  private async startedEngine(): Promise<FeatureEngine> {
    if (this.engine) return this.engine;
    const o = this.opts;
    this.engine = await createEngine({
      engine: o.engine,
      backbone: o.backbone,
      cuts: o.cuts,
      inputSize: o.size,
      device: o.device,
      cacheDir: o.cacheDir,
      ...(o.precision ? { precision: o.precision } : {}),
      ...(o.calibration ? { calibration: o.calibration } : {}),
    });
    for (const t of this.targets) for (const k of t.views ? [t, t.views] : [t]) k.writer.engine = this.engineLabel!;
    o.onEngine?.(this.engine);
    return this.engine;
  }

  private async write(queued: readonly Queued[], outputs: readonly Float32Array[]): Promise<void> {
    for (const [c, t] of this.targets.entries()) {
      for (const k of t.views ? [t, t.views] : [t]) {
        const keep = queued.map((_, i) => i).filter((i) => queued[i].lacking.includes(k));
        if (keep.length === 0) continue;
        const codes = keep.length === queued.length ? outputs[c] : gatherRows(outputs[c], keep, t.cache.dim);
        await k.writer.append(rowsOf(keep.map((i) => queued[i].job), codes));
      }
    }
    if (performance.now() - this.lastFlush > this.opts.flushSeconds * 1000) {
      for (const t of this.targets) for (const k of t.views ? [t, t.views] : [t]) await k.writer.flush();
      this.lastFlush = performance.now();
    }
  }
}

/** Rows `rows` of a row-major n × dim array, as one new array. */
function gatherRows(all: Float32Array, rows: readonly number[], dim: number): Float32Array {
  const out = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => out.set(all.subarray(r * dim, (r + 1) * dim), i * dim));
  return out;
}

function rowsOf(jobs: readonly Job[], codes: Float32Array): CodeRows {
  return {
    sha256: jobs.map((j) => j.sha256),
    // A views key's rows are all views; an image key's rows never carry the column.
    ...(jobs.some((j) => j.view > 0) ? { view: jobs.map((j) => j.view) } : {}),
    codes,
  };
}
