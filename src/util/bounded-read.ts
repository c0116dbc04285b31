/**
 * Reads that never trust a file's reported size. Pseudo-files (/proc, /sys), devices and pipes
 * reached through a symlink or a manifest can report 0 bytes and then stream without end, so
 * every read stops at a hard cap, counted in bytes actually read.
 */
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { asFileSystemError, UserError } from './errors.ts';

/** The file holds more than the cap allows: nothing of it is returned. */
export class FileTooLargeError extends UserError {
  constructor(
    readonly file: string,
    readonly maxBytes: number,
  ) {
    super(`${file}: larger than the ${formatBytes(maxBytes)} this tool reads from such a file`);
  }
}

/** Chunks of 1 MiB: large enough for throughput, small enough that the cap is checked often. */
const CHUNK = 1 << 20;

/**
 * The whole of an open file, or FileTooLargeError once more than `maxBytes` have been read.
 * `signal` stops a long read between chunks.
 */
export async function readHandleCapped(handle: FileHandle, file: string, maxBytes: number, signal?: AbortSignal): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    signal?.throwIfAborted();
    const want = Math.min(CHUNK, maxBytes + 1 - total);
    const chunk = Buffer.allocUnsafe(want);
    const { bytesRead } = await handle.read(chunk, 0, want, null);
    if (bytesRead === 0) break;
    total += bytesRead;
    if (total > maxBytes) throw new FileTooLargeError(file, maxBytes);
    chunks.push(bytesRead === want ? chunk : chunk.subarray(0, bytesRead));
  }
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total);
}

/** A regular file's bytes, at most `maxBytes`; fs failures become one-line errors naming the file. */
export async function readFileCapped(file: string, maxBytes: number): Promise<Buffer> {
  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait forever for a writer.
    handle = await open(file, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
  } catch (err) {
    throw asFileSystemError(file, err);
  }
  try {
    const stat = await handle.stat();
    if (stat.isDirectory()) throw new UserError(`${file}: is a folder, not a file`);
    if (!stat.isFile()) throw new UserError(`${file}: is not a regular file (a FIFO, socket or device)`);
    return await readHandleCapped(handle, file, maxBytes);
  } catch (err) {
    throw asFileSystemError(file, err);
  } finally {
    await handle.close();
  }
}

/** Text files the tool reads whole (manifests, JSON): UTF-8, a leading BOM dropped. */
export async function readTextCapped(file: string, maxBytes: number): Promise<string> {
  return (await readFileCapped(file, maxBytes)).toString('utf8').replace(/^\uFEFF/, '');
}

/** Limits for the kinds of files the tool reads whole. */
export const READ_LIMITS = {
  /** spec.json, head.json, shard lists, preprocessing.json: small by construction. */
  json: 64 << 20,
} as const;

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} bytes`;
}
