/**
 * The safetensors format (https://github.com/huggingface/safetensors), read and written by hand:
 * an 8-byte little-endian header length N, N bytes of JSON, then the raw tensor data.
 * The JSON maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative
 * to the data section) and may hold a `__metadata__` object of string → string.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { WeightsError, type WeightSource, type WeightTensor } from '../weights.ts';
import { writeAtomically } from '../../util/atomic-file.ts';
import { describeFsError, readFully } from './files.ts';
import { decodeBFloat16, decodeFloat16, decodeFloat32, decodeFloat64, elementCount, isShape } from './dtypes.ts';

export interface SafetensorsFile {
  /** Convention 'canonical': tensors as stored, `<layer>.weight` OIHW / [out, in]. */
  readonly source: WeightSource;
  readonly metadata: Record<string, string>;
}

const DECODERS = {
  F32: { bytes: 4, decode: decodeFloat32 },
  F16: { bytes: 2, decode: decodeFloat16 },
  BF16: { bytes: 2, decode: decodeBFloat16 },
  F64: { bytes: 8, decode: decodeFloat64 },
} as const satisfies Record<string, { bytes: number; decode: (bytes: Uint8Array) => Float32Array }>;

type Dtype = keyof typeof DECODERS;

interface TensorEntry {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

/** The reference implementation refuses headers above 100 MB; so does this one, before allocating. */
const MAX_HEADER_BYTES = 100_000_000;

export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  const fail = (reason: string) => new WeightsError(`${path}: ${reason}`);
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw fail(`cannot open safetensors file: ${describeFsError(error)}`);
  }
  try {
    const fileSize = (await handle.stat()).size;
    if (fileSize < 8) throw fail(`truncated safetensors file: ${fileSize} bytes, less than its 8-byte header length`);
    const read = async (position: number, length: number): Promise<Buffer> => {
      // A buffer of its own, not a slice of Node's shared pool: float32 tensors keep it as storage.
      const buffer = Buffer.allocUnsafeSlow(length);
      const got = await readFully(handle, buffer, position);
      // Sizes were checked against fstat, so this only happens if the file shrinks while being read.
      if (got < length) throw fail(`the file ended at byte ${position + got} while being read`);
      return buffer;
    };
    const headerBytes = Number((await read(0, 8)).readBigUInt64LE(0));
    if (headerBytes > MAX_HEADER_BYTES) {
      throw fail(`not a safetensors file: its first 8 bytes give a header length of ${headerBytes} bytes`);
    }
    if (8 + headerBytes > fileSize) {
      throw fail(
        `truncated safetensors file: the header needs ${headerBytes} bytes after byte 8, the file has ${fileSize} bytes`,
      );
    }
    const header = parseHeader((await read(8, headerBytes)).toString('utf8'), fail);
    const dataStart = 8 + headerBytes;
    const dataBytes = fileSize - dataStart;
    const tensors = new Map<string, WeightTensor>();
    for (const entry of header.entries) {
      if (entry.end > dataBytes) {
        throw fail(
          `tensor '${entry.name}' has data_offsets [${entry.begin}, ${entry.end}] past the end of the data ` +
            `(${dataBytes} bytes): the file is truncated or corrupt`,
        );
      }
      const bytes = await read(dataStart + entry.begin, entry.end - entry.begin);
      tensors.set(entry.name, { shape: entry.shape, data: DECODERS[entry.dtype].decode(bytes) });
    }
    return { source: { convention: 'canonical', tensors, files: [path] }, metadata: header.metadata };
  } catch (error) {
    if (error instanceof WeightsError) throw error;
    throw fail(`read failed: ${describeFsError(error)}`);
  } finally {
    await handle.close();
  }
}

function parseHeader(
  text: string,
  fail: (reason: string) => WeightsError,
): { entries: TensorEntry[]; metadata: Record<string, string> } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw fail(`bad safetensors header: not JSON (${(error as Error).message})`);
  }
  if (!isRecord(json)) throw fail('bad safetensors header: not a JSON object');
  const metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isRecord(value)) throw fail('bad safetensors header: __metadata__ is not an object');
      // The format says string → string; other writers' numbers are kept as their JSON text.
      for (const [k, v] of Object.entries(value)) metadata[k] = typeof v === 'string' ? v : JSON.stringify(v);
      continue;
    }
    entries.push(parseEntry(name, value, fail));
  }
  return { entries, metadata };
}

function parseEntry(name: string, value: unknown, fail: (reason: string) => WeightsError): TensorEntry {
  if (!isRecord(value)) throw fail(`bad safetensors header: entry '${name}' is not an object`);
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string' || !(dtype in DECODERS)) {
    throw fail(`tensor '${name}' has dtype ${JSON.stringify(dtype)}; supported: ${Object.keys(DECODERS).join(', ')}`);
  }
  if (!isShape(shape)) throw fail(`bad safetensors header: tensor '${name}' has shape ${JSON.stringify(shape)}`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw fail(`bad safetensors header: tensor '${name}' has data_offsets ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  const expected = elementCount(shape) * DECODERS[dtype as Dtype].bytes;
  if (end - begin !== expected) {
    throw fail(
      `tensor '${name}' has data_offsets [${begin}, ${end}] (${end - begin} bytes), ` +
        `but ${dtype} [${shape}] needs ${expected} bytes`,
    );
  }
  return { name, dtype: dtype as Dtype, shape, begin, end };
}

/**
 * Writes float32 tensors in map order, with the header padded to 8 bytes as the reference
 * writer does so that readers that map the file can view the data in place.
 */
export async function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, WeightTensor>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__') throw new WeightsError(`${path}: '__metadata__' cannot name a tensor`);
    if (t.data.length !== elementCount(t.shape)) {
      throw new WeightsError(`${path}: tensor '${name}' has ${t.data.length} values for shape [${t.shape}]`);
    }
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(jsonBytes.length));

  await writeAtomically(path, async (tmp) => {
    const handle = await open(tmp, 'w');
    try {
      await handle.write(prefix);
      await handle.write(jsonBytes);
      for (const t of tensors.values()) {
        await handle.write(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      }
    } finally {
      await handle.close();
    }
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
