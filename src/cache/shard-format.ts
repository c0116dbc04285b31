/**
 * The Arrow layout of a cache shard: one row per content (sha256, [view], code), with the code
 * spec and run facts in the schema metadata. Shards are Arrow IPC *files*, each complete and
 * self-describing, so DuckDB, pyarrow or arrow-js read any one alone; paths and labels are in
 * the datasets' membership files, which join on sha256.
 */
import {
  Field,
  FixedSizeList,
  Float16,
  Float32,
  Int16,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table,
  tableFromIPC,
  tableToIPC,
  Utf8,
  util,
  vectorFromArray,
  type Vector,
} from 'apache-arrow';
import { UserError } from '../util/errors.ts';
import { checkJson } from '../util/json-file.ts';
import { canonicalJson, codeDim, codeSpecSchema, type CodeSpec } from './code-spec.ts';
import { rowsChecksum, type CodeRows } from './code-rows.ts';

export interface ShardFacts {
  readonly key: string;
  readonly spec: CodeSpec;
  /** e.g. "onnx/cpu". */
  readonly engine: string;
  readonly toolVersion: string;
}

export const META = {
  key: 'bottleneck.key',
  spec: 'bottleneck.spec',
  engine: 'bottleneck.engine',
  version: 'bottleneck.version',
  checksum: 'bottleneck.rows_sha256',
} as const;

export class CorruptShardError extends UserError {
  constructor(
    readonly shard: string,
    readonly reason: string,
  ) {
    super(`cache shard ${shard} is corrupt: ${reason}. Run \`bottleneck cache verify\` to list damaged shards and \`bottleneck cache repair\` to recompute them`);
  }
}

export function encodeShard(rows: CodeRows, facts: ShardFacts): Uint8Array {
  const dim = codeDim(facts.spec);
  const n = rows.sha256.length;
  const half = facts.spec.dtype === 'float16';
  const element = half ? new Float16() : new Float32();
  const stored = half ? toFloat16(rows.codes.subarray(0, n * dim)) : rows.codes.subarray(0, n * dim);
  const storedBytes = new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength);
  const codeType = new FixedSizeList(dim, new Field('item', element, false));
  const fields = [
    new Field('sha256', new Utf8(), false),
    new Field('code', codeType, false),
    // Only keys of cached augmentations have views; plain shards keep the original layout.
    ...(rows.view ? [new Field('view', new Int16(), false)] : []),
  ];
  const metadata = new Map<string, string>([
    [META.key, facts.key],
    [META.spec, canonicalJson(facts.spec)],
    [META.engine, facts.engine],
    [META.version, facts.toolVersion],
    [META.checksum, rowsChecksum(rows, storedBytes)],
  ]);
  const schema = new Schema(fields, metadata);
  const children = [
    vectorFromArray(rows.sha256 as string[], new Utf8()).data[0],
    makeData({ type: codeType, length: n, nullCount: 0, child: makeData({ type: element, length: n * dim, data: stored }) }),
    ...(rows.view ? [makeData({ type: new Int16(), length: n, nullCount: 0, data: Int16Array.from(rows.view) })] : []),
  ];
  const batch = new RecordBatch(schema, makeData({ type: new Struct(fields), length: n, nullCount: 0, children }));
  return tableToIPC(new Table(schema, [batch]), 'file');
}

export interface DecodedShard {
  readonly rows: CodeRows;
  readonly key: string;
  readonly spec: CodeSpec;
  readonly engine: string;
}

/**
 * Parses and verifies a shard; any damage becomes a CorruptShardError naming the file.
 * `verify: false` skips the checksum, for reads that only need to know which contents a shard
 * holds (its codes are checked whenever they are read for use).
 */
export function decodeShard(bytes: Uint8Array, shard: string, opts: { readonly verify?: boolean } = {}): DecodedShard {
  let table: Table;
  try {
    table = tableFromIPC(bytes);
  } catch (err) {
    throw new CorruptShardError(shard, `not a readable Arrow file (${(err as Error).message})`);
  }
  const meta = table.schema.metadata;
  const specJson = meta.get(META.spec);
  const checksum = meta.get(META.checksum);
  if (!specJson || !checksum) throw new CorruptShardError(shard, 'its bottleneck metadata is missing');
  let spec: CodeSpec;
  try {
    spec = checkJson(JSON.parse(specJson), codeSpecSchema, shard, 'a code spec');
  } catch {
    throw new CorruptShardError(shard, 'its code spec is not valid');
  }
  const dim = codeDim(spec);
  const shaCol = table.getChild('sha256');
  const codeCol = table.getChild('code');
  if (!shaCol || !codeCol) throw new CorruptShardError(shard, `column '${shaCol ? 'code' : 'sha256'}' is missing (written by an older version?)`);
  const { stored, codes } = readCodes(codeCol, table.numRows * dim, shard);
  const viewCol = table.getChild('view');
  const rows: CodeRows = {
    sha256: shaCol.toArray() as string[],
    ...(viewCol ? { view: Array.from(viewCol.toArray() as Int16Array) } : {}),
    codes,
  };
  if (opts.verify !== false && rowsChecksum(rows, stored) !== checksum) throw new CorruptShardError(shard, 'its checksum does not match its contents');
  return { rows, key: meta.get(META.key) ?? '', spec, engine: meta.get(META.engine) ?? '' };
}

function readCodes(col: Vector, count: number, shard: string): { stored: Uint8Array; codes: Float32Array } {
  const parts = col.data.map((d) => d.children[0].values as Float32Array | Uint16Array);
  const half = parts[0] instanceof Uint16Array;
  const total = parts.reduce((n, p) => n + p.length, 0);
  if (total !== count) throw new CorruptShardError(shard, `expected ${count} code values, found ${total}`);
  const stored = half ? new Uint16Array(total) : new Float32Array(total);
  let offset = 0;
  for (const p of parts) {
    stored.set(p as never, offset);
    offset += p.length;
  }
  const codes = half ? fromFloat16(stored as Uint16Array) : (stored as Float32Array);
  return { stored: new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength), codes };
}

function toFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = util.float64ToUint16(values[i]);
  return out;
}

function fromFloat16(values: Uint16Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = util.uint16ToFloat64(values[i]);
  return out;
}
