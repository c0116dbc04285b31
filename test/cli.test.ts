/** The CLI as users run it: ./bin/bottleneck, straight from the clone, no build step. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { hasSharedModels, NEEDS_SHARED_MODELS, REPO_ROOT, SHARED_MODELS } from './helpers/shared.ts';

const run = promisify(execFile);
const BIN = path.join(REPO_ROOT, 'bin', 'bottleneck');

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(BIN, args, { env: { ...process.env, ...env }, cwd: REPO_ROOT });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('bottleneck CLI', () => {
  it('prints help for a command', async () => {
    const r = await cli(['predict', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--engine.*auto.*onnx.*tfjs/s);
    expect(r.stdout).toMatch(/--device/);
  });

  it('fails in one line with exit code 2 on a mistake', async () => {
    const r = await cli(['predict', '--imagenet', '--backbone', 'resnet9000', 'README.md']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^bottleneck: unknown backbone 'resnet9000'/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('says what to put where when VGG16 weights are missing and downloads are off', async () => {
    const r = await cli(['predict', '--imagenet', 'README.md'], { BOTTLENECK_WEIGHTS: '/nonexistent', BOTTLENECK_WEIGHTS_URL: 'http://127.0.0.1:9' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/vgg16_weights_tf_dim_ordering_tf_kernels\.h5.*\/nonexistent.*md5 64373286793e3c8b2b4e3219cbf3544b/s);
  });

  it.skipIf(!hasSharedModels)(`classifies a photo with a real backbone${NEEDS_SHARED_MODELS}`, async () => {
    const photo = path.join(SHARED_MODELS, 'tinyvgg', 'img', 'panda_1.jpeg');
    const r = await cli(['predict', '--imagenet', '--backbone', 'googlenet', '--json', photo], { BOTTLENECK_WEIGHTS: SHARED_MODELS });
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { file: string; top: { label: string; probability: number }[] };
    expect(result.top).toHaveLength(5);
    expect(result.top[0].label).toBe('lesser panda');
  });
});

describe('bottleneck extract CLI', () => {
  it('gives a one-line error and exit code 2 for a missing folder and an unknown layer', async () => {
    const missing = await cli(['extract', '/nonexistent/data', '--backbone', 'tiny-vgg-random']);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim()).toBe('bottleneck: /nonexistent/data: no such folder or manifest');
    const { mkdtemp } = await import('node:fs/promises');
    const { makeDataset } = await import('./helpers/make-dataset.ts');
    const data = await mkdtemp(path.join((await import('node:os')).tmpdir(), 'bottleneck-cli-'));
    await makeDataset(data, { classes: ['a', 'b'], perClass: 1 });
    const layer = await cli(['extract', data, '--backbone', 'tiny-vgg-random', '--layer', 'block7_pool', '--cache', path.join(data, 'cache')]);
    expect(layer.code).toBe(2);
    expect(layer.stderr.trim()).toMatch(/^bottleneck: unknown layer 'block7_pool' in tiny-vgg-random; layers are: .*block2_pool/);
    expect(layer.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('warns and exits 0 on a bad image, and exits 1 with --strict', async () => {
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const { makeDataset } = await import('./helpers/make-dataset.ts');
    const data = await mkdtemp(path.join((await import('node:os')).tmpdir(), 'bottleneck-cli-'));
    await makeDataset(data, { classes: ['a', 'b'], perClass: 2 });
    await writeFile(path.join(data, 'a', 'broken.jpg'), 'not a jpeg');
    const args = ['extract', data, '--backbone', 'tiny-vgg-random', '--cache', path.join(data, 'cache'), '--json'];
    const lenient = await cli(args);
    expect(lenient.code).toBe(0);
    const summary = JSON.parse(lenient.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
    expect(summary).toMatchObject({ event: 'summary', images: 5, new: 4, failed: 1 });
    expect(summary.key).toMatch(/^tiny-vgg-random-block2_pool-[0-9a-f]{16}$/);
    const strict = await cli([...args, '--strict']);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toMatch(/broken\.jpg/);
  });
});
