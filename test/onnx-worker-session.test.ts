/**
 * onnxruntime sessions in the worker thread: the event loop runs during a forward pass (with
 * onnxruntime-node's own run() it stops), the codes are onnxruntime's in-process ones, failures
 * are onnxruntime's messages, a worker that ends takes its sessions with it (loudly), and an idle
 * worker lets the process exit.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorkerSession, stopOnnxWorker } from '../src/engines/onnx-worker-session.ts';
import { mulberry32 } from '../src/util/numbers.ts';
import { encodeModel, OnnxGraph, valueInfo } from '../src/util/onnx-graph.ts';
import ort from '../src/util/onnxruntime.ts';

const WIDTH = 512;
const LAYERS = 12;
const ROWS = 1024;
const OPTIONS = { executionProviders: ['cpu'], intraOpNumThreads: 2 };

/** MatMul → Relu, twelve times at 512 wide: about 13 GFLOP at 1024 rows, tens of milliseconds or more. */
function matmulChain(): Uint8Array {
  const rand = mulberry32(3);
  const g = new OnnxGraph();
  let x = 'x';
  for (let i = 0; i < LAYERS; i++) {
    const w = g.floats(`w${i}`, { shape: [WIDTH, WIDTH], data: Float32Array.from({ length: WIDTH * WIDTH }, () => (rand() * 2 - 1) / Math.sqrt(WIDTH / 3)) });
    x = g.op('Relu', [g.op('MatMul', [x, w])], i === LAYERS - 1 ? 'y' : undefined);
  }
  return encodeModel(g, 'matmul_chain', [valueInfo('x', ['batch', WIDTH])], [valueInfo('y', ['batch', WIDTH])]);
}

let dir: string;
let model: string;
const input = Float32Array.from({ length: ROWS * WIDTH }, (_, i) => Math.sin(i));

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-worker-'));
  model = path.join(dir, 'chain.onnx');
  await writeFile(model, matmulChain());
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('onnxruntime in the worker thread', () => {
  it('keeps the event loop running during a forward pass, with the in-process codes', async () => {
    const session = await startWorkerSession(model, OPTIONS);
    const feeds = { x: { data: input, dims: [ROWS, WIDTH] } };
    await session.run(feeds, ['y']);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const started = performance.now();
    const { y } = await session.run(feeds, ['y']);
    const ms = performance.now() - started;
    clearInterval(timer);
    // A timer due every millisecond fires through the run (a blocked loop gives 0).
    expect(ticks, `${ticks} ticks in a ${ms.toFixed(0)} ms run`).toBeGreaterThan(Math.min(5, ms / 4));
    expect(input.length, 'the caller keeps its buffer').toBe(ROWS * WIDTH);

    const local = await ort.InferenceSession.create(model, OPTIONS);
    const expected = (await local.run({ x: new ort.Tensor('float32', input, [ROWS, WIDTH]) })).y.data as Float32Array;
    await local.release();
    expect(y.length).toBe(ROWS * WIDTH);
    let worst = 0;
    for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(y[i] - expected[i]));
    expect(worst).toBeLessThan(1e-5);
    expect(y.some((v) => v > 0)).toBe(true);

    await session.release();
    await session.release();
    await expect(session.run(feeds, ['y'])).rejects.toThrow(/released/);
  });

  it("fails with onnxruntime's message, and the worker stays up for the next session", async () => {
    const bad = path.join(dir, 'not-onnx.onnx');
    await writeFile(bad, 'this is not a model');
    await expect(startWorkerSession(bad, OPTIONS)).rejects.toThrow(/protobuf|parse|load/i);
    const session = await startWorkerSession(model, OPTIONS);
    await expect(session.run({ x: { data: new Float32Array(7), dims: [7] } }, ['y'])).rejects.toThrow(/rank|dimension|shape|invalid/i);
    const { y } = await session.run({ x: { data: input.subarray(0, WIDTH), dims: [1, WIDTH] } }, ['y']);
    expect(y.length).toBe(WIDTH);
    await session.release();
  });

  it('a worker that ends mid-run fails that run and every later one of its sessions, and a new session boots a new worker', async () => {
    const session = await startWorkerSession(model, OPTIONS);
    const feeds = { x: { data: input, dims: [ROWS, WIDTH] } };
    const inFlight = expect(session.run(feeds, ['y'])).rejects.toThrow(/worker thread was stopped/);
    await stopOnnxWorker();
    await inFlight;
    // Posting to the exited worker would never be answered: this must reject, not hang.
    await expect(session.run(feeds, ['y'])).rejects.toThrow(/worker thread was stopped/);
    await session.release();

    const next = await startWorkerSession(model, OPTIONS);
    const { y } = await next.run({ x: { data: input.subarray(0, WIDTH), dims: [1, WIDTH] } }, ['y']);
    expect(y.length).toBe(WIDTH);
    await next.release();
  });

  it('an idle worker does not keep the process alive', async () => {
    const script = [
      `import { startWorkerSession } from ${JSON.stringify(path.resolve('src/engines/onnx-worker-session.ts'))};`,
      `const s = await startWorkerSession(${JSON.stringify(model)}, ${JSON.stringify(OPTIONS)});`,
      `const { y } = await s.run({ x: { data: new Float32Array(${WIDTH}), dims: [1, ${WIDTH}] } }, ['y']);`,
      `console.log('ran', y.length);`,
    ].join('\n');
    const file = path.join(dir, 'idle.mts');
    await writeFile(file, script);
    // Never released: the process must still end by itself, well before the timeout.
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', file], { timeout: 30_000 });
    expect(stdout.trim()).toBe(`ran ${WIDTH}`);
  });
});
