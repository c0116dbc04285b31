// @ts-check
/**
 * The worker thread that hosts this process's onnxruntime sessions (see onnx-worker-session.ts).
 *
 * Why a worker: onnxruntime-node's run() computes on the calling thread; its promise only defers
 * the call with setImmediate (microsoft/onnxruntime#19611). On the main thread a forward pass of
 * a few hundred milliseconds stops the whole event loop: no file is read, no decode is started
 * or collected, no code is written, so decoding and the engine took turns instead of overlapping.
 * Where onnxruntime fills every core that gains little (README: measured); it matters where the
 * engine leaves the CPU free, as a GPU provider does.
 *
 * Plain JavaScript, so that it runs unchanged from src/ (under tsx or vitest, whose loaders a
 * worker does not inherit) and from dist/.
 */
import { parentPort } from 'node:worker_threads';
import ort from 'onnxruntime-node';

/** @typedef {import('./onnx-worker-session.ts').ToWorker} ToWorker */
/** @typedef {import('./onnx-worker-session.ts').FromWorker} FromWorker */

const port = parentPort;
if (!port) throw new Error('onnx-session-worker.mjs runs only as a worker thread');

/** @type {Map<number, ort.InferenceSession>} Open sessions, by the id of the request that opened them. */
const sessions = new Map();

/** @param {FromWorker} message @param {ArrayBuffer[]} [transfer] */
const send = (message, transfer = []) => port.postMessage(message, transfer);

port.on('message', (/** @type {ToWorker} */ message) => {
  answer(message).catch((err) => send({ kind: 'error', id: message.id, message: err instanceof Error ? err.message : String(err) }));
});

/** @param {ToWorker} message */
async function answer(message) {
  // In a worker, process.exit ends this thread only.
  if (message.kind === 'exit') process.exit(0);
  if (message.kind === 'open') {
    const session = await ort.InferenceSession.create(message.file, message.options);
    sessions.set(message.id, session);
    send({ kind: 'opened', id: message.id, inputNames: [...session.inputNames], outputNames: [...session.outputNames] });
    return;
  }
  const session = sessions.get(message.session);
  if (!session) throw new Error(`no open onnxruntime session ${message.session}`);
  if (message.kind === 'release') {
    sessions.delete(message.session);
    await session.release();
    send({ kind: 'released', id: message.id });
    return;
  }
  await run(session, message);
}

/**
 * @param {ort.InferenceSession} session
 * @param {Extract<ToWorker, { kind: 'run' }>} message
 */
async function run(session, { id, feeds, fetches }) {
  const inputs = Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, new ort.Tensor('float32', t.data, [...t.dims])]));
  const result = await session.run(inputs);
  /** @type {Record<string, Float32Array>} */
  const outputs = {};
  for (const name of fetches) {
    const data = result[name].data;
    if (!(data instanceof Float32Array)) throw new Error(`output '${name}' is ${result[name].type}, not float32`);
    // Transferred, not copied: a whole buffer of its own moves; a view into a larger one is copied first.
    outputs[name] = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
  }
  send({ kind: 'result', id, outputs }, Object.values(outputs).map((o) => /** @type {ArrayBuffer} */ (o.buffer)));
}
