/** A mistake in how the tool was called; printed as one line, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * Errors whose message alone tells the user what to fix (bad flags, missing weights, an
 * unknown layer, a failed download). Anything else is a bug and keeps its stack trace.
 */
const USER_ERRORS = new Set(['UsageError', 'WeightsError', 'UnknownLayerError', 'DownloadError', 'CacheLockedError', 'CorruptShardError', 'DecodeError']);

export function isUserError(err: unknown): err is Error {
  return err instanceof Error && USER_ERRORS.has(err.name);
}
