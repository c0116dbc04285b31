/**
 * One extract at a time per cache key: a lock file created with O_EXCL. A lock left by a
 * killed process on this host is recognised (its pid is gone) and taken over.
 */
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DiskFullError, isDiskFull } from '../util/errors.ts';

export class CacheLockedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CacheLockedError';
  }
}

interface LockOwner {
  readonly pid: number;
  readonly host: string;
  readonly since: string;
}

export interface CacheLock {
  release(): Promise<void>;
}

/**
 * `writer` names the lock for one process of a sharded run: the N processes of `--shard K/N`
 * write disjoint shard files into one key, so each needs only its own lock.
 */
export async function acquireCacheLock(dir: string, opts: { waitSeconds?: number; writer?: string } = {}): Promise<CacheLock> {
  const file = path.join(dir, opts.writer ? `.lock-${opts.writer}` : '.lock');
  const me: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString() };
  const deadline = Date.now() + (opts.waitSeconds ?? 0) * 1000;
  for (;;) {
    try {
      await writeFile(file, JSON.stringify(me), { flag: 'wx' });
      return { release: () => rm(file, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        // O_EXCL created the file, so it is ours: an empty lock left by a failed write (a full
        // disk) would make the next run wait for it to look abandoned.
        await rm(file, { force: true });
        throw isDiskFull(err) ? new DiskFullError(file, err) : err;
      }
    }
    const owner = await readOwner(file);
    if (owner ? isStale(owner) : await isAbandoned(file)) {
      // Renaming is atomic: of two processes finding the same stale lock, one moves it away
      // and both then race fairly on O_EXCL.
      await rename(file, `${file}.stale.${process.pid}`).then(
        () => rm(`${file}.stale.${process.pid}`, { force: true }),
        () => undefined,
      );
      continue;
    }
    if (Date.now() >= deadline) {
      const who = owner ? `process ${owner.pid} on ${owner.host} (since ${owner.since})` : 'another process';
      throw new CacheLockedError(
        `cache ${dir} is being written by ${who}; wait for it to finish (or pass --wait SECONDS), or delete ${file} if that process is gone`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function readOwner(file: string): Promise<LockOwner | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as LockOwner;
  } catch {
    return undefined; // vanished or half-written: retry
  }
}

/** An unreadable lock file older than a few seconds was left by a process killed mid-write. */
async function isAbandoned(file: string): Promise<boolean> {
  try {
    return Date.now() - (await stat(file)).mtimeMs > 5000;
  } catch {
    return false;
  }
}

function isStale(owner: LockOwner): boolean {
  if (owner.host !== os.hostname()) return false; // cannot see other hosts' processes
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
