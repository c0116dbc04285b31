/**
 * One cache key's folder: `spec.json`, Arrow shards `codes-<writer>-<seq>.arrow`, and the
 * latest run's `errors.arrow`. This module is the public face of the cache: the extractor
 * writes through it and every later stage reads through it.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { cacheKey, canonicalJson, type CodeSpec } from './code-spec.ts';
import { concatRows, rowCount, rowIdentity, type CodeRows, type Split } from './code-rows.ts';
import { decodeShard, encodeShard, type ShardFacts } from './shard-format.ts';

const SHARD_PATTERN = /^codes-(.+)-(\d{6})\.arrow$/;

export interface SplitCodes {
  readonly codes: Float32Array;
  readonly labels: readonly string[];
  readonly paths: readonly string[];
  readonly sha256: readonly string[];
  /** Augmented-view index per row (0 for the images themselves). */
  readonly views: readonly number[];
}

export interface CachedCodes {
  /** Every dataset name in the key, whether or not it was selected. */
  readonly datasets: readonly string[];
  readonly dim: number;
  readonly shape: readonly number[];
  /** Rows by split; rows without a split are under 'none'. */
  readonly splits: ReadonlyMap<Split | 'none', SplitCodes>;
}

export class FeatureCache {
  private constructor(
    readonly dir: string,
    readonly key: string,
    readonly spec: CodeSpec,
  ) {}

  get dim(): number {
    return this.spec.shape.reduce((a, b) => a * b, 1);
  }

  /** Opens the key's folder, creating it with its spec.json on first use. */
  static async forSpec(root: string, spec: CodeSpec): Promise<FeatureCache> {
    const key = cacheKey(spec);
    const dir = path.join(root, key);
    const specFile = path.join(dir, 'spec.json');
    if (!existsSync(specFile)) {
      await mkdir(dir, { recursive: true });
      await writeFileAtomic(specFile, `${JSON.stringify(JSON.parse(canonicalJson(spec)), null, 2)}\n`);
    }
    return new FeatureCache(dir, key, spec);
  }

  static async open(root: string, key: string): Promise<FeatureCache> {
    const dir = path.join(root, key);
    const specFile = path.join(dir, 'spec.json');
    if (!existsSync(specFile)) throw new Error(`no cache '${key}' in ${root} (missing ${specFile})`);
    return new FeatureCache(dir, key, JSON.parse(await readFile(specFile, 'utf8')) as CodeSpec);
  }

  /**
   * Where each dataset's images were read from (`datasets.json`), so later stages can show the
   * images behind rows (evaluate's thumbnails). Rows store paths relative to this root.
   */
  async datasetRoots(): Promise<Record<string, string>> {
    const file = path.join(this.dir, 'datasets.json');
    if (!existsSync(file)) return {};
    return JSON.parse(await readFile(file, 'utf8')) as Record<string, string>;
  }

  /** Call holding the cache lock: the file is read, updated and replaced atomically. */
  async recordDatasetRoot(dataset: string, root: string): Promise<void> {
    const roots = await this.datasetRoots();
    if (roots[dataset] === root) return;
    await writeFileAtomic(path.join(this.dir, 'datasets.json'), `${JSON.stringify({ ...roots, [dataset]: root }, null, 2)}\n`);
  }

  /** Shard files, in writer then sequence order, so reads are deterministic. */
  async shardFiles(): Promise<string[]> {
    if (!existsSync(this.dir)) return [];
    return (await readdir(this.dir)).filter((f) => SHARD_PATTERN.test(f)).sort().map((f) => path.join(this.dir, f));
  }

  /**
   * Deletes temporary files left by a writer that was killed mid-write. Only call it holding
   * the cache lock, when no other writer can have a temporary file open.
   */
  async removeOrphans(writerId?: string): Promise<string[]> {
    // A sharded run's processes sweep only their own files: the others are still writing theirs.
    const mine = (f: string) => writerId === undefined || f.startsWith(`codes-${writerId}-`) || f.startsWith(`errors-${writerId}.`);
    const orphans = (await readdir(this.dir)).filter((f) => f.endsWith('.tmp') && mine(f));
    await Promise.all(orphans.map((f) => rm(path.join(this.dir, f), { force: true })));
    return orphans;
  }

  /** Rows shard by shard: memory is bounded by one shard, whatever the cache's size. */
  async *shards(): AsyncGenerator<{ file: string; rows: CodeRows }> {
    for (const file of await this.shardFiles()) {
      const { rows } = decodeShard(await readFile(file), file);
      yield { file, rows };
    }
  }

  /**
   * Every row (of one dataset, if named), as one Float32Array per split plus labels and paths,
   * for data that fits in memory.
   */
  async readAll(opts: { dataset?: string } = {}): Promise<CachedCodes> {
    const bySplit = new Map<Split | 'none', CodeRows[]>();
    const datasets = new Set<string>();
    for await (const { rows } of this.shards()) {
      const n = rowCount(rows);
      for (const d of rows.dataset) datasets.add(d);
      const wanted = (k: number) => opts.dataset === undefined || rows.dataset[k] === opts.dataset;
      for (let i = 0; i < n; ) {
        if (!wanted(i)) {
          i++;
          continue;
        }
        // Runs of one split are copied in one go.
        const split = rows.split[i] ?? 'none';
        let j = i + 1;
        while (j < n && wanted(j) && (rows.split[j] ?? 'none') === split) j++;
        const part: CodeRows = {
          sha256: rows.sha256.slice(i, j),
          dataset: rows.dataset.slice(i, j),
          path: rows.path.slice(i, j),
          label: rows.label.slice(i, j),
          split: rows.split.slice(i, j),
          ...(rows.view ? { view: rows.view.slice(i, j) } : {}),
          codes: rows.codes.subarray(i * this.dim, j * this.dim),
        };
        const parts = bySplit.get(split);
        if (parts) parts.push(part);
        else bySplit.set(split, [part]);
        i = j;
      }
    }
    const splits = new Map<Split | 'none', SplitCodes>();
    for (const [split, parts] of bySplit) {
      const all = concatRows(parts, this.dim);
      splits.set(split, { codes: all.codes, labels: all.label, paths: all.path, sha256: all.sha256, views: all.view ?? all.sha256.map(() => 0) });
    }
    return { datasets: [...datasets].sort(), dim: this.dim, shape: this.spec.shape, splits };
  }

  /** Which rows exist, and where each content hash's code can be found. */
  async index(): Promise<CacheIndex> {
    const rows = new Set<string>();
    const contents = new Map<string, string>();
    for (const file of await this.shardFiles()) {
      const { rows: r } = decodeShard(await readFile(file), file);
      for (let i = 0; i < rowCount(r); i++) {
        rows.add(rowIdentity(r.sha256[i], r.dataset[i], r.path[i], r.label[i], r.split[i], r.view?.[i] ?? 0));
        if (!contents.has(r.sha256[i])) contents.set(r.sha256[i], file);
      }
    }
    return { rows, contents };
  }

  /** Codes for the given content hashes, read from the shards that hold them. */
  async codesFor(wanted: ReadonlyMap<string, string>): Promise<Map<string, Float32Array>> {
    const byShard = new Map<string, string[]>();
    for (const [sha, file] of wanted) byShard.set(file, [...(byShard.get(file) ?? []), sha]);
    const out = new Map<string, Float32Array>();
    for (const [file, shas] of byShard) {
      const { rows } = decodeShard(await readFile(file), file);
      const want = new Set(shas);
      for (let i = 0; i < rowCount(rows); i++) {
        if (want.has(rows.sha256[i]) && !out.has(rows.sha256[i])) {
          out.set(rows.sha256[i], rows.codes.slice(i * this.dim, (i + 1) * this.dim));
        }
      }
    }
    return out;
  }

  async writer(opts: { writerId: string; engine: string; toolVersion: string; maxShardBytes?: number }): Promise<ShardWriter> {
    const files = await this.shardFiles();
    const mine = files.map((f) => path.basename(f).match(SHARD_PATTERN)!).filter((m) => m[1] === opts.writerId);
    const next = mine.length ? Math.max(...mine.map((m) => Number(m[2]))) + 1 : 0;
    const facts: ShardFacts = { key: this.key, spec: this.spec, engine: opts.engine, toolVersion: opts.toolVersion };
    return new ShardWriter(this.dir, opts.writerId, next, facts, this.dim, opts.maxShardBytes ?? 256 * 2 ** 20);
  }
}

export interface CacheIndex {
  /** rowIdentity(...) of every row. */
  readonly rows: ReadonlySet<string>;
  /** Content hash → a shard holding its code. */
  readonly contents: ReadonlyMap<string, string>;
}

/**
 * Buffers rows and writes them as complete shards (temporary file, fsync, rename): a crash
 * loses at most the rows not yet flushed, and never leaves a partial shard behind.
 */
export class ShardWriter {
  private pending: CodeRows[] = [];
  private pendingRows = 0;
  readonly written: string[] = [];
  /** Content hash → the shard this writer put its code in. */
  readonly located = new Map<string, string>();

  constructor(
    private readonly dir: string,
    private readonly writerId: string,
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
    return this.dim * (this.facts.spec.dtype === 'float16' ? 2 : 4) + 256;
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
    const file = path.join(this.dir, `codes-${this.writerId}-${String(this.seq).padStart(6, '0')}.arrow`);
    await writeFileAtomic(file, encodeShard(rows, this.facts));
    this.seq++;
    this.written.push(file);
    for (const sha of rows.sha256) if (!this.located.has(sha)) this.located.set(sha, file);
    this.pending = [];
    this.pendingRows = 0;
  }
}
