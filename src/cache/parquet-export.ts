/**
 * `cache export --format parquet`: one cache key's datasets as hive-partitioned Parquet
 * (`split=…/label=…/part-….parquet`), the layout Spark, Ray Data, Dask and DuckDB read as one
 * table with `split` and `label` columns. Each member of each dataset (its latest membership)
 * is a row: sha256, dataset, path (and view, for a key of augmented views) and its code as a
 * list of float32. Written shard by shard, so memory stays bounded by one shard; the whole
 * folder appears at once, by rename, when it is complete.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { type Data, Field, Float32, Int16, List, makeData, RecordBatch, Schema, Struct, Table, tableToIPC, Utf8, vectorFromArray } from 'apache-arrow';
import * as parquet from 'parquet-wasm';
import { UsageError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { restoreFolder } from '../util/atomic-file.ts';
import { contentId, rowCount, type CodeRows } from './code-rows.ts';
import type { FeatureCache } from './feature-cache.ts';
import { readMembership, type Member } from './membership.ts';

export interface ParquetExport {
  readonly dir: string;
  readonly files: readonly string[];
  readonly rows: number;
}

/** Hive's partition-value escaping, so any label is a safe folder name. */
export function partitionValue(value: string | null): string {
  if (value === null) return '__HIVE_DEFAULT_PARTITION__';
  return value.replace(/[\u0000-\u001f"#%'*/:=?\\\u007f{}[\]^]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** One output row: a member of a dataset, and the shard row holding its code. */
interface OutRow {
  readonly dataset: string;
  readonly member: Member;
  readonly shardRow: number;
}

export async function exportParquet(cache: FeatureCache, outDir: string, datasets?: readonly string[]): Promise<ParquetExport> {
  if (existsSync(outDir)) throw new UsageError(`${outDir} already exists: export into a new folder`);
  // A killed export's staging folder is swept (the pid in its name is gone).
  await restoreFolder(outDir);
  const names = datasets ?? (await cache.datasets());
  if (names.length === 0) throw new UsageError(`${cache.dir}: no extract into this key has finished, so it has no rows to export`);
  const byContent = new Map<string, { dataset: string; member: Member }[]>();
  for (const dataset of names) {
    for (const member of (await readMembership(cache.root, dataset)).members) {
      const list = byContent.get(member.sha256);
      if (list) list.push({ dataset, member });
      else byContent.set(member.sha256, [{ dataset, member }]);
    }
  }
  const staging = `${path.resolve(outDir)}.staging.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const files: string[] = [];
  const written = new Set<string>();
  let rows = 0;
  try {
    for await (const { file, rows: shard } of cache.shards()) {
      const part = path.basename(file, '.arrow');
      const out: OutRow[] = [];
      for (let i = 0; i < rowCount(shard); i++) {
        const id = contentId(shard.sha256[i], shard.view?.[i] ?? 0);
        if (written.has(id)) continue; // stored twice: the first shard's code counts
        written.add(id);
        for (const m of byContent.get(shard.sha256[i]) ?? []) out.push({ ...m, shardRow: i });
      }
      for (const [partition, list] of partitions(out)) {
        const dest = path.join(staging, partition, `${part}.parquet`);
        await mkdir(path.dirname(dest), { recursive: true });
        await writeFileAtomic(dest, toParquet(shard, list, cache.dim));
        files.push(path.join(outDir, partition, `${part}.parquet`));
        rows += list.length;
      }
    }
    await mkdir(path.dirname(path.resolve(outDir)), { recursive: true });
    await rename(staging, outDir);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
  return { dir: outDir, files, rows };
}

/** Rows by `split=…/label=…` folder. */
function partitions(rows: readonly OutRow[]): Map<string, OutRow[]> {
  const out = new Map<string, OutRow[]>();
  for (const r of rows) {
    const key = `split=${partitionValue(r.member.split)}/label=${partitionValue(r.member.label)}`;
    const list = out.get(key);
    if (list) list.push(r);
    else out.set(key, [r]);
  }
  return out;
}

function toParquet(rows: CodeRows, out: readonly OutRow[], dim: number): Uint8Array {
  const n = out.length;
  const indices = out.map((o) => o.shardRow);
  const values = new Float32Array(n * dim);
  indices.forEach((r, i) => values.set(rows.codes.subarray(r * dim, (r + 1) * dim), i * dim));
  const listType = new List(new Field('item', new Float32(), false));
  const code = makeData({
    type: listType,
    length: n,
    nullCount: 0,
    valueOffsets: Int32Array.from({ length: n + 1 }, (_, i) => i * dim),
    child: makeData({ type: new Float32(), length: n * dim, data: values }),
  });
  const text = (values: string[]) => vectorFromArray(values, new Utf8()).data[0];
  const fields: Field[] = [new Field('sha256', new Utf8(), false), new Field('dataset', new Utf8(), false), new Field('path', new Utf8(), false)];
  const children: Data[] = [text(out.map((o) => o.member.sha256)), text(out.map((o) => o.dataset)), text(out.map((o) => o.member.path))];
  if (rows.view) {
    fields.push(new Field('view', new Int16(), false));
    children.push(makeData({ type: new Int16(), length: n, nullCount: 0, data: Int16Array.from(indices, (r) => rows.view![r]) }));
  }
  fields.push(new Field('code', listType, false));
  children.push(code);
  const schema = new Schema(fields);
  const batch = new RecordBatch(schema, makeData({ type: new Struct(fields), length: n, nullCount: 0, children }));
  const table = parquet.Table.fromIPCStream(tableToIPC(new Table(schema, [batch]), 'stream'));
  return parquet.writeParquet(table, new parquet.WriterPropertiesBuilder().setCompression(parquet.Compression.ZSTD).build());
}
