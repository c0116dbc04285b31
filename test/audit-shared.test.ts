/**
 * On ../shared/datasets: every group of byte-identical files (found here independently, by
 * hashing every file) is reported by `bottleneck audit`, with its labels. Exact duplicates do
 * not depend on the backbone, so the tiny one keeps this fast.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { glob } from 'tinyglobby';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { hasSharedDatasets, NEEDS_SHARED_DATASETS, SHARED_DATASETS } from './helpers/shared.ts';

/** Groups of two or more files with the same bytes, as dataset-relative paths, sorted. */
async function byteIdenticalGroups(): Promise<string[][]> {
  const files = await glob('*/**/*.{jpg,jpeg,png}', { cwd: SHARED_DATASETS });
  const bySha = new Map<string, string[]>();
  for (const f of files.sort()) {
    const sha = createHash('sha256').update(await readFile(path.join(SHARED_DATASETS, f))).digest('hex');
    bySha.set(sha, [...(bySha.get(sha) ?? []), f]);
  }
  return [...bySha.values()].filter((g) => g.length > 1).sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

describe.skipIf(!hasSharedDatasets)(`audit on ../shared/datasets${NEEDS_SHARED_DATASETS}`, () => {
  let tmp: string;
  let known: string[][];
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-audit-shared-'));
    known = await byteIdenticalGroups();
  });
  afterAll(() => rm(tmp, { recursive: true, force: true }));

  it('the datasets hold the 3 byte-identical groups their README lists, roses/tulips among them', () => {
    expect(known).toHaveLength(3);
    expect(known).toContainEqual(['flowers/roses/15922772266_1167a06620.jpg', 'flowers/tulips/15922772266_1167a06620.jpg']);
  });

  it('finds every one of them, flags the roses/tulips copy as a label conflict and nothing else', async () => {
    const datasets = [...new Set(known.map((g) => g[0].split('/')[0]))];
    for (const name of datasets) {
      const r = await runCli(['audit', path.join(SHARED_DATASETS, name), '--backbone', 'tiny-vgg-random', '--cache', path.join(tmp, 'cache'), '--threshold', '0.9999', '--folds', '2', '--epochs', '1', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const audit = JSON.parse(r.stdout) as { exact: { members: { path: string }[]; conflict: boolean; labels: string[] }[] };
      const found = audit.exact.map((g) => g.members.map((m) => `${name}/${m.path}`).sort()).sort((a, b) => (a[0] < b[0] ? -1 : 1));
      expect(found).toEqual(known.filter((g) => g[0].startsWith(`${name}/`)));
      const conflicts = audit.exact.filter((g) => g.conflict);
      expect(conflicts.map((g) => g.labels)).toEqual(name === 'flowers' ? [['roses', 'tulips']] : []);
    }
  }, 180_000);
});
