/** A mistake in how the tool was called; printed as one line, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * The disk (or quota) is full. Everything written before stays intact (writes are atomic), so
 * the fix is to free space and run again, which resumes.
 */
export class DiskFullError extends Error {
  constructor(readonly file: string, cause: unknown) {
    super(`no space left on the disk holding ${file} (${(cause as NodeJS.ErrnoException).code}); what was written before is intact: free some space and run again to resume`, { cause });
    this.name = 'DiskFullError';
  }
}

/** ENOSPC or EDQUOT: a full disk or quota rather than a bug. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * Errors whose message alone tells the user what to fix (bad flags, missing weights, an
 * unknown layer, a failed download). Anything else is a bug and keeps its stack trace.
 */
const USER_ERRORS = new Set(['UsageError', 'WeightsError', 'UnknownLayerError', 'DownloadError', 'CacheLockedError', 'CorruptShardError', 'DecodeError', 'DiskFullError']);

export function isUserError(err: unknown): err is Error {
  return err instanceof Error && USER_ERRORS.has(err.name);
}
