/**
 * `bottleneck backbones`, `bottleneck backbones inspect MODEL.onnx` and `bottleneck weights
 * download`: what the zoo has, the cut candidates of a user's ONNX file, and fetching VGG16's weights.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { cutLabel } from './cut.ts';
import { defineCommand } from '../util/cli-options.ts';
import { UsageError } from '../util/errors.ts';
import { loadOnnxBackbone } from './onnx-file/onnx-backbone.ts';
import { isOnnxTarget } from './onnx-file/onnx-model-file.ts';
import { parseSize } from '../util/size-flag.ts';
import { describeZoo } from './catalog.ts';
import { downloadFile, progressBarReporter } from './download.ts';
import { defaultWeightsDir, KERAS_VGG16_FILES, KERAS_WEIGHTS_URL } from './zoo.ts';

export const inspectCommand = defineCommand(
  'inspect <model>',
  "an ONNX file's cut candidates: every tensor it computes, with op, shape per image and layout",
  (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'a .onnx file, or a folder with model.onnx' })
      .option('size', { type: 'string', describe: "input size to probe at (default: the model's, else 224)" })
      .option('json', { type: 'boolean', default: false }),
  async (argv) => {
    if (!isOnnxTarget(argv.model)) throw new UsageError(`${argv.model}: not an ONNX file or a folder with model.onnx (bottleneck backbones lists the built-in ones)`);
    const backbone = await loadOnnxBackbone(argv.model, argv.size ? { size: parseSize(argv.size) } : {});
    const { model } = backbone;
    const marks = (name: string) =>
      [name === backbone.defaultCut.layer ? `default (${cutLabel(backbone.defaultCut)})` : '', name === model.classifier?.output ? 'classifier' : '', model.graphOutputs.includes(name) ? 'output' : '']
        .filter(Boolean)
        .join(', ');
    const tensors = [...model.tensors.values()].map((t) => ({ name: t.name, op: t.op, shape: t.dims, layout: t.layout, note: marks(t.name) }));
    if (argv.json) {
      const { input, size, dynamicBatch } = model;
      console.log(JSON.stringify({ file: model.file, input, size, dynamicBatch, preprocessing: backbone.preprocessing, preprocessingFrom: backbone.preprocessingFrom, defaultCut: backbone.defaultCut, tensors }));
      return;
    }
    const p = backbone.preprocessing;
    console.log(`${model.file}`);
    console.log(`input ${model.input.name}: ${model.input.layout}, ${model.input.elemType}, ${model.size.join('×')}${model.dynamicBatch ? '' : ' (batch of one only)'}`);
    console.log(`preprocessing: ${p.channels}, mean ${p.mean.map((v) => +v.toFixed(3)).join('/')}, std ${p.std.map((v) => +v.toFixed(3)).join('/')} (0..255 units), from ${backbone.preprocessingFrom}`);
    console.log(`default cut: ${cutLabel(backbone.defaultCut)}\n`);
    const width = Math.min(72, Math.max(...tensors.map((t) => t.name.length)));
    for (const t of tensors) console.log(`${t.name.padEnd(width)}  ${t.op.padEnd(20)} [${t.shape.join(', ')}]`.padEnd(width + 40) + ` ${t.layout}${t.note ? `  ← ${t.note}` : ''}`);
    console.log(`\n${tensors.length} tensors; cut at any with --layer NAME (spatial maps take --pool avg|max, token sequences --pool cls|mean|mean-patch)`);
  },
);

export const backbonesCommand = defineCommand(
  'backbones',
  'list the built-in backbones, their cut points, and where their weights are; backbones inspect MODEL.onnx lists an ONNX file\'s tensors',
  (y) => y.command(inspectCommand),
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
    console.log('--backbone path/to/model.onnx (or a folder with model.onnx and preprocessor_config.json): any ONNX image model; see bottleneck backbones inspect');
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
