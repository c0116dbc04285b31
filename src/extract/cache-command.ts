/** `bottleneck cache verify | repair | export`: checking, mending and exporting the cache. */
import path from 'node:path';
import type { Argv } from 'yargs';
import { FeatureCache } from '../cache/feature-cache.ts';
import { exportParquet } from '../cache/parquet-export.ts';
import { cacheKeys, isHealthy, verifyKey, type KeyCheck } from '../cache/verify.ts';
import { cacheRootOf, defineCommand, withBatching, withCache, withEngine, withWait, withWeights } from '../util/cli-options.ts';
import { repairKey } from './repair-cache.ts';

const verifyCommand = defineCommand(
  'verify [keys..]',
  'read every shard (of every key, or those named) and check it against its key; exit 1 if any is damaged',
  (y) => withCache(y).positional('keys', { type: 'string', array: true }).option('json', { type: 'boolean', default: false }),
  async (argv) => {
    const root = cacheRootOf(argv.cache);
    let damaged = 0;
    for (const key of await cacheKeys(root, argv.keys)) {
      const check = await verifyKey(root, key);
      if (!isHealthy(check)) damaged++;
      if (argv.json) console.log(JSON.stringify({ ...check, spec: undefined, healthy: isHealthy(check), rows: rowsOf(check) }));
      else console.log(formatCheck(check));
    }
    if (damaged > 0 && !argv.json) console.log(`\n${damaged} damaged key(s): \`bottleneck cache repair\` recomputes what they lost`);
    process.exitCode = damaged > 0 ? 1 : 0;
  },
);

function rowsOf(check: KeyCheck): number {
  return check.shards.reduce((n, s) => n + (s.rows ?? 0), 0);
}

function formatCheck(check: KeyCheck): string {
  const lines = [`${isHealthy(check) ? 'ok     ' : 'DAMAGED'} ${check.key}: ${check.shards.length} shard(s), ${rowsOf(check)} readable row(s)`];
  for (const s of check.shards.filter((x) => x.problem)) lines.push(`  ${path.basename(s.file)}: ${s.problem}`);
  for (const f of check.missing) lines.push(`  ${path.basename(f)}: listed, but the file is missing`);
  if (check.duplicates.length > 0) lines.push(`  ${check.duplicates.length} content(s) stored twice (first in ${path.basename(check.duplicates[0].first)}, again in ${path.basename(check.duplicates[0].again)})`);
  for (const p of check.problems) lines.push(`  ${p}`);
  if (check.leftovers.length > 0) lines.push(`  ${check.leftovers.length} file(s) of an interrupted run (swept or adopted by the next extract)`);
  return lines.join('\n');
}

const repairCommand = defineCommand(
  'repair [keys..]',
  "set damaged shards aside, remove duplicates, and recompute what was lost from the key's datasets",
  (y) => withBatching(withEngine(withWeights(withCache(y)))).positional('keys', { type: 'string', array: true }),
  async (argv) => {
    const root = cacheRootOf(argv.cache);
    for (const key of await cacheKeys(root, argv.keys)) {
      const r = await repairKey(key, { ...argv, root, log: (l) => console.error(`  ${l}`) });
      console.log(
        r.healthy
          ? `ok       ${key}`
          : `repaired ${key}: ${r.quarantined.length} shard(s) set aside, ${r.deduplicated} duplicate row(s) removed, ${r.computed} code(s) recomputed`,
      );
    }
  },
);

const exportCommand = defineCommand(
  'export <key>',
  'write a key as hive-partitioned Parquet (split=…/label=…), codes as list<float32>',
  (y) =>
    withWait(withCache(y))
      .positional('key', { type: 'string', demandOption: true, describe: 'cache key (or its folder)' })
      .option('format', { choices: ['parquet'] as const, default: 'parquet' as const })
      .option('dataset', { type: 'string', describe: 'only this dataset of the key (default: all it holds)' })
      .option('out', { type: 'string', demandOption: true, describe: 'a new folder' }),
  async (argv) => {
    const cache = await FeatureCache.locate(argv.key!, cacheRootOf(argv.cache));
    await cache.waitForWriters(argv.wait);
    const result = await exportParquet(cache, argv.out, argv.dataset === undefined ? undefined : [argv.dataset]);
    console.log(`${result.rows} rows in ${result.files.length} Parquet file(s) under ${result.dir}`);
  },
);

export const cacheCommand = defineCommand(
  'cache',
  'check, repair or export the cache',
  (y: Argv) => y.command(verifyCommand).command(repairCommand).command(exportCommand).demandCommand(1, 'name a cache command: verify, repair or export'),
  async () => undefined,
);
