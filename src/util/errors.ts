/**
 * Errors whose message alone tells the user what to fix: a bad flag, a missing file, weights
 * that are not there, a damaged cache, a full disk. The CLI prints them as one line and exits
 * with `exitCode`; anything else is a bug and keeps its stack trace. Every such error extends
 * UserError, so a new one needs no registration anywhere.
 */
export class UserError extends Error {
  /** 2 for a mistake in how the tool was called or what it was given; 1 for a run that failed. */
  readonly exitCode: 1 | 2 = 2;

  constructor(message: string, options?: { readonly cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A mistake in how the tool was called. */
export class UsageError extends UserError {}

/**
 * The disk (or quota) is full. Everything written before stays intact (writes are atomic), so
 * the fix is to free space and run again, which resumes.
 */
export class DiskFullError extends UserError {
  constructor(
    readonly file: string,
    cause: unknown,
  ) {
    super(`no space left on the disk holding ${file} (${(cause as NodeJS.ErrnoException).code}); what was written before is intact: free some space and run again to resume`, { cause });
  }
}

/**
 * The environment refused a file operation (a read-only cache, a permission, a full disk): the
 * message names the file and what to do, not a stack.
 */
export class FileSystemError extends UserError {
  constructor(
    readonly file: string,
    readonly code: string,
    cause: unknown,
  ) {
    super(`${file}: ${FS_CODES[code] ?? code}`, { cause });
  }
}

const FS_CODES: Readonly<Record<string, string>> = {
  EROFS: 'the file system is read-only (use a writable --cache or --out folder)',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a parent of this path is a file, not a folder',
  EISDIR: 'is a folder, not a file',
  ENOENT: 'does not exist',
  ENAMETOOLONG: 'the path is too long',
  EMFILE: 'too many open files (raise `ulimit -n`)',
  EIO: 'I/O error (failing disk or network mount?)',
};

/** ENOSPC or EDQUOT: a full disk or quota rather than a bug. */
export function isDiskFull(err: unknown): boolean {
  const code = errnoCode(err);
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export function errnoCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * An fs failure on `file` as the user-facing error it is (full disk, read-only folder,
 * permission), or the error itself when it is not about the environment.
 */
export function asFileSystemError(file: string, err: unknown): unknown {
  if (err instanceof UserError) return err;
  if (isDiskFull(err)) return new DiskFullError(file, err);
  const code = errnoCode(err);
  return code && code in FS_CODES ? new FileSystemError(file, code, err) : err;
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError;
}
