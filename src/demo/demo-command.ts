/**
 * `bottleneck demo`: the whole recipe in one command on an image set the project draws itself
 * (fixtures/generated/shapes), so a new user sees extract → train-head → evaluate work before pointing it
 * at their own folder. The backbone is VGG16 when its weights are here or can be downloaded,
 * else the built-in squeezenet1_1: the demo runs offline on a fresh install.
 */
import path from 'node:path';
import type { Backbone } from '../backbones/backbone.ts';
import { cutLabel } from '../backbones/cut.ts';
import { DownloadError } from '../backbones/download.ts';
import { WeightsError } from '../backbones/weights.ts';
import { BUILT_IN_BACKBONE, defaultWeightsDir, loadBackbone } from '../backbones/zoo.ts';
import type { DeviceChoice, EngineChoice } from '../engines/engine.ts';
import { runEvaluate } from '../evaluate/evaluate-command.ts';
import { formatReport } from '../evaluate/format-report.ts';
import { writeHtmlReport } from '../evaluate/report-html.ts';
import { loadDataset } from '../extract/dataset.ts';
import { progressSink } from '../extract/progress-reporter.ts';
import { DEFAULT_EXTRACT_SETTINGS, runExtract } from '../extract/run-extract.ts';
import { DEFAULT_HEAD_TRAINING, runTrainHead } from '../train-head/train-command.ts';
import { cacheRootOf, defineCommand, numberOption, withCache, withEngine, withWeights, WHOLE_POSITIVE } from '../util/cli-options.ts';
import { generateShapesDataset } from './shapes-dataset.ts';

export const demoCommand = defineCommand(
  'demo',
  'the whole recipe on generated images: extract → train-head → evaluate, with an HTML report',
  (y) =>
    withEngine(withWeights(withCache(y)))
      .option('data', { type: 'string', default: path.join('fixtures', 'generated', 'shapes'), describe: 'where to generate the demo images' })
      .option('out', { type: 'string', default: 'demo-output', describe: 'where the head and the report go' })
      .option('epochs', numberOption('epochs', 'passes over the training rows', WHOLE_POSITIVE, 20)),
  async (argv) => {
    await runDemo({ ...argv, cacheRoot: cacheRootOf(argv.cache) });
  },
);

export interface DemoCommand {
  /** Where the generated images go. */
  readonly data: string;
  /** Where the head and the report go. */
  readonly out: string;
  readonly cacheRoot: string;
  readonly weights?: string;
  readonly engine: EngineChoice;
  readonly device: DeviceChoice;
  readonly epochs: number;
}

export async function runDemo(cmd: DemoCommand): Promise<void> {
  const started = performance.now();
  const log = (line: string) => console.error(line);
  const generated = await generateShapesDataset(cmd.data);
  log(`${generated.generated ? 'generated' : 'using'} ${generated.images} demo images in ${generated.dir}`);
  const backbone = await chooseBackbone(cmd.weights, log);
  const cut = backbone.defaultCut;
  log(`backbone ${backbone.id}, cut ${cutLabel(cut)}, weights ${backbone.weightsFrom}`);

  const dataset = await loadDataset(generated.dir);
  const sink = progressSink('bar');
  const extracted = await runExtract({
    items: dataset.items,
    dataset,
    backbone,
    cut,
    ...DEFAULT_EXTRACT_SETTINGS,
    batch: 8,
    concurrency: 4,
    engine: cmd.engine,
    device: cmd.device,
    cacheRoot: path.resolve(cmd.cacheRoot),
    onProgress: (p) => sink.update(p),
    onEngine: (e) => log(`engine: ${e.name}/${e.provider}`),
  }).finally(() => sink.stop());
  log(`extract: ${extracted.new} new, ${extracted.reused} cached codes in ${extracted.seconds.toFixed(1)} s → ${extracted.path}`);

  const headDir = path.resolve(cmd.out, 'head');
  // The demo's own dataset, by name: the key may also hold other datasets the user extracted.
  await runTrainHead({ ...DEFAULT_HEAD_TRAINING, codes: extracted.path, cacheRoot: cmd.cacheRoot, out: headDir, epochs: cmd.epochs, dataset: dataset.name, json: false });

  const report = await runEvaluate({ head: headDir, cacheRoot: path.resolve(cmd.cacheRoot), batch: 8, concurrency: 4, engine: cmd.engine, device: cmd.device });
  console.log(`\n${formatReport(report, { mistakes: 5 })}`);
  const { html } = await writeHtmlReport(path.resolve(cmd.out, 'report'), report);
  console.log(`\nreport: ${html}`);
  console.log(`demo done in ${((performance.now() - started) / 1000).toFixed(1)} s. Next: bottleneck extract <your folder> --backbone ${backbone.id}`);
}

/**
 * VGG16 when its weights are here or can be downloaded; else the built-in squeezenet1_1, which
 * needs nothing. Says which and why.
 */
async function chooseBackbone(weights: string | undefined, log: (line: string) => void): Promise<Backbone> {
  try {
    return await loadBackbone('vgg16', { weights });
  } catch (err) {
    if (!(err instanceof WeightsError || err instanceof DownloadError)) throw err;
    const why = err instanceof DownloadError ? 'could not be downloaded' : 'are not in the weights folder';
    log(`VGG16's weights ${why} (${defaultWeightsDir()}); using ${BUILT_IN_BACKBONE}, which is built in`);
    return loadBackbone(BUILT_IN_BACKBONE, { weights, download: false });
  }
}
