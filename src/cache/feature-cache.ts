/**
 * One cache key's folder: `spec.json`, content-addressed Arrow shards `codes-<writer>-<seq>.arrow`,
 * each writer's list of them (`shards-<writer>.json`), and the latest run's `errors.arrow`. This
 * module is the public face of a key: the extractor writes through it and every later stage
 * reads through it (joined with the datasets' memberships by code-table.ts).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { asFileSystemError, UserError } from '../util/errors.ts';
import { ensureDir, writeFileAtomic } from '../util/atomic-file.ts';
import { InvalidFileError, readJsonFile } from '../util/json-file.ts';
import { z } from 'zod';
import { cacheKey, canonicalJson, codeDim, codeSpecSchema, CODE_SPEC_VERSION, type CodeSpec } from './code-spec.ts';
import { concatRows, contentId, rowCount, type CodeRows } from './code-rows.ts';
import { decodeShard, encodeShard, type ShardFacts } from './shard-format.ts';
import { readKeyListing, readShardList, unlistedShards, writeShardList, type KeyListing, type ListedShard, type ShardList } from './shard-list.ts';
import { waitForWriters } from './cache-lock.ts';

/** The key's files disagree with each other (a listed shard is gone, a shard is of another key). */
export class CacheDamagedError extends UserError {}

const specFileSchema = codeSpecSchema.extend({ format: z.literal(`bottleneck-codes/${CODE_SPEC_VERSION}`) });

export class FeatureCache {
  private constructor(
    /** The cache folder holding this key (and the datasets' memberships). */
    readonly root: string,
    readonly dir: string,
    readonly key: string,
    readonly spec: CodeSpec,
  ) {}

  get dim(): number {
    return codeDim(this.spec);
  }

  /** Opens the key's folder, creating it with its spec.json on first use. */
  static async forSpec(root: string, spec: CodeSpec): Promise<FeatureCache> {
    const key = cacheKey(spec);
    const dir = path.join(root, key);
    const specFile = path.join(dir, 'spec.json');
    if (existsSync(specFile)) return FeatureCache.open(root, key);
    await ensureDir(dir);
    await writeFileAtomic(specFile, `${JSON.stringify(JSON.parse(canonicalJson({ format: `bottleneck-codes/${CODE_SPEC_VERSION}`, ...spec })), null, 2)}\n`);
    return new FeatureCache(root, dir, key, spec);
  }

  /** Opens an existing key, checking its spec.json (and that it names this key). */
  static async open(root: string, key: string): Promise<FeatureCache> {
    const dir = path.join(root, key);
    const specFile = path.join(dir, 'spec.json');
    if (!existsSync(specFile)) throw new UserError(`no cache key '${key}' in ${root} (missing ${specFile})`);
    const raw = await readJsonFile(specFile, z.object({ format: z.string().optional() }).loose(), 'a code spec');
    if (raw.format !== `bottleneck-codes/${CODE_SPEC_VERSION}`) {
      throw new InvalidFileError(specFile, `written by another version of bottleneck (cache format ${raw.format ?? '2 or older'}, this one reads ${CODE_SPEC_VERSION}): delete ${dir} and extract again`);
    }
    const { format: _format, ...spec } = await readJsonFile(specFile, specFileSchema, 'a code spec');
    if (cacheKey(spec) !== key) throw new InvalidFileError(specFile, `describes key ${cacheKey(spec)}, not the folder's ${key} (edited, or copied from another key?)`);
    return new FeatureCache(root, dir, key, spec);
  }

  /** A key folder (`cache/<key>`), or a key name under `cacheRoot`. */
  static async locate(codes: string, cacheRoot: string): Promise<FeatureCache> {
    const dir = existsSync(path.join(codes, 'spec.json')) ? codes : path.join(cacheRoot, codes);
    if (!existsSync(path.join(dir, 'spec.json'))) {
      throw new UserError(`${codes}: not a cache key folder (run \`bottleneck extract\` first; it prints the key and its folder)`);
    }
    const resolved = path.resolve(dir);
    return FeatureCache.open(path.dirname(resolved), path.basename(resolved));
  }

  /** Readers: waits for (or refuses, after `waitSeconds`) an extract that is writing this key. */
  async waitForWriters(waitSeconds = 0): Promise<void> {
    await waitForWriters(this.dir, waitSeconds);
  }

  /** Every writer's shard list, checked against the folder: a listed shard that is gone is damage. */
  async listing(): Promise<KeyListing> {
    const listing = await readKeyListing(this.dir);
    const gone = listing.shards.filter((s) => !existsSync(s.file));
    if (gone.length > 0) {
      throw new CacheDamagedError(
        `${this.dir}: ${gone.length} listed shard(s) are missing (${gone.map((s) => path.basename(s.file)).slice(0, 3).join(', ')}): run \`bottleneck cache repair ${this.key}\``,
      );
    }
    return listing;
  }

  /** Listed shards, in writer then sequence order, so reads are deterministic. */
  async shardFiles(): Promise<string[]> {
    return (await this.listing()).shards.map((s) => s.file);
  }

  /** The datasets extracted into this key, newest last. */
  async datasets(): Promise<string[]> {
    const { datasets } = await readKeyListing(this.dir);
    return [...datasets.entries()].sort((a, b) => (a[1] < b[1] ? -1 : 1)).map(([name]) => name);
  }

  /**
   * Deletes temporary files left by a writer that was killed mid-write. Only call it holding
   * the cache lock, when no other writer can have a temporary file open.
   */
  async removeOrphans(writerId?: string): Promise<string[]> {
    // A sharded run's processes sweep only their own files: the others are still writing theirs.
    const mine = (f: string) => writerId === undefined || f.startsWith(`codes-${writerId}-`) || f.startsWith(`errors-${writerId}.`) || f.startsWith(`shards-${writerId}.`);
    const orphans = (await readdir(this.dir)).filter((f) => f.endsWith('.tmp') && mine(f));
    await Promise.all(orphans.map((f) => rm(path.join(this.dir, f), { force: true })));
    return orphans;
  }

  /** Rows shard by shard: memory is bounded by one shard, whatever the cache's size. */
  async *shards(opts: { readonly verify?: boolean } = {}): AsyncGenerator<{ file: string; rows: CodeRows }> {
    for (const file of await this.shardFiles()) yield { file, rows: await this.readShard(file, opts) };
  }

  /** One listed shard, checked to belong to this key. */
  async readShard(file: string, opts: { readonly verify?: boolean } = {}): Promise<CodeRows> {
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      throw asFileSystemError(file, err);
    }
    const decoded = decodeShard(bytes, file, opts);
    if (decoded.key !== this.key || canonicalJson(decoded.spec) !== canonicalJson(this.spec)) {
      throw new CacheDamagedError(`${file}: holds codes of key ${decoded.key}, not of ${this.key} (copied between keys?): run \`bottleneck cache repair ${this.key}\``);
    }
    return decoded.rows;
  }

  /** Which contents (sha256, and view) the key holds, and the first shard holding each. */
  async contents(): Promise<Map<string, string>> {
    const where = new Map<string, string>();
    for await (const { file, rows } of this.shards({ verify: false })) {
      for (let i = 0; i < rowCount(rows); i++) {
        const id = contentId(rows.sha256[i], rows.view?.[i] ?? 0);
        if (!where.has(id)) where.set(id, file);
      }
    }
    return where;
  }

  /**
   * A writer for one writer id (`w`, or `sKofN` for a process of a sharded run). Call it holding
   * that writer's lock. Shards the writer finished but was killed before listing are adopted.
   */
  async writer(opts: { writerId: string; engine: string; toolVersion: string; maxShardBytes?: number }): Promise<ShardWriter> {
    const list = await readShardList(this.dir, opts.writerId);
    const listed = list.shards.length;
    for (const name of await unlistedShards(this.dir, list)) {
      // Renamed into place whole, so complete; a damaged one is left for verify and repair.
      const rows = await this.readShard(path.join(this.dir, name)).catch(() => null);
      if (rows) list.shards.push({ file: name, rows: rowCount(rows) });
    }
    if (list.shards.length > listed) await writeShardList(this.dir, list);
    const seqs = list.shards.map((s) => Number(s.file.match(/-(\d{6})\.arrow$/)![1]));
    const onDisk = (await readdir(this.dir)).map((n) => n.match(new RegExp(`^codes-${escapeRegExp(opts.writerId)}-(\\d{6})\\.arrow$`))?.[1]).filter((m): m is string => !!m).map(Number);
    const next = Math.max(-1, ...seqs, ...onDisk) + 1;
    const facts: ShardFacts = { key: this.key, spec: this.spec, engine: opts.engine, toolVersion: opts.toolVersion };
    return new ShardWriter(this.dir, list, next, facts, this.dim, opts.maxShardBytes ?? 256 * 2 ** 20);
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export type { ListedShard };

/**
 * Buffers rows and writes them as complete shards (temporary file, fsync, rename), each then
 * added to the writer's shard list: a crash loses at most the rows not yet flushed, and never
 * leaves a partial shard behind.
 */
export class ShardWriter {
  private pending: CodeRows[] = [];
  private pendingRows = 0;
  readonly written: string[] = [];

  constructor(
    private readonly dir: string,
    private readonly list: ShardList,
    private seq: number,
    private facts: ShardFacts,
    private readonly dim: number,
    private readonly maxShardBytes: number,
  ) {}

  /** Recorded in each shard; known only once the engine has started. */
  set engine(engine: string) {
    this.facts = { ...this.facts, engine };
  }

  private get rowBytes(): number {
    return this.dim * (this.facts.spec.dtype === 'float16' ? 2 : 4) + 80;
  }

  get bufferedRows(): number {
    return this.pendingRows;
  }

  async append(rows: CodeRows): Promise<void> {
    if (rowCount(rows) === 0) return;
    this.pending.push(rows);
    this.pendingRows += rowCount(rows);
    if (this.pendingRows * this.rowBytes >= this.maxShardBytes) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pendingRows === 0) return;
    const rows = concatRows(this.pending, this.dim);
    const name = `codes-${this.list.writer}-${String(this.seq).padStart(6, '0')}.arrow`;
    await writeFileAtomic(path.join(this.dir, name), encodeShard(rows, this.facts));
    this.seq++;
    this.written.push(path.join(this.dir, name));
    this.list.shards.push({ file: name, rows: rowCount(rows) });
    await writeShardList(this.dir, this.list);
    this.pending = [];
    this.pendingRows = 0;
  }

  /** Records that a dataset was extracted into the key (by the end of a complete run). */
  async recordDataset(name: string): Promise<void> {
    await this.flush();
    this.list.datasets[name] = new Date().toISOString();
    await writeShardList(this.dir, this.list);
  }
}
