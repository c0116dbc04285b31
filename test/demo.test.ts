/** `bottleneck demo` as a new user runs it: with real weights it goes end to end; without, it says what to get. */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasSharedModels, NEEDS_SHARED_MODELS, REPO_ROOT, SHARED_MODELS } from './helpers/shared.ts';

const run = promisify(execFile);
const BIN = path.join(REPO_ROOT, 'bin', 'bottleneck');

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-demo-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

async function demo(env: NodeJS.ProcessEnv, extra: string[] = []) {
  const args = ['demo', '--data', path.join(tmp, 'shapes'), '--out', path.join(tmp, 'out'), '--cache', path.join(tmp, 'cache'), ...extra];
  try {
    const { stdout, stderr } = await run(BIN, args, { env: { ...process.env, ...env }, cwd: tmp, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

// Keras' download host, unreachable: a closed local port, so the test never leaves the machine.
const OFFLINE = { BOTTLENECK_WEIGHTS_URL: 'http://127.0.0.1:9' };

describe('bottleneck demo', () => {
  it('says plainly what to download or set when there are no weights', async () => {
    const r = await demo({ ...OFFLINE, BOTTLENECK_WEIGHTS: path.join(tmp, 'no-weights') });
    expect(r.code).toBe(2);
    const message = r.stderr.trim().split('\n').pop()!;
    expect(message).toMatch(/^bottleneck: the demo needs pretrained weights and found none/);
    expect(message).toMatch(/vgg16_weights_tf_dim_ordering_tf_kernels_notop\.h5/);
    expect(message).toMatch(/BOTTLENECK_WEIGHTS/);
  });

  it.skipIf(!hasSharedModels)(`runs extract → train-head → evaluate on the generated shapes${NEEDS_SHARED_MODELS}`, async () => {
    const r = await demo({ ...OFFLINE, BOTTLENECK_WEIGHTS: SHARED_MODELS }, ['--epochs', '10']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/using squeezenet1_1 instead/);
    const accuracy = Number(r.stdout.match(/accuracy (\d+\.\d+)%/)![1]);
    // Three shapes a pretrained CNN tells apart at a glance; chance is 33%.
    expect(accuracy).toBeGreaterThan(90);
    expect(r.stdout).toMatch(/test split of squeezenet1_1-fire9_concat-avg-/);
    expect(existsSync(path.join(tmp, 'out', 'report', 'report.html'))).toBe(true);
    expect(existsSync(path.join(tmp, 'out', 'head', 'head.json'))).toBe(true);
  }, 180_000);
});
