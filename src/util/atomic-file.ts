import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DiskFullError, isDiskFull } from './errors.ts';

/**
 * Writes a file so that readers see either the old content or all of the new: `fill` writes a
 * temporary file in the same folder (so the rename stays on one file system and is atomic),
 * which is fsynced and renamed over `dest`. A crash or an error never leaves a partial file
 * under the real name; temporary names end in `.tmp`, so a later run can sweep them up.
 */
export async function writeAtomically(dest: string, fill: (tmpPath: string) => Promise<void>): Promise<void> {
  try {
    await mkdir(path.dirname(dest), { recursive: true });
  } catch (error) {
    throw isDiskFull(error) ? new DiskFullError(dest, error) : error;
  }
  const tmp = `${dest}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await fill(tmp);
    await fsyncPath(tmp);
    await rename(tmp, dest);
  } catch (error) {
    await rm(tmp, { force: true });
    throw isDiskFull(error) ? new DiskFullError(dest, error) : error;
  }
}

export async function writeFileAtomic(dest: string, data: Uint8Array | string): Promise<void> {
  await writeAtomically(dest, (tmp) => writeFile(tmp, data));
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
