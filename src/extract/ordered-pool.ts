/**
 * Maps items through an async function with bounded concurrency (p-queue), yielding results
 * in input order. At most `window` results are in flight or waiting, so memory stays bounded
 * however long the input is, and output order (hence row order) is deterministic.
 */
import PQueue from 'p-queue';

export async function* orderedPool<T, R>(
  items: Iterable<T>,
  fn: (item: T) => Promise<R>,
  opts: { concurrency: number; window?: number },
): AsyncGenerator<R> {
  const queue = new PQueue({ concurrency: opts.concurrency });
  const window = Math.max(opts.window ?? opts.concurrency * 2, 1);
  const inFlight: Promise<R>[] = [];
  const iterator = items[Symbol.iterator]();
  const refill = () => {
    while (inFlight.length < window) {
      const next = iterator.next();
      if (next.done) return;
      const task = queue.add(() => fn(next.value), { throwOnTimeout: true }) as Promise<R>;
      // The rejection is observed when its turn comes; until then, keep Node from calling it unhandled.
      task.catch(() => undefined);
      inFlight.push(task);
    }
  };
  refill();
  while (inFlight.length > 0) {
    const result = await inFlight.shift()!;
    refill();
    yield result;
  }
}
