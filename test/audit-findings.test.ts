/** The audit algorithms on plain rows: exact groups, near pairs and their groups, effective splits, what the manifest drops. */
import { describe, expect, it } from 'vitest';
import type { AuditRows, Split } from '../src/audit/audit-rows.ts';
import { effectiveSplits, type AuditResult, type Member } from '../src/audit/audit.ts';
import { findExactDuplicates } from '../src/audit/exact-duplicates.ts';
import { rowsToDrop } from '../src/audit/manifest.ts';
import { findNearDuplicates } from '../src/audit/near-duplicates.ts';

const sha = (i: number) => i.toString(16).padStart(64, '0');

/**
 * Rows whose similarity vectors are 2-d unit vectors at the given angles (degrees), so their
 * similarity is the cosine of the difference: each code is sign(v)·v², which similarityVectors
 * (signed square root, unit norm) turns back into v.
 */
function rowsAt(spec: readonly { angle: number; content: number; label: string; split: Split | null }[]): AuditRows {
  const codes = new Float32Array(spec.length * 2);
  const squared = (v: number) => Math.sign(v) * v * v;
  spec.forEach((s, i) => {
    codes[2 * i] = squared(Math.cos((s.angle * Math.PI) / 180));
    codes[2 * i + 1] = squared(Math.sin((s.angle * Math.PI) / 180));
  });
  return {
    n: spec.length,
    dim: 2,
    codes,
    sha256: spec.map((s) => sha(s.content)),
    paths: spec.map((_, i) => `img${i}.jpg`),
    labels: spec.map((s) => s.label),
    splits: spec.map((s) => s.split),
  };
}

describe('findExactDuplicates', () => {
  it('groups rows by content, flags leaks across splits and label conflicts, leaks and conflicts first', () => {
    const rows = rowsAt([
      { angle: 0, content: 1, label: 'a', split: 'train' },
      { angle: 0, content: 1, label: 'a', split: 'train' },
      { angle: 40, content: 2, label: 'a', split: 'train' },
      { angle: 40, content: 2, label: 'b', split: 'train' },
      { angle: 80, content: 3, label: 'a', split: 'train' },
      { angle: 80, content: 3, label: 'a', split: 'test' },
      { angle: 120, content: 4, label: 'a', split: 'validation' },
    ]);
    const groups = findExactDuplicates(rows);
    expect(groups.map((g) => [g.rows, g.leak, g.conflict])).toEqual([
      [[4, 5], true, false],
      [[2, 3], false, true],
      [[0, 1], false, false],
    ]);
    expect(groups[0].splits).toEqual(['train', 'test']);
    expect(groups[1].labels).toEqual(['a', 'b']);
  });
});

describe('findNearDuplicates', () => {
  // Cosines: rows 0/1 cos 1°, 0/2 cos 3° (≈ 0.9986), 3/4 cos 2°; row 5 far from all.
  const rows = rowsAt([
    { angle: 0, content: 1, label: 'a', split: 'train' },
    { angle: 1, content: 2, label: 'a', split: 'validation' },
    { angle: 3, content: 3, label: 'a', split: 'train' },
    { angle: 90, content: 4, label: 'a', split: 'train' },
    { angle: 92, content: 5, label: 'b', split: 'train' },
    { angle: 200, content: 6, label: 'b', split: 'test' },
    // A byte-identical copy of row 0: one content, never a near pair with itself.
    { angle: 0, content: 1, label: 'a', split: 'train' },
  ]);

  it('keeps every pair of different contents at or above the threshold, leaks first', async () => {
    const found = await findNearDuplicates(rows, { threshold: Math.cos((2.5 * Math.PI) / 180), k: 3, threads: 1 });
    expect(found.pairs.map((p) => [p.rowsA, p.rowsB, p.leak, p.labelsDiffer])).toEqual([
      [[0, 6], [1], true, false],
      [[2], [1], true, false],
      [[3], [4], false, true],
    ]);
    expect(found.contents).toBe(6);
  });

  it('gives rows joined by exact or near copies one group', async () => {
    const found = await findNearDuplicates(rows, { threshold: 0.99, k: 3, threads: 1 });
    const g = found.groupOfRow;
    expect(g[0]).toBe(g[1]);
    expect(g[1]).toBe(g[2]);
    expect(g[6]).toBe(g[0]);
    expect(g[3]).toBe(g[4]);
    expect(g[3]).not.toBe(g[0]);
    expect(new Set([g[5], g[0], g[3]]).size).toBe(3);
  });
});

describe('effectiveSplits', () => {
  it('keeps listed splits, and splits unlisted rows by content hash as train-head does', () => {
    const listed = effectiveSplits({ sha256: [sha(1), sha(2)], labels: ['a', 'b'], splits: ['train', 'validation'] }, { val: 0.2, test: 0 });
    expect(listed).toEqual({ splits: ['train', 'validation'], source: 'folders' });
    // hashUnit(sha) < 0.2 → validation: 0x1… is 1/16 of the way, 0xf… is 15/16.
    const hashed = effectiveSplits({ sha256: ['1'.padEnd(64, '0'), 'f'.padEnd(64, '0')], labels: ['a', 'b'], splits: [null, null] }, { val: 0.2, test: 0 });
    expect(hashed).toEqual({ splits: ['validation', 'train'], source: 'hash' });
  });
});

describe('rowsToDrop', () => {
  const m = (row: number, split: Split, label = 'a'): Member => ({ row, path: `p${row}`, label, split, file: null, sha256: String(row) });
  const result = (exact: AuditResult['exact'], pairs: Extract<AuditResult['near'], { pairs: unknown }>['pairs'], issues: AuditResult['labels']['issues'] = []) =>
    ({
      exact,
      near: { threshold: 0.95, thresholdSource: '', calibration: null, neighbours: 10, pairs, saturated: 0, seconds: 0 },
      labels: { issues },
    }) as unknown as AuditResult;

  it('drops conflicts whole, later-split and redundant copies, and the held-out side of a near leak', () => {
    const r = result(
      [
        { sha256: sha(1), members: [m(0, 'test'), m(1, 'train')], labels: ['a'], splits: ['train', 'test'], leak: true, conflict: false },
        { sha256: sha(2), members: [m(2, 'train'), m(3, 'train', 'b')], labels: ['a', 'b'], splits: ['train'], leak: false, conflict: true },
        { sha256: sha(3), members: [m(4, 'train'), m(5, 'train')], labels: ['a'], splits: ['train'], leak: false, conflict: false },
      ],
      [
        { similarity: 0.99, a: [m(6, 'train')], b: [m(7, 'validation')], leak: true, labelsDiffer: false },
        { similarity: 0.98, a: [m(8, 'validation')], b: [m(9, 'test')], leak: true, labelsDiffer: false },
        { similarity: 0.97, a: [m(10, 'train')], b: [m(11, 'train')], leak: false, labelsDiffer: false },
      ],
      [{ member: m(12, 'train'), given: 'a', suggested: 'b', selfConfidence: 0.01, suggestedProbability: 0.99 }],
    );
    const dropped = rowsToDrop(r, { dropMislabelled: false });
    expect(dropped.map((d) => d.row)).toEqual([0, 2, 3, 5, 7, 9]);
    expect(dropped[0].reason).toBe('leak: byte-identical to train image p1');
    expect(dropped.find((d) => d.row === 5)!.reason).toBe('byte-identical to p4');
    expect(dropped.find((d) => d.row === 7)!.reason).toBe('leak: near-duplicate (cosine 0.9900) of train image p6');
    expect(rowsToDrop(r, { dropMislabelled: true }).map((d) => d.row)).toEqual([0, 2, 3, 5, 7, 9, 12]);
  });
});
