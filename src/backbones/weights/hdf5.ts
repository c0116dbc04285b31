/**
 * h5wasm, set up once for the Keras h5 reader and writer, plus the few HDF5 operations they
 * share. h5wasm's Node build reads and writes host paths directly (NODERAWFS).
 */
import { open, type FileHandle } from 'node:fs/promises';
import h5wasm from 'h5wasm/node';
import type { Attribute, Dataset, Entity, File as H5File, Group } from 'h5wasm/node';
import { WeightsError } from '../weights.ts';
import { describeFsError, readFully } from './files.ts';

export { h5wasm };
export type { Dataset, Group, H5File };
export type H5Module = Awaited<typeof h5wasm.ready>;

let ready: Promise<H5Module> | undefined;

/**
 * The initialised library. By default HDF5 only prints its error stack and h5wasm carries on
 * with an invalid handle, so failures would surface later as nonsense; the throwing handler
 * turns them into exceptions at the call that failed.
 */
export function loadH5wasm(): Promise<H5Module> {
  ready ??= h5wasm.ready.then((module) => {
    module.activate_throwing_error_handler();
    return module;
  });
  return ready;
}

/** HDF5's H5T_FLOAT class code, as h5wasm reports it in `metadata.type`. */
export const H5T_FLOAT = 1;

/** HDF5's superblock signature, at offset 0 or, after a user block, at 512, 1024, 2048, … */
const SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Checks that `file` exists and is HDF5 before h5wasm sees it, because h5wasm's own errors
 * are a page of library stack trace.
 */
export async function assertHdf5File(file: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw new WeightsError(`${file}: cannot open HDF5 file: ${describeFsError(error)}`);
  }
  try {
    const size = (await handle.stat()).size;
    const probe = Buffer.alloc(SIGNATURE.length);
    for (let offset = 0; offset + SIGNATURE.length <= size; offset = offset === 0 ? 512 : offset * 2) {
      if ((await readFully(handle, probe, offset)) === SIGNATURE.length && probe.equals(SIGNATURE)) return;
    }
    throw new WeightsError(`${file}: not an HDF5 file (no HDF5 signature in its ${size} bytes)`);
  } finally {
    await handle.close();
  }
}

/**
 * The useful line of an h5wasm exception: HDF5's stack lists `in H5Xfoo(): reason` from the
 * API call down to the cause, and the innermost reason is the one a user can act on.
 */
export function hdf5Reason(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const reasons = [...text.matchAll(/ in [\w.]+\(\): (.+)$/gm)].map((m) => m[1].trim());
  return reasons.at(-1) ?? text.split('\n')[0];
}

export function isGroup(entity: Entity | null): entity is Group {
  return entity instanceof h5wasm.Group;
}

export function isDataset(entity: Entity | null): entity is Dataset {
  return entity instanceof h5wasm.Dataset;
}

/** An attribute as a list of strings, whether stored as fixed-length, variable-length or scalar strings. */
export function stringList(attribute: Attribute): string[] | undefined {
  const value = attribute.value;
  const strings = typeof value === 'string' ? [value] : Array.isArray(value) ? value : undefined;
  // Empty lists (a pool layer's weight_names) are often stored as an empty float array.
  if (!strings) return ArrayBuffer.isView(value) && value.byteLength === 0 ? [] : undefined;
  if (!strings.every((s): s is string => typeof s === 'string')) return undefined;
  // Space-padded fixed-length strings keep their padding through h5wasm.
  return attribute.metadata.strpad === 2 ? strings.map((s) => s.trimEnd()) : strings;
}
