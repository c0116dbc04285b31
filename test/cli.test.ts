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
    const r = await cli(['predict', '--imagenet', '--backbone', 'resnet9000', 'x.jpg']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^bottleneck: unknown backbone 'resnet9000'/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('says what to put where when VGG16 weights are missing and downloads are off', async () => {
    const r = await cli(['predict', '--imagenet', 'x.jpg'], { BOTTLENECK_WEIGHTS: '/nonexistent', BOTTLENECK_WEIGHTS_URL: 'http://127.0.0.1:9' });
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
