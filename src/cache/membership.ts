/**
 * A dataset's membership: which images it holds now (path, label, split and content hash), as
 * its latest complete extract found them. Codes are content-addressed, so a membership is all
 * that changes when an image is deleted, moved to another class folder or rewritten, and every
 * reader of "the dataset" (train-head, evaluate, sweep, fine-tune, repair, cache export) reads
 * this, never rows that accumulated in the shards.
 *
 * Memberships live beside the keys, one folder per dataset name, since they do not depend on
 * the backbone: `<cache>/datasets/<name>/members-<K>of<N>.arrow`. A plain extract writes part
 * 0of1; each process of a sharded run (`--shard K/N`) writes the part of the images whose hash
 * falls in its share, so the parts together are the dataset. Each part is an Arrow IPC file
 * written atomically, so readers see the previous membership or the new one, never a mixture
 * within a part.
 */
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Field, makeData, RecordBatch, Schema, Struct, Table, tableFromIPC, tableToIPC, Utf8, vectorFromArray } from 'apache-arrow';
import { z } from 'zod';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { readFileCapped } from '../util/bounded-read.ts';
import { UserError } from '../util/errors.ts';
import { checkJson, InvalidFileError } from '../util/json-file.ts';
import type { Split } from './code-rows.ts';

export interface Member {
  /** Relative to the dataset's root, '/'-separated. */
  readonly path: string;
  /** null for an unlabeled image. */
  readonly label: string | null;
  readonly split: Split | null;
  readonly sha256: string;
}

export interface DatasetSource {
  /** The name rows are known by (the folder's or manifest's name, or --name). */
  readonly name: string;
  /** The folder member paths are relative to. */
  readonly root: string;
  /** The folder or manifest file that was scanned, to scan it again (repair, fine-tune). */
  readonly source: string;
}

export interface Membership extends DatasetSource {
  /** In path order. */
  readonly members: readonly Member[];
  /** When the newest part was written (ISO time). */
  readonly writtenAt: string;
}

export interface MembershipPart {
  readonly index: number;
  readonly count: number;
}

const FORMAT = 'bottleneck-members/1' as const;
const META_KEY = 'bottleneck.membership';
const PART_PATTERN = /^members-(\d+)of(\d+)\.arrow$/;
/** A membership of ten million images is about 1.5 GB. */
const MAX_PART_BYTES = 4 * 2 ** 30;

const metaSchema = z.object({
  format: z.literal(FORMAT),
  name: z.string(),
  root: z.string(),
  source: z.string(),
  part: z.object({ index: z.number().int().nonnegative(), count: z.number().int().positive() }),
  members: z.number().int().nonnegative(),
  writtenAt: z.string(),
  toolVersion: z.string(),
});

/** No complete membership of this dataset is recorded: it was never extracted, or not to the end. */
export class NoMembershipError extends UserError {}

export function datasetsDir(cacheRoot: string): string {
  return path.join(cacheRoot, 'datasets');
}

/** Dataset names are free text; their folder name is escaped so any name is one safe folder. */
export function datasetDir(cacheRoot: string, name: string): string {
  const safe = name.replace(/[^A-Za-z0-9_.-]|^\.+/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return path.join(datasetsDir(cacheRoot), safe || '%00');
}

function partFile(cacheRoot: string, name: string, part: MembershipPart): string {
  return path.join(datasetDir(cacheRoot, name), `members-${part.index}of${part.count}.arrow`);
}

/**
 * Records `members` as the dataset's membership (or this process's part of it), then removes
 * parts of another partitioning, which the new one supersedes.
 */
export async function writeMembership(cacheRoot: string, source: DatasetSource, part: MembershipPart, members: readonly Member[], toolVersion: string): Promise<void> {
  const sorted = [...members].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const meta = { format: FORMAT, ...source, part, members: sorted.length, writtenAt: new Date().toISOString(), toolVersion };
  await writeFileAtomic(partFile(cacheRoot, source.name, part), encodeMembers(sorted, meta));
  const dir = datasetDir(cacheRoot, source.name);
  for (const name of await readdir(dir)) {
    const m = PART_PATTERN.exec(name);
    if (m && Number(m[2]) !== part.count) await rm(path.join(dir, name), { force: true });
  }
}

/** Where a dataset name was last read from, if any membership (complete or not) records it. */
export async function recordedSource(cacheRoot: string, name: string): Promise<DatasetSource | null> {
  const parts = await readParts(cacheRoot, name);
  const newest = parts.sort((a, b) => (a.meta.writtenAt < b.meta.writtenAt ? 1 : -1))[0];
  return newest ? { name: newest.meta.name, root: newest.meta.root, source: newest.meta.source } : null;
}

/** The dataset's latest complete membership; NoMembershipError when there is none. */
export async function readMembership(cacheRoot: string, name: string): Promise<Membership> {
  const parts = await readParts(cacheRoot, name);
  if (parts.length === 0) {
    throw new NoMembershipError(`dataset '${name}' has no complete extract in ${cacheRoot} yet (run \`bottleneck extract\` on it; an interrupted one resumes)`);
  }
  // Parts of one partitioning; if a switch of N was interrupted, the newest partitioning counts.
  const newest = parts.reduce((a, b) => (a.meta.writtenAt > b.meta.writtenAt ? a : b));
  const count = newest.meta.part.count;
  const group = parts.filter((p) => p.meta.part.count === count);
  const missing = Array.from({ length: count }, (_, k) => k).filter((k) => !group.some((p) => p.meta.part.index === k));
  if (missing.length > 0) {
    throw new NoMembershipError(
      `dataset '${name}' is only partly extracted: the processes --shard ${missing.map((k) => `${k}/${count}`).join(', ')} have not finished (run them, or extract without --shard)`,
    );
  }
  const members = group.flatMap((p) => p.members).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { name: newest.meta.name, root: newest.meta.root, source: newest.meta.source, members, writtenAt: newest.meta.writtenAt };
}

/** Every dataset name with a recorded membership under `cacheRoot`. */
export async function membershipNames(cacheRoot: string): Promise<string[]> {
  const dir = datasetsDir(cacheRoot);
  if (!existsSync(dir)) return [];
  const names: string[] = [];
  for (const folder of await readdir(dir)) {
    const parts = await readParts(cacheRoot, null, path.join(dir, folder));
    if (parts[0]) names.push(parts[0].meta.name);
  }
  return names.sort();
}

interface Part {
  readonly meta: z.infer<typeof metaSchema>;
  readonly members: readonly Member[];
}

async function readParts(cacheRoot: string, name: string | null, dirOverride?: string): Promise<Part[]> {
  const dir = dirOverride ?? datasetDir(cacheRoot, name!);
  if (!existsSync(dir)) return [];
  const parts: Part[] = [];
  for (const file of (await readdir(dir)).filter((n) => PART_PATTERN.test(n)).sort()) {
    parts.push(decodeMembers(await readFileCapped(path.join(dir, file), MAX_PART_BYTES), path.join(dir, file)));
  }
  return parts;
}

const FIELDS = [
  new Field('path', new Utf8(), false),
  new Field('label', new Utf8(), true),
  new Field('split', new Utf8(), true),
  new Field('sha256', new Utf8(), false),
];

function encodeMembers(members: readonly Member[], meta: z.infer<typeof metaSchema>): Uint8Array {
  const schema = new Schema(FIELDS, new Map([[META_KEY, JSON.stringify(meta)]]));
  const text = (values: (string | null)[]) => vectorFromArray(values, new Utf8()).data[0];
  const children = [text(members.map((m) => m.path)), text(members.map((m) => m.label)), text(members.map((m) => m.split)), text(members.map((m) => m.sha256))];
  const batch = new RecordBatch(schema, makeData({ type: new Struct(FIELDS), length: members.length, nullCount: 0, children }));
  return tableToIPC(new Table(schema, [batch]), 'file');
}

const SPLITS: ReadonlySet<string> = new Set(['train', 'validation', 'test']);

function decodeMembers(bytes: Uint8Array, file: string): Part {
  let table: Table;
  try {
    table = tableFromIPC(bytes);
  } catch {
    throw new InvalidFileError(file, 'not a readable Arrow file (a damaged dataset membership: extract the dataset again)');
  }
  const metaText = table.schema.metadata.get(META_KEY);
  let metaValue: unknown;
  try {
    metaValue = JSON.parse(metaText ?? 'null');
  } catch {
    metaValue = null;
  }
  const meta = checkJson(metaValue, metaSchema, file, 'a dataset membership');
  const column = (name: string) => (table.getChild(name)?.toArray() ?? []) as (string | null)[];
  const [paths, labels, splits, shas] = ['path', 'label', 'split', 'sha256'].map(column);
  if (paths.length !== meta.members || shas.length !== meta.members) throw new InvalidFileError(file, `holds ${paths.length} members, its metadata says ${meta.members}`);
  const members = paths.map((p, i) => {
    const split = splits[i];
    if (p === null || shas[i] === null || (split !== null && !SPLITS.has(split))) throw new InvalidFileError(file, `member ${i} is malformed`);
    return { path: p, label: labels[i], split: split as Split | null, sha256: shas[i]! };
  });
  return { meta, members };
}
