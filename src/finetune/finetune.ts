/**
 * `bottleneck fine-tune --head DIR --unfreeze BLOCK`: the Keras blog's second step, "fine-tuning
 * the top layers of a pre-trained network". It starts from a trained head (never a random head
 * on the pretrained base), freezes everything below the block, and trains block + head with SGD
 * (lr 1e-4, momentum 0.9) on cached augmented views.
 *
 * The frozen part runs once: the block's input (the frozen cut) is extracted into the cache,
 * with K augmented views of each training image, and training reads those codes. Only the block
 * and the head run in TF.js, forward and backward. The result is a head folder with the
 * block's new weights beside it (backbone.safetensors); its code spec names the fine-tuned
 * weights, and the codes of its images at the head's cut are written into that key, so
 * predict, export and evaluate take it as any other head.
 */
import { isLiveTerminal } from '../util/terminal.ts';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { requireGraph, type GraphBackbone } from '../backbones/backbone.ts';
import { spatialPool } from '../backbones/cut.ts';
import { planGraph } from '../backbones/graph-plan.ts';
import { subgraphFrom, type Subgraph } from '../backbones/subgraph.ts';
import { readSafetensors, writeSafetensors } from '../backbones/weights/safetensors.ts';
import type { WeightTensor } from '../backbones/weights.ts';
import { product } from '../util/numbers.ts';
import { acquireCacheLock } from '../cache/cache-lock.ts';
import { membershipIndex, readCodes, readCodeTable, resolveDataset, viewsIndex, type CodeTable } from '../cache/code-table.ts';
import { contentId } from '../cache/code-rows.ts';
import { cacheKey, settingsOfSpec, type CodeSpec } from '../cache/code-spec.ts';
import { FeatureCache } from '../cache/feature-cache.ts';
import type { DeviceChoice, EngineChoice, FeatureEngine } from '../engines/engine.ts';
import { createEngine } from '../engines/select-engine.ts';
import { tfBackend } from '../engines/tfjs-backend.ts';
import { loadDataset, type Dataset } from '../extract/dataset.ts';
import { progressSink } from '../extract/progress-reporter.ts';
import { runExtract, type ExtractSummary } from '../extract/run-extract.ts';
import { fineTunedWeightsId, loadHeadBackbone } from '../train-head/head-backbone.ts';
import { fit, formatEpoch, type EpochStats } from '../train-head/fit.ts';
import { netTrainer, rowsMatrix } from './net-trainer.ts';
import { FINETUNE_WEIGHTS_FILE, loadHead, saveHead, type Head, type HeadConfig } from '../train-head/head-folder.ts';
import { splitRows } from '../train-head/training-rows.ts';
import { UsageError } from '../util/errors.ts';
import { TOOL_VERSION } from '../util/version.ts';
import { resolveUnfreeze, type UnfreezePlan } from './blocks.ts';
import { createTrainableNet, type TrainableNet } from './trainable-net.ts';
import { pct } from '../util/numbers.ts';

export interface FineTuneCommand {
  /** The trained head to start from. */
  readonly head: string;
  /** Where the fine-tuned head folder goes (not the --head folder). */
  readonly out: string;
  /** The block to train (default: the last block with weights below the head's cut). */
  readonly unfreeze?: string;
  /** The images (folder or manifest); default: the folder the head's codes were extracted from. */
  readonly data?: string;
  readonly cacheRoot: string;
  readonly weights?: string;
  readonly epochs: number;
  readonly lr: number;
  readonly momentum: number;
  readonly batch: number;
  /** Cached augmented views per training image (0: none). */
  readonly augment: number;
  /** Batch order, dropout masks and the augmented views all follow from it. */
  readonly seed: number;
  /** Runs the frozen part (extract) and writes the fine-tuned codes; training is TF.js. */
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  /** JSON lines on stdout (epochs, summary) instead of text. */
  readonly json?: boolean;
  /** Images decoded at once while extracting (default 4). */
  readonly concurrency?: number;
  /** No output at all (for tests and callers that report themselves). */
  readonly quiet?: boolean;
}

export interface FineTuneResult {
  readonly dir: string;
  readonly config: HeadConfig;
  readonly history: readonly EpochStats[];
  /** The frozen cut's extraction: `new` is 0 when every code was already cached. */
  readonly extract: ExtractSummary;
  readonly unfreeze: UnfreezePlan;
  /** Wall-clock seconds: extracting the frozen cut, training, writing the fine-tuned codes. */
  readonly seconds: { readonly extract: number; readonly train: number; readonly codes: number };
}

/** Rows of one of the code tables, by index. */
interface RowRef {
  readonly table: CodeTable;
  readonly row: number;
  readonly y: number;
}

export async function runFineTune(cmd: FineTuneCommand): Promise<FineTuneResult> {
  checkNumbers(cmd);
  const cacheRoot = path.resolve(cmd.cacheRoot);
  const quiet = cmd.quiet ?? false;
  const log = (line: string) => {
    if (!quiet && !cmd.json) console.error(line);
  };
  const emit = (value: object) => {
    if (!quiet && cmd.json) console.log(JSON.stringify(value));
  };

  const head = await loadHead(cmd.head);
  if (path.resolve(cmd.out) === path.resolve(head.dir)) throw new UsageError(`--out ${cmd.out} is the --head folder; the fine-tuned head needs a folder of its own`);
  const spec = head.config.codeSpec;
  if (spec.augment) throw new UsageError(`head ${head.dir} names a key of augmented views (${head.config.cacheKey}), not of images`);
  const backbone = requireGraph(await loadHeadBackbone(head, { weights: cmd.weights }), 'fine-tune', 'it trains the layers in TF.js, which cannot run an ONNX graph; train-head, sweep and --augment work on ONNX backbones');
  const size = spec.preprocessing.size;
  const pool = spec.pool ? spatialPool(spec.pool, spec.layer) : null;
  const unfreeze = resolveUnfreeze(backbone.graph, size, spec.layer, cmd.unfreeze);
  let sub: Subgraph;
  try {
    sub = subgraphFrom(backbone, unfreeze.frozenCut, size);
  } catch (error) {
    throw new UsageError(`--unfreeze ${unfreeze.block}: ${(error as Error).message.replace(/^[^:]*: /, '')}`);
  }
  const dataset = await loadDataset(cmd.data ?? (await recordedDataset(head, cacheRoot)));
  log(
    `fine-tune ${backbone.graph.name}: training ${describeNodes(unfreeze.weighted)} and the head; frozen below ${unfreeze.frozenCut} ` +
      `(${[...sub.preprocessing.size, inputChannels(sub)].join('×')} codes, cached)`,
  );

  // 1. The frozen cut's codes (and views of the training images), computed once into the cache.
  const extractStarted = performance.now();
  const sink = progressSink(quiet ? 'none' : cmd.json ? 'json' : 'bar');
  const summary = await runExtract({
    items: dataset.items,
    dataset,
    backbone,
    ...settingsOfSpec(spec),
    cut: { layer: unfreeze.frozenCut },
    augment: cmd.augment > 0 ? { views: cmd.augment, seed: cmd.seed } : undefined,
    dtype: 'float32',
    batch: 8,
    concurrency: cmd.concurrency ?? 4,
    engine: cmd.engine,
    device: cmd.device,
    cacheRoot,
    onProgress: (p) => sink.update(p),
  }).finally(() => sink.stop());
  const extractSeconds = (performance.now() - extractStarted) / 1000;
  for (const f of summary.failures) log(`warning: ${f.path}: ${f.message} (skipped)`);

  // 2. The rows, split exactly as the head's were.
  const frozen = await FeatureCache.open(cacheRoot, summary.key);
  const table = await readCodeTable(frozen, dataset.name);
  const rows = [...table.paths.keys()];
  const split = splitRows(table, head.config.training.splits.fractions, rows);
  const { classes } = head.config;
  const classIndex = new Map(classes.map((c, i) => [c, i]));
  const ofHeadClasses = (part: readonly number[]) => part.filter((r) => classIndex.has(table.labels[r] ?? ''));
  const trainRows = ofHeadClasses(split.train);
  const valRows = ofHeadClasses(split.validation);
  if (trainRows.length === 0) throw new UsageError(`${dataset.root}: no training rows of the head's classes (${classes.join(', ')})`);
  const refOf = (t: CodeTable, row: number): RowRef => ({ table: t, row, y: classIndex.get(t.labels[row]!)! });
  const train: RowRef[] = trainRows.map((row) => refOf(table, row));
  const validation: RowRef[] = valRows.map((row) => refOf(table, row));
  const viewsKey = summary.caches[0].views?.key ?? null;
  let viewRows = 0;
  if (viewsKey) {
    const viewsCache = await FeatureCache.open(cacheRoot, viewsKey);
    const views = await readCodes(viewsCache, await viewsIndex(viewsCache, table, trainRows, cmd.augment));
    for (const row of views.paths.keys()) train.push(refOf(views, row));
    viewRows = views.paths.length;
  }
  const recorded = head.config.training.splits;
  if (recorded.train !== trainRows.length || recorded.validation !== valRows.length) {
    log(`note: the head trained on ${recorded.train} train and ${recorded.validation} validation rows; these images give ${trainRows.length} and ${valRows.length}`);
  }
  log(
    `codes ${summary.key}: ${trainRows.length} train${viewRows ? ` + ${viewRows} augmented views` : ''}, ${valRows.length} validation rows ` +
      `(${summary.new + summary.views} computed, ${summary.reused} cached, ${extractSeconds.toFixed(1)} s)`,
  );

  // 3. Block + head in TF.js, from the trained head and the backbone's own weights.
  const { tf, provider, notes } = await tfBackend(cmd.device);
  for (const note of notes) log(`note: ${note}`);
  const subPlan = planGraph(sub.graph, sub.preprocessing.size, [unfreeze.headCut]);
  const net = createTrainableNet(tf, { plan: subPlan, weights: sub.weights, pool, architecture: head.config.architecture, head: head.params });
  const optimizer = tf.train.momentum(cmd.lr, cmd.momentum);
  const trainer = `tfjs (${provider})`;
  log(`trainer: ${trainer}; sgd lr ${cmd.lr} momentum ${cmd.momentum}, batch ${cmd.batch}, head dropout ${head.config.architecture.dropout}`);
  const live = !quiet && !cmd.json && isLiveTerminal(process.stderr);
  const trainStarted = performance.now();
  let history: EpochStats[];
  let trained: Awaited<ReturnType<TrainableNet['read']>>;
  try {
    const shape = subPlan.shapes.get(subPlan.steps[0].node.name)!;
    const { architecture } = head.config;
    const rows = (refs: readonly RowRef[]) => ({ codes: rowsMatrix(refs.map((r) => ({ codes: r.table.codes, row: r.row })), product(shape)), y: Int32Array.from(refs, (r) => r.y), n: refs.length });
    const result = await fit({
      trainer: netTrainer(tf, net, optimizer, provider, { shape, hidden: architecture.hidden, classes: classes.length }),
      architecture: { ...architecture, inputDim: product(shape) },
      train: rows(train),
      validation: rows(validation),
      epochs: cmd.epochs,
      batch: cmd.batch,
      seed: cmd.seed,
      classWeights: null,
      patience: null,
      keep: 'last',
      onEpoch: (s) => {
        if (!Number.isFinite(s.loss)) throw new UsageError(`fine-tune: the training loss became ${s.loss} in epoch ${s.epoch}; try a smaller --lr`);
        emit({ event: 'epoch', ...s });
        const line = formatEpoch(s, cmd.epochs);
        if (live) process.stderr.write(`\r${line}\u001b[K`);
        else log(line);
      },
    });
    history = [...result.history];
    if (live) process.stderr.write('\n');
    trained = await net.read();
  } finally {
    net.dispose();
    optimizer.dispose();
  }
  const trainSeconds = (performance.now() - trainStarted) / 1000;

  // 4. The fine-tuned backbone: the base weights with every tuned tensor (earlier fine-tunes too).
  const ft = head.config.finetune;
  const prior = ft ? (await readSafetensors(path.join(head.dir, FINETUNE_WEIGHTS_FILE))).source.tensors : new Map<string, WeightTensor>();
  const tensors = new Map([...prior, ...trained.weights].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const baseWeights = ft?.baseWeights ?? backbone.weightsId;
  const weightsId = fineTunedWeightsId(baseWeights, tensors);
  const tunedSpec: CodeSpec = { ...spec, weights: weightsId };
  const key = cacheKey(tunedSpec);

  // 5. The images' codes at the head's cut, through the tuned layers from the cached frozen codes.
  const codesStarted = performance.now();
  const tunedSub: GraphBackbone = { ...sub, weights: new Map([...sub.weights, ...trained.weights]), weightsId };
  await writeTunedCodes({ cacheRoot, spec: tunedSpec, dataset, table, rows, sub: tunedSub, headCut: unfreeze.headCut, pool, cmd });
  const codesSeconds = (performance.now() - codesStarted) / 1000;

  const last = history[history.length - 1];
  const nodes = [...new Set([...(ft?.nodes ?? []), ...unfreeze.weighted])];
  const config: HeadConfig = {
    ...head.config,
    cacheKey: key,
    codeSpec: tunedSpec,
    dataset: dataset.name,
    cacheRoot,
    training: {
      ...head.config.training,
      trainer,
      optimizer: { kind: 'sgd', lr: cmd.lr, momentum: cmd.momentum },
      l2: 0,
      epochs: cmd.epochs,
      batch: cmd.batch,
      seed: cmd.seed,
      patience: null,
      classWeights: null,
      splits: { ...recorded, source: split.plan.source, train: trainRows.length, validation: valRows.length, test: split.test.length },
      augmented: viewsKey ? { key: viewsKey, views: cmd.augment, seed: cmd.seed, recipe: (await FeatureCache.open(cacheRoot, viewsKey)).spec.augment!.recipe, rows: viewRows } : null,
    },
    bestEpoch: history.length,
    metrics: { valLoss: last.valLoss, valAcc: last.valAcc, trainAcc: last.acc },
    finetune: {
      baseWeights,
      block: unfreeze.block,
      frozenCut: unfreeze.frozenCut,
      headCut: unfreeze.headCut,
      nodes,
      frozenKey: summary.key,
      viewsKey,
      fromHead: path.resolve(head.dir),
      fromCacheKey: head.config.cacheKey,
      lr: cmd.lr,
      momentum: cmd.momentum,
      epochs: cmd.epochs,
      batch: cmd.batch,
      augment: cmd.augment,
      seed: cmd.seed,
    },
  };
  const out = path.resolve(cmd.out);
  await saveHead(out, config, trained.head, history, (staging) =>
    writeSafetensors(path.join(staging, FINETUNE_WEIGHTS_FILE), tensors, { format: 'bottleneck-finetune/1', base: baseWeights }),
  );

  const seconds = { extract: extractSeconds, train: trainSeconds, codes: codesSeconds };
  emit({ event: 'summary', head: out, cacheKey: key, frozenKey: summary.key, ...config.metrics, seconds, trainer });
  if (!quiet && !cmd.json) {
    console.log(
      `final epoch ${history.length}: val acc ${pct(last.valAcc)}, val loss ${last.valLoss?.toFixed(4) ?? '-'}, train acc ${pct(last.acc)} — ` +
        `${trainSeconds.toFixed(1)} s training (${extractSeconds.toFixed(1)} s extract, ${codesSeconds.toFixed(1)} s fine-tuned codes)`,
    );
    console.log(`fine-tuned head saved to ${out} (codes ${key})`);
  }
  return { dir: out, config, history, extract: summary, unfreeze, seconds };
}

/**
 * The fine-tuned codes of every image row, at the head's cut, into the fine-tuned key: computed
 * by the engine on the tuned sub-graph from the cached frozen codes, never through the frozen
 * layers again. Contents the key already holds are left as they are; the dataset is recorded
 * as extracted into the key, so evaluate finds its rows.
 */
async function writeTunedCodes(o: {
  cacheRoot: string;
  spec: CodeSpec;
  dataset: Dataset;
  table: CodeTable;
  rows: readonly number[];
  sub: GraphBackbone;
  headCut: string;
  pool: 'avg' | 'max' | null;
  cmd: FineTuneCommand;
}): Promise<void> {
  const cache = await FeatureCache.forSpec(o.cacheRoot, o.spec);
  const lock = await acquireCacheLock(cache.dir, { waitSeconds: 60 });
  let engine: FeatureEngine | undefined;
  try {
    await cache.removeOrphans();
    const held = await cache.contents();
    const { table } = o;
    const seen = new Set<string>();
    const todo = o.rows.filter((r) => {
      const id = contentId(table.sha256[r]);
      if (held.has(id) || seen.has(id)) return false;
      seen.add(id);
      return true;
    });
    const [h, w] = o.sub.preprocessing.size;
    engine = todo.length === 0 ? undefined : await createEngine({ engine: o.cmd.engine, backbone: o.sub, cuts: [{ layer: o.headCut, ...(o.pool ? { pool: o.pool } : {}) }], inputSize: [h, w], device: o.cmd.device, cacheDir: o.cacheRoot });
    const writer = await cache.writer({ writerId: 'finetune', engine: engine ? `${engine.name}/${engine.provider}` : 'none', toolVersion: TOOL_VERSION });
    const dim = table.dim;
    const batch = 16;
    const input = new Float32Array(batch * dim);
    for (let start = 0; engine && start < todo.length; start += batch) {
      const part = todo.slice(start, start + batch);
      part.forEach((r, i) => input.set(table.codes.subarray(r * dim, (r + 1) * dim), i * dim));
      const [codes] = await engine.run(input, part.length);
      await writer.append({ sha256: part.map((r) => table.sha256[r]), codes: codes.slice(0, part.length * cache.dim) });
    }
    await writer.recordDataset(o.dataset.name);
  } finally {
    await engine?.dispose();
    await lock.release();
  }
}

/** The folder (or manifest) the head's codes were extracted from, as its dataset's membership records it. */
async function recordedDataset(head: Head, cacheRoot: string): Promise<string> {
  const { cacheKey: key, dataset } = head.config;
  const hint = 'pass --data with the images it was trained on';
  if (!existsSync(path.join(cacheRoot, key, 'spec.json'))) {
    throw new UsageError(`head ${head.dir} was trained on codes ${key}, which are not in ${cacheRoot}: ${hint} (or --cache)`);
  }
  const cache = await FeatureCache.open(cacheRoot, key);
  const { membership } = await membershipIndex(cache, dataset ?? (await resolveDataset(cache)));
  if (!existsSync(membership.source)) throw new UsageError(`the images of dataset '${membership.name}' were read from ${membership.source}, which is gone: ${hint}`);
  return membership.source;
}

function checkNumbers(cmd: FineTuneCommand): void {
  const bad = (flag: string, value: number, rule: string) => new UsageError(`--${flag} ${value}: must be ${rule}`);
  if (!Number.isInteger(cmd.epochs) || cmd.epochs < 1) throw bad('epochs', cmd.epochs, 'a whole number ≥ 1');
  if (!(cmd.lr > 0) || !Number.isFinite(cmd.lr)) throw bad('lr', cmd.lr, '> 0');
  if (!(cmd.momentum >= 0 && cmd.momentum < 1)) throw bad('momentum', cmd.momentum, 'in [0, 1)');
  if (!Number.isInteger(cmd.batch) || cmd.batch < 1) throw bad('batch', cmd.batch, 'a whole number ≥ 1');
  if (!Number.isInteger(cmd.augment) || cmd.augment < 0) throw bad('augment', cmd.augment, 'a whole number ≥ 0');
}

function inputChannels(sub: Subgraph): number {
  const input = sub.graph.nodes[0];
  return input.op === 'input' ? input.channels : 0;
}

function describeNodes(nodes: readonly string[]): string {
  return nodes.length > 4 ? `${nodes.slice(0, 3).join(', ')}, … (${nodes.length} layers)` : nodes.join(', ');
}



