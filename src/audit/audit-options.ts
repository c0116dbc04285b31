/**
 * `bottleneck audit`'s flags. Kept apart from the command so the CLI can declare them without
 * loading onnxruntime, sharp or TF.js (--help stays instant).
 */
import path from 'node:path';
import type { Argv } from 'yargs';

export const AUDIT_COMMAND = 'audit <data>';
export const AUDIT_DESCRIPTION = 'find exact duplicates, near-duplicates and likely label errors (leaks across splits first), from the cached codes';

export function auditOptions<T>(y: Argv<T>) {
  return y
    .positional('data', { type: 'string', demandOption: true, describe: 'folder of class subfolders, .csv/.jsonl manifest, or cache key folder' })
    .option('backbone', { type: 'string', default: 'vgg16', describe: 'as for extract (near-duplicate thresholds are calibrated for squeezenet1_1 and googlenet)' })
    .option('weights', { type: 'string', describe: 'weights file or folder (Keras .h5, .safetensors, TF.js folder)' })
    .option('engine', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const })
    .option('device', { choices: ['auto', 'cpu', 'gpu'] as const, default: 'auto' as const })
    .option('cache', { type: 'string', default: path.resolve('cache'), describe: 'cache folder (codes and generated models)' })
    .option('layer', { type: 'string', describe: "cut point (default: the backbone's bottleneck)" })
    .option('pool', { choices: ['avg', 'max'] as const, describe: 'global pooling of the cut' })
    .option('size', { type: 'string', describe: "network input size, e.g. 224 or 150x150 (default: the backbone's)" })
    .option('resize', { choices: ['squash', 'crop', 'pad'] as const, default: 'squash' as const })
    .option('interpolation', { choices: ['nearest', 'linear', 'cubic', 'lanczos3'] as const, default: 'linear' as const })
    .option('background', { type: 'string', default: '255,255,255', describe: 'R,G,B that alpha is flattened on' })
    .option('batch', { type: 'number', default: 8 })
    .option('concurrency', { type: 'number', default: 4, describe: 'images decoded at once' })
    .option('float16', { type: 'boolean', default: false })
    .option('wait', { type: 'number', default: 0, describe: 'seconds to wait for another extract holding the cache lock' })
    .option('dataset', { type: 'string', describe: "the dataset's name in the cache (default: the folder's; with a key holding several, which one)" })
    .option('threshold', { type: 'number', describe: "near-duplicate cosine threshold (default: the cut's calibrated one)" })
    .option('neighbours', { type: 'number', default: 10, describe: 'nearest neighbours searched per image' })
    .option('folds', { type: 'number', default: 5, describe: 'folds for out-of-fold probabilities' })
    .option('hidden', { type: 'string', default: '0', describe: 'the fold heads: hidden sizes, or 0 for logistic regression' })
    .option('epochs', { type: 'number', default: 30, describe: 'epochs per fold head' })
    .option('lr', { type: 'number', default: 1e-3 })
    .option('seed', { type: 'number', default: 0, describe: 'folds, initial weights and batch order follow from it' })
    .option('trainer', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const })
    .option('val', { type: 'number', default: 0.2, describe: 'without split folders: the validation fraction train-head would hold out (by content hash)' })
    .option('test', { type: 'number', default: 0, describe: 'without split folders: the test fraction' })
    .option('show', { type: 'number', default: 20, describe: 'findings of each kind in the terminal summary' })
    .option('json', { type: 'boolean', default: false, describe: 'the whole audit as one JSON object on stdout' })
    .option('report', { type: 'string', describe: 'write a self-contained audit.html with thumbnails into this folder' })
    .option('write-manifest', { type: 'string', describe: 'write a cleaned path,label,split CSV (leaks out of validation/test, conflicts dropped) for extract' })
    .option('drop-mislabelled', { type: 'boolean', default: false, describe: 'with --write-manifest, also drop the suspected label errors' });
}
