/** `bottleneck advise DATA`: which transfer-learning case the data is, and what to run. */
import { loadBackbone, ZOO_NAMES } from '../backbones/zoo.ts';
import { cacheRootOf, defineCommand, numberOption, withBackbone, withCache, withEngine, withWeights, WHOLE_POSITIVE } from '../util/cli-options.ts';
import { UsageError } from '../util/errors.ts';
import { ADVICE_LOAD_CUTS, adviseDataset } from './advise.ts';
import { formatAdvice } from './format-advice.ts';

export const adviseCommand = defineCommand(
  'advise [data]',
  'which of the four transfer-learning cases is your data? measures size and likeness to ImageNet, says what to run',
  (y) =>
    withEngine(withWeights(withBackbone(withCache(y), ZOO_NAMES)))
      .positional('data', { type: 'string', describe: 'folder or manifest, as for extract (or --data)' })
      .option('sample', numberOption('sample', "images run through the backbone's ImageNet classifier", WHOLE_POSITIVE, 64))
      .option('seed', numberOption('seed', 'which images are sampled', { integer: true }, 0))
      .option('json', { type: 'boolean', default: false }),
  async (argv) => {
    if (!argv.data) throw new UsageError('advise needs a dataset: bottleneck advise DATA (a folder or manifest, as for extract)');
    const backbone = await loadBackbone(argv.backbone, { weights: argv.weights, cuts: [...ADVICE_LOAD_CUTS] });
    const advice = await adviseDataset({ ...argv, data: argv.data, backbone, cacheDir: cacheRootOf(argv.cache) });
    console.log(argv.json ? JSON.stringify(advice, null, 2) : formatAdvice(advice));
  },
);
