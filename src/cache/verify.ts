/**
 * `cache verify`: reads every shard of every key (or the keys named) and checks what a reader
 * relies on: the Arrow framing, the rows checksum in the metadata, that a shard belongs to its
 * key, and that no row is stored twice. A damaged shard is named with the reason.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { canonicalJson, type CodeSpec } from './code-spec.ts';
import { rowCount, rowIdentity } from './code-rows.ts';
import { CorruptShardError, decodeShard } from './shard-format.ts';
import { FeatureCache } from './feature-cache.ts';

export interface ShardCheck {
  readonly file: string;
  /** Rows read, or null when the shard could not be read. */
  readonly rows: number | null;
  /** Why the shard is unusable; undefined when it is fine. */
  readonly problem?: string;
}

export interface KeyCheck {
  readonly key: string;
  readonly dir: string;
  readonly spec: CodeSpec | null;
  readonly shards: readonly ShardCheck[];
  /** Problems of the key as a whole (its spec, rows stored twice). */
  readonly problems: readonly string[];
  /** Temporary files of interrupted writers: harmless, swept by the next extract. */
  readonly leftovers: readonly string[];
}

export function isHealthy(check: KeyCheck): boolean {
  return check.problems.length === 0 && check.shards.every((s) => !s.problem);
}

/** The key folders under `root` (those with a spec.json), or the named ones. */
export async function cacheKeys(root: string, named?: readonly string[]): Promise<string[]> {
  if (named && named.length > 0) return named.map((k) => path.basename(k));
  if (!existsSync(root)) return [];
  const entries = await readdir(root, { withFileTypes: true });
  return entries.filter((e) => e.isDirectory() && existsSync(path.join(root, e.name, 'spec.json'))).map((e) => e.name).sort();
}

export async function verifyKey(root: string, key: string): Promise<KeyCheck> {
  const dir = path.join(root, key);
  const problems: string[] = [];
  let cache: FeatureCache;
  try {
    cache = await FeatureCache.open(root, key);
  } catch (err) {
    return { key, dir, spec: null, shards: [], problems: [`unreadable spec.json (${(err as Error).message})`], leftovers: [] };
  }
  const seen = new Map<string, string>();
  const shards: ShardCheck[] = [];
  for (const file of await cache.shardFiles()) {
    try {
      const decoded = decodeShard(await readFile(file), file);
      if (decoded.key !== key) throw new CorruptShardError(file, `it belongs to key ${decoded.key}`);
      if (canonicalJson(decoded.spec) !== canonicalJson(cache.spec)) throw new CorruptShardError(file, "its code spec differs from the key's spec.json");
      const { rows } = decoded;
      for (let i = 0; i < rowCount(rows); i++) {
        const id = rowIdentity(rows.sha256[i], rows.dataset[i], rows.path[i], rows.label[i], rows.split[i], rows.view?.[i] ?? 0);
        const other = seen.get(id);
        if (other) problems.push(`row ${rows.path[i]} is stored twice (${path.basename(other)} and ${path.basename(file)})`);
        else seen.set(id, file);
      }
      shards.push({ file, rows: rowCount(rows) });
    } catch (err) {
      if (!(err instanceof CorruptShardError)) throw err;
      shards.push({ file, rows: null, problem: err.reason });
    }
  }
  const leftovers = (await readdir(dir)).filter((f) => f.endsWith('.tmp'));
  return { key, dir, spec: cache.spec, shards, problems, leftovers };
}
