/**
 * The cache's half of `cache repair`, holding the key's exclusive lock: damaged shards go to
 * `quarantine/` (kept for inspection, never read again), shards listed but gone are unlisted,
 * and content stored twice is kept only in its first shard. What was lost is then recomputed by
 * extracting the key's datasets again (src/extract/repair-cache.ts).
 */
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { TOOL_VERSION } from '../util/version.ts';
import { acquireCacheLock } from './cache-lock.ts';
import { codeDim } from './code-spec.ts';
import { contentId, rowCount, type CodeRows } from './code-rows.ts';
import { FeatureCache } from './feature-cache.ts';
import { encodeShard } from './shard-format.ts';
import { readKeyListing, readShardList, writeShardList } from './shard-list.ts';
import type { KeyCheck } from './verify.ts';

export interface ShardRepair {
  readonly quarantined: readonly string[];
  readonly unlisted: readonly string[];
  /** Rows removed because their content is stored in an earlier shard. */
  readonly deduplicated: number;
}

export async function repairShards(cache: FeatureCache, check: KeyCheck, log: (line: string) => void): Promise<ShardRepair> {
  const lock = await acquireCacheLock(cache.dir);
  try {
    const damaged = check.shards.filter((s) => s.problem);
    const quarantine = path.join(cache.dir, 'quarantine');
    if (damaged.length > 0) await mkdir(quarantine, { recursive: true });
    for (const s of damaged) {
      await rename(s.file, path.join(quarantine, path.basename(s.file)));
      log(`${path.basename(s.file)}: ${s.problem}; moved to ${quarantine}`);
    }
    for (const file of check.missing) log(`${path.basename(file)}: listed but missing; unlisted`);
    const gone = new Set([...damaged.map((s) => s.file), ...check.missing]);
    const deduplicated = await dropDuplicates(cache, check, gone, log);
    await unlist(cache.dir, gone);
    return { quarantined: damaged.map((s) => path.join(quarantine, path.basename(s.file))), unlisted: check.missing, deduplicated };
  } finally {
    await lock.release();
  }
}

/**
 * Keeps each content in the first shard (in reading order) that holds it: later shards are
 * rewritten without those rows, or removed when nothing is left.
 */
async function dropDuplicates(cache: FeatureCache, check: KeyCheck, gone: Set<string>, log: (line: string) => void): Promise<number> {
  if (check.duplicates.length === 0) return 0;
  const seen = new Set<string>();
  let dropped = 0;
  const dim = codeDim(cache.spec);
  for (const file of check.shards.map((s) => s.file).filter((f) => !gone.has(f))) {
    const rows = await cache.readShard(file);
    const keep: number[] = [];
    for (let i = 0; i < rowCount(rows); i++) {
      const id = contentId(rows.sha256[i], rows.view?.[i] ?? 0);
      if (!seen.has(id)) keep.push(i);
      seen.add(id);
    }
    if (keep.length === rowCount(rows)) continue;
    dropped += rowCount(rows) - keep.length;
    log(`${path.basename(file)}: ${rowCount(rows) - keep.length} row(s) whose content an earlier shard holds removed`);
    if (keep.length === 0) {
      await rm(file, { force: true });
      gone.add(file);
      continue;
    }
    const codes = new Float32Array(keep.length * dim);
    keep.forEach((r, i) => codes.set(rows.codes.subarray(r * dim, (r + 1) * dim), i * dim));
    const kept: CodeRows = { sha256: keep.map((i) => rows.sha256[i]), ...(rows.view ? { view: keep.map((i) => rows.view![i]) } : {}), codes };
    await writeFileAtomic(file, encodeShard(kept, { key: cache.key, spec: cache.spec, engine: 'repair', toolVersion: TOOL_VERSION }));
    await setListedRows(cache.dir, file, keep.length);
  }
  return dropped;
}

async function setListedRows(dir: string, file: string, rows: number): Promise<void> {
  const owner = (await readKeyListing(dir)).shards.find((s) => s.file === file);
  if (!owner) return;
  const list = await readShardList(dir, owner.writer);
  await writeShardList(dir, { ...list, shards: list.shards.map((s) => (s.file === path.basename(file) ? { ...s, rows } : s)) });
}

async function unlist(dir: string, files: ReadonlySet<string>): Promise<void> {
  if (files.size === 0) return;
  const writers = new Set((await readKeyListing(dir)).shards.filter((s) => files.has(s.file)).map((s) => s.writer));
  for (const writer of writers) {
    const list = await readShardList(dir, writer);
    await writeShardList(dir, { ...list, shards: list.shards.filter((s) => !files.has(path.join(dir, s.file))) });
  }
}
