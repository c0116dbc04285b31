/** Temporary files of killed writers are swept; a live writer's never are. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepDeadWritersTemps } from '../src/util/atomic-file.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-atomic-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('sweepDeadWritersTemps', () => {
  it("removes only the files of processes that are gone", async () => {
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
    const dead = path.join(tmp, `model.onnx.${gone}.0123abcd.tmp`);
    const live = path.join(tmp, `model.onnx.${process.ppid}.0123abcd.tmp`);
    const mine = path.join(tmp, `model.onnx.${process.pid}.0123abcd.tmp`);
    const other = path.join(tmp, 'model.onnx');
    for (const f of [dead, live, mine, other]) await writeFile(f, 'x');
    expect(await sweepDeadWritersTemps(tmp)).toEqual([path.basename(dead)]);
    expect([dead, live, mine, other].map((f) => existsSync(f))).toEqual([false, true, true, true]);
    expect(await sweepDeadWritersTemps(path.join(tmp, 'missing'))).toEqual([]);
  });
});
