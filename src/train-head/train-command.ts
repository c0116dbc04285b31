/**
 * `bottleneck train-head CODES`: flags in, lines out. The work is the train-head stage's
 * (train-head.ts); this module holds the flags and the printing.
 */
import type { Argv } from 'yargs';
import { cacheRootOf, defineCommand, numberOption, optionalNumber, parseBytes, withCache, withWait } from '../util/cli-options.ts';
import { UsageError } from '../util/errors.ts';
import { isLiveTerminal } from '../util/terminal.ts';
import { withExtractSettings } from '../extract/extract-plan.ts';
import { codesOfDataset, isKeyReference } from './dataset-codes.ts';
import { formatEpoch } from './fit.ts';
import { DEFAULT_HEAD_TRAINING, trainHead, TRAIN_RULES, type TrainHeadEvent, type TrainHeadOptions, type TrainHeadResult } from './train-head.ts';
import { pct } from '../util/numbers.ts';

export { DEFAULT_HEAD_TRAINING, openCodes, type TrainHeadResult } from './train-head.ts';

/** `--hidden 256`, `512,128`, or 0 for a plain softmax (logistic regression). */
export function parseHidden(value: string): number[] {
  const hidden = value.trim() === '0' ? [] : value.split(',').map((h) => Number(h.trim()));
  if (hidden.some((h) => !Number.isInteger(h) || h <= 0 || h > 1 << 16)) throw new UsageError(`--hidden ${value}: use sizes like 256 or 512,128, or 0`);
  return hidden;
}

/** The head's options, shared with the commands that train heads on the user's behalf (sweep). */
export function withHeadOptions<T>(y: Argv<T>) {
  return y
    .option('hidden', { type: 'string', default: '256', describe: 'hidden layer sizes, e.g. 256 or 512,128; 0 for a plain softmax', coerce: parseHidden })
    .option('dropout', numberOption('dropout', 'dropout after each hidden layer', TRAIN_RULES.dropout, 0.5))
    .option('epochs', numberOption('epochs', 'passes over the training rows', TRAIN_RULES.epochs, 50))
    .option('seed', numberOption('seed', 'initial weights, batch order and dropout', TRAIN_RULES.seed, 0))
    .option('val', numberOption('val', 'validation fraction when rows have no split folders', TRAIN_RULES.val, 0.2));
}

export const trainHeadCommand = defineCommand(
  'train-head <codes>',
  'train a small classifier on cached codes, in seconds',
  (y) =>
    withWait(withCache(withExtractSettings(withHeadOptions(y))))
      .positional('codes', { type: 'string', demandOption: true, describe: 'cache key folder (cache/<key>) or key, as extract printed it; or the dataset folder or manifest, with the options extract was given' })
      .option('out', { type: 'string', describe: 'head folder to write (default heads/<key>-<time>)' })
      .option('optimizer', { choices: ['adam', 'rmsprop', 'sgd'] as const, default: 'adam' as const })
      .option('lr', optionalNumber('lr', 'learning rate (default 1e-3; 1e-2 for sgd)', TRAIN_RULES.lr))
      .option('momentum', numberOption('momentum', 'sgd momentum', TRAIN_RULES.momentum, 0.9))
      .option('batch', numberOption('batch', 'rows per training step', TRAIN_RULES.batch, 32))
      .option('l2', numberOption('l2', "L2 penalty on kernels, as Keras' l2(…)", TRAIN_RULES.l2, 0))
      .option('class-weights', { type: 'string', default: 'none', describe: 'none | balanced | CLASS=W,… (weights > 0)' })
      .option('patience', optionalNumber('patience', 'stop after N epochs without a better validation loss', TRAIN_RULES.patience))
      .option('keep', { choices: ['best', 'last'] as const, default: DEFAULT_HEAD_TRAINING.keep, describe: "which epoch's weights the head keeps: the lowest validation loss, or the last" })
      .option('refit', { type: 'boolean', default: false, describe: 'choose the epoch count on validation, then train again on training + validation rows' })
      .option('test', numberOption('test', 'test fraction held out when rows have no split folders', TRAIN_RULES.test, 0))
      .option('trainer', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const })
      .option('dataset', { type: 'string', describe: "which dataset of the cache key, when it holds several (with a dataset folder: its name in the cache, as extract's --name)" })
      .option('standardize', { type: 'boolean', default: false, describe: 'train on per-feature standardised codes (helps --hidden 0); folded into the saved weights' })
      .option('max-memory', { type: 'string', describe: 'memory for codes, e.g. 2GB; bigger codes are read from disk batch by batch (same result)', coerce: (v: string) => parseBytes(v, '--max-memory') })
      .option('json', { type: 'boolean', default: false, describe: 'JSON lines per epoch and a summary on stdout' }),
  async (argv) => {
    const cacheRoot = cacheRootOf(argv.cache);
    const resolved = isKeyReference(argv.codes!, cacheRoot) ? { keyDir: argv.codes!, dataset: argv.dataset } : await codesOfDataset(argv.codes!, { ...argv, name: argv.dataset }, cacheRoot);
    await runTrainHead({
      ...argv,
      codes: resolved.keyDir,
      dataset: resolved.dataset,
      cacheRoot,
      classWeights: argv['class-weights'],
      patience: argv.patience ?? null,
      maxMemory: argv['max-memory'],
    });
  },
);

export interface TrainHeadCommand extends TrainHeadOptions {
  /** JSON lines per epoch and a summary on stdout instead of text. */
  readonly json: boolean;
  /** No output at all (for callers that report themselves). */
  readonly quiet?: boolean;
}

/** trainHead, printing as the CLI does: text on stderr and a summary on stdout, or JSON lines. */
export async function runTrainHead(cmd: TrainHeadCommand): Promise<TrainHeadResult> {
  const quiet = cmd.quiet ?? false;
  const log = (line: string) => {
    if (!quiet && !cmd.json) console.error(line);
  };
  const print = (line: string) => {
    if (!quiet) console.log(line);
  };
  const live = !cmd.json && !quiet && isLiveTerminal(process.stderr);
  const onEvent = (e: TrainHeadEvent) => {
    if (e.kind === 'epoch') {
      if (cmd.json) return print(JSON.stringify({ event: 'epoch', ...(e.refit ? { refit: true } : {}), ...e.stats }));
      const line = `${e.refit ? 'refit ' : ''}${formatEpoch(e.stats, e.epochs)}`;
      if (live) process.stderr.write(`\r${line}\u001b[K${e.stats.epoch === e.epochs ? '\n' : ''}`);
      else log(line);
    } else if (e.kind === 'refit') {
      if (live) process.stderr.write('\n');
      log(`refit: ${e.epochs} epoch(s), chosen on the validation rows, on all ${e.rows} training and validation rows`);
    } else {
      const splits = e.splits === 'folders' ? 'from the split folders' : 'split by content hash';
      log(`codes ${e.key}: ${e.train} train, ${e.validation} validation, ${e.test} test rows (${splits}), ${e.classes.length} classes${e.unlabeled ? `; ${e.unlabeled} unlabeled images left out` : ''}`);
      if (e.viewsKey) log(`augmented: + ${e.trainViews} views of the training images from ${e.viewsKey}`);
      if (e.storage !== 'memory') log(`codes exceed --max-memory: read from ${e.storage} batch by batch`);
      log(`trainer: ${e.trainer}; head ${e.layers.join(' → ')}, dropout ${cmd.dropout}, ${e.optimizer.kind} lr ${e.optimizer.lr}`);
    }
  };
  const result = await trainHead({ ...cmd, onEvent });
  if (live && result.history.length < cmd.epochs && !cmd.refit) process.stderr.write('\n');
  const { config } = result;
  const seconds = result.history.reduce((t, h) => t + h.seconds, 0);
  if (cmd.json) {
    print(JSON.stringify({ event: 'summary', head: result.dir, keptEpoch: config.bestEpoch, keep: config.training.keep, refit: config.training.refit ?? null, ...config.metrics, seconds, trainer: config.training.trainer }));
  } else {
    print(`${keptLine(result)} — ${seconds.toFixed(1)} s`);
    print(`head saved to ${result.dir}`);
  }
  return result;
}

/** Which epoch's weights the head has, and why: the line every run ends with. */
function keptLine(result: TrainHeadResult): string {
  const { config } = result;
  const m = config.metrics;
  const scores = `val acc ${pct(m.valAcc)}, val loss ${m.valLoss?.toFixed(4) ?? '-'}, train acc ${pct(m.trainAcc)}`;
  const refit = config.training.refit;
  if (refit) return `refit for ${refit.epochs} epoch(s) on ${refit.rows} rows (validation chose epoch ${refit.epochs}: ${scores})`;
  const stopped = result.stoppedEarly ? ', stopped early' : '';
  const which = config.training.keep === 'best' && m.valLoss !== null ? `kept epoch ${config.bestEpoch} of ${result.history.length} (lowest validation loss${stopped})` : `kept the last epoch, ${config.bestEpoch}${stopped}`;
  return `${which}: ${scores}`;
}

