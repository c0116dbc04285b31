/**
 * `cache export --format parquet`: one cache key as hive-partitioned Parquet
 * (`split=…/label=…/part-….parquet`), the layout Spark, Ray Data, Dask and DuckDB read as one
 * table with `split` and `label` columns. Codes are a list of float32 per row, beside sha256,
 * dataset and path (and view, for a key of augmented views). Written shard by shard, so memory
 * stays bounded by one shard; the whole folder appears at once, by rename, when it is complete.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { type Data, Field, Float32, Int16, List, makeData, RecordBatch, Schema, Struct, Table, tableToIPC, Utf8, vectorFromArray } from 'apache-arrow';
import * as parquet from 'parquet-wasm';
import { UsageError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { rowCount, type CodeRows } from './code-rows.ts';
import type { FeatureCache } from './feature-cache.ts';

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

export async function exportParquet(cache: FeatureCache, outDir: string): Promise<ParquetExport> {
  if (existsSync(outDir)) throw new UsageError(`${outDir} already exists: export into a new folder`);
  const staging = `${outDir}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  const files: string[] = [];
  let rows = 0;
  try {
    for await (const { file, rows: shard } of cache.shards()) {
      const part = path.basename(file, '.arrow');
      for (const [partition, indices] of partitions(shard)) {
        const dest = path.join(staging, partition, `${part}.parquet`);
        await mkdir(path.dirname(dest), { recursive: true });
        await writeFileAtomic(dest, toParquet(shard, indices, cache.dim));
        files.push(path.join(outDir, partition, `${part}.parquet`));
        rows += indices.length;
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

/** Row indices by `split=…/label=…` folder. */
function partitions(rows: CodeRows): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (let i = 0; i < rowCount(rows); i++) {
    const key = `split=${partitionValue(rows.split[i])}/label=${partitionValue(rows.label[i])}`;
    const list = out.get(key);
    if (list) list.push(i);
    else out.set(key, [i]);
  }
  return out;
}

function toParquet(rows: CodeRows, indices: readonly number[], dim: number): Uint8Array {
  const n = indices.length;
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
  const text = (column: readonly string[]) => vectorFromArray(indices.map((r) => column[r]), new Utf8()).data[0];
  const fields: Field[] = [new Field('sha256', new Utf8(), false), new Field('dataset', new Utf8(), false), new Field('path', new Utf8(), false)];
  const children: Data[] = [text(rows.sha256), text(rows.dataset), text(rows.path)];
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
