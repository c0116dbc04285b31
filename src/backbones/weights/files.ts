/** File helpers shared by the weight readers and writers. */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/**
 * Writes a file so that `dest` either keeps its old content or holds the complete new one:
 * `fill` writes a temporary file next to it, which is fsynced and renamed over `dest`.
 * A crash or an error never leaves a half-written weights file under the real name.
 */
export async function writeAtomically(dest: string, fill: (tmpPath: string) => Promise<void>): Promise<void> {
  await mkdir(path.dirname(dest), { recursive: true });
  // Same directory, so the rename stays on one filesystem and is atomic.
  const tmp = `${dest}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await fill(tmp);
    await fsyncPath(tmp);
    await rename(tmp, dest);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

/** Flushes a closed file to disk; writers such as h5wasm do not expose their descriptor. */
export async function fsyncPath(file: string): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Fills `target` from `position` on, looping over short reads; returns how many bytes it got,
 * less than `target.length` only at the end of the file.
 */
export async function readFully(handle: FileHandle, target: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await handle.read(target, done, target.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** A short reason for a failed file operation, for messages that already name the file. */
export function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory, not a file';
  return code ?? (error instanceof Error ? error.message : String(error));
}
