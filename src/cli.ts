/**
 * The `bottleneck` command line. Each command parses its flags and hands over to a stage;
 * errors a user can fix are printed as one line with exit code 2, never a stack trace.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { KERAS_VGG16_FILES, KERAS_WEIGHTS_URL, defaultWeightsDir, loadBackbone, ZOO_NAMES } from './backbones/zoo.ts';
import { downloadFile, progressBarReporter } from './backbones/download.ts';
import type { DeviceChoice, EngineChoice } from './engines/engine.ts';
import { isUserError, UsageError } from './util/errors.ts';

const DEFAULT_CACHE = path.resolve('cache');

function engineOptions<T>(y: Argv<T>) {
  return y
    .option('backbone', { type: 'string', default: 'vgg16', describe: `${ZOO_NAMES.join(' | ')} | path/to/model.json` })
    .option('weights', { type: 'string', describe: 'weights file or folder (Keras .h5, .safetensors, TF.js folder)' })
    .option('engine', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const })
    .option('device', { choices: ['auto', 'cpu', 'gpu'] as const, default: 'auto' as const })
    .option('cache', { type: 'string', default: DEFAULT_CACHE, describe: 'cache folder (codes and generated models)' });
}

/** "512MB", "2G", "1.5GiB" or a plain number of bytes. */
function parseBytes(value: string, flag: string): number {
  const m = value.trim().match(/^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i);
  if (!m) throw new UsageError(`${flag} ${value}: use a size such as 512MB or 2GB`);
  const power = { '': 0, k: 1, m: 2, g: 3, t: 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * 1024 ** power);
}

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('bottleneck')
    .usage('$0 <command> [options]\n\nTransfer learning with cached CNN features.')
    .command(
      'demo',
      'the whole recipe on generated images: extract → train-head → evaluate, with an HTML report',
      (y) =>
        y
          .option('data', { type: 'string', default: path.join('fixtures', 'generated', 'shapes'), describe: 'where to generate the demo images' })
          .option('out', { type: 'string', default: 'demo-output', describe: 'where the head and the report go' })
          .option('cache', { type: 'string', default: DEFAULT_CACHE, describe: 'cache folder' })
          .option('weights', { type: 'string', describe: 'weights file or folder; default $BOTTLENECK_WEIGHTS or ~/.cache/bottleneck/weights' })
          .option('engine', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const })
          .option('device', { choices: ['auto', 'cpu', 'gpu'] as const, default: 'auto' as const })
          .option('epochs', { type: 'number', default: 20 }),
      async (argv) => {
        const { runDemo } = await import('./demo/demo-command.ts');
        await runDemo({ data: argv.data, out: argv.out, cacheRoot: argv.cache, weights: argv.weights, engine: argv.engine, device: argv.device, epochs: argv.epochs });
      },
    )
    .command(
      'backbones',
      'list the built-in backbones, their cut points, and where their weights are',
      (y) => y,
      async () => {
        const dir = defaultWeightsDir();
        console.log(`weights folder: ${dir}${existsSync(dir) ? '' : ' (does not exist yet)'}\n`);
        const { describeZoo } = await import('./backbones/catalog.ts');
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
    )
    .command(
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
    )
    .command(
      'advise',
      'which of the four transfer-learning cases is your data? measures size and likeness to ImageNet, says what to run',
      (y) =>
        engineOptions(y)
          .option('data', { type: 'string', demandOption: true, describe: 'folder or manifest, as for extract' })
          .option('sample', { type: 'number', default: 64, describe: "images run through the backbone's ImageNet classifier" })
          .option('seed', { type: 'number', default: 0, describe: 'which images are sampled' })
          .option('json', { type: 'boolean', default: false }),
      async (argv) => {
        const { adviseDataset, ADVICE_LOAD_CUTS } = await import('./advise/advise.ts');
        const { formatAdvice } = await import('./advise/format-advice.ts');
        const backbone = await loadBackbone(argv.backbone, { weights: argv.weights, cuts: [...ADVICE_LOAD_CUTS] });
        const advice = await adviseDataset({
          data: argv.data,
          backbone,
          engine: argv.engine as EngineChoice,
          device: argv.device as DeviceChoice,
          cacheDir: argv.cache,
          sample: argv.sample,
          seed: argv.seed,
        });
        console.log(argv.json ? JSON.stringify(advice, null, 2) : formatAdvice(advice));
      },
    )
    .command(
      'extract <data>',
      'push every image once through the frozen backbone and cache the codes (Arrow files under --cache)',
      (y) =>
        engineOptions(y)
          .positional('data', { type: 'string', demandOption: true, describe: 'folder of class subfolders, or a .csv/.jsonl manifest (path,label[,split])' })
          .option('layer', { type: 'string', describe: "cut point: any layer name (default: the backbone's bottleneck); several, comma-separated, are computed in one pass" })
          .option('shard', { type: 'string', describe: 'K/N: take the K-th of N parts by content hash; N processes (K = 0..N-1) fill one cache' })
          .option('augment', { type: 'number', default: 0, describe: 'also cache K augmented views (flip, rotation, crop, colour) of each training image' })
          .option('augment-seed', { type: 'number', default: 0, describe: 'the views are a function of this seed and the image' })
          .option('pool', { choices: ['avg', 'max'] as const, describe: 'global pooling of the cut' })
          .option('size', { type: 'string', describe: "network input size, e.g. 224 or 150x150 (default: the backbone's)" })
          .option('resize', { choices: ['squash', 'crop', 'pad'] as const, default: 'squash' as const, describe: 'squash (as Keras), centre crop, or letterbox' })
          .option('interpolation', { choices: ['nearest', 'linear', 'cubic', 'lanczos3'] as const, default: 'linear' as const })
          .option('background', { type: 'string', default: '255,255,255', describe: 'R,G,B that alpha is flattened on (and pad fills with)' })
          .option('batch', { type: 'number', default: 8 })
          .option('concurrency', { type: 'number', default: 4, describe: 'images decoded at once' })
          .option('float16', { type: 'boolean', default: false, describe: 'store codes as float16 (half the disk)' })
          .option('strict', { type: 'boolean', default: false, describe: 'exit 1 if any image could not be used' })
          .option('wait', { type: 'number', default: 0, describe: 'seconds to wait for another extract holding the cache lock' })
          .option('flush-seconds', { type: 'number', default: 30, describe: 'write computed codes to disk at least this often (what a crash can lose)' })
          .option('name', { type: 'string', describe: "the dataset's name in the cache (default: the folder's or manifest's name)" })
          .option('json', { type: 'boolean', default: false, describe: 'JSON progress lines and summary on stdout' }),
      async (argv) => {
        const { runExtractCommand } = await import('./extract/extract-command.ts');
        process.exitCode = await runExtractCommand({
          data: argv.data,
          backbone: argv.backbone,
          weights: argv.weights,
          engine: argv.engine as EngineChoice,
          device: argv.device as DeviceChoice,
          cacheRoot: argv.cache,
          layer: argv.layer,
          pool: argv.pool,
          augment: argv.augment,
          augmentSeed: argv['augment-seed'],
          shard: argv.shard,
          size: argv.size,
          resize: argv.resize,
          interpolation: argv.interpolation,
          background: argv.background,
          batch: argv.batch,
          concurrency: argv.concurrency,
          float16: argv.float16,
          strict: argv.strict,
          wait: argv.wait,
          flushSeconds: argv['flush-seconds'],
          json: argv.json,
          name: argv.name,
        });
      },
    )
    .command(
      'sweep',
      'which cut suits your data? extracts several cuts in one pass, trains a head on each, ranks them',
      (y) =>
        engineOptions(y)
          .option('data', { type: 'string', demandOption: true, describe: 'folder or manifest, as for extract' })
          .option('layer', { type: 'string', describe: "cuts to compare, comma-separated (default: the backbone's named cuts)" })
          .option('pool', { choices: ['avg', 'max'] as const, default: 'avg' as const, describe: 'global pooling of spatial cuts' })
          .option('hidden', { type: 'string', default: '256', describe: 'the head: hidden sizes, or 0 for logistic regression' })
          .option('epochs', { type: 'number', default: 30 })
          .option('seed', { type: 'number', default: 0 })
          .option('val', { type: 'number', default: 0.2, describe: 'validation fraction when rows have no split folders' })
          .option('batch', { type: 'number', default: 8 })
          .option('concurrency', { type: 'number', default: 4 })
          .option('out', { type: 'string', default: 'sweeps', describe: 'folder for the heads, one per cut' })
          .option('json', { type: 'boolean', default: false }),
      async (argv) => {
        const { runSweep, formatSweep } = await import('./sweep/sweep-command.ts');
        const hidden = argv.hidden === '0' ? [] : argv.hidden.split(',').map(Number);
        if (hidden.some((h) => !Number.isInteger(h) || h <= 0)) throw new UsageError(`--hidden ${argv.hidden}: use sizes like 256 or 512,128, or 0`);
        const result = await runSweep({
          data: argv.data,
          backbone: argv.backbone,
          weights: argv.weights,
          layers: argv.layer?.split(',').map((l) => l.trim()).filter(Boolean),
          pool: argv.pool,
          cacheRoot: argv.cache,
          out: argv.out,
          engine: argv.engine as EngineChoice,
          device: argv.device as DeviceChoice,
          batch: argv.batch,
          concurrency: argv.concurrency,
          hidden,
          epochs: argv.epochs,
          seed: argv.seed,
          val: argv.val,
          quiet: argv.json,
        });
        console.log(argv.json ? JSON.stringify(result) : formatSweep(result));
      },
    )
    .command(
      'train-head <codes>',
      'train a small classifier on cached codes, in seconds',
      (y) =>
        y
          .positional('codes', { type: 'string', demandOption: true, describe: 'cache key folder (cache/<key>) or key, as extract printed it' })
          .option('cache', { type: 'string', default: DEFAULT_CACHE, describe: 'cache folder' })
          .option('out', { type: 'string', describe: 'head folder to write (default heads/<key>-<time>)' })
          .option('hidden', { type: 'string', default: '256', describe: 'hidden layer sizes, e.g. 256 or 512,128; 0 for a plain softmax' })
          .option('dropout', { type: 'number', default: 0.5 })
          .option('optimizer', { choices: ['adam', 'rmsprop', 'sgd'] as const, default: 'adam' as const })
          .option('lr', { type: 'number', describe: 'learning rate (default 1e-3; 1e-2 for sgd)' })
          .option('momentum', { type: 'number', default: 0.9, describe: 'sgd momentum' })
          .option('batch', { type: 'number', default: 32 })
          .option('epochs', { type: 'number', default: 50 })
          .option('l2', { type: 'number', default: 0, describe: 'L2 penalty on kernels, as Keras l2(…)' })
          .option('class-weights', { type: 'string', default: 'none', describe: 'none | balanced | CLASS=W,…' })
          .option('seed', { type: 'number', default: 0 })
          .option('patience', { type: 'number', describe: 'stop after N epochs without a better validation loss (keeps the best)' })
          .option('val', { type: 'number', default: 0.2, describe: 'validation fraction when rows have no split folders' })
          .option('test', { type: 'number', default: 0, describe: 'test fraction held out when rows have no split folders' })
          .option('trainer', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const })
          .option('dataset', { type: 'string', describe: 'which dataset of the cache key, when it holds several' })
          .option('standardize', { type: 'boolean', default: false, describe: 'train on per-feature standardised codes (helps --hidden 0); folded into the saved weights' })
          .option('max-memory', { type: 'string', describe: 'memory for codes, e.g. 2GB; bigger codes are read from disk batch by batch (same result)' })
          .option('json', { type: 'boolean', default: false, describe: 'JSON lines per epoch and a summary on stdout' }),
      async (argv) => {
        const { runTrainHead } = await import('./train-head/train-command.ts');
        const hidden = argv.hidden === '0' ? [] : argv.hidden.split(',').map(Number);
        if (hidden.some((h) => !Number.isInteger(h) || h <= 0)) throw new UsageError(`--hidden ${argv.hidden}: use sizes like 256 or 512,128, or 0`);
        await runTrainHead({
          codes: argv.codes,
          cacheRoot: argv.cache,
          out: argv.out,
          hidden,
          dropout: argv.dropout,
          optimizer: argv.optimizer,
          lr: argv.lr,
          momentum: argv.momentum,
          batch: argv.batch,
          epochs: argv.epochs,
          l2: argv.l2,
          classWeights: argv['class-weights'],
          seed: argv.seed,
          patience: argv.patience ?? null,
          val: argv.val,
          test: argv.test,
          trainer: argv.trainer,
          dataset: argv.dataset,
          standardize: argv.standardize,
          json: argv.json,
          maxMemory: argv['max-memory'] === undefined ? undefined : parseBytes(argv['max-memory'], '--max-memory'),
        });
      },
    )
    .command(
      'fine-tune',
      "train the backbone's last block with the head (Keras blog style), from cached codes below the block",
      (y) =>
        y
          .option('head', { type: 'string', demandOption: true, describe: 'the trained head to start from' })
          .option('out', { type: 'string', demandOption: true, describe: 'the fine-tuned head folder to write' })
          .option('unfreeze', { type: 'string', describe: "the block to train, e.g. block5, fire9, inception_5b (default: the last block below the head's cut)" })
          .option('data', { type: 'string', describe: "the images (default: the folder the head's codes came from)" })
          .option('cache', { type: 'string', default: DEFAULT_CACHE, describe: 'cache folder' })
          .option('weights', { type: 'string', describe: 'backbone weights, as extract takes them' })
          .option('epochs', { type: 'number', default: 10 })
          .option('lr', { type: 'number', default: 1e-4 })
          .option('momentum', { type: 'number', default: 0.9 })
          .option('batch', { type: 'number', default: 16 })
          .option('augment', { type: 'number', default: 2, describe: 'cached augmented views per training image (0: none)' })
          .option('seed', { type: 'number', default: 0 })
          .option('engine', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const, describe: 'runs the frozen part; training is TF.js' })
          .option('device', { choices: ['auto', 'cpu', 'gpu'] as const, default: 'auto' as const })
          .option('concurrency', { type: 'number', default: 4 })
          .option('json', { type: 'boolean', default: false }),
      async (argv) => {
        const { runFineTune } = await import('./finetune/finetune.ts');
        await runFineTune({
          head: argv.head,
          out: argv.out,
          unfreeze: argv.unfreeze,
          data: argv.data,
          cacheRoot: argv.cache,
          weights: argv.weights,
          epochs: argv.epochs,
          lr: argv.lr,
          momentum: argv.momentum,
          batch: argv.batch,
          augment: argv.augment,
          seed: argv.seed,
          engine: argv.engine,
          device: argv.device,
          concurrency: argv.concurrency,
          json: argv.json,
        });
      },
    )
    .command(
      'evaluate',
      "report a head's test accuracy: per-class precision/recall/F1, confusion matrix, worst mistakes",
      (y) =>
        y
          .option('head', { type: 'string', demandOption: true, describe: 'head folder written by train-head' })
          .option('data', { type: 'string', describe: "a folder or manifest to evaluate instead of the head's test (or validation) rows" })
          .option('cache', { type: 'string', default: DEFAULT_CACHE, describe: 'cache folder' })
          .option('weights', { type: 'string', describe: 'backbone weights, for --data (as extract takes them)' })
          .option('engine', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const })
          .option('device', { choices: ['auto', 'cpu', 'gpu'] as const, default: 'auto' as const })
          .option('batch', { type: 'number', default: 8 })
          .option('concurrency', { type: 'number', default: 4 })
          .option('report', { type: 'string', describe: 'write a self-contained HTML report (and PNG plots) into this folder' })
          .option('mistakes', { type: 'number', default: 10, describe: 'worst mistakes to list' })
          .option('json', { type: 'boolean', default: false, describe: 'the whole evaluation as JSON on stdout' }),
      async (argv) => {
        const { runEvaluate } = await import('./evaluate/evaluate-command.ts');
        const report = await runEvaluate({
          head: argv.head,
          data: argv.data,
          cacheRoot: path.resolve(argv.cache),
          weights: argv.weights,
          batch: argv.batch,
          concurrency: argv.concurrency,
          engine: argv.engine,
          device: argv.device,
          quiet: argv.json,
        });
        if (argv.json) console.log(JSON.stringify(report));
        else {
          const { formatReport } = await import('./evaluate/format-report.ts');
          console.log(formatReport(report, { mistakes: argv.mistakes }));
        }
        if (argv.report) {
          const { writeHtmlReport } = await import('./evaluate/report-html.ts');
          const { html } = await writeHtmlReport(argv.report, report);
          console.error(`report: ${html}`);
        }
      },
    )
    .command(
      'predict <images..>',
      'classify images (files, folders or quoted globs) with a trained head (--head DIR) or the backbone’s ImageNet classifier (--imagenet)',
      (y) =>
        engineOptions(y)
          .positional('images', { type: 'string', array: true, demandOption: true })
          .option('head', { type: 'string', describe: 'a head folder written by train-head; its backbone, cut and preprocessing are used' })
          .option('imagenet', { type: 'boolean', default: false, alias: 'own', describe: "the backbone's own classifier: ImageNet's 1000 classes, or a Teachable Machine export's head and labels" })
          .option('imagenet-classes', { type: 'string', describe: "ImageNet class names file (Keras' imagenet_class_index.json or a JSON array); default: downloaded once into the weights folder" })
          .option('top-k', { type: 'number', default: 5 })
          .option('batch', { type: 'number', default: 8 })
          .option('json', { type: 'boolean', default: false, describe: 'one JSON line per image' }),
      async (argv) => {
        // Engines load onnxruntime and TF.js; importing them only here keeps --help instant.
        const { runPredictCommand } = await import('./predict/predict-command.ts');
        process.exitCode = await runPredictCommand({
          images: argv.images,
          head: argv.head,
          imagenet: argv.imagenet,
          imagenetClasses: argv['imagenet-classes'],
          backbone: argv.backbone,
          weights: argv.weights,
          topK: argv['top-k'],
          batch: argv.batch,
          json: argv.json,
          engine: argv.engine as EngineChoice,
          device: argv.device as DeviceChoice,
          cacheRoot: argv.cache,
        });
      },
    )
    .command(
      'export',
      'write backbone + head as one model file (ONNX, TF.js layers, or a Teachable Machine folder) with its preprocessing.json',
      (y) =>
        y
          .option('head', { type: 'string', demandOption: true, describe: 'head folder written by train-head' })
          .option('format', { choices: ['onnx', 'tfjs', 'teachable-machine'] as const, demandOption: true })
          .option('out', { type: 'string', demandOption: true, describe: 'folder to write the model and preprocessing.json into' })
          .option('weights', { type: 'string', describe: 'backbone weights (as extract takes them)' }),
      async (argv) => {
        const { runExport } = await import('./predict/export-command.ts');
        const { files } = await runExport({ head: argv.head, format: argv.format, out: argv.out, weights: argv.weights });
        for (const f of files) console.log(f);
      },
    )
    .command('cache', 'check, repair or export the cache', (y) =>
      y
        .option('cache', { type: 'string', default: DEFAULT_CACHE, describe: 'cache folder' })
        .command(
          'verify [keys..]',
          'read every shard (of every key, or those named) and check its checksum; exit 1 if any is damaged',
          (c) => c.positional('keys', { type: 'string', array: true }).option('json', { type: 'boolean', default: false }),
          async (argv) => {
            const { cacheKeys, isHealthy, verifyKey } = await import('./cache/verify.ts');
            const root = path.resolve(argv.cache);
            let damaged = 0;
            for (const key of await cacheKeys(root, argv.keys)) {
              const check = await verifyKey(root, key);
              const rows = check.shards.reduce((n, s) => n + (s.rows ?? 0), 0);
              if (!isHealthy(check)) damaged++;
              if (argv.json) {
                console.log(JSON.stringify({ ...check, spec: undefined, healthy: isHealthy(check), rows }));
                continue;
              }
              console.log(`${isHealthy(check) ? 'ok     ' : 'DAMAGED'} ${key}: ${check.shards.length} shard(s), ${rows} readable row(s)`);
              for (const s of check.shards.filter((x) => x.problem)) console.log(`  ${path.basename(s.file)}: ${s.problem}`);
              for (const p of check.problems) console.log(`  ${p}`);
              if (check.leftovers.length > 0) console.log(`  ${check.leftovers.length} temporary file(s) of an interrupted run (swept by the next extract)`);
            }
            if (damaged > 0 && !argv.json) console.log(`\n${damaged} damaged key(s): \`bottleneck cache repair\` recomputes what they lost`);
            process.exitCode = damaged > 0 ? 1 : 0;
          },
        )
        .command(
          'repair [keys..]',
          "set damaged shards aside and recompute their rows from the key's recorded dataset folders",
          (c) =>
            c
              .positional('keys', { type: 'string', array: true })
              .option('weights', { type: 'string', describe: 'backbone weights, as extract takes them' })
              .option('engine', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const })
              .option('device', { choices: ['auto', 'cpu', 'gpu'] as const, default: 'auto' as const })
              .option('batch', { type: 'number', default: 8 })
              .option('concurrency', { type: 'number', default: 4 }),
          async (argv) => {
            const { cacheKeys } = await import('./cache/verify.ts');
            const { repairKey } = await import('./extract/repair-cache.ts');
            const root = path.resolve(argv.cache);
            for (const key of await cacheKeys(root, argv.keys)) {
              const r = await repairKey(key, { root, weights: argv.weights, engine: argv.engine, device: argv.device, batch: argv.batch, concurrency: argv.concurrency, log: (l) => console.error(`  ${l}`) });
              console.log(r.quarantined.length === 0 ? `ok       ${key}` : `repaired ${key}: ${r.quarantined.length} shard(s) set aside, ${r.restoredRows} row(s) restored (${r.computed} recomputed)`);
            }
          },
        )
        .command(
          'export <key>',
          'write a key as hive-partitioned Parquet (split=…/label=…), codes as list<float32>',
          (c) =>
            c
              .positional('key', { type: 'string', demandOption: true, describe: 'cache key (or its folder)' })
              .option('format', { choices: ['parquet'] as const, default: 'parquet' as const })
              .option('out', { type: 'string', demandOption: true, describe: 'a new folder' }),
          async (argv) => {
            const { exportParquet } = await import('./cache/parquet-export.ts');
            const { openCodes } = await import('./train-head/train-command.ts');
            const cache = await openCodes(argv.key, path.resolve(argv.cache));
            const result = await exportParquet(cache, argv.out);
            console.log(`${result.rows} rows in ${result.files.length} Parquet file(s) under ${result.dir}`);
          },
        )
        .demandCommand(1, 'name a cache command: verify, repair or export'),
    )
    .demandCommand(1, 'name a command; see --help')
    .strict()
    .help()
    .fail((msg, err) => {
      throw err ?? new UsageError(msg);
    })
    .parseAsync();
}

main().catch((err: unknown) => {
  if (isUserError(err)) {
    console.error(`bottleneck: ${err.message}`);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});

