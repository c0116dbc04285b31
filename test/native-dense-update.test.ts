/**
 * The native head update's two fallbacks: a build that cannot compile says so in one line and
 * leaves install working (and any earlier build in place); BOTTLENECK_NATIVE=0 makes the trainer
 * take its ONNX-only path. (Its arithmetic is tested in onnx-trainer.test.ts, both paths.)
 */
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { nativeDenseUpdateStatus, nativeKernelUpdater } from '../src/train-head/native-dense-update.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const ADDON = path.join(ROOT, 'build', 'native', 'dense_update.node');

const loaded = nativeDenseUpdateStatus().loaded || process.env.BOTTLENECK_REQUIRE_NATIVE === '1';

describe('native head update', () => {
  it.skipIf(!loaded)('flushes subnormal optimizer state inside the kernel, and leaves JavaScript its subnormals', () => {
    const update = nativeKernelUpdater({ kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }, 0.1, 0, 2);
    expect(update).not.toBeNull();
    const [inputs, outputs, n] = [8, 32, 2];
    const x = new Float32Array(n * inputs).fill(1);
    const dz = new Float32Array(n * outputs); // a dead unit everywhere: zero gradient
    const w = new Float32Array(inputs * outputs).fill(0.5);
    const m = new Float32Array(inputs * outputs).fill(2 ** -140); // subnormal, as a long-decayed m is
    const v = new Float32Array(inputs * outputs).fill(1e-8);
    update!(x, n, dz, w, [m, v], inputs, outputs, { lr: 1e-3, eps: 1e-7 });
    // Without FTZ, 0.9 × 2^-140 stays a subnormal; with it, zero.
    expect(Array.from(new Set(m))).toEqual([0]);
    const tiny = (a: number, b: number) => a * b;
    expect(tiny(Number.MIN_VALUE, 1)).toBe(Number.MIN_VALUE);
    expect(Math.fround(2 ** -140) * 0.5).toBe(2 ** -141);
  });

  it('a build without a working compiler says why in one line, exits 0 and keeps an earlier build', async () => {
    const before = existsSync(ADDON) ? statSync(ADDON).mtimeMs : null;
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'scripts', 'build-native.mjs')], {
      env: { ...process.env, CC: path.join(ROOT, 'no-such-compiler') },
    });
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^bottleneck: native head update not built \(.*no-such-compiler.*\); train-head uses its ONNX-only path$/);
    expect(stderr).toBe('');
    expect(existsSync(ADDON) ? statSync(ADDON).mtimeMs : null).toBe(before);
  });

  it('BOTTLENECK_NATIVE=0 runs the ONNX-only path, and says why', async () => {
    const script = `
      import { createOnnxTrainer } from ${JSON.stringify(path.join(ROOT, 'src/train-head/onnx-trainer.ts'))};
      import { initHeadParams } from ${JSON.stringify(path.join(ROOT, 'src/train-head/head-init.ts'))};
      const architecture = { inputDim: 8, hidden: [4], dropout: 0, classes: 2 };
      const t = await createOnnxTrainer({ architecture, training: { optimizer: { kind: 'sgd', lr: 0.1, momentum: 0 }, l2: 0 }, initial: initHeadParams(architecture, 1), maxBatch: 2 }, { native: 'on' });
      console.log(t.provider);
      await t.dispose();`;
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: ROOT,
      env: { ...process.env, BOTTLENECK_NATIVE: '0' },
    });
    // It says so where train-head names its trainer.
    expect(stdout.trim()).toBe('onnxruntime cpu, without the native update: BOTTLENECK_NATIVE=0');
  });
});
