/**
 * The package as users get it: `npm pack`, installed into an empty project, gives a working
 * `bottleneck` command and a typed ESM API, and none of the test-only dependencies. The API
 * example is the README's own, run as written.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/shared.ts';

const run = promisify(execFile);
let tmp: string;
let project: string;

/** No network beyond the registry: onnxruntime-node's CUDA download is skipped, as the README says. */
const ENV = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_fund: 'false', npm_config_audit: 'false' };

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-package-'));
  await run('npm', ['pack', '--pack-destination', tmp], { cwd: REPO_ROOT, env: ENV, maxBuffer: 64 << 20 });
  const [tarball] = (await readdir(tmp)).filter((f) => f.endsWith('.tgz'));
  project = path.join(tmp, 'project');
  await mkdir(project);
  await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'uses-bottleneck', private: true, type: 'module' }));
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', path.join(tmp, tarball)], { cwd: project, env: ENV, maxBuffer: 64 << 20 });
}, 300_000);
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('the packed package, installed into an empty project', () => {
  it('ships compiled JavaScript, types and the built-in weights, and no test-only dependency', async () => {
    const installed = path.join(project, 'node_modules', 'bottleneck');
    expect(existsSync(path.join(installed, 'dist', 'cli.js'))).toBe(true);
    expect(existsSync(path.join(installed, 'dist', 'index.d.ts'))).toBe(true);
    expect(existsSync(path.join(installed, 'assets', 'weights', 'squeezenet1_1.safetensors'))).toBe(true);
    expect(existsSync(path.join(installed, 'src'))).toBe(false);
    const modules = await readdir(path.join(project, 'node_modules'));
    for (const dev of ['tsx', 'vitest', 'typescript', 'playwright-core', '@duckdb']) expect(modules, dev).not.toContain(dev);
  });

  it('`bottleneck demo` runs offline with no weights anywhere', async () => {
    const { stdout, stderr } = await run(path.join(project, 'node_modules', '.bin', 'bottleneck'), ['demo', '--epochs', '5'], {
      cwd: project,
      env: { ...ENV, BOTTLENECK_WEIGHTS: path.join(tmp, 'no-weights'), BOTTLENECK_WEIGHTS_URL: 'http://127.0.0.1:9' },
      maxBuffer: 64 << 20,
    });
    expect(stderr).toMatch(/using squeezenet1_1, which is built in/);
    expect(stdout).toMatch(/demo done in/);
  }, 120_000);

  it("the README's API example type-checks against the shipped types and runs as written", async () => {
    const readme = await readFile(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const example = readme.match(/<!-- api-example -->\s*```ts\n([\s\S]*?)```/)?.[1];
    expect(example, 'README has an api-example block').toBeTruthy();
    await writeFile(path.join(project, 'example.ts'), example!);
    await writeFile(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: [] }, files: ['example.ts'] }),
    );
    await run(path.join(REPO_ROOT, 'node_modules', '.bin', 'tsc'), ['-p', '.'], { cwd: project });
    // The demo above drew the images the example reads.
    const tsx = pathToFileURL(path.join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs')).href;
    const { stdout } = await run(process.execPath, ['--import', tsx, 'example.ts'], { cwd: project, env: { ...ENV, BOTTLENECK_WEIGHTS: path.join(tmp, 'no-weights') }, maxBuffer: 64 << 20 });
    expect(stdout).toMatch(/test accuracy \d+\.\d%/);
  }, 120_000);
});
