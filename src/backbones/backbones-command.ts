/** `bottleneck backbones` and `bottleneck weights download`: what the zoo has, and fetching VGG16's weights. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { defineCommand } from '../util/cli-options.ts';
import { UserError } from '../util/errors.ts';
import { cutLabel } from './cut.ts';
import { downloadFile, progressBarReporter } from './download.ts';
import { defaultWeightsDir, KERAS_VGG16_FILES, KERAS_WEIGHTS_URL, loadBackbone, ZOO_NAMES } from './zoo.ts';

export const backbonesCommand = defineCommand(
  'backbones',
  'list the built-in backbones, their cut points, and where their weights are',
  (y) => y,
  async () => {
    const dir = defaultWeightsDir();
    console.log(`weights folder: ${dir}${existsSync(dir) ? '' : ' (does not exist yet)'}\n`);
    for (const name of ZOO_NAMES) {
      try {
        const b = await loadBackbone(name, { download: false });
        console.log(`${name.padEnd(16)} input ${b.preprocessing.size.join('×')}  default cut ${cutLabel(b.defaultCut)}`);
        console.log(`${''.padEnd(16)} cuts: ${b.namedCuts.join(', ')}`);
        console.log(`${''.padEnd(16)} weights: ${b.weightsFrom}`);
      } catch (err) {
        if (!(err instanceof UserError)) throw err;
        console.log(`${name.padEnd(16)} ${err.message}`);
      }
    }
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
