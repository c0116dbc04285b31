/**
 * onnxruntime sessions that run in a worker thread (onnx-session-worker.mjs), so that the event
 * loop stays free while they compute: onnxruntime-node's own run() holds the calling thread for
 * the whole forward pass (see the worker for why that matters).
 *
 * One worker per process hosts every session: booting a worker and loading onnxruntime into it
 * costs about 150 ms, paid once, and started early (warmOnnxWorker) it boots while the caller
 * still prepares its model. An idle worker does not keep the process alive.
 *
 * Inputs are copied once into the message (the caller keeps and reuses its buffers); outputs
 * come back transferred, without a copy.
 */
import { Worker } from 'node:worker_threads';
// Imported for its effect too: the telemetry switch it sets is in the environment the worker copies.
import type ort from '../util/onnxruntime.ts';
import '../util/onnxruntime.ts';

export interface FloatTensor {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

/** What the engines need of a session. */
export interface OnnxRunner {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** One forward pass; resolves to the float32 values of `fetches`, by name. */
  run(feeds: Readonly<Record<string, FloatTensor>>, fetches: readonly string[]): Promise<Record<string, Float32Array>>;
  release(): Promise<void>;
}

export type SessionOptions = ort.InferenceSession.SessionOptions;

/** Requests, each answered by one reply with the same id. */
export type ToWorker =
  | { readonly kind: 'open'; readonly id: number; readonly file: string; readonly options: SessionOptions }
  | { readonly kind: 'run'; readonly id: number; readonly session: number; readonly feeds: Readonly<Record<string, FloatTensor>>; readonly fetches: readonly string[] }
  | { readonly kind: 'release'; readonly id: number; readonly session: number }
  /** Ends the thread from inside, between two messages: never while onnxruntime computes. */
  | { readonly kind: 'exit'; readonly id: number };

export type FromWorker =
  | { readonly kind: 'opened'; readonly id: number; readonly inputNames: string[]; readonly outputNames: string[] }
  | { readonly kind: 'result'; readonly id: number; readonly outputs: Record<string, Float32Array> }
  | { readonly kind: 'released'; readonly id: number }
  | { readonly kind: 'error'; readonly id: number; readonly message: string };

/** Omit, member by member of a union (a plain Omit would merge the members). */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
/** A request before its id is given. */
type Request = WithoutId<ToWorker>;

const WORKER_FILE = new URL('./onnx-session-worker.mjs', import.meta.url);

class SessionHost {
  private readonly worker = new Worker(WORKER_FILE);
  private nextId = 0;
  /** Why the worker is gone, once it is: later requests fail with it instead of waiting forever. */
  private gone: Error | undefined;
  private readonly pending = new Map<number, { resolve: (m: FromWorker) => void; reject: (e: Error) => void }>();

  constructor(private readonly onGone: (host: SessionHost) => void) {
    this.worker.on('message', (message: FromWorker) => this.settle(message));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.once('exit', (code) => this.fail(new Error(`the onnxruntime worker thread exited (code ${code})`)));
    this.worker.unref();
  }

  /** Sends one request; rejects with the worker's message when it answers with an error. */
  request(request: Request, transfer: ArrayBuffer[] = []): Promise<FromWorker> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      // A message to an exited worker is dropped without a word: it would never be answered.
      if (this.gone) return reject(this.gone);
      this.pending.set(id, { resolve, reject });
      // Only a request in flight keeps the process alive.
      if (this.pending.size === 1) this.worker.ref();
      this.worker.postMessage({ ...request, id }, transfer);
    });
  }

  private settle(message: FromWorker): void {
    const waiting = this.pending.get(message.id);
    if (!waiting) return;
    this.pending.delete(message.id);
    if (this.pending.size === 0) this.worker.unref();
    if (message.kind === 'error') waiting.reject(new Error(message.message));
    else waiting.resolve(message);
  }

  /** Called for the worker's 'error' and again for its 'exit'. */
  private fail(err: Error): void {
    this.gone ??= err;
    this.onGone(this);
    for (const { reject } of this.pending.values()) reject(err);
    this.pending.clear();
  }

  /**
   * Ends the worker; what is pending rejects with `reason`. Not worker.terminate(): that can
   * tear the thread down while onnxruntime's native code is still running in it, which was seen
   * to crash the process; the worker's own exit waits for the forward pass in progress.
   */
  async stop(reason: Error): Promise<void> {
    if (this.gone) return;
    const exited = new Promise((resolve) => this.worker.once('exit', resolve));
    this.fail(reason);
    this.worker.postMessage({ kind: 'exit', id: this.nextId++ } satisfies ToWorker);
    await exited;
  }
}

let shared: SessionHost | undefined;

function host(): SessionHost {
  // Only the host that died is forgotten: its 'exit' may come after a new one has started.
  shared ??= new SessionHost((gone) => {
    if (shared === gone) shared = undefined;
  });
  return shared;
}

/** Boots the worker now, so that it is ready by the time a session is opened. */
export function warmOnnxWorker(): void {
  host();
}

/**
 * Ends the worker and every session in it: what is pending rejects at once, and so does any
 * later run of those sessions; the thread itself ends when the forward pass in progress returns.
 * The next session opened boots a new worker. For a caller that wants onnxruntime's memory back.
 */
export async function stopOnnxWorker(): Promise<void> {
  const current = shared;
  if (current) await current.stop(new Error('the onnxruntime worker thread was stopped'));
}

/** Opens a session in the worker; rejects with onnxruntime's message when it cannot start. */
export async function startWorkerSession(file: string, options: SessionOptions): Promise<OnnxRunner> {
  const owner = host();
  const opened = await owner.request({ kind: 'open', file, options });
  if (opened.kind !== 'opened') throw new Error(`the onnxruntime worker answered '${opened.kind}' to open`);
  const session = opened.id;
  let released = false;
  return {
    inputNames: opened.inputNames,
    outputNames: opened.outputNames,
    async run(feeds, fetches) {
      if (released) throw new Error('the onnxruntime session was released');
      // Copies of exactly the fed values, handed over whole (a subarray would clone its whole buffer).
      const copies = Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, { data: t.data.slice(), dims: [...t.dims] }]));
      const reply = await owner.request({ kind: 'run', session, feeds: copies, fetches: [...fetches] }, Object.values(copies).map((c) => c.data.buffer));
      if (reply.kind !== 'result') throw new Error(`the onnxruntime worker answered '${reply.kind}' to run`);
      return reply.outputs;
    },
    async release() {
      if (released) return;
      released = true;
      // A worker that died has freed its sessions with it.
      if (shared === owner) await owner.request({ kind: 'release', session });
    },
  };
}
