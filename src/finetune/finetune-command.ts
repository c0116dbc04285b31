/** `bottleneck fine-tune HEAD --out DIR`: flags in; the work (and its output) is runFineTune's. */
import { cacheRootOf, defineCommand, FRACTION, numberOption, withCache, withEngine, withWeights, WHOLE_POSITIVE } from '../util/cli-options.ts';
import { UsageError } from '../util/errors.ts';
import { loadHead } from '../train-head/head-folder.ts';
import { runFineTune } from './finetune.ts';

export const fineTuneCommand = defineCommand(
  'fine-tune [head]',
  "train the backbone's last block with the head (Keras blog style), from cached codes below the block",
  (y) =>
    withEngine(withWeights(withCache(y)))
      .positional('head', { type: 'string', describe: 'the trained head to start from (or --head)' })
      .option('out', { type: 'string', demandOption: true, describe: 'the fine-tuned head folder to write' })
      .option('unfreeze', { type: 'string', describe: "the block to train, e.g. block5, fire9, inception_5b (default: the last block below the head's cut)" })
      .option('data', { type: 'string', describe: "the images (default: the folder the head's codes came from)" })
      .option('epochs', numberOption('epochs', 'passes over the training rows', WHOLE_POSITIVE, 10))
      .option('lr', numberOption('lr', 'SGD learning rate', { min: 0, minExclusive: true, max: 10 }, 1e-4))
      .option('momentum', numberOption('momentum', 'SGD momentum', FRACTION, 0.9))
      .option('batch', numberOption('batch', 'rows per training step', WHOLE_POSITIVE, 16))
      .option('augment', numberOption('augment', 'cached augmented views per training image (0: none)', { integer: true, min: 0, max: 100 }, 2))
      .option('seed', numberOption('seed', 'batch order, dropout and the views', { integer: true }, 0))
      .option('concurrency', numberOption('concurrency', 'images decoded at once', WHOLE_POSITIVE, 4))
      .option('json', { type: 'boolean', default: false }),
  async (argv) => {
    if (!argv.head) throw new UsageError('fine-tune needs a head folder: bottleneck fine-tune HEAD --out DIR');
    const head = await loadHead(argv.head);
    await runFineTune({ ...argv, head: argv.head, cacheRoot: cacheRootOf(argv.cache, head.config.cacheRoot) });
  },
);
