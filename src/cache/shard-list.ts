/**
 * Which shards a key holds, recorded by their writers: `shards-<writer>.json` beside them lists
 * every shard that writer completed, with its row count, and the datasets it extracted into the
 * key. Each writer owns its list (its lock guarantees one process per writer id), so the N
 * processes of a sharded run never write the same file. Readers take the union, and a listed
 * shard that is missing (deleted, lost in a copy) is detected instead of silently lacking rows.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { readJsonFile } from '../util/json-file.ts';

export const SHARD_PATTERN = /^codes-(.+)-(\d{6})\.arrow$/;
const LIST_PATTERN = /^shards-(.+)\.json$/;
const FORMAT = 'bottleneck-shards/1';

const listSchema = z.object({
  format: z.literal(FORMAT),
  writer: z.string().min(1),
  shards: z.array(z.object({ file: z.string().regex(SHARD_PATTERN), rows: z.number().int().nonnegative() })),
  /** Dataset name → when it was last extracted into the key by this writer (ISO time). */
  datasets: z.record(z.string(), z.string()),
});

export type ShardList = z.infer<typeof listSchema>;

export interface ListedShard {
  /** Absolute path. */
  readonly file: string;
  readonly rows: number;
  readonly writer: string;
}

export interface KeyListing {
  /** In file-name order (writer, then sequence), so reads are deterministic. */
  readonly shards: readonly ListedShard[];
  /** Every dataset extracted into the key, with the latest time any writer did so. */
  readonly datasets: ReadonlyMap<string, string>;
}

export function shardListFile(dir: string, writer: string): string {
  return path.join(dir, `shards-${writer}.json`);
}

export async function readShardList(dir: string, writer: string): Promise<ShardList> {
  const file = shardListFile(dir, writer);
  if (!existsSync(file)) return { format: FORMAT, writer, shards: [], datasets: {} };
  return readJsonFile(file, listSchema, 'a shard list');
}

export async function writeShardList(dir: string, list: ShardList): Promise<void> {
  const sorted = { ...list, shards: [...list.shards].sort((a, b) => (a.file < b.file ? -1 : 1)) };
  await writeFileAtomic(shardListFile(dir, list.writer), `${JSON.stringify(sorted, null, 1)}\n`);
}

/** Every writer's list of the key in `dir`, merged. */
export async function readKeyListing(dir: string): Promise<KeyListing> {
  const names = existsSync(dir) ? (await readdir(dir)).filter((n) => LIST_PATTERN.test(n)).sort() : [];
  const shards: ListedShard[] = [];
  const datasets = new Map<string, string>();
  for (const name of names) {
    const list = await readJsonFile(path.join(dir, name), listSchema, 'a shard list');
    for (const s of list.shards) shards.push({ file: path.join(dir, s.file), rows: s.rows, writer: list.writer });
    for (const [dataset, when] of Object.entries(list.datasets)) {
      if (!datasets.has(dataset) || datasets.get(dataset)! < when) datasets.set(dataset, when);
    }
  }
  shards.sort((a, b) => (a.file < b.file ? -1 : 1));
  return { shards, datasets };
}

/** Shard files of `writer` in `dir` that its list does not name (written, then killed before listing). */
export async function unlistedShards(dir: string, list: ShardList): Promise<string[]> {
  const listed = new Set(list.shards.map((s) => s.file));
  return (await readdir(dir)).filter((n) => SHARD_PATTERN.exec(n)?.[1] === list.writer && !listed.has(n)).sort();
}
