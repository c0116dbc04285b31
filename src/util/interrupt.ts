/**
 * How a long command stops when asked to: SIGINT, SIGTERM, or its output pipe closing
 * (`bottleneck extract --json | head -1`). The first asks the stage to stop at its next step
 * (it saves what is done and releases its locks); a second signal exits at once. A closed
 * pipe is not an error: the reader has what it wanted, so the run stops quietly.
 */

export interface Interrupts {
  readonly signal: AbortSignal;
  /** True once stdout or stderr is a closed pipe; nothing more should be printed. */
  readonly pipeClosed: () => boolean;
  dispose(): void;
}

export function listenForInterrupts(onStop?: (why: 'signal' | 'pipe') => void): Interrupts {
  const abort = new AbortController();
  let pipeClosed = false;
  const onSignal = () => {
    if (abort.signal.aborted) process.exit(130);
    onStop?.('signal');
    abort.abort();
  };
  const onPipeError = (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    pipeClosed = true;
    if (!abort.signal.aborted) {
      onStop?.('pipe');
      abort.abort();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.on('error', onPipeError);
  process.stderr.on('error', onPipeError);
  return {
    signal: abort.signal,
    pipeClosed: () => pipeClosed,
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      // Writes still queued may fail after the run; they must not crash the exit.
      process.stdout.off('error', onPipeError);
      process.stderr.off('error', onPipeError);
      process.stdout.on('error', ignorePipe);
      process.stderr.on('error', ignorePipe);
    },
  };
}

function ignorePipe(err: NodeJS.ErrnoException): void {
  if (err.code !== 'EPIPE') throw err;
}
