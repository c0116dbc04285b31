#!/usr/bin/env node
/**
 * Builds build/native/dense_update.node, the head trainer's fused kernel update (native/), on
 * `npm install`. Optional by design: where there is no C compiler, or the build fails, it says so
 * in one line and exits 0, and train-head keeps its ONNX-only path (a little slower; same weights
 * up to float32 rounding).
 *
 * Not node-gyp: node-gyp fetches Node's full header tarball from nodejs.org unless it is told
 * where headers lie, and many machines reach only the npm registry. A Node-API addon needs only
 * the Node-API headers, which the node-api-headers package brings from npm, and one `cc` line.
 *
 *   BOTTLENECK_NATIVE=0 npm install     # skip the build
 *   CC=clang npm install                # another compiler
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const source = path.join(root, 'native');
const target = path.join(root, 'build', 'native', 'dense_update.node');
const say = (line) => console.log(`bottleneck: ${line}`);

function headers() {
  const require = createRequire(import.meta.url);
  return require('node-api-headers').include_dir;
}

/** Per instruction set: the kernel's name suffix and the flags to build it with. */
function kernels() {
  if (process.arch !== 'x64') return [['_generic', []]];
  return [
    ['_avx512', ['-mavx512f', '-mavx512vl', '-mavx2', '-mfma']],
    ['_avx2', ['-mavx2', '-mfma']],
    ['_generic', []],
  ];
}

function build() {
  const cc = process.env.CC || 'cc';
  const scratch = mkdtempSync(path.join(root, 'build', '.native-'));
  try {
    // -std=gnu11, not c11: ISO mode turns off FMA contraction, which the tiles rely on.
    // -fno-math-errno lets sqrtf become one vector instruction; no -ffast-math, which would
    // change the optimizer's arithmetic.
    const common = ['-O3', '-fPIC', '-std=gnu11', '-fno-math-errno', '-Wall', '-Wno-psabi'];
    const objects = kernels().map(([suffix, flags]) => {
      const out = path.join(scratch, `kernel${suffix}.o`);
      execFileSync(cc, [...common, ...flags, `-DKERNEL_SUFFIX=${suffix}`, '-c', path.join(source, 'dense-update.c'), '-o', out], { stdio: 'pipe' });
      return out;
    });
    const api = path.join(scratch, 'api.o');
    const x86 = process.arch === 'x64' ? ['-DHAVE_X86_KERNELS'] : [];
    execFileSync(cc, [...common, ...x86, '-DNODE_GYP_MODULE_NAME=dense_update', `-I${headers()}`, '-c', path.join(source, 'dense-update-api.c'), '-o', api], { stdio: 'pipe' });
    const link = process.platform === 'darwin' ? ['-bundle', '-undefined', 'dynamic_lookup'] : ['-shared'];
    const staged = path.join(scratch, 'dense_update.node');
    execFileSync(cc, [...link, '-pthread', '-o', staged, ...objects, api, '-lm'], { stdio: 'pipe' });
    // Whole or absent: a reader never loads a half-written addon.
    renameSync(staged, target);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function firstLine(error) {
  const stderr = error?.stderr?.toString().trim();
  const text = stderr || (error instanceof Error ? error.message : String(error));
  return text.split('\n').find((l) => /error/i.test(l)) ?? text.split('\n')[0];
}

if (process.env.BOTTLENECK_NATIVE === '0') {
  say('native head update skipped (BOTTLENECK_NATIVE=0); train-head uses its ONNX-only path');
} else if (process.platform === 'win32') {
  say('native head update not built on Windows; train-head uses its ONNX-only path');
} else {
  try {
    mkdirSync(path.dirname(target), { recursive: true });
    build();
    say(`built ${path.relative(root, target)}`);
  } catch (error) {
    say(`native head update not built (${firstLine(error)}); train-head uses its ONNX-only path`);
  }
}
