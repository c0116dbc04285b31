/** File helpers shared by the weight readers and writers. */
import type { FileHandle } from 'node:fs/promises';

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
