/**
 * `cache verify`: reads every shard of every key (or the keys named) and checks what a reader
 * relies on: spec.json, each writer's shard list against the folder, the Arrow framing and rows
 * checksum of each shard, that a shard belongs to its key, that no content is stored twice, and
 * that every dataset extracted into the key has a code for each of its members.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { CodeSpec } from './code-spec.ts';
import { contentId, rowCount } from './code-rows.ts';
import { CacheDamagedError, FeatureCache } from './feature-cache.ts';
import { readMembership } from './membership.ts';
import { readKeyListing, SHARD_PATTERN, type KeyListing } from './shard-list.ts';
import { UserError } from '../util/errors.ts';

export interface ShardCheck {
  readonly file: string;
  /** Rows read, or null when the shard could not be read. */
  readonly rows: number | null;
  /** Why the shard is unusable; undefined when it is fine. */
  readonly problem?: string;
}

/** A content stored again in a later shard: readers use the first, repair removes the others. */
export interface Duplicate {
  readonly id: string;
  readonly first: string;
  readonly again: string;
}

export interface KeyCheck {
  readonly key: string;
  readonly dir: string;
  readonly spec: CodeSpec | null;
  readonly shards: readonly ShardCheck[];
  /** Shards a writer's list names that are not in the folder. */
  readonly missing: readonly string[];
  readonly duplicates: readonly Duplicate[];
  /** Problems of the key as a whole (its spec, its lists, members without codes). */
  readonly problems: readonly string[];
  /** Temporary files and unlisted shards of interrupted writers: harmless, swept or adopted by the next extract. */
  readonly leftovers: readonly string[];
}

export function isHealthy(check: KeyCheck): boolean {
  return check.problems.length === 0 && check.missing.length === 0 && check.duplicates.length === 0 && check.shards.every((s) => !s.problem);
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
  const empty = { key, dir, spec: null, shards: [], missing: [], duplicates: [], leftovers: [] };
  let cache: FeatureCache;
  let listing: KeyListing;
  try {
    cache = await FeatureCache.open(root, key);
    listing = await readKeyListing(dir);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    return { ...empty, problems: [err.message] };
  }
  const seen = new Map<string, string>();
  const duplicates: Duplicate[] = [];
  const shards: ShardCheck[] = [];
  const missing = listing.shards.filter((s) => !existsSync(s.file)).map((s) => s.file);
  for (const listed of listing.shards.filter((s) => existsSync(s.file))) {
    try {
      const rows = await cache.readShard(listed.file);
      if (rowCount(rows) !== listed.rows) throw new CacheDamagedError(`holds ${rowCount(rows)} rows, its writer's list says ${listed.rows}`);
      for (let i = 0; i < rowCount(rows); i++) {
        const id = contentId(rows.sha256[i], rows.view?.[i] ?? 0);
        const first = seen.get(id);
        if (first) duplicates.push({ id, first, again: listed.file });
        else seen.set(id, listed.file);
      }
      shards.push({ file: listed.file, rows: rowCount(rows) });
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      shards.push({ file: listed.file, rows: null, problem: shortReason(err) });
    }
  }
  const problems = shards.some((s) => s.problem) || missing.length > 0 ? [] : await coverageProblems(cache, listing, seen);
  const listed = new Set(listing.shards.map((s) => path.basename(s.file)));
  const leftovers = (await readdir(dir)).filter((f) => f.endsWith('.tmp') || (SHARD_PATTERN.test(f) && !listed.has(f)));
  return { key, dir, spec: cache.spec, shards, missing, duplicates, problems, leftovers };
}

/** Members of the key's datasets whose content the key does not hold. */
async function coverageProblems(cache: FeatureCache, listing: KeyListing, held: ReadonlyMap<string, string>): Promise<string[]> {
  if (cache.spec.augment) return []; // views exist for training images only, by design
  const problems: string[] = [];
  for (const name of listing.datasets.keys()) {
    try {
      const { members } = await readMembership(cache.root, name);
      const lacking = members.filter((m) => !held.has(contentId(m.sha256)));
      if (lacking.length > 0) problems.push(`dataset '${name}': ${lacking.length} of ${members.length} images have no code (e.g. ${lacking[0].path}); \`cache repair\` computes them`);
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      problems.push(err.message);
    }
  }
  return problems;
}

/** The reason alone, without the advice to run verify that a reader's error carries. */
function shortReason(err: Error): string {
  return 'reason' in err && typeof err.reason === 'string' ? err.reason : err.message;
}
