import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
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

/**
 * Deletes the temporary files in `dir` left by writers that were killed mid-write: those whose
 * process (the pid in the name) no longer runs on this host. Safe without a lock, since a live
 * writer's files are never touched.
 */
export async function sweepDeadWritersTemps(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const dead = names.filter((name) => {
    const pid = Number(name.match(/\.(\d+)\.[0-9a-f]{8}\.tmp$/)?.[1]);
    if (!pid || pid === process.pid) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  });
  await Promise.all(dead.map((name) => rm(path.join(dir, name), { force: true })));
  return dead;
}
