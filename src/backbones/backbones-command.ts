/** `bottleneck backbones` and `bottleneck weights download`: what the zoo has, and fetching VGG16's weights. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { defineCommand } from '../util/cli-options.ts';
import { describeZoo } from './catalog.ts';
import { downloadFile, progressBarReporter } from './download.ts';
import { defaultWeightsDir, KERAS_VGG16_FILES, KERAS_WEIGHTS_URL } from './zoo.ts';

export const backbonesCommand = defineCommand(
  'backbones',
  'list the built-in backbones, their cut points, and where their weights are',
  (y) => y,
  async () => {
    const dir = defaultWeightsDir();
    console.log(`weights folder: ${dir}${existsSync(dir) ? '' : ' (does not exist yet)'}\n`);
    for (const b of await describeZoo()) {
      if (!b.input) {
        console.log(`${b.name.padEnd(16)} ${b.weights}`);
        continue;
      }
      console.log(`${b.name.padEnd(16)} input ${b.input.join('×')}  default cut ${b.defaultCut}  preprocessing ${b.preprocessing}`);
      console.log(`${''.padEnd(16)} cuts: ${b.namedCuts!.join(', ')}`);
      console.log(`${''.padEnd(16)} weights: ${b.weights}`);
    }
    console.log('\n--backbone path/to/model.json: any Keras or TF.js layers model, Teachable Machine exports included');
  },
);

export const weightsDownloadCommand = defineCommand(
  'weights download',
  "download VGG16's Keras weights (md5-checked, resumable) into the weights folder",
  (y) =>
    y
      .option('top', { type: 'boolean', default: false, describe: 'the full 553 MB file with fc1, fc2, predictions' })
      .option('dir', { type: 'string', describe: 'weights folder (default $BOTTLENECK_WEIGHTS or ~/.cache/bottleneck/weights)' }),
  async (argv) => {
    const spec = argv.top ? KERAS_VGG16_FILES.full : KERAS_VGG16_FILES.notop;
    const dest = path.join(argv.dir ?? defaultWeightsDir(), spec.file);
    const base = process.env.BOTTLENECK_WEIGHTS_URL ?? KERAS_WEIGHTS_URL;
    await downloadFile({ url: `${base}/${spec.file}`, dest, md5: spec.md5, onProgress: progressBarReporter(spec.file) });
    console.log(`${dest} (md5 ${spec.md5} checked)`);
  },
);
