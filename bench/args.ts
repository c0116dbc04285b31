/**
 * node:util's parseArgs for the benchmarks, with a mistyped flag or value said in one line
 * (exit 2) instead of parseArgs' stack trace.
 */
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

export function benchArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    if (!(err instanceof TypeError) || !String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')) throw err;
    console.error(`${path.basename(process.argv[1] ?? 'bench')}: ${err.message}`);
    process.exit(2);
  }
}
