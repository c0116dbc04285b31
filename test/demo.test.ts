/** `bottleneck demo` as a new user runs it: with real weights it goes end to end; without, it says what to get. */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { makeDataset } from './helpers/make-dataset.ts';
import { REPO_ROOT } from './helpers/shared.ts';

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
  it('runs offline, with an empty weights folder, on the built-in squeezenet1_1, and says why', async () => {
    const r = await demo({ ...OFFLINE, BOTTLENECK_WEIGHTS: path.join(tmp, 'no-weights') }, ['--epochs', '10']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/VGG16's weights could not be downloaded .*; using squeezenet1_1, which is built in/);
    expect(r.stderr).toMatch(/weights .*assets\/weights\/squeezenet1_1\.safetensors/);
    const accuracy = Number(r.stdout.match(/accuracy (\d+\.\d+)%/)![1]);
    // Three shapes a pretrained CNN tells apart at a glance; chance is 33%.
    expect(accuracy).toBeGreaterThan(90);
    expect(r.stdout).toMatch(/test split of squeezenet1_1-fire9_concat-avg-/);
    expect(existsSync(path.join(tmp, 'out', 'report', 'report.html'))).toBe(true);
    expect(existsSync(path.join(tmp, 'out', 'head', 'head.json'))).toBe(true);
  }, 180_000);

  it('works whatever else the cache holds: another dataset in the same key', async () => {
    const other = path.join(tmp, 'other');
    await makeDataset(other, { classes: ['x', 'y'], perClass: 4 });
    const extracted = await runCli(['extract', other, '--backbone', 'squeezenet1_1', '--cache', path.join(tmp, 'cache')], { env: OFFLINE });
    expect(extracted.code, extracted.stderr).toBe(0);
    const r = await demo({ ...OFFLINE, BOTTLENECK_WEIGHTS: path.join(tmp, 'no-weights') }, ['--epochs', '5']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/3 classes/);
  }, 180_000);
});
