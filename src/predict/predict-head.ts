/**
 * predict with a trained head, through the cache: the images are extracted into the head's own
 * key (only content the cache lacks reaches the backbone), then the head runs on their codes.
 * So predicting 100,000 images with a second head on the same codes costs no forward pass, and
 * the probabilities are exactly the head on the codes extract computed.
 */
import path from 'node:path';
import { settingsOfSpec } from '../cache/code-spec.ts';
import { assertNoMissing, forEachCode, indexOfMembers } from '../cache/code-table.ts';
import { FeatureCache } from '../cache/feature-cache.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { runExtract, type ExtractProgress } from '../extract/run-extract.ts';
import { loadHeadBackbone } from '../train-head/head-backbone.ts';
import type { Head } from '../train-head/head-folder.ts';
import { createHeadPredictor } from '../train-head/head-predictor.ts';
import { UsageError } from '../util/errors.ts';
import { topClasses, type ImagePrediction } from './classifier.ts';

export interface PredictWithHeadOptions {
  readonly head: Head;
  readonly files: readonly string[];
  /** Where the head's codes are (its recorded cache, unless told otherwise). */
  readonly cacheRoot: string;
  readonly weights?: string;
  readonly topK: number;
  readonly batch: number;
  readonly concurrency: number;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: ExtractProgress) => void;
}

export interface HeadPredictions {
  /** One per file, in the order given. */
  readonly predictions: readonly ImagePrediction[];
  /** Forward passes run: images whose content the cache did not hold yet. */
  readonly computed: number;
  readonly engine: string | null;
}

/** Codes are scored in chunks of this many rows as the shards stream by. */
const CHUNK = 256;

export async function predictWithHead(opts: PredictWithHeadOptions): Promise<HeadPredictions> {
  const { head } = opts;
  const spec = head.config.codeSpec;
  const backbone = await loadHeadBackbone(head, { weights: opts.weights });
  const items = opts.files.map((file) => ({ file: path.resolve(file), path: file, label: null, split: null }));
  const summary = await runExtract({
    items,
    backbone,
    ...settingsOfSpec(spec),
    augment: undefined,
    batch: opts.batch,
    concurrency: opts.concurrency,
    engine: opts.engine,
    device: opts.device,
    cacheRoot: opts.cacheRoot,
    signal: opts.signal,
    onProgress: opts.onProgress,
  });
  if (summary.key !== head.config.cacheKey) {
    throw new UsageError(`the images were extracted as ${summary.key}, but head ${head.dir} was trained on ${head.config.cacheKey} (other backbone weights?)`);
  }
  const cache = await FeatureCache.open(opts.cacheRoot, summary.key);
  const index = indexOfMembers(summary.members, { dataset: 'predict', root: '/', dim: cache.dim });
  const probs = await scoreCodes(cache, index, head);
  const classes = head.config.classes;
  const rowOf = new Map(summary.members.map((m, i) => [m.path, i]));
  const failed = new Map(summary.failures.map((f) => [f.path, f.message]));
  const predictions = opts.files.map((file): ImagePrediction => {
    const r = rowOf.get(file);
    if (r === undefined) return { file, error: failed.get(file) ?? `${file}: not read` };
    const probabilities = probs.slice(r * classes.length, (r + 1) * classes.length);
    return { file, probabilities, top: topClasses(probabilities, classes, opts.topK) };
  });
  return { predictions, computed: summary.new, engine: summary.engine };
}

/** The head on every row's code, streamed from the shards: rows × classes probabilities. */
async function scoreCodes(cache: FeatureCache, index: ReturnType<typeof indexOfMembers>, head: Head): Promise<Float32Array> {
  const width = head.config.classes.length;
  const out = new Float32Array(index.paths.length * width);
  const predictor = await createHeadPredictor(head.config.architecture, head.params);
  try {
    const rows: number[] = [];
    const codes = new Float32Array(CHUNK * cache.dim);
    // One prediction at a time, behind the shard reads: the visit callback cannot wait.
    let chain: Promise<void> = Promise.resolve();
    const flush = () => {
      const taken = rows.splice(0);
      const batch = codes.slice(0, taken.length * cache.dim);
      chain = chain.then(async () => {
        const p = await predictor.predict(batch, taken.length);
        taken.forEach((r, i) => out.set(p.subarray(i * width, (i + 1) * width), r * width));
      });
    };
    const missing = await forEachCode(cache, index, (row, code) => {
      codes.set(code, rows.length * cache.dim);
      rows.push(row);
      if (rows.length === CHUNK) flush();
    });
    assertNoMissing(cache, index, missing);
    if (rows.length > 0) flush();
    await chain;
  } finally {
    await predictor.dispose();
  }
  return out;
}
