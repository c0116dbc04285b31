/**
 * Option metadata the command modules share, defined once: numbers that are checked (finite,
 * in range, whole where they must be; see number-rules.ts) before any work starts, and the
 * option groups several commands take (engine and device, cache, weights, batching). A bad
 * value is a one-line UsageError naming the flag and the value as typed.
 *
 * Numeric options carry no yargs `type`: yargs would turn "abc" into NaN and lose what the user
 * typed. Without it yargs keeps "abc" as text and numbers as numbers, and `coerce` checks both.
 */
import path from 'node:path';
import type { Argv, CommandModule, Options } from 'yargs';
import { UsageError } from './errors.ts';
import { checkNumber, describeRule, WHOLE_POSITIVE, type NumberRule } from './number-rules.ts';

export { checkNumber, FRACTION, WHOLE_POSITIVE, type NumberRule } from './number-rules.ts';

/** A checked number option with a default: `rule` is enforced, and stated in the help text. */
export function numberOption(flag: string, describe: string, rule: NumberRule, defaultValue: number) {
  return {
    describe: `${describe} (${describeRule(rule)})`,
    requiresArg: true,
    default: defaultValue,
    coerce: (v: unknown): number => checkNumber(flag, v, rule),
  } satisfies Options;
}

/** A checked number option without a default: undefined when not given. */
export function optionalNumber(flag: string, describe: string, rule: NumberRule) {
  return {
    describe: `${describe} (${describeRule(rule)})`,
    requiresArg: true,
    coerce: (v: unknown): number | undefined => (v === undefined ? undefined : checkNumber(flag, v, rule)),
  } satisfies Options;
}

/** "512MB", "2G", "1.5GiB" or a plain number of bytes. */
export function parseBytes(value: string, flag: string): number {
  const m = value.trim().match(/^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i);
  if (!m) throw new UsageError(`${flag} ${value}: use a size such as 512MB or 2GB`);
  const power = { '': 0, k: 1, m: 2, g: 3, t: 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const bytes = Math.floor(Number(m[1]) * 1024 ** power);
  if (bytes < 1) throw new UsageError(`${flag} ${value}: must be at least 1 byte`);
  return bytes;
}

/** The cache folder: `--cache`, else ./cache. */
export const DEFAULT_CACHE = 'cache';

export function withCache<T>(y: Argv<T>) {
  return y.option('cache', { type: 'string', describe: 'cache folder (codes, datasets, generated models)', coerce: (v: string) => path.resolve(v) });
}

export function withEngine<T>(y: Argv<T>) {
  return y
    .option('engine', { choices: ['auto', 'onnx', 'tfjs'] as const, default: 'auto' as const, describe: 'runs the backbone' })
    .option('device', { choices: ['auto', 'cpu', 'gpu'] as const, default: 'auto' as const });
}

export function withWeights<T>(y: Argv<T>) {
  return y.option('weights', { type: 'string', describe: 'backbone weights file or folder (Keras .h5, .safetensors, TF.js folder)' });
}

export function withBatching<T>(y: Argv<T>) {
  return y
    .option('batch', numberOption('batch', 'images per forward pass', WHOLE_POSITIVE, 8))
    .option('concurrency', numberOption('concurrency', 'images decoded at once', WHOLE_POSITIVE, 4));
}

export function withWait<T>(y: Argv<T>) {
  return y.option('wait', numberOption('wait', 'seconds to wait for an extract that is writing the codes', { min: 0 }, 0));
}

/** The backbone choice extract-like commands share. */
export function withBackbone<T>(y: Argv<T>, names: readonly string[]) {
  return y.option('backbone', { type: 'string', default: 'vgg16', describe: `${names.join(' | ')} | path/to/model.json` });
}

/**
 * One command module (mocha's layout: command, describe, builder, handler), with the handler's
 * argv typed by what the builder declares.
 */
export function defineCommand<O>(
  command: string | readonly string[],
  describe: string,
  builder: (y: Argv) => Argv<O>,
  handler: (argv: O) => Promise<void>,
): CommandModule<object, O> {
  return { command, describe, builder, handler: (argv) => handler(argv as O) };
}

/** `--cache`, or the folder a head recorded, or ./cache. */
export function cacheRootOf(flag: string | undefined, recorded?: string): string {
  return path.resolve(flag ?? recorded ?? DEFAULT_CACHE);
}
