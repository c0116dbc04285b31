import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { asFileSystemError, errnoCode } from './errors.ts';

/**
 * Writes a file so that readers see either the old content or all of the new: `fill` writes a
 * temporary file in the same folder (so the rename stays on one file system and is atomic),
 * which is fsynced and renamed over `dest`. A crash or an error never leaves a partial file
 * under the real name; temporary names end in `.tmp`, so a later run can sweep them up.
 */
export async function writeAtomically(dest: string, fill: (tmpPath: string) => Promise<void>): Promise<void> {
  await ensureDir(path.dirname(dest));
  const tmp = tempName(path.dirname(dest), path.basename(dest));
  try {
    await fill(tmp);
    await fsyncPath(tmp);
    await rename(tmp, dest);
  } catch (error) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw asFileSystemError(dest, error);
  }
}

/**
 * mkdir -p with the real reason on failure: a recursive mkdir reports ENOENT on a read-only
 * file system, so the first missing folder is created alone to learn why (EROFS, EACCES).
 */
export async function ensureDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw asFileSystemError(dir, error);
    let missing = path.resolve(dir);
    while (!existsSync(path.dirname(missing)) && path.dirname(missing) !== missing) missing = path.dirname(missing);
    try {
      await mkdir(missing);
    } catch (inner) {
      throw asFileSystemError(missing, inner);
    }
    throw asFileSystemError(dir, error);
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

/** Flushes a folder's entries (the names of files just renamed into it) to disk. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A name for a temporary file or folder in `dir` that sweepDeadWritersTemps recognises. */
export function tempName(dir: string, base: string): string {
  return path.join(dir, `${base}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Deletes the temporary files and folders in `dir` left by writers that were killed mid-write:
 * those whose process (the pid in the name) no longer runs on this host. Safe without a lock,
 * since a live writer's files are never touched.
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
    return pid > 0 && !isAlive(pid);
  });
  await Promise.all(dead.map((name) => rm(path.join(dir, name), { recursive: true, force: true })));
  return dead;
}

/**
 * Writes a whole folder (a head, an export) so that readers see the old folder or all of the
 * new one: `fill` writes into a staging folder beside `dest`, which then takes its place by
 * rename. Replacing an existing folder takes two renames (old aside, new in); a crash between
 * them leaves the old folder aside, and the next writer or reader puts it back
 * (restoreFolder). A failed `fill` leaves `dest` as it was.
 */
export async function replaceFolder(dest: string, fill: (staging: string) => Promise<void>): Promise<void> {
  const abs = path.resolve(dest);
  await restoreFolder(abs);
  const tag = `${process.pid}.${randomBytes(4).toString('hex')}`;
  const staging = `${abs}.staging.${tag}.tmp`;
  try {
    await ensureDir(staging);
    await fill(staging);
    await fsyncDir(staging);
    if (existsSync(abs)) {
      const aside = `${abs}.old.${tag}.tmp`;
      await rename(abs, aside);
      await rename(staging, abs);
      await rm(aside, { recursive: true, force: true });
    } else {
      await rename(staging, abs);
    }
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw asFileSystemError(dest, error);
  }
}

/**
 * Cleans up after a replaceFolder that was killed: a staging folder of a dead process is
 * deleted, and an old folder set aside is put back if nothing took its place.
 */
export async function restoreFolder(dest: string): Promise<void> {
  const abs = path.resolve(dest);
  const parent = path.dirname(abs);
  const base = path.basename(abs);
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return;
  }
  for (const name of names) {
    const m = name.startsWith(`${base}.`) ? name.slice(base.length).match(/^\.(staging|old)\.(\d+)\.[0-9a-f]{8}\.tmp$/) : null;
    if (!m || isAlive(Number(m[2]))) continue;
    const leftover = path.join(parent, name);
    if (m[1] === 'old' && !existsSync(abs)) await rename(leftover, abs).catch(() => undefined);
    else await rm(leftover, { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
