/**
 * Who may write a cache key, and when readers may read it. Lock files are created with O_EXCL;
 * one left by a killed process on this host is recognised (its pid is gone) and taken over.
 *
 * - A plain writer (extract, repair, fine-tune) holds `.lock`, which excludes every other writer.
 * - One process of a sharded run (`--shard K/N`) holds `.lock-sKofN`. The N processes of one run
 *   write disjoint shard files, so they exclude only a plain writer and processes that split the
 *   data another way (another N), whose parts would overlap theirs.
 * Each writer creates its own lock first and then looks for conflicting ones; of two writers
 * starting together at least one sees the other and backs off, so two conflicting writers
 * never both proceed.
 * - Readers (train-head, evaluate, sweep, export) wait for, or refuse, a key being written.
 */
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { asFileSystemError, UserError } from '../util/errors.ts';

export class CacheLockedError extends UserError {}

const ownerSchema = z.object({ pid: z.number().int(), host: z.string(), since: z.string(), command: z.string().optional() });
type LockOwner = z.infer<typeof ownerSchema>;

export interface CacheLock {
  release(): Promise<void>;
}

export interface LockOptions {
  /** Seconds to wait for a conflicting writer to finish before giving up. */
  readonly waitSeconds?: number;
  /** `sKofN` for one process of a sharded run; absent for a plain writer. */
  readonly writer?: string;
}

const PLAIN = '.lock';
const POLL_MS = 500;

export async function acquireCacheLock(dir: string, opts: LockOptions = {}): Promise<CacheLock> {
  const name = opts.writer ? `${PLAIN}-${opts.writer}` : PLAIN;
  const file = path.join(dir, name);
  const deadline = Date.now() + (opts.waitSeconds ?? 0) * 1000;
  for (;;) {
    const mine = await tryCreate(file);
    if (mine) {
      const conflict = (await liveLocks(dir)).find((l) => l.name !== name && conflicts(name, l.name));
      if (!conflict) return { release: () => rm(file, { force: true }) };
      await rm(file, { force: true });
      if (Date.now() >= deadline) throw lockedError(dir, conflict);
    } else {
      const owner = (await liveLocks(dir)).find((l) => l.name === name);
      if (owner && Date.now() >= deadline) throw lockedError(dir, owner);
    }
    await sleep(POLL_MS);
  }
}

/** Readers: returns once no writer holds the key, or throws after `waitSeconds`. */
export async function waitForWriters(dir: string, waitSeconds = 0): Promise<void> {
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    const writers = await liveLocks(dir);
    if (writers.length === 0) return;
    if (Date.now() >= deadline) {
      throw new CacheLockedError(`${dir} is being written by ${describe(writers[0])}: wait for it to finish, or pass --wait SECONDS to wait here`);
    }
    await sleep(POLL_MS);
  }
}

/** Whether a writer holding lock `a` must not run beside one holding lock `b`. */
function conflicts(a: string, b: string): boolean {
  if (a === PLAIN || b === PLAIN) return true;
  return partsOf(a) !== partsOf(b);
}

function partsOf(lockName: string): string {
  return lockName.match(/of(\d+)$/)?.[1] ?? lockName;
}

interface LiveLock {
  readonly name: string;
  readonly file: string;
  readonly owner: LockOwner | undefined;
}

/** The key's lock files whose owner still runs; stale ones are moved away as they are found. */
async function liveLocks(dir: string): Promise<LiveLock[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n === PLAIN || /^\.lock-s\d+of\d+$/.test(n));
  } catch {
    return [];
  }
  const live: LiveLock[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const owner = await readOwner(file);
    if (owner ? isStale(owner) : await isAbandoned(file)) await removeStale(file);
    else live.push({ name, file, owner });
  }
  return live;
}

/** O_EXCL creation: true if the lock is now ours, false if someone else holds it. */
async function tryCreate(file: string): Promise<boolean> {
  const me: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), command: process.argv.slice(2, 3).join(' ') || undefined };
  try {
    await writeFile(file, JSON.stringify(me), { flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    // O_EXCL may have created the file before the write failed (a full disk): an empty lock
    // would make the next run wait for it to look abandoned.
    await rm(file, { force: true }).catch(() => undefined);
    throw asFileSystemError(file, err);
  }
}

/** Renaming is atomic: of two processes finding the same stale lock, one moves it away. */
async function removeStale(file: string): Promise<void> {
  const aside = `${file}.stale.${process.pid}`;
  await rename(file, aside).then(
    () => rm(aside, { force: true }),
    () => undefined,
  );
}

async function readOwner(file: string): Promise<LockOwner | undefined> {
  try {
    const parsed = ownerSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // vanished or half-written
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
  if (owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function describe(lock: LiveLock): string {
  const { owner } = lock;
  const what = owner?.command ? `\`bottleneck ${owner.command}\`` : 'another process';
  return owner ? `${what} (process ${owner.pid} on ${owner.host}, since ${owner.since})` : `${what} (${lock.file})`;
}

function lockedError(dir: string, lock: LiveLock): CacheLockedError {
  return new CacheLockedError(
    `${dir} is being written by ${describe(lock)}; wait for it to finish (or pass --wait SECONDS), or delete ${lock.file} if that process is gone`,
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
